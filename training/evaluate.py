"""Evaluates a zoo model on its test set and writes its model card.

    python -m training.evaluate vae_mnist            # latest export in exported/
    python -m training.evaluate runs/vae_mnist       # a training run folder
        [--k 1000] [--version N] [--data_dir DIR] [--card PATH]

Latent models report the test ELBO (one posterior sample per image), the IWAE
bound on log p(x) with k importance samples and bits per dimension;
autoregressive models report their exact test NLL and bits per dimension;
translation models their outputs against the true images, beside baselines
(``training.translation_metrics``).
Every model that samples also gets sample-quality figures (FID, KID,
precision/recall, mode coverage) on the features of the dataset's zoo
classifier (``exported/classifier_<dataset>``), beside the real-data floor
(training images against the same test images); ``--samples 0`` skips them. For a
preset the card goes to ``exported/<preset>/MODEL_CARD.md`` and the figures to
``exported/<preset>/metrics.json``; for a run folder, into that folder.
"""
import argparse
import json
import math
import pathlib
import shlex
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from training import caption_metrics, data, quality, translation_metrics
from training.model_card import model_card
from zoo import adversarial, likelihoods, registry, saving, text2image

ROOT = pathlib.Path(__file__).resolve().parent.parent
ABLATION_REFERENCE = "dcgan_mnist"  # the GAN whose ablation the other GANs' cards show


def iwae_nll(model, dataset, k, chunk_size=100, seed=0):
    """Mean and standard error over images of -log p(x) (IWAE bound, k samples)."""
    @tf.function
    def batch_log_prob(batch):
        x, labels = model.unpack(batch)
        return model.iwae_log_prob(x, labels, num_samples=k, chunk_size=chunk_size,
                                   seed=tf.constant([seed, 0], tf.int64))

    values = np.concatenate([batch_log_prob(b).numpy() for b in dataset])
    nll = -values
    return float(nll.mean()), float(nll.std(ddof=1) / math.sqrt(len(nll))), len(nll)


def exact_nll(model, dataset):
    """Mean and standard error over images of the exact -log p(x) of an autoregressive model."""
    batch_log_prob = tf.function(model.log_prob)
    nll = -np.concatenate([batch_log_prob(b).numpy() for b in dataset])
    return float(nll.mean()), float(nll.std(ddof=1) / math.sqrt(len(nll))), len(nll)


def real_images(dataset, form, split, count, data_dir):
    """uint8 images of ``split`` in pixel ``form`` (binarized models emit 0/255)."""
    batches = data.load(dataset, split, form, 1000, labels=False, shuffle=False,
                        data_dir=data_dir, take=count, drop_remainder=False)
    return quality.as_uint8(np.concatenate([b.numpy() for b in batches]), form)


def sample_quality(model, preset, samples, data_dir=None, seed=0, classifier_version=None,
                   output="images", form=None):
    """Sample-quality figures of ``model`` and the real-data floor, or None without a classifier.

    ``output`` names the ``sample`` output to score ("means" scores a VAE's
    decoder means); the test and training images come in pixel ``form``
    (default: the preset's, so binarized models meet binarized data)."""
    name = f"classifier_{preset.dataset}"
    if not saving.versions(name):
        return None
    classifier_name, classifier = quality.zoo_classifier(preset.dataset, classifier_version)
    form = form or preset.form
    test = real_images(preset.dataset, form, "test", None, data_dir)
    train = real_images(preset.dataset, form, "train", samples, data_dir)
    drawn = quality.sample_images(model, samples, seed=seed, num_classes=model.num_classes,
                                  output=output)
    test_f, _ = quality.embed(classifier, test)
    train_f, train_p = quality.embed(classifier, train)
    drawn_f, drawn_p = quality.embed(classifier, drawn)
    result = {"classifier": classifier_name, "samples": samples,
              "model": quality.compare(test_f, drawn_f, drawn_p),
              "floor": quality.compare(test_f, train_f, train_p)}
    if model.num_classes:  # sample_images asks for the labels 0, 1, ... in turn
        result["label_agreement"] = quality.label_agreement(
            drawn_p, np.arange(samples) % model.num_classes)
    return result


def evaluate(model, preset, k=1000, batch_size=100, data_dir=None, seed=0, take=None, samples=0,
             caption_seeds=1000):
    """Returns a dict of figures for ``model`` on the test split of its preset."""
    keras.utils.set_random_seed(seed)
    test = data.load(preset.dataset, "test", preset.form, batch_size,
                     labels=preset.labels, data_dir=data_dir, take=take, task=preset.task)
    results = {"test_images": take or data.num_examples(preset.dataset, "test", data_dir)}
    start = time.time()
    if not model.compiled:
        model.compile()
    logs = model.evaluate(test, verbose=0, return_dict=True)
    results.update({f"test_{name}": float(v) for name, v in logs.items()})
    if model.density == "bound" and k:
        nll, stderr, _ = iwae_nll(model, test, k, seed=seed)
        results.update(
            iwae_k=k,
            test_nll_iwae=nll,
            test_nll_iwae_stderr=stderr,
            test_bits_per_dim=likelihoods.bits_per_dim(nll, model.image_shape),
            test_elbo=-results["test_neg_elbo"],
        )
    elif model.density == "exact":
        nll, stderr, _ = exact_nll(model, test)
        results.update(test_nll=nll, test_nll_stderr=stderr,
                       test_bits_per_dim=likelihoods.bits_per_dim(nll, model.image_shape))
    if preset.task:
        results["translation"] = translation_metrics.translation_figures(model, preset, data_dir, take)
    if isinstance(model, text2image.TextGAN) and caption_seeds:
        results["captions"] = caption_metrics.caption_figures(model, preset, data_dir, caption_seeds,
                                                              take)
    if samples and "sample" in model.serving_endpoints():
        quality = sample_quality(model, preset, samples, data_dir, seed)
        if quality is not None:
            results["sample_quality"] = quality
    results["eval_wall_time_s"] = round(time.time() - start, 1)
    return results


PICTURES = [("samples.png", "samples"),
            ("sample_means.png", "their means E[x|z]"),
            ("reconstructions.png", "test images (odd columns) and reconstructions"),
            ("interpolation.png", "images along straight lines in the latent space"),
            ("manifold.png", "the 2-d latent space over Gaussian quantiles"),
            ("completions.png", "occluded test images (bottom half hidden) and "
             "completions sampled from the model"),
            ("captions.png", "a row per digit; for each of three seeds: a thin, a plain and a "
             "thick sample of it"),
            ("translations.png", "test images: input, output, ground truth (CycleGAN: then B, "
             "F(B), true A)")]


def ablation_record(model, name):
    """``training.ablation``'s record for a GAN's card: its own preset's, else the reference
    GAN's (``docs/ablation_<preset>.json``); None for other models or before it is measured."""
    if not isinstance(model, adversarial.GAN):
        return None
    for preset in (name, ABLATION_REFERENCE):
        path = ROOT / "docs" / f"ablation_{preset}.json"
        if path.exists():
            return json.loads(path.read_text())
    return None


def describe(model, preset, name, version=None):
    """What the model card says of ``model`` (``training.model_card.DESCRIPTION_KEYS``)."""
    cls = type(model)
    pictures = pathlib.Path("docs") / "images" / name
    return dict(
        name=name, version=version, summary=preset.description, dataset=preset.dataset,
        form=preset.form, binarization_seed=data.TEST_BINARIZATION_SEED,
        architecture=(f"`{cls.__module__}.{cls.__name__}` with {model.count_params():,} "
                      f"parameters: " + model.describe()),
        config=saving.architecture(model)[1], pixels=math.prod(model.image_shape),
        objective=getattr(model, "objective", None),
        signatures=list(model.serving_endpoints()), serving_note=model.serving_note,
        pictures=[(f"../../{pictures / png}", caption) for png, caption in PICTURES
                  if (ROOT / pictures / png).exists()],
        ablation=ablation_record(model, name),
    )


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("target", help="a preset (its latest export) or a run folder / .keras file")
    p.add_argument("--k", type=int, default=1000, help="importance samples of the IWAE bound")
    p.add_argument("--version", type=int)
    p.add_argument("--batch_size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--take", type=int, help="evaluate on the first N test images only")
    p.add_argument("--samples", type=int, default=10000,
                   help="samples for FID/KID/precision/recall/mode coverage (0: skip)")
    p.add_argument("--caption_seeds", type=int, default=1000,
                   help="text-to-image models: samples per caption (0: skip)")
    p.add_argument("--data_dir")
    p.add_argument("--card", help="where to write the model card")
    p.add_argument("--rerender", action="store_true",
                   help="only rewrite the card from the metrics.json beside it (no evaluation)")
    args = p.parse_args(argv)

    version = None
    try:
        if args.target in registry.PRESETS:
            source = saving.version_path(args.target, args.version)
            version = int(source.name)
            out_dir = source.parent
        else:
            source = pathlib.Path(args.target)
            out_dir = source if source.is_dir() else source.parent
        model = saving.load_trained(source)
        name = model.name
        preset = registry.get_preset(name)
        card_path = pathlib.Path(args.card) if args.card else out_dir / "MODEL_CARD.md"
        if args.rerender:
            results = json.loads((card_path.parent / "metrics.json").read_text())
            if results.get("version") != version:
                raise ValueError(f"{card_path.parent / 'metrics.json'} is for version "
                                 f"{results.get('version')}, not {version}")
        else:
            results = evaluate(model, preset, args.k, args.batch_size, args.data_dir, args.seed,
                               args.take, args.samples, args.caption_seeds)
    except (FileNotFoundError, ValueError, KeyError, data.DataUnavailableError) as err:
        sys.exit(f"error: {err}")
    if not args.rerender:
        command = "python -m training.evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
        results.update(model=name, version=version, command=command)
        print(json.dumps(results, indent=2))
    card = model_card(results, saving.train_info(source), describe(model, preset, name, version))
    card_path.parent.mkdir(parents=True, exist_ok=True)
    card_path.write_text(card)
    (card_path.parent / "metrics.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {card_path}")


if __name__ == "__main__":
    main()
