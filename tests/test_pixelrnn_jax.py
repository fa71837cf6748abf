"""training/pixelrnn_jax.py: the JAX transcription trains the Keras PixelRNNs' own function.

The pretrained PixelRNNs were trained through it on a GPU machine without
TensorFlow, so these tests hold it to the Keras model: the same
log-probabilities and gradients from the same weights for both architectures,
pack -> train -> unpack ends in a Keras model whose test NLL is the one the JAX
run recorded, and the training side runs where TensorFlow cannot be imported.
"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from harness import randomize
from training import pixelrnn_jax as pj
from zoo import autoregressive, registry

REPO = pathlib.Path(__file__).resolve().parents[1]
PRESETS = ["row_lstm_mnist", "diagonal_bilstm_mnist"]


def _model(preset, seed):
    model = registry.build(preset, filters=8, num_blocks=2)
    randomize(model, seed)
    return model


def _jax_side(model):
    masks = {layer.name: autoregressive.causal_mask(layer.kernel_size, layer.kernel.shape[2],
                                                    layer.filters, layer.mask_type)
             for layer in [model.first, *model.head]}
    meta = dict(name=model.name, kind=pj.KINDS[type(model).__name__],
                num_blocks=model.num_blocks, masks=masks)
    return {v.path: jnp.asarray(v.numpy()) for v in model.weights}, meta


def _images(n=3, seed=0):
    return (np.random.default_rng(seed).random((n, 28, 28, 1)) < 0.3).astype(np.float32)


@pytest.mark.parametrize("preset", PRESETS)
def test_log_prob_and_gradients_equal_the_keras_models(preset):
    model = _model(preset, seed=3)
    params, meta = _jax_side(model)
    x = _images()
    with tf.GradientTape() as tape:
        keras_lp = model.log_prob(tf.constant(x))
        keras_loss = -tf.reduce_mean(keras_lp)
    keras_grads = dict(zip([v.path for v in model.trainable_variables],
                           tape.gradient(keras_loss, model.trainable_variables), strict=True))

    jax_lp = pj.log_prob(params, meta, jnp.asarray(x), unroll=2)
    np.testing.assert_allclose(np.asarray(jax_lp), keras_lp.numpy(), rtol=2e-5, atol=2e-3)
    grads = jax.grad(lambda p: -jnp.mean(pj.log_prob(p, meta, jnp.asarray(x))))(params)
    assert set(grads) == set(keras_grads)
    for path, g in grads.items():
        want = keras_grads[path].numpy()
        scale = max(1e-3, float(np.abs(want).max()))
        np.testing.assert_allclose(np.asarray(g) / scale, want / scale, atol=2e-4, err_msg=path)


def test_pack_train_unpack_gives_the_keras_model_the_run_measured(tmp_path):
    """pack (Keras), train (a subprocess where TensorFlow cannot load), unpack (Keras again)."""
    packed = tmp_path / "model.npz"
    pj.main(["pack", "row_lstm_mnist", str(packed), "--set", "filters=8", "--set", "num_blocks=1"])
    rng = np.random.default_rng(0)
    train = (rng.random((96, 28, 28, 1)) * 255).astype(np.uint8)
    test = (rng.random((40, 28, 28, 1)) < 0.2).astype(np.uint8)
    np.savez(tmp_path / "data.npz", train=train, test=test)
    run = tmp_path / "run"
    blocker = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "
    script = (blocker + "import runpy; sys.argv = sys.argv[1:]; "
              "runpy.run_path(sys.argv[0], run_name='__main__')")
    command = [sys.executable, "-c", script, str(REPO / "training" / "pixelrnn_jax.py"), "train",
               str(packed), "--data", str(tmp_path / "data.npz"), "--out", str(run),
               "--seconds", "30", "--batch_size", "16", "--reserve", "5"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((run / "train_info.json").read_text())
    assert record["updates"] > 0 and record["history"]
    assert record["final_metrics"]["val_loss"] != pytest.approx(record["initial_val_loss"])

    out = tmp_path / "keras_run"
    pj.main(["unpack", str(run), "--output_dir", str(out)])
    saved = (out / "model.keras").read_bytes()
    with pytest.raises(SystemExit, match="already holds"):  # a second unpack keeps the first
        pj.main(["unpack", str(run), "--output_dir", str(out)])
    assert (out / "model.keras").read_bytes() == saved
    from zoo import saving
    model = saving.load_trained(out)
    nll = -float(tf.reduce_mean(model.log_prob(tf.constant(test.astype(np.float32)))))
    assert nll == pytest.approx(record["final_metrics"]["val_loss"], abs=2e-3)
    info = json.loads((out / "train_info.json").read_text())
    assert info["trained_with"] == pj.TRAINED_WITH
    assert "pixelrnn_jax.py train" in info["command"] and info["parameters"] == model.count_params()


def test_unpack_refuses_weights_of_another_model(tmp_path):
    model = _model("row_lstm_mnist", seed=1)
    params, meta = _jax_side(model)
    run = tmp_path / "run"
    params.pop(f"{model.name}/lstm1/bias")
    pj.write_npz(run / "weights.npz", {k: np.asarray(v) for k, v in params.items()},
                 dict(meta, preset="row_lstm_mnist", overrides=dict(filters=8, num_blocks=2)))
    (run / "train_info.json").write_text(json.dumps(dict(train_command="x")))
    with pytest.raises(SystemExit, match="lstm1/bias"):
        pj.main(["unpack", str(run), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "model.keras").exists()
    with pytest.raises(SystemExit, match="FileNotFoundError"):
        pj.main(["unpack", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="init_from"):
        pj.main(["pack", "row_lstm_mnist", str(tmp_path / "x.npz"), "--init_from", str(tmp_path / "nothing")])


def test_schedule_and_average_match_the_training_commands():
    from zoo import steps
    assert pj.cosine_rate(1.0, 0.0, 0.05) == pytest.approx(1.0)
    assert pj.cosine_rate(1.0, 1.0, 0.05) == pytest.approx(0.05)
    assert pj.cosine_rate(1.0, 0.01, 0.05, warmup_fraction=0.02) == pytest.approx(0.5)
    for n in (0, 1, 5, 100, 10_000):
        assert pj.averaging_momentum(0.999, n) == pytest.approx(
            float(steps.averaging_momentum(0.999, n)))
