"""Latent-variable models: shapes, configs, likelihoods, bounds, overfitting."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from harness import check_config_round_trip, check_saving
from zoo import latent, likelihoods, registry

tfd = tfp.distributions
LATENT_PRESETS = ["ae_mnist", "vae_mnist", "vae2d_mnist", "beta_vae_mnist", "cvae_mnist",
                  "vae_fashion_mnist"]


def _batch(preset, n=8, seed=0):
    rng = np.random.default_rng(seed)
    p = registry.get_preset(preset)
    x = rng.integers(0, 256, size=(n, 28, 28, 1)).astype("float32")
    if p.form == "binary":
        x = (x >= 128).astype("float32")
    return {"images": x, "labels": np.arange(n) % 10} if p.labels else x


def _seeds(rows, first=0):
    return tf.constant([[first, i] for i in range(rows)], tf.int64)


@pytest.mark.parametrize("preset", LATENT_PRESETS)
def test_config_round_trip_and_save_load(preset, tmp_path):
    model = registry.build(preset)
    check_config_round_trip(model)
    check_saving(model, _batch(preset), tmp_path / "m.keras")


@pytest.mark.parametrize("preset", LATENT_PRESETS)
def test_serving_endpoint_shapes(preset):
    model = registry.build(preset)
    endpoints = model.serving_endpoints(log_prob_samples=4)
    images = tf.constant(np.zeros((3, 28, 28, 1), np.uint8))
    label = [tf.constant([0, 1, 2], tf.int64)] if model.num_classes else []
    enc = model.serve_encode(images, *label)
    assert enc["mean"].shape == (3, model.latent_dim) and enc["stddev"].shape == (3, model.latent_dim)
    dec = model.serve_decode(enc["mean"], *label)
    assert dec["images"].dtype == tf.uint8 and dec["images"].shape == (3, 28, 28, 1)
    rec = model.serve_reconstruct(images, _seeds(3), *label)
    assert rec["images"].shape == (3, 28, 28, 1)
    if isinstance(model, latent.VAE):
        assert list(endpoints)[0] == "sample"
        out = model.serve_sample(_seeds(3), *label)
        assert out["images"].dtype == tf.uint8 and out["images"].shape == (3, 28, 28, 1)
        lp = endpoints["log_prob"][0](images, *label)
        assert lp["log_prob"].shape == (3,) and np.all(np.isfinite(lp["log_prob"]))
        np.testing.assert_allclose(
            lp["bits_per_dim"], -lp["log_prob"] / (784 * math.log(2)), rtol=1e-5)
    else:
        assert "sample" not in endpoints and "log_prob" not in endpoints
    if model.likelihood == "bernoulli":
        assert set(np.unique(dec["images"])) <= {0, 255}


def test_seeded_sample_is_the_same_alone_and_in_a_batch():
    model = registry.build("vae_mnist")
    batch = model.serve_sample(_seeds(5, first=7))["images"].numpy()
    alone = model.serve_sample(_seeds(5, first=7)[3:4])["images"].numpy()
    np.testing.assert_array_equal(alone[0], batch[3])
    other = model.serve_sample(tf.constant([[8, 3]], tf.int64))["images"].numpy()
    assert not np.array_equal(other[0], batch[3])
    rec_batch = model.serve_reconstruct(tf.zeros([4, 28, 28, 1], tf.uint8), _seeds(4))["means"]
    rec_alone = model.serve_reconstruct(tf.zeros([1, 28, 28, 1], tf.uint8), _seeds(4)[2:3])["means"]
    np.testing.assert_array_equal(rec_alone[0], rec_batch[2])


def test_conditional_labels_are_checked():
    model = registry.build("cvae_mnist")
    with pytest.raises(tf.errors.InvalidArgumentError, match="label must be < 10"):
        model.serve_sample(_seeds(2), tf.constant([3, 10], tf.int64))
    with pytest.raises(ValueError, match="conditional"):
        model(np.zeros((2, 28, 28, 1), np.float32))


def test_discretized_logistic_sums_to_one_over_256_levels():
    lik = likelihoods.DiscretizedLogisticPixels()
    params = tf.constant(np.random.default_rng(0).normal(size=(5, 1, 1, 2)) * 2, tf.float32)
    levels = tf.reshape(tf.range(256, dtype=tf.float32), [256, 1, 1, 1, 1])
    probs = tf.exp(lik.distribution(params).log_prob(levels))  # (256, 5)
    np.testing.assert_allclose(tf.reduce_sum(probs, 0), np.ones(5), atol=1e-4)
    # Its sampler draws from the same distribution: compare the means.
    u = tf.random.stateless_uniform([4000, 5, 1, 1, 1], seed=[1, 2])
    samples = lik.sample(tf.broadcast_to(params, [4000, 5, 1, 1, 2]), u)
    expected = tf.reduce_sum(probs * tf.reshape(tf.range(256.0), [256, 1]), 0)
    np.testing.assert_allclose(tf.reduce_mean(samples, 0)[:, 0, 0, 0], expected, atol=4.0)


def test_bernoulli_sums_to_one_over_all_2x2_images():
    lik = likelihoods.BernoulliPixels()
    params = tf.constant([[[[0.3], [-1.0]], [[2.0], [0.0]]]])  # (1, 2, 2, 1)
    images = np.array([[int(b) for b in f"{i:04b}"] for i in range(16)], np.float32)
    images = images.reshape(16, 1, 2, 2, 1)
    total = tf.reduce_sum(tf.exp(lik.distribution(params).log_prob(images)))
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_kl_is_analytic_and_matches_monte_carlo():
    model = registry.build("vae2d_mnist")
    x = tf.constant(_batch("vae2d_mnist", 4))
    q = model.posterior(x)
    analytic = tfd.kl_divergence(q, model.prior())
    z = q.sample(20000, seed=[3, 4])
    mc = tf.reduce_mean(q.log_prob(z) - model.prior().log_prob(z), 0)
    np.testing.assert_allclose(analytic, mc, rtol=0.05, atol=0.02)


def test_iwae_bound_tightens_with_k_and_is_batch_independent():
    model = registry.build("vae2d_mnist")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = _batch("vae2d_mnist", 64)
    model.fit(x, epochs=20, batch_size=32, verbose=0)
    xt = tf.constant(x[:16])
    terms = model.loss_terms(xt)
    iwae1 = -tf.reduce_mean(model.iwae_log_prob(xt, num_samples=1, seed=[1, 1]))
    iwae_many = model.iwae_log_prob(xt, num_samples=200, chunk_size=50, seed=[1, 1])
    # k = 1 is the ELBO: same expectation; more samples give a lower NLL bound.
    assert abs(float(iwae1) - float(terms["neg_elbo"])) < 0.1 * float(terms["neg_elbo"])
    assert -float(tf.reduce_mean(iwae_many)) < float(iwae1)
    alone = model.iwae_log_prob(xt[5:6], num_samples=200, chunk_size=50, seed=[1, 1])
    np.testing.assert_allclose(alone[0], iwae_many[5], rtol=1e-5)
    with pytest.raises(ValueError, match="multiple of chunk_size"):
        model.iwae_log_prob(xt, num_samples=150, chunk_size=100)


@pytest.fixture(scope="module")
def digits():
    from training import data

    batch = next(iter(data.load("mnist", "test", "uint8", 16, labels=True, take=16)))
    return batch["images"].numpy(), batch["labels"].numpy()


@pytest.mark.parametrize("preset", LATENT_PRESETS)
def test_tiny_overfit(preset, digits):
    """Loss on 16 MNIST digits falls to at most 60% of its start within 60 steps."""
    keras.utils.set_random_seed(0)
    overrides = {"kl_warmup_steps": 0} if "kl_warmup_steps" in registry.get_preset(preset).kwargs else {}
    model = registry.build(preset, hidden_units=(128,), **overrides)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    images, labels = digits
    if registry.get_preset(preset).form == "binary":
        images = (images >= 128).astype("float32")
    data = {"images": images, "labels": labels} if model.num_classes else images
    start = model.evaluate(data, batch_size=16, verbose=0, return_dict=True)["loss"]
    model.fit(data, epochs=60, batch_size=16, verbose=0)
    end = model.evaluate(data, batch_size=16, verbose=0, return_dict=True)["loss"]
    assert end < 0.6 * start, (start, end)


def test_vae_training_noise_moves_on_with_the_step_and_evaluation_keeps_its_stream():
    """A resumed run restores the optimizer's step but not the seed generator's state: the
    step folded into the seed keeps it from replaying the noise of its first steps."""
    def fresh(step):
        model = registry.build("vae2d_mnist")
        model.compile(optimizer=keras.optimizers.Adam())
        model.optimizer.iterations.assign(step)
        return model

    first, resumed, again = (fresh(step)._posterior_seed(training=True).numpy() for step in (0, 100, 100))
    assert not np.array_equal(first, resumed)
    np.testing.assert_array_equal(resumed, again)
    # evaluation draws from the generator's own stream, whatever the step
    np.testing.assert_array_equal(fresh(0)._posterior_seed(training=False),
                                  fresh(7)._posterior_seed(training=False))
