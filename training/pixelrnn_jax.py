"""Training the PixelRNNs on a GPU machine that has JAX but no TensorFlow.

A transcription of ``zoo/pixelrnn.py``'s training forward pass (the
Row LSTM's and the Diagonal BiLSTM's ``log_prob`` with Bernoulli pixels) into
JAX, for machines where TensorFlow cannot be installed. It trains the Keras
model's own weights: ``pack`` writes them (and the masks of ``zoo``'s masked
convolutions) to an ``.npz`` keyed by each Keras variable's path, ``train``
runs the optimisation there with JAX and optax, and ``unpack`` loads the result
back into the zoo's Keras model as a run folder that ``serving.export`` and
``training.evaluate`` take like any other. ``tests/test_pixelrnn_jax.py``
checks that both compute the same log-probability and gradients from the same
weights, so the transcription cannot drift from the model.

The training matches ``training.train``'s for these presets: dynamic
binarization of the training images every epoch, the fixed binarized test set
as the validation curve, Adam with a cosine-decayed learning rate, a Polyak
average of the weights with ``training.train``'s warm-up, and the averaged
weights as the result. One difference: the schedule runs over a wall-clock
budget (``--seconds``) rather than a number of epochs, since a lent GPU comes
for a fixed time; the run record states the epochs it made.

Steps (the first and last here, ``train`` on the GPU machine, run as a file
there: it imports only NumPy, JAX and optax, not the ``training`` package)::

    python -m training.pixelrnn_jax pack row_lstm_mnist gpu/row.npz --set num_blocks=8 \\
        --init_from exported/row_lstm_mnist/3 --init_grow --data gpu/mnist.npz
    python3 training/pixelrnn_jax.py train gpu/row.npz --data gpu/mnist.npz --out OUT/row --seconds 480
    python -m training.pixelrnn_jax unpack OUT/row --output_dir runs/row_lstm_mnist_v4
"""
import argparse
import json
import math
import pathlib
import shlex
import sys
import time

import numpy as np

KINDS = {"RowLSTM": "row", "DiagonalBiLSTM": "diagonal"}
META = "__meta__"  # the npz entry holding the JSON description of the model and its run
TRAINED_WITH = ("JAX and optax through `training/pixelrnn_jax.py`, a transcription of this model's "
                "log-probability that `tests/test_pixelrnn_jax.py` checks against the Keras model's "
                "(same log-probabilities and gradients from the same weights); its `unpack` loaded the "
                "trained weights into the Keras model")


# ------------------------------------------------------------------ the model in JAX
def _jax():
    import jax
    import jax.numpy as jnp
    return jax, jnp


def _conv(x, kernel, padding):
    """NHWC x HWIO convolution, stride 1 (``tf.nn.conv2d``)."""
    jax, _ = _jax()
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _lstm_update(pre, c_prev):
    """``zoo.pixelrnn.lstm_update``: gates in the order i, f, o, g."""
    jax, jnp = _jax()
    i, f, o, g = jnp.split(pre, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _residual(p, x, h):
    return x + h @ p["out_kernel"] + p["out_bias"]


def _taps(x, left, right):
    """(B, ..., W, C) -> (B, ..., W, (left + 1 + right) C): each position with its neighbours
    j - left .. j + right along W (zeros outside), so a 1-D convolution is one matmul."""
    _, jnp = _jax()
    width = x.shape[-2]
    pad = [(0, 0)] * (x.ndim - 2) + [(left, right), (0, 0)]
    padded = jnp.pad(x, pad)
    return jnp.concatenate([padded[..., t:t + width, :] for t in range(left + 1 + right)], -1)


def _row_layer(p, x, unroll):
    """``RowLSTMLayer.call``: (B, H, W, 2u) -> (B, H, W, 2u); both convolutions as matmuls."""
    jax, jnp = _jax()
    k, units, gates = p["ss_kernel"].shape
    half = k // 2
    is_kernel = p["is_kernel"].reshape(-1, gates)  # (1, half + 1, C, 4u): taps j - half .. j
    ss_kernel = p["ss_kernel"].reshape(k * units, gates)  # taps j - half .. j + half
    pre = _taps(x, half, 0) @ is_kernel + p["bias"]
    pre = jnp.transpose(pre, (1, 0, 2, 3))  # (H, B, W, 4u)

    def row(state, pre_row):
        h_prev, c_prev = state
        h, c = _lstm_update(pre_row + _taps(h_prev, half, half) @ ss_kernel, c_prev)
        return (h, c), h

    zeros = jnp.zeros(x.shape[:1] + x.shape[2:3] + (units,), x.dtype)
    _, hs = jax.lax.scan(row, (zeros, zeros), pre, unroll=unroll)
    return _residual(p, x, jnp.transpose(hs, (1, 0, 2, 3)))


def _skew(x):
    """``zoo.pixelrnn.skew``: row i moved right by i, (B, H, W, C) -> (B, H, W + H - 1, C)."""
    _, jnp = _jax()
    b, h, w, c = x.shape
    flat = jnp.pad(x, ((0, 0), (0, 0), (0, h), (0, 0))).reshape(b, h * (w + h), c)
    return flat[:, :h * (w + h - 1)].reshape(b, h, w + h - 1, c)


def _unskew(x, width):
    """``zoo.pixelrnn.unskew``."""
    _, jnp = _jax()
    b, h, _, c = x.shape
    flat = jnp.pad(x.reshape(b, -1, c), ((0, 0), (0, h), (0, 0)))
    return flat.reshape(b, h, width + h, c)[:, :, :width]


def _diagonal_scan(pre, ss_kernel, unroll):
    """``DiagonalBiLSTMLayer.scan`` of one direction: (B, H, W, 4u) -> (B, H, W, u)."""
    jax, jnp = _jax()
    _, height, width, _ = pre.shape
    units = ss_kernel.shape[0] // 2
    columns = jnp.transpose(_skew(pre), (2, 0, 1, 3))  # (W + H - 1, B, H, 4u)
    rows, cols = np.arange(height)[None, :], np.arange(width + height - 1)[:, None]
    inside = jnp.asarray(((cols >= rows) & (cols - rows < width)).astype(np.float32))[:, None, :, None]

    def column(state, elems):
        h_prev, c_prev = state
        p, keep = elems
        up = jnp.pad(h_prev, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        h, c = _lstm_update(p + jnp.concatenate([up, h_prev], -1) @ ss_kernel, c_prev)
        return (h * keep, c * keep), h * keep

    zeros = jnp.zeros(columns.shape[1:3] + (units,), pre.dtype)
    _, hs = jax.lax.scan(column, (zeros, zeros), (columns, inside), unroll=unroll)
    return _unskew(jnp.transpose(hs, (1, 2, 0, 3)), width)


def _diagonal_layer(p, x, unroll):
    """``DiagonalBiLSTMLayer.call``: both directions in one scan (vmapped), backward shifted down."""
    jax, jnp = _jax()
    forward = x @ p["forward_is_kernel"] + p["forward_bias"]
    backward = x[:, :, ::-1] @ p["backward_is_kernel"] + p["backward_bias"]
    ss = jnp.stack([p["forward_ss_kernel"], p["backward_ss_kernel"]])
    both = jax.vmap(lambda pre, kernel: _diagonal_scan(pre, kernel, unroll))(
        jnp.stack([forward, backward]), ss)
    backward = jnp.pad(both[1][:, :, ::-1], ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]
    return _residual(p, x, both[0] + backward)


def logits(params, meta, x, unroll=1):
    """The model's Bernoulli logits for binary images x (B, H, W, 1) in {0, 1}."""
    jax, jnp = _jax()
    name = meta["name"]
    w = {k[len(name) + 1:]: v for k, v in params.items()}
    masks = meta["masks"]

    def masked(layer, h, padding):
        return _conv(h, w[f"{layer}/kernel"] * masks[layer], padding) + w[f"{layer}/bias"]

    h = masked("conv_a", 2.0 * x - 1.0, "SAME")
    layer_fn = _row_layer if meta["kind"] == "row" else _diagonal_layer
    for i in range(meta["num_blocks"]):
        prefix = f"lstm{i}/"
        h = layer_fn({k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)}, h, unroll)
    h = jax.nn.relu(masked("head1", jax.nn.relu(h), "VALID"))
    return masked("head2", h, "VALID")


def log_prob(params, meta, x, unroll=1):
    """Exact log p(x) in nats per image, (B,): independent Bernoulli pixels given their logits."""
    jax, jnp = _jax()
    z = logits(params, meta, x, unroll)
    return jnp.sum(x * z - jax.nn.softplus(z), axis=(1, 2, 3))


# ------------------------------------------------------------------ files
def read_npz(path):
    """(params, meta) of a packed model: weights keyed by Keras path, its description."""
    with np.load(path) as f:
        meta = json.loads(str(f[META]))
        params = {k: f[k] for k in f.files if k != META and not k.startswith("mask/")}
        meta["masks"] = {k[len("mask/"):]: f[k] for k in f.files if k.startswith("mask/")}
    return params, meta


def write_npz(path, params, meta):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    masks = {f"mask/{k}": v for k, v in meta.get("masks", {}).items()}
    plain = {k: v for k, v in meta.items() if k != "masks"}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in params.items()}, **masks,
             **{META: np.asarray(json.dumps(plain))})
    tmp.replace(path)


# ------------------------------------------------------------------ pack / unpack (TensorFlow side)
def pack(args):
    """Writes the Keras model's weights (after ``--init_from``) and, with --data, the data."""
    import keras

    from training import train
    from training.config import parse_overrides
    from zoo import autoregressive, registry

    overrides = parse_overrides(args.set or [])
    model = registry.build(args.preset, **overrides)
    kind = KINDS.get(type(model).__name__)
    if kind is None or model.likelihood != "bernoulli" or model.num_classes:
        raise SystemExit(f"error: {args.preset} is not an unconditional Bernoulli PixelRNN")
    keras.utils.set_random_seed(args.seed)
    model = registry.build(args.preset, **overrides)  # the seeded initial weights
    start = train.initialize_from(model, args.init_from, args.init_grow) if args.init_from else None
    masks = {layer.name: autoregressive.causal_mask(layer.kernel_size, layer.kernel.shape[2],
                                                    layer.filters, layer.mask_type)
             for layer in [model.first, *model.head]}
    meta = dict(preset=args.preset, name=model.name, kind=kind, num_blocks=model.num_blocks,
                overrides=overrides, init_from=start, masks=masks,
                pack_command="python -m training.pixelrnn_jax " + shlex.join(args.argv))
    write_npz(args.out, {v.path: v.numpy() for v in model.weights}, meta)
    print(f"wrote {args.out}: {model.count_params():,} parameters")
    if args.data:
        write_data(args.preset, args.data, args.data_dir)


def write_data(preset, path, data_dir=None):
    """The preset's training images (uint8) and binarized test set, as ``training.data`` makes them."""
    from training import data
    from zoo import registry

    dataset = registry.get_preset(preset).dataset
    train = np.concatenate([b.numpy() for b in data.load(
        dataset, "train", "uint8", 1000, shuffle=False, drop_remainder=False, data_dir=data_dir)])
    test = np.concatenate([b.numpy() for b in data.load(
        dataset, "test", "binary", 1000, data_dir=data_dir)])
    np.savez_compressed(path, train=train.astype(np.uint8), test=test.astype(np.uint8))
    print(f"wrote {path}: {len(train)} training images, {len(test)} binarized test images")


def unpack(args):
    """Loads trained weights into the zoo's Keras model and writes a run folder."""
    from zoo import registry

    src = pathlib.Path(args.run)
    params, meta = read_npz(src / "weights.npz")
    record = json.loads((src / "train_info.json").read_text())
    model = registry.build(meta["preset"], **meta["overrides"])
    missing = {v.path for v in model.weights} ^ set(params)
    if missing:
        raise SystemExit(f"error: weights and model differ in {sorted(missing)}")
    wrong = [f"{v.path}: model {tuple(v.shape)}, file {params[v.path].shape}" for v in model.weights
             if tuple(v.shape) != params[v.path].shape]
    if wrong:
        raise SystemExit(f"error: weights of the wrong shape: {wrong}")
    out = pathlib.Path(args.output_dir)
    if (out / "model.keras").exists():
        raise SystemExit(f"error: {out} already holds a model.keras; give another --output_dir")
    for v in model.weights:
        v.assign(params[v.path])
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    unpack_command = "python -m training.pixelrnn_jax " + shlex.join(args.argv)
    record.update(parameters=int(model.count_params()), trained_with=TRAINED_WITH,
                  command="; ".join([meta["pack_command"], record["train_command"], unpack_command]))
    if meta.get("init_from"):
        record["init_from"] = meta["init_from"]
    (out / "train_info.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'model.keras'} and its train_info.json")


# ------------------------------------------------------------------ training (JAX side)
def averaging_momentum(momentum, updates):
    """``zoo.steps.averaging_momentum``: 0, then min(M, (1 + n) / (10 + n))."""
    if updates == 0:
        return 0.0
    return min(momentum, (1.0 + updates) / (10.0 + updates))


def cosine_rate(peak, progress, final_fraction, warmup_fraction=0.0):
    """Keras's CosineDecay(peak, alpha=final_fraction) at ``progress`` in [0, 1], after a linear warm-up."""
    if progress < warmup_fraction:
        return peak * progress / warmup_fraction
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return peak * ((1.0 - final_fraction) * cosine + final_fraction)


def train_jax(args):
    import jax
    import jax.numpy as jnp
    import optax

    started = time.time()
    params, meta = read_npz(args.weights)
    masks = {k: jnp.asarray(v) for k, v in meta["masks"].items()}
    meta_j = dict(meta, masks=masks)
    with np.load(args.data) as f:
        train_images = jnp.asarray(f["train"].reshape(-1, 28, 28, 1))
        test = jnp.asarray(f["test"].reshape(-1, 28, 28, 1).astype(np.float32))
    params = {k: jnp.asarray(v) for k, v in params.items()}
    average = dict(params)
    optimizer = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-7)  # Keras Adam's epsilon
    opt_state = optimizer.init(params)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.txt", "a")

    def say(text):
        print(text, flush=True)
        log.write(text + "\n")
        log.flush()

    def loss_fn(p, x):
        return -jnp.mean(log_prob(p, meta_j, x, args.unroll))

    @jax.jit
    def step(p, state, avg, images, key, rate, momentum):
        x = (jax.random.uniform(key, images.shape) * 255.0 < images.astype(jnp.float32)).astype(jnp.float32)
        loss, grads = jax.value_and_grad(loss_fn)(p, x)
        updates, state = optimizer.update(grads, state, p)
        p = jax.tree_util.tree_map(lambda w, u: w - rate * u, p, updates)
        avg = jax.tree_util.tree_map(lambda a, w: momentum * a + (1.0 - momentum) * w, avg, p)
        return p, state, avg, loss

    @jax.jit
    def test_nll(p, x):
        return -jnp.sum(log_prob(p, meta_j, x, args.unroll))

    def validate(p):
        total = sum(float(test_nll(p, test[i:i + 500])) for i in range(0, len(test), 500))
        return total / len(test)

    n = len(train_images)
    steps_per_epoch = n // args.batch_size
    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed)
    history, updates = [], 0
    initial = validate(average)
    say(f"start: {sum(v.size for v in params.values()):,} parameters, test NLL {initial:.3f} "
        f"({time.time() - started:.1f} s)")
    # Compiled ahead, so that the schedule's clock starts with the first update.
    step = step.lower(params, opt_state, average, train_images[:args.batch_size], key,
                      jnp.float32(0), jnp.float32(0)).compile()
    train_start = time.time()
    deadline = started + args.seconds - args.reserve  # the last validation and save fit after it
    say(f"compiled ({train_start - started:.1f} s); training for {deadline - train_start:.0f} s")
    done = False
    while not done:
        order = rng.permutation(n)
        epoch_start, losses = time.time(), []
        for s in range(steps_per_epoch):
            now = time.time()
            progress = (now - train_start) / max(1e-9, deadline - train_start)
            if now >= deadline:
                done = True
                break
            rate = cosine_rate(args.learning_rate, progress, args.final_lr_fraction, args.warmup)
            momentum = averaging_momentum(args.ema_momentum, updates)
            key, sub = jax.random.split(key)
            batch = train_images[order[s * args.batch_size:(s + 1) * args.batch_size]]
            params, opt_state, average, loss = step(params, opt_state, average, batch, sub,
                                                    jnp.float32(rate), jnp.float32(momentum))
            updates += 1
            losses.append(loss)
            if updates % 50 == 0:
                value = float(loss)  # keeps the host within 50 steps of the device
                if not math.isfinite(value):
                    raise SystemExit(f"loss is {value} at update {updates}")
        if not losses:
            break
        mean_loss = float(jnp.mean(jnp.stack(losses)))
        fraction = len(losses) / steps_per_epoch
        val = validate(average)
        history.append(dict(loss=mean_loss, val_loss=val, epoch_fraction=round(fraction, 3),
                            seconds=round(time.time() - epoch_start, 1), learning_rate=rate))
        say(f"epoch {len(history)} ({fraction:.2f} of the data): loss {mean_loss:.3f}, test NLL "
            f"(averaged weights) {val:.3f}, lr {rate:.2e}, {time.time() - epoch_start:.1f} s")
        epochs = round(updates * args.batch_size / n, 2)  # passes over the data, the last maybe partial
        write_npz(out / "weights.npz", {k: np.asarray(v) for k, v in average.items()}, meta)
        record = dict(
            preset=meta["preset"],
            train_command="python3 training/pixelrnn_jax.py " + shlex.join(args.argv),
            config=dict(preset=meta["preset"], epochs=epochs, batch_size=args.batch_size,
                        learning_rate=args.learning_rate, final_lr_fraction=args.final_lr_fraction,
                        warmup_fraction=args.warmup, seed=args.seed, strategy="jax (one device)",
                        dtype_policy="float32", optimizer="adam", adam_beta_1=0.9, adam_beta_2=0.999,
                        model_overrides=sorted(meta["overrides"].items()),
                        init_from=(meta.get("init_from") or {}).get("path"),
                        ema_momentum=args.ema_momentum, ema_warmup=True,
                        wall_clock_budget_s=args.seconds),
            strategy="jax (one device)", replicas=1,
            hardware=f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
            versions=dict(jax=jax.__version__, optax=optax.__version__),
            epochs_done=epochs, updates=updates, examples_seen=updates * args.batch_size,
            wall_time_s=round(time.time() - started),
            initial_val_loss=initial,
            final_metrics=dict(loss=mean_loss, val_loss=val), history=history)
        (out / "train_info.json").write_text(json.dumps(record, indent=2))
    say(f"done: {updates} updates, {updates * args.batch_size / n:.2f} epochs of data, "
        f"{time.time() - started:.0f} s")


# ------------------------------------------------------------------ command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    a = sub.add_parser("pack", help="the Keras model's weights (and the data) to .npz files")
    a.add_argument("preset")
    a.add_argument("out", help="the .npz to write")
    a.add_argument("--set", action="append", metavar="KEY=JSON")
    a.add_argument("--init_from")
    a.add_argument("--init_grow", action="store_true")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--data", help="also write the training and binarized test images here")
    a.add_argument("--data_dir")
    t = sub.add_parser("train", help="train a packed model with JAX (no TensorFlow needed)")
    t.add_argument("weights")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--seconds", type=float, required=True, help="wall-clock budget, start to end")
    t.add_argument("--batch_size", type=int, default=256)
    t.add_argument("--learning_rate", type=float, default=1e-3)
    t.add_argument("--final_lr_fraction", type=float, default=0.05)
    t.add_argument("--warmup", type=float, default=0.02, help="fraction of the budget")
    t.add_argument("--reserve", type=float, default=20.0,
                   help="seconds of the budget kept for the last validation and save")
    t.add_argument("--ema_momentum", type=float, default=0.999)
    t.add_argument("--unroll", type=int, default=1, help="scan steps unrolled per loop iteration")
    t.add_argument("--seed", type=int, default=0)
    u = sub.add_parser("unpack", help="trained weights into the Keras model, as a run folder")
    u.add_argument("run", help="the folder `train` wrote")
    u.add_argument("--output_dir", required=True)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what the run records name
    try:
        {"pack": pack, "train": train_jax, "unpack": unpack}[args.verb](args)
    except (OSError, ValueError, KeyError) as err:  # missing files, another model, a bad --set
        raise SystemExit(f"error: {type(err).__name__}: {err}") from err


if __name__ == "__main__":
    main()
