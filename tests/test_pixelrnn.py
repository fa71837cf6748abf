"""PixelRNN (zoo/pixelrnn.py): what makes the Row LSTM and the Diagonal BiLSTM the paper's.

Causality of every layer and model, both directions of the Diagonal BiLSTM
(the test shows it catches a missing down-shift of the right-to-left
direction), the receptive fields of sec. 3.1-3.2, skewing, the gates'
activations, normalisation for every likelihood, and training under a
MirroredStrategy. The family's shared checks (fast sampler = naive sampler,
per-row seeds, completion, export, mixed precision, tiny overfit) run for
these models in test_autoregressive.py; config, saving and one step in
test_harness.py.
"""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from harness import pixel_dependence, randomize, run_with_cpu_devices
from zoo import pixelrnn

SHAPE = (5, 4)  # H, W: not square, so that a mixed-up axis shows


def _layer(cls, seed=0):
    layer = cls(units=3)
    layer.build((None,) + SHAPE + (6,))
    for v in layer.trainable_variables:
        v.assign(tf.random.stateless_normal(v.shape, seed=[seed, v.shape.num_elements()]))
    return layer


def _input(channels=6):
    return np.random.default_rng(1).normal(size=(1,) + SHAPE + (channels,)).astype(np.float32)


def _leaks(dep, strict):
    """(p, q) pairs where output pixel p depends on an input pixel q it must not see."""
    n = dep.shape[0]
    return [(p, q) for p in range(n) for q in range(n) if dep[p, q] and (q >= p if strict else q > p)]


def _at(i, j):
    return i * SHAPE[1] + j


@pytest.mark.parametrize("cls", [pixelrnn.RowLSTMLayer, pixelrnn.DiagonalBiLSTMLayer])
def test_each_layer_sees_only_the_past_and_the_present_pixel(cls):
    dep = pixel_dependence(_layer(cls), _input())
    assert not _leaks(dep, strict=False), _leaks(dep, strict=False)[:5]
    assert dep[_at(2, 2), _at(2, 2)] and dep[_at(2, 2), _at(1, 2)]  # mask B: itself, the row above


def test_the_backward_directions_shift_is_what_keeps_the_diagonal_bilstm_causal(monkeypatch):
    layer = _layer(pixelrnn.DiagonalBiLSTMLayer)
    dep = pixel_dependence(layer, _input())
    assert not _leaks(dep, strict=False)
    # The right-to-left direction reaches the whole row above, to its right end.
    assert dep[_at(2, 0), _at(1, SHAPE[1] - 1)]
    # Without the down-shift, pixel (i, j) would read (i, > j) through that direction:
    # the same check finds the leak.
    monkeypatch.setattr(pixelrnn, "shift_down", lambda x: x)
    leaks = _leaks(pixel_dependence(layer, _input()), strict=False)
    assert (_at(2, 0), _at(2, 1)) in leaks, leaks[:5]


def test_row_lstm_context_is_the_triangle_above():
    # One layer of k = 3: pixel (i, j) reads (i, j-1..j) and, through the state of row
    # i - 1, columns j-1..j+1 of it, and a triangle widening by one per row further up.
    dep = pixel_dependence(_layer(pixelrnn.RowLSTMLayer), _input())
    i, j = 3, 1
    for r in range(i):
        reach = i - r
        for c in range(SHAPE[1]):
            assert dep[_at(i, j), _at(r, c)] == (abs(c - j) <= reach), (r, c)
    assert [dep[_at(i, j), _at(i, c)] for c in range(SHAPE[1])] == [True, True, False, False]


@pytest.mark.parametrize("cls", [pixelrnn.RowLSTM, pixelrnn.DiagonalBiLSTM])
def test_whole_models_are_strictly_causal(cls):
    model = cls(image_shape=SHAPE + (1,), filters=6, num_blocks=2, first_kernel_size=3)
    randomize(model, 2)
    x = (np.random.default_rng(0).random((1,) + SHAPE + (1,)) < 0.5).astype(np.float32)
    dep = pixel_dependence(lambda images: model(images), x)
    assert not _leaks(dep, strict=True), _leaks(dep, strict=True)[:5]
    n = SHAPE[0] * SHAPE[1]
    if cls is pixelrnn.DiagonalBiLSTM:
        # sec. 3.2: the Diagonal BiLSTM's context is every earlier pixel, but one: the last
        # pixel of the row above, for pixels the first (mask-A, k = 3) layer does not reach it
        # from. No layer's input at (i - 1, W - 1) holds that pixel, so the right-to-left
        # direction never carries it along row i - 1.
        w = SHAPE[1]
        for p in range(n):
            i, j = divmod(p, w)
            unseen = [q for q in range(p) if not dep[p, q]]
            assert unseen == ([_at(i - 1, w - 1)] if i and j + 1 < w - 1 else []), (p, unseen)
    else:
        assert dep[n - 1, :n - 1].sum() > n // 2  # a wide context, not nothing


def test_skew_and_unskew_are_inverse_and_shift_row_i_by_i():
    x = tf.reshape(tf.range(1, 1 + 2 * 3 * 4 * 2, dtype=tf.float32), (2, 3, 4, 2))
    skewed = pixelrnn.skew(x)
    assert skewed.shape == (2, 3, 4 + 3 - 1, 2)
    for i in range(3):
        np.testing.assert_array_equal(skewed[:, i, i:i + 4], x[:, i])
        assert float(tf.reduce_sum(tf.abs(skewed[:, i, :i]))) == 0.0
        assert float(tf.reduce_sum(tf.abs(skewed[:, i, i + 4:]))) == 0.0
    np.testing.assert_array_equal(pixelrnn.unskew(skewed, 4), x)
    np.testing.assert_array_equal(pixelrnn.shift_down(x)[:, 1:], x[:, :-1])
    assert float(tf.reduce_sum(tf.abs(pixelrnn.shift_down(x)[:, 0]))) == 0.0


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def test_gates_i_f_o_use_the_sigmoid_and_g_the_tanh():
    rng = np.random.default_rng(3)
    pre, c_prev = rng.normal(size=(5, 8)) * 2, rng.normal(size=(5, 2))
    h, c = pixelrnn.lstm_update(tf.constant(pre, tf.float32), tf.constant(c_prev, tf.float32))
    i, f, o, g = np.split(pre, 4, axis=-1)
    want_c = _sigmoid(f) * c_prev + _sigmoid(i) * np.tanh(g)
    np.testing.assert_allclose(c, want_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, _sigmoid(o) * np.tanh(want_c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [pixelrnn.RowLSTMLayer, pixelrnn.DiagonalBiLSTMLayer])
def test_each_layer_computes_its_state_with_those_gates(cls):
    # No input and no state-to-state weights: every gate is its bias. With g's bias
    # negative the cell state, and so h, is negative: a sigmoid g would make it positive.
    layer = cls(units=1)
    layer.build((None, 1, 1, 2))
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    for v in layer.weights:
        if "bias" in v.name and "out" not in v.name:
            v.assign([0.5, -0.3, 0.2, -1.0])  # i, f, o, g
        if v.name == "out_kernel":
            v.assign([[1.0, 0.0]])
    h = float(layer(tf.zeros([1, 1, 1, 2]))[0, 0, 0, 0])
    c = _sigmoid(0.5) * np.tanh(-1.0)
    np.testing.assert_allclose(h, _sigmoid(0.2) * np.tanh(c), rtol=1e-5)


LIKELIHOODS = [("bernoulli", (2, 3, 1), 2), ("categorical", (2, 1, 1), 256),
               ("discretized_logistic", (2, 1, 1), 256), ("logistic_mixture", (2, 1, 1), 256)]


@pytest.mark.parametrize("cls,likelihood,shape,levels",
                         [(cls, *case) for cls in (pixelrnn.RowLSTM, pixelrnn.DiagonalBiLSTM)
                          for case in LIKELIHOODS])
def test_probabilities_of_all_images_sum_to_one(cls, likelihood, shape, levels):
    model = cls(image_shape=shape, filters=6, num_blocks=2, first_kernel_size=3, likelihood=likelihood)
    randomize(model, 6, scale=0.5)
    n = int(np.prod(shape))
    images = np.array(list(itertools.product(range(levels), repeat=n)), np.float32).reshape((-1,) + shape)
    total = tf.reduce_sum(tf.exp(tf.cast(model.log_prob(images), tf.float64)))
    np.testing.assert_allclose(float(total), 1.0, rtol=1e-4)


def test_conditional_models_use_their_label():
    for cls in (pixelrnn.RowLSTM, pixelrnn.DiagonalBiLSTM):
        model = cls(image_shape=(3, 3, 1), filters=6, num_blocks=1, first_kernel_size=3, num_classes=3)
        randomize(model, 7)
        x = np.ones((2, 3, 3, 1), np.float32)
        a = model.log_prob({"images": x, "labels": np.zeros(2)})
        b = model.log_prob({"images": x, "labels": np.ones(2)})
        assert not np.allclose(a, b), f"{cls.__name__}: the label changes nothing"


@pytest.mark.parametrize("cls", [pixelrnn.RowLSTM, pixelrnn.DiagonalBiLSTM])
def test_a_grown_model_starts_as_its_shallower_source_and_its_new_layers_learn(cls):
    args = dict(image_shape=(5, 4, 1), filters=6, first_kernel_size=3, num_classes=3)
    source, grown = cls(num_blocks=2, **args), cls(num_blocks=4, **args)
    x = {"images": (np.random.default_rng(0).random((4, 5, 4, 1)) < 0.4).astype(np.float32),
         "labels": np.arange(4) % 3}
    source.log_prob(x), grown.log_prob(x)  # builds both
    randomize(source, 3)
    randomize(grown, 4)
    before = grown.log_prob(x)
    assert grown.grow_from(source) == 2
    np.testing.assert_allclose(grown.log_prob(x), source.log_prob(x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(before, grown.log_prob(x))
    # The added layers add nothing yet, but their residual outputs get gradients.
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(grown.log_prob(x))
    new_outputs = [layer.out_kernel for layer in grown.rnn[2:]]
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in tape.gradient(loss, new_outputs))
    for other in (cls(num_blocks=2, **dict(args, filters=8)), cls(num_blocks=5, **args)):
        other.log_prob(x)
        with pytest.raises(ValueError, match="can grow only"):
            grown.grow_from(other)


def test_rgb_is_refused_with_a_clear_error():
    for cls in (pixelrnn.RowLSTM, pixelrnn.DiagonalBiLSTM):
        with pytest.raises(ValueError, match="one colour channel"):
            cls(image_shape=(4, 4, 3))


MIRRORED_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, tensorflow as tf, keras
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
from zoo import pixelrnn

x = (np.random.default_rng(0).random((16, 5, 4, 1)) < 0.4).astype(np.float32)
strategies = (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
for cls in (pixelrnn.RowLSTM, pixelrnn.DiagonalBiLSTM):
    weights = []
    for strategy in strategies:
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = cls(image_shape=(5, 4, 1), filters=6, num_blocks=2, first_kernel_size=3)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        start = [w.numpy().copy() for w in model.trainable_weights]
        model.fit(x, batch_size=16, epochs=2, verbose=0)
        weights.append([w.numpy() for w in model.trainable_weights])
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(*weights))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(start, weights[1]))
    print(cls.__name__, diff, moved)
"""


def test_training_under_a_mirrored_strategy_matches_one_device(tmp_path):
    # Two replicas of 8 images take the same SGD steps as one device with 16.
    stdout = run_with_cpu_devices(MIRRORED_SCRIPT, tmp_path)
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in stdout.splitlines()}
    for name in ("RowLSTM", "DiagonalBiLSTM"):
        diff, moved = rows[name]
        assert diff < 1e-5 and moved > 1e-3, (name, diff, moved)


def test_scans_export_as_loops_not_unrolled_steps(tmp_path):
    model = pixelrnn.DiagonalBiLSTM(image_shape=(6, 5, 1), filters=4, num_blocks=1, first_kernel_size=3)
    fn = tf.function(model.log_prob).get_concrete_function(tf.TensorSpec([None, 6, 5, 1], tf.float32))
    ops = [node.op for node in fn.graph.as_graph_def().node]
    assert "While" in ops or "StatelessWhile" in ops
    # two directions, one traced LSTM step each: as many Sigmoid ops as a single step has (3 per step)
    sigmoids = sum(op == "Sigmoid" for f in fn.graph.as_graph_def().library.function for op in
                   (n.op for n in f.node_def))
    assert sigmoids == 2 * 3, sigmoids
    assert keras.saving.get_registered_object("genzoo>DiagonalBiLSTM") is pixelrnn.DiagonalBiLSTM
