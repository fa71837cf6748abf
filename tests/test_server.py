"""End-to-end tests of the embedded server with the official gRPC stub, HTTP and the client."""
import concurrent.futures
import shutil
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2
from google.protobuf import text_format

from serving import export
from serving.client import Client, ServerError
from serving_helpers import ServerProcess, predict_request as _request
from zoo import registry, saving

SEEDS = np.array([[3, i] for i in range(4)], np.int64)


FAMILIES = ("vae_mnist", "cvae_mnist", "pixelcnn_mnist", "cgan_mnist", "pix2pix_superres_mnist",
            "cyclegan_thick_mnist", "text2image_mnist")
CAPTIONS = np.array(["a seven", " A thick   TWO", "a thin zero"], object)


@pytest.fixture(scope="module")
def zoo_dir(tiny_run, tmp_path_factory):
    """A zoo folder with a trained tiny vae_mnist and small untrained models of the other
    families' contracts: cvae_mnist, pixelcnn_mnist, cgan_mnist, and the translation
    models (a 7x7 input; two signatures), and text2image_mnist (a string input)."""
    base = tmp_path_factory.mktemp("zoo")
    export.export(saving.load_trained(tiny_run), base, log_prob_samples=8)
    export.export(registry.build("cvae_mnist", hidden_units=(32,)), base, log_prob_samples=8)
    export.export(registry.build("pixelcnn_mnist", filters=4, num_blocks=1), base)
    export.export(registry.build("cgan_mnist", filters=4, latent_dim=8), base)
    for name in ("pix2pix_superres_mnist", "cyclegan_thick_mnist"):
        export.export(registry.build(name, filters=4, d_filters=4), base)
    export.export(registry.build("text2image_mnist", filters=4, latent_dim=8, embed_dim=4), base)
    return base


@pytest.fixture(scope="module")
def server(zoo_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    proc = ServerProcess("--model_config_file", zoo_dir / "models.config",
                         models=FAMILIES, log_path=log)
    yield proc
    proc.stop()


def _stub(server):
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    return (prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel))


def _feeds(model_dir):
    """Valid inputs for every signature of the SavedModel at ``model_dir``."""
    loaded = tf.saved_model.load(str(model_dir))
    rng = np.random.default_rng(1)
    feeds = {}
    for name, fn in loaded.signatures.items():
        feed = {}
        for key, spec in fn.structured_input_signature[1].items():
            shape = [3] + spec.shape.as_list()[1:]
            if key == "seed":
                feed[key] = SEEDS[:3]
            elif key == "label":
                feed[key] = np.array([0, 4, 9], np.int64)
            elif key == "text":
                feed[key] = CAPTIONS
            elif spec.dtype == tf.uint8:
                feed[key] = rng.integers(0, 256, shape).astype(np.uint8)
            else:
                feed[key] = rng.normal(size=shape).astype(spec.dtype.as_numpy_dtype)
        feeds[name] = (feed, {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feed.items()}).items()})
    return feeds


def _assert_outputs(got, want, what):
    assert set(got) == set(want), what
    for key in want:
        np.testing.assert_allclose(np.asarray(got[key], want[key].dtype), want[key],
                                   rtol=1e-4, atol=1e-3, err_msg=f"{what}/{key}")


def test_every_signature_over_grpc_rest_and_client(server, zoo_dir):
    predict, _ = _stub(server)
    rest_client = Client("127.0.0.1", rest_port=server.rest_port)
    grpc_client = Client("127.0.0.1", grpc_port=server.grpc_port)
    for model in FAMILIES:
        for signature, (feed, want) in _feeds(zoo_dir / model / "1").items():
            reply = predict.Predict(_request(model, signature, **feed), timeout=60)
            assert reply.model_spec.version.value == 1
            _assert_outputs({k: tf.make_ndarray(v) for k, v in reply.outputs.items()}, want,
                            f"grpc {model}:{signature}")
            rows = [{k: np.asarray(v[i]).tolist() for k, v in feed.items()} for i in range(3)]
            body = requests.post(f"{server.url}/{model}:predict",
                                 json={"signature_name": signature, "instances": rows}).json()
            if len(want) == 1:  # one output: TF Serving's rows hold bare values
                got = {k: np.array(body["predictions"]) for k in want}
            else:
                got = {k: np.array([row[k] for row in body["predictions"]]) for k in want}
            _assert_outputs(got, want, f"rest rows {model}:{signature}")
            for client in (rest_client, grpc_client):
                _assert_outputs(client.predict(model, signature, **feed), want,
                                f"{client.protocol} client {model}:{signature}")
    # the status as TF Serving's REST API writes it, over either protocol
    assert rest_client.status("vae_mnist") == grpc_client.status("vae_mnist") == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    for client in (rest_client, grpc_client):
        with pytest.raises(ServerError, match="nope"):
            client.status("nope")


def test_rest_formats_and_metadata(server):
    seeds = SEEDS[:2].tolist()
    columnar = server.post("vae_mnist:predict", {"signature_name": "sample", "inputs": {"seed": seeds}})
    bare = server.post("vae_mnist/versions/1:predict", {"signature_name": "sample", "inputs": seeds})
    rows = server.post("vae_mnist:predict", {"instances": seeds})  # serving_default = sample
    assert columnar.status_code == bare.status_code == rows.status_code == 200
    assert columnar.json() == bare.json()
    assert np.array_equal(columnar.json()["outputs"]["images"],
                          [r["images"] for r in rows.json()["predictions"]])
    status = requests.get(f"{server.url}/vae_mnist").json()
    assert status == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    meta = requests.get(f"{server.url}/vae_mnist/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "vae_mnist", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) >= {"sample", "log_prob", "encode", "decode", "reconstruct", "serving_default"}
    assert sigs["sample"]["inputs"]["seed"]["dtype"] == "DT_INT64"


def test_grpc_status_metadata_and_unsupported(server):
    predict, models = _stub(server)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "cvae_mnist"
    status = models.GetModelStatus(request, timeout=30)
    assert [(v.version, v.state) for v in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    meta_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta_request.model_spec.name = "cvae_mnist"
    meta = predict.GetModelMetadata(meta_request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(signature_map)
    assert "label" in signature_map.signature_def["sample"].inputs
    with pytest.raises(grpc.RpcError) as err:
        predict.Classify(request=__import__("tensorflow_serving.apis.classification_pb2",
                                            fromlist=["x"]).ClassificationRequest(), timeout=30)
    # TF Serving (classification_service.cc): a request without a model spec is INVALID_ARGUMENT.
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


BAD_REST = [
    # (path, body, status, words in the error)
    ("nope:predict", {"instances": [[0, 1]]}, 404, "nope"),
    ("vae_mnist/versions/7:predict", {"instances": [[0, 1]]}, 404, "7"),
    ("vae_mnist/labels/stable:predict", {"instances": [[0, 1]]}, 400, "label"),
    ("vae_mnist:predict", {"signature_name": "smaple", "instances": [[0, 1]]}, 400, "smaple"),
    ("vae_mnist:predict", {"instances": [[0, 1, 2]]}, 400, "shape"),
    ("vae_mnist:predict", {"instances": [[0.5, 1]]}, 400, "integers"),
    ("vae_mnist:predict", {"instances": [["a", "b"]]}, 400, "numbers"),
    ("vae_mnist:predict", {"instances": [[0, 1], [2]]}, 400, "rectangular"),
    ("vae_mnist:predict", {"instances": []}, 400, "non-empty"),
    ("vae_mnist:predict", {"inputs": {"seed": [[0, 1]]}, "instances": [[0, 1]]}, 400, "exactly one"),
    ("vae_mnist:predict", {"signature_name": "sample"}, 400, "exactly one"),
    # TF Serving ignores keys of a columnar 'inputs' object that name no input, but not of a row
    ("vae_mnist:predict", {"instances": [{"seed": [0, 1], "extra": 1}]}, 400, "extra"),
    ("vae_mnist:predict", {"signature_name": "encode", "inputs": {"seed": [[0, 1]]}}, 400, "images"),
    ("vae_mnist:predict", {"signature_name": "encode", "inputs": [[[[300]] * 28] * 28]}, 400, "range"),
    ("vae_mnist:predict", {"inputs": {"seed": [[{"b64": "AAAA"}, 1]]}}, 400, "b64"),
    ("vae_mnist:predict", {"inputs": {"seed": [[2 ** 70, 1]]}}, 400, "range"),
    ("vae_mnist:predict", {"inputs": {"seed": [[None, 1]]}}, 400, "numbers"),
    ("vae_mnist:predict", [1, 2], 400, "object"),
    ("vae_mnist:predict", {"signature_name": 3, "inputs": [[0, 1]]}, 400, "signature_name"),
    ("cvae_mnist:predict", {"signature_name": "sample", "inputs": {"seed": [[0, 1]], "label": [10]}}, 400, "label"),
    ("cvae_mnist:predict", {"signature_name": "sample", "inputs": {"seed": [[0, 1]], "label": [1, 2]}}, 400, "batch"),
    ("vae_mnist:predict", {"inputs": np.zeros((5000, 2), int).tolist()}, 400, "max_rows"),
    # a caption outside the grammar: the error names the word
    ("text2image_mnist:predict", {"inputs": {"seed": [[0, 1], [0, 2]], "text": ["a one", "a sevn"]}},
     400, "unknown word in a caption: sevn"),
    ("text2image_mnist:predict", {"inputs": {"seed": [[0, 1]], "text": ["seven a"]}}, 400,
     "caption not in the grammar: seven a"),
    ("text2image_mnist:predict", {"inputs": {"seed": [[0, 1]], "text": [7]}}, 400, "string"),
    # a 28x28 image sent to the 7x7 input of super-resolution
    ("pix2pix_superres_mnist:predict", {"signature_name": "translate",
                                        "inputs": np.zeros((1, 28, 28, 1), int).tolist()}, 400,
     "expects [-1, 7, 7, 1]"),
    # TF Serving's checks of the signature (classifier.cc, regressor.cc) and of the path
    # (http_rest_api_util.cc: anything else under /v1/ is a 400 "Malformed request")
    ("vae_mnist:classify", {"examples": [{"x": 1.0}]}, 400, "Tensor"),
    ("vae_mnist:regress", {"examples": [{"x": 1.0}]}, 400, "Tensor"),
    ("vae_mnist/versions/x:predict", {"instances": [[0, 1]]}, 400, "Malformed"),
    ("vae_mnist:explode", {"instances": [[0, 1]]}, 400, "Malformed"),
]


@pytest.mark.parametrize("path,body,status,words", BAD_REST)
def test_bad_rest_requests_get_clear_errors(server, path, body, status, words):
    reply = server.post(path, body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert words.lower() in error.lower(), error


def test_malformed_and_oversized_bodies(server):
    for raw in (b"{not json", b"\xff\xfe", b""):
        reply = server.post("vae_mnist:predict", raw, raw=True)
        assert reply.status_code == 400 and "JSON" in reply.json()["error"]
    huge = b'{"instances": [' + b"[1, 2]," * (6 << 20) + b"[1, 2]]}"
    reply = server.post("vae_mnist:predict", huge, raw=True)
    assert reply.status_code == 413 and "too large" in reply.json()["error"]
    assert server.status("vae_mnist") == ["AVAILABLE"]


def test_bad_grpc_requests_get_status_codes(server):
    predict, _ = _stub(server)
    cases = [
        (_request("nope", "sample", seed=SEEDS), grpc.StatusCode.NOT_FOUND, "nope"),
        (_request("vae_mnist", "sample", seed=SEEDS.astype(np.float32)), grpc.StatusCode.INVALID_ARGUMENT, "dtype"),
        (_request("vae_mnist", "sample", seed=SEEDS[:, :1]), grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        (_request("vae_mnist", "sample"), grpc.StatusCode.INVALID_ARGUMENT, "missing"),
        (_request("vae_mnist", "nosuch", seed=SEEDS), grpc.StatusCode.FAILED_PRECONDITION,
         "nosuch"),  # predict_util.cc RunPredict
        (_request("cvae_mnist", "sample", seed=SEEDS, label=np.array([0, 1, 2, -1])),
         grpc.StatusCode.INVALID_ARGUMENT, "label"),
        (_request("text2image_mnist", "sample", seed=SEEDS[:2], text=np.array([b"a one", b"a big one"])),
         grpc.StatusCode.INVALID_ARGUMENT, "unknown word in a caption: big"),
    ]
    bad_proto = _request("vae_mnist", "sample")
    bad_proto.inputs["seed"].dtype = tf.int64.as_datatype_enum
    bad_proto.inputs["seed"].tensor_shape.dim.add(size=4)
    bad_proto.inputs["seed"].tensor_content = b"\x00" * 5
    cases.append((bad_proto, grpc.StatusCode.INVALID_ARGUMENT, "tensor"))
    huge = _request("vae_mnist", "sample")
    huge.inputs["seed"].dtype = tf.int64.as_datatype_enum
    huge.inputs["seed"].tensor_shape.dim.add(size=10 ** 10)
    huge.inputs["seed"].tensor_shape.dim.add(size=2)
    huge.inputs["seed"].int64_val.append(1)
    cases.append((huge, grpc.StatusCode.INVALID_ARGUMENT, "more elements"))
    versioned = _request("vae_mnist", "sample", seed=SEEDS)
    versioned.model_spec.version.value = 9
    cases.append((versioned, grpc.StatusCode.NOT_FOUND, "9"))
    filtered = _request("vae_mnist", "sample", seed=SEEDS)
    filtered.output_filter.append("pixels")
    cases.append((filtered, grpc.StatusCode.INVALID_ARGUMENT, "pixels"))
    for request, code, words in cases:
        with pytest.raises(grpc.RpcError) as err:
            predict.Predict(request, timeout=30)
        assert err.value.code() == code, err.value.details()
        assert words.lower() in err.value.details().lower(), err.value.details()
    ok = _request("vae_mnist", "sample", seed=SEEDS)
    ok.output_filter.append("images")
    assert set(predict.Predict(ok, timeout=30).outputs) == {"images"}


def test_concurrent_clients(server):
    def worker(i):
        client = Client("127.0.0.1", grpc_port=server.grpc_port) if i % 2 else \
            Client("127.0.0.1", rest_port=server.rest_port)
        images = []
        for j in range(50):
            images.append(client.sample("vae_mnist", [[i, j]])["images"][0])
        return images

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(worker, range(16)))
    assert all(len(r) == 50 for r in results)
    alone = Client("127.0.0.1", grpc_port=server.grpc_port).sample("vae_mnist", [[5, 7]])["images"][0]
    np.testing.assert_array_equal(results[5][7], alone)


def test_prometheus_metrics(server):
    requests.post(f"{server.url}/vae_mnist:predict", json={"instances": [[0, 1]]})
    text = requests.get(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics").text
    assert '# TYPE :tensorflow:serving:request_count counter' in text
    assert ':tensorflow:serving:request_count{model_name="vae_mnist",status="OK"}' in text
    assert ':tensorflow:serving:request_latency_bucket{API="predict",entrypoint="REST"' in text
    # Warmup ran every signature of both models before they became AVAILABLE.
    assert ':tensorflow:serving:runtime_latency_count{API="Predict",model_name="cvae_mnist",runtime="TF"}' in text


def _write_config(path, entries):
    config = model_server_config_pb2.ModelServerConfig()
    for entry in entries:
        text_format.Parse(entry, config.model_config_list.config.add())
    path.write_text(text_format.MessageToString(config))


def test_lifecycle_new_versions_corruption_labels_and_reload(zoo_dir, tmp_path):
    base = tmp_path / "zoo"
    shutil.copytree(zoo_dir / "vae_mnist" / "1", base / "vae_mnist" / "1")
    config = tmp_path / "models.config"
    _write_config(config, [f'name: "vae_mnist" base_path: "{base / "vae_mnist"}"'])
    server = ServerProcess("--model_config_file", config, "--file_system_poll_wait_seconds", 0.5,
                           "--model_config_file_poll_wait_seconds", 0.5,
                           models=("vae_mnist",), log_path=tmp_path / "server.log")
    try:
        client = Client("127.0.0.1", grpc_port=server.grpc_port)
        failures, stop = [], False

        def load():
            n = 0
            while not stop:
                try:
                    client.sample("vae_mnist", [[0, n]])
                except Exception as err:  # any failed request fails the test
                    failures.append(err)
                n += 1

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            running = [pool.submit(load) for _ in range(4)]
            # A corrupted version 2 appears: version 1 keeps serving.
            (base / "vae_mnist" / "2").mkdir()
            (base / "vae_mnist" / "2" / "saved_model.pb").write_bytes(b"garbage")
            deadline = time.time() + 30
            while time.time() < deadline and 2 not in server.versions("vae_mnist"):
                time.sleep(0.2)
            versions = server.versions("vae_mnist")
            assert versions[2]["state"] == "END" and "failed to load" in versions[2]["status"]["error_message"]
            assert versions[1]["state"] == "AVAILABLE"
            # A good version 3 appears under load: it takes over, 1 is unloaded.
            staging = base / "vae_mnist" / ".staging"
            shutil.copytree(zoo_dir / "vae_mnist" / "1", staging)
            staging.rename(base / "vae_mnist" / "3")
            deadline = time.time() + 60
            while time.time() < deadline and server.versions("vae_mnist").get(3, {}).get("state") != "AVAILABLE":
                time.sleep(0.2)
            time.sleep(1.0)
            stop = True
            for r in running:
                r.result()
        assert not failures, failures[:3]
        versions = server.versions("vae_mnist")
        assert versions[3]["state"] == "AVAILABLE" and versions[1]["state"] == "END"  # unloaded, listed
        assert client.predict("vae_mnist", "sample", seed=SEEDS[:1]) is not None

        # Labels and a specific-versions policy, through the polled config file.
        shutil.rmtree(base / "vae_mnist" / "2")
        _write_config(config, [
            f'name: "vae_mnist" base_path: "{base / "vae_mnist"}" '
            'model_version_policy { all {} } version_labels { key: "stable" value: 3 }'])
        deadline = time.time() + 60  # version 1 is still on disk: "all" loads it again
        while time.time() < deadline and server.status("vae_mnist").count("AVAILABLE") != 2:
            time.sleep(0.2)
        reply = server.post("vae_mnist/labels/stable:predict", {"instances": [[0, 1]]})
        assert reply.status_code == 200, reply.text
        assert {n for n, v in server.versions("vae_mnist").items() if v["state"] == "AVAILABLE"} == {1, 3}

        # HandleReloadConfigRequest swaps the model set: cvae_mnist in, vae_mnist out.
        _, models = _stub(server)
        request = model_management_pb2.ReloadConfigRequest()
        entry = request.config.model_config_list.config.add()
        entry.name, entry.base_path = "cvae_mnist", str(zoo_dir / "cvae_mnist")
        reply = models.HandleReloadConfigRequest(request, timeout=120)
        assert reply.status.error_code == 0, reply.status.error_message
        server.wait(("cvae_mnist",))
        assert server.post("vae_mnist:predict", {"instances": [[0, 1]]}).status_code == 404
        bad = model_management_pb2.ReloadConfigRequest()
        bad.config.model_config_list.config.add(name="x")
        with pytest.raises(grpc.RpcError) as err:  # TF Serving: the error is the gRPC status
            models.HandleReloadConfigRequest(bad, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert server.status("cvae_mnist") == ["AVAILABLE"]
    finally:
        server.stop()


def test_batching_merges_requests_and_keeps_results(zoo_dir, tmp_path):
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 20000 }\n"
                      "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n")
    server = ServerProcess("--model_config_file", zoo_dir / "models.config", "--enable_batching",
                           "--batching_parameters_file", params, models=("vae_mnist",),
                           log_path=tmp_path / "server.log")
    try:
        client = Client("127.0.0.1", grpc_port=server.grpc_port)
        seeds = [[9, i] for i in range(48)]
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            batched = list(pool.map(lambda s: client.sample("vae_mnist", [s]), seeds))
        direct = tf.saved_model.load(str(zoo_dir / "vae_mnist" / "1")).signatures["sample"](
            seed=tf.constant(seeds, tf.int64))
        for i, out in enumerate(batched):
            np.testing.assert_array_equal(out["images"][0], direct["images"][i])
            np.testing.assert_allclose(out["latents"][0], direct["latents"][i], rtol=1e-5)
        # 48 single-row requests took far fewer than 48 signature runs.
        text = requests.get(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics").text
        metric = ':tensorflow:serving:batching:processed_batch_size_{}{{model_name="vae_mnist"}}'
        values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                  if line.startswith(":tensorflow:serving:batching:processed_batch_size_")}
        # (warmup replays run the signatures directly, not through the batcher)
        rows, batches = values[metric.format("sum")], values[metric.format("count")]
        assert rows == 48 and batches < 24, (rows, batches)
        # One bad request in a batch fails alone.
        with pytest.raises(ServerError, match="shape"):
            client.predict("vae_mnist", "sample", seed=np.zeros((1, 3), np.int64))
    finally:
        server.stop()


def test_server_startup_errors_are_clear(tmp_path):
    from conftest import run_main

    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'a' base_pat: 'x' } }")
    for args, words in [(["--model_config_file", bad], "not a valid ModelServerConfig"),
                        (["--model_config_file", tmp_path / "missing.config"], "cannot read"),
                        ([], "give --model_config_file or --model_base_path")]:
        result = run_main("serving.server", "--port", "0", *args)
        assert result.returncode != 0 and words in result.stderr, result.stderr[-2000:]


def test_overload_answers_429_and_503(zoo_dir, tmp_path):
    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 200000 }\n"
                      "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 1 }\n")
    server = ServerProcess("--model_config_file", zoo_dir / "models.config", "--enable_batching",
                           "--batching_parameters_file", params, "--max_inflight_requests", 6,
                           models=("vae_mnist",), log_path=tmp_path / "server.log")
    try:
        body = {"signature_name": "log_prob", "inputs": {"images": np.zeros((3, 28, 28, 1), int).tolist()}}
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: server.post("vae_mnist:predict", body).status_code, range(32)))
        assert set(codes) <= {200, 429, 503}, codes
        assert 200 in codes and 503 in codes, codes
        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            codes = list(pool.map(lambda _: server.post("vae_mnist:predict", body).status_code, range(48)))
        assert 429 in codes or 503 in codes, codes
        assert server.post("vae_mnist:predict", {"instances": [[0, 1]]}).status_code == 200
    finally:
        server.stop()


def test_random_bodies_never_break_the_server(server):
    rng = np.random.default_rng(0)
    atoms = [0, -1, 1.5, 2 ** 63, "x", None, True, [], {}, {"b64": "!!"}, [[0, 1]], {"seed": [[0, 1]]}]

    def value(depth=0):
        if depth > 3 or rng.random() < 0.4:
            return atoms[rng.integers(len(atoms))]
        if rng.random() < 0.5:
            return [value(depth + 1) for _ in range(rng.integers(0, 4))]
        keys = ["instances", "inputs", "signature_name", "seed", "images", "label", "b64"]
        return {keys[rng.integers(len(keys))]: value(depth + 1) for _ in range(rng.integers(0, 4))}

    for _ in range(300):
        reply = server.post("cvae_mnist:predict", value())
        assert reply.status_code in (200, 400), (reply.status_code, reply.text)
        assert reply.status_code == 200 or reply.json()["error"]
    assert server.status("cvae_mnist") == ["AVAILABLE"]


def test_version_policies():
    from serving.models import _policy_versions

    policy = model_server_config_pb2.ModelConfig().model_version_policy
    assert _policy_versions(policy, [1, 2, 5]) == {5}
    policy.latest.num_versions = 2
    assert _policy_versions(policy, [1, 2, 5]) == {2, 5}
    policy.all.SetInParent()
    assert _policy_versions(policy, [1, 2, 5]) == {1, 2, 5}
    policy.specific.versions.extend([2, 7])
    assert _policy_versions(policy, [1, 2, 5]) == {2}


def test_client_translates_picture_files(server, tmp_path):
    from PIL import Image

    from conftest import run_main

    picture = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (56, 56, 3)).astype(np.uint8)).save(picture)
    for flags in (["--rest_port", server.rest_port], ["--grpc_port", server.grpc_port]):
        out = tmp_path / "big.png"
        result = run_main("serving.client", "translate", "pix2pix_superres_mnist", "--input", picture,
                          "--out", out, *flags)
        assert result.returncode == 0, result.stderr
        assert np.asarray(Image.open(out)).shape == (2 * 32, 2 * 32)  # one 28x28 image, padded, x2
        back = run_main("serving.client", "translate", "cyclegan_thick_mnist", "--back", "--input",
                        picture, picture, "--out", out, *flags)
        assert back.returncode == 0, back.stderr
    # what the client sends: the picture made grey and shrunk to 7x7 by block averages
    grey = np.asarray(Image.open(picture).convert("L"), np.float64)
    sent = Client("127.0.0.1", rest_port=server.rest_port)
    from serving.client import read_image
    small = read_image(picture, (7, 7, 1))
    np.testing.assert_allclose(small[..., 0], grey.reshape(7, 8, 7, 8).mean(axis=(1, 3)), atol=1)
    assert sent.input_shape("pix2pix_superres_mnist", "translate") == [-1, 7, 7, 1]
    for args, words in ((["vae_mnist"], "translate"), (["pix2pix_superres_mnist", "--back"], "translate_back")):
        result = run_main("serving.client", "translate", *args, "--input", picture,
                          "--rest_port", server.rest_port)
        assert result.returncode == 1 and words in result.stderr, result.stderr
    result = run_main("serving.client", "translate", "pix2pix_superres_mnist", "--input",
                      tmp_path / "none.png", "--rest_port", server.rest_port)
    assert result.returncode == 1 and "none.png" in result.stderr


def test_client_samples_a_caption_over_both_apis(server, tmp_path):
    from PIL import Image

    from conftest import run_main

    want = Client("127.0.0.1", grpc_port=server.grpc_port).sample(
        "text2image_mnist", SEEDS[:2], text=["a thick seven", "a seven"])["images"]
    got = Client("127.0.0.1", rest_port=server.rest_port).sample(
        "text2image_mnist", SEEDS[:2], text=["A thick  seven", "a seven"])["images"]
    np.testing.assert_array_equal(got, want)
    for flags in (["--rest_port", server.rest_port], ["--grpc_port", server.grpc_port]):
        out = tmp_path / "x.png"
        result = run_main("serving.client", "sample", "text2image_mnist", "--text", "a thick seven",
                          "--count", 4, "--out", out, *flags)
        assert result.returncode == 0, result.stderr
        assert np.asarray(Image.open(out)).shape == (2 * 62, 2 * 62)  # 2x2 images of 28 + 2 padding
        bad = run_main("serving.client", "sample", "text2image_mnist", "--text", "a thick sevn",
                       *flags)
        assert bad.returncode == 1 and "unknown word in a caption: sevn" in bad.stderr, bad.stderr
