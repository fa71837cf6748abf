"""In-process tests of the server's parts: JSON conversion, batching, config parsing."""
import asyncio
import threading

import numpy as np
import pytest
import tensorflow as tf

from serving import batching, protos, rest
from serving.errors import ServingError, from_tf_error


class _Sig:
    def __init__(self, inputs, fn=None):
        self.name = "sig"
        self.inputs = inputs
        self.fn = fn
        self.calls = []

    def __call__(self, inputs):
        self.calls.append(len(next(iter(inputs.values()))))
        return self.fn(inputs)


def test_json_values_convert_by_the_signature_dtype():
    spec = tf.TensorSpec([None, 2], tf.int64)
    np.testing.assert_array_equal(rest.to_array([[1, 2]], spec, "seed"), [[1, 2]])
    with pytest.raises(ServingError, match="is not of expected type: int64"):
        rest.to_array([[1.0, 2.0]], spec, "seed")  # TF Serving (json_tensor.cc): 1.0 is no int64
    u8 = tf.TensorSpec([None], tf.uint8)
    with pytest.raises(ServingError, match="range"):
        rest.to_array([256], u8, "x")
    with pytest.raises(ServingError, match="range"):
        rest.to_array([-1], u8, "x")
    strings = rest.to_array([{"b64": "aGk="}], tf.TensorSpec([None], tf.string), "s")
    assert strings.tolist() == [b"hi"]
    with pytest.raises(ServingError, match="base64"):
        rest.to_array([{"b64": "***"}], tf.TensorSpec([None], tf.string), "s")


def test_row_and_columnar_rendering():
    outputs = {"a": np.array([1, 2]), "b": np.array([[0.5], [1.5]])}
    assert rest.render_predict(outputs, True) == {"predictions": [{"a": 1, "b": [0.5]}, {"a": 2, "b": [1.5]}]}
    assert rest.render_predict(outputs, False) == {"outputs": {"a": [1, 2], "b": [[0.5], [1.5]]}}
    assert rest.render_predict({"a": np.array([3])}, True) == {"predictions": [3]}
    assert rest.render_predict({"x_bytes": np.array([b"hi"], dtype=object)}, False) == \
        {"outputs": [{"b64": "aGk="}]}


def test_batcher_merges_and_isolates_errors():
    def double(inputs):
        x = inputs["x"]
        if np.any(x < 0):
            raise ValueError("negative")
        return {"y": 2 * x}

    sig = _Sig({"x": None}, double)

    async def scenario():
        batcher = batching.Batcher(max_batch_size=8, batch_timeout_micros=50000, num_batch_threads=1)

        async def call(i):
            x = np.array([[-1.0]]) if i == 3 else np.array([[float(i)]])
            try:
                return (await batcher.run("k", sig, {"x": x}, 1))["y"][0, 0]
            except ValueError as err:
                return str(err)

        try:
            results = await asyncio.gather(*(call(i) for i in range(6)))
            with pytest.raises(ServingError, match="larger than maximum batch size"):
                await batcher.run("k", sig, {"x": np.zeros((9, 1))}, 9)
            # a request that stops waiting (timeout, client gone) is left out of its batch
            late = asyncio.ensure_future(batcher.run("k", sig, {"x": np.array([[7.0]])}, 1))
            await asyncio.sleep(0)
            late.cancel()
            kept = await batcher.run("k", sig, {"x": np.array([[8.0]])}, 1)
            return results, kept
        finally:
            batcher.close()

    results, kept = asyncio.run(scenario())
    assert results == [0.0, 2.0, 4.0, "negative", 8.0, 10.0]
    assert max(sig.calls) > 1, sig.calls  # some requests ran together
    assert kept["y"][0, 0] == 16.0 and sig.calls[-1] == 1


def test_batcher_refuses_when_its_queue_is_full():
    release = threading.Event()

    def slow(inputs):
        release.wait(5)
        return {"y": inputs["x"]}

    sig = _Sig({"x": None}, slow)

    async def scenario():
        batcher = batching.Batcher(max_batch_size=1, batch_timeout_micros=0, max_enqueued_batches=1,
                                   num_batch_threads=1)
        try:
            one = np.zeros((1, 1))
            first = asyncio.ensure_future(batcher.run("k", sig, {"x": one}, 1))
            await asyncio.sleep(0.2)  # the first runs (blocked), the second waits in the queue
            second = asyncio.ensure_future(batcher.run("k", sig, {"x": one}, 1))
            await asyncio.sleep(0.2)
            with pytest.raises(ServingError) as err:
                await batcher.run("k", sig, {"x": one}, 1)
            release.set()
            await asyncio.wait_for(asyncio.gather(first, second), 5)
            return err.value
        finally:
            release.set()
            batcher.close()

    err = asyncio.run(scenario())
    assert err.code == "UNAVAILABLE" and err.http_status == 503


def test_config_files_parse_with_tf_serving_text_format(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000 }\n"
                    "pad_variable_length_inputs: true\n")
    params = protos.batching_parameters(path)
    assert params["max_batch_size"] == 32 and params["batch_timeout_micros"] == 1000
    assert params["max_enqueued_batches"] == 10
    path.write_text("max_batch_size: 32\n")
    with pytest.raises(protos.ConfigError, match="BatchingParameters"):
        protos.batching_parameters(path)
    monitoring = protos.parse_text(_write(tmp_path / "m.txt", 'prometheus_config { enable: true, path: "/m" }'),
                                   protos.MonitoringConfig())
    assert monitoring.prometheus_config.path == "/m"


def _write(path, text):
    path.write_text(text)
    return path


def test_tf_errors_keep_the_useful_line():
    try:
        tf.debugging.assert_less(tf.constant([3]), tf.constant([2]), message="label must be < 2")
    except tf.errors.InvalidArgumentError as err:
        mapped = from_tf_error(err)
    assert mapped.code == "INVALID_ARGUMENT" and mapped.message.startswith("label must be < 2")
