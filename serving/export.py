"""Exports a trained zoo model as a TF Serving SavedModel version.

    python -m serving.export runs/vae_mnist [--base_dir exported] [--version N]

writes ``<base_dir>/<preset>/<version>/`` with every serving endpoint of the
model as a signature (the first is also ``serving_default``), warmup requests
in ``assets.extra/`` and, in ``genzoo/``, the Keras config and run record
(the weights are stored once, in the SavedModel's variables; ``zoo.saving``
owns that layout and rebuilds the trainable Keras model from the two).
The version folder is written under a hidden temporary name and renamed into
place, so a half-written version is never visible to a server; an existing
version is never overwritten. ``<base_dir>/models.config`` gains the preset (base
paths relative to it, for genzoo's embedded server), and ``models.docker.config``
is rewritten from it with absolute ``/models/<name>`` base paths, for stock TF
Serving with the folder mounted at /models.
"""
import argparse
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from zoo import saving

WARMUP_FILE = "tf_serving_warmup_requests"


def _example_inputs(specs, rows=2, examples=None):
    """Small valid inputs for warmup: zeros, with seeds 0..rows-1 and the model's
    ``serving_examples`` (cycled over the rows) where it gives them."""
    inputs = {}
    examples = examples or {}
    for spec in specs:
        shape = [rows] + [int(d) for d in spec.shape[1:]]
        if spec.name == "seed":
            value = np.stack([np.zeros(rows), np.arange(rows)], axis=1)
        elif spec.name in examples:
            given = examples[spec.name]
            value = np.array([given[i % len(given)] for i in range(rows)], dtype=object)
            inputs[spec.name] = value
            continue
        else:
            value = np.zeros(shape)
        inputs[spec.name] = value.astype(spec.dtype.as_numpy_dtype)
    return inputs


def write_warmup(path, model_name, endpoints, examples=None):
    """Writes TF Serving warmup records (PredictionLog) for every endpoint."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name, (_, specs) in endpoints.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=name)
            )
            for key, value in _example_inputs(specs, examples=examples).items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


MODELS_CONFIG = "models.config"  # base paths relative to its folder: the embedded server's
DOCKER_CONFIG = "models.docker.config"  # the same models at /models/<name>: stock TF Serving's
DOCKER_MOUNT = "/models"  # where the Docker command of the README mounts the zoo folder


def _write_config(path, config):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text_format.MessageToString(config))
    tmp.replace(path)


def docker_config(config, mount=DOCKER_MOUNT):
    """``config`` with every relative base path made absolute under ``mount``.

    Stock TF Serving refuses relative base paths (ValidateModelConfigList in
    server_core.cc: "Expected model ... to have an absolute path or URI"), so
    the zoo folder mounted at ``mount`` in a container is served through this copy.
    """
    out = model_server_config_pb2.ModelServerConfig()
    out.CopyFrom(config)
    for entry in out.model_config_list.config:
        if not entry.base_path.startswith("/") and "://" not in entry.base_path:
            entry.base_path = f"{mount.rstrip('/')}/{entry.base_path}"
    return out


def add_to_models_config(base_dir, name):
    """Adds ``name`` to ``base_dir/models.config`` (TF Serving's text format) and rewrites
    ``base_dir/models.docker.config`` from it; returns the first."""
    path = pathlib.Path(base_dir) / MODELS_CONFIG
    config = model_server_config_pb2.ModelServerConfig()
    if path.exists():
        text_format.Parse(path.read_text(), config)
    if not any(m.name == name for m in config.model_config_list.config):
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = name  # relative to the folder the server runs in
        entry.model_platform = "tensorflow"
        ordered = sorted(config.model_config_list.config, key=lambda m: m.name)
        del config.model_config_list.config[:]
        config.model_config_list.config.extend(ordered)
        _write_config(path, config)
    _write_config(path.parent / DOCKER_CONFIG, docker_config(config))
    return path


def write_saved_model(model, endpoints, path):
    """Saves ``endpoints`` as signatures (the first also as serving_default).

    The module tracks the tf.Variables the signature functions capture, not
    the Keras objects around them: TF Serving's session-based loader (and
    TF1's) can only bind captured variables that the SavedModel tracks directly.
    """
    module = tf.Module()
    signatures, captured = {}, {}
    for name, (fn, specs) in endpoints.items():
        function = tf.function(fn, input_signature=specs)
        concrete = function.get_concrete_function()
        for variable in concrete.variables:
            captured.setdefault(id(variable), variable)
        setattr(module, name, function)
        signatures[name] = concrete
    # The model's weights first, in model.weights order, so saving.load_keras can find them.
    weights = [w.value for w in model.weights]
    setattr(module, saving.WEIGHTS, weights)
    known = {id(v) for v in weights}
    module.captured_variables = [v for k, v in captured.items() if k not in known]
    signatures["serving_default"] = next(iter(signatures.values()))
    tf.saved_model.save(module, str(path), signatures=signatures)


def inference_copy(model):
    """The model without optimizer or metric state: what is served is the weights."""
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def export(model, base_dir, name=None, version=None, log_prob_samples=100, run_dir=None):
    """Writes ``base_dir/name/version`` atomically and returns its path.

    Args:
        model: a built zoo model (has ``serving_endpoints``).
        base_dir: the zoo folder (TF Serving's base paths live under it).
        name: model name; defaults to the model's name (its preset).
        version: version number; defaults to the latest + 1.
        log_prob_samples: k of the IWAE bound behind latent models' ``log_prob``.
        run_dir: training folder whose ``train_info.json`` travels along.
    """
    name = name or model.name
    model = inference_copy(model)
    model_dir = pathlib.Path(base_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    existing = saving.versions(name, base_dir)
    version = int(version) if version is not None else max(existing, default=0) + 1
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; exported versions are never overwritten")

    endpoints = model.serving_endpoints(log_prob_samples=log_prob_samples)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        target = tmp / "model"
        write_saved_model(model, endpoints, target)
        write_warmup(target / "assets.extra" / WARMUP_FILE, name, endpoints, model.serving_examples())
        info = {"model": name, "version": version, "log_prob_samples": log_prob_samples}
        saving.write_genzoo_files(model, target, info, run_dir)
        os.replace(target, final)  # atomic on one file system
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    add_to_models_config(base_dir, name)
    return final


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m serving.export", description=__doc__.split("\n")[0])
    p.add_argument("model", help="run folder (with model.keras) or a .keras file")
    p.add_argument("--base_dir", default="exported")
    p.add_argument("--name", help="model name (default: the preset the model was built from)")
    p.add_argument("--version", type=int)
    p.add_argument("--log_prob_samples", type=int, default=100,
                   help="k of the IWAE bound served by log_prob (latent models)")
    args = p.parse_args(argv)
    try:
        model = saving.load_trained(args.model)
        run_dir = args.model if pathlib.Path(args.model).is_dir() else None
        path = export(model, args.base_dir, args.name, args.version, args.log_prob_samples, run_dir)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"exported {path}")


if __name__ == "__main__":
    main()
