"""Image-to-image translation: the tasks' exact definitions, pix2pix, CycleGAN and its image pool.

The shared harness covers config, saving, one fit step and mixed precision
(tests/test_harness.py); these are the properties the papers define.
"""
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_main
from harness import run_with_cpu_devices
from serving import export
from training import data, translation_metrics
from zoo import adversarial, registry, saving, translation

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ the tasks
def _blocks_mean_numpy(images):
    b, h, w, c = images.shape
    means = images.astype(np.float64).reshape(b, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4))
    return np.round(means).astype(np.uint8)  # NumPy rounds ties to even, as the definition says


def _sobel_numpy(images):
    x = np.pad(images.astype(np.float64) / 255.0, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    ky = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64)
    h, w = images.shape[1:3]
    dy = sum(ky[i, j] * x[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
    dx = sum(ky.T[i, j] * x[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
    return np.where(np.sqrt(dy ** 2 + dx ** 2) > 0.5, 255, 0).astype(np.uint8)


def _dilate_numpy(images):
    x = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)])  # zeros never win a max of uint8
    h, w = images.shape[1:3]
    return np.max([x[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


def test_task_definitions_are_exact():
    images = RNG.integers(0, 256, (6, 28, 28, 1)).astype(np.uint8)
    images[0, :4, :4] = 0
    images[0, 0, 0] = 8 * 16 // 1 - 120  # a 4x4 block summing to 8 (mod 16): a mean of k + 0.5
    block = images[0, :4, :4, 0].astype(int)
    assert block.sum() % 16 == 8
    got = data.downsample4(images).numpy()
    assert got.shape == (6, 7, 7, 1) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, _blocks_mean_numpy(images))
    assert got[0, 0, 0, 0] == 0  # 0.5 goes to the even neighbour
    np.testing.assert_array_equal(data.sobel_edges(images).numpy(), _sobel_numpy(images))
    np.testing.assert_array_equal(data.dilate3(images).numpy(), _dilate_numpy(images))
    with pytest.raises(ValueError, match="superres4"):
        data.get_task("superres")


def test_unpaired_training_splits_the_images_and_evaluation_pairs_them():
    raw = next(iter(data.load("mnist", "train[:40]", "uint8", 40, shuffle=False)))
    got = next(iter(data.load("mnist", "train[:40]", "uint8", 20, shuffle=False, task="thicken")))
    np.testing.assert_array_equal(got["a"], raw[0::2])  # A: the even-indexed images
    np.testing.assert_array_equal(got["b"], data.dilate3(raw[1::2]))  # B: the odd ones, dilated
    for take, batch, remainder in ((None, 64, True), (999, 64, False), (999, 64, True), (40, 20, True)):
        ds = data.load("mnist", "train", "uint8", batch, task="thicken", take=take, drop_remainder=remainder)
        assert ds.cardinality().numpy() == sum(1 for _ in ds)  # known before the first pass: Keras sizes epoch 1
    test = next(iter(data.load("mnist", "test", "float11", 8, labels=True, take=8, task="thicken")))
    raw = next(iter(data.load("mnist", "test", "uint8", 8, take=8)))
    np.testing.assert_allclose(test["a"], raw.numpy() / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(test["b"], data.dilate3(raw).numpy() / 127.5 - 1, atol=1e-6)
    assert test["labels"].shape == (8,)
    superres = next(iter(data.load("mnist", "test", "uint8", 8, take=8, task="superres4")))
    np.testing.assert_array_equal(superres["a"], data.downsample4(raw))
    np.testing.assert_array_equal(superres["b"], raw)
    with pytest.raises(ValueError, match="labels"):
        data.load("mnist", "train[:40]", "uint8", 4, labels=True, task="thicken")


# ------------------------------------------------------------------ networks
def test_unet_upsamples_small_inputs_and_joins_each_encoder_level_to_the_decoder():
    g = translation.unet((7, 7, 1), (28, 28, 1), 4)
    assert g.output_shape == (None, 28, 28, 1)
    assert [layer.name for layer in g.layers if layer.name.startswith("upsample")] == ["upsample0", "upsample1"]
    joins = [layer for layer in g.layers if isinstance(layer, keras.layers.Concatenate)]
    sizes = sorted(int(layer.output.shape[1]) for layer in joins)
    assert sizes == [7, 14, 28]  # a skip connection at every level
    for shapes in [(6, 6, 1), (28, 28, 1)], [(7, 7, 1), (21, 21, 1)], [(14, 7, 1), (28, 28, 1)]:
        with pytest.raises(ValueError, match="power of two"):
            translation.unet(*shapes, 4)


def test_patchgan_gives_a_logit_per_patch_and_reads_the_source():
    d = translation.patch_discriminator((28, 28, 1), 4, source_shape=(7, 7, 1))
    source = tf.constant(RNG.uniform(-1, 1, (2, 7, 7, 1)), tf.float32)
    image = tf.constant(RNG.uniform(-1, 1, (2, 28, 28, 1)), tf.float32)
    logits = d([source, image])
    assert logits.shape == (2, 7, 7, 1)
    assert not np.allclose(logits, d([-source, image]))  # conditional: the source counts



def test_instance_norm_leaves_the_patchgan_blind_to_contrast_and_d_norm_none_does_not():
    """Why ``d_norm="none"``: with instance norm, D scores an image and the same image at half its
    contrast alike (fresh D: zero biases, leaky ReLUs, so each layer scales with its input and the
    norm divides the scale out); without it, the logits scale with the contrast."""
    image = tf.constant(RNG.uniform(-1, 1, (2, 28, 28, 1)), tf.float32)
    keras.utils.set_random_seed(0)
    blind = translation.patch_discriminator((28, 28, 1), 4)
    np.testing.assert_allclose(blind(0.5 * image), blind(image), rtol=1e-3, atol=1e-3)
    keras.utils.set_random_seed(0)
    seeing = translation.patch_discriminator((28, 28, 1), 4, norm="none")
    assert not any(isinstance(layer, keras.layers.GroupNormalization) for layer in seeing.layers)
    np.testing.assert_allclose(seeing(0.5 * image), 0.5 * seeing(image), rtol=1e-4, atol=1e-5)
    assert np.abs(seeing(image)).max() > 1e-2
    with pytest.raises(ValueError, match="d_norm"):
        translation.patch_discriminator((28, 28, 1), 4, norm="batch")
    model = translation.CycleGAN(filters=4, d_filters=4, d_norm="none")
    assert "none in the discriminators" in model.describe()
    assert translation.CycleGAN.from_config(model.get_config()).d_norm == "none"


@pytest.mark.parametrize("minibatch", ["discrimination", "stddev"])
def test_minibatch_features_let_each_patch_see_a_batch_that_lacks_variety(minibatch):
    """``d_minibatch``: a patch's logit depends on the rest of the batch (without it, it does not),
    and a batch of copies of one image reads as a batch with no variety: minibatch
    discrimination's closeness is 1 (exp(-0)) for every image, the stddev channel 0."""
    keras.utils.set_random_seed(0)
    image = tf.constant(RNG.uniform(-1, 1, (4, 28, 28, 1)), tf.float32)
    copies = tf.repeat(image[:1], 4, axis=0)
    alone = translation.patch_discriminator((28, 28, 1), 4)
    np.testing.assert_allclose(alone(copies)[0], alone(image)[0], atol=1e-6)
    d = translation.patch_discriminator((28, 28, 1), 4, minibatch=minibatch)
    assert d(image).shape == (4, 7, 7, 1)
    assert np.abs(d(copies)[0] - d(image)[0]).max() > 1e-4
    batch_view = keras.Model(d.inputs, d.layers[-2].output)(copies).numpy()  # what the logits read
    appended = batch_view[..., 16:]  # after D's 4f = 16 channels
    if minibatch == "discrimination":
        np.testing.assert_allclose(appended[..., -32:], 1.0, atol=1e-5)  # 32 kernels
    else:
        np.testing.assert_allclose(appended, 0.0, atol=1e-3)  # sqrt(0 + 1e-8)
    with pytest.raises(ValueError, match="d_minibatch"):
        translation.patch_discriminator((28, 28, 1), 4, minibatch="batch")
    model = translation.CycleGAN(filters=4, d_filters=4, d_minibatch=minibatch)
    assert "minibatch discrimination" in model.describe() or "feature spread" in model.describe()
    assert translation.CycleGAN.from_config(model.get_config()).d_minibatch == minibatch


# ------------------------------------------------------------------ pix2pix
def _pix2pix(**kwargs):
    keras.utils.set_random_seed(0)
    model = translation.Pix2Pix(source_shape=(7, 7, 1), filters=4, d_filters=4, **kwargs)
    model.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
    return model


def _pairs(n=8, source=(7, 7, 1)):
    return {"a": RNG.uniform(-1, 1, (n,) + source).astype(np.float32),
            "b": RNG.uniform(-1, 1, (n, 28, 28, 1)).astype(np.float32)}


def test_pix2pix_objective_is_the_gan_loss_plus_lambda_l1():
    model = _pix2pix()
    batch = _pairs(4)
    source, target = tf.constant(batch["a"]), tf.constant(batch["b"])
    fake = model.translate(source)
    total, adv, l1 = model.generator_objective(source, target, fake, training=False)
    logits = model.discriminate(source, fake)
    np.testing.assert_allclose(adv, np.mean(np.log1p(np.exp(-logits.numpy()))), rtol=1e-5)
    np.testing.assert_allclose(l1, np.mean(np.abs(batch["b"] - fake.numpy())), rtol=1e-5)
    np.testing.assert_allclose(total, adv + 100.0 * l1, rtol=1e-5)
    d_loss = model.discriminator_objective(source, target, fake, training=False)
    real = model.discriminate(source, target).numpy()
    want = 0.5 * np.mean(np.log1p(np.exp(-real)) + np.log1p(np.exp(logits.numpy())))
    np.testing.assert_allclose(d_loss, want, rtol=1e-5)


def test_pix2pix_r1_penalty_is_the_per_patch_gradient_norm_of_real_pairs_in_d_loss():
    batch = _pairs(4)
    source, target = tf.constant(batch["a"]), tf.constant(batch["b"])
    plain, penalised = _pix2pix(), _pix2pix(r1_weight=3.0)  # one seed: the same weights
    # independently, from D's Jacobian: (1 / P) ||sum over patches of grad_y D_p||^2
    with tf.GradientTape() as tape:
        tape.watch(target)
        logits = tf.reshape(penalised.discriminate(source, target, training=True), [4, -1])
    jacobian = tape.batch_jacobian(logits, target).numpy()  # (B, P, 28, 28, 1)
    patches = jacobian.shape[1]
    want = np.sum(np.square(jacobian.sum(axis=1)), axis=(1, 2, 3)) / patches
    penalty = adversarial.r1_penalty(
        lambda y: penalised.discriminate(source, y, training=True), target).numpy()
    np.testing.assert_allclose(penalty, want, rtol=1e-4)
    assert patches == 49 and penalty.min() > 0
    fake = plain.translate(source)
    gained = (penalised.discriminator_objective(source, target, fake)
              - plain.discriminator_objective(source, target, fake))
    np.testing.assert_allclose(gained, 1.5 * penalty.mean(), rtol=1e-4)
    assert "R1 penalty on real pairs, gamma = 3" in penalised.describe() and "R1" not in plain.describe()
    assert penalised.objective.endswith("R1 penalty gamma = 3")
    assert translation.Pix2Pix.from_config(penalised.get_config()).r1_weight == 3.0
    # a loss weight, not the architecture: --init_from may start one from the other
    assert saving.architecture(plain, weights_only=True) == saving.architecture(penalised, weights_only=True)
    assert saving.architecture(plain) != saving.architecture(penalised)
    assert set(penalised.fit(batch, batch_size=4, epochs=1, verbose=0).history) == {"d_loss", "g_gan", "l1"}
    with pytest.raises(ValueError, match="r1_weight"):
        translation.Pix2Pix(r1_weight=-1.0)


def test_l1_alone_trains_the_generator_only():
    model = _pix2pix(gan_weight=0.0)
    d_before = [w.numpy().copy() for w in model.discriminator.weights]
    g_before = [w.numpy().copy() for w in model.generator.trainable_weights]
    logs = model.fit(_pairs(8), batch_size=4, epochs=1, verbose=0).history
    assert set(logs) == {"l1"}
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(d_before, model.discriminator.weights, strict=True))
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(g_before, model.generator.trainable_weights, strict=True))
    assert model.objective == "L1 alone" and "not trained" in model.describe()
    with pytest.raises(ValueError, match="wgan_gp"):
        translation.Pix2Pix(loss="wgan_gp")


def test_translate_is_deterministic_and_row_independent():
    model = _pix2pix()
    images = RNG.integers(0, 256, (5, 7, 7, 1)).astype(np.uint8)
    whole = model.serve_translate(images)["images"].numpy()
    assert whole.shape == (5, 28, 28, 1) and whole.dtype == np.uint8
    alone = np.concatenate([model.serve_translate(images[i:i + 1])["images"].numpy() for i in range(5)])
    # A row alone and in a batch differ only where a float output lies within an ulp of a
    # rounding boundary of the uint8 output (a batch of 1 may take another convolution kernel:
    # seen once, one pixel of 3,920 off by 1 on a 2-core AMD EPYC with oneDNN off).
    differ = whole.astype(int) - alone.astype(int)
    assert np.abs(differ).max() <= 1 and np.count_nonzero(differ) <= 4, np.count_nonzero(differ)
    np.testing.assert_array_equal(whole, model.serve_translate(images)["images"].numpy())
    assert list(model.serving_endpoints()) == ["translate"]


# ------------------------------------------------------------------ CycleGAN
def _cyclegan(**kwargs):
    keras.utils.set_random_seed(0)
    return translation.CycleGAN(filters=4, d_filters=4, **kwargs)


def test_cyclegan_objective_is_least_squares_plus_cycle_and_identity():
    model = _cyclegan(cycle_weight=10.0, identity_weight=5.0)
    a = tf.constant(RNG.uniform(-1, 1, (3, 28, 28, 1)), tf.float32)
    b = tf.constant(RNG.uniform(-1, 1, (3, 28, 28, 1)), tf.float32)
    total, adv, cycle, identity, fake_a, fake_b = model.generator_objective(a, b, training=False)
    g, f = model.translate, model.translate_back
    want_adv = (np.mean((model.discriminator_b(g(a)).numpy() - 1) ** 2)
                + np.mean((model.discriminator_a(f(b)).numpy() - 1) ** 2))
    want_cycle = np.mean(np.abs(f(g(a)) - a)) + np.mean(np.abs(g(f(b)) - b))
    want_identity = np.mean(np.abs(g(b) - b)) + np.mean(np.abs(f(a) - a))
    np.testing.assert_allclose([adv, cycle, identity], [want_adv, want_cycle, want_identity], rtol=1e-5)
    np.testing.assert_allclose(total, want_adv + 10 * want_cycle + 5 * want_identity, rtol=1e-5)
    np.testing.assert_allclose(fake_b, g(a), atol=1e-6)
    d_loss = model.discriminator_objective(a, b, fake_a, fake_b, training=False)
    want_d = sum(0.5 * (np.mean((d(real).numpy() - 1) ** 2) + np.mean(d(fake).numpy() ** 2))
                 for d, real, fake in ((model.discriminator_a, a, fake_a), (model.discriminator_b, b, fake_b)))
    np.testing.assert_allclose(d_loss, want_d, rtol=1e-5)
    assert list(model.serving_endpoints()) == ["translate", "translate_back"]


def test_image_pool_fills_then_swaps_half_of_the_time():
    pool = translation.ImagePool(size=6)
    pool.build((None, 2, 2, 1))
    batches = [(np.full((4, 2, 2, 1), float(k)) + np.arange(4)[:, None, None, None] / 10).astype(np.float32)
               for k in range(1, 40)]
    first = pool(batches[0], tf.constant([0, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(first, batches[0])  # filling: the new images come back
    second = pool(batches[1], tf.constant([0, 1], tf.int64)).numpy()
    np.testing.assert_array_equal(second[:2], batches[1][:2])  # slots 4 and 5 fill
    assert int(pool.count.numpy()) == 6
    seen = {float(v) for batch in batches[:2] for v in batch[:, 0, 0, 0]}
    swaps = 0
    for k, batch in enumerate(batches[2:], 2):
        pooled_before = {float(v) for v in pool.images.numpy()[:, 0, 0, 0]}
        out = pool(batch, tf.constant([0, k], tf.int64)).numpy()[:, 0, 0, 0]
        new = set(batch[:, 0, 0, 0].tolist())
        for value, fresh in zip(out, batch[:, 0, 0, 0], strict=True):
            if value != fresh:  # a swap hands back a pooled image (maybe one of this batch's)
                assert value in pooled_before or value in new
                swaps += 1
        seen |= new
        stored = pool.images.numpy()[:, 0, 0, 0]
        assert set(stored) <= seen and len(set(stored)) == 6  # nothing lost or duplicated
    assert int(pool.count.numpy()) == 6
    assert 0.35 < swaps / (4 * 37) < 0.65, swaps


def test_cyclegan_pool_is_saved_with_the_weights_and_the_model(tmp_path):
    model = _cyclegan(pool_size=5)
    model.compile()
    model.fit({"a": RNG.uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32),
               "b": RNG.uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)},
              batch_size=4, epochs=1, verbose=0)
    assert int(model.pool_a.count.numpy()) == 5 and np.abs(model.pool_b.images.numpy()).max() > 0
    model.save_weights(tmp_path / "backup.weights.h5")  # what BackupAndRestore keeps
    again = _cyclegan(pool_size=5)
    again.load_weights(tmp_path / "backup.weights.h5")
    for pool, copy in ((model.pool_a, again.pool_a), (model.pool_b, again.pool_b)):
        np.testing.assert_array_equal(pool.images.numpy(), copy.images.numpy())
        assert int(copy.count.numpy()) == 5
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.pool_a.images.numpy(), model.pool_a.images.numpy())


MIRRORED_SCRIPT = r"""
import sys
import numpy as np, tensorflow as tf, keras
sys.path.insert(0, sys.argv[1])
from training import strategy as strategy_lib
from zoo import translation
strategy_lib.split_cpu(2)
rng = np.random.default_rng(0)
data = tf.data.Dataset.from_tensor_slices(
    {"a": rng.uniform(-1, 1, (24, 28, 28, 1)).astype(np.float32),
     "b": rng.uniform(-1, 1, (24, 28, 28, 1)).astype(np.float32)}).batch(8)

def run(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = translation.CycleGAN(filters=4, d_filters=4, pool_size=10)
        model.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.05))
    start = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(data, verbose=0)
    moved = max(float(np.max(np.abs(a - w.numpy()))) for a, w in zip(start, model.trainable_weights))
    return model, moved

one, moved = run(tf.distribute.get_strategy())
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two, _ = run(mirrored)
diff = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(one.weights, two.weights))
pools = [float(np.max(np.abs(v.numpy() - w.numpy()))) for v, w in
         zip(mirrored.experimental_local_results(two.pool_a.images.value),
             [one.pool_a.images.value] * 2)]
print("EQUIV", diff, moved, max(pools), int(two.pool_a.count.numpy()))
"""


def test_cyclegan_under_mirrored_strategy_equals_one_device(tmp_path):
    lines = {line.split()[0]: line.split()[1:] for line in
             run_with_cpu_devices(MIRRORED_SCRIPT, tmp_path).splitlines() if line.startswith("EQUIV")}
    diff, moved, pools, count = lines["EQUIV"]
    # three steps, the pool filling and then swapping: every weight, and both replicas' pools,
    # as on one device
    assert float(diff) < 1e-5 and float(moved) > 1e-3 and float(pools) < 1e-5, lines
    assert count == "10"


# ------------------------------------------------------------------ export and figures
@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    base = tmp_path_factory.mktemp("zoo")
    for name in ("pix2pix_superres_mnist", "unet_l1_superres_mnist", "cyclegan_thick_mnist"):
        export.export(registry.build(name, filters=4, d_filters=4), base)
    return base


def test_exports_serve_translate_with_core_ops(tiny_zoo):
    result = run_main("serving.check", tiny_zoo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 servable, 0 not" in result.stdout
    loaded = tf.saved_model.load(str(tiny_zoo / "cyclegan_thick_mnist" / "1"))
    assert set(loaded.signatures) == {"translate", "translate_back", "serving_default"}
    spec = loaded.signatures["translate"].structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 28, 28, 1]
    spec = tf.saved_model.load(str(tiny_zoo / "pix2pix_superres_mnist" / "1")).signatures[
        "translate"].structured_input_signature[1]["images"]
    assert spec.shape.as_list() == [None, 7, 7, 1]


def test_psnr_floors_exact_matches_and_bicubic_keeps_the_shape():
    x = RNG.integers(0, 256, (3, 28, 28, 1)).astype(np.uint8)
    y = x.copy()
    y[1, 0, 0, 0] ^= 1  # one grey level at one pixel
    assert translation_metrics.psnr(x, x) == pytest.approx(10 * np.log10(255 ** 2 * 784))
    assert translation_metrics.psnr(x[1:2], y[1:2]) == pytest.approx(10 * np.log10(255 ** 2 * 784))
    assert translation_metrics.bicubic(x[:, :7, :7], (28, 28)).shape == (3, 28, 28, 1)


def test_figures_set_the_model_beside_its_baselines(tiny_zoo, monkeypatch):
    shutil.copytree(ROOT / "exported" / "classifier_mnist", tiny_zoo / "classifier_mnist",
                    dirs_exist_ok=True)
    monkeypatch.setenv("GENZOO_EXPORTED_DIR", str(tiny_zoo))
    preset = registry.get_preset("pix2pix_superres_mnist")
    model = saving.load_keras(saving.version_path("pix2pix_superres_mnist"))
    found = translation_metrics.translation_figures(model, preset, take=200)
    rows = found["rows"]
    assert list(rows) == ["model", "target images", "bicubic upsampling",
                          "L1 alone (unet_l1_superres_mnist/1)"]
    assert 13.5 < rows["bicubic upsampling"]["psnr"] < 16  # about 14.6 dB on the whole test set
    assert rows["target images"]["accuracy"] > 0.97 and "psnr" not in rows["target images"]
    assert found["images"] == 200 and found["classifier"] == "classifier_mnist/1"
    cycle = saving.load_keras(saving.version_path("cyclegan_thick_mnist"))
    found = translation_metrics.translation_figures(
        cycle, registry.get_preset("cyclegan_thick_mnist"), take=100)
    untranslated = found["rows"]["A untranslated, against B"]["psnr"]
    assert 9.5 < untranslated < 11.5  # about 10.4 dB on the whole test set
    assert found["rows"]["B untranslated, against A"]["psnr"] == pytest.approx(untranslated)
    assert set(found["cycle"]) == {"a_mae", "a_psnr", "b_mae", "b_psnr"}
    widths = found["by_stroke_width"]
    assert [row["images"] for row in widths] == [25] * 4
    assert all(row["width"][0] <= row["width"][1] == nxt["width"][0]
               for row, nxt in zip(widths[:-1], widths[1:], strict=True))
    assert [row["ink_a"] < row["ink_b"] for row in widths] == [True] * 4  # B is the dilation of A


def test_stroke_width_measures_strokes_and_the_rows_follow_the_outputs_ink():
    """``stroke_width`` reads w off a bar w pixels wide (w >= 2); ``by_stroke_width`` splits the images
    in quarters by A's width and gives each quarter's PSNR and the ink of the outputs and the truth."""
    bars = np.zeros((4, 28, 28, 1), np.uint8)
    for i, w in enumerate((2, 3, 4, 6)):
        bars[i, :, 10:10 + w] = 255  # no ends inside the image: all of its boundary is its two sides
    np.testing.assert_allclose(translation_metrics.stroke_width(bars), [2, 3, 4, 6])
    a = np.repeat(bars, 2, axis=0)
    b = data.dilate3(a).numpy()
    rows = translation_metrics.by_stroke_width(a, b, b, a)  # a perfect translation
    assert [row["images"] for row in rows] == [2] * 4
    assert all(row["ink_g_a"] == row["ink_b"] and row["ink_f_b"] == row["ink_a"] for row in rows)
    assert [row["a_to_b_psnr"] for row in rows] == [pytest.approx(10 * np.log10(255 ** 2 * 784))] * 4
    same = np.repeat(b[:1], 8, axis=0)  # a G that draws every image alike
    rows = translation_metrics.by_stroke_width(a, b, same, a)
    assert len({row["ink_g_a"] for row in rows}) == 1 and rows[0]["a_to_b_psnr"] > rows[-1]["a_to_b_psnr"]


def test_the_training_command_trains_cyclegan_unpaired_in_bfloat16(tmp_path):
    result = run_main("training.train", "cyclegan_thick_mnist", "--epochs", 2, "--steps_per_epoch", 3,
                      "--train_examples", 200, "--batch_size", 8, "--set", "filters=4",
                      "--set", "d_filters=4", "--set", "pool_size=30", "--output_dir", tmp_path,
                      "--verbose", 0)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert info["config"]["dtype_policy"] == "mixed_bfloat16"  # the preset's
    assert set(info["final_metrics"]) >= {"cycle", "identity", "d_loss", "g_gan", "val_cycle"}
    trained = keras.saving.load_model(tmp_path / "model.keras")
    assert trained.dtype_policy.name == "mixed_bfloat16"
    assert int(trained.pool_a.count.numpy()) == 30  # 6 steps of 8 generated images, the first 30 kept
    assert (tmp_path / "samples" / "epoch_002.png").exists()  # translations of test images
