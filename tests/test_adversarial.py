"""GANs: losses, alternating updates, saving, minibatch features, strategies, mixed precision."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import check_saving, run_with_cpu_devices
from zoo import adversarial


def _images(n=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32)


def _tiny(**kwargs):
    return adversarial.GAN(filters=4, latent_dim=8, **kwargs)


def test_minimax_generator_loss_saturates_and_the_non_saturating_one_does_not():
    # Where D confidently rejects a sample (logit -8, D(G(z)) ~ 3e-4), the
    # minimax loss log(1 - D) gives almost no gradient; -log D gives ~1.
    logit = tf.constant([-8.0])
    grads = {}
    for kind in ("minimax", "non_saturating"):
        with tf.GradientTape() as tape:
            tape.watch(logit)
            loss = adversarial.generator_loss(kind, logit)
        grads[kind] = abs(float(tape.gradient(loss, logit)[0]))
    assert grads["minimax"] < 1e-3 and grads["non_saturating"] > 0.99, grads
    # the discriminator's loss is the same game for both, minimised by the ideal D
    real, fake = tf.constant([5.0]), tf.constant([-5.0])
    assert float(adversarial.discriminator_loss("minimax", real, fake)[0]) < 0.02
    assert float(adversarial.discriminator_loss("hinge", real, fake)[0]) == 0.0
    assert float(adversarial.discriminator_loss("lsgan", tf.constant([1.0]), tf.constant([0.0]))[0]) == 0.0
    with pytest.raises(ValueError, match="Unknown GAN loss"):
        adversarial.GAN(loss="nope")


@pytest.mark.parametrize("loss,d_steps,expected_d", [("non_saturating", None, 1), ("wgan_gp", None, 5),
                                                     ("hinge", 2, 2), ("lsgan", 1, 1), ("minimax", 1, 1)])
def test_train_step_alternates_d_steps_discriminator_updates_and_one_generator_update(
        loss, d_steps, expected_d):
    model = _tiny(loss=loss, d_steps=d_steps)
    model.compile()
    d_before = [w.numpy().copy() for w in model.discriminator.trainable_weights]
    g_before = [w.numpy().copy() for w in model.generator.trainable_weights]
    history = model.fit(tf.data.Dataset.from_tensor_slices(_images()).batch(8), verbose=0)
    assert int(model.d_optimizer.iterations) == 4 * expected_d
    assert int(model.g_optimizer.iterations) == 4
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    for before, net in ((d_before, model.discriminator), (g_before, model.generator)):
        assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, net.trainable_weights, strict=True))


def test_saves_reloads_and_recompiles_with_both_optimizers(tmp_path):
    model = _tiny(loss="wgan_gp", num_classes=10, minibatch="discrimination")
    model.compile(d_optimizer=keras.optimizers.Adam(1e-4, beta_1=0.0, beta_2=0.9),
                  g_optimizer=keras.optimizers.Adam(3e-4, beta_1=0.0, beta_2=0.9))
    data = {"images": _images(16), "labels": np.arange(16) % 10}
    model.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), verbose=0)
    z, labels = tf.random.normal([3, 8]), tf.constant([1, 2, 3])
    loaded = check_saving(model, (z, labels), tmp_path / "gan.keras",
                          output=lambda m, inputs: m.generate(*inputs))
    assert int(loaded.d_optimizer.iterations) == 10 and int(loaded.g_optimizer.iterations) == 2
    assert float(loaded.g_optimizer.learning_rate) == pytest.approx(3e-4)
    assert float(loaded.d_optimizer.beta_2) == pytest.approx(0.9)
    for a, b in zip(model.d_optimizer.variables, loaded.d_optimizer.variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy())
    loaded.fit(tf.data.Dataset.from_tensor_slices(data).batch(8), verbose=0)  # trains on
    assert int(loaded.g_optimizer.iterations) == 4
    with pytest.raises(ValueError, match="conditional"):
        loaded.train_step(tf.constant(_images(2)))


def test_minibatch_features_see_the_batch_but_served_scores_do_not():
    rng = np.random.default_rng(0)
    layer = adversarial.MinibatchDiscrimination(kernels=4, dims=3)
    layer.build((None, 6))
    tensor = (rng.normal(size=(6, 12)) * 0.05).astype(np.float32)  # fixed, not the random init
    layer.tensor.assign(tensor)
    same = layer(tf.ones([4, 6]))[:, 6:]
    np.testing.assert_allclose(same, 1.0, rtol=1e-5)  # all three neighbours identical
    x = (rng.normal(size=(4, 6)) * 10).astype(np.float32)
    varied = layer(tf.constant(x))[:, 6:].numpy()
    m = (x @ tensor).reshape(4, 4, 3)  # o_b(i) of Salimans et al. 2016, sec. 3.2, by hand
    l1 = np.abs(m[:, None] - m[None, :]).sum(-1)
    np.testing.assert_allclose(varied, (np.exp(-l1).sum(1) - 1.0) / 3, rtol=1e-4, atol=1e-6)
    assert varied.max() < 0.5  # spread-out examples are far from their neighbours
    std = adversarial.MinibatchStddev()(tf.constant([[[[1.0]]], [[[3.0]]]]))
    np.testing.assert_allclose(std[..., 1], 1.0, rtol=1e-4)

    for option in ("discrimination", "stddev"):
        model = _tiny(minibatch=option)
        images = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1)).astype(np.uint8)
        batch = model.serve_discriminate(tf.constant(images))["logits"].numpy()
        alone = model.serve_discriminate(tf.constant(images[1:2]))["logits"].numpy()
        np.testing.assert_allclose(alone[0], batch[1], rtol=1e-5)


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_dcgan_networks_fit_28_and_32_pixel_images(shape):
    model = adversarial.GAN(image_shape=shape, filters=4, latent_dim=8)
    assert model.generate(tf.zeros([2, 8])).shape == (2,) + shape
    assert model.discriminate(tf.zeros((2,) + shape)).shape == (2,)
    with pytest.raises(ValueError, match="divisible by 4"):
        adversarial.GAN(image_shape=(30, 30, 1))


def test_serving_endpoints_follow_the_contract():
    model = _tiny(num_classes=10)
    seeds = tf.constant([[3, i] for i in range(4)], tf.int64)
    labels = tf.constant([0, 1, 2, 3], tf.int64)
    sample = tf.function(model.serve_sample)
    out = sample(seeds, labels)
    assert out["images"].dtype == tf.uint8 and out["images"].shape == (4, 28, 28, 1)
    alone = sample(seeds[2:3], labels[2:3])
    np.testing.assert_array_equal(alone["images"][0], out["images"][2])
    again = model.serve_generate(out["latents"], labels)["images"]
    np.testing.assert_array_equal(again, out["images"])
    assert set(model.serving_endpoints()) == {"sample", "generate", "discriminate"}
    with pytest.raises(tf.errors.InvalidArgumentError, match="label must be < 10"):
        model.serve_sample(seeds[:1], tf.constant([10], tf.int64))


def test_began_balances_with_k_and_saves_it(tmp_path):
    model = adversarial.BEGAN(filters=4, latent_dim=8, gamma=0.5)
    model.compile()
    history = model.fit(tf.data.Dataset.from_tensor_slices(_images()).batch(8), epochs=2, verbose=0)
    assert {"convergence", "k", "d_loss", "g_loss"} <= set(history.history)
    assert 0.0 <= float(model.k) <= 1.0
    model.k.assign(0.25)
    model.save(tmp_path / "began.keras")
    loaded = keras.saving.load_model(tmp_path / "began.keras")
    assert float(loaded.k) == 0.25 and loaded.gamma == 0.5
    x = tf.constant(_images(2))
    np.testing.assert_allclose(loaded.discriminate(x), -loaded.reconstruction_error(x), rtol=1e-6)


# Runs in a fresh process: logical CPU devices and the dtype policy are process-wide.
STRATEGY_SCRIPT = r"""
import sys
import numpy as np, tensorflow as tf, keras
sys.path.insert(0, sys.argv[1])
from training import strategy as strategy_lib
from zoo import adversarial, latent
strategy_lib.split_cpu(2)

class FixedNoise(adversarial.GAN):
    # noise and penalty mixing tied to each image, so both strategies draw the same
    def _conv_stack(self, activation):
        # A smooth critic. The penalty differentiates D's input gradient, which for a leaky
        # ReLU jumps (slope 1 or 0.2) where a pre-activation crosses 0. After the first critic
        # step one interpolate's pre-activation sat within 2e-8 of 0, so float32 rounding (the
        # summation order of a kernel: oneDNN on or off, one batch of 16 or two of 8) picked
        # the slope and moved the second step's loss by 2e-3. With gelu both sides agree to
        # about 2e-7 whichever kernels run.
        return super()._conv_stack(lambda: keras.layers.Activation("gelu"))

    def _noise(self, real):
        return tf.reshape(real, [tf.shape(real)[0], -1])[:, 100:100 + self.latent_dim] * 3.0
    def _mixing(self, real):
        return tf.reshape(tf.reduce_mean(real, axis=[1, 2, 3]), [-1, 1, 1, 1]) * 0.5 + 0.5

images = np.random.default_rng(0).uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32)
data = tf.data.Dataset.from_tensor_slices(images).batch(16)

def step(strategy, **kwargs):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = FixedNoise(filters=4, latent_dim=8, **(kwargs or dict(loss="wgan_gp", d_steps=2)))
        model.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.05))
    start = [w.numpy().copy() for w in model.trainable_weights]
    logs = model.fit(data, verbose=0).history
    moved = max(float(np.max(np.abs(a - w.numpy()))) for a, w in zip(start, model.trainable_weights))
    return model, logs, moved

one, logs_one, moved = step(tf.distribute.get_strategy())
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two, logs_two, _ = step(mirrored)
assert mirrored.num_replicas_in_sync == 2
diff = max(float(np.max(np.abs(a.numpy() - b.numpy())))
           for a, b in zip(one.trainable_weights, two.trainable_weights))
print("EQUIV", diff, moved, logs_one["d_loss"][0], logs_two["d_loss"][0])

# the training techniques: spectral normalization, R1, the generator's average, InfoGAN's code
techniques = dict(loss="non_saturating", spectral_norm=True, r1_weight=1.0, ema_momentum=0.5,
                  latent_code=3)
one, _, moved = step(tf.distribute.get_strategy(), **techniques)
two, _, _ = step(mirrored, **techniques)
diff = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(one.weights, two.weights))
print("TECHNIQUES", diff, moved)

# per-replica noise differs under the strategy, for the GAN and the VAE
seeds = mirrored.run(lambda: adversarial.seeding.training_seed(two.seed_generator))
values = [s.numpy().tolist() for s in mirrored.experimental_local_results(seeds)]
print("SEEDS", values[0] != values[1])
with mirrored.scope():
    vae = latent.VAE(image_shape=(4, 4, 1), latent_dim=2, hidden_units=(4,))
    vae.compile(optimizer=keras.optimizers.Adam())
seeds = mirrored.run(tf.function(lambda: vae._posterior_seed(training=True)))
values = [s.numpy().tolist() for s in mirrored.experimental_local_results(seeds)]
print("VAESEEDS", values[0] != values[1])

keras.mixed_precision.set_global_policy("mixed_float16")
with mirrored.scope():
    model = adversarial.GAN(filters=4, latent_dim=8, loss="wgan_gp")
    model.compile()
before = [w.numpy().copy() for w in model.generator.trainable_weights]
logs = model.fit(data.unbatch().batch(8), verbose=0).history
print("MIXED", type(model.d_optimizer).__name__, type(model.g_optimizer).__name__,
      model.generator.layers[1].compute_dtype, model.generator.output.dtype,
      model.generator.trainable_weights[0].dtype,
      all(np.isfinite(v[-1]) for v in logs.values()),
      any(not np.allclose(a, w.numpy()) for a, w in zip(before, model.generator.trainable_weights)),
      int(model.d_optimizer.iterations.numpy()))
"""


@pytest.mark.slow  # two minutes: a subprocess with two logical CPUs; CycleGAN's mirrored test stays in the default run
def test_wgan_gp_under_mirrored_strategy_and_mixed_precision(tmp_path):
    stdout = run_with_cpu_devices(STRATEGY_SCRIPT, tmp_path)
    lines = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()
             if line.split() and line.split()[0] in ("EQUIV", "SEEDS", "VAESEEDS", "MIXED", "TECHNIQUES")}
    # Two critic steps with the gradient penalty's inner tape, then a generator
    # step: the same weights whether one device takes the batch of 16 or two
    # replicas take 8 each.
    assert float(lines["EQUIV"][0]) < 1e-5 and float(lines["EQUIV"][1]) > 1e-3, lines["EQUIV"]
    assert lines["SEEDS"] == ["True"] and lines["VAESEEDS"] == ["True"]
    # spectral normalization, R1, the generator's average and the code: the same under both strategies
    assert float(lines["TECHNIQUES"][0]) < 1e-5 and float(lines["TECHNIQUES"][1]) > 1e-3, lines["TECHNIQUES"]
    assert lines["MIXED"] == ["LossScaleOptimizer", "LossScaleOptimizer", "float16", "float32",
                              "float32", "True", "True", "10"], lines["MIXED"]


def _fit(model, steps=6, seed=0):
    images = np.random.default_rng(seed).uniform(-1, 1, (8 * steps, 28, 28, 1)).astype(np.float32)
    model.fit(images, batch_size=8, epochs=1, verbose=0)
    return images


def test_spectral_normalization_holds_each_discriminator_kernel_at_unit_norm():
    keras.utils.set_random_seed(0)
    model = adversarial.GAN(filters=8, latent_dim=8, spectral_norm=True)
    model.compile()
    _fit(model, steps=10)
    wrapped = [layer for layer in model.discriminator.layers
               if isinstance(layer, keras.layers.SpectralNormalization)]
    assert len(wrapped) == 3  # both convolutions and the output layer
    for layer in wrapped:
        kernel = layer.layer.kernel.numpy()
        sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert abs(sigma - 1.0) < 0.05, (layer.name, sigma)
    plain = adversarial.GAN(filters=8, latent_dim=8)  # without it, nothing holds sigma at 1
    kernel = plain.discriminator.layers[1].kernel.numpy()
    assert abs(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0] - 1.0) > 0.2


def test_r1_penalty_is_the_squared_gradient_norm_on_real_images_and_enters_the_loss():
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(1).uniform(-1, 1, (4, 28, 28, 1)).astype(np.float32)
    models = []
    for weight in (0.0, 3.0):
        keras.utils.set_random_seed(0)
        model = adversarial.GAN(filters=4, latent_dim=8, r1_weight=weight)
        model.compile(d_optimizer=keras.optimizers.SGD(0.0), g_optimizer=keras.optimizers.SGD(0.0))
        models.append(model)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.reduce_sum(models[1].discriminate(x, training=True))
    want = np.sum(np.square(tape.gradient(score, x).numpy()), axis=(1, 2, 3))
    penalty = models[1].r1_penalty(x).numpy()
    np.testing.assert_allclose(penalty, want, rtol=1e-5)
    assert penalty.min() > 0
    # the discriminator's loss gains gamma / 2 E[||grad D(x)||^2] (same weights, same noise)
    plain = float(models[0]._d_step(x, None)[0])
    penalised = float(models[1]._d_step(x, None)[0])
    np.testing.assert_allclose(penalised - plain, 1.5 * penalty.mean(), rtol=1e-4)


def test_the_averaged_generator_is_what_samples_and_exports(tmp_path):
    from serving import export

    keras.utils.set_random_seed(0)
    model = adversarial.GAN(filters=4, latent_dim=8, ema_momentum=0.9, name="dcgan_mnist")
    model.compile()
    raw_before = [w.numpy().copy() for w in model.generator.weights]
    np.testing.assert_array_equal(model.ema_generator.weights[0].numpy(), raw_before[0])  # starts at w
    _fit(model, steps=3)
    z = tf.random.stateless_normal([4, 8], seed=[3, 4])
    raw, averaged = model.generator(z).numpy(), model.ema_generator(z).numpy()
    assert np.abs(raw - averaged).max() > 1e-3  # the average is not the raw generator
    np.testing.assert_allclose(model.generate(z).numpy(), averaged, rtol=1e-6)
    np.testing.assert_allclose(model.generate(z, training=True).numpy(),
                               model.generator(z, training=True).numpy(), rtol=1e-6)
    # the update: ema <- m ema + (1 - m) w
    before = [a.numpy().copy() for a in model.ema_generator.weights]
    model.update_ema()
    for a, old, w in zip(model.ema_generator.weights, before, model.generator.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), 0.9 * old + 0.1 * w.numpy(), rtol=1e-5, atol=1e-7)
    loaded = tf.saved_model.load(str(export.export(model, tmp_path)))
    served = loaded.signatures["generate"](latents=z)["images"].numpy()
    np.testing.assert_array_equal(served, model.serve_generate(z)["images"].numpy())
    raw_images = tf.cast(tf.clip_by_value(tf.round((raw + 1) * 127.5), 0, 255), tf.uint8).numpy()
    assert not np.array_equal(served, raw_images)
    assert "moving average of the generator" in model.describe()


def test_the_averaged_generator_warms_up_as_the_zoos_other_averages():
    """ema_warmup: the first update copies the weights, the n-th uses min(m, (1 + n) / (10 + n))."""
    keras.utils.set_random_seed(0)
    model = adversarial.GAN(filters=4, latent_dim=8, ema_momentum=0.999, ema_warmup=True,
                            name="dcgan_mnist")
    model.compile()
    _fit(model, steps=1)
    for a, w in zip(model.ema_generator.weights, model.generator.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), w.numpy())  # not 0.999 x the initial weights
    _fit(model, steps=2)
    assert int(model.g_optimizer.iterations) == 3
    before = [a.numpy().copy() for a in model.ema_generator.weights]
    model.update_ema()  # as after the third update: n = 2 before it, m = 3 / 12
    for a, old, w in zip(model.ema_generator.weights, before, model.generator.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), 0.25 * old + 0.75 * w.numpy(), rtol=1e-5, atol=1e-7)
    assert "warmed up" in model.describe()
    assert adversarial.GAN.from_config(model.get_config()).ema_warmup


def test_the_categorical_code_is_uniform_drives_the_generator_and_is_recovered_by_q():
    """InfoGAN (Chen et al. 2016): c(z) uniform over K, fed to G; D's Q head is trained on
    -log Q(c | G(z)), which enters both players' losses with info_weight."""
    keras.utils.set_random_seed(0)
    model = adversarial.GAN(filters=4, latent_dim=8, latent_code=4, info_weight=2.0)
    assert model.generator.input_shape == (None, 12) and model.discriminator.output_shape == (None, 5)
    z = tf.random.stateless_normal([40000, 8], seed=[1, 2])
    shares = np.bincount(model.code(z).numpy(), minlength=4) / 40000
    np.testing.assert_allclose(shares, 0.25, atol=0.01)  # argmax of iid normals: uniform
    # the code changes the image: same z but the argmax moved to another entry
    z = tf.constant([[2.0, 0.0, 0.0, 0.0, 0.5, -0.5, 1.0, 0.0]])
    moved = tf.constant([[0.0, 2.0, 0.0, 0.0, 0.5, -0.5, 1.0, 0.0]])
    one_hot = model.generator.predict(tf.concat([moved, tf.one_hot([0], 4)], -1), verbose=0)
    np.testing.assert_allclose(model.generate(z).numpy(),
                               model.generator(tf.concat([z, tf.one_hot([0], 4)], -1)).numpy(), rtol=1e-6)
    assert np.abs(model.generate(moved).numpy() - one_hot).max() > 1e-4
    # the information term: the cross-entropy of Q's logits for G(z) against c(z)
    z = tf.random.stateless_normal([6, 8], seed=[5, 6])
    fake = model.generate(z, training=True)
    logits, code_logits = model.discriminate_and_code(fake, training=True)
    want = -tf.gather(tf.nn.log_softmax(code_logits), model.code(z), batch_dims=1)
    np.testing.assert_allclose(model.information_loss(z, code_logits).numpy(), want.numpy(), rtol=1e-5)
    np.testing.assert_allclose(model.discriminate(fake, training=True).numpy(), logits.numpy(), rtol=1e-6)
    # training lowers it: Q learns to read the code off G's images
    z = tf.random.stateless_normal([256, 8], seed=[7, 8])

    def information():
        return float(tf.reduce_mean(model.information_loss(z, model.discriminate_and_code(model.generate(z))[1])))

    before = information()
    assert abs(before - np.log(4)) < 0.3, before  # chance: log K
    model.compile(d_optimizer=keras.optimizers.Adam(2e-3), g_optimizer=keras.optimizers.Adam(2e-3))
    history = model.fit(np.zeros((8 * 40, 28, 28, 1), np.float32), batch_size=8, epochs=2, verbose=0)
    assert information() < 0.5 * before and len(history.history["info"]) == 2, (before, information())
    assert "categorical code" in model.describe()
    assert adversarial.GAN.from_config(model.get_config()).latent_code == 4
    with pytest.raises(ValueError, match="latent_code"):
        adversarial.GAN(latent_dim=8, latent_code=9)
