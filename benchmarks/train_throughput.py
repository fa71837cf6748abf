"""Training throughput (images per second) per preset: float32, XLA, mixed bfloat16.

    python benchmarks/train_throughput.py [--presets vae_mnist,ae_mnist] [--steps 100]
        [--modes float32,xla,mixed_bfloat16] [--set KEY=JSON ...]

Each model trains ``--steps`` steps of ``--batch_size`` on synthetic images of
its form through ``model.fit``; the first epoch (tracing, compilation) is not
timed, the second is. Prints one row per preset: images/s in each mode and its
speed-up over float32 without XLA (the first mode). ``mixed_bfloat16`` is the
training command's ``--dtype_policy mixed_bfloat16``: worth it on CPUs with
AVX512-BF16 or AMX, on TPUs and on recent GPUs. ``--set`` replaces model
arguments as the training command's ``--set`` does (e.g. ``--set num_blocks=12``),
to size a model before training it.
"""
import argparse
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import zoo  # noqa: F401,E402  (sets TensorFlow's log level before TensorFlow loads)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from training.callbacks import hardware  # noqa: E402
from training.config import parse_overrides  # noqa: E402
from zoo import registry  # noqa: E402


def measure(name, mode, steps, batch_size, overrides=None):
    """Images per second of ``name`` trained in ``mode`` (float32, xla or a dtype policy)."""
    preset = registry.get_preset(name)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("float32" if mode in ("float32", "xla") else mode)
    try:
        model = registry.build(name, **(overrides or {}))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=mode == "xla")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch_size * 4, 28, 28, 1)).astype("float32")
    if preset.form == "binary":
        x = (x >= 128).astype("float32")
    data = {"images": x, "labels": np.arange(len(x)) % 10} if preset.labels else x
    if preset.task:  # translation: a batch of each domain, in [-1, 1]
        h, w, c = getattr(model, "source_shape", model.image_shape)
        data = {"a": x[:, :h, :w, :c] / 127.5 - 1.0, "b": x / 127.5 - 1.0}
    ds = tf.data.Dataset.from_tensor_slices(data).batch(batch_size, drop_remainder=True).repeat()

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    model.fit(ds.prefetch(2), epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[timer],
              shuffle=False)
    return steps * batch_size / timer.seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default=",".join(registry.list_models()))
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--modes", default="float32,xla,mixed_bfloat16",
                   help="comma-separated: float32, xla, mixed_bfloat16, mixed_float16")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="replace a model argument of every preset (repeatable)")
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    overrides = parse_overrides(args.set)
    print(f"# {hardware()}; TensorFlow {tf.__version__}; batch {args.batch_size}, {args.steps} timed steps"
          + "".join(f"; {key}={value}" for key, value in overrides.items()))
    print(f"{'preset':<24}" + "".join(f"{mode + ' img/s':>22}" for mode in modes))
    for name in args.presets.split(","):
        rates = [measure(name, mode, args.steps, args.batch_size, overrides) for mode in modes]
        cells = [f"{rate:.0f}" + (f" ({rate / rates[0]:.2f}x)" if i else "") for i, rate in enumerate(rates)]
        print(f"{name:<24}" + "".join(f"{cell:>22}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
