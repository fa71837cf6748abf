"""The adversarial family: GANs with DCGAN networks, their losses, and BEGAN.

A generator G maps noise z ~ N(0, I) (and a class label, for conditional
models) to an image in [-1, 1]; a discriminator D scores images. Training
alternates ``d_steps`` discriminator updates and one generator update per
batch, each with its own optimizer, under the game

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]

or one of its variants (``GAN_LOSSES``). Images are served as uint8 0..255.
"""
import keras
import tensorflow as tf

from zoo import contract, seeding, steps

GAN_LOSSES = ("minimax", "non_saturating", "lsgan", "wgan_gp", "hinge")
MINIBATCH_FEATURES = ("none", "discrimination", "stddev")


def discriminator_loss(kind, real, fake):
    """Per-example discriminator loss from logits on real and generated images.

    References:
        minimax / non_saturating: Goodfellow et al. 2014, eq. (1) (D maximises
        log D(x) + log(1 - D(G(z))), as softplus terms of the logits).
        lsgan: Mao et al. 2017, eq. (2) with a = 0, b = c = 1.
        wgan_gp: Gulrajani et al. 2017, Algorithm 1 (the penalty is added by the caller).
        hinge: Lim & Ye 2017; Miyato et al. 2018, eq. (16).
    """
    if kind in ("minimax", "non_saturating"):
        return tf.nn.softplus(-real) + tf.nn.softplus(fake)
    if kind == "lsgan":
        return 0.5 * (tf.square(real - 1.0) + tf.square(fake))
    if kind == "wgan_gp":
        return fake - real
    if kind == "hinge":
        return tf.nn.relu(1.0 - real) + tf.nn.relu(1.0 + fake)
    raise ValueError(f"Unknown GAN loss {kind!r}; valid: {', '.join(GAN_LOSSES)}")


def generator_loss(kind, fake):
    """Per-example generator loss from the discriminator's logits on G(z).

    ``minimax`` minimises log(1 - D(G(z))) = -softplus(logit), whose gradient
    vanishes where D confidently rejects the samples (early in training);
    ``non_saturating`` maximises log D(G(z)) instead (Goodfellow et al. 2014,
    sec. 3), the default.
    """
    if kind == "minimax":
        return -tf.nn.softplus(fake)
    if kind == "non_saturating":
        return tf.nn.softplus(-fake)
    if kind == "lsgan":
        return 0.5 * tf.square(fake - 1.0)
    if kind in ("wgan_gp", "hinge"):
        return -fake
    raise ValueError(f"Unknown GAN loss {kind!r}; valid: {', '.join(GAN_LOSSES)}")


@keras.saving.register_keras_serializable(package="genzoo")
class MinibatchDiscrimination(keras.layers.Layer):
    """Appends, per example, how close its features are to the rest of the batch.

    M_i = f_i T (kernels x dims); c_b(i, j) = exp(-||M_i,b - M_j,b||_1);
    o_b(i) = sum_{j != i} c_b(i, j) / (n - 1) for a batch of n. A generator that
    collapses onto a few outputs makes o large, which the discriminator learns
    to punish. The paper sums; the mean keeps o in [0, 1] whatever the batch
    size (with the sum, a batch of 256 starts every example at o ~ 255 and the
    discriminator's logits saturate).

    Args:
        kernels: B in the paper.
        dims: C in the paper.

    References:
        Salimans et al. 2016, "Improved Techniques for Training GANs", sec. 3.2.
    """

    def __init__(self, kernels=32, dims=8, **kwargs):
        super().__init__(**kwargs)
        self.kernels = int(kernels)
        self.dims = int(dims)

    def build(self, input_shape):
        self.tensor = self.add_weight(
            name="tensor", shape=(int(input_shape[-1]), self.kernels * self.dims),
            initializer=keras.initializers.RandomNormal(stddev=0.05))

    def call(self, features):
        m = tf.reshape(tf.matmul(features, self.tensor), [-1, self.kernels, self.dims])  # (B, K, D)
        l1 = tf.reduce_sum(tf.abs(m[:, None] - m[None, :]), axis=-1)  # (B, B, K)
        others = tf.cast(tf.maximum(tf.shape(features)[0] - 1, 1), features.dtype)
        closeness = (tf.reduce_sum(tf.exp(-l1), axis=1) - 1.0) / others  # minus exp(0) of j = i
        return tf.concat([features, closeness], axis=-1)

    def get_config(self):
        return {**super().get_config(), "kernels": self.kernels, "dims": self.dims}


@keras.saving.register_keras_serializable(package="genzoo")
class MinibatchStddev(keras.layers.Layer):
    """Appends the batch's mean feature standard deviation as one more channel.

    References:
        Karras et al. 2018, "Progressive Growing of GANs", sec. 3 (one group:
        the whole per-replica batch).
    """

    def call(self, x):
        mean = tf.reduce_mean(x, axis=0, keepdims=True)
        std = tf.sqrt(tf.reduce_mean(tf.square(x - mean), axis=0) + 1e-8)
        value = tf.reduce_mean(std)
        return tf.concat([x, tf.ones_like(x[..., :1]) * tf.cast(value, x.dtype)], axis=-1)


def _one_hot(labels, num_classes, dtype):
    return tf.cast(tf.one_hot(tf.cast(labels, tf.int32), num_classes), dtype)


def to_uint8(x):
    """Images in [-1, 1] -> uint8 0..255 (rounded, clipped): what the adversarial family serves."""
    return tf.cast(tf.clip_by_value(tf.round((x + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def from_uint8(images):
    """uint8 0..255 -> float32 in [-1, 1]: what the adversarial family's networks read."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


class TwoPlayerModel(steps.ZooModel):
    """What every model of the adversarial family shares: two players, two optimizers.

    Subclasses keep their networks as ``generator`` and ``discriminator`` or say
    which variables each player trains (``generator_variables``,
    ``discriminator_variables``), and write their own ``train_step``;
    ``compile(d_optimizer=..., g_optimizer=...)`` and its serialization live here.
    """

    family = "adversarial"
    d_steps = 1  # discriminator updates per generator update (the training command's schedule)

    @property
    def generator_variables(self):
        """What the generator's optimizer trains (default: ``self.generator``'s variables)."""
        return self.generator.trainable_variables

    @property
    def discriminator_variables(self):
        """What the discriminator's optimizer trains (default: ``self.discriminator``'s)."""
        return self.discriminator.trainable_variables

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        """Compiles with one optimizer per player (Adam(2e-4, beta_1=0.5) by default).

        Under the "mixed_float16" policy each is wrapped in a LossScaleOptimizer,
        as Keras does for the single optimizer of ``Model.compile``.
        """
        kwargs.pop("optimizer", None)
        super().compile(optimizer=None, **kwargs)
        d_optimizer = d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        g_optimizer = g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            wrap = keras.optimizers.LossScaleOptimizer
            d_optimizer = d_optimizer if isinstance(d_optimizer, wrap) else wrap(d_optimizer)
            g_optimizer = g_optimizer if isinstance(g_optimizer, wrap) else wrap(g_optimizer)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        # Slots now, not lazily inside the first step (a loss-scaled apply
        # runs in a tf.cond, where creating variables fails under a strategy).
        self.d_optimizer.build(self.discriminator_variables)
        self.g_optimizer.build(self.generator_variables)

    def get_compile_config(self):
        if getattr(self, "d_optimizer", None) is None:  # not compiled
            return None
        return {"d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
                "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer)}

    def compile_from_config(self, config):
        self.compile(d_optimizer=keras.saving.deserialize_keras_object(config["d_optimizer"]),
                     g_optimizer=keras.saving.deserialize_keras_object(config["g_optimizer"]))

    @staticmethod
    def apply_gradients(optimizer, tape, scaled, variables):
        """One player's update from ``scaled``, its loss through ``steps.replica_loss`` (on the tape)."""
        optimizer.apply(tape.gradient(scaled, variables), variables)


def r1_penalty(discriminate, real):
    """The R1 penalty's norm at each real image: (B,) float32.

    ``discriminate(x)`` gives D's logits of images x: one per image (B,) or
    (B, 1), or P per image (a PatchGAN's (B, h, w)). The result is
    (1 / P) ||grad_x sum_p D_p(x)||^2: the squared gradient norm of a one-logit
    D, and for P patches whose views do not overlap, the mean over patches of
    each patch's own squared norm (D's loss is likewise a mean over patches).

    References:
        Mescheder et al. 2018, "Which Training Methods for GANs do actually
        Converge?", eq. (9): R1 = gamma / 2 E[||grad D(x)||^2] over real data.
    """
    real = tf.convert_to_tensor(real, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(real)
        logits = tf.cast(discriminate(real), tf.float32)
        total = tf.reduce_sum(logits)
    grad = tf.cast(tape.gradient(total, real), tf.float32)
    patches = tf.cast(tf.size(logits) // tf.shape(logits)[0], tf.float32)
    return tf.reduce_sum(tf.reshape(tf.square(grad), [tf.shape(grad)[0], -1]), 1) / patches

@keras.saving.register_keras_serializable(package="genzoo")
class GAN(TwoPlayerModel):
    """A GAN with DCGAN networks, trained by alternating updates.

    Generator: Dense -> (s/4, s/4, 4f) -> two stride-2 transposed convolutions
    (2f, f; batch norm, ReLU) -> 3x3 convolution -> tanh. Its batch norm is
    synchronized across replicas, so a mirrored step equals a one-device step. Discriminator: two
    stride-2 4x4 convolutions (f, 2f; leaky ReLU 0.2; no batch norm, which
    the gradient penalty forbids), flatten, optional minibatch features,
    Dense -> one logit. Conditional models feed the one-hot label to G beside
    z and to D as constant image channels.

    ``compile(d_optimizer=..., g_optimizer=...)`` takes two optimizers; each
    batch makes ``d_steps`` discriminator updates (each with fresh noise, on the
    same real batch) and then one generator update. This departs from
    Algorithm 1 of Goodfellow et al. and of Gulrajani et al., which draw a new
    real minibatch for every critic update: ``fit`` hands a step one batch, so
    an epoch is one pass of the generator over the data and the critic sees each
    real batch ``d_steps`` times.

    Args:
        image_shape: (H, W, C) with H, W divisible by 4 (28 and 32 work); for
            ``architecture="mlp"``, (D,): points in D dimensions.
        latent_dim: size of z.
        filters: f, the base width of both networks.
        loss: one of GAN_LOSSES.
        d_steps: discriminator updates per generator update (n_critic);
            None gives 5 for wgan_gp and 1 otherwise.
        gp_weight: lambda of the WGAN-GP gradient penalty.
        num_classes: > 0 makes the model class-conditional.
        minibatch: "none", "discrimination" or "stddev" (discriminator option).
        architecture: "dcgan", or "mlp" (two leaky-ReLU layers of ``filters``
            units in each network, for low-dimensional toy data such as the
            ring of Gaussians; not exported). Leaky, because with plain ReLUs
            and minibatch discrimination the generator's units died within
            500 steps on the ring: its output stopped depending on z, and no
            gradient (|0|' = 0 in the L1 distances) could pull it apart again.
        seed: seeds the training noise (z and the penalty's interpolation).
        ema_momentum: > 0 keeps an exponential moving average of the generator's
            weights, updated after every generator step; the discriminator
            trains against the raw generator, everything else (validation,
            ``sample``, ``generate``, export) uses the average. 0: off.
        ema_warmup: average with min(ema_momentum, (1 + n) / (10 + n)) after n
            generator updates (``zoo.steps.averaging_momentum``, the warm-up of
            ``tf.train.ExponentialMovingAverage`` and of the zoo's other averaged
            models) instead of ema_momentum from the first step, so a short run's
            average forgets the initial weights. False (the default) is what the
            zoo's GANs exported before the option existed were trained with.
        spectral_norm: spectrally normalize the discriminator's kernels.
        r1_weight: gamma of the R1 penalty gamma / 2 ||grad_x D(x)||^2 on real
            images, added to the discriminator's loss. 0: off.
        latent_code: K > 1 adds InfoGAN's categorical latent code: c(z) = the
            argmax of z's first K entries (uniform over the K categories when
            z ~ N(0, I), so ``sample`` and ``generate`` keep their contract) is
            fed to G as a one-hot beside z, and D gets a second head Q with K
            logits trained, with G, to recover c from G(z). G can then jump
            between disconnected modes (digit classes) at the code's boundaries
            instead of drawing in-between shapes. 0: off.
        info_weight: lambda of the code's cross-entropy -E[log Q(c | G(z))]
            in both players' losses (the variational bound of the mutual
            information I(c; G(z)); InfoGAN: 1 for discrete codes).

    References:
        Goodfellow et al. 2014, "Generative Adversarial Nets", Algorithm 1.
        Radford et al. 2016, "Unsupervised Representation Learning with Deep
        Convolutional GANs" (DCGAN), sec. 3 (architecture guidelines).
        Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1.
        Mirza & Osindero 2014, "Conditional Generative Adversarial Nets".
        ema_momentum: Karras et al. 2018, "Progressive Growing of GANs", sec. A.1;
        Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training".
        spectral_norm: Miyato et al. 2018, "Spectral Normalization for GANs".
        r1_weight: Mescheder et al. 2018, eq. (9).
        latent_code: Chen et al. 2016, "InfoGAN: Interpretable Representation
        Learning by Information Maximizing GANs", eq. (5) and sec. 6 (a
        10-way code on MNIST).
    """

    serving_note = ("`generate(latents)` maps z to images, `sample(seed)` draws z ~ N(0, I) per "
                    "row; `discriminate(images)` returns D's logits, each image scored alone.")
    FIXED = {}  # GAN arguments a subclass sets itself: they override any given, its config omits them

    @classmethod
    def with_fixed(cls, kwargs):
        """``kwargs`` with the class's ``FIXED`` arguments in place of any given."""
        return {**kwargs, **cls.FIXED}

    def __init__(self, image_shape=(28, 28, 1), latent_dim=64, filters=64, loss="non_saturating",
                 d_steps=None, gp_weight=10.0, num_classes=0, minibatch="none", architecture="dcgan",
                 seed=0, ema_momentum=0.0, ema_warmup=False, spectral_norm=False, r1_weight=0.0,
                 latent_code=0, info_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(ema_momentum) < 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1) (0: off), got {ema_momentum}")
        if float(r1_weight) < 0.0:
            raise ValueError(f"r1_weight must be >= 0, got {r1_weight}")
        if loss not in GAN_LOSSES:
            raise ValueError(f"Unknown GAN loss {loss!r}; valid: {', '.join(GAN_LOSSES)}")
        if minibatch not in MINIBATCH_FEATURES:
            raise ValueError(f"Unknown minibatch option {minibatch!r}; valid: {MINIBATCH_FEATURES}")
        if architecture not in ("dcgan", "mlp"):
            raise ValueError(f"architecture must be 'dcgan' or 'mlp', got {architecture!r}")
        self.architecture = architecture
        self.image_shape = tuple(int(d) for d in image_shape)
        if architecture == "mlp" and len(self.image_shape) != 1:
            raise ValueError(f"the mlp architecture takes vectors, shape (D,); got {self.image_shape}")
        if architecture == "dcgan" and (len(self.image_shape) != 3 or self.image_shape[0] % 4
                                        or self.image_shape[1] % 4):
            raise ValueError(f"image height and width must be divisible by 4, got {self.image_shape}")
        self.latent_dim = int(latent_dim)
        self.latent_code = int(latent_code)
        if self.latent_code and not 2 <= self.latent_code <= self.latent_dim:
            raise ValueError(f"latent_code must be 0 (off) or between 2 and latent_dim = "
                             f"{self.latent_dim}, got {latent_code}")
        if float(info_weight) < 0.0:
            raise ValueError(f"info_weight must be >= 0, got {info_weight}")
        self.info_weight = float(info_weight)
        self.filters = int(filters)
        self.loss_kind = loss
        self.d_steps = int(d_steps) if d_steps is not None else (5 if loss == "wgan_gp" else 1)
        self.gp_weight = float(gp_weight)
        self.num_classes = int(num_classes)
        self.minibatch = minibatch
        self.seed = int(seed)
        self.ema_momentum = float(ema_momentum)
        self.ema_warmup = bool(ema_warmup)
        self.spectral_norm = bool(spectral_norm)
        self.r1_weight = float(r1_weight)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.real_tracker = keras.metrics.Mean(name="d_real")
        self.fake_tracker = keras.metrics.Mean(name="d_fake")
        self.info_tracker = keras.metrics.Mean(name="info") if self.latent_code else None
        self.generator = self._make_generator()
        # The averaged generator: what sampling, validation and export use (None: off).
        self.ema_generator = self._make_generator("generator_ema") if self.ema_momentum else None
        self.discriminator = self._make_discriminator()
        self._create_state()
        self.build()

    def _create_state(self):
        """Subclasses add their variables and trackers here (before the model is built)."""

    @property
    def objective(self):
        """The name of the game the model trains under (a GAN loss, or BEGAN)."""
        return self.loss_kind

    def describe(self):
        return (f"{type(self).__name__} with DCGAN networks ({self.filters} base channels, "
                f"{self.latent_dim}-d z ~ N(0, I)); loss {self.loss_kind}, {self.d_steps} "
                f"discriminator step(s) per generator step; minibatch features: {self.minibatch}."
                + "".join(f" {part}" for part in self._techniques()))

    def _techniques(self):
        """Sentences naming the training techniques in use, for ``describe``."""
        parts = []
        if self.spectral_norm:
            parts.append("Spectral normalization of the discriminator's kernels (Miyato et al. 2018).")
        if self.r1_weight:
            parts.append(f"R1 penalty on real images, gamma = {self.r1_weight:g} (Mescheder et al. 2018).")
        if self.latent_code:
            parts.append(f"A {self.latent_code}-way categorical code c = argmax of z's first "
                         f"{self.latent_code} entries goes to G as a one-hot; D's second head "
                         f"recovers it (InfoGAN's information term x {self.info_weight:g}; "
                         "Chen et al. 2016).")
        if self.ema_momentum:
            parts.append(f"Samples come from an exponential moving average of the generator's weights "
                         f"(momentum {self.ema_momentum:g}"
                         + (", warmed up as min(m, (1 + n) / (10 + n)) after n updates"
                            if self.ema_warmup else "")
                         + "; Karras et al. 2018, Yazici et al. 2019).")
        return parts

    # --------------------------------------------------------------- networks
    def _make_mlp(self, inputs, outputs, name, minibatch=False):
        x = inp = keras.Input((inputs,))
        for _ in range(2):  # leaky: a ReLU generator can die into a constant (see architecture)
            x = keras.layers.Dense(self.filters, activation="leaky_relu")(x)
        if minibatch and self.minibatch == "discrimination":
            x = MinibatchDiscrimination()(x)
        elif minibatch and self.minibatch == "stddev":
            x = MinibatchStddev()(x)
        return keras.Model(inp, keras.layers.Dense(outputs, dtype="float32")(x), name=name)

    def _make_generator(self, name="generator"):
        if self.architecture == "mlp":
            return self._make_mlp(self.generator_inputs, self.image_shape[0], name)
        z = keras.Input((self.generator_inputs,), name="z")
        return keras.Model(z, self._upsample(z), name=name)

    @property
    def generator_inputs(self):
        """The width of G's input: z, the code's one-hot, the label's one-hot."""
        return self.latent_dim + self.latent_code + self.num_classes

    @property
    def d_outputs(self):
        """D's output units: the logit, then Q's code logits."""
        return 1 + self.latent_code

    def _upsample(self, z):
        """The DCGAN generator's layers on ``z`` (noise and any conditioning): images in [-1, 1]."""
        h, w, c = self.image_shape
        f = self.filters
        x = keras.layers.Dense((h // 4) * (w // 4) * 4 * f, use_bias=False)(z)
        x = keras.layers.BatchNormalization(synchronized=True)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Reshape((h // 4, w // 4, 4 * f))(x)
        for width in (2 * f, f):
            x = keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization(synchronized=True)(x)
            x = keras.layers.ReLU()(x)
        x = keras.layers.Conv2D(c, 3, padding="same")(x)
        return keras.layers.Activation("tanh", dtype="float32")(x)  # float32 under mixed precision

    def _conv_stack(self, activation):
        """D's input (image and label maps) and two stride-2 4x4 convolutions (f, 2f)."""
        h, w, c = self.image_shape
        image = keras.Input((h, w, c + self.num_classes), name="image")
        return image, self._downsample(image, activation)

    def _downsample(self, x, activation):
        """Two stride-2 4x4 convolutions (f, 2f) on ``x``, each followed by ``activation()``."""
        for width in (self.filters, 2 * self.filters):
            x = self._normalized(keras.layers.Conv2D(width, 4, strides=2, padding="same"))(x)
            x = activation()(x)
        return x

    def _normalized(self, layer):
        """``layer``, spectrally normalized when the model asks for it (D's kernels only).

        Keras's ``SpectralNormalization`` runs one power iteration per training
        call and writes W / sigma(W) back into the kernel, so after each step
        the kernel's largest singular value is about 1; it departs from Miyato
        et al. 2018 (sec. 2.1) in that gradients do not flow through sigma.
        """
        if not self.spectral_norm:
            return layer
        # the wrapper computes in the wrapped layer's policy (float32 logits stay float32)
        return keras.layers.SpectralNormalization(layer, dtype=layer.dtype_policy)

    def _make_discriminator(self):
        if self.architecture == "mlp":
            return self._make_mlp(self.image_shape[0] + self.num_classes, self.d_outputs,
                                  "discriminator", True)
        image, x = self._conv_stack(lambda: keras.layers.LeakyReLU(0.2))
        if self.minibatch == "stddev":
            x = MinibatchStddev()(x)
        x = keras.layers.Flatten()(x)
        if self.minibatch == "discrimination":
            x = MinibatchDiscrimination()(x)
        out = self._normalized(keras.layers.Dense(self.d_outputs, dtype="float32"))(x)
        return keras.Model(image, out, name="discriminator")

    def code(self, z):
        """The categorical code of latents (B, latent_dim): argmax of the first K entries, int32."""
        return tf.argmax(z[:, :self.latent_code], axis=-1, output_type=tf.int32)

    def generate(self, z, labels=None, training=False):
        """Images in [-1, 1] from latents (B, latent_dim).

        Training steps use the raw generator; everything else (validation,
        sampling, export) the averaged one when the model keeps it.
        """
        if self.latent_code:
            z = tf.concat([z, _one_hot(self.code(z), self.latent_code, z.dtype)], axis=-1)
        if self.num_classes:
            z = tf.concat([z, _one_hot(labels, self.num_classes, z.dtype)], axis=-1)
        network = self.generator if training or self.ema_generator is None else self.ema_generator
        return network(z, training=training)

    def update_ema(self):
        """ema <- m ema + (1 - m) w for every generator weight (batch-norm statistics too),
        after a generator step; m warms up with ``ema_warmup``."""
        m = self.ema_momentum
        if self.ema_warmup:  # n = the generator's updates before the one just applied
            m = steps.averaging_momentum(m, self.g_optimizer.iterations - 1)
        for average, weight in zip(self.ema_generator.weights, self.generator.weights, strict=True):
            keep = tf.cast(m, average.dtype)
            average.assign(keep * average + (1.0 - keep) * weight)

    def discriminate(self, x, labels=None, training=False):
        """Logits (B,) for images in [-1, 1]."""
        return self.discriminate_and_code(x, labels, training)[0]

    def discriminate_and_code(self, x, labels=None, training=False):
        """(logits (B,), Q's code logits (B, K); K = 0 without a code) for images in [-1, 1]."""
        out = self.discriminator(self._with_label(x, labels), training=training)
        return out[:, 0], out[:, 1:]

    def information_loss(self, z, code_logits):
        """-log Q(c(z) | G(z)) per row: the code's cross-entropy (InfoGAN's L_I up to H(c))."""
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=self.code(z), logits=tf.cast(code_logits, tf.float32))

    def _with_label(self, x, labels):
        """D's input: ``x`` with the one-hot label appended (as constant maps for images)."""
        if not self.num_classes:
            return x
        onehot = _one_hot(labels, self.num_classes, x.dtype)
        if self.architecture == "dcgan":
            onehot = tf.ones_like(x[..., :1]) * onehot[:, None, None, :]
        return tf.concat([x, onehot], axis=-1)

    def call(self, z, training=False):
        return self.generate(z, training=training)

    def build(self, input_shape=None):
        self.generator.build((None, self.generator_inputs))
        if self.ema_generator is not None:
            self.ema_generator.build((None, self.generator_inputs))
            self.ema_generator.set_weights(self.generator.get_weights())  # the average starts at w
        self.discriminator.build((None,) + self.image_shape[:-1] + (self.image_shape[-1] + self.num_classes,))
        self.built = True

    objective_args = ("loss", "d_steps", "gp_weight", "r1_weight")

    def get_config(self):
        config = {**super().get_config(), "image_shape": list(self.image_shape),
                  "latent_dim": self.latent_dim, "filters": self.filters, "loss": self.loss_kind,
                  "d_steps": self.d_steps, "gp_weight": self.gp_weight,
                  "num_classes": self.num_classes, "minibatch": self.minibatch,
                  "architecture": self.architecture, "seed": self.seed,
                  "ema_momentum": self.ema_momentum, "ema_warmup": self.ema_warmup,
                  "spectral_norm": self.spectral_norm,
                  "r1_weight": self.r1_weight, "latent_code": self.latent_code,
                  "info_weight": self.info_weight}
        return {k: v for k, v in config.items() if k not in self.FIXED}

    @property
    def metrics(self):
        info = [self.info_tracker] if self.info_tracker is not None else []
        return [self.d_loss_tracker, self.g_loss_tracker, self.real_tracker, self.fake_tracker] + info

    # -------------------------------------------------------------- training
    def _noise(self, real):
        """z ~ N(0, I) for a batch like ``real``, fresh per step and replica."""
        return tf.random.stateless_normal((tf.shape(real)[0], self.latent_dim), self._seed())

    def _mixing(self, real):
        """eps ~ U(0, 1) per image of ``real``, for the gradient penalty's interpolates."""
        shape = tf.concat([tf.shape(real)[:1], tf.ones([tf.rank(real) - 1], tf.int32)], 0)
        return tf.random.stateless_uniform(shape, self._seed())

    def _seed(self):
        optimizer = getattr(self, "d_optimizer", None)
        return seeding.training_seed(self.seed_generator,
                                     optimizer.iterations if optimizer is not None else None)

    def _gradient_penalty(self, real, fake, labels):
        """E[(||grad_x D(x_hat)||_2 - 1)^2] at random points between real and fake images."""
        eps = self._mixing(real)
        mixed = eps * real + (1.0 - eps) * fake
        with tf.GradientTape() as tape:
            tape.watch(mixed)
            score = self.discriminate(mixed, labels, training=True)
        grad = tape.gradient(score, mixed)
        norm = tf.sqrt(tf.reduce_sum(tf.reshape(tf.square(grad), [tf.shape(grad)[0], -1]), 1) + 1e-12)
        return tf.square(norm - 1.0)

    def r1_penalty(self, real, labels=None, training=True):
        """||grad_x D(x)||^2 at each real image x: (B,) (``r1_penalty`` of this model's D)."""
        return r1_penalty(lambda x: self.discriminate(x, labels, training=training), real)

    def _penalties(self, real, fake, labels):
        """D's per-example penalties: WGAN-GP's gradient penalty, the R1 penalty (0: none)."""
        penalty = 0.0
        if self.loss_kind == "wgan_gp":
            penalty += self.gp_weight * self._gradient_penalty(real, fake, labels)
        if self.r1_weight:
            penalty += 0.5 * self.r1_weight * self.r1_penalty(real, labels)
        return penalty

    def _scored_fakes(self, z, fake, labels, training):
        """D's logits (B,) of ``fake`` = G(z) and the information loss per row (0: no code)."""
        if not self.latent_code:
            return self.discriminate(fake, labels, training=training), 0.0
        d_fake, code_logits = self.discriminate_and_code(fake, labels, training=training)
        return d_fake, self.information_loss(z, code_logits)

    def _d_step(self, real, labels):
        z = self._noise(real)
        fake = self.generate(z, labels, training=True)
        with tf.GradientTape() as tape:
            d_real = self.discriminate(real, labels, training=True)
            d_fake, info = self._scored_fakes(z, fake, labels, training=True)
            per_example = discriminator_loss(self.loss_kind, d_real, d_fake) + self.info_weight * info
            d_loss = tf.reduce_mean(per_example + self._penalties(real, fake, labels))
            scaled = steps.replica_loss(self.d_optimizer, d_loss)
        self.apply_gradients(self.d_optimizer, tape, scaled, self.discriminator_variables)
        return d_loss, tf.reduce_mean(d_real), tf.reduce_mean(d_fake)

    def _g_step(self, real, labels):
        """One generator update: (G's loss, the mean information loss)."""
        with tf.GradientTape() as tape:
            z = self._noise(real)
            fake = self.generate(z, labels, training=True)
            d_fake, info = self._scored_fakes(z, fake, labels, training=True)
            g_loss = tf.reduce_mean(generator_loss(self.loss_kind, d_fake) + self.info_weight * info)
            scaled = steps.replica_loss(self.g_optimizer, g_loss)
        self.apply_gradients(self.g_optimizer, tape, scaled, self.generator_variables)
        if self.ema_generator is not None:
            self.update_ema()
        return g_loss, tf.reduce_mean(info)

    def train_step(self, data):
        real, labels = self.unpack(data)
        for _ in range(self.d_steps):
            d_loss, d_real, d_fake = self._d_step(real, labels)
        g_loss, info = self._g_step(real, labels)
        return self.update_metrics(self._terms(d_loss, g_loss, d_real, d_fake, info=info))

    def validation_terms(self, data):
        real, labels = self.unpack(data)
        z = self._noise(real)
        fake = self.generate(z, labels)
        d_real = self.discriminate(real, labels)
        d_fake, info = self._scored_fakes(z, fake, labels, training=False)
        d_loss = tf.reduce_mean(discriminator_loss(self.loss_kind, d_real, d_fake))
        g_loss = tf.reduce_mean(generator_loss(self.loss_kind, d_fake))
        return self._terms(d_loss, g_loss, tf.reduce_mean(d_real), tf.reduce_mean(d_fake),
                           info=tf.reduce_mean(info))

    def _terms(self, d_loss, g_loss, d_real, d_fake, info=None, **more):
        """The values of the GAN's trackers, by name (``info``: the code's cross-entropy,
        tracked when the model has a code)."""
        terms = {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake, **more}
        if self.latent_code and info is not None:
            terms["info"] = info
        return terms

    # --------------------------------------------------------------- serving
    def serve_generate(self, latents, label=None):
        return {"images": to_uint8(self.generate(latents, self.check_labels(label)))}

    def serve_sample(self, seed, label=None):
        z = seeding.normal_rows(seed, [self.latent_dim])
        return {"images": to_uint8(self.generate(z, self.check_labels(label))), "latents": z}

    def serve_discriminate(self, images, label=None):
        """Logits of D, each image scored alone (minibatch features see a batch of one),
        so a row's score does not depend on the rest of the request."""
        return {"logits": self.row_scores(from_uint8(images), self.check_labels(label))}

    def row_scores(self, x, condition=None):
        """D's logits (B,) for images in [-1, 1] (and their condition), each row scored as a
        batch of one when D has minibatch features."""
        if self.minibatch == "none":
            return self.discriminate(x, condition)
        rows = tf.expand_dims(x, 1)  # (B, 1, H, W, C): a batch of one per row
        if condition is None:
            logits = tf.map_fn(lambda r: self.discriminate(r), rows,
                               fn_output_signature=tf.TensorSpec([1], tf.float32))
        else:
            logits = tf.map_fn(lambda a: self.discriminate(a[0], a[1]),
                               (rows, tf.expand_dims(condition, 1)),
                               fn_output_signature=tf.TensorSpec([1], tf.float32))
        return tf.reshape(logits, [-1])

    def serving_endpoints(self, **options):
        """{name: (function, input specs)}: sample (serving_default), generate, discriminate."""
        s = contract.specs(self.image_shape, self.latent_dim)
        cond = [s["label"]] if self.num_classes else []
        return {
            "sample": (self.serve_sample, [s["seed"]] + cond),
            "generate": (self.serve_generate, [s["latents"]] + cond),
            "discriminate": (self.serve_discriminate, [s["images"]] + cond),
        }


@keras.saving.register_keras_serializable(package="genzoo")
class BEGAN(GAN):
    """Boundary Equilibrium GAN: an autoencoder discriminator and the k_t balance term.

    D reconstructs images; L(v) = mean |v - D(v)| (per image). The losses are
    L_D = L(x) - k_t L(G(z)) and L_G = L(G(z)), and after every step
    k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1) keeps
    E[L(G(z))] = gamma E[L(x)]. The logged ``convergence`` is the paper's
    M = L(x) + |gamma L(x) - L(G(z))|. ``discriminate`` returns -L(v) as
    the logit (higher: more real).

    Args:
        gamma: the diversity ratio gamma.
        lambda_k: the learning rate of k_t.
        code_dim: the autoencoder's bottleneck.
        (and GAN's arguments; ``loss``, ``minibatch``, ``d_steps`` and ``latent_code``
        are fixed, the last off.)

    References:
        Berthelot et al. 2017, "BEGAN: Boundary Equilibrium Generative
        Adversarial Networks", eq. (4) (losses and k_t) and sec. 3.4.1 (M);
        departs from it in using the DCGAN-sized networks of ``GAN``.
    """

    def __init__(self, gamma=0.5, lambda_k=0.001, code_dim=64, **kwargs):
        self.gamma = float(gamma)
        self.lambda_k = float(lambda_k)
        self.code_dim = int(code_dim)
        super().__init__(**self.with_fixed(kwargs))

    objective = "BEGAN"
    FIXED = dict(loss="non_saturating", minibatch="none", d_steps=1, latent_code=0, info_weight=1.0)

    def _create_state(self):
        self.k = self.add_weight(name="k_t", shape=(), initializer="zeros", trainable=False)
        self.convergence_tracker = keras.metrics.Mean(name="convergence")
        self.k_tracker = keras.metrics.Mean(name="k")

    def _make_discriminator(self):
        h, w, c = self.image_shape
        f = self.filters
        image, x = self._conv_stack(keras.layers.ELU)
        code = keras.layers.Dense(self.code_dim)(keras.layers.Flatten()(x))
        x = keras.layers.Dense((h // 4) * (w // 4) * 2 * f)(code)
        x = keras.layers.Reshape((h // 4, w // 4, 2 * f))(keras.layers.ELU()(x))
        for width in (2 * f, f):
            x = keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same")(x)
            x = keras.layers.ELU()(x)
        out = keras.layers.Conv2D(c, 3, padding="same", dtype="float32")(x)
        return keras.Model(image, out, name="discriminator")

    def reconstruction_error(self, x, labels=None, training=False):
        """L(x) = mean |x - D(x)| per image: (B,)."""
        rebuilt = self.discriminator(self._with_label(x, labels), training=training)
        return tf.reduce_mean(tf.abs(tf.cast(x, tf.float32) - rebuilt), axis=[1, 2, 3])

    def discriminate(self, x, labels=None, training=False):
        return -self.reconstruction_error(x, labels, training)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "lambda_k": self.lambda_k, "code_dim": self.code_dim}

    @property
    def metrics(self):
        return super().metrics + [self.convergence_tracker, self.k_tracker]

    def train_step(self, data):
        real, labels = self.unpack(data)
        z = self._noise(real)
        with tf.GradientTape() as d_tape, tf.GradientTape() as g_tape:
            fake = self.generate(z, labels, training=True)
            loss_real = tf.reduce_mean(self.reconstruction_error(real, labels, training=True))
            loss_fake_d = tf.reduce_mean(
                self.reconstruction_error(tf.stop_gradient(fake), labels, training=True))
            loss_fake_g = tf.reduce_mean(self.reconstruction_error(fake, labels, training=True))
            d_loss = loss_real - self.k * loss_fake_d
            g_loss = loss_fake_g
            d_scaled = steps.replica_loss(self.d_optimizer, d_loss)
            g_scaled = steps.replica_loss(self.g_optimizer, g_loss)
        d_vars = self.discriminator.trainable_variables
        g_vars = self.generator.trainable_variables
        self.d_optimizer.apply(d_tape.gradient(d_scaled, d_vars), d_vars)
        self.g_optimizer.apply(g_tape.gradient(g_scaled, g_vars), g_vars)
        if self.ema_generator is not None:
            self.update_ema()
        balance = self.gamma * loss_real - loss_fake_g
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:  # one k_t for all replicas
            balance = ctx.all_reduce("mean", balance)
        self.k.assign(tf.clip_by_value(self.k + self.lambda_k * balance, 0.0, 1.0))
        self.convergence_tracker.update_state(loss_real + tf.abs(balance))
        self.k_tracker.update_state(self.k)
        return self.update_metrics(self._terms(d_loss, g_loss, -loss_real, -loss_fake_g))

    def validation_terms(self, data):
        real, labels = self.unpack(data)
        fake = self.generate(self._noise(real), labels)
        loss_real = tf.reduce_mean(self.reconstruction_error(real, labels))
        loss_fake = tf.reduce_mean(self.reconstruction_error(fake, labels))
        convergence = loss_real + tf.abs(self.gamma * loss_real - loss_fake)
        return self._terms(loss_real - self.k * loss_fake, loss_fake, -loss_real, -loss_fake,
                           convergence=convergence, k=self.k)
