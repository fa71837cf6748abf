"""Autoregressive models: masks, causality of whole models, normalisation, overfitting."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import check_config_round_trip, check_saving, dependence, randomize, row_seeds
from zoo import autoregressive, likelihoods, pixelrnn, saving


def test_masks_a_and_b():
    a = autoregressive.causal_mask(3, 1, 1, "A")[..., 0, 0]
    b = autoregressive.causal_mask(3, 1, 1, "B")[..., 0, 0]
    np.testing.assert_array_equal(a, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(b, [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    rgb_a = autoregressive.causal_mask(1, 3, 3, "A", 3)[0, 0]  # (in, out) at the centre
    np.testing.assert_array_equal(rgb_a, [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    rgb_b = autoregressive.causal_mask(1, 6, 3, "B", 3)[0, 0]
    np.testing.assert_array_equal(rgb_b, [[1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1]])


@pytest.mark.parametrize("shape,likelihood", [((5, 5, 1), "bernoulli"), ((4, 4, 3), "categorical")])
def test_whole_pixelcnn_is_causal(shape, likelihood):
    model = autoregressive.PixelCNN(image_shape=shape, filters=12, num_blocks=2, likelihood=likelihood)
    # Random biases and weights so that nothing is zero by accident.
    for v in model.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, seed=[1, v.shape.num_elements()]) * 0.3)
    h, w, c = shape
    per = likelihoods.get(likelihood).params_per_channel
    dep = dependence(model, shape, c * per)
    for p, j, q, i in itertools.product(range(h * w), range(c), range(h * w), range(c)):
        allowed = q < p or (q == p and i < j)
        if not allowed:
            assert not dep[p, j, q, i], f"output ({p},{j}) sees input ({q},{i})"
    # ... and it does look at what it may see (the receptive field is not empty).
    assert dep[h * w - 1, c - 1].sum() > 0 and dep[w + 1, 0, 0, 0]


def test_masked_layer_never_overwrites_its_weights():
    layer = autoregressive.MaskedConv2D(4, 3, "A")
    layer.build((None, 5, 5, 1))
    layer.kernel.assign(tf.ones_like(layer.kernel))
    layer(tf.ones([1, 5, 5, 1]))
    assert float(tf.reduce_min(layer.kernel)) == 1.0  # masked entries are still there


@pytest.mark.parametrize("likelihood,shape,levels", [("bernoulli", (2, 2, 1), 2), ("categorical", (1, 2, 1), 256)])
def test_probabilities_of_all_images_sum_to_one(likelihood, shape, levels):
    model = autoregressive.PixelCNN(image_shape=shape, filters=8, num_blocks=1, likelihood=likelihood)
    for v in model.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, seed=[2, v.shape.num_elements()]) * 0.5)
    n = int(np.prod(shape))
    images = np.array(list(itertools.product(range(levels), repeat=n)), np.float32).reshape((-1,) + shape)
    total = tf.reduce_sum(tf.exp(tf.cast(model.log_prob(images), tf.float64)))
    np.testing.assert_allclose(float(total), 1.0, rtol=1e-4)


# The family's shared behaviour, for each architecture of it.
ARCHITECTURES = [autoregressive.PixelCNN, autoregressive.GatedPixelCNN, pixelrnn.RowLSTM,
                 pixelrnn.DiagonalBiLSTM]
FAST = [autoregressive.GatedPixelCNN, pixelrnn.RowLSTM, pixelrnn.DiagonalBiLSTM]  # own fast samplers


@pytest.mark.parametrize("cls,seed", [(cls, seed) for seed, cls in enumerate(ARCHITECTURES)])
def test_config_round_trip_tiny_overfit_and_save_load(cls, seed, tmp_path):
    keras.utils.set_random_seed(0)
    model = cls(image_shape=(8, 8, 1), filters=16, num_blocks=2)
    check_config_round_trip(model)
    x = (np.random.default_rng(seed).random((8, 8, 8, 1)) < 0.3).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    start = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)["loss"]
    model.fit(x, epochs=80, batch_size=8, verbose=0)
    end = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)["loss"]
    assert end < 0.6 * start, (start, end)
    check_saving(model, x, tmp_path / "m.keras", output=lambda m, x: m.log_prob(x))


@pytest.mark.parametrize("cls,kwargs", [(autoregressive.PixelCNN, {}),
                                        (autoregressive.GatedPixelCNN, {"num_classes": 3}),
                                        (pixelrnn.RowLSTM, {}),
                                        (pixelrnn.DiagonalBiLSTM, {"num_classes": 3})])
def test_mixed_bfloat16_trains_and_loads_back_in_float32(cls, kwargs, tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.random((16, 8, 8, 1)) < 0.3).astype(np.float32)
    data = {"images": x, "labels": rng.integers(0, 3, 16)} if kwargs else x
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = cls(image_shape=(8, 8, 1), filters=8, num_blocks=2, **kwargs)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        before = [v.numpy().copy() for v in model.trainable_variables]
        logs = model.fit(data, epochs=2, batch_size=8, verbose=0).history
        mixed = model.log_prob(data)
        drawn = model.sample(tf.constant([[0, 1], [0, 2]], tf.int64),
                             labels=tf.constant([0, 1]) if kwargs else None)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.layers[0].compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert all(np.isfinite(logs["loss"])) and mixed.dtype == tf.float32
    assert any(not np.allclose(a, v.numpy()) for a, v in zip(before, model.trainable_variables, strict=True))
    assert set(np.unique(drawn.numpy())) <= {0.0, 1.0}
    model.save(tmp_path / "m.keras")
    loaded = saving.load_trained(tmp_path / "m.keras")
    assert {layer.compute_dtype for layer in loaded._flatten_layers()} == {"float32"}
    exact = cls.from_config(loaded.get_config())
    exact.set_weights(loaded.get_weights())
    np.testing.assert_array_equal(loaded.log_prob(data), exact.log_prob(data))
    # bfloat16 keeps 8 significant bits: close to the float32 figure, not equal.
    np.testing.assert_allclose(mixed, loaded.log_prob(data), rtol=0.05)
    assert not np.array_equal(mixed, loaded.log_prob(data))


def test_gated_pixelcnn_is_causal_and_has_no_blind_spot():
    shape = (5, 5, 1)
    gated = autoregressive.GatedPixelCNN(image_shape=shape, filters=8, num_blocks=3, kernel_size=3,
                                         first_kernel_size=3)
    randomize(gated, 3)
    dep = dependence(gated, shape, 1)[:, 0, :, 0]  # (output pixel, input pixel)
    for p in range(25):
        assert not dep[p, p:].any(), f"pixel {p} sees itself or a later pixel"
    # With 4 layers of k = 3 every earlier pixel of a 5x5 image is in reach: no blind spot.
    assert dep[24, :24].all(), np.argwhere(~dep[24, :24])
    # Stacked masked 3x3 convolutions of the same depth miss the upper-right pixels.
    plain = autoregressive.PixelCNN(image_shape=shape, filters=8, num_blocks=3, first_kernel_size=3)
    randomize(plain, 3)
    blind = dependence(plain, shape, 1)[:, 0, :, 0]
    assert not blind[12, :12].all(), "expected a blind spot in plain PixelCNN"


def test_gated_pixelcnn_conditions_on_labels_and_normalises():
    model = autoregressive.GatedPixelCNN(image_shape=(2, 2, 1), filters=8, num_blocks=1,
                                         kernel_size=3, first_kernel_size=3, num_classes=3)
    randomize(model, 4)
    images = np.array(list(itertools.product(range(2), repeat=4)), np.float32).reshape(16, 2, 2, 1)
    totals = []
    for label in range(3):
        lp = model.log_prob({"images": images, "labels": np.full(16, label)})
        totals.append(float(tf.reduce_sum(tf.exp(tf.cast(lp, tf.float64)))))
    np.testing.assert_allclose(totals, 1.0, rtol=1e-4)
    a = model.log_prob({"images": images, "labels": np.zeros(16)})
    b = model.log_prob({"images": images, "labels": np.ones(16)})
    assert not np.allclose(a, b), "the label changes nothing"
    with pytest.raises(ValueError, match="conditional"):
        model(images)



@pytest.mark.parametrize("name", ["categorical", "logistic_mixture", "discretized_logistic"])
def test_8bit_likelihoods_sum_to_one_and_sample_their_mean(name):
    lik = likelihoods.get(name)
    params = tf.constant(np.random.default_rng(5).normal(size=(3, 1, 1, lik.params_per_channel)) * 1.5,
                         tf.float32)
    levels = tf.reshape(tf.range(256, dtype=tf.float32), [256, 1, 1, 1, 1])
    probs = tf.exp(lik.distribution(params).log_prob(levels))  # (256, 3)
    np.testing.assert_allclose(tf.reduce_sum(probs, 0), np.ones(3), atol=1e-4)
    noise = getattr(lik, "noise_per_channel", 1)
    u = tf.random.stateless_uniform([20000, 3, 1, 1, 1] + ([noise] if noise > 1 else []), seed=[7, 8])
    draws = lik.sample(tf.broadcast_to(params, [20000, 3, 1, 1, lik.params_per_channel]), u)
    want = tf.reduce_sum(probs * tf.reshape(tf.range(256.0), [256, 1]), 0)
    np.testing.assert_allclose(tf.reduce_mean(draws, 0)[:, 0, 0, 0], want, atol=3.0)
    np.testing.assert_allclose(lik.mean(params)[:, 0, 0, 0], want, atol=1.0)


@pytest.mark.parametrize("cls,likelihood", [(cls, lik) for cls in FAST
                                            for lik in ("bernoulli", "categorical", "logistic_mixture")])
def test_fast_sampler_draws_exactly_what_the_naive_one_draws(cls, likelihood):
    model = cls(image_shape=(6, 5, 1), filters=8, num_blocks=2, first_kernel_size=3,
                likelihood=likelihood, num_classes=3)
    randomize(model, 3)
    labels = tf.constant([0, 1, 2], tf.int64)
    naive = tf.function(model.sample_naive)(row_seeds(3), labels).numpy()
    fast = tf.function(model.sample)(row_seeds(3), labels).numpy()
    np.testing.assert_array_equal(fast, naive)
    assert len(np.unique(fast)) > 1  # not a degenerate all-equal draw


@pytest.mark.parametrize("cls", FAST)
def test_samples_are_seeded_per_row_and_completion_keeps_given_pixels(cls):
    model = cls(image_shape=(6, 6, 1), filters=8, num_blocks=2)
    randomize(model, 4)
    sample = tf.function(model.serve_sample)
    complete = tf.function(model.serve_complete)
    batch = sample(row_seeds(4))["images"].numpy()
    alone = sample(row_seeds(1, first=2))["images"].numpy()
    np.testing.assert_array_equal(alone[0], batch[2])
    assert set(np.unique(batch)) <= {0, 255}
    assert not np.array_equal(batch[0], batch[1])

    images = np.random.default_rng(0).choice([0, 255], (4, 6, 6, 1)).astype(np.uint8)
    mask = np.zeros_like(images)
    mask[:, :3] = 1  # the top half is given
    done = complete(images, mask, row_seeds(4))["images"].numpy()
    np.testing.assert_array_equal(done[:, :3], images[:, :3])
    # nothing given: completion is sampling with the same seeds
    np.testing.assert_array_equal(complete(images, np.zeros_like(mask), row_seeds(4))["images"], batch)
    # everything given: the images come back
    np.testing.assert_array_equal(complete(images, np.ones_like(mask), row_seeds(4))["images"], images)


@pytest.mark.parametrize("cls,name", [(autoregressive.GatedPixelCNN, "pixelcnn_mnist"),
                                      (pixelrnn.RowLSTM, "row_lstm_mnist"),
                                      (pixelrnn.DiagonalBiLSTM, "diagonal_bilstm_mnist")])
def test_export_serves_sample_log_prob_and_complete(cls, name, tmp_path):
    from serving import check, export

    model = cls(image_shape=(28, 28, 1), filters=4, num_blocks=1, name=name)
    randomize(model, 5)
    path = export.export(model, tmp_path)
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "sample", "log_prob", "complete"}
    images = np.random.default_rng(1).choice([0, 255], (2, 28, 28, 1)).astype(np.uint8)
    served = loaded.signatures["log_prob"](images=tf.constant(images))
    expected = model.log_prob(tf.constant(images / 255, tf.float32)).numpy()
    np.testing.assert_allclose(served["log_prob"].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(served["bits_per_dim"].numpy(), -expected / (784 * np.log(2)), rtol=1e-5)
    keras_sample = tf.function(model.serve_sample)(row_seeds(2))["images"].numpy()
    np.testing.assert_array_equal(loaded.signatures["sample"](seed=row_seeds(2))["images"], keras_sample)
    report, problems = check.check(path)
    assert not problems, problems
    assert report["complete"] == {"images": [2, 28, 28, 1]}
