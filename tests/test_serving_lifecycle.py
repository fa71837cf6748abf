"""The served models' lifecycle under faults: failed loads, config reloads, start-up.

In-process tests drive ``serving.models.ModelManager`` one poll at a time; the
end-to-end ones start ``python -m serving`` (tests/serving_helpers.py).
"""
import logging
import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving import export, models
from serving.errors import ServingError
from serving_helpers import ServerProcess
from zoo import registry

DATA = "variables/variables.data-00000-of-00001"
SAMPLE = {"seed": np.array([[0, 1]], np.int64), "label": np.array([3], np.int64)}


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """Exported untrained tiny models: cgan_mnist (a ``generate`` signature) and
    cvae_mnist (an ``encode`` signature), so a test can tell which one is served."""
    base = tmp_path_factory.mktemp("lifecycle_zoo")
    export.export(registry.build("cgan_mnist", filters=4, latent_dim=8), base)
    export.export(registry.build("cvae_mnist", hidden_units=(32,)), base, log_prob_samples=8)
    return base


def _gan(tiny_zoo, dest):
    shutil.copytree(tiny_zoo / "cgan_mnist" / "1", dest)
    return dest


def _vae(tiny_zoo, dest):
    shutil.copytree(tiny_zoo / "cvae_mnist" / "1", dest)
    return dest


def _truncate(version_dir):
    data = version_dir / DATA
    data.write_bytes(data.read_bytes()[:100])


def _config(*entries):
    config = model_server_config_pb2.ModelServerConfig()
    for entry in entries:
        text_format.Parse(entry, config.model_config_list.config.add())
    return config


def _states(manager, name):
    return {n: state for n, state, _ in manager.status(name)}


def _errors(manager, name):
    return {n: error for n, _, error in manager.status(name)}


class _CountingWarmup:
    """A warmup runner that counts the loads of each version folder (one call per load)."""

    def __init__(self):
        self.loads = {}

    def __call__(self, version, request):
        self.loads.setdefault(version.path, set()).add(id(version))

    def count(self, path):
        return len(self.loads.get(path, ()))


# ------------------------------------------------------------------ defect 1
def test_a_truncated_variables_file_ends_its_version_and_is_retried_once_repaired(tiny_zoo, tmp_path):
    gan1 = _gan(tiny_zoo, tmp_path / "gan" / "1")
    _vae(tiny_zoo, tmp_path / "vae" / "1")
    warmup = _CountingWarmup()
    manager = models.ModelManager(
        _config('name: "gan" base_path: "gan"', 'name: "vae" base_path: "vae"'), tmp_path, warmup)
    manager.poll()
    gan2 = _gan(tiny_zoo, tmp_path / "gan" / "2")
    _truncate(gan2)  # tf.saved_model.load raises IndexError on it
    _vae(tiny_zoo, tmp_path / "vae" / "2")
    manager.poll()
    assert _states(manager, "gan") == {2: "END", 1: "AVAILABLE"}
    assert "failed to load" in _errors(manager, "gan")[2] and str(gan2) in _errors(manager, "gan")[2]
    assert manager.resolve("gan").number == 1  # the working version keeps serving
    assert _states(manager, "vae") == {2: "AVAILABLE", 1: "END"}  # the pass went on

    manager.poll()  # nothing changed on disk: no retry
    assert _states(manager, "gan") == {2: "END", 1: "AVAILABLE"}
    assert warmup.count(gan1) == 1

    # Repaired with a copy that keeps the original's modification time (cp -p).
    shutil.copy2(tiny_zoo / "cgan_mnist" / "1" / DATA, gan2 / DATA)
    manager.poll()
    assert _states(manager, "gan") == {2: "AVAILABLE", 1: "END"}
    assert manager.resolve("gan").number == 2
    assert manager.resolve("gan").signatures["sample"](SAMPLE)["images"].shape == (1, 28, 28, 1)


def test_any_exception_while_loading_ends_the_version_with_its_message(tiny_zoo, tmp_path):
    class OddFailure(Exception):
        pass

    def warmup(version, request):
        if version.model == "odd":
            raise OddFailure("warmup record 0 exploded")

    _gan(tiny_zoo, tmp_path / "odd" / "1")
    _vae(tiny_zoo, tmp_path / "vae" / "1")
    manager = models.ModelManager(
        _config('name: "odd" base_path: "odd"', 'name: "vae" base_path: "vae"'), tmp_path, warmup)
    manager.poll()
    assert _states(manager, "odd") == {1: "END"}
    assert "OddFailure: warmup record 0 exploded" in _errors(manager, "odd")[1]
    assert _states(manager, "vae") == {1: "AVAILABLE"}
    with pytest.raises(ServingError) as err:
        manager.resolve("odd")
    assert err.value.code == "NOT_FOUND"


# ------------------------------------------------------------------ defect 3
def test_unloaded_versions_stay_in_the_status_and_a_model_without_versions_is_unloaded(
        tiny_zoo, tmp_path, caplog):
    base = tmp_path / "gan"
    _gan(tiny_zoo, base / "1")
    manager = models.ModelManager(_config(f'name: "gan" base_path: "{base}"'), tmp_path)
    manager.poll()
    _gan(tiny_zoo, base / "2")
    manager.poll()
    assert _states(manager, "gan") == {2: "AVAILABLE", 1: "END"}  # TF Serving keeps END states

    # The base path disappears (an unmounted volume): TF Serving's poll fails, nothing unloads.
    held = manager.resolve("gan")
    base.rename(tmp_path / "gan.away")
    with caplog.at_level(logging.WARNING, logger="genzoo.serving"):
        manager.poll()
    assert _states(manager, "gan") == {2: "AVAILABLE", 1: "END"}
    assert "Could not find base path" in caplog.text
    (tmp_path / "gan.away").rename(base)

    # Every version folder is removed: TF Serving aspires no version and unloads them all.
    caplog.clear()
    shutil.rmtree(base / "1")
    shutil.rmtree(base / "2")
    with caplog.at_level(logging.WARNING, logger="genzoo.serving"):
        manager.poll()
    assert _states(manager, "gan") == {2: "END", 1: "END"}
    assert "No versions of servable gan found under base path" in caplog.text
    with pytest.raises(ServingError, match="Latest"):
        manager.resolve("gan")
    # A request that resolved version 2 before the unload still completes.
    assert held.signatures["sample"](SAMPLE)["images"].shape == (1, 28, 28, 1)


# ------------------------------------------------------------------ defect 2
def test_invalid_configs_are_refused_and_change_nothing(tiny_zoo, tmp_path):
    _gan(tiny_zoo, tmp_path / "gan" / "1")
    _vae(tiny_zoo, tmp_path / "vae" / "1")
    manager = models.ModelManager(
        _config('name: "a" base_path: "gan"', 'name: "b" base_path: "vae"'), tmp_path)
    manager.poll()
    before = manager.resolve("a"), manager.resolve("b")
    bad = [
        (model_server_config_pb2.ModelServerConfig(), "INVALID_ARGUMENT", "ModelConfigList"),
        (text_format.Parse("model_config_list {}", model_server_config_pb2.ModelServerConfig()),
         "INVALID_ARGUMENT", "no models"),
        (_config('name: "a" base_path: "gan"', 'name: "a" base_path: "vae"'),
         "INVALID_ARGUMENT", "multiple times"),
        (_config('name: "a"'), "INVALID_ARGUMENT", "base_path"),
        (_config('base_path: "gan"'), "INVALID_ARGUMENT", "name"),
        (_config('name: "a" base_path: "gan" model_platform: "pytorch"'), "INVALID_ARGUMENT", "pytorch"),
        (_config('name: "a" base_path: "gan" version_labels { key: "stable" value: 7 }'),
         "FAILED_PRECONDITION", "Request to assign label to version 7 of model a"),
    ]
    for config, code, words in bad:
        with pytest.raises(ServingError) as err:
            manager.reload_config(config)
        assert err.value.code == code and words in err.value.message, err.value.message
        assert manager.resolve("a") is before[0] and manager.resolve("b") is before[1]
        assert set(manager.models) == {"a", "b"}


def test_a_valid_config_is_applied_whole(tiny_zoo, tmp_path):
    _gan(tiny_zoo, tmp_path / "gan" / "1")
    _vae(tiny_zoo, tmp_path / "vae" / "1")
    _gan(tiny_zoo, tmp_path / "gan2" / "1")
    manager = models.ModelManager(
        _config('name: "a" base_path: "gan"', 'name: "b" base_path: "vae"'), tmp_path)
    manager.poll()
    assert "generate" in manager.resolve("a").signatures
    in_flight = manager.resolve("b")
    # a moves to the vae's folder, b is removed, c is added, a gets a label.
    manager.reload_config(_config(
        'name: "a" base_path: "vae" version_labels { key: "stable" value: 1 }',
        'name: "c" base_path: "gan2"'))
    assert set(manager.models) == {"a", "c"}
    assert "encode" in manager.resolve("a").signatures  # served from the new base path
    assert manager.resolve("a", label="stable").path == tmp_path / "vae" / "1"
    assert _states(manager, "c") == {1: "AVAILABLE"}
    with pytest.raises(ServingError) as err:
        manager.resolve("b")
    assert err.value.code == "NOT_FOUND"
    assert _states(manager, "b") == {1: "END"}  # removed, still listed as TF Serving does
    assert in_flight.signatures["sample"](SAMPLE)["images"].shape == (1, 28, 28, 1)


def test_a_reload_whose_added_model_fails_is_applied_and_says_so(tiny_zoo, tmp_path):
    _gan(tiny_zoo, tmp_path / "gan" / "1")
    _truncate(_vae(tiny_zoo, tmp_path / "vae" / "1"))
    manager = models.ModelManager(_config('name: "a" base_path: "gan"'), tmp_path)
    manager.poll()
    with pytest.raises(models.ModelsUnavailable) as err:
        manager.reload_config(_config('name: "a" base_path: "gan"', 'name: "b" base_path: "vae"'))
    assert "1 model(s) did not become available" in str(err.value) and "IndexError" in str(err.value)
    assert _states(manager, "b") == {1: "END"} and _states(manager, "a") == {1: "AVAILABLE"}


def test_version_labels_must_point_at_available_versions_unless_allowed(tiny_zoo, tmp_path):
    _gan(tiny_zoo, tmp_path / "gan" / "1")
    labelled = _config('name: "a" base_path: "gan" version_labels { key: "stable" value: 1 }')
    # At start-up nothing is available yet: TF Serving refuses labels without the flag.
    with pytest.raises(ServingError) as err:
        models.ModelManager(labelled, tmp_path)
    assert err.value.code == "FAILED_PRECONDITION"
    assert "allow_version_labels_for_unavailable_models" in err.value.message
    manager = models.ModelManager(labelled, tmp_path, allow_version_labels_for_unavailable_models=True)
    manager.poll()
    assert manager.resolve("a", label="stable").number == 1
    # The flag lets a new label point at a version that is not available ...
    manager.reload_config(_config('name: "a" base_path: "gan" version_labels { key: "stable" value: 1 } '
                                  'version_labels { key: "canary" value: 2 }'))
    with pytest.raises(ServingError, match="Specific"):
        manager.resolve("a", label="canary")
    # ... but never move an existing label to one.
    with pytest.raises(ServingError) as err:
        manager.reload_config(_config('name: "a" base_path: "gan" version_labels { key: "stable" value: 2 }'))
    assert err.value.code == "FAILED_PRECONDITION"
    assert manager.resolve("a", label="stable").number == 1


# ------------------------------------------------------------ end to end
def _grpc(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    return (prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel))


def _wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _write_config(path, *entries):
    path.write_text(text_format.MessageToString(_config(*entries)))


def test_ports_answer_while_models_load_and_a_broken_model_stops_nothing(tiny_zoo, tmp_path):
    _vae(tiny_zoo, tmp_path / "good" / "1")
    _truncate(_gan(tiny_zoo, tmp_path / "broken" / "1"))
    slow = _gan(tiny_zoo, tmp_path / "slow" / "1")
    # The slow model's saved_model.pb is a FIFO: loading it blocks until the test writes it.
    real_pb = (slow / "saved_model.pb").read_bytes()
    (slow / "saved_model.pb").unlink()
    os.mkfifo(slow / "saved_model.pb")
    config = tmp_path / "models.config"
    _write_config(config, 'name: "slow" base_path: "slow"', 'name: "broken" base_path: "broken"',
                  'name: "good" base_path: "good"')
    server = ServerProcess("--model_config_file", config, log_path=tmp_path / "server.log")
    try:
        _wait_for(lambda: server.status("slow") == ["LOADING"], 60, "the REST port while loading")
        reply = server.post("slow:predict", {"instances": [[0, 1]]})
        assert reply.status_code == 404 and "Servable not found" in reply.json()["error"], reply.text
        predict, model_service = _grpc(server)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "good"
        states = [v.state for v in model_service.GetModelStatus(request, timeout=10).model_version_status]
        assert states in ([get_model_status_pb2.ModelVersionStatus.START],
                          [get_model_status_pb2.ModelVersionStatus.LOADING]), states
        grpc_request = predict_pb2.PredictRequest()
        grpc_request.model_spec.name = "good"
        with pytest.raises(grpc.RpcError) as err:
            predict.Predict(grpc_request, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        def release():  # write the FIFO once, then put the real file in its place
            staged = slow / "saved_model.pb.real"
            staged.write_bytes(real_pb)
            with open(slow / "saved_model.pb", "wb") as fifo:
                os.replace(staged, slow / "saved_model.pb")
                fifo.write(real_pb)

        writer = threading.Thread(target=release, daemon=True)
        writer.start()
        server.wait(("slow", "good"), timeout=120)
        writer.join(10)
        broken = server.versions("broken")[1]
        assert broken["state"] == "END" and "failed to load" in broken["status"]["error_message"]
        assert server.post("good:predict", {"instances": [{"seed": [0, 1], "label": 2}]}).status_code == 200
    finally:
        server.stop()


def test_reload_errors_are_grpc_errors_and_a_bad_config_file_is_ignored(tiny_zoo, tmp_path):
    _gan(tiny_zoo, tmp_path / "gan" / "1")
    _vae(tiny_zoo, tmp_path / "vae" / "1")
    config = tmp_path / "models.config"
    _write_config(config, 'name: "m" base_path: "gan"')
    server = ServerProcess("--model_config_file", config, "--model_config_file_poll_wait_seconds", 0.3,
                           models=("m",), log_path=tmp_path / "server.log")
    try:
        _, model_service = _grpc(server)
        cases = [
            (model_server_config_pb2.ModelServerConfig(), grpc.StatusCode.INVALID_ARGUMENT, "ModelConfigList"),
            (_config('name: "m"'), grpc.StatusCode.INVALID_ARGUMENT, "base_path"),
            (_config('name: "m" base_path: "gan" version_labels { key: "l" value: 5 }'),
             grpc.StatusCode.FAILED_PRECONDITION, "not currently available"),
        ]
        for bad, code, words in cases:
            request = model_management_pb2.ReloadConfigRequest()
            request.config.CopyFrom(bad)
            with pytest.raises(grpc.RpcError) as err:
                model_service.HandleReloadConfigRequest(request, timeout=60)
            assert err.value.code() == code and words in err.value.details(), err.value.details()
        assert server.status("m") == ["AVAILABLE"]
        with pytest.raises(grpc.RpcError) as err:
            model_service.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "Missing ModelSpec" in err.value.details()

        # Polled config file: an empty list, then a syntax error, are logged and ignored.
        config.write_text("model_config_list {}\n")
        time.sleep(1.5)
        assert server.status("m") == ["AVAILABLE"]
        config.write_text("model_config_list { config { name: 'm' base_pat: 'x' } }\n")
        time.sleep(1.5)
        assert server.status("m") == ["AVAILABLE"]
        log = (tmp_path / "server.log").read_text()
        assert "no models" in log and "base_pat" in log
        # A changed base path is applied: m is now served from the vae's folder.
        _write_config(config, 'name: "m" base_path: "vae"')

        def moved():
            meta = requests.get(f"{server.url}/m/metadata", timeout=10).json()
            return "encode" in meta.get("metadata", {}).get("signature_def", {}).get("signature_def", {})

        _wait_for(moved, 60, "m to be served from its new base path")
    finally:
        server.stop()
