"""PixelRNN: the Row LSTM and the Diagonal BiLSTM of the autoregressive family.

Both read the image through a 7x7 mask-A convolution, stack residual LSTM
layers over it and map the result with two 1x1 mask-B layers to the pixel
likelihood (``zoo/likelihoods.py``); the exact ``log_prob``, training steps,
naive sampler, ``complete`` and signatures are the family's
(``zoo.autoregressive.AutoregressiveModel``). The recurrences are ``tf.scan``
loops (28 rows or 55 diagonals, one traced step each) and keep their state in
float32 under every precision policy; the convolutions around them run in the
policy's compute dtype. Grey images (one colour channel).

References:
    van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sec. 3.1
    (Row LSTM), 3.2 (Diagonal BiLSTM), 3.3 (residual connections), table 4.
"""
import keras
import numpy as np
import tensorflow as tf

from zoo import autoregressive

GATES = ("i", "f", "o", "g")  # the order of the four gate blocks in every 4u-wide kernel


def lstm_update(pre, c_prev):
    """One LSTM step from the gates' pre-activations: (h, c).

    ``pre``: (..., 4u) in the order of ``GATES``; i, f and o use the sigmoid,
    g the tanh; c = f * c_prev + i * g and h = o * tanh(c) (the paper's eq. 3).
    """
    i, f, o, g = tf.split(pre, 4, axis=-1)
    c = tf.sigmoid(f) * c_prev + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c


def _forget_bias(shape, dtype=None):
    """Zeros, and 1 on the forget gate (Jozefowicz et al. 2015), so that states carry at first."""
    units = shape[-1] // 4
    return tf.constant(np.repeat([0.0, 1.0, 0.0, 0.0], units).astype(np.float32), dtype=dtype)


def skew(x):
    """(B, H, W, C) -> (B, H, W + H - 1, C): row i shifted right by i, zeros around.

    The diagonals of the image become the columns of the skewed map (the
    paper's fig. 3). Pads each row to W + H, flattens the rows and cuts the
    sequence into rows of W + H - 1, which moves row i right by i.
    """
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    flat = tf.reshape(tf.pad(x, [[0, 0], [0, 0], [0, h], [0, 0]]), tf.stack([b, h * (w + h), c]))
    return tf.reshape(flat[:, :h * (w + h - 1)], tf.stack([b, h, w + h - 1, c]))


def unskew(x, width):
    """The inverse of ``skew`` for images ``width`` wide: (B, H, W + H - 1, C) -> (B, H, W, C)."""
    shape = tf.shape(x)
    b, h, c = shape[0], shape[1], shape[3]
    flat = tf.pad(tf.reshape(x, tf.stack([b, -1, c])), [[0, 0], [0, h], [0, 0]])
    return tf.reshape(flat, tf.stack([b, h, width + h, c]))[:, :, :width]


def shift_down(x):
    """(B, H, W, C) moved down one row: row i takes row i - 1, row 0 is zeros."""
    return tf.pad(x, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


def _dense(x, kernel):
    """x @ kernel over the last axis, any rank; the kernel in x's dtype."""
    return tf.tensordot(x, tf.cast(kernel, x.dtype), 1)


class _ResidualLSTM(keras.layers.Layer):
    """What both PixelRNN layers share: units, the residual 1x1 output, serialization.

    The layer maps a (B, H, W, 2u) map to one of the same shape:
    x + conv1x1(h), where h (B, H, W, u) is the LSTM's output (sec. 3.3).
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def _build_output(self, channels):
        self.out_kernel = self.add_weight(name="out_kernel", shape=(self.units, channels),
                                          initializer=keras.initializers.GlorotUniform())
        self.out_bias = self.add_weight(name="out_bias", shape=(channels,), initializer="zeros")

    def residual(self, x, h):
        """x + the 1x1 convolution of h (float32 state) in x's dtype."""
        h = tf.cast(h, x.dtype)
        return x + _dense(h, self.out_kernel) + tf.cast(self.out_bias, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config


@keras.saving.register_keras_serializable(package="genzoo")
class RowLSTMLayer(_ResidualLSTM):
    """One Row LSTM layer: the image row by row, top to bottom, a whole row per step.

    Input-to-state: a 1 x k convolution along the row with mask B (the pixel
    and the k // 2 to its left), computed for the whole map at once.
    State-to-state: a centred 1 x k convolution of the previous row's hidden
    state, so that pixel (i, j) reaches (i - 1, j - k//2 .. j + k//2) and,
    through them, a triangle above it (the paper's fig. 4). Gates as in
    ``lstm_update``; residual output.

    Args:
        units: u, the hidden state's channels (the input has 2u).
        kernel_size: odd k of both convolutions (the paper: 3).

    References:
        van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sec. 3.1, eq. (3).
    """

    def __init__(self, units, kernel_size=3, **kwargs):
        super().__init__(units, **kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = int(kernel_size)

    def build(self, input_shape):
        channels, k, u = int(input_shape[-1]), self.kernel_size, self.units
        init = keras.initializers.GlorotUniform()
        # Only the mask-B half of the 1 x k input kernel exists: columns j - k//2 .. j.
        self.is_kernel = self.add_weight(name="is_kernel", shape=(1, k // 2 + 1, channels, 4 * u),
                                         initializer=init)
        self.ss_kernel = self.add_weight(name="ss_kernel", shape=(k, u, 4 * u), initializer=init)
        self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer=_forget_bias)
        self._build_output(channels)

    def input_to_state(self, x, condition=None):
        """(B, R, W, 2u) rows -> (B, R, W, 4u) float32 pre-activations from the input."""
        if condition is not None:
            x = x + condition
        half = self.kernel_size // 2
        pre = tf.nn.conv2d(tf.pad(x, [[0, 0], [0, 0], [half, 0], [0, 0]]),
                           tf.cast(self.is_kernel, x.dtype), 1, "VALID")
        return tf.cast(pre, tf.float32) + tf.cast(self.bias, tf.float32)

    def row(self, pre, h_prev, c_prev):
        """One step: a row's input pre-activations (B, W, 4u) and the previous row's state -> (h, c)."""
        state = tf.nn.conv1d(h_prev, tf.cast(self.ss_kernel, tf.float32), 1, "SAME")
        return lstm_update(pre + state, c_prev)

    def step(self, x, h_prev, c_prev, condition=None):
        """One image row through the layer: (x' (B, 1, W, 2u), h, c) from row x and the state above.

        The fast sampler's step; ``call`` is this over every row.
        """
        h, c = self.row(self.input_to_state(x, condition)[:, 0], h_prev, c_prev)
        return self.residual(x, h[:, None]), h, c

    def zero_state(self, x):
        """(h, c) above the first row: zeros of (B, W, u)."""
        zeros = tf.zeros(tf.stack([tf.shape(x)[0], tf.shape(x)[2], self.units]))
        return zeros, zeros

    def call(self, x, condition=None):
        pre = tf.transpose(self.input_to_state(x, condition), [1, 0, 2, 3])  # (H, B, W, 4u)
        hs, _ = tf.scan(lambda state, p: self.row(p, *state), pre, initializer=self.zero_state(x))
        return self.residual(x, tf.transpose(hs, [1, 0, 2, 3]))  # (B, H, W, 2u)

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size)
        return config


@keras.saving.register_keras_serializable(package="genzoo")
class DiagonalBiLSTMLayer(_ResidualLSTM):
    """One Diagonal BiLSTM layer: two diagonal LSTMs, left-to-right and right-to-left.

    Each direction skews its input (``skew``) so that the diagonals become
    columns, computes the input-to-state 1x1 convolution, and scans the
    columns: the state-to-state convolution is 2 x 1 down the column, so the
    state at (i, j) comes from (i - 1, j) and (i, j - 1) of the image, and the
    cell state from (i, j - 1). States outside the image (the skewed map's
    padding) are held at zero. The right-to-left direction runs on the
    mirrored map; its output is shifted down one row before the two are
    added, since at (i, j) it has seen (i, > j), the future. Residual output.

    In a model after a k x k mask-A layer, pixel (i, j) sees every earlier
    pixel but one: (i - 1, W - 1), when j + k//2 < W - 1. No layer's input at
    (i - 1, W - 1) holds that pixel (mask A), so the right-to-left direction
    never carries it along row i - 1, and the first layer reaches it only
    from (i, >= W - 1 - k//2). The paper's fig. 4 draws the whole context.

    Args:
        units: u, each direction's hidden channels (the input has 2u).

    References:
        van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sec. 3.2, fig. 3.
    """

    DIRECTIONS = ("forward", "backward")

    def build(self, input_shape):
        channels, u = int(input_shape[-1]), self.units
        init = keras.initializers.GlorotUniform()
        self.is_kernel, self.ss_kernel, self.bias = {}, {}, {}
        for d in self.DIRECTIONS:
            self.is_kernel[d] = self.add_weight(name=f"{d}_is_kernel", shape=(channels, 4 * u),
                                                initializer=init)
            self.ss_kernel[d] = self.add_weight(name=f"{d}_ss_kernel", shape=(2 * u, 4 * u),
                                                initializer=init)
            self.bias[d] = self.add_weight(name=f"{d}_bias", shape=(4 * u,), initializer=_forget_bias)
        self._build_output(channels)

    def input_to_state(self, x, direction, condition=None):
        """(..., 2u) -> (..., 4u) float32: the 1x1 input-to-state convolution of one direction."""
        if condition is not None:
            x = x + condition
        pre = _dense(x, self.is_kernel[direction])
        return tf.cast(pre, tf.float32) + tf.cast(self.bias[direction], tf.float32)

    def cell(self, pre, h_up, h_left, c_left, direction):
        """One state: the input pre-activations and the states above and before -> (h, c)."""
        ss = _dense(tf.concat([h_up, h_left], -1), self.ss_kernel[direction])
        return lstm_update(pre + ss, c_left)

    def scan(self, pre, direction):
        """The diagonal LSTM over a (B, H, W, 4u) map, left to right: (B, H, W, u)."""
        width, height = tf.shape(pre)[2], tf.shape(pre)[1]
        columns = tf.transpose(skew(pre), [2, 0, 1, 3])  # (W + H - 1, B, H, 4u)
        rows, cols = tf.range(height)[None, :], tf.range(width + height - 1)[:, None]
        inside = tf.cast((cols >= rows) & (cols - rows < width), tf.float32)[:, None, :, None]
        zeros = tf.zeros(tf.concat([tf.shape(columns)[1:3], [self.units]], 0))

        def column(state, elems):
            h_prev, c_prev = state
            p, keep = elems
            up = tf.pad(h_prev, [[0, 0], [1, 0], [0, 0]])[:, :-1]  # (i - 1) of the previous column
            h, c = self.cell(p, up, h_prev, c_prev, direction)
            return h * keep, c * keep

        hs, _ = tf.scan(column, (columns, inside), initializer=(zeros, zeros))
        return unskew(tf.transpose(hs, [1, 2, 0, 3]), width)

    def call(self, x, condition=None):
        forward = self.scan(self.input_to_state(x, "forward", condition), "forward")
        mirrored = self.input_to_state(x[:, :, ::-1], "backward", condition)
        backward = self.scan(mirrored, "backward")[:, :, ::-1]
        return self.residual(x, forward + shift_down(backward))


class _PixelRNN(autoregressive.AutoregressiveModel):
    """What both PixelRNNs share: the mask-A input layer, the LSTM stack, the head.

    ``filters`` is 2u, the width of the residual stream; each LSTM layer has
    u = filters // 2 hidden units per direction. Conditional models add a
    learned vector of the one-hot label to every layer's input-to-state.
    """

    def _make_layers(self):
        if self.image_shape[-1] != 1:
            raise ValueError(f"{type(self).__name__} supports one colour channel")
        self.first = autoregressive.MaskedConv2D(self.filters, self.first_kernel_size, "A",
                                                 name="conv_a")
        self.rnn = [self._lstm_layer(name=f"lstm{i}") for i in range(self.num_blocks)]
        self.label_terms = [keras.layers.Dense(self.filters, use_bias=False, name=f"lstm{i}_label")
                            for i in range(self.num_blocks if self.num_classes else 0)]
        self.head = self._mask_b_head()

    def build(self, input_shape):
        shape = (None,) + self.image_shape
        self.first.build(shape)
        shape = shape[:-1] + (self.filters,)
        for layer in self.rnn + self.head:
            layer.build(shape)
        for layer in self.label_terms:
            layer.build((None, self.num_classes))

    def _conditions(self, labels, like):
        """Each layer's label term, (B, 1, 1, 2u) in like's dtype, or Nones."""
        if not self.num_classes:
            return [None] * self.num_blocks
        onehot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        return [tf.cast(term(onehot), like.dtype)[:, None, None, :] for term in self.label_terms]

    def params(self, h, labels=None):
        h = self.first(h)
        for layer, condition in zip(self.rnn, self._conditions(labels, h), strict=True):
            h = layer(h, condition)
        return self._head(h)

    def grow_from(self, source):
        """Starts this model as ``source`` made deeper: the same function, more layers to train.

        ``source`` is a PixelRNN of this class and config but for fewer
        ``num_blocks``. Its mask-A layer, LSTM layers (and label terms) and
        head are copied into this model's first layers; the extra LSTM layers,
        appended after them, keep their fresh LSTM weights but get zero
        residual outputs, so each adds nothing and the grown model computes
        exactly ``source``'s distribution before training (Net2Net's deeper
        network, Chen et al. 2016, sec. 2.2, with zero-initialised residual
        branches instead of identity kernels: gradients still reach the new
        output kernels through the fresh hidden states).
        """
        from zoo import saving  # a module that imports the zoo's model classes

        def without_depth(model):
            name, config = saving.architecture(model, True)
            return name, {k: v for k, v in config.items() if k != "num_blocks"}

        if without_depth(source) != without_depth(self) or source.num_blocks > self.num_blocks:
            raise ValueError(
                f"can grow only a {type(self).__name__} of this config with at most {self.num_blocks} "
                f"layers, not {saving.architecture(source, True)}")
        n = source.num_blocks
        pairs = [(self.first, source.first), *zip(self.head, source.head, strict=True),
                 *zip(self.rnn[:n], source.rnn, strict=True),
                 *zip(self.label_terms[:n], source.label_terms, strict=True)]
        copied = sum(len(theirs.weights) for _, theirs in pairs)
        if copied != len(source.weights):
            raise ValueError(f"{len(source.weights) - copied} of the source's weights have no place here")
        for mine, theirs in pairs:
            mine.set_weights(theirs.get_weights())
        for layer in self.rnn[n:]:
            layer.out_kernel.assign(tf.zeros_like(layer.out_kernel))
            layer.out_bias.assign(tf.zeros_like(layer.out_bias))
        return n

    def _window(self, x, r):
        """The image rows r - k//2 .. r of the first layer's kernel, zeros above: (B, k//2 + 1, W, 1)."""
        half = self.first_kernel_size // 2
        image = tf.pad(self.pixel_likelihood.network_input(x), [[0, 0], [half, 0], [0, 0], [0, 0]])
        return image[:, r:r + half + 1]


@keras.saving.register_keras_serializable(package="genzoo")
class RowLSTM(_PixelRNN):
    """PixelRNN with Row LSTM layers.

    A 7x7 mask-A convolution, ``num_blocks`` residual Row LSTM layers
    (``RowLSTMLayer``), ReLU and two 1x1 mask-B layers to the likelihood.

    Args:
        image_shape: (H, W, 1).
        filters: 2u, the residual stream's width.
        num_blocks: Row LSTM layers.
        kernel_size: k of the layers' input- and state-to-state convolutions.
        first_kernel_size: k of the mask-A layer (the paper: 7).
        likelihood: "bernoulli", "categorical", "discretized_logistic" or "logistic_mixture".
        num_classes: > 0 makes the model class-conditional.

    References:
        van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sec. 3.1, 3.3, table 4.
    """

    def __init__(self, image_shape=(28, 28, 1), filters=32, num_blocks=4, kernel_size=3,
                 first_kernel_size=7, likelihood="bernoulli", num_classes=0, **kwargs):
        self.kernel_size = int(kernel_size)
        super().__init__(image_shape, filters, num_blocks, likelihood, first_kernel_size,
                         num_classes, **kwargs)

    def _lstm_layer(self, name):
        return RowLSTMLayer(self.filters // 2, self.kernel_size, name=name)

    def _layer_config(self):
        return {"kernel_size": self.kernel_size}

    def describe(self):
        k = self.first_kernel_size
        return (f"a {k}x{k} mask-A convolution, {self.num_blocks} residual Row LSTM layers "
                f"({self.filters // 2} units; 1x{self.kernel_size} mask-B input-to-state and "
                f"1x{self.kernel_size} state-to-state convolutions, one row per step), ReLU and "
                f"two 1x1 mask-B layers -> {self.likelihood} pixels. Sampling: the fast sampler "
                "(`RowLSTM.sample`, one row of work per layer and pixel), which draws the same "
                "images as the naive one."
                + (f" Conditioned on {self.num_classes} classes." if self.num_classes else ""))

    def sample(self, seed, labels=None, images=None, mask=None):
        """The fast sampler: carries each layer's state of the row above.

        Row i of a Row LSTM layer needs only its input row i and its own
        (h, c) of row i - 1, and the first layer's input row i needs the k//2 + 1
        image rows its kernel reaches. So each pixel step runs every layer on
        one row (1 x W) instead of the whole image, and when an image row is
        done each layer's state moves down one row. Draws the same images as
        ``sample_naive``.
        """
        lik = self.pixel_likelihood
        height, width, _ = self.image_shape
        x, keep, noise = self._start(seed, images, mask)

        def row_pass(r, x, states):
            h = self.first(self._window(x, r))[:, -1:]  # (B, 1, W, 2u)
            conditions = self._conditions(labels, h)
            new_states = []
            for layer, (h_prev, c_prev), condition in zip(self.rnn, states, conditions, strict=True):
                h, h_state, c_state = layer.step(h, h_prev, c_prev, condition)
                new_states.append((h_state, c_state))
            return self._head(h), new_states  # (B, 1, W, P)

        def row(r, x, states):
            def pixel(col, x):
                params, _ = row_pass(r, x, states)
                draw = lik.sample(params[:, :, col:col + 1], noise[:, r:r + 1, col:col + 1])
                return col + 1, self._place(x, keep, r * width + col, draw)

            x = tf.while_loop(lambda col, _: col < width, pixel, (tf.constant(0), x))[1]
            return r + 1, x, row_pass(r, x, states)[1]

        states = [layer.zero_state(x) for layer in self.rnn]
        return tf.while_loop(lambda r, *_: r < height, row, (tf.constant(0), x, states))[1]


@keras.saving.register_keras_serializable(package="genzoo")
class DiagonalBiLSTM(_PixelRNN):
    """PixelRNN with Diagonal BiLSTM layers.

    A 7x7 mask-A convolution, ``num_blocks`` residual Diagonal BiLSTM layers
    (``DiagonalBiLSTMLayer``), ReLU and two 1x1 mask-B layers to the likelihood.

    Args:
        image_shape: (H, W, 1).
        filters: 2u, the residual stream's width (the paper's 7-layer model: u = 16).
        num_blocks: Diagonal BiLSTM layers.
        first_kernel_size: k of the mask-A layer (the paper: 7).
        likelihood: "bernoulli", "categorical", "discretized_logistic" or "logistic_mixture".
        num_classes: > 0 makes the model class-conditional.

    References:
        van den Oord et al. 2016, "Pixel Recurrent Neural Networks", sec. 3.2, 3.3, table 4.
    """

    def __init__(self, image_shape=(28, 28, 1), filters=32, num_blocks=7, first_kernel_size=7,
                 likelihood="bernoulli", num_classes=0, **kwargs):
        super().__init__(image_shape, filters, num_blocks, likelihood, first_kernel_size,
                         num_classes, **kwargs)

    def _lstm_layer(self, name):
        return DiagonalBiLSTMLayer(self.filters // 2, name=name)

    def describe(self):
        k = self.first_kernel_size
        return (f"a {k}x{k} mask-A convolution, {self.num_blocks} residual Diagonal BiLSTM layers "
                f"({self.filters // 2} units per direction; skewed map, 1x1 input-to-state and 2x1 "
                "state-to-state convolutions, one diagonal per step; the right-to-left output "
                "shifted down a row), ReLU and two 1x1 mask-B layers -> "
                f"{self.likelihood} pixels. Sampling: the fast sampler (`DiagonalBiLSTM.sample`, "
                "one pixel of work per layer and pixel, one row per layer for the right-to-left "
                "direction when a row is done), which draws the same images as the naive one."
                + (f" Conditioned on {self.num_classes} classes." if self.num_classes else ""))

    def sample(self, seed, labels=None, images=None, mask=None):
        """The fast sampler: one pixel of each layer per pixel step.

        The left-to-right state at (i, j) needs the layer's input at (i, j),
        its state at (i - 1, j) and at (i, j - 1); the right-to-left output
        that pixel (i, j) adds is the one of (i - 1, j). So each pixel step
        computes one state per layer, carrying the row above and the state to
        the left; when an image row is done, each layer's right-to-left
        direction scans that row from the right (its inputs were kept during
        the row). Draws the same images as ``sample_naive``.
        """
        lik = self.pixel_likelihood
        height, width, _ = self.image_shape
        half = self.first_kernel_size // 2
        x, keep, noise = self._start(seed, images, mask)
        batch = tf.shape(x)[0]
        row_zeros = tf.zeros(tf.stack([batch, width, self.filters // 2]))  # states of a row
        input_zeros = tf.zeros(tf.stack([batch, width, self.filters]),  # layer inputs of a row
                               self.first.compute_dtype)
        pixel_zeros = row_zeros[:, 0]

        def put(rows, col, value):
            """``rows`` (B, W, C) with column ``col`` set to ``value`` (B, C)."""
            here = tf.one_hot(col, width, dtype=rows.dtype)[None, :, None]
            return rows + here * (value[:, None] - rows)

        def pixel(r, col, x, above, backward, inputs, current):
            """Draws pixel (r, col); ``current`` and ``inputs`` gain its states and layer inputs."""
            window = tf.pad(self._window(x, r), [[0, 0], [0, 0], [half, half], [0, 0]])
            h = self.first(window[:, :, col:col + 2 * half + 1])[:, -1, half]  # (B, 2u)
            conditions = self._conditions(labels, h)
            new_inputs, new_current = [], []
            for b, layer in enumerate(self.rnn):
                condition = None if conditions[b] is None else conditions[b][:, 0, 0]
                new_inputs.append(put(inputs[b], col, h))
                pre = layer.input_to_state(h, "forward", condition)
                h_left, c_left = current[b]
                state, cell = layer.cell(pre, above[b][:, col], h_left, c_left, "forward")
                new_current.append((state, cell))
                h = layer.residual(h, state + backward[b][:, col])
            params = self._head(h[:, None, None])  # (B, 1, 1, P)
            draw = lik.sample(params, noise[:, r:r + 1, col:col + 1])
            return self._place(x, keep, r * width + col, draw), new_inputs, new_current

        def right_to_left(layer, inputs, backward, condition):
            """A layer's right-to-left states of a row from its inputs and the states above."""
            if condition is not None:
                condition = condition[:, 0]
            pre = tf.transpose(layer.input_to_state(inputs, "backward", condition)[:, ::-1], [1, 0, 2])
            above = tf.transpose(backward[:, ::-1], [1, 0, 2])

            def step(state, elems):
                return layer.cell(elems[0], elems[1], state[0], state[1], "backward")

            hs, _ = tf.scan(step, (pre, above), initializer=(pixel_zeros, pixel_zeros))
            return tf.transpose(hs, [1, 0, 2])[:, ::-1]  # (B, W, u)

        def row(r, x, above, backward):
            def step(col, x, inputs, current, rows):
                x, inputs, new_current = pixel(r, col, x, above, backward, inputs, current)
                rows = [put(kept, col, state) for kept, (state, _) in zip(rows, new_current, strict=True)]
                return col + 1, x, inputs, new_current, rows

            n = len(self.rnn)
            start = (tf.constant(0), x, [input_zeros] * n, [(pixel_zeros, pixel_zeros)] * n, [row_zeros] * n)
            _, x, inputs, _, rows = tf.while_loop(lambda col, *_: col < width, step, start)
            conditions = self._conditions(labels, inputs[0])
            new_backward = [right_to_left(layer, inputs[b], backward[b], conditions[b])
                            for b, layer in enumerate(self.rnn)]
            return r + 1, x, rows, new_backward

        n = len(self.rnn)
        start = (tf.constant(0), x, [row_zeros] * n, [row_zeros] * n)
        return tf.while_loop(lambda r, *_: r < height, row, start)[1]
