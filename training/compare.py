"""The families side by side: sample quality of every exported model that samples.

    python -m training.compare [--samples 10000] [--out docs/results.md]

For each model in exported/ with a ``sample`` endpoint whose dataset has a zoo
classifier: FID, KID, precision, recall and mode coverage of ``--samples``
images (seeds (0, i)) against the test set on the classifier's features
(``training.evaluate.sample_quality``), beside the real-data floor of the same
pixel form, and the samples' sharpness: their gradient energy
(``training.quality.sharpness``, over ``--sharpness_samples`` images) as a
multiple of the test images' in the same pixel form, the lecture's "VAE
samples are blurrier" put as a number. A model whose card (metrics.json
beside it, written by ``python -m training.evaluate``) already holds these
figures for the same sample count and classifier is taken from there, since
drawing 10,000 images
from an autoregressive model takes a while; ``--recompute`` measures every row
afresh. Each row says which command measured it. Prints a Markdown table and
writes it to ``--out``.
"""
import argparse
import json
import pathlib
import shlex
import sys
import time

from training import evaluate
from training import quality as metrics
from zoo import registry, saving


def _pixels(form):
    return "binarized" if form == "binary" else "8-bit"


def table(rows, floor_sharpness):
    """Markdown lines for [(model, family, dataset, pixels, quality, sharpness)], sharpness
    relative to the test images; ``floor_sharpness`` maps (dataset, pixels) to the
    training images' relative sharpness."""
    lines = ["| model | family | pixels | FID | KID | precision | recall | "
             "KL(classes ‖ uniform) | smallest class | sharpness (test = 1) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cells(m, sharp):
        return (f"{m['fid']:.3f} | {m['kid']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                f"{m['mode_coverage']['kl_to_uniform']:.4f} | "
                f"{m['mode_coverage']['min_class_share']:.3f} | {sharp:.2f} |")

    floors = {}
    for name, family, dataset, pixels, q, sharp in rows:
        lines.append(f"| {name} | {family} | {pixels} | " + cells(q["model"], sharp))
        floors.setdefault((dataset, pixels), q["floor"])  # the first row's measurement
    for (dataset, pixels), f in sorted(floors.items()):
        lines.append(f"| real-data floor: {dataset} train vs test | - | {pixels} | "
                     + cells(f, floor_sharpness[(dataset, pixels)]))
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--models", help="comma-separated presets (default: every exported one that samples)")
    p.add_argument("--data_dir")
    p.add_argument("--out", default="docs/results.md")
    p.add_argument("--sharpness_samples", type=int, default=1000,
                   help="images per row for the sharpness column (drawn with the same seeds)")
    p.add_argument("--recompute", action="store_true",
                   help="measure every model here instead of reusing its card's figures")
    args = p.parse_args(argv)
    references = {}

    def relative_sharpness(images, dataset, form):
        """sharpness of ``images`` over the test set's; also notes the training images' figure."""
        key = (dataset, _pixels(form))
        if key not in references:
            test = metrics.sharpness(evaluate.real_images(dataset, form, "test", None, args.data_dir))
            train = evaluate.real_images(dataset, form, "train", args.sharpness_samples, args.data_dir)
            references[key] = (test, metrics.sharpness(train) / test)
        return metrics.sharpness(images) / references[key][0]

    names = args.models.split(",") if args.models else [
        n for n in registry.list_models() if saving.versions(n)]
    rows, measured, start = [], [], time.time()
    for name in names:
        preset = registry.get_preset(name)
        model = saving.load_trained(saving.version_path(name))
        if "sample" not in model.serving_endpoints():
            continue
        family = model.family
        label = f"{name} (v{saving.versions(name)[-1]})"
        quality = None if args.recompute else carded(name, args.samples)
        source = "its model card" if quality is not None else "this command"
        if quality is None:
            quality = evaluate.sample_quality(model, preset, args.samples, args.data_dir)
        if quality is None:
            print(f"skipped {name}: no exported classifier_{preset.dataset}", file=sys.stderr)
            continue
        drawn = metrics.sample_images(model, args.sharpness_samples, num_classes=model.num_classes)
        rows.append((label, family, preset.dataset, _pixels(preset.form), quality,
                     relative_sharpness(drawn, preset.dataset, preset.form)))
        measured.append(f"- {label}: " + (f"`{quality['command']}` ({source})"
                                          if "command" in quality else source))
        if model.family == "latent":  # the decoder means, 8-bit
            means = evaluate.sample_quality(model, preset, args.samples, args.data_dir,
                                            output="means", form="uint8")
            drawn = metrics.sample_images(model, args.sharpness_samples, output="means")
            rows.append((f"{label}, decoder means E[x\\|z]", family, preset.dataset, "8-bit", means,
                         relative_sharpness(drawn, preset.dataset, "uint8")))
            measured.append(f"- {label}, decoder means: this command")
        print(f"{name}: FID {quality['model']['fid']:.3f} ({source})", file=sys.stderr, flush=True)
    command = shlex.join(["python", "-m", "training.compare", *(sys.argv[1:] if argv is None else argv)])
    lines = ["# Sample quality across the families", "",
             f"Made by `{command}` in {time.time() - start:.0f} s: {args.samples} samples per "
             "model against the 10,000 test images, on the features of the dataset's zoo "
             "classifier. Binarized models are compared with the binarized test set (their floor "
             "is binarized too); a VAE's decoder means are grey-level images, so they meet the "
             "8-bit test set, like the GANs' samples. A floor row is the first model's measurement of "
             "that data set and pixel form (binarized training images are drawn afresh each time, "
             "so binarized floors differ by about 0.1 FID between measurements). Sharpness is the mean "
             f"squared Sobel gradient of the first {args.sharpness_samples} samples over that of the "
             "test images in the same pixel form: below 1 is blurrier than the data.", ""] + table(
                 rows, {k: v[1] for k, v in references.items()}) + ["", "Measured by:", ""] + measured + [""]
    text = "\n".join(lines)
    print(text)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def carded(name, samples):
    """The sample-quality figures on ``name``'s card, if measured with ``samples`` samples
    and the currently exported classifier; else None."""
    folder = saving.version_path(name)
    path = folder.parent / "metrics.json"
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    if results.get("version") != int(folder.name):
        return None
    quality = results.get("sample_quality")
    preset = registry.get_preset(name)
    classifier = f"classifier_{preset.dataset}"
    if (not quality or quality.get("samples") != samples or not saving.versions(classifier)
            or quality.get("classifier") != f"{classifier}/{saving.versions(classifier)[-1]}"):
        return None
    return {**quality, "command": results.get("command", f"python -m training.evaluate {name}")}


if __name__ == "__main__":
    main()
