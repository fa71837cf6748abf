"""Run settings as frozen dataclasses, with the defaults each preset trains with."""
import dataclasses
import json

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the model.

    Args:
        preset: zoo preset name.
        epochs: passes over the training set.
        batch_size: global batch size (split across replicas).
        learning_rate: peak Adam learning rate; cosine-decayed to
            ``final_lr_fraction`` of it over the run.
        d_learning_rate: the discriminator's learning rate (adversarial
            family), when it differs from the generator's: the two time-scale
            update rule (Heusel et al. 2017, sec. 2). None: ``learning_rate``.
        seed: seeds weights, shuffling and sampling.
        output_dir: checkpoints, backups, TensorBoard logs and samples.
        strategy: one of STRATEGIES.
        cpu_devices: split the CPU into this many logical devices (0: leave it).
        data_dir: folder with ``<dataset>/`` original files (offline data).
        steps_per_epoch: limit each epoch (None: the whole training set).
        train_examples: use only the first N training examples (None: all).
        jit_compile: XLA-compile the train step.
        dtype_policy: Keras precision policy of training: "float32",
            "mixed_bfloat16" (CPUs with AVX512-BF16, TPUs, recent GPUs) or
            "mixed_float16" (GPUs; loss scaling is added). Weights stay float32;
            evaluation and export compute in float32.
        optimizer: "adam" or "sgd" (sgd is for strategy-equivalence tests).
        adam_beta_1, adam_beta_2: Adam's moment decay rates (GANs use 0.5 or 0).
        model_overrides: (name, value) pairs replacing the preset's model arguments.
        init_from: start from the weights of this run folder, .keras file or
            exported version (fine-tuning); its architecture must match.
        init_grow: with ``init_from``, the model there may have fewer layers (a
            PixelRNN's ``num_blocks``): it fills the first ones and the others
            start as the identity (``zoo.pixelrnn``'s ``grow_from``).
        init_networks: with ``init_from``, copy only these sub-networks (model
            attributes, e.g. ("generator",)), each of which must match; the
            others keep their fresh weights. Empty: the whole model.
        ema_momentum: keep an exponential moving average of the weights with
            this momentum (Polyak averaging, as PixelCNN++ does: Salimans et
            al. 2017, sec. 3) and validate, checkpoint and finish with it;
            None: off. One-optimizer models only (not the adversarial family).
        ema_warmup: warm the average's momentum up as
            ``tf.train.ExponentialMovingAverage(num_updates=n)`` does:
            min(M, (1 + n) / (10 + n)) for the update after n others, so it
            forgets the first steps' weights early on. False: Keras's plain
            average, whose start (the first step's weights) keeps a share of
            M**t after t steps (0.06 after 5,600 steps at 0.9995).
    """

    preset: str
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    d_learning_rate: float | None = None
    final_lr_fraction: float = 0.05
    seed: int = 0
    output_dir: str = ""
    strategy: str = "default"
    cpu_devices: int = 0
    data_dir: str | None = None
    steps_per_epoch: int | None = None
    train_examples: int | None = None
    jit_compile: bool = False
    dtype_policy: str = "float32"
    optimizer: str = "adam"
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    model_overrides: tuple = ()
    init_from: str | None = None
    init_grow: bool = False
    init_networks: tuple = ()
    ema_momentum: float | None = None
    ema_warmup: bool = True

    def __post_init__(self):
        if self.init_grow and not self.init_from:
            raise ValueError("init_grow needs init_from: the model to grow")
        if self.init_networks and (not self.init_from or self.init_grow):
            raise ValueError("init_networks needs init_from (and not init_grow): where to copy "
                             "the networks from")
        if self.ema_momentum is not None and not 0.0 < self.ema_momentum < 1.0:
            raise ValueError(f"ema_momentum must be in (0, 1), got {self.ema_momentum}")


# Settings the zoo's pretrained models were trained with (flags override them).
PRESET_DEFAULTS = {
    "vae_mnist": dict(epochs=150, batch_size=100, learning_rate=1e-3),
    "vae2d_mnist": dict(epochs=30, batch_size=100, learning_rate=1e-3),
    "ae_mnist": dict(epochs=30),
    "beta_vae_mnist": dict(epochs=30),
    "cvae_mnist": dict(epochs=30),
    "vae_fashion_mnist": dict(epochs=30),
    # kernel 5 (zoo/registry.py), bfloat16 compute, Polyak averaging
    "pixelcnn_mnist": dict(epochs=24, batch_size=64, learning_rate=1e-3, ema_momentum=0.9995,
                           dtype_policy="mixed_bfloat16"),
    "pixelcnn_fashion_mnist": dict(epochs=10, batch_size=64, learning_rate=1e-3, ema_momentum=0.999,
                                   dtype_policy="mixed_bfloat16"),
    # PixelRNN (zoo/pixelrnn.py): float32 (bfloat16 ran no faster here), Polyak averaging
    "row_lstm_mnist": dict(epochs=6, batch_size=64, learning_rate=1e-3, ema_momentum=0.999),
    "diagonal_bilstm_mnist": dict(epochs=6, batch_size=64, learning_rate=1e-3, ema_momentum=0.999),
    # GANs: constant learning rates; Adam as in Radford et al. 2016 (sec. 4) and
    # Gulrajani et al. 2017 (Algorithm 1).
    # Translation: Adam(2e-4, beta_1 = 0.5) as in Isola et al. 2017 (sec. 3.3) and Zhu et
    # al. 2017 (sec. 7.1), decayed to zero over the run (theirs: linearly, over the second half).
    "pix2pix_superres_mnist": dict(epochs=10, batch_size=64, learning_rate=2e-4, adam_beta_1=0.5,
                                   final_lr_fraction=0.0, dtype_policy="mixed_bfloat16"),
    "unet_l1_superres_mnist": dict(epochs=10, batch_size=64, learning_rate=2e-4, adam_beta_1=0.5,
                                   final_lr_fraction=0.0, dtype_policy="mixed_bfloat16"),
    "pix2pix_edges_fashion_mnist": dict(epochs=10, batch_size=64, learning_rate=2e-4,
                                        adam_beta_1=0.5, final_lr_fraction=0.0, dtype_policy="mixed_bfloat16"),
    "unet_l1_edges_fashion_mnist": dict(epochs=10, batch_size=64, learning_rate=2e-4,
                                        adam_beta_1=0.5, final_lr_fraction=0.0, dtype_policy="mixed_bfloat16"),
    "cyclegan_thick_mnist": dict(epochs=8, batch_size=64, learning_rate=2e-4, adam_beta_1=0.5,
                                 final_lr_fraction=0.0, dtype_policy="mixed_bfloat16"),
    "dcgan_mnist": dict(epochs=10, batch_size=64, learning_rate=2e-4, adam_beta_1=0.5,
                        final_lr_fraction=1.0),
    "dcgan_fashion_mnist": dict(epochs=10, batch_size=64, learning_rate=2e-4, adam_beta_1=0.5,
                                final_lr_fraction=1.0),
    "lsgan_mnist": dict(epochs=10, batch_size=64, learning_rate=2e-4, adam_beta_1=0.5,
                        final_lr_fraction=1.0),
    "cgan_mnist": dict(epochs=20, batch_size=64, learning_rate=2e-4, adam_beta_1=0.5,
                       final_lr_fraction=1.0),
    "text2image_mnist": dict(epochs=10, batch_size=64, learning_rate=2e-4, adam_beta_1=0.5,
                             final_lr_fraction=1.0),
    "wgan_gp_fashion_mnist": dict(epochs=5, batch_size=64, learning_rate=1e-4, adam_beta_1=0.0,
                                  adam_beta_2=0.9, final_lr_fraction=1.0),
    "began_mnist": dict(epochs=10, batch_size=64, learning_rate=1e-4, adam_beta_1=0.5,
                        final_lr_fraction=1.0),
    "classifier_mnist": dict(epochs=8, batch_size=128, learning_rate=1e-3),
    "classifier_fashion_mnist": dict(epochs=15, batch_size=128, learning_rate=1e-3),
}


def defaults_for(preset):
    return dict(PRESET_DEFAULTS.get(preset, {}))


def parse_overrides(items):
    """``--set KEY=JSON`` items -> {KEY: value}; a value that is not JSON stays a string."""
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=JSON, got {item!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides
