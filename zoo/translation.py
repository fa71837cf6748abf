"""Image-to-image translation, a part of the adversarial family: pix2pix and CycleGAN.

A translation model maps images of domain A to images of domain B. Both models
here are built from a U-Net generator (``unet``) and PatchGAN discriminators
(``patch_discriminator``: one logit per overlapping patch), and take from
``zoo.adversarial`` the GAN losses, the two-optimizer ``compile``
(``TwoPlayerModel``) and the uint8 <-> [-1, 1] conversions. They serve
``translate(images) -> images`` (A -> B; CycleGAN also ``translate_back``,
B -> A), uint8 NHWC in and out, deterministic.

Normalization is instance normalization (Keras's ``GroupNormalization`` with
one group per channel) in the generators, so an image's translation never
depends on the rest of its batch, and in the discriminators unless
``d_norm="none"``: instance norm divides each image's features by their
spread, which leaves D nearly blind to the image's contrast (docs/design.md:
the first CycleGAN's D_B scored its real thick digits dimmed to 70% higher
than the digits themselves; without it, pix2pix's super-resolution came out
sharper than L1 alone). pix2pix's batch norm run with the test
batch's statistics (Isola et al. 2017, sec. 3.3) would make it depend on
them, and its dropout noise is left out for the same reason: the paper
found the generator largely ignores it.
"""
import keras
import tensorflow as tf

from zoo import adversarial, contract, seeding, steps


def _norm(name=None):
    """Instance normalization (per image and channel, over height and width)."""
    return keras.layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


def _check_shapes(source_shape, image_shape):
    """The U-Net's input may be smaller than its output by a power of two, on both axes alike."""
    (h_in, w_in, _), (h, w, _) = source_shape, image_shape
    scale = h // h_in
    if (h % h_in or w % w_in or w // w_in != scale or scale & (scale - 1)
            or h % 4 or w % 4):
        raise ValueError(f"a U-Net maps {source_shape} to {image_shape} only when the output's "
                         "height and width are divisible by 4 and the input's are the output's "
                         "divided by one power of two")


def unet(source_shape, image_shape, filters, name="generator"):
    """The U-Net generator: images in [-1, 1] of ``source_shape`` -> ``image_shape``.

    An input smaller than the output first goes through one stride-2 4x4
    transposed convolution per doubling (2f channels, instance norm, ReLU).
    Then the U-Net at the output's size: a 3x3 convolution (f) and two stride-2
    4x4 convolutions (2f, 4f; instance norm, leaky ReLU 0.2) down to a quarter
    of the size, a 3x3 bottleneck (4f), two stride-2 4x4 transposed
    convolutions (2f, f; instance norm, ReLU) back up, each fed the
    concatenation of the previous level and the encoder's level of the same
    size (the skip connections), and a 3x3 convolution of [decoder, first
    encoder level] -> tanh.

    References:
        Isola et al. 2017, "Image-to-Image Translation with Conditional
        Adversarial Networks", sec. 3.2.1 (U-Net with skips); Ronneberger et
        al. 2015, "U-Net"; sized here for 28 x 28 images (two levels).
    """
    _check_shapes(source_shape, image_shape)
    f = filters
    x = source = keras.Input(source_shape, name="images")
    up = 0
    while x.shape[1] < image_shape[0]:
        x = keras.layers.Conv2DTranspose(2 * f, 4, strides=2, padding="same", name=f"upsample{up}")(x)
        x = keras.layers.ReLU()(_norm()(x))
        up += 1
    e0 = keras.layers.LeakyReLU(0.2)(keras.layers.Conv2D(f, 3, padding="same", name="enc0")(x))
    e1 = keras.layers.Conv2D(2 * f, 4, strides=2, padding="same", name="enc1")(e0)
    e1 = keras.layers.LeakyReLU(0.2)(_norm()(e1))
    e2 = keras.layers.Conv2D(4 * f, 4, strides=2, padding="same", name="enc2")(e1)
    e2 = keras.layers.LeakyReLU(0.2)(_norm()(e2))
    b = keras.layers.ReLU()(_norm()(keras.layers.Conv2D(4 * f, 3, padding="same", name="bottleneck")(e2)))
    d1 = keras.layers.Conv2DTranspose(2 * f, 4, strides=2, padding="same", name="dec1")(
        keras.layers.Concatenate()([b, e2]))
    d1 = keras.layers.ReLU()(_norm()(d1))
    d0 = keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same", name="dec0")(
        keras.layers.Concatenate()([d1, e1]))
    d0 = keras.layers.ReLU()(_norm()(d0))
    x = keras.layers.Conv2D(image_shape[-1], 3, padding="same", name="out")(
        keras.layers.Concatenate()([d0, e0]))
    out = keras.layers.Activation("tanh", dtype="float32")(x)  # float32 under mixed precision
    return keras.Model(source, out, name=name)


PATCH_SIZE = 18  # the receptive field of a logit of ``patch_discriminator``, in pixels


D_NORMS = ("instance", "none")  # the discriminators' normalization


def patch_discriminator(image_shape, filters, source_shape=None, name="discriminator", norm="instance",
                        minibatch="none"):
    """The PatchGAN discriminator: a logit per patch, (B, H/4, W/4, 1).

    Two stride-2 4x4 convolutions (f, 2f), a 3x3 convolution (4f; instance
    norm after all but the first when ``norm="instance"``, none with
    ``"none"``; leaky ReLU 0.2) and a 1x1 convolution to
    one logit: each logit sees an 18 x 18 patch (``PATCH_SIZE``) and the
    patches overlap, so D judges local structure and the L1 term the rest.
    With ``source_shape`` it is conditional, as pix2pix's: it reads the
    source image (upsampled by repetition when smaller) beside the image it
    scores; its inputs are then [source, image].

    ``minibatch`` gives every patch a view of the batch, against a generator
    that collapses an attribute of the whole image (a CycleGAN that draws
    every digit with about the same amount of ink, whatever the input's
    stroke width, fools a D that judges each image alone): "discrimination"
    averages the last features over the image and appends, as channels of
    every patch, those averages and ``adversarial.MinibatchDiscrimination``'s
    closeness of the image to the rest of the batch; "stddev" appends
    ``adversarial.MinibatchStddev``'s channel. Real and generated images must
    then reach D in separate batches, as they do here.

    References:
        Isola et al. 2017, sec. 3.2.2 (PatchGAN; 70 x 70 patches of 256 x 256 images);
        Salimans et al. 2016, sec. 3.2, and Karras et al. 2018, sec. 3 (minibatch features).
    """
    if norm not in D_NORMS:
        raise ValueError(f"d_norm must be one of {D_NORMS}, got {norm!r}")
    if minibatch not in adversarial.MINIBATCH_FEATURES:
        raise ValueError(f"d_minibatch must be one of {adversarial.MINIBATCH_FEATURES}, got {minibatch!r}")
    f = filters

    def normalized(x):
        return _norm()(x) if norm == "instance" else x

    image = keras.Input(image_shape, name="image")
    inputs, x = image, image
    if source_shape is not None:
        source = keras.Input(source_shape, name="source")
        inputs, y = [source, image], source
        if source_shape[0] < image_shape[0]:
            y = keras.layers.UpSampling2D(image_shape[0] // source_shape[0])(y)
        x = keras.layers.Concatenate()([y, image])
    x = keras.layers.LeakyReLU(0.2)(keras.layers.Conv2D(f, 4, strides=2, padding="same")(x))
    x = keras.layers.Conv2D(2 * f, 4, strides=2, padding="same")(x)
    x = keras.layers.LeakyReLU(0.2)(normalized(x))
    x = keras.layers.LeakyReLU(0.2)(normalized(keras.layers.Conv2D(4 * f, 3, padding="same")(x)))
    if minibatch == "stddev":
        x = adversarial.MinibatchStddev(dtype="float32")(x)
    elif minibatch == "discrimination":
        pooled = keras.layers.GlobalAveragePooling2D(dtype="float32")(x)
        batch_view = adversarial.MinibatchDiscrimination(dtype="float32")(pooled)  # (B, 4f + K)
        batch_view = keras.layers.Reshape((1, 1, batch_view.shape[-1]))(batch_view)
        batch_view = keras.layers.UpSampling2D(tuple(x.shape[1:3]), dtype="float32")(batch_view)
        x = keras.layers.Concatenate(dtype="float32")([x, batch_view])
    logits = keras.layers.Conv2D(1, 1, dtype="float32")(x)
    return keras.Model(inputs, logits, name=name)


def _norms(model):
    """The card's words for a translation model's normalization."""
    if model.d_norm == "instance":
        return "instance normalization"
    s = "s" if isinstance(model, CycleGAN) else ""
    return f"instance normalization in the generator{s}, none in the discriminator{s}"


def _minibatch_words(minibatch):
    """The card's words for the discriminators' view of the batch."""
    return {"none": "", "discrimination": ", each patch also reading minibatch discrimination's "
            "closeness of the image to the rest of its batch (Salimans et al. 2016)",
            "stddev": ", each patch also reading the batch's feature spread (Karras et al. 2018)"}[minibatch]


def _l1(a, b):
    return tf.reduce_mean(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32)))


def _pair(data):
    """(domain A, domain B) images as float32 from a {"a", "b"} batch (or an (x, y) tuple of one)."""
    if isinstance(data, (tuple, list)):
        data = data[0]
    if not isinstance(data, dict) or "a" not in data or "b" not in data:
        raise ValueError('a translation model trains on {"a": images, "b": images} batches '
                         "(training.data.load(..., task=...))")
    return tf.cast(data["a"], tf.float32), tf.cast(data["b"], tf.float32)


@keras.saving.register_keras_serializable(package="genzoo")
class Pix2Pix(adversarial.TwoPlayerModel):
    """pix2pix: paired translation with a conditional GAN and an L1 term.

    G is a U-Net (``unet``) from the source image to the target; D a
    conditional PatchGAN (``patch_discriminator``) of [source, image]. Each
    step updates D on real pairs against G's current outputs, then G on

        gan_weight * E[loss_G(D(x, G(x)))] + l1_weight * E|y - G(x)|

    (per patch and per pixel means), each player with its own optimizer. D's
    objective is halved, as in the paper. ``gan_weight=0`` is the paper's "L1
    alone" ablation: the same U-Net, trained without D.

    Args:
        source_shape: the input images' (H, W, C) (domain A).
        image_shape: the output images' (H, W, C) (domain B).
        filters: f of the U-Net.
        d_filters: f of the discriminator.
        loss: the GAN loss, one of ``adversarial.GAN_LOSSES`` (the paper: the
            non-saturating one).
        l1_weight: lambda of the L1 term (the paper: 100).
        gan_weight: the adversarial term's weight; 0 trains G on L1 alone.
        r1_weight: gamma of an R1 penalty gamma / 2 ||grad_y D(x, y)||^2 on
            real pairs (``adversarial.r1_penalty``: per patch); 0, the paper's
            objective, adds none. It keeps D smooth around the real images, so
            that G's adversarial gradient is not per-pixel noise.
        d_norm: "instance" or "none": the discriminator's normalization (see
            the module's docstring; the paper's D uses batch norm).

    References:
        Isola et al. 2017, "Image-to-Image Translation with Conditional
        Adversarial Networks", eq. (4) and sec. 3.3.
        r1_weight: Mescheder et al. 2018, "Which Training Methods for GANs do
        actually Converge?", eq. (9).
    """

    serving_note = ("`translate(images)` maps source images (uint8) to target images (uint8); "
                    "deterministic, each image translated alone.")

    def __init__(self, source_shape=(28, 28, 1), image_shape=(28, 28, 1), filters=32, d_filters=32,
                 loss="non_saturating", l1_weight=100.0, gan_weight=1.0, r1_weight=0.0,
                 d_norm="instance", **kwargs):
        super().__init__(**kwargs)
        if loss not in adversarial.GAN_LOSSES or loss == "wgan_gp":
            raise ValueError(f"pix2pix takes a GAN loss of {adversarial.GAN_LOSSES} but wgan_gp, "
                             f"got {loss!r}")
        if min(float(l1_weight), float(gan_weight), float(r1_weight)) < 0:
            raise ValueError("l1_weight, gan_weight and r1_weight must be >= 0, got "
                             f"{l1_weight}, {gan_weight}, {r1_weight}")
        self.source_shape = tuple(int(d) for d in source_shape)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.filters = int(filters)
        self.d_filters = int(d_filters)
        self.loss_kind = loss
        self.l1_weight = float(l1_weight)
        self.gan_weight = float(gan_weight)
        self.r1_weight = float(r1_weight)
        self.d_norm = d_norm
        self.num_classes = 0
        self.generator = unet(self.source_shape, self.image_shape, self.filters)
        self.discriminator = patch_discriminator(self.image_shape, self.d_filters, self.source_shape,
                                                 norm=d_norm)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in (("d_loss", "g_gan", "l1") if self.gan_weight else ("l1",))}
        self.build()

    @property
    def objective(self):
        if not self.gan_weight:
            return "L1 alone"
        r1 = f"; D's R1 penalty gamma = {self.r1_weight:g}" if self.r1_weight else ""
        return self._gan_l1() + r1

    def _gan_l1(self):
        return f"{self.loss_kind} GAN loss x {self.gan_weight:g} + {self.l1_weight:g} x L1"

    def describe(self):
        h, w, c = self.source_shape
        return (f"pix2pix: a U-Net generator ({self.filters} base channels; "
                f"{h}x{w}x{c} -> {'x'.join(map(str, self.image_shape))}) and a conditional "
                f"PatchGAN discriminator ({self.d_filters} base channels, a logit per "
                f"{PATCH_SIZE}x{PATCH_SIZE} patch); {_norms(self)}. Objective: "
                + ("L1 alone; the discriminator is not trained (the L1-alone ablation)."
                   if not self.gan_weight else
                   f"{self._gan_l1()} (Isola et al. 2017, eq. 4), D's loss halved"
                   + (f"; D's loss also carries an R1 penalty on real pairs, gamma = {self.r1_weight:g} "
                      "(Mescheder et al. 2018), which the paper does not use." if self.r1_weight else ".")))

    def build(self, input_shape=None):
        self.generator.build((None,) + self.source_shape)
        self.discriminator.build([(None,) + self.source_shape, (None,) + self.image_shape])
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    objective_args = ("loss", "l1_weight", "gan_weight", "r1_weight")

    def get_config(self):
        return {**super().get_config(), "source_shape": list(self.source_shape),
                "image_shape": list(self.image_shape), "filters": self.filters,
                "d_filters": self.d_filters, "loss": self.loss_kind, "l1_weight": self.l1_weight,
                "gan_weight": self.gan_weight, "r1_weight": self.r1_weight, "d_norm": self.d_norm}

    # -------------------------------------------------------------- networks
    def translate(self, source, training=False):
        """Target images in [-1, 1] from source images in [-1, 1]."""
        return self.generator(source, training=training)

    def discriminate(self, source, images, training=False):
        """Logits per patch (B, H/4, W/4) of ``images`` as translations of ``source``."""
        return self.discriminator([source, images], training=training)[..., 0]

    def call(self, source, training=False):
        return self.translate(source, training=training)

    # -------------------------------------------------------------- training
    def generator_objective(self, source, target, fake, training=True):
        """(total, adversarial term, L1 term) of G's loss for ``fake`` = G(source)."""
        l1 = _l1(target, fake)
        total = self.l1_weight * l1
        adv = tf.constant(0.0)
        if self.gan_weight:
            adv = tf.reduce_mean(adversarial.generator_loss(
                self.loss_kind, self.discriminate(source, fake, training=training)))
            total += self.gan_weight * adv
        return total, adv, l1

    def discriminator_objective(self, source, target, fake, training=True):
        """D's loss: half the GAN loss of real pairs against (source, fake) pairs, plus the
        R1 penalty of real pairs when ``r1_weight`` asks for it."""
        loss = 0.5 * tf.reduce_mean(adversarial.discriminator_loss(
            self.loss_kind, self.discriminate(source, target, training=training),
            self.discriminate(source, fake, training=training)))
        if self.r1_weight:
            loss += 0.5 * self.r1_weight * tf.reduce_mean(adversarial.r1_penalty(
                lambda y: self.discriminate(source, y, training=training), target))
        return loss

    def train_step(self, data):
        source, target = _pair(data)
        values = {}
        with tf.GradientTape() as g_tape:
            fake = self.translate(source, training=True)
            if self.gan_weight:
                with g_tape.stop_recording(), tf.GradientTape() as d_tape:
                    d_loss = self.discriminator_objective(source, target, tf.stop_gradient(fake))
                    d_scaled = steps.replica_loss(self.d_optimizer, d_loss)
                self.apply_gradients(self.d_optimizer, d_tape, d_scaled, self.discriminator_variables)
                values["d_loss"] = d_loss
            g_loss, values["g_gan"], values["l1"] = self.generator_objective(source, target, fake)
            g_scaled = steps.replica_loss(self.g_optimizer, g_loss)
        self.apply_gradients(self.g_optimizer, g_tape, g_scaled, self.generator_variables)
        return self.update_metrics(values)

    def validation_terms(self, data):
        source, target = _pair(data)
        fake = self.translate(source)
        _, adv, l1 = self.generator_objective(source, target, fake, training=False)
        values = {"l1": l1, "g_gan": adv}
        if self.gan_weight:
            values["d_loss"] = self.discriminator_objective(source, target, fake, training=False)
        return values

    # --------------------------------------------------------------- serving
    def serve_translate(self, images):
        return {"images": adversarial.to_uint8(self.translate(adversarial.from_uint8(images)))}

    def serving_endpoints(self, **options):
        """{"translate": ...}: uint8 source images -> uint8 target images."""
        return {"translate": (self.serve_translate, [contract.specs(self.source_shape)["images"]])}


@keras.saving.register_keras_serializable(package="genzoo")
class ImagePool(keras.layers.Layer):
    """A history of generated images that a discriminator is shown instead of only the newest.

    For each new image, in batch order: while the pool is filling, the image
    is stored and returned; once it holds ``size`` images, with probability
    1/2 a uniformly chosen pooled image is returned and the new one takes its
    place, else the new image is returned. The pool and its count are
    non-trainable variables: saved with the model, restored on resume, and
    the same on every replica: under a multi-replica strategy each replica
    gathers the global batch (in replica order, as one device would see it),
    runs the same draws on it and keeps its own rows of the result, so a
    mirrored step equals a one-device step.

    Args:
        size: images kept (CycleGAN: 50).

    References:
        Shrivastava et al. 2017, "Learning from Simulated and Unsupervised
        Images through Adversarial Training", sec. 2.3 (history of refined
        images); Zhu et al. 2017, "Unpaired Image-to-Image Translation using
        Cycle-Consistent Adversarial Networks", sec. 4 (a pool of 50).
    """

    def __init__(self, size=50, **kwargs):
        kwargs.setdefault("dtype", "float32")  # the pool keeps images as they come, in float32
        super().__init__(**kwargs)
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = int(size)

    def build(self, input_shape):
        shape = (self.size,) + tuple(int(d) for d in input_shape[1:])
        self.images = self.add_weight(name="images", shape=shape, initializer="zeros",
                                      trainable=False, aggregation="only_first_replica")
        self.count = self.add_weight(name="count", shape=(), dtype="int32", initializer="zeros",
                                     trainable=False, aggregation="only_first_replica")

    def call(self, images, seed):
        """Images for the discriminator, one per image of ``images``; ``seed`` (2,) drives the draws.

        ``seed`` must be the same on every replica.
        """
        images = tf.cast(images, self.images.dtype)
        local = tf.shape(images)[0]
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        if replicas > 1:
            images = ctx.all_gather(images, axis=0)
        n = tf.shape(images)[0]
        coins = tf.random.stateless_uniform([n], seed=seed) < 0.5
        picks = tf.random.stateless_uniform([n], seed=seed + 1, maxval=self.size, dtype=tf.int32)

        def step(i, pool, count, out):
            image = images[i]
            filling = count < self.size
            slot = tf.where(filling, count, picks[i])
            swap = tf.logical_and(tf.logical_not(filling), coins[i])
            out = out.write(i, tf.where(swap, pool[slot], image))
            stored = tf.where(tf.logical_or(filling, swap), image, pool[slot])
            pool = tf.tensor_scatter_nd_update(pool, [[slot]], [stored])
            return i + 1, pool, count + tf.cast(filling, tf.int32), out

        out = tf.TensorArray(images.dtype, size=n, element_shape=images.shape[1:])
        _, pool, count, out = tf.while_loop(
            lambda i, *_: i < n, step,
            (tf.constant(0), tf.convert_to_tensor(self.images), tf.convert_to_tensor(self.count), out))
        self.images.assign(pool)
        self.count.assign(count)
        out = out.stack()
        if replicas > 1:
            out = out[ctx.replica_id_in_sync_group * local:][:local]
        return out

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="genzoo")
class CycleGAN(adversarial.TwoPlayerModel):
    """CycleGAN: unpaired translation between domains A and B.

    Two U-Net generators, G: A -> B and F: B -> A, and two unconditional
    PatchGAN discriminators, D_B on B and D_A on A. Each step updates both
    generators on

        adv + cycle_weight * (E|F(G(a)) - a| + E|G(F(b)) - b|)
            + identity_weight * (E|G(b) - b| + E|F(a) - a|),

    adv = E[(D_B(G(a)) - 1)^2] + E[(D_A(F(b)) - 1)^2] (least squares, Mao et
    al. 2017), then both discriminators on real images against generated ones
    drawn through an ``ImagePool`` each, their least-squares loss halved:
    ``adversarial.discriminator_loss("lsgan")``, and twice
    ``adversarial.generator_loss("lsgan")`` for the generators' term, whose
    1/2 the paper does not have.

    Args:
        image_shape: (H, W, C) of both domains.
        filters: f of each U-Net.
        d_filters: f of each discriminator.
        cycle_weight: lambda of the cycle-consistency terms (the paper: 10).
        identity_weight: the identity terms' weight (the paper: 0.5 lambda).
        pool_size: generated images each discriminator's pool keeps (the paper: 50).
        seed: seeds the pools' draws.
        d_norm: "instance" (the paper's) or "none": the discriminators'
            normalization (see the module's docstring).
        d_minibatch: "none" (the paper's), "discrimination" or "stddev": the
            discriminators' view of the batch (``patch_discriminator``).

    References:
        Zhu et al. 2017, "Unpaired Image-to-Image Translation using
        Cycle-Consistent Adversarial Networks", eq. (3), sec. 4 and 5.2
        (identity loss).
    """

    serving_note = ("`translate(images)` maps domain A to domain B (G), `translate_back(images)` "
                    "B to A (F); uint8 in and out, deterministic, each image translated alone.")
    objective = "least-squares GAN + cycle consistency + identity"

    def __init__(self, image_shape=(28, 28, 1), filters=32, d_filters=32, cycle_weight=10.0,
                 identity_weight=5.0, pool_size=50, seed=0, d_norm="instance", d_minibatch="none",
                 **kwargs):
        super().__init__(**kwargs)
        if float(cycle_weight) < 0 or float(identity_weight) < 0:
            raise ValueError(f"cycle_weight and identity_weight must be >= 0, got {cycle_weight}, "
                             f"{identity_weight}")
        self.image_shape = tuple(int(d) for d in image_shape)
        self.filters = int(filters)
        self.d_filters = int(d_filters)
        self.cycle_weight = float(cycle_weight)
        self.identity_weight = float(identity_weight)
        self.pool_size = int(pool_size)
        self.seed = int(seed)
        self.d_norm = d_norm
        self.d_minibatch = d_minibatch
        self.num_classes = 0
        self.generator_ab = unet(self.image_shape, self.image_shape, self.filters, "generator_ab")
        self.generator_ba = unet(self.image_shape, self.image_shape, self.filters, "generator_ba")
        self.discriminator_a, self.discriminator_b = (
            patch_discriminator(self.image_shape, self.d_filters, name=f"discriminator_{domain}",
                                norm=d_norm, minibatch=d_minibatch) for domain in "ab")
        self.pool_a = ImagePool(self.pool_size, name="pool_a")
        self.pool_b = ImagePool(self.pool_size, name="pool_b")
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("d_loss", "g_gan", "cycle", "identity")}
        self.build()

    def describe(self):
        return (f"CycleGAN: two U-Net generators ({self.filters} base channels) and two "
                f"unconditional PatchGAN discriminators ({self.d_filters} base channels, a logit "
                f"per {PATCH_SIZE}x{PATCH_SIZE} patch{_minibatch_words(self.d_minibatch)}); "
                f"{_norms(self)}. Objective: "
                f"least-squares GAN + {self.cycle_weight:g} x cycle L1 + {self.identity_weight:g} "
                f"x identity L1 (Zhu et al. 2017, eq. 3 and sec. 5.2); each discriminator sees "
                f"generated images through a pool of {self.pool_size} (Shrivastava et al. 2017).")

    def build(self, input_shape=None):
        shape = (None,) + self.image_shape
        for network in (self.generator_ab, self.generator_ba, self.discriminator_a,
                        self.discriminator_b, self.pool_a, self.pool_b):
            network.build(shape)
        self.built = True

    @property
    def generator_variables(self):
        return self.generator_ab.trainable_variables + self.generator_ba.trainable_variables

    @property
    def discriminator_variables(self):
        return self.discriminator_a.trainable_variables + self.discriminator_b.trainable_variables

    @property
    def metrics(self):
        return list(self.trackers.values())

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "filters": self.filters, "d_filters": self.d_filters,
                "cycle_weight": self.cycle_weight, "identity_weight": self.identity_weight,
                "pool_size": self.pool_size, "seed": self.seed, "d_norm": self.d_norm,
                "d_minibatch": self.d_minibatch}

    # -------------------------------------------------------------- networks
    def translate(self, a, training=False):
        """G: domain A -> domain B, images in [-1, 1]."""
        return self.generator_ab(a, training=training)

    def translate_back(self, b, training=False):
        """F: domain B -> domain A, images in [-1, 1]."""
        return self.generator_ba(b, training=training)

    def call(self, a, training=False):
        return self.translate(a, training=training)

    # -------------------------------------------------------------- training
    def generator_objective(self, a, b, training=True):
        """(total, adversarial, cycle, identity) of the generators' loss on a batch of each domain."""
        fake_b, fake_a = self.translate(a, training), self.translate_back(b, training)
        adv = (2.0 * tf.reduce_mean(adversarial.generator_loss(
                   "lsgan", self.discriminator_b(fake_b, training=training)))
               + 2.0 * tf.reduce_mean(adversarial.generator_loss(
                   "lsgan", self.discriminator_a(fake_a, training=training))))
        cycle = (_l1(self.translate_back(fake_b, training), a)
                 + _l1(self.translate(fake_a, training), b))
        total = adv + self.cycle_weight * cycle
        identity = tf.constant(0.0)
        if self.identity_weight:
            identity = _l1(self.translate(b, training), b) + _l1(self.translate_back(a, training), a)
            total += self.identity_weight * identity
        return total, adv, cycle, identity, fake_a, fake_b

    def discriminator_objective(self, a, b, fake_a, fake_b, training=True):
        """Both discriminators' least-squares losses (halved), summed."""
        loss_b = adversarial.discriminator_loss("lsgan", self.discriminator_b(b, training=training),
                                                self.discriminator_b(fake_b, training=training))
        loss_a = adversarial.discriminator_loss("lsgan", self.discriminator_a(a, training=training),
                                                self.discriminator_a(fake_a, training=training))
        return tf.reduce_mean(loss_a) + tf.reduce_mean(loss_b)

    def _pool_seed(self):
        """A fresh seed (2,), the same on every replica (the pools must agree)."""
        optimizer = getattr(self, "d_optimizer", None)
        return seeding.training_seed(self.seed_generator,
                                     optimizer.iterations if optimizer is not None else None,
                                     per_replica=False)

    def train_step(self, data):
        a, b = _pair(data)
        with tf.GradientTape() as g_tape:
            g_loss, adv, cycle, identity, fake_a, fake_b = self.generator_objective(a, b)
            g_scaled = steps.replica_loss(self.g_optimizer, g_loss)
        self.apply_gradients(self.g_optimizer, g_tape, g_scaled, self.generator_variables)
        seed = self._pool_seed()
        pooled_a = self.pool_a(tf.stop_gradient(fake_a), seed)
        pooled_b = self.pool_b(tf.stop_gradient(fake_b), tf.random.experimental.stateless_fold_in(seed, 1))
        with tf.GradientTape() as d_tape:
            d_loss = self.discriminator_objective(a, b, pooled_a, pooled_b)
            d_scaled = steps.replica_loss(self.d_optimizer, d_loss)
        self.apply_gradients(self.d_optimizer, d_tape, d_scaled, self.discriminator_variables)
        return self.update_metrics({"d_loss": d_loss, "g_gan": adv, "cycle": cycle,
                                    "identity": identity})

    def validation_terms(self, data):
        a, b = _pair(data)
        _, adv, cycle, identity, fake_a, fake_b = self.generator_objective(a, b, training=False)
        d_loss = self.discriminator_objective(a, b, fake_a, fake_b, training=False)
        return {"d_loss": d_loss, "g_gan": adv, "cycle": cycle, "identity": identity}

    # --------------------------------------------------------------- serving
    def serve_translate(self, images):
        return {"images": adversarial.to_uint8(self.translate(adversarial.from_uint8(images)))}

    def serve_translate_back(self, images):
        return {"images": adversarial.to_uint8(self.translate_back(adversarial.from_uint8(images)))}

    def serving_endpoints(self, **options):
        """{"translate": A -> B, "translate_back": B -> A}, uint8 images in and out."""
        spec = [contract.specs(self.image_shape)["images"]]
        return {"translate": (self.serve_translate, spec),
                "translate_back": (self.serve_translate_back, spec)}
