"""Autoregressive sampling speed: each model's fast sampler against the naive one.

    python benchmarks/sampling.py [--models pixelcnn_mnist,row_lstm_mnist,diagonal_bilstm_mnist]
        [--batch_size 16] [--repeats 2]

Loads each model (the zoo's export, else the run folder runs/<model>, else
the preset's fresh weights: the cost of a draw does not depend on the weights),
compiles both samplers as tf.functions, checks that they draw the same images
from the same seeds, and prints images per second for each at the batch size.
The naive sampler re-runs the whole network for each of the H*W*C steps. The
fast ones: Gated PixelCNN caches the vertical stack (each block computes one
new row when an image row is done) and runs the horizontal stack on one row
per pixel; the Row LSTM carries each layer's state of the row above and runs
every layer on one row per pixel; the Diagonal BiLSTM computes one state per
layer per pixel and scans the right-to-left direction once per image row.
Target (issues 4 and 19): fast at least 10x naive at batch 16, for each.
"""
import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import zoo  # noqa: F401,E402  (sets TensorFlow's log level before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from training.callbacks import hardware  # noqa: E402
from zoo import registry, saving  # noqa: E402


def load_model(name):
    """(model, where it came from)."""
    if saving.versions(name):
        path = saving.version_path(name)
        return saving.load_keras(path), str(path)
    run = ROOT / "runs" / name
    if (run / "model.keras").exists():
        return saving.load_trained(run), str(run / "model.keras")
    return registry.build(name), "fresh weights (untrained)"


def timed(fn, seeds, repeats):
    """Best wall time over ``repeats`` calls, and the last output."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(seeds).numpy()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="pixelcnn_mnist,row_lstm_mnist,diagonal_bilstm_mnist")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2, help="timed calls per sampler (best kept)")
    args = p.parse_args(argv)

    spec = tf.TensorSpec([None, 2], tf.int64)
    seeds = tf.constant(np.stack([np.zeros(args.batch_size), np.arange(args.batch_size)], 1), tf.int64)
    print(f"# {hardware()}; TensorFlow {tf.__version__}; batch {args.batch_size}, "
          f"{args.repeats} timed calls per sampler, best kept", flush=True)
    print(f"{'model':<24}{'naive img/s':>12}{'fast img/s':>12}{'fast/naive':>12}  same images  weights")
    for name in args.models.split(","):
        model, source = load_model(name)
        samplers = {"naive": tf.function(model.sample_naive, input_signature=[spec]),
                    "fast": tf.function(model.sample, input_signature=[spec])}
        results = {}
        for kind, fn in samplers.items():
            fn(seeds[:1])  # trace and warm up
            results[kind] = timed(fn, seeds, args.repeats)
        same = np.array_equal(results["fast"][1], results["naive"][1])
        naive, fast = (args.batch_size / results[kind][0] for kind in ("naive", "fast"))
        print(f"{name:<24}{naive:>12.2f}{fast:>12.2f}{fast / naive:>11.1f}x  {str(same):<11}  "
              f"{type(model).__name__}, {source}", flush=True)
    print("\ntarget: fast >= 10x naive for each model")


if __name__ == "__main__":
    main()
