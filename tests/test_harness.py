"""The shared harness on every model class the registry builds and every custom layer.

Each case uses non-default arguments, so a constructor argument that
``get_config`` forgets shows up as a failed round trip or a reload that
computes something else.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import run_layer_test, run_model_test
from zoo import adversarial, autoregressive, classifier, latent, pixelrnn, registry, text2image, translation

RNG = np.random.default_rng(0)
BINARY = (RNG.random((8, 8, 8, 1)) < 0.4).astype(np.float32)
EIGHT_BIT = RNG.integers(0, 256, (8, 8, 8, 1)).astype(np.float32)
SIGNED = RNG.uniform(-1, 1, (8, 8, 8, 1)).astype(np.float32)
LABELS = np.arange(8) % 3


def _labelled(images):
    return {"images": images, "labels": LABELS}


def _generate(model, z):
    return model.generate(z, tf.constant(LABELS[:4]) if model.num_classes else None)


MODELS = {
    "Autoencoder": (lambda: latent.Autoencoder(image_shape=(8, 8, 1), latent_dim=3, hidden_units=(16, 8),
                                               activation="tanh", likelihood="discretized_logistic"),
                    EIGHT_BIT, EIGHT_BIT, None),
    "VAE": (lambda: latent.VAE(image_shape=(8, 8, 1), latent_dim=3, hidden_units=(16,), beta=2.0,
                               kl_warmup_steps=5),
            BINARY, BINARY, None),
    "BetaVAE": (lambda: latent.BetaVAE(image_shape=(8, 8, 1), latent_dim=2, hidden_units=(12,), beta=6.0,
                                       likelihood="discretized_logistic"),
                EIGHT_BIT, EIGHT_BIT, None),
    "ConditionalVAE": (lambda: latent.ConditionalVAE(image_shape=(8, 8, 1), latent_dim=2, hidden_units=(12,),
                                                     num_classes=3),
                       _labelled(BINARY), _labelled(BINARY), None),
    # The conditional plain PixelCNN: its get_config once dropped num_classes.
    "PixelCNN": (lambda: autoregressive.PixelCNN(image_shape=(6, 6, 1), filters=8, num_blocks=2,
                                                 likelihood="categorical", first_kernel_size=3,
                                                 num_classes=3),
                 _labelled(EIGHT_BIT[:, :6, :6]), _labelled(EIGHT_BIT[:, :6, :6]), None),
    "GatedPixelCNN": (lambda: autoregressive.GatedPixelCNN(image_shape=(6, 6, 1), filters=8, num_blocks=2,
                                                           kernel_size=5, first_kernel_size=3,
                                                           likelihood="logistic_mixture", num_classes=3),
                      _labelled(EIGHT_BIT[:, :6, :6]), _labelled(EIGHT_BIT[:, :6, :6]), None),
    "RowLSTM": (lambda: pixelrnn.RowLSTM(image_shape=(6, 5, 1), filters=6, num_blocks=2, kernel_size=5,
                                         first_kernel_size=3, likelihood="categorical"),
                EIGHT_BIT[:, :6, :5], EIGHT_BIT[:, :6, :5], None),
    "DiagonalBiLSTM": (lambda: pixelrnn.DiagonalBiLSTM(image_shape=(6, 5, 1), filters=6, num_blocks=2,
                                                       first_kernel_size=5, likelihood="logistic_mixture",
                                                       num_classes=3),
                       _labelled(EIGHT_BIT[:, :6, :5]), _labelled(EIGHT_BIT[:, :6, :5]), None),
    "GAN": (lambda: adversarial.GAN(image_shape=(8, 8, 1), latent_dim=4, filters=4, loss="hinge",
                                    d_steps=2, num_classes=3, minibatch="discrimination", seed=3,
                                    ema_momentum=0.9, spectral_norm=True, r1_weight=2.0,
                                    latent_code=2, info_weight=0.5),
            _labelled(SIGNED), tf.random.stateless_normal([4, 4], seed=[1, 2]), _generate),
    "BEGAN": (lambda: adversarial.BEGAN(image_shape=(8, 8, 1), latent_dim=4, filters=4, gamma=0.7,
                                        lambda_k=0.01, code_dim=6),
              SIGNED, tf.constant(SIGNED[:4]), lambda m, x: m.discriminate(x)),
    "TextGAN": (lambda: text2image.TextGAN(image_shape=(8, 8, 1), latent_dim=4, filters=4, embed_dim=3,
                                           loss="lsgan", d_steps=2, seed=3, ema_momentum=0.9,
                                           minibatch="stddev",
                                           spectral_norm=True, r1_weight=2.0, ink_medians=(5,) * 10),
                _labelled(SIGNED), tf.random.stateless_normal([4, 4], seed=[1, 2]),
                lambda m, z: m.generate(z, tf.constant([[1, 2], [0, 3], [2, 4], [0, 0]]))),
    "Pix2Pix": (lambda: translation.Pix2Pix(source_shape=(4, 4, 1), image_shape=(8, 8, 1), filters=3,
                                            d_filters=2, loss="lsgan", l1_weight=7.0, gan_weight=0.5),
                {"a": SIGNED[:, :4, :4], "b": SIGNED}, tf.constant(SIGNED[:4, :4, :4]), None),
    "CycleGAN": (lambda: translation.CycleGAN(image_shape=(8, 8, 1), filters=3, d_filters=2,
                                              cycle_weight=4.0, identity_weight=1.0, pool_size=3,
                                              seed=2, d_norm="none", d_minibatch="discrimination"),
                 {"a": SIGNED, "b": SIGNED[::-1]}, tf.constant(SIGNED[:4]),
                 lambda m, x: [m.translate(x), m.translate_back(x)]),
    "Classifier": (lambda: classifier.Classifier(image_shape=(8, 8, 1), num_classes=3, filters=4,
                                                 feature_dim=16, dropout=0.1),
                   _labelled(EIGHT_BIT / 255.0), tf.constant(EIGHT_BIT / 255.0, tf.float32), None),
}

LAYERS = {
    "MaskedConv2D": (autoregressive.MaskedConv2D,
                     dict(filters=6, kernel_size=5, mask_type="A", color_channels=3, activation="relu"),
                     tf.constant(RNG.normal(size=(2, 6, 6, 3)), tf.float32), {}),
    "GatedBlock": (autoregressive.GatedBlock,
                   dict(filters=4, kernel_size=5, first=True, num_classes=3, last=False),
                   [tf.constant(RNG.normal(size=(2, 6, 6, 1)), tf.float32)] * 2,
                   {"label": tf.constant([0, 2])}),
    "RowLSTMLayer": (pixelrnn.RowLSTMLayer, dict(units=3, kernel_size=5),
                     tf.constant(RNG.normal(size=(2, 5, 4, 6)), tf.float32),
                     {"condition": tf.constant(RNG.normal(size=(2, 1, 1, 6)), tf.float32)}),
    "DiagonalBiLSTMLayer": (pixelrnn.DiagonalBiLSTMLayer, dict(units=3),
                            tf.constant(RNG.normal(size=(2, 5, 4, 6)), tf.float32), {}),
    "MinibatchDiscrimination": (adversarial.MinibatchDiscrimination, dict(kernels=5, dims=3),
                                tf.constant(RNG.normal(size=(4, 6)), tf.float32), {}),
    "ImagePool": (translation.ImagePool, dict(size=10),
                  tf.constant(RNG.normal(size=(2, 3, 3, 1)), tf.float32),
                  {"seed": tf.constant([1, 2], tf.int64)}),
    "MinibatchStddev": (adversarial.MinibatchStddev, {},
                        tf.constant(RNG.normal(size=(4, 3, 3, 2)), tf.float32), {}),
}


def test_every_registered_class_has_a_harness_case():
    registered = {name.split(">", 1)[1] for name in keras.saving.get_custom_objects()
                  if name.startswith("genzoo>")}
    assert registered == set(MODELS) | set(LAYERS)
    assert {p.model.__name__ for p in registry.PRESETS.values()} <= set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model(name, tmp_path):
    make, data, inputs, output = MODELS[name]
    run_model_test(make, data, inputs, tmp_path, output)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer(name):
    cls, kwargs, inputs, call_kwargs = LAYERS[name]
    run_layer_test(cls, kwargs, inputs, call_kwargs)


def test_conditional_pixelcnn_conditions_on_its_label():
    make = MODELS["PixelCNN"][0]
    model = make()
    for v in model.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, seed=[4, v.shape.num_elements()]) * 0.3)
    images = EIGHT_BIT[:2, :6, :6]
    a = model.log_prob({"images": images, "labels": np.zeros(2)})
    b = model.log_prob({"images": images, "labels": np.ones(2)})
    assert not np.allclose(a, b), "the label changes nothing"
