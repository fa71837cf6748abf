"""The zoo's presets: one explicit table, ``build``, ``list_models`` and ``load``.

A preset names a model class, its keyword arguments and the data it is made for
(``<model>_<dataset>``). Training settings live in ``training/config.py``.
"""
import dataclasses

import tensorflow as tf

from zoo import (adversarial, autoregressive, classifier, latent, pixelrnn, saving, text2image,
                 translation)


@dataclasses.dataclass(frozen=True)
class Preset:
    """A zoo entry.

    Args:
        model: the Keras model class.
        dataset: TFDS name of the data it trains on.
        form: pixel form the model reads (see ``training.data.FORMS``).
        kwargs: constructor arguments.
        labels: whether the model needs class labels.
        description: one line for ``list_models``.
        task: for translation models, the task of ``training.data.TASKS`` that
            makes their domains A and B from the data set's images.
    """

    model: type
    dataset: str
    form: str
    kwargs: dict
    labels: bool = False
    description: str = ""
    task: str | None = None


_MNIST = dict(image_shape=(28, 28, 1))
_SUPERRES = dict(source_shape=(7, 7, 1), image_shape=(28, 28, 1), filters=32, d_filters=32)
_EDGES = dict(source_shape=(28, 28, 1), image_shape=(28, 28, 1), filters=32, d_filters=32)

PRESETS = {
    "ae_mnist": Preset(
        latent.Autoencoder, "mnist", "binary",
        dict(_MNIST, latent_dim=50, hidden_units=(512, 512)),
        description="deterministic autoencoder baseline, binarized MNIST",
    ),
    "vae_mnist": Preset(
        latent.VAE, "mnist", "binary",
        dict(_MNIST, latent_dim=50, hidden_units=(1024, 1024), kl_warmup_steps=20000),
        description="VAE, 50-d latent, Bernoulli pixels, binarized MNIST",
    ),
    "vae2d_mnist": Preset(
        latent.VAE, "mnist", "binary",
        dict(_MNIST, latent_dim=2, hidden_units=(512, 512)),
        description="VAE with a 2-d latent, for the digit-manifold picture",
    ),
    "beta_vae_mnist": Preset(
        latent.BetaVAE, "mnist", "binary",
        dict(_MNIST, latent_dim=10, hidden_units=(512, 512), beta=4.0),
        description="beta-VAE (beta=4), 10-d latent, binarized MNIST",
    ),
    "cvae_mnist": Preset(
        latent.ConditionalVAE, "mnist", "binary",
        dict(_MNIST, latent_dim=20, hidden_units=(512, 512), num_classes=10),
        labels=True,
        description="class-conditional VAE, binarized MNIST",
    ),
    "vae_fashion_mnist": Preset(
        latent.VAE, "fashion_mnist", "uint8",
        dict(_MNIST, latent_dim=32, hidden_units=(512, 512),
             likelihood="discretized_logistic"),
        description="VAE with discretized-logistic pixels, 8-bit Fashion-MNIST",
    ),
    "pixelcnn_mnist": Preset(
        autoregressive.GatedPixelCNN, "mnist", "binary",
        dict(_MNIST, filters=32, num_blocks=7, kernel_size=5, likelihood="bernoulli"),
        description="Gated PixelCNN, Bernoulli pixels, binarized MNIST",
    ),
    "pixelcnn_fashion_mnist": Preset(
        autoregressive.GatedPixelCNN, "fashion_mnist", "uint8",
        dict(_MNIST, filters=32, num_blocks=7, kernel_size=5, likelihood="logistic_mixture"),
        description="Gated PixelCNN with PixelCNN++'s discretized logistic mixture, 8-bit Fashion-MNIST",
    ),
    "row_lstm_mnist": Preset(
        pixelrnn.RowLSTM, "mnist", "binary",
        dict(_MNIST, filters=64, num_blocks=8, likelihood="bernoulli"),
        description="PixelRNN, Row LSTM, Bernoulli pixels, binarized MNIST",
    ),
    "diagonal_bilstm_mnist": Preset(
        pixelrnn.DiagonalBiLSTM, "mnist", "binary",
        dict(_MNIST, filters=32, num_blocks=7, likelihood="bernoulli"),
        description="PixelRNN, Diagonal BiLSTM, Bernoulli pixels, binarized MNIST",
    ),
    "dcgan_mnist": Preset(
        adversarial.GAN, "mnist", "float11",
        dict(_MNIST, latent_dim=64, filters=32, loss="non_saturating"),
        description="DCGAN, non-saturating loss, MNIST",
    ),
    "dcgan_fashion_mnist": Preset(
        adversarial.GAN, "fashion_mnist", "float11",
        dict(_MNIST, latent_dim=64, filters=32, loss="non_saturating"),
        description="DCGAN, non-saturating loss, Fashion-MNIST",
    ),
    "lsgan_mnist": Preset(
        adversarial.GAN, "mnist", "float11",
        dict(_MNIST, latent_dim=64, filters=32, loss="lsgan"),
        description="LSGAN (least-squares loss), MNIST",
    ),
    "cgan_mnist": Preset(
        adversarial.GAN, "mnist", "float11",
        dict(_MNIST, latent_dim=64, filters=32, loss="non_saturating", num_classes=10),
        labels=True,
        description="class-conditional DCGAN, MNIST",
    ),
    "wgan_gp_fashion_mnist": Preset(
        adversarial.GAN, "fashion_mnist", "float11",
        dict(_MNIST, latent_dim=64, filters=32, loss="wgan_gp", gp_weight=10.0),
        description="WGAN-GP (5 critic steps per generator step), Fashion-MNIST",
    ),
    "began_mnist": Preset(
        adversarial.BEGAN, "mnist", "float11",
        # gamma 1, not the paper's 0.5: at 0.5 (L(G(z)) held at half L(x)) the generator drew
        # only ones (FID 798, recall 0.04 after 20 epochs, session note of 2026-12-04); our
        # reading, not measured: thin digits are the cheapest to reconstruct.
        dict(_MNIST, latent_dim=64, filters=32, gamma=1.0),
        description="BEGAN (autoencoder discriminator, gamma 1), MNIST",
    ),
    "text2image_mnist": Preset(
        text2image.TextGAN, "mnist", "float11",
        dict(_MNIST, latent_dim=64, filters=32, embed_dim=32, loss="non_saturating",
             minibatch="discrimination", ema_momentum=0.999),
        labels=True,
        description="text-to-image GAN-CLS: draws the digit a caption asks for, thin or thick, MNIST",
    ),
    "pix2pix_superres_mnist": Preset(
        translation.Pix2Pix, "mnist", "float11",
        _SUPERRES, task="superres4",
        description="pix2pix, x4 super-resolution of MNIST (7x7 block means -> 28x28)",
    ),
    "unet_l1_superres_mnist": Preset(
        translation.Pix2Pix, "mnist", "float11",
        dict(_SUPERRES, gan_weight=0.0), task="superres4",
        description="pix2pix's U-Net trained with L1 alone (the paper's ablation), x4 "
                    "super-resolution of MNIST",
    ),
    "pix2pix_edges_fashion_mnist": Preset(
        translation.Pix2Pix, "fashion_mnist", "float11",
        _EDGES, task="edges",
        description="pix2pix, Sobel edges -> Fashion-MNIST images",
    ),
    "unet_l1_edges_fashion_mnist": Preset(
        translation.Pix2Pix, "fashion_mnist", "float11",
        dict(_EDGES, gan_weight=0.0), task="edges",
        description="pix2pix's U-Net trained with L1 alone (the paper's ablation), Sobel edges "
                    "-> Fashion-MNIST images",
    ),
    "cyclegan_thick_mnist": Preset(
        translation.CycleGAN, "mnist", "float11",
        dict(image_shape=(28, 28, 1), filters=32, d_filters=64, d_minibatch="discrimination"),
        task="thicken",
        description="CycleGAN, thin <-> thick MNIST strokes (3x3 dilation), trained unpaired",
    ),
    "classifier_mnist": Preset(
        classifier.Classifier, "mnist", "float01", dict(_MNIST, num_classes=10), labels=True,
        description="CNN classifier: the feature space of MNIST sample metrics",
    ),
    "classifier_fashion_mnist": Preset(
        classifier.Classifier, "fashion_mnist", "float01", dict(_MNIST, num_classes=10), labels=True,
        description="CNN classifier: the feature space of Fashion-MNIST sample metrics",
    ),
}


def list_models():
    """Names of all presets, sorted."""
    return sorted(PRESETS)


def get_preset(name):
    """The ``Preset`` called ``name``; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise KeyError(
            f"Unknown preset {name!r}. Valid presets: {', '.join(list_models())}"
        )
    return PRESETS[name]


def build(name, **overrides):
    """Builds a fresh (untrained) model for preset ``name``.

    Args:
        name: a preset name from ``list_models()``.
        **overrides: constructor arguments replacing the preset's.
    """
    preset = get_preset(name)
    return preset.model(**{**preset.kwargs, **overrides}, name=name)


def load(name, version=None, keras_model=False):
    """Loads a pretrained model from ``exported/`` (see ``zoo.saving`` for the layout).

    Args:
        name: preset name.
        version: version number; the latest when None.
        keras_model: False returns the SavedModel (``.signatures`` and the
            endpoint functions, as TF Serving sees them); True rebuilds the
            trainable Keras model from the export's config and variables.
    """
    get_preset(name)
    path = saving.version_path(name, version)
    if keras_model:
        return saving.load_keras(path)
    return tf.saved_model.load(str(path))
