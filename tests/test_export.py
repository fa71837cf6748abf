"""Export: signatures, atomic versions, warmup records, fresh-process reload."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from conftest import ROOT, run_main
from serving import export
from zoo import saving

# Runs with `python -I` in an empty folder: no genzoo code can be imported.
FRESH = r"""
import importlib.util, sys
import numpy as np, tensorflow as tf
assert importlib.util.find_spec("zoo") is None and importlib.util.find_spec("serving") is None
path, inputs, out = sys.argv[1:]
model = tf.saved_model.load(path)
feed = dict(np.load(inputs))
results = {}
for name, fn in model.signatures.items():
    keys = fn.structured_input_signature[1]
    for key, value in fn(**{k: tf.constant(feed[k]) for k in keys}).items():
        results[f"{name}/{key}"] = value.numpy()
one = model.signatures["sample"](seed=tf.constant(feed["seed"][2:3]))["images"].numpy()
results["alone/images"] = one
np.savez(out, **results)
"""
K = 20


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("exported")
    model = saving.load_trained(tiny_run)
    path = export.export(model, base, log_prob_samples=K, run_dir=tiny_run)
    return model, base, path


def _feed(model):
    rng = np.random.default_rng(0)
    return {
        "images": rng.integers(0, 256, (4, 28, 28, 1)).astype(np.uint8),
        "seed": np.array([[5, i] for i in range(4)], np.int64),
        "latents": rng.normal(size=(4, model.latent_dim)).astype(np.float32),
    }


def test_layout_signatures_and_config(exported):
    model, base, path = exported
    assert path == base / "vae_mnist" / "1"
    assert not [p for p in (base / "vae_mnist").iterdir() if p.name.startswith(".tmp")]
    for name in ("saved_model.pb", "variables", "genzoo/keras_config.json", "genzoo/train_info.json"):
        assert (path / name).exists(), name
    assert json.loads((path / "genzoo" / "export_info.json").read_text())["log_prob_samples"] == K
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "sample", "log_prob", "encode",
                                      "decode", "reconstruct"}
    for name, fn in loaded.signatures.items():
        assert all(spec.shape[0] is None for spec in fn.structured_input_signature[1].values()), name
        assert not any(key.startswith("output_") for key in fn.structured_outputs), name
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / "models.config").read_text(), config)
    assert [(m.name, m.base_path) for m in config.model_config_list.config] == [("vae_mnist", "vae_mnist")]
    docker = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / "models.docker.config").read_text(), docker)
    assert [(m.name, m.base_path) for m in docker.model_config_list.config] == [("vae_mnist", "/models/vae_mnist")]


def _config(path):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(path.read_text(), config)
    return config


def test_the_zoo_has_a_config_stock_tf_serving_accepts():
    """models.docker.config serves what models.config serves, at absolute paths under /models.

    Stock TF Serving rejects relative base paths (server_core.cc, ValidateModelConfigList:
    "Expected model ... to have an absolute path or URI"); the README's docker command
    mounts exported/ at /models and serves this file.
    """
    zoo = ROOT / "exported"
    relative, docker = _config(zoo / "models.config"), _config(zoo / "models.docker.config")
    assert docker == export.docker_config(relative)
    for entry in docker.model_config_list.config:
        assert entry.base_path == f"/models/{entry.name}" and (zoo / entry.name).is_dir(), entry


def test_warmup_records_name_every_signature(exported):
    _, _, path = exported
    records = tf.data.TFRecordDataset(str(path / "assets.extra" / export.WARMUP_FILE))
    names = set()
    for raw in records:
        log = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        names.add(log.predict_log.request.model_spec.signature_name)
        assert log.predict_log.request.model_spec.name == "vae_mnist"
    assert names == {"sample", "log_prob", "encode", "decode", "reconstruct"}


def test_fresh_process_without_genzoo_matches_keras(exported, tmp_path):
    model, _, path = exported
    feed = _feed(model)
    np.savez(tmp_path / "in.npz", **feed)
    (tmp_path / "fresh.py").write_text(FRESH)
    result = subprocess.run(
        [sys.executable, "-I", "fresh.py", str(path), "in.npz", "out.npz"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    got = dict(np.load(tmp_path / "out.npz"))
    endpoints = model.serving_endpoints(log_prob_samples=K)
    for name, (fn, specs) in endpoints.items():
        want = fn(*[tf.constant(feed[s.name]) for s in specs])
        for key, value in want.items():
            value, served = np.asarray(value), got[f"{name}/{key}"]
            if value.dtype == np.uint8:  # thresholded pixels: allow a rare rounding flip
                assert np.mean(value != served) < 1e-3, f"{name}/{key}"
            else:
                np.testing.assert_allclose(served, value, rtol=1e-4, atol=1e-3, err_msg=f"{name}/{key}")
    np.testing.assert_array_equal(got["serving_default/images"], got["sample/images"])
    np.testing.assert_array_equal(got["alone/images"][0], got["sample/images"][2])


def test_versions_are_never_overwritten_and_failures_leave_nothing(exported, monkeypatch):
    model, base, first = exported
    before = (first / "variables" / "variables.data-00000-of-00001").read_bytes()
    with pytest.raises(FileExistsError):
        export.export(model, base, version=1)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export, "write_warmup", broken)
    with pytest.raises(OSError, match="disk full"):
        export.export(model, base)
    folder = base / "vae_mnist"
    assert sorted(p.name for p in folder.iterdir()) == ["1"]
    assert (first / "variables" / "variables.data-00000-of-00001").read_bytes() == before
    monkeypatch.undo()
    assert export.export(model, base).name == "2"
    assert saving.versions("vae_mnist", base) == [1, 2]


def test_export_command_errors_are_clear(tmp_path):
    result = run_main("serving.export", tmp_path / "nothing", "--base_dir", tmp_path)
    assert result.returncode != 0 and "No Keras model" in result.stderr
    (tmp_path / "bad.keras").write_text("not a zip")
    result = run_main("serving.export", tmp_path / "bad.keras", "--base_dir", tmp_path)
    assert result.returncode != 0 and "not a loadable Keras model" in result.stderr
