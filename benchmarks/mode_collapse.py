"""Mode collapse, shown: GANs on the ring of 8 Gaussians in 2-D.

    python benchmarks/mode_collapse.py [--steps 5000] [--seeds 0,1,2] [--out docs/images/mode_collapse.png]

The data: 8 Gaussians with standard deviation 0.02 at radius 2 (Metz et al.
2017, "Unrolled Generative Adversarial Networks", sec. 3.1). Three GANs with
the same MLP networks (zoo.adversarial.GAN, architecture "mlp") train with
model.fit: the minimax generator loss, the non-saturating one, and the
non-saturating one with minibatch discrimination in the discriminator. For
2,500 samples each, a sample is high quality when it lies within 3 standard
deviations of a mode, and a mode is covered when at least 50 samples are high
quality at it (the criterion of Srivastava et al. 2017, "VEEGAN", sec. 5.1).
Prints, per variant and seed, the modes covered and the share of high-quality
samples, and writes a PNG of the samples (one panel per variant, first seed;
grey crosses mark the modes).
"""
import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import zoo  # noqa: F401,E402  (sets TensorFlow's log level before TensorFlow loads)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from training.callbacks import hardware  # noqa: E402
from zoo import adversarial  # noqa: E402
from zoo.images import save_png  # noqa: E402

MODES = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
STD = 0.02
VARIANTS = {
    "minimax": dict(loss="minimax"),
    "non_saturating": dict(loss="non_saturating"),
    "non_saturating + minibatch discrimination": dict(loss="non_saturating", minibatch="discrimination"),
}


def ring(n, seed):
    rng = np.random.default_rng(seed)
    return (MODES[rng.integers(0, 8, n)] + rng.normal(0, STD, (n, 2))).astype(np.float32)


def score(samples, per_mode=50):
    """(modes covered, share of high-quality samples)."""
    d = np.linalg.norm(samples[:, None, :] - MODES[None], axis=-1)  # (N, 8)
    nearest, close = d.argmin(1), d.min(1) <= 3 * STD
    counts = np.bincount(nearest[close], minlength=8)
    return int(np.sum(counts >= per_mode)), float(close.mean())


def train(variant, seed, steps, batch_size):
    keras.utils.set_random_seed(seed)
    model = adversarial.GAN(image_shape=(2,), latent_dim=64, filters=128, architecture="mlp",
                            seed=seed, **VARIANTS[variant])
    model.compile(d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
                  g_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5))
    data = tf.data.Dataset.from_tensor_slices(ring(steps * batch_size, seed)).batch(batch_size)
    model.fit(data, epochs=1, verbose=0, shuffle=False)
    z = tf.random.stateless_normal((2500, 64), seed=[seed, 1])
    return model.generate(z).numpy()


def panel(samples, size=160, extent=3.0):
    """A white-on-black scatter of ``samples`` with the modes marked in grey."""
    image = np.zeros((size, size), np.uint8)

    def pixel(points):
        ij = np.round((points + extent) / (2 * extent) * (size - 1)).astype(int)
        keep = np.all((ij >= 0) & (ij < size), axis=1)
        return ij[keep]

    for x, y in pixel(MODES):
        for dx in range(-4, 5):
            for px, py in ((x + dx, y), (x, y + dx)):
                if 0 <= px < size and 0 <= py < size:
                    image[size - 1 - py, px] = 110
    for x, y in pixel(samples):
        image[size - 1 - y, x] = 255
    return image


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5000, help="training steps (batches) per run")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--out", default=str(ROOT / "docs" / "images" / "mode_collapse.png"))
    args = p.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}; valid: {list(VARIANTS)}")
    print(f"# {hardware()}; TensorFlow {tf.__version__}; ring of 8 Gaussians (std {STD}, radius 2); "
          f"{args.steps} steps of batch {args.batch_size}; 2500 samples per run")
    print(f"{'variant':<44} {'seed':>4} {'modes covered':>14} {'high quality':>13}")
    panels, summary = [], {}
    for variant in variants:
        runs = []
        for seed in seeds:
            samples = train(variant, seed, args.steps, args.batch_size)
            modes, quality = score(samples)
            runs.append((modes, quality))
            print(f"{variant:<44} {seed:>4} {modes:>12}/8 {100 * quality:>12.1f}%", flush=True)
            if seed == seeds[0]:
                panels.append(panel(samples))
        summary[variant] = np.mean(runs, axis=0)
    print()
    for variant, (modes, quality) in summary.items():
        print(f"{variant:<44} mean {modes:.1f}/8 modes, {100 * quality:.1f}% high quality")
    gap = np.full((panels[0].shape[0], 6), 60, np.uint8)
    strip = np.concatenate(sum(([p, gap] for p in panels), [])[:-1], axis=1)
    print(f"\nwrote {save_png(strip[..., None], args.out, scale=2)} "
          f"(panels: {', '.join(variants)}; seed {seeds[0]})")


if __name__ == "__main__":
    main()
