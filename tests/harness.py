"""The shared test harness: one call per custom layer and per model class.

In the spirit of keras-hub's ``run_layer_test`` and ``run_model_saving_test``:
``run_layer_test`` and ``run_model_test`` check, for a class built with
non-default arguments, that

- its config round-trips (``get_config`` -> ``from_config`` -> the same config);
- it saves and reloads (a ``.keras`` file for models; Keras serialization
  plus the weights for layers) with the same outputs;
- one ``fit`` step (a gradient step for layers) moves its trainable weights;
- its ``test_step`` takes an empty batch, which MultiWorkerMirroredStrategy
  hands a worker whose share of the validation data has run out, without
  failing or changing the validation metrics;
- it runs under the ``mixed_bfloat16`` policy: bfloat16 compute, float32
  weights, finite outputs close to the float32 ones (and one finite fit step).

The property tests of each family (causality, normalisation, fast == naive
sampling, ...) stay in the family's test module.
"""
import itertools
import subprocess
import sys

import keras
import numpy as np
import tensorflow as tf

from conftest import ROOT


def _as_list(inputs):
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


def _numpy(outputs):
    return [np.asarray(o) for o in tf.nest.flatten(outputs)]


def _assert_close(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(_numpy(a), _numpy(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def check_config_round_trip(obj):
    """``type(obj).from_config(obj.get_config())`` has the same config; returns the clone."""
    clone = type(obj).from_config(obj.get_config())
    assert clone.get_config() == obj.get_config()
    return clone


def check_saving(model, inputs, path, output=None):
    """Saves ``model`` to ``path`` (.keras), reloads it and compares outputs; returns the reload.

    Args:
        output: ``output(model, inputs)`` -> what to compare (default ``model(inputs)``).
    """
    output = output or (lambda m, x: m(x))
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    _assert_close(output(loaded, inputs), output(model, inputs))
    return loaded


def _moved(before, variables):
    return any(not np.allclose(a, v.numpy()) for a, v in zip(before, variables, strict=True))


def run_layer_test(cls, init_kwargs, inputs, call_kwargs=None):
    """The harness's checks for a custom layer ``cls(**init_kwargs)`` called on ``inputs``."""
    call_kwargs = call_kwargs or {}
    layer = cls(**init_kwargs)
    expected = layer(*_as_list(inputs), **call_kwargs)
    check_config_round_trip(layer)

    # Serialization and weights: what a .keras file keeps of a layer.
    config = keras.saving.serialize_keras_object(layer)
    again = keras.saving.deserialize_keras_object(config)
    again(*_as_list(inputs), **call_kwargs)  # builds it
    again.set_weights(layer.get_weights())
    _assert_close(again(*_as_list(inputs), **call_kwargs), expected)

    if layer.trainable_weights:
        before = [v.numpy().copy() for v in layer.trainable_weights]
        with tf.GradientTape() as tape:
            loss = sum(tf.reduce_sum(tf.square(tf.cast(o, tf.float32)))
                       for o in tf.nest.flatten(layer(*_as_list(inputs), **call_kwargs)))
        grads = tape.gradient(loss, layer.trainable_weights)
        keras.optimizers.SGD(0.01).apply(grads, layer.trainable_weights)
        assert _moved(before, layer.trainable_weights), f"{cls.__name__}: a step moved nothing"

    mixed = cls(**init_kwargs, dtype="mixed_bfloat16")
    mixed(*_as_list(inputs), **call_kwargs)
    mixed.set_weights(again.get_weights())
    low = mixed(*_as_list(inputs), **call_kwargs)
    assert mixed.compute_dtype == "bfloat16"
    # floating weights stay float32 (a counter may be an integer)
    assert all(v.dtype == "float32" for v in mixed.weights if "float" in str(v.dtype))
    for x, y in zip(_numpy(low), _numpy(expected), strict=True):
        assert np.all(np.isfinite(x.astype(np.float32)))
        scale = float(np.max(np.abs(y))) or 1.0
        np.testing.assert_allclose(x.astype(np.float32), y, rtol=0.05, atol=0.05 * scale)
    return layer


def _compile(model):
    if model.family == "adversarial":
        model.compile()  # its own two optimizers
    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-2))


def _fit_once(model, data, batch_size):
    before = [v.numpy().copy() for v in model.trainable_weights]
    logs = model.fit(data, batch_size=batch_size, epochs=1, steps_per_epoch=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in logs.values()), logs
    return before, logs


def check_empty_batch(model, data, batch_size=4):
    """An empty batch in ``test_step`` (traced with an unknown batch size, as under a
    strategy) runs and leaves the validation metrics as the full batch left them."""
    batch = tf.nest.map_structure(lambda a: tf.convert_to_tensor(a[:batch_size]), data)
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), batch)
    step = tf.function(model.test_step, input_signature=[spec])
    model.reset_metrics()
    full = {k: float(v) for k, v in step(batch).items()}
    after = {k: float(v) for k, v in step(tf.nest.map_structure(lambda t: t[:0], batch)).items()}
    assert all(np.isfinite(v) for v in full.values()), full
    np.testing.assert_allclose([after[k] for k in full], list(full.values()), rtol=1e-6,
                               err_msg=f"{type(model).__name__}: an empty batch changed {full} to {after}")


def run_model_test(make, data, inputs, tmp_path, output=None, batch_size=4):
    """The harness's checks for a model class.

    Args:
        make: ``make()`` -> a fresh model built with non-default arguments.
        data: what ``fit`` trains on (images, or {"images", "labels"}).
        inputs: what ``output`` reads.
        output: ``output(model, inputs)`` -> the deterministic outputs to
            compare after reloading (default ``model(inputs)``).
    """
    model = make()
    check_config_round_trip(model)
    _compile(model)
    before, _ = _fit_once(model, data, batch_size)
    assert _moved(before, model.trainable_weights), f"{type(model).__name__}: fit moved nothing"
    check_empty_batch(model, data, batch_size)
    check_saving(model, inputs, tmp_path / "model.keras", output)

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = make()
        _compile(mixed)
        _fit_once(mixed, data, batch_size)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    computes = {layer.compute_dtype for layer in mixed._flatten_layers(include_self=False)
                if layer.weights}
    assert "bfloat16" in computes, computes
    assert all(v.dtype == "float32" for v in mixed.trainable_weights)
    return model


def run_with_cpu_devices(script, tmp_path, timeout=600):
    """Runs ``script`` (Python source) in a fresh process and returns its stdout.

    Logical CPU devices and the dtype policy are process-wide, so a test that
    splits the CPU for a MirroredStrategy runs its code here; the script gets
    the repository root as ``sys.argv[1]``.
    """
    path = tmp_path / "script.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path), str(ROOT)], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def dependence(model, shape, channels_out):
    """dep[p, j, q, i]: whether output (pixel p, channel j) depends on input (pixel q, channel i).

    For a model from images (1, H, W, C) to (1, H, W, channels_out), the
    channels grouped by colour; read off gradients of a random projection.
    """
    h, w, c = shape
    x = tf.constant(np.random.default_rng(0).integers(0, 2, (1,) + shape).astype(np.float32))
    per = channels_out // c
    dep = np.zeros((h * w, c, h * w, c), bool)
    for p, j in itertools.product(range(h * w), range(c)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = model(x)[0, p // w, p % w, j * per:(j + 1) * per]
            total = tf.reduce_sum(out * tf.random.stateless_normal(out.shape, seed=[p, j]))
        grad = tape.gradient(total, x)[0].numpy().reshape(h * w, c)
        dep[p, j] = np.abs(grad) > 0
    return dep


def pixel_dependence(fn, x):
    """dep[p, q]: whether ``fn(x)``'s pixel p (any channel) depends on ``x``'s pixel q (any channel).

    ``x``: (1, H, W, C); ``fn`` maps it to (1, H, W, C'). Pixels in raster order.
    """
    x = tf.constant(x, tf.float32)
    _, h, w, _ = x.shape

    @tf.function
    def grad(p):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(x)[0, p // w, p % w]
            total = tf.reduce_sum(out * tf.random.stateless_normal(tf.shape(out), seed=[p, 1]))
        return tf.reduce_max(tf.abs(tape.gradient(total, x)[0]), axis=-1)  # (H, W)

    return np.stack([grad(tf.constant(p)).numpy().reshape(-1) > 0 for p in range(h * w)])


def randomize(model, seed, scale=0.3):
    """Sets every trainable variable to seeded normal noise, so that nothing is zero by accident."""
    for v in model.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, seed=[seed, v.shape.num_elements()]) * scale)


def row_seeds(n, first=0):
    """The serving contract's int64 (n, 2) seeds, one row each."""
    return tf.constant([[7, first + i] for i in range(n)], tf.int64)
