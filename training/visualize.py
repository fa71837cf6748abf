"""Pictures of a zoo model, as PNG files.

    python -m training.visualize vae_mnist [--out docs/images/vae_mnist]
    python -m training.visualize runs/vae2d_mnist

Writes ``samples.png`` (x ~ p(x|z), z ~ p(z)), ``sample_means.png`` (E[x|z] for
the same z), ``reconstructions.png`` (test images in odd columns, the mean of
p(x|z) for z ~ q(z|x) beside them), ``interpolation.png`` (decoder means along
straight lines between the posterior means of test images) and, for a 2-D
latent, ``manifold.png`` (decoder means over a grid of Gaussian quantiles, as
in Kingma & Welling 2014, fig. 4). For autoregressive models: ``samples.png``
and ``completions.png`` (per row: a test image as the model sees it, its top
half with the bottom hidden (grey), then completions from three seeds). For
GANs: ``samples.png`` (a class per row for conditional ones) and
``interpolation.png`` (generated images along straight lines in z). For
translation models: ``translations.png`` (per row, test images: input, output,
ground truth; for CycleGAN also B, F(B), true A).
"""
import argparse
import pathlib
import sys

import numpy as np
import tensorflow as tf

from training import data
from zoo import registry, saving, text2image
from zoo.images import grid, save_png


def _seeds(n, first=0):
    return tf.stack([tf.fill([n], tf.constant(first, tf.int64)), tf.range(n, dtype=tf.int64)], 1)


def _ndtri(p):
    """Inverse standard-normal CDF."""
    return tf.math.ndtri(tf.constant(p, tf.float32)).numpy()


def autoregressive_pictures(model, preset, out, data_dir=None, scale=3, rows=8, seeds=3):
    """samples.png and completions.png of an autoregressive model; returns their paths."""
    out = pathlib.Path(out)
    cond = bool(model.num_classes)
    test = next(iter(data.load(preset.dataset, "test", "uint8", rows, labels=True,
                               data_dir=data_dir, take=rows)))
    lik = model.pixel_likelihood
    images = lik.to_uint8(lik.from_uint8(tf.cast(test["images"], tf.uint8))).numpy()
    sample = tf.function(model.serve_sample)
    complete = tf.function(model.serve_complete)
    sample_label = [tf.range(64, dtype=tf.int64) % model.num_classes] if cond else []
    drawn = sample(_seeds(64), *sample_label)["images"].numpy()
    written = [save_png(grid(drawn, 8), out / "samples.png", scale)]

    h = images.shape[1]
    mask = np.zeros_like(images)
    mask[:, : h // 2] = 1  # the top half is given
    shown = np.where(mask > 0, images, 128).astype(np.uint8)
    label = [tf.cast(test["labels"], tf.int64)] if cond else []
    columns = [images, shown]
    for s in range(seeds):
        columns.append(complete(images, mask, _seeds(rows, 100 + s), *label)["images"].numpy())
    table = np.stack(columns, axis=1).reshape(rows * len(columns), *images.shape[1:])
    written.append(save_png(grid(table, len(columns)), out / "completions.png", scale))
    return written


def adversarial_pictures(model, out, scale=3, steps=10):
    """samples.png (a class per row for conditional models) and interpolation.png
    (generated along straight lines between latents); returns their paths."""
    out = pathlib.Path(out)
    classes = model.num_classes
    label = model.conditions(tf.range(80 if classes else 64, dtype=tf.int64) // 8 % max(classes, 1))
    drawn = tf.function(model.serve_sample)(_seeds(80 if classes else 64), *label)
    written = [save_png(grid(drawn["images"].numpy(), 8), out / "samples.png", scale)]
    ends = tf.random.stateless_normal([16, model.latent_dim], seed=[0, 7]).numpy()
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    line = (ends[0::2, None] * (1 - t) + ends[1::2, None] * t).reshape(-1, model.latent_dim)
    line_label = model.conditions(tf.repeat(tf.range(8, dtype=tf.int64) % max(classes, 1), steps))
    images = model.serve_generate(tf.constant(line, tf.float32), *line_label)["images"].numpy()
    written.append(save_png(grid(images, steps), out / "interpolation.png", scale))
    return written


def caption_pictures(model, out, scale=3, seeds=3):
    """captions.png of a text-to-image model: a row per digit; for each of ``seeds`` seeds,
    the samples of "a thin <digit>", "a <digit>" and "a thick <digit>" side by side."""
    texts, seed_rows = [], []
    for digit in range(len(text2image.DIGITS)):
        for s in range(seeds):
            for style in (1, 0, 2):
                texts.append(text2image.caption(digit, style))
                seed_rows.append(s)
    seed = tf.stack([tf.zeros(len(texts), tf.int64), tf.constant(seed_rows, tf.int64)], axis=1)
    drawn = tf.function(model.serve_sample)(seed, tf.constant(texts))["images"].numpy()
    return [save_png(grid(drawn, 3 * seeds), pathlib.Path(out) / "captions.png", scale)]


def translation_pictures(model, preset, out, data_dir=None, scale=3, rows=16):
    """translations.png: per test image, input / output / ground truth (the input enlarged
    by repetition when it is smaller); CycleGAN rows go on with B / F(B) / true A."""
    batch = next(iter(data.load(preset.dataset, "test", "uint8", rows, data_dir=data_dir, take=rows,
                                task=preset.task)))
    a, b = tf.cast(batch["a"], tf.uint8), tf.cast(batch["b"], tf.uint8)
    shown = np.repeat(np.repeat(a.numpy(), b.shape[1] // a.shape[1], 1), b.shape[2] // a.shape[2], 2)
    columns = [shown, model.serve_translate(a)["images"].numpy(), b.numpy()]
    if "translate_back" in model.serving_endpoints():
        columns += [b.numpy(), model.serve_translate_back(b)["images"].numpy(), a.numpy()]
    table = np.stack(columns, axis=1).reshape(rows * len(columns), *b.shape[1:])
    return [save_png(grid(table, len(columns)), pathlib.Path(out) / "translations.png", scale)]


def make_pictures(model, preset, out, data_dir=None, scale=3):
    """Writes the PNGs for ``model`` into ``out``; returns their paths."""
    if preset.task:
        return translation_pictures(model, preset, out, data_dir, scale)
    if model.family == "autoregressive":
        return autoregressive_pictures(model, preset, out, data_dir, scale)
    if model.family == "adversarial":
        written = adversarial_pictures(model, out, scale)
        if isinstance(model, text2image.TextGAN):
            written += caption_pictures(model, out, scale)
        return written
    if model.family != "latent":
        raise ValueError(f"{model.name} is a {model.family}: it has no pictures to draw")


    out = pathlib.Path(out)
    written = []
    cond = bool(model.num_classes)
    test = next(iter(data.load(preset.dataset, "test", "uint8", 64, labels=True,
                               data_dir=data_dir, take=64)))
    images = tf.cast(test["images"], tf.uint8)
    labels = tf.cast(test["labels"], tf.int64)
    label = [labels] if cond else []
    if "sample" in model.serving_endpoints():
        sample_label = [tf.range(64, dtype=tf.int64) % model.num_classes] if cond else []
        drawn = model.serve_sample(_seeds(64), *sample_label)
        written.append(save_png(grid(drawn["images"].numpy(), 8), out / "samples.png", scale))
        written.append(save_png(grid(drawn["means"].numpy(), 8), out / "sample_means.png", scale))
    shown = model.pixel_likelihood.to_uint8(model.pixel_likelihood.from_uint8(images[:32]))
    rec = model.serve_reconstruct(images[:32], _seeds(32, 1), *[lb[:32] for lb in label])["means"]
    pairs = np.stack([shown.numpy(), rec.numpy()], axis=1).reshape(64, *shown.shape[1:])
    written.append(save_png(grid(pairs, 8), out / "reconstructions.png", scale))

    steps = 10
    ends = model.serve_encode(images[:16], *[lb[:16] for lb in label])["mean"].numpy()
    t = np.linspace(0.0, 1.0, steps)[None, :, None]
    line = ends[0::2, None] * (1 - t) + ends[1::2, None] * t  # (8, steps, D)
    line_label = [tf.repeat(labels[0:16:2], steps)] if cond else []
    decoded = model.serve_decode(tf.constant(line.reshape(-1, ends.shape[-1]), tf.float32),
                                 *line_label)["means"]
    written.append(save_png(grid(decoded.numpy(), steps), out / "interpolation.png", scale))

    if model.latent_dim == 2:
        n = 20
        q = _ndtri(np.linspace(0.03, 0.97, n))
        zz = np.stack(np.meshgrid(q, -q), -1).reshape(-1, 2)  # rows: z2 from high to low
        manifold = model.serve_decode(tf.constant(zz, tf.float32))["means"]
        written.append(save_png(grid(manifold.numpy(), n, pad=0), out / "manifold.png", 2))
    return written


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.visualize", description=__doc__.split("\n")[0])
    p.add_argument("target", help="a preset (its latest export) or a run folder / .keras file")
    p.add_argument("--out", help="default: docs/images/<model name>")
    p.add_argument("--version", type=int)
    p.add_argument("--data_dir")
    args = p.parse_args(argv)
    try:
        if args.target in registry.PRESETS:
            model = saving.load_trained(saving.version_path(args.target, args.version))
        else:
            model = saving.load_trained(args.target)
        preset = registry.get_preset(model.name)
        out = args.out or pathlib.Path("docs") / "images" / model.name
        for path in make_pictures(model, preset, out, args.data_dir):
            print(f"wrote {path}")
    except (FileNotFoundError, ValueError, KeyError, data.DataUnavailableError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
