"""Autoregressive sampling speed: the fast sampler against the naive one.

    python benchmarks/sampling.py [--model pixelcnn_mnist] [--batch_size 16] [--repeats 2]

Loads the model (the zoo's export, else the run folder runs/<model>, else
the preset's fresh weights: the cost of a draw does not depend on the weights),
compiles both samplers as tf.functions, checks that they draw the same images
from the same seeds, and prints images per second for each at the batch size.
The naive sampler re-runs the whole network for each of the H*W*C steps; the
fast one caches the vertical stack (each block computes one new row when an
image row is done) and runs the horizontal stack on one row per pixel.
Target (issue 4): fast at least 10x naive at batch 16.
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
    p.add_argument("--model", default="pixelcnn_mnist")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2, help="timed calls per sampler (best kept)")
    args = p.parse_args(argv)

    model, source = load_model(args.model)
    spec = tf.TensorSpec([None, 2], tf.int64)
    samplers = {"naive": tf.function(model.sample_naive, input_signature=[spec]),
                "fast": tf.function(model.sample, input_signature=[spec])}
    seeds = tf.constant(np.stack([np.zeros(args.batch_size), np.arange(args.batch_size)], 1), tf.int64)
    print(f"# {hardware()}; TensorFlow {tf.__version__}; {args.model} ({type(model).__name__}, "
          f"{source}); batch {args.batch_size}, {args.repeats} timed calls each, best kept")
    results = {}
    for name, fn in samplers.items():
        fn(seeds[:1])  # trace and warm up
        seconds, images = timed(fn, seeds, args.repeats)
        results[name] = (seconds, images)
        print(f"{name:<6} {seconds:8.2f} s per batch  {args.batch_size / seconds:8.2f} images/s", flush=True)
    same = np.array_equal(results["fast"][1], results["naive"][1])
    speedup = results["naive"][0] / results["fast"][0]
    print(f"\nfast / naive: {speedup:.1f}x (target >= 10x); identical images from the same seeds: {same}")


if __name__ == "__main__":
    main()
