"""A small client for TF Serving's REST and gRPC APIs (stock TF Serving or genzoo's).

    from serving.client import Client
    c = Client("localhost", grpc_port=8500)          # or rest_port=8501
    images = c.sample("vae_mnist", seeds=[[0, 1], [0, 2]])["images"]   # (2, 28, 28, 1) uint8

    python -m serving.client sample vae_mnist --count 64 --out samples.png [--rest_port 8501]
    python -m serving.client translate pix2pix_superres_mnist --input digit.png --out big.png
"""
import argparse
import base64
import sys
import urllib.parse

import grpc
import numpy as np
import requests
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from PIL import Image
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from zoo.images import grid, save_png


class ServerError(RuntimeError):
    """An error answer of the server: the status (HTTP code or gRPC code name) and message."""

    def __init__(self, status, message):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _jsonable(array):
    """An input array as JSON: numbers, or {"b64": ...} for bytes."""
    if array.dtype.kind in "OS":
        def leaf(v):
            return {"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v
        return np.vectorize(leaf, otypes=[object])(array).tolist() if array.ndim else leaf(array.item())
    return array.tolist()


def _from_json(value, dtype):
    """A JSON output as an array of its signature dtype (strings: bytes, *_bytes: base64)."""
    if dtype is None:
        return np.asarray(value)
    if np.dtype(dtype) == object:
        def leaf(v):
            if isinstance(v, dict):
                return base64.b64decode(v["b64"])
            return v.encode() if isinstance(v, str) else v
        return np.vectorize(leaf, otypes=[object])(np.array(value, dtype=object))
    return np.asarray(value, dtype=dtype)


def _answer(reply):
    """The JSON document of a REST answer; a ServerError with TF Serving's message for an error."""
    try:
        doc = reply.json()
    except ValueError:
        raise ServerError(reply.status_code, reply.text) from None
    if reply.status_code != 200:
        raise ServerError(reply.status_code, doc.get("error", reply.text) if isinstance(doc, dict) else reply.text)
    return doc


def _model_spec(spec, model, version=None, label=None):
    """Fills a gRPC ModelSpec: the model, and the version or its label when given."""
    spec.name = model
    if version is not None:
        spec.version.value = int(version)
    if label is not None:
        spec.version_label = label


class Client:
    """Calls signatures of served models and returns NumPy arrays.

    Args:
        host: server host.
        grpc_port: use gRPC on this port (preferred when both are given).
        rest_port: use REST on this port.
        timeout: seconds per call.
        rest_url: use REST at this address instead of host and port ("http://host:8501",
            "https://...", a path prefix included).
    """

    def __init__(self, host="localhost", grpc_port=None, rest_port=None, timeout=30.0,
                 rest_url=None):
        if not grpc_port and not rest_port and not rest_url:
            raise ValueError("give grpc_port, rest_port or rest_url")
        self.host = host
        self.timeout = timeout
        self.protocol = "grpc" if grpc_port else "rest"
        if rest_url and not grpc_port:
            parts = urllib.parse.urlsplit(rest_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"rest_url must be http://HOST:PORT or https://..., not {rest_url!r}")
            self.host = parts.hostname
            self.session = requests.Session()
            self.base = rest_url.rstrip("/") + "/v1/models"
            self._output_dtypes = {}
        elif grpc_port:
            self.channel = grpc.insecure_channel(
                f"{host}:{grpc_port}", options=[("grpc.max_receive_message_length", 1 << 30)])
            self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        else:
            self.session = requests.Session()
            self.base = f"http://{host}:{rest_port}/v1/models"
            self._output_dtypes = {}

    def predict(self, model, signature="serving_default", version=None, version_label=None,
                **inputs):
        """Runs ``signature`` of ``model`` on named inputs; returns {output: array}.

        ``version`` or ``version_label`` pick a version (default: the latest).
        """
        inputs = {k: np.asarray(v) for k, v in inputs.items()}
        if self.protocol == "grpc":
            return self._predict_grpc(model, signature, version, version_label, inputs)
        return self._predict_rest(model, signature, version, version_label, inputs)

    def _predict_grpc(self, model, signature, version, label, inputs):
        request = predict_pb2.PredictRequest()
        _model_spec(request.model_spec, model, version, label)
        request.model_spec.signature_name = signature
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        try:
            response = self.stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ServerError(err.code().name, err.details()) from None
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def _path(self, model, version, label):
        path = f"{self.base}/{model}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{label}"
        return path

    def _predict_rest(self, model, signature, version, label, inputs):
        body = {"signature_name": signature,
                "inputs": {k: _jsonable(v) for k, v in inputs.items()}}
        doc = _answer(self.session.post(self._path(model, version, label) + ":predict", json=body,
                                         timeout=self.timeout))
        specs = self._output_specs(model, signature, version, label)
        outputs = doc["outputs"]
        if not isinstance(outputs, dict):  # a lone output comes back bare: name it
            outputs = {next(iter(specs)): outputs}
        return {k: _from_json(v, specs.get(k)) for k, v in outputs.items()}

    def _output_specs(self, model, signature, version, label):
        """{output: NumPy dtype} of a signature, from the model's metadata (cached), so that
        REST answers come back in the signature's dtypes (uint8 images), as over gRPC."""
        key = (model, signature or "serving_default", version, label)
        if key not in self._output_dtypes:
            meta = self.metadata(model, version, label)
            defs = meta["metadata"]["signature_def"]["signature_def"]
            outputs = defs[key[1]]["outputs"]
            self._output_dtypes[key] = {
                name: tf.as_dtype(types_pb2.DataType.Value(info["dtype"])).as_numpy_dtype
                for name, info in outputs.items()}
        return self._output_dtypes[key]

    def metadata(self, model, version=None, version_label=None):
        """The model's signature defs as a dict (REST) or GetModelMetadataResponse (gRPC)."""
        if self.protocol == "rest":
            return _answer(self.session.get(self._path(model, version, version_label) + "/metadata",
                                            timeout=self.timeout))
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _model_spec(request.model_spec, model, version, version_label)
        try:
            return self.stub.GetModelMetadata(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ServerError(err.code().name, err.details()) from None

    def status(self, model, version=None, version_label=None):
        """The model's version states as TF Serving's REST API writes them:
        {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {...}}]}."""
        if self.protocol == "rest":
            return _answer(self.session.get(self._path(model, version, version_label), timeout=self.timeout))
        request = get_model_status_pb2.GetModelStatusRequest()
        _model_spec(request.model_spec, model, version, version_label)
        try:
            answer = model_service_pb2_grpc.ModelServiceStub(self.channel).GetModelStatus(
                request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ServerError(err.code().name, err.details()) from None
        return json_format.MessageToDict(answer, always_print_fields_with_no_presence=True,
                                         preserving_proto_field_name=True)

    def input_shape(self, model, signature, name="images", version=None, version_label=None):
        """The shape of a signature's input, from the model's metadata (-1: any size)."""
        meta = self.metadata(model, version, version_label)
        if self.protocol == "rest":
            defs = meta["metadata"]["signature_def"]["signature_def"]
            dims = defs.get(signature, {}).get("inputs", {}).get(name, {}).get("tensor_shape", {})
            found = [int(d["size"]) for d in dims.get("dim", [])]
        else:
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            meta.metadata["signature_def"].Unpack(signature_map)
            defs = signature_map.signature_def
            found = ([d.size for d in defs[signature].inputs[name].tensor_shape.dim]
                     if signature in defs and name in defs[signature].inputs else [])
        if not found:
            raise ValueError(f"{model} has no signature {signature!r} with an input {name!r}")
        return found

    # The zoo's contract signatures.
    def sample(self, model, seeds, label=None, text=None, **spec):
        """``sample`` of ``model``; ``label`` for class-conditional models, ``text`` (a caption
        per row: a string tensor, plain JSON strings over REST) for text-to-image models."""
        extra = {} if label is None else {"label": np.asarray(label, np.int64)}
        if text is not None:
            extra["text"] = np.array([str(t) for t in np.ravel(text)], dtype=object)
        return self.predict(model, "sample", seed=np.asarray(seeds, np.int64), **extra, **spec)

    def log_prob(self, model, images, label=None, **spec):
        extra = {} if label is None else {"label": np.asarray(label, np.int64)}
        return self.predict(model, "log_prob", images=np.asarray(images, np.uint8), **extra, **spec)

    def encode(self, model, images, **spec):
        return self.predict(model, "encode", images=np.asarray(images, np.uint8), **spec)

    def decode(self, model, latents, **spec):
        return self.predict(model, "decode", latents=np.asarray(latents, np.float32), **spec)

    def reconstruct(self, model, images, seeds, **spec):
        return self.predict(model, "reconstruct", images=np.asarray(images, np.uint8),
                            seed=np.asarray(seeds, np.int64), **spec)

    def translate(self, model, images, back=False, **spec):
        """Translation models: ``translate`` (A -> B), or ``translate_back`` (B -> A) if ``back``."""
        return self.predict(model, "translate_back" if back else "translate",
                            images=np.asarray(images, np.uint8), **spec)


def read_image(path, shape):
    """A picture file as a uint8 (H, W, C) array of ``shape``: grey (C = 1) or RGB (C = 3),
    resized to H x W (block averages when shrinking, bicubic when enlarging)."""
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable image: {err}") from err
    return fit_image(image, shape)


def fit_image(image, shape):
    """A PIL image as a uint8 (H, W, C) array of ``shape``: grey (C = 1) or RGB (C = 3),
    resized to H x W (block averages when shrinking, bicubic when enlarging)."""
    height, width, channels = shape
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
        shrink = image.size[0] >= width and image.size[1] >= height
        image = image.resize((width, height), Image.Resampling.BOX if shrink
                             else Image.Resampling.BICUBIC)
    return np.asarray(image, np.uint8).reshape(height, width, channels)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Query a model server (TF Serving or genzoo's) and save its images as a PNG grid.")
    p.add_argument("command", choices=["sample", "translate"],
                   help="what to ask for: 'sample' draws --count images from the model's sample "
                        "signature; 'translate' sends the --input pictures through a translation "
                        "model's translate signature (translate_back with --back)")
    p.add_argument("model", help="served model name, e.g. vae_mnist (see exported/models.config)")
    p.add_argument("--host", default="localhost", help="server host (default: %(default)s)")
    p.add_argument("--grpc_port", type=int,
                   help="use gRPC on this port (default 8500 when no port is given; preferred "
                        "when both are)")
    p.add_argument("--rest_port", type=int, help="use the REST API on this port")
    p.add_argument("--count", type=int, default=64,
                   help="number of images to draw (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="first half of every row's seed; the second is the row number, so the "
                        "same --seed draws the same images (default: %(default)s)")
    p.add_argument("--label", type=int,
                   help="class label for conditional models (cvae_mnist, cgan_mnist, ...)")
    p.add_argument("--text",
                   help='caption for text-to-image models, e.g. "a thick seven" (text2image_mnist)')
    p.add_argument("--input", nargs="+", metavar="PNG",
                   help="translate: picture files (PNG, JPEG, ...), each made grey or RGB as the "
                        "model's input is and resized to its height and width")
    p.add_argument("--back", action="store_true",
                   help="translate: use translate_back (CycleGAN's B -> A) instead of translate")
    p.add_argument("--out", default="samples.png",
                   help="PNG file for the grid of images (default: %(default)s)")
    return p


def _translate(client, args):
    signature = "translate_back" if args.back else "translate"
    shape = client.input_shape(args.model, signature)[1:]
    images = np.stack([read_image(path, shape) for path in args.input])
    return client.translate(args.model, images, back=args.back)["images"]


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if not args.grpc_port and not args.rest_port:
        args.grpc_port = 8500
    if args.command == "translate" and not args.input:
        p.error("translate needs --input PNG [PNG ...]")
    client = Client(args.host, args.grpc_port, args.rest_port)
    seeds = np.stack([np.full(args.count, args.seed), np.arange(args.count)], 1)
    label = None if args.label is None else np.full(args.count, args.label)
    try:
        if args.command == "translate":
            images = _translate(client, args)
        else:
            text = None if args.text is None else [args.text] * args.count
            images = client.sample(args.model, seeds, label, text)["images"]
    except ValueError as err:  # an unreadable picture
        sys.exit(f"error: {err}")
    except ServerError as err:
        sys.exit(f"error: {err}")
    except Exception as err:  # connection refused and the like
        sys.exit(f"error: cannot query {args.host}: {type(err).__name__}: {err}")
    cols = int(np.ceil(np.sqrt(len(images))))
    print(f"wrote {save_png(grid(images, cols=cols), args.out, scale=2)}")


if __name__ == "__main__":
    main()
