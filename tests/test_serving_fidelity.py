"""The embedded server answers as TensorFlow Serving does, and a large REST request
does not hold up the other requests of either protocol.

References are TF Serving's sources: model_servers/http_rest_api_util.cc (paths),
http_rest_api_handler.cc, util/json_tensor.cc (JSON in and out),
servables/tensorflow/predict_util.cc, classifier.cc and regressor.cc (errors,
typed output fields), servables/tensorflow/get_model_metadata_impl.cc.
"""
import asyncio
import concurrent.futures
import http.client
import gc
import json
import math
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from aiohttp import web
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from conftest import run_main
from serving import client as client_module
from serving import export, grpc_api, predict, rest
from serving import server as server_module
from serving.client import Client
from serving.errors import ServingError
from serving_helpers import ServerProcess, predict_request as _request
from zoo import registry

SEEDS = np.array([[3, i] for i in range(4)], np.int64)


# ---------------------------------------------------------------- a real server

@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """Small untrained vae_mnist (one-input signatures) and cvae_mnist (two inputs)."""
    base = tmp_path_factory.mktemp("zoo")
    export.export(registry.build("vae_mnist", hidden_units=(32,), latent_dim=8), base,
                  log_prob_samples=4)
    export.export(registry.build("cvae_mnist", hidden_units=(32,), latent_dim=8), base,
                  log_prob_samples=4)
    return base


@pytest.fixture(scope="module")
def server(zoo_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    proc = ServerProcess("--model_config_file", zoo_dir / "models.config",
                         models=("vae_mnist", "cvae_mnist"), log_path=log)
    yield proc
    proc.stop()


def _stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _tf_decimal(value, digits):
    """TF Serving's WriteDecimal (util/json_tensor.cc): six significant digits when they
    round-trip, else max_digits10; '.0' on whole numbers not in exponent form."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    cast = np.float32 if digits == 9 else np.float64
    text = "%.6g" % value
    if cast(text) != cast(value):
        text = "%.*g" % (digits, value)
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def test_grpc_outputs_fill_typed_fields_as_tf_serving_does(server):
    # predict_util.cc: RunPredict serializes outputs with kAsProtoField (Tensor::AsProtoField).
    reply = _stub(server).Predict(_request("vae_mnist", "sample", seed=SEEDS), timeout=60)
    images, latents = reply.outputs["images"], reply.outputs["latents"]
    assert not images.tensor_content and not latents.tensor_content
    assert images.dtype == tf.uint8.as_datatype_enum and len(images.int_val) == 4 * 28 * 28
    assert latents.dtype == tf.float32.as_datatype_enum and len(latents.float_val) == 4 * 8
    assert [d.size for d in images.tensor_shape.dim] == [4, 28, 28, 1]
    np.testing.assert_array_equal(tf.make_ndarray(images).reshape(-1), np.array(images.int_val))
    log_prob = _stub(server).Predict(
        _request("vae_mnist", "log_prob", images=np.zeros((2, 28, 28, 1), np.uint8)), timeout=60)
    assert len(log_prob.outputs["log_prob"].float_val) == 2


def test_metadata_lists_every_signature_and_rest_has_no_type_key(server):
    meta = requests.get(f"{server.url}/vae_mnist/metadata", timeout=30).json()
    # http_rest_api_util.cc ToJsonString: the SignatureDefMap is printed on its own, unpacked.
    assert set(meta) == {"model_spec", "metadata"}
    assert set(meta["metadata"]) == {"signature_def"}
    assert set(meta["metadata"]["signature_def"]) == {"signature_def"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    # get_model_metadata_impl.cc copies the meta graph's whole signature_def map.
    assert {"__saved_model_init_op", "sample", "serving_default", "log_prob"} <= set(sigs)
    assert sigs["sample"]["method_name"] == "tensorflow/serving/predict"
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "vae_mnist"
    reply = _stub(server).GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(signature_map)
    assert set(signature_map.signature_def) == set(sigs)


def test_rest_floats_are_written_as_tf_serving_writes_them(server):
    reply = requests.post(f"{server.url}/vae_mnist:predict",
                          json={"signature_name": "sample", "inputs": SEEDS.tolist()}, timeout=60)
    assert reply.status_code == 200, reply.text
    tokens = []
    doc = json.loads(reply.text, parse_float=lambda s: tokens.append(s) or float(s))
    latents = np.array(doc["outputs"]["latents"], np.float32).reshape(-1)
    assert len(tokens) == latents.size
    assert tokens == [_tf_decimal(float(v), 9) for v in latents]


def test_float_and_other_json_output_text():
    values = np.array([0.1, 3.0, 1e6, 1.2345678, np.nan, np.inf, -np.inf, -0.0, 1e-5], np.float32)
    assert rest.encode_predict({"x": values}, False) == (
        b'{"outputs":[0.1,3.0,1e+06,1.23456776,NaN,Infinity,-Infinity,-0.0,1e-05]}')
    assert rest.encode_predict({"x": np.array([0.1, 1 / 3], np.float64)}, False) == (
        b'{"outputs":[0.1,0.33333333333333331]}')
    outputs = {"i": np.array([[-5, 0], [7, 2 ** 63 - 1]], np.int64),
               "b": np.array([True, False]), "u": np.array([[255], [0]], np.uint8),
               "s": np.array([b"a\"b", b"\xc3\xa9"], dtype=object),
               "x_bytes": np.array([b"hi", b""], dtype=object)}
    columnar = json.loads(rest.encode_predict(outputs, False))["outputs"]
    assert columnar == {"i": [[-5, 0], [7, 2 ** 63 - 1]], "b": [True, False], "u": [[255], [0]],
                        "s": ['a"b', "é"], "x_bytes": [{"b64": "aGk="}, {"b64": ""}]}
    rows = json.loads(rest.encode_predict(outputs, True))["predictions"]
    assert rows[1] == {"i": [7, 2 ** 63 - 1], "b": False, "u": [0], "s": "é", "x_bytes": {"b64": ""}}
    assert json.loads(rest.encode_predict({"e": np.zeros((2, 0, 3), np.float32)}, True)) == \
        {"predictions": [[], []]}
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)).astype(np.uint8)
    assert json.loads(rest.encode_predict({"images": images}, True)) == \
        {"predictions": images.tolist()}


def test_large_answers_render_in_blocks_like_small_ones():
    rng = np.random.default_rng(2)
    outputs = {"images": rng.integers(0, 256, (300, 28, 28, 1)).astype(np.uint8),
               "latents": rng.normal(size=(300, 5)).astype(np.float32),
               "ids": rng.integers(-2 ** 40, 2 ** 40, (300,)), "ok": rng.random(300) < 0.5}
    columnar = json.loads(rest.encode_predict(outputs, False))["outputs"]
    rows = json.loads(rest.encode_predict(outputs, True))["predictions"]
    for name, array in outputs.items():
        got = np.array(columnar[name], array.dtype)
        np.testing.assert_array_equal(got, array)
        np.testing.assert_array_equal(np.array([r[name] for r in rows], array.dtype), array)
    assert len(rest.encode_chunks(outputs, True)) > 4  # sent in pieces


def test_large_bodies_parse_in_pieces_by_the_same_rules(monkeypatch):
    # Bodies over _WHOLE_BODY_BYTES (1 MiB) are parsed one element at a time; a lower
    # threshold puts a body of 150 images (about 330 kB) on that path.
    monkeypatch.setattr(rest, "_WHOLE_BODY_BYTES", 1 << 18)
    spec = {"images": tf.TensorSpec([None, 28, 28, 1], tf.uint8)}
    signature = type("Signature", (), {"inputs": spec, "name": "s"})()
    images = np.random.default_rng(3).integers(0, 256, (150, 28, 28, 1))
    rows = images.tolist()
    for fmt in ("instances", "inputs"):
        body = json.dumps({fmt: rows}).encode()
        assert len(body) > rest._WHOLE_BODY_BYTES
        _, _, inputs, _ = rest.decode_predict(body, lambda name: (None, signature))
        np.testing.assert_array_equal(inputs["images"], images)
    for bad, words in [(True, "Type: True"), (1.5, "Type: Number"), (300, "outside the range"),
                       (None, "Type: Null")]:
        broken = json.loads(json.dumps(rows))
        broken[149][27][27][0] = bad
        for fmt in ("instances", "inputs"):
            body = json.dumps({fmt: broken}).encode()
            with pytest.raises(ServingError, match=words) as err:
                rest.decode_predict(body, lambda name: (None, signature))
            if fmt == "instances":
                assert "element: 149" in err.value.message
    ragged = json.loads(json.dumps(rows))
    ragged[75] = ragged[75][:27]
    with pytest.raises(ServingError, match="rectangular"):
        rest.decode_predict(json.dumps({"inputs": ragged}).encode(), lambda n: (None, signature))


REST_INPUTS = [
    # (path, body, status, words in the error); json_tensor.cc AddValueToTensor's rules
    ("vae_mnist:predict", {"inputs": {"seed": [[True, 1]]}}, 400,
     "Type: True is not of expected type: int64"),
    ("vae_mnist:predict", {"instances": [[0.5, 1]]}, 400,
     "JSON Value: 0.5 Type: Number is not of expected type: int64"),
    ("vae_mnist:predict", {"inputs": [[1.0, 2]]}, 400, "is not of expected type: int64"),
    ("vae_mnist:predict", {"inputs": [[2 ** 63, 1]]}, 400, "is not of expected type: int64"),
    ("vae_mnist:predict", {"inputs": [[-2 ** 63 - 1, 1]]}, 400, "is not of expected type: int64"),
    ("vae_mnist:predict", {"inputs": [[2 ** 64 + 5, 1]]}, 400, "is not of expected type: int64"),
    ("vae_mnist:predict", {"inputs": [[None, 1]]}, 400, "Type: Null"),
    ("vae_mnist:predict", {"inputs": {"seed": [[0, 1]], "extra": [1]}}, 200, ""),
    ("vae_mnist:predict", {"instances": [{"seed": [0, 1], "extra": 1}]}, 400, "extra"),
    ("vae_mnist:predict", {"inputs": [[2 ** 63 - 1, -2 ** 63]]}, 200, ""),
    ("vae_mnist:predict", {"signature_name": "decode", "inputs": [[16777217] * 8]}, 400,
     "without loss of precision"),
    ("vae_mnist:predict", {"signature_name": "decode", "inputs": [[1e39] * 8]}, 400,
     "without loss of precision"),
    ("vae_mnist:predict", {"signature_name": "decode", "inputs": [[False] * 8]}, 400,
     "Type: False is not of expected type: float"),
    ("vae_mnist:predict", {"signature_name": "decode", "inputs": [[1] * 8]}, 200, ""),
    ("cvae_mnist:predict", {"signature_name": "sample", "inputs": {"seed": [[0, 1]]}}, 400,
     "Missing named input: label"),
]


@pytest.mark.parametrize("path,body,status,words", REST_INPUTS)
def test_rest_inputs_follow_tf_serving_json_rules(server, path, body, status, words):
    reply = requests.post(f"{server.url}/{path}", data=json.dumps(body), timeout=60)
    assert reply.status_code == status, reply.text
    if status != 200:
        assert words in reply.json()["error"], reply.json()["error"]


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_json_is_a_bad_request(server, depth):
    body = '{"inputs": ' + "[" * depth + "0" + "]" * depth + "}"
    reply = requests.post(f"{server.url}/vae_mnist:predict", data=body, timeout=60)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]
    assert server.status("vae_mnist") == ["AVAILABLE"]


PATHS = [
    # (method, path, status, words); http_rest_api_util.cc: kPredictionApiGegex and
    # kModelStatusApiRegex are case-insensitive; anything else under /v1/ is malformed.
    ("POST", "/V1/MODELS/vae_mnist/VERSIONS/1:predict", 200, ""),
    ("POST", "/v1/models/vae%5Fmnist:predict", 200, ""),
    ("GET", "/v1/Models/vae_mnist", 200, ""),
    ("GET", "/v1/models/vae_mnist/Versions/1/metadata", 200, ""),
    ("POST", "/v1/models/vae_mnist:PREDICT", 400, "Malformed request: POST /v1/models/vae_mnist:PREDICT"),
    ("GET", "/v1/models", 400, "Missing model name in request."),
    ("GET", "/v1/models/vae_mnist:predict", 400, "Malformed request: GET /v1/models/vae_mnist:predict"),
    ("POST", "/v1/models/vae_mnist", 400, "Malformed request"),
    ("POST", "/v1/models/vae_mnist:explode", 400, "Malformed request"),
    ("POST", "/v1/models/vae_mnist/versions/x:predict", 400, "Malformed request"),
    ("PUT", "/v1/models/vae_mnist:predict", 400, "Malformed request"),
    ("GET", "/v1/nothing", 400, "Malformed request"),
    ("POST", "/v1/models/vae_mnist/versions/99999999999999999999:predict", 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("GET", "/v2/models/vae_mnist", 404, ""),
]


@pytest.mark.parametrize("method,path,status,words", PATHS)
def test_rest_paths_follow_tf_serving(server, method, path, status, words):
    # http.client sends the path as written (requests would unquote %5F).
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    body = json.dumps({"instances": [[0, 1]]}) if method != "GET" else None
    connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
    reply = connection.getresponse()
    text = reply.read().decode()
    connection.close()
    assert reply.status == status, text
    if words:
        assert words in json.loads(text)["error"], text


def test_unknown_signature_codes(server):
    # predict_util.cc RunPredict: FAILED_PRECONDITION; http_rest_api_handler.cc GetInfoMap:
    # INVALID_ARGUMENT (HTTP 400 either way).
    with pytest.raises(grpc.RpcError) as err:
        _stub(server).Predict(_request("vae_mnist", "nosuch", seed=SEEDS), timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert 'Serving signature key "nosuch" not found' in err.value.details()
    reply = requests.post(f"{server.url}/vae_mnist:predict",
                          json={"signature_name": "nosuch", "instances": [[0, 1]]}, timeout=30)
    assert reply.status_code == 400
    assert 'Serving signature name: "nosuch" not found in signature def' in reply.json()["error"]


def _examples():
    return [{"x": [1.0, 2.0], "tag": "a"}]


CLASSIFY = [
    # (path, body, status, words); classifier.cc/regressor.cc with
    # --enable_signature_method_name_check=false (the default): PreProcessClassification.
    ("vae_mnist:classify", {"examples": _examples()}, 400,
     "Expected one or two output Tensors, found 3"),
    ("cvae_mnist:classify", {"examples": _examples()}, 400, "Expected one input Tensor."),
    ("vae_mnist:classify", {"signature_name": "log_prob", "examples": _examples()}, 400,
     "No classification inputs found in SignatureDef: "),
    ("vae_mnist:regress", {"examples": _examples()}, 400, "Expected one output Tensor."),
    ("vae_mnist:regress", {"signature_name": "nosuch", "examples": _examples()}, 400,
     "No signature was found with the name: nosuch"),
    ("nope:classify", {"examples": _examples()}, 404, "nope"),
    ("nope:regress", {"examples": _examples()}, 404, "nope"),
    ("vae_mnist:classify", {"examples": []}, 400, "'examples' value is an empty array"),
    ("vae_mnist:regress", {"instances": []}, 400, "key 'examples' is expected and was not found"),
]


@pytest.mark.parametrize("path,body,status,words", CLASSIFY)
def test_classify_and_regress_answer_as_tf_serving(server, path, body, status, words):
    reply = requests.post(f"{server.url}/{path}", json=body, timeout=30)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["error"], reply.json()["error"]


def test_grpc_classify_and_regress_answer_as_tf_serving(server):
    stub = _stub(server)
    cases = [(stub.Classify, classification_pb2.ClassificationRequest(),
              grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")]
    for method, message in ((stub.Classify, classification_pb2.ClassificationRequest),
                            (stub.Regress, regression_pb2.RegressionRequest)):
        missing = message()
        missing.model_spec.name = "nope"
        cases.append((method, missing, grpc.StatusCode.NOT_FOUND, "nope"))
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "vae_mnist"
    cases.append((stub.Classify, classify, grpc.StatusCode.INVALID_ARGUMENT,
                  "Expected one or two output Tensors, found 3"))
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "cvae_mnist"
    cases.append((stub.Regress, regress, grpc.StatusCode.INVALID_ARGUMENT,
                  "Expected one input Tensor."))
    for method, request, code, words in cases:
        with pytest.raises(grpc.RpcError) as err:
            method(request, timeout=30)
        assert err.value.code() == code, err.value.details()
        assert words in err.value.details(), err.value.details()


def test_rest_client_returns_the_signature_dtypes(server):
    rest_client = Client("127.0.0.1", rest_port=server.rest_port)
    grpc_client = Client("127.0.0.1", grpc_port=server.grpc_port)
    for client in (rest_client, grpc_client):
        sample = client.sample("vae_mnist", SEEDS)
        assert sample["images"].dtype == np.uint8 and sample["images"].shape == (4, 28, 28, 1)
        assert sample["latents"].dtype == np.float32
        log_prob = client.log_prob("vae_mnist", sample["images"])
        assert log_prob["log_prob"].dtype == np.float32
    np.testing.assert_array_equal(rest_client.sample("vae_mnist", SEEDS)["images"],
                                  grpc_client.sample("vae_mnist", SEEDS)["images"])
    np.testing.assert_array_equal(
        rest_client.predict("vae_mnist", "sample", seed=SEEDS[:1])["latents"],
        grpc_client.predict("vae_mnist", "sample", seed=SEEDS[:1])["latents"])


def test_client_help_explains_every_flag():
    parser = client_module.build_parser()
    for action in parser._actions:
        assert action.help and action.help.strip(), f"{action.option_strings or action.dest} has no help"
    out = run_main("serving.client", "--help").stdout
    assert "--rest_port" in out and "--grpc_port" in out


def test_server_flags_name_genzoo_limits_and_the_body_read_timeout():
    args = server_module.parse_args(["--model_base_path", "x"])
    assert args.rest_body_read_timeout_seconds == 30
    text = run_main("serving.server", "--help").stdout
    flat = " ".join(text.split("options:", 1)[1].split())
    for flag in ("--max_rows", "--max_request_bytes", "--rest_body_read_timeout_seconds"):
        assert flag in flat
        after = flat.split(flag, 1)[1].split(" --", 1)[0]
        assert "genzoo" in after and "TF Serving" in after, after


# ------------------------------------------------- an in-process server of both APIs

class _Signature:
    """A stand-in for models.Signature: named specs and a NumPy function."""

    def __init__(self, name, inputs, fn):
        self.name = name
        self.inputs = inputs
        self.fn = fn
        self.outputs = {}
        self.signature_def = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")

    def __call__(self, inputs):
        return self.fn(inputs)


class _Version:
    model, number = "m", 1

    def __init__(self, signatures):
        self.signatures = {s.name: s for s in signatures}


class _Manager:
    def __init__(self, version):
        self.version = version

    def resolve(self, name, version=None, label=None):
        if name != "m":
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        return self.version


def _big_output(inputs):
    rows = len(inputs["seed"])
    rng = np.random.default_rng(0)
    return {"images": rng.integers(0, 256, (rows, 28, 28, 1)).astype(np.uint8),
            "latents": rng.normal(size=(rows, 256)).astype(np.float32)}


SIGNATURES = [
    _Signature("one", {"seed": tf.TensorSpec([None, 2], tf.int64)},
               lambda inputs: {"y": inputs["seed"][:, :1]}),
    _Signature("big_output", {"seed": tf.TensorSpec([None, 2], tf.int64)}, _big_output),
    _Signature("big_input", {"images": tf.TensorSpec([None, 28, 28, 1], tf.uint8)},
               lambda inputs: {"mean": inputs["images"].reshape(len(inputs["images"]), -1)
                               .mean(1, dtype=np.float32)}),
]


class InProcessServer:
    """genzoo's gRPC and REST front ends on one event loop (in a thread), as in server.py."""

    def __init__(self, **rest_args):
        self.predictor = predict.Predictor(_Manager(_Version(SIGNATURES)), max_rows=1 << 20)
        self.executor = concurrent.futures.ThreadPoolExecutor(8)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(rest_args), self.loop).result(60)

    async def _start(self, rest_args):
        self.grpc = grpc.aio.server()
        grpc_api.add_services(self.grpc, self.predictor, executor=self.executor, timeout=60)
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        await self.grpc.start()
        self.rest = rest.RestApi(self.predictor, self.executor, **rest_args)
        self.runner = web.AppRunner(self.rest.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.rest_port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.rest_port}/v1/models/m"

    async def _stop(self):
        await self.grpc.stop(0)
        await self.runner.cleanup()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.executor.shutdown(wait=False)


@pytest.fixture
def in_process():
    servers = []

    def start(**rest_args):
        servers.append(InProcessServer(**rest_args))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.mark.parametrize("case", ["big_output", "big_input"])
def test_a_large_rest_request_does_not_hold_up_grpc(in_process, case):
    """While a 4096-row REST request is parsed or rendered, 1-row gRPC requests go on: none
    of them waits half as long as the REST request takes to start answering."""
    srv = in_process(max_request_bytes=256 << 20)
    if case == "big_output":
        body = {"signature_name": "big_output", "inputs": {"seed": [[0, i] for i in range(4096)]}}
    else:
        images = np.random.default_rng(1).integers(0, 256, (4096, 28, 28, 1))
        body = {"signature_name": "big_input", "instances": images.tolist()}
    data = json.dumps(body).encode()
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}"))
    one = predict_pb2.PredictRequest()
    one.model_spec.name, one.model_spec.signature_name = "m", "one"
    one.inputs["seed"].CopyFrom(tf.make_tensor_proto(SEEDS[:1]))
    stub.Predict(one, timeout=60)  # connected and warm
    window = {}

    def big():
        window["start"] = time.perf_counter()
        reply = requests.post(f"{srv.url}:predict", data=data, stream=True, timeout=300)
        window["answer"] = time.perf_counter()
        window["status"] = reply.status_code
        window["body"] = reply.content

    thread = threading.Thread(target=big)
    # As the server does once its models are loaded (serving/server.py, _freeze_gc): the long-
    # lived objects of this test session, TensorFlow's and every earlier test's, leave the
    # collector's full passes, which would otherwise stall every thread for a second or more.
    gc.collect()
    gc.freeze()
    try:
        thread.start()
        calls = []
        while thread.is_alive():
            sent = time.perf_counter()
            stub.Predict(one, timeout=300)
            calls.append((sent, time.perf_counter()))
        thread.join()
    finally:
        gc.unfreeze()
    assert window["status"] == 200, window["body"][:300]
    took = window["answer"] - window["start"]
    waits = [done - sent for sent, done in calls if sent < window["answer"]]
    assert waits and max(waits) < took / 2, (
        f"a 1-row gRPC request took {max(waits):.2f} s of the {took:.2f} s the big REST "
        f"request took to answer ({len(waits)} requests)")
    reply = json.loads(window["body"])
    if case == "big_output":
        assert np.array(reply["outputs"]["images"], np.uint8).shape == (4096, 28, 28, 1)
    else:
        np.testing.assert_allclose(reply["predictions"], images.reshape(4096, -1).mean(1), rtol=1e-5)


def _stalled_upload(port, path="/v1/models/m:predict", body=b""):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + body)
    return sock


def _closed_within(sock, seconds):
    """True when the server closes ``sock`` within ``seconds`` (it may answer first)."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True
    return False


def test_stalled_uploads_do_not_take_rest_slots_and_are_closed(in_process):
    srv = in_process(max_inflight=2, body_read_timeout=1.0)
    stalled = [_stalled_upload(srv.rest_port, body=b'{"inputs": [[0,') for _ in range(4)]
    idle = socket.create_connection(("127.0.0.1", srv.rest_port))
    partial = socket.create_connection(("127.0.0.1", srv.rest_port))
    partial.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.3)
    try:
        for i in range(3):
            reply = requests.post(f"{srv.url}:predict",
                                  json={"signature_name": "one", "inputs": [[0, i]]}, timeout=30)
            assert reply.status_code == 200, reply.text
        for sock in stalled + [idle, partial]:
            assert _closed_within(sock, 6.0)
        reply = requests.post(f"{srv.url}:predict",
                              json={"signature_name": "one", "inputs": [[0, 1]]}, timeout=30)
        assert reply.status_code == 200, reply.text
    finally:
        for sock in stalled + [idle, partial]:
            sock.close()
