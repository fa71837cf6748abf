"""Pixel likelihoods p(x | params) built from TensorFlow Probability distributions.

A likelihood turns a network's raw output (``params``, shape (B, H, W, C * P))
into a TFP distribution over whole images, and converts between the serving
format (uint8, 0..255) and the form the model trains on.
"""
import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def bits_per_dim(nll, image_shape):
    """Bits per dimension of ``nll`` (nats per image, a tensor or a float): NLL / (H W C ln 2)."""
    return nll / (math.prod(image_shape) * math.log(2.0))


def _softmax(logits):
    """Softmax over the last axis for any rank (some CPU kernels stop at rank 5)."""
    flat = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
    return tf.reshape(tf.nn.softmax(flat), tf.shape(logits))


def _exact_mean(values):
    """E[x] of a distribution over 0..255 (batch shape (B, H, W, C)), summed over levels."""
    levels = tf.reshape(tf.range(256, dtype=tf.float32), [256, 1, 1, 1, 1])
    return tf.reduce_sum(tf.exp(values.log_prob(levels)) * levels, axis=0)


class BernoulliPixels:
    """Independent Bernoulli pixels for binarized images (x in {0, 1}).

    A served uint8 pixel reads as 1 when it is >= 128; outputs are 0 or 255.
    """

    name = "bernoulli"
    params_per_channel = 1

    def distribution(self, params):
        """Returns p(x | params) with event shape (H, W, C)."""
        return tfd.Independent(
            tfd.Bernoulli(logits=params, dtype=tf.float32), reinterpreted_batch_ndims=3
        )

    def from_uint8(self, images):
        return tf.cast(images >= 128, tf.float32)

    def to_uint8(self, x):
        return tf.cast(tf.round(x * 255.0), tf.uint8)

    def network_input(self, x):
        return 2.0 * x - 1.0

    def mean(self, params):
        return tf.sigmoid(params)

    def mode(self, params):
        return tf.cast(params >= 0.0, tf.float32)

    def sample(self, params, uniform):
        """Draws x given uniform noise of the same shape (for seeded serving)."""
        return tf.cast(uniform < tf.sigmoid(params), tf.float32)


class _EightBit:
    """Conversions shared by the likelihoods of 8-bit values (x in 0..255)."""

    def from_uint8(self, images):
        return tf.cast(images, tf.float32)

    def to_uint8(self, x):
        return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)

    def network_input(self, x):
        return x / 127.5 - 1.0


class DiscretizedLogisticPixels(_EightBit):
    """A logistic per pixel, discretized to the 256 levels 0..255.

    Bin k covers (k - 0.5, k + 0.5]; the edge bins 0 and 255 absorb the tails.
    Built as ``tfd.QuantizedDistribution`` of a shifted ``tfd.Logistic``.

    References:
        Salimans et al. 2017, "PixelCNN++", eq. (2) (one mixture component here;
        the loc/scale are per pixel and the data stay on the 0..255 scale).
    """

    name = "discretized_logistic"
    params_per_channel = 2
    min_log_scale = -5.0

    def _loc_scale(self, params):
        loc, log_scale = tf.split(params, 2, axis=-1)
        loc = 127.5 + 127.5 * tf.tanh(loc)
        scale = tf.exp(tf.maximum(log_scale + 3.0, self.min_log_scale))
        return loc, scale

    def value_distribution(self, params):
        """The distribution of each value (batch shape (B, H, W, C))."""
        loc, scale = self._loc_scale(params)
        # QuantizedDistribution puts P[Y = y] = P[y - 1 < X <= y]; shifting the
        # logistic by -0.5 centres bin y on y.
        return tfd.QuantizedDistribution(
            tfd.Logistic(loc=loc - 0.5, scale=scale), low=0.0, high=255.0
        )

    def distribution(self, params):
        return tfd.Independent(self.value_distribution(params), reinterpreted_batch_ndims=3)

    def mean(self, params):
        return _exact_mean(self.value_distribution(params))

    def mode(self, params):
        return tf.clip_by_value(tf.round(self._loc_scale(params)[0]), 0.0, 255.0)

    def sample(self, params, uniform):
        loc, scale = self._loc_scale(params)
        u = tf.clip_by_value(uniform, 1e-6, 1.0 - 1e-6)
        x = loc - 0.5 + scale * (tf.math.log(u) - tf.math.log1p(-u))
        return tf.clip_by_value(tf.math.ceil(x), 0.0, 255.0)


class CategoricalPixels(_EightBit):
    """A 256-way categorical per pixel and channel (x in 0..255).

    ``params`` holds 256 logits per channel, channel-major: (B, H, W, C * 256).

    References:
        van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sec. 5.3.
    """

    name = "categorical"
    params_per_channel = 256

    def _logits(self, params):
        shape = tf.shape(params)
        return tf.reshape(params, tf.concat([shape[:-1], [-1, 256]], 0))  # (..., C, 256)

    def distribution(self, params):
        cat = tfd.Categorical(logits=self._logits(params), dtype=tf.float32)
        return tfd.Independent(cat, reinterpreted_batch_ndims=3)

    def mean(self, params):
        probs = _softmax(self._logits(params))
        return tf.reduce_sum(probs * tf.range(256, dtype=tf.float32), -1)

    def mode(self, params):
        return tf.cast(tf.argmax(self._logits(params), -1), tf.float32)

    def sample(self, params, uniform):
        """Inverse-CDF draw with one uniform per channel: (B, H, W, C)."""
        cdf = tf.cumsum(_softmax(self._logits(params)), axis=-1)
        return tf.cast(tf.reduce_sum(tf.cast(cdf < uniform[..., None], tf.int32), -1), tf.float32)


class DiscretizedLogisticMixturePixels(_EightBit):
    """PixelCNN++'s likelihood: a mixture of K discretized logistics per value.

    ``params`` holds, per channel, K mixture logits, K locations and K log
    scales: (B, H, W, C * 3K). Built as ``tfd.MixtureSameFamily`` of
    ``tfd.QuantizedDistribution(tfd.Logistic)`` on the 0..255 scale, edge bins
    absorbing the tails. Channels are independent given the context (the
    paper's linear dependence of G on R and B on R, G is not implemented: the
    zoo's 8-bit data are grey).

    References:
        Salimans et al. 2017, "PixelCNN++", sec. 2.1-2.2, eq. (2).
    """

    name = "logistic_mixture"

    def __init__(self, num_components=5):
        self.num_components = int(num_components)
        self.params_per_channel = 3 * self.num_components
        self.noise_per_channel = 2

    def _split(self, params):
        shape = tf.shape(params)
        p = tf.reshape(params, tf.concat([shape[:-1], [-1, 3, self.num_components]], 0))
        logits, loc, log_scale = tf.unstack(p, axis=-2)  # each (..., C, K)
        loc = 127.5 + 127.5 * tf.tanh(loc)
        scale = tf.exp(tf.maximum(log_scale + 3.0, -5.0))
        return logits, loc, scale

    def value_distribution(self, params):
        """The distribution of each value (batch shape (B, H, W, C))."""
        logits, loc, scale = self._split(params)
        components = tfd.QuantizedDistribution(
            tfd.Logistic(loc=loc - 0.5, scale=scale), low=0.0, high=255.0)
        return tfd.MixtureSameFamily(tfd.Categorical(logits=logits), components)

    def distribution(self, params):
        return tfd.Independent(self.value_distribution(params), reinterpreted_batch_ndims=3)

    def mean(self, params):
        return _exact_mean(self.value_distribution(params))

    def mode(self, params):
        logits, loc, _ = self._split(params)
        best = tf.argmax(logits, -1)
        return tf.clip_by_value(tf.round(tf.gather(loc, best, batch_dims=len(loc.shape) - 1)), 0.0, 255.0)

    def sample(self, params, uniform):
        """Draws with two uniforms per channel, ``uniform`` of shape (..., C, 2)."""
        logits, loc, scale = self._split(params)
        u_pick, u_value = uniform[..., 0], uniform[..., 1]
        cdf = tf.cumsum(_softmax(logits), axis=-1)
        pick = tf.minimum(tf.reduce_sum(tf.cast(cdf < u_pick[..., None], tf.int32), -1),
                          self.num_components - 1)
        batch_dims = len(loc.shape) - 1
        loc = tf.gather(loc, pick, batch_dims=batch_dims)
        scale = tf.gather(scale, pick, batch_dims=batch_dims)
        u = tf.clip_by_value(u_value, 1e-6, 1.0 - 1e-6)
        x = loc - 0.5 + scale * (tf.math.log(u) - tf.math.log1p(-u))
        return tf.clip_by_value(tf.math.ceil(x), 0.0, 255.0)


LIKELIHOODS = {cls.name: cls for cls in (BernoulliPixels, DiscretizedLogisticPixels,
                                         CategoricalPixels, DiscretizedLogisticMixturePixels)}


def get(name):
    """Returns the likelihood called ``name``; unknown names list the valid ones."""
    if name not in LIKELIHOODS:
        raise ValueError(f"Unknown likelihood {name!r}; valid: {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name]()
