"""Text-to-image: a GAN that draws the digit a caption asks for (GAN-CLS at MNIST scale).

The caption grammar is fixed, so anyone can rebuild the numbers:

    caption := "a" [style] digit      style := "thin" | "thick"
    digit   := "zero" | "one" | ... | "nine"

Case and extra whitespace are ignored. A style is a fact about the image: its
ink (the number of pixels >= 128) below ("thin") or above ("thick") the median
ink of the training images of its digit (``INK_MEDIANS_MNIST``). Every caption
true of an image is a training caption for it: the one without a style word
too, and an image whose ink equals the median has only that one.

Captions reach the networks as word ids over ``VOCABULARY`` (id 0: no word),
three per caption ("a", the style word or none, the digit word). Each network
reads them with its own small text encoder of Keras layers (a word embedding
per position, then a dense layer), so G's encoder trains with G and D's with D.
Served models take the caption as a string: ``parse_captions`` turns a batch of
strings into ids with core TensorFlow string ops inside the SavedModel and
fails, naming the word, on a caption outside the grammar.

References:
    Reed et al. 2016, "Generative Adversarial Text to Image Synthesis",
    sec. 4.1 (GAN-CLS, the matching-aware discriminator: a real image with a
    mismatched caption is a third kind of "fake", the two fake terms halved)
    and sec. 4 (the text embedding concatenated to z, and spatially replicated
    onto D's 4x4 features). Departs from it in the text encoder: a caption of
    this grammar is three words, so each network embeds the words itself
    instead of using a pretrained char-CNN-RNN.
"""
import keras
import tensorflow as tf

from zoo import adversarial, contract, seeding, steps

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STYLES = ("", "thin", "thick")  # style 0: no style word
VOCABULARY = ("", "a", "thin", "thick") + DIGITS  # id 0: no word
CAPTION_WORDS = 3
# The median ink (pixels >= 128) of the 60,000 MNIST training images of each
# digit, measured by training.data.ink_medians("mnist"); a test re-measures it.
INK_MEDIANS_MNIST = (136.0, 58.0, 117.0, 110.0, 93.0, 99.0, 107.0, 88.0, 117.0, 95.0)
GRAMMAR = "a caption reads: a, then thin or thick or nothing, then a digit from zero to nine"


def caption(digit, style=0):
    """The caption of ``digit`` (0-9) with ``style`` (0: none, 1: thin, 2: thick)."""
    return " ".join(word for word in ("a", STYLES[style], DIGITS[digit]) if word)


def parse(text):
    """(style, digit) of a caption, by the grammar; ValueError naming what is wrong."""
    words = text.lower().split()
    unknown = [word for word in words if word not in VOCABULARY[1:]]
    if unknown:
        raise ValueError(f"unknown word in a caption: {unknown[0]} ({GRAMMAR})")
    if len(words) not in (2, 3) or words[0] != "a" or words[-1] not in DIGITS or (
            len(words) == 3 and words[1] not in STYLES[1:]):
        raise ValueError(f"caption not in the grammar: {text} ({GRAMMAR})")
    return (STYLES.index(words[1]) if len(words) == 3 else 0), DIGITS.index(words[-1])


def parse_captions(text):
    """(B, 2) int32 (style, digit) of a (B,) string tensor of captions, in the graph.

    Lower-cases, splits on whitespace and matches each word against
    ``VOCABULARY`` with core string ops (no Python, no resources), so a
    SavedModel that serves it runs in stock TF Serving. A word outside the
    vocabulary or a caption outside the grammar fails the call with an
    InvalidArgumentError that names the word (the embedded server: HTTP 400).
    """
    text = tf.convert_to_tensor(text, tf.string)
    words = tf.strings.split(tf.strings.lower(text))
    flat = words.flat_values
    match = tf.equal(flat[:, None], tf.constant(VOCABULARY[1:])[None, :])
    known = tf.reduce_any(match, axis=1)
    checks = [_check(known, flat, "unknown word in a caption: ")]
    ids = tf.where(known, tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32) + 1, 0)
    ids = words.with_flat_values(ids)
    lengths = ids.row_lengths()
    padded = ids.to_tensor(default_value=0, shape=[None, CAPTION_WORDS])
    first = padded[:, 0]
    last = tf.gather(padded, tf.clip_by_value(tf.cast(lengths, tf.int32) - 1, 0, CAPTION_WORDS - 1),
                     axis=1, batch_dims=1)
    middle = padded[:, 1]
    style_id, digit_base = VOCABULARY.index("thin"), VOCABULARY.index("zero")
    well_formed = ((lengths >= 2) & (lengths <= CAPTION_WORDS) & tf.equal(first, 1)
                   & (last >= digit_base)
                   & tf.where(lengths == 3, (middle >= style_id) & (middle < digit_base), True))
    checks.append(_check(well_formed, text, "caption not in the grammar: "))
    with tf.control_dependencies(checks):
        style = tf.where(lengths == 3, middle - style_id + 1, 0)
        return tf.stack([style, last - digit_base], axis=1)


def _check(ok, values, prefix):
    """An assertion that all of ``ok`` holds; its message: ``prefix``, the first failing value,
    the grammar (no quotes: TensorFlow escapes them in assertion messages)."""
    first = tf.strings.reduce_join(tf.boolean_mask(values, tf.logical_not(ok))[:1])
    return tf.debugging.Assert(tf.reduce_all(ok), [tf.strings.join([prefix, first, f" ({GRAMMAR})"])])


def caption_ids(captions):
    """(B, 3) word ids over ``VOCABULARY`` of (B, 2) (style, digit) captions."""
    captions = tf.cast(captions, tf.int32)
    style, digit = captions[:, 0], captions[:, 1]
    a = tf.ones_like(digit)
    style_word = tf.where(style > 0, style + VOCABULARY.index("thin") - 1, 0)
    return tf.stack([a, style_word, digit + VOCABULARY.index("zero")], axis=1)


def ink(images):
    """Pixels >= 128 per uint8 image (B, H, W, C), or per image in [-1, 1] (> 0 there)."""
    images = tf.convert_to_tensor(images)
    inked = images >= 128 if images.dtype == tf.uint8 else images > 0.0
    return tf.reduce_sum(tf.cast(inked, tf.int32), axis=tf.range(1, tf.rank(images)))


@keras.saving.register_keras_serializable(package="genzoo")
class TextGAN(adversarial.GAN):
    """GAN-CLS: G(z, caption) and a matching-aware D(image, caption).

    D's loss is L_real(D(x, t)) + (L_fake(D(x, t')) + L_fake(D(G(z, t), t))) / 2
    with t a caption true of the real image x and t' one false of it; G's is
    L_G(D(G(z, t), t)). The GAN loss ``loss`` gives L_real, L_fake and L_G.
    Training captions are made in the step from the real images and their
    class labels: the style from the image's ink against ``ink_medians``, the
    style word dropped with probability 1/2 (both captions are true of the
    image); t' changes the digit (by 1 to 9, mod 10) or, for a styled caption
    half of the time, swaps thin and thick, so it is always false of x.

    Args:
        embed_dim: width of each network's caption embedding.
        ink_medians: the median ink of the training images of each digit.
        (and GAN's arguments but ``num_classes``, which is fixed: the ten digits, and
        ``latent_code``, which is off; the ``minibatch`` features come after D has joined
        the caption to the image.)
    """

    serving_note = ("`sample(seed, text)` draws z ~ N(0, I) per row and draws the caption in "
                    "`text` (a string per row, in the card's grammar; another caption is a 400 "
                    "naming the word); `generate(latents, text)` maps z; `discriminate(images, "
                    "text)` returns D's logits for the pair.")
    FIXED = dict(num_classes=len(DIGITS), latent_code=0, info_weight=1.0)

    def __init__(self, embed_dim=32, ink_medians=INK_MEDIANS_MNIST, **kwargs):
        self.embed_dim = int(embed_dim)
        self.ink_medians = tuple(float(m) for m in ink_medians)
        if len(self.ink_medians) != len(DIGITS):
            raise ValueError(f"ink_medians needs one median per digit ({len(DIGITS)}), "
                             f"got {len(self.ink_medians)}")
        super().__init__(**self.with_fixed(kwargs))

    def describe(self):
        return (f"GAN-CLS (Reed et al. 2016) with DCGAN networks ({self.filters} base channels, "
                f"{self.latent_dim}-d z ~ N(0, I)); each network embeds the caption's words "
                f"({len(VOCABULARY) - 1}-word vocabulary, {self.embed_dim}-d); the "
                f"discriminator is matching-aware; loss {self.loss_kind}; minibatch features: "
                f"{self.minibatch}."
                + "".join(f" {part}" for part in self._techniques()))

    # --------------------------------------------------------------- networks
    def _text_encoder(self, words):
        """A caption's word ids (B, 3) -> its embedding (B, embed_dim)."""
        x = keras.layers.Embedding(len(VOCABULARY), self.embed_dim)(words)
        x = keras.layers.Flatten()(x)
        return keras.layers.Dense(self.embed_dim, activation="leaky_relu")(x)

    def _make_generator(self, name="generator"):
        z = keras.Input((self.latent_dim,), name="z")
        words = keras.Input((CAPTION_WORDS,), dtype="int32", name="words")
        x = keras.layers.Concatenate()([z, self._text_encoder(words)])
        return keras.Model([z, words], self._upsample(x), name=name)

    def _make_discriminator(self):
        h, w, c = self.image_shape
        image = keras.Input((h, w, c), name="image")
        words = keras.Input((CAPTION_WORDS,), dtype="int32", name="words")
        x = self._downsample(image, lambda: keras.layers.LeakyReLU(0.2))
        text = keras.layers.RepeatVector((h // 4) * (w // 4))(self._text_encoder(words))
        text = keras.layers.Reshape((h // 4, w // 4, self.embed_dim))(text)
        x = keras.layers.Concatenate()([x, text])
        x = self._normalized(keras.layers.Conv2D(2 * self.filters, 1))(x)
        x = keras.layers.LeakyReLU(0.2)(x)
        if self.minibatch == "stddev":
            x = adversarial.MinibatchStddev()(x)
        x = keras.layers.Flatten()(x)
        if self.minibatch == "discrimination":
            x = adversarial.MinibatchDiscrimination()(x)
        out = self._normalized(keras.layers.Dense(1, dtype="float32"))(x)
        return keras.Model([image, words], out, name="discriminator")

    def build(self, input_shape=None):
        if self.ema_generator is not None:
            self.ema_generator.set_weights(self.generator.get_weights())  # the average starts at w
        self.built = True

    def generate(self, z, captions=None, training=False):
        """Images in [-1, 1] from latents (B, latent_dim) and (B, 2) (style, digit) captions."""
        network = self.generator if training or self.ema_generator is None else self.ema_generator
        return network([z, caption_ids(captions)], training=training)

    def discriminate(self, x, captions=None, training=False):
        """Logits (B,) of images in [-1, 1] with (B, 2) (style, digit) captions."""
        return tf.squeeze(self.discriminator([x, caption_ids(captions)], training=training), -1)

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "ink_medians": list(self.ink_medians)}

    # -------------------------------------------------------------- training
    def conditions(self, labels):
        """``sample``/``generate``'s text for digit ``labels``: the captions "a <digit>"."""
        return [tf.gather(tf.constant([caption(d) for d in range(len(DIGITS))]), labels)]

    def styles(self, images, labels):
        """(B,) style of each image in [-1, 1] of digit ``labels``: 1 thin, 2 thick, 0 at the median."""
        amount = tf.cast(ink(images), tf.float32)
        median = tf.gather(tf.constant(self.ink_medians, tf.float32), tf.cast(labels, tf.int32))
        return tf.where(amount < median, 1, tf.where(amount > median, 2, 0))

    def training_captions(self, images, labels):
        """(true, false) (B, 2) captions of real images: see the class docstring."""
        digit = tf.cast(labels, tf.int32)
        style = self.styles(images, labels)
        keep, which, shift = tf.unstack(
            tf.random.stateless_uniform(tf.stack([tf.shape(digit)[0], 3]), self._seed()), axis=1)
        style = tf.where(keep < 0.5, style, 0)
        swap = (style > 0) & (which < 0.5)
        wrong_digit = tf.where(swap, digit, (digit + 1 + tf.cast(shift * 9.0, tf.int32)) % 10)
        wrong_style = tf.where(swap, 3 - style, style)
        return tf.stack([style, digit], 1), tf.stack([wrong_style, wrong_digit], 1)

    def matching_loss(self, d_real, d_wrong, d_fake):
        """D's per-example GAN-CLS loss: the two "fake" kinds share the fake term's weight."""
        return 0.5 * (adversarial.discriminator_loss(self.loss_kind, d_real, d_wrong)
                      + adversarial.discriminator_loss(self.loss_kind, d_real, d_fake))

    def _d_step(self, real, captions):
        right, wrong = captions
        fake = self.generate(self._noise(real), right, training=True)
        with tf.GradientTape() as tape:
            d_real = self.discriminate(real, right, training=True)
            d_wrong = self.discriminate(real, wrong, training=True)
            d_fake = self.discriminate(fake, right, training=True)
            per_example = self.matching_loss(d_real, d_wrong, d_fake)
            d_loss = tf.reduce_mean(per_example + self._penalties(real, fake, right))
            scaled = steps.replica_loss(self.d_optimizer, d_loss)
        self.apply_gradients(self.d_optimizer, tape, scaled, self.discriminator_variables)
        return d_loss, tf.reduce_mean(d_real), tf.reduce_mean(d_fake)

    def train_step(self, data):
        real, labels = self.unpack(data)
        captions = self.training_captions(real, labels)
        for _ in range(self.d_steps):
            d_loss, d_real, d_fake = self._d_step(real, captions)
        g_loss, _ = self._g_step(real, captions[0])
        return self.update_metrics(self._terms(d_loss, g_loss, d_real, d_fake))

    def validation_terms(self, data):
        real, labels = self.unpack(data)
        right, wrong = self.training_captions(real, labels)
        fake = self.generate(self._noise(real), right)
        d_real, d_fake = self.discriminate(real, right), self.discriminate(fake, right)
        d_loss = tf.reduce_mean(self.matching_loss(d_real, self.discriminate(real, wrong), d_fake))
        g_loss = tf.reduce_mean(adversarial.generator_loss(self.loss_kind, d_fake))
        return self._terms(d_loss, g_loss, tf.reduce_mean(d_real), tf.reduce_mean(d_fake))

    # --------------------------------------------------------------- serving
    def serve_sample(self, seed, text):
        z = seeding.normal_rows(seed, [self.latent_dim])
        return {"images": adversarial.to_uint8(self.generate(z, parse_captions(text))), "latents": z}

    def serve_generate(self, latents, text):
        return {"images": adversarial.to_uint8(self.generate(latents, parse_captions(text)))}

    def serve_discriminate(self, images, text):
        return {"logits": self.row_scores(adversarial.from_uint8(images), parse_captions(text))}

    def serving_examples(self):
        return {"text": ["a seven", "A  thick TWO"]}

    def serving_endpoints(self, **options):
        """{name: (function, input specs)}: sample (serving_default), generate, discriminate."""
        s = contract.specs(self.image_shape, self.latent_dim)
        text = tf.TensorSpec([None], tf.string, name="text")
        return {
            "sample": (self.serve_sample, [s["seed"], text]),
            "generate": (self.serve_generate, [s["latents"], text]),
            "discriminate": (self.serve_discriminate, [s["images"], text]),
        }
