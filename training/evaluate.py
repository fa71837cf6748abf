"""Evaluates a zoo model on its test set and writes its model card.

    python -m training.evaluate vae_mnist            # latest export in exported/
    python -m training.evaluate runs/vae_mnist       # a training run folder
        [--k 1000] [--version N] [--data_dir DIR] [--card PATH]

Latent models report the test ELBO (one posterior sample per image), the IWAE
bound on log p(x) with k importance samples and bits per dimension;
autoregressive models report their exact test NLL and bits per dimension.
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
import os
import pathlib
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def iwae_nll(model, dataset, k, chunk_size=100, seed=0):
    """Mean and standard error over images of -log p(x) (IWAE bound, k samples)."""
    import numpy as np
    import tensorflow as tf

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
    import numpy as np
    import tensorflow as tf

    batch_log_prob = tf.function(model.log_prob)
    nll = -np.concatenate([batch_log_prob(b).numpy() for b in dataset])
    return float(nll.mean()), float(nll.std(ddof=1) / math.sqrt(len(nll))), len(nll)


def real_images(dataset, form, split, count, data_dir):
    """uint8 images of ``split`` in pixel ``form`` (binarized models emit 0/255)."""
    import numpy as np

    from training import data, quality

    batches = data.load(dataset, split, form, 1000, labels=False, shuffle=False,
                        data_dir=data_dir, take=count, drop_remainder=False)
    return quality.as_uint8(np.concatenate([b.numpy() for b in batches]), form)


def sample_quality(model, preset, samples, data_dir=None, seed=0, classifier_version=None,
                   output="images", form=None):
    """Sample-quality figures of ``model`` and the real-data floor, or None without a classifier.

    ``output`` names the ``sample`` output to score ("means" scores a VAE's
    decoder means); the test and training images come in pixel ``form``
    (default: the preset's, so binarized models meet binarized data)."""
    from training import quality
    from zoo import registry

    name = f"classifier_{preset.dataset}"
    if not registry.versions(name):
        return None
    folder = registry.version_path(name, classifier_version)
    classifier = registry.load_keras(folder)
    form = form or preset.form
    test = real_images(preset.dataset, form, "test", None, data_dir)
    train = real_images(preset.dataset, form, "train", samples, data_dir)
    drawn = quality.sample_images(model, samples, seed=seed,
                                  num_classes=getattr(model, "num_classes", 0), output=output)
    test_f, _ = quality.embed(classifier, test)
    train_f, train_p = quality.embed(classifier, train)
    drawn_f, drawn_p = quality.embed(classifier, drawn)
    return {"classifier": f"{name}/{folder.name}", "samples": samples,
            "model": quality.compare(test_f, drawn_f, drawn_p),
            "floor": quality.compare(test_f, train_f, train_p)}


def evaluate(model, preset, k=1000, batch_size=100, data_dir=None, seed=0, take=None, samples=0):
    """Returns a dict of figures for ``model`` on the test split of its preset."""
    import keras

    from training import data

    keras.utils.set_random_seed(seed)
    test = data.load(preset.dataset, "test", preset.form, batch_size,
                     labels=preset.labels, data_dir=data_dir, take=take)
    results = {"test_images": take or data.num_examples(preset.dataset, "test", data_dir)}
    start = time.time()
    if not model.compiled:
        model.compile()
    logs = model.evaluate(test, verbose=0, return_dict=True)
    results.update({f"test_{name}": float(v) for name, v in logs.items()})
    if hasattr(model, "iwae_log_prob") and k:
        nll, stderr, count = iwae_nll(model, test, k, seed=seed)
        dims = math.prod(model.image_shape)
        results.update(
            iwae_k=k,
            test_nll_iwae=nll,
            test_nll_iwae_stderr=stderr,
            test_bits_per_dim=nll / (dims * math.log(2.0)),
            test_elbo=-results["test_neg_elbo"],
        )
    elif hasattr(model, "sample_naive"):
        nll, stderr, _ = exact_nll(model, test)
        dims = math.prod(model.image_shape)
        results.update(test_nll=nll, test_nll_stderr=stderr,
                       test_bits_per_dim=nll / (dims * math.log(2.0)))
    if samples and hasattr(model, "serve_sample"):
        quality = sample_quality(model, preset, samples, data_dir, seed)
        if quality is not None:
            results["sample_quality"] = quality
    results["eval_wall_time_s"] = round(time.time() - start, 1)
    return results


def _architecture(model):
    """One paragraph naming the model's parts."""
    head = f"`{type(model).__module__}.{type(model).__name__}` with {model.count_params():,} parameters: "
    if hasattr(model, "hidden_units"):
        return (head + f"MLP encoder {list(model.hidden_units)} -> "
                + ("a deterministic " if not hasattr(model, "prior") else "diagonal Gaussian q(z|x) over a ")
                + f"{model.latent_dim}-d code; MLP decoder {list(reversed(model.hidden_units))} "
                f"-> {model.likelihood} pixels" + ("; prior N(0, I)." if hasattr(model, "prior") else "."))
    if hasattr(model, "feature_dim"):
        return (head + f"two blocks of two 3x3 convolutions ({model.filters}, {2 * model.filters} "
                f"channels, ReLU), max-pooling and dropout {model.dropout}; a {model.feature_dim}-d "
                f"ReLU feature layer (the sample metrics' embedding); softmax over "
                f"{model.num_classes} classes.")
    if hasattr(model, "discriminator"):
        return (head + f"{type(model).__name__} with DCGAN networks ({model.filters} base channels, "
                f"{model.latent_dim}-d z ~ N(0, I)); loss {model.loss_kind}, {model.d_steps} "
                f"discriminator step(s) per generator step; minibatch features: {model.minibatch}.")
    if hasattr(model, "gated"):
        k = model.first_kernel_size
        return (head + f"a {k}x{k} gated block with mask A, then {model.num_blocks} gated blocks "
                f"({model.kernel_size}x{model.kernel_size}, {model.filters} channels per stack: "
                "vertical and horizontal stacks, tanh x sigmoid gates, residual and skip "
                f"connections), ReLU and two 1x1 convolutions on the summed skips -> "
                f"{model.likelihood} pixels. Sampling: the fast row-wise sampler "
                "(`GatedPixelCNN.sample`), which draws the same images as the naive one.")
    return (head + f"a {model.first_kernel_size}x{model.first_kernel_size} mask-A convolution, "
            f"{model.num_blocks} residual blocks of mask-B convolutions ({model.filters} channels), "
            f"two 1x1 mask-B layers -> {model.likelihood} pixels; naive sampling.")


def _optimizer_text(config):
    betas = (config.get("adam_beta_1", 0.9), config.get("adam_beta_2", 0.999))
    text = f"Adam (betas {betas[0]}, {betas[1]}), learning rate {config['learning_rate']}"
    if config.get("final_lr_fraction", 1.0) == 1.0:
        text += ", constant"
    else:
        text += f" cosine-decayed to {config['final_lr_fraction']} of it"
    if config.get("ema_momentum"):
        text += (f"; Polyak averaging: the weights are an exponential moving average "
                 f"(momentum {config['ema_momentum']}) of the trained ones")
    return text


def _serving_note(model):
    if hasattr(model, "iwae_log_prob"):
        return ("`log_prob` returns the IWAE bound with the k recorded in "
                "`genzoo/export_info.json` of the version folder, with fixed noise (so it is "
                "deterministic).")
    if hasattr(model, "sample_naive"):
        return ("`log_prob` is the exact log-likelihood; `complete(images, mask, seed)` keeps the "
                "pixels where mask != 0 and samples the others in raster order.")
    if hasattr(model, "discriminator"):
        return ("`generate(latents)` maps z to images, `sample(seed)` draws z ~ N(0, I) per row; "
                "`discriminate(images)` returns D's logits, each image scored alone.")
    return "`classify` returns logits, probabilities and classes; `features` the embedding."


def _quality_lines(quality):
    """The model card's sample-quality table (model beside the real-data floor)."""
    if not quality:
        return []
    m, f = quality["model"], quality["floor"]
    rows = [
        ("FID (lower is better)", f"{m['fid']:.3f}", f"{f['fid']:.3f}"),
        ("KID (+- std over 100 subsets of 1000)",
         f"{m['kid']:.3f} +- {m['kid_std']:.3f}",
         f"{f['kid']:.3f} +- {f['kid_std']:.3f}"),
        ("precision (k = 3)", f"{m['precision']:.3f}", f"{f['precision']:.3f}"),
        ("recall (k = 3)", f"{m['recall']:.3f}", f"{f['recall']:.3f}"),
        ("mode coverage: KL(class histogram ‖ uniform), nats",
         f"{m['mode_coverage']['kl_to_uniform']:.4f}", f"{f['mode_coverage']['kl_to_uniform']:.4f}"),
        ("smallest class share", f"{m['mode_coverage']['min_class_share']:.3f}",
         f"{f['mode_coverage']['min_class_share']:.3f}"),
    ]
    lines = ["## Sample quality (zoo classifier features)", "",
             f"{m['samples']} samples (seeds (0, i)) against the {m['reference']} test images, on "
             f"the features of `exported/{quality['classifier']}`; the floor compares {f['samples']} "
             "training images with the same test images (Heusel et al. 2017 FID; Bińkowski et "
             "al. 2018 KID; Kynkäänniemi et al. 2019 precision/recall).", "",
             "| metric | model | real-data floor |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "Class histogram of samples: " + ", ".join(
        f"{i}: {share:.3f}" for i, share in enumerate(m["mode_coverage"]["histogram"])), ""]
    return lines


def _fmt(value, digits=2):
    return f"{value:.{digits}f}"


def _init_from_lines(train_info):
    """Card lines on a fine-tuned run's starting point (``--init_from``), if any: one per
    model in the chain of starting points, the nearest first, and the epochs in all."""
    lines, info, total, parent = [], train_info, train_info.get("epochs_done"), None
    while info.get("init_from"):
        start = info["init_from"]
        base = start.get("train_info")
        head = (f"- Initialised from `{start['path']}`" if not lines else
                f"  - `{parent}` itself started from `{start['path']}`")
        if not base:
            lines.append(f"{head}: weights with no training record beside them")
            total = None
            break
        lines.append(f"{head}: the weights after {base.get('epochs_done')} epochs of "
                     f"`{base.get('command', '?')}` ({_optimizer_text(base['config'])}, batch size "
                     f"{base['config']['batch_size']}, {base.get('wall_time_s')} s)")
        total = (total + base["epochs_done"] if isinstance(total, int)
                 and isinstance(base.get("epochs_done"), int) else None)
        parent, info = start["path"], base
    if lines and total is not None:
        lines[0] += f"; {total} epochs in all"
    return lines


def model_card(name, model, preset, results, train_info, command, version=None):
    """The model card as Markdown."""
    from training import data

    lines = [f"# {name}" + (f" (version {version})" if version else ""), ""]
    lines += [preset.description + ".", ""]
    lines += ["## Data and preprocessing", ""]
    if preset.form == "binary":
        lines += [
            f"{preset.dataset} from TensorFlow Datasets (60,000 training, 10,000 test images, "
            "28x28). Binarized: training images are drawn afresh each epoch with "
            "pixel ~ Bernoulli(intensity / 255); the test set is binarized once, image i "
            f"with the stateless seed ({data.TEST_BINARIZATION_SEED}, i) "
            "(`training/data.py`). Served images: a pixel is 1 when it is >= 128; outputs are 0 or 255.",
            "",
        ]
    else:
        scale = {"uint8": "the 8-bit values 0..255 as they are",
                 "float01": "intensity / 255, in [0, 1]",
                 "float11": "intensity / 127.5 - 1, in [-1, 1]"}[preset.form]
        lines += [f"{preset.dataset} from TensorFlow Datasets (60,000 training, 10,000 test "
                  f"images, 28x28), 8-bit pixels; the model reads {scale}. Served images are "
                  "uint8 0..255.", ""]
    from training.train import architecture

    keep = architecture(model)[1]
    lines += ["## Architecture", "", _architecture(model) + f" Config: `{json.dumps(keep)}`.", ""]
    lines += ["## Training", ""]
    if train_info:
        hours = train_info.get("wall_time_s", 0) / 3600
        lines += [
            f"- Command: `{train_info.get('command', '?')}`",
            f"- Epochs: {train_info.get('epochs_done')}; batch size "
            f"{train_info['config']['batch_size']}; {_optimizer_text(train_info['config'])}; "
            f"seed {train_info['config']['seed']}"
            + (f"; precision policy {train_info['config']['dtype_policy']} (evaluated in float32)"
               if train_info["config"].get("dtype_policy", "float32") != "float32" else ""),
            *_init_from_lines(train_info),
            f"- Strategy: {train_info['config']['strategy']} ({train_info.get('replicas')} replica(s))",
            "- The test set served only as the per-epoch validation curve: no early stopping, "
            "no model selection; the model is the one after the last epoch"
            + (" (its averaged weights)." if train_info["config"].get("ema_momentum") else "."),
            f"- Wall time: {train_info.get('wall_time_s')} s ({hours:.2f} h) on {train_info.get('hardware')}",
            f"- Versions: {train_info.get('versions')}",
            "",
        ]
    else:
        lines += ["No training record was found beside this model.", ""]
    lines += ["## Metrics (test set)", "", "| metric | value | how |", "|---|---|---|"]
    if "test_nll_iwae" in results:
        lines += [
            f"| NLL, IWAE bound (nats/image) | {_fmt(results['test_nll_iwae'])} "
            f"+- {_fmt(results['test_nll_iwae_stderr'])} | -log of the importance-weighted "
            f"estimate with k = {results['iwae_k']} samples from q(z\\|x) per image "
            "(Burda et al. 2016, eq. 8); an upper bound on the true NLL; +- is the standard error over images |",
            f"| bits per dimension | {_fmt(results['test_bits_per_dim'], 4)} | NLL / (784 ln 2) |",
            f"| ELBO (nats/image) | {_fmt(results['test_elbo'])} | one reparameterized sample per image |",
            f"| KL(q(z\\|x) ‖ p(z)) (nats/image) | {_fmt(results['test_kl'])} | analytic "
            "(`tfd.kl_divergence`) |",
        ]
    if "test_reconstruction" in results:
        lines += [f"| reconstruction -log p(x\\|z) (nats/image) | "
                  f"{_fmt(results['test_reconstruction'])} | one posterior sample per image |"]
    if "test_accuracy" in results:
        lines += [f"| accuracy | {100 * results['test_accuracy']:.2f}% | argmax of the softmax |",
                  f"| cross-entropy (nats) | {results['test_loss']:.4f} | |"]
    if "test_d_loss" in results:
        lines += [
            f"| discriminator loss | {results['test_d_loss']:.4f} | "
            f"{'BEGAN' if hasattr(model, 'gamma') else model.loss_kind} loss on the "
            "test images and as many fresh samples |",
            f"| generator loss | {results['test_g_loss']:.4f} | same batches |",
            f"| mean D output, real / fake | {results['test_d_real']:.3f} / "
            f"{results['test_d_fake']:.3f} | logits (critic values for WGAN-GP) |",
        ]
        if "test_convergence" in results:
            lines += [f"| convergence M | {results['test_convergence']:.4f} | "
                      "L(x) + \|gamma L(x) - L(G(z))\| (Berthelot et al. 2017, sec. 3.4.1) |"]
        lines += ["| likelihood | none | a GAN's density is implicit: judge it by the sample "
                  "quality below |"]
    if "test_nll" in results:
        dims = math.prod(model.image_shape)
        lines += [
            f"| NLL, exact (nats/image) | {_fmt(results['test_nll'])} +- "
            f"{_fmt(results['test_nll_stderr'])} | -sum_i log p(x_i \\| x_<i) over the {dims} "
            "pixels in raster order; +- is the standard error over images |",
            f"| bits per dimension | {_fmt(results['test_bits_per_dim'], 4)} | NLL / ({dims} ln 2) |",
        ]
    lines += [
        "",
        f"Evaluated on {results['test_images']} test images in {results['eval_wall_time_s']} s with:",
        "",
        f"    {command}",
        "",
    ]
    if "test_nll_iwae" in results and preset.dataset == "mnist" and preset.form == "binary":
        lines += [
            "For comparison (dynamically binarized MNIST, NLL in nats, lower is better): "
            "Burda et al. 2016 (IWAE paper), Table 1: VAE with one stochastic layer, k = 1, 86.76; "
            "IWAE, k = 50, 84.78. Their figures use k = 5000 for evaluation.",
            "",
        ]
    if "test_nll" in results and preset.dataset == "mnist" and preset.form == "binary":
        lines += [
            "For comparison (binarized MNIST, exact NLL in nats, lower is better): van den Oord "
            "et al. 2016, \"Pixel Recurrent Neural Networks\", Table 4: PixelCNN 81.30, "
            "Diagonal BiLSTM (7 layers) 79.20. genzoo's vae_mnist (IWAE bound, k = 5000): "
            "see its card.",
            "",
        ]
    lines += _quality_lines(results.get("sample_quality"))
    pictures = pathlib.Path("docs") / "images" / name
    if (pathlib.Path(__file__).resolve().parent.parent / pictures).is_dir():
        lines += ["## Pictures", "",
                  f"Made with `python -m training.visualize {name}`:", ""]
        for png, caption in [("samples.png", "samples"),
                             ("sample_means.png", "their means E[x|z]"),
                             ("reconstructions.png", "test images (odd columns) and reconstructions"),
                             ("interpolation.png", "images along straight lines in the latent space"),
                             ("manifold.png", "the 2-d latent space over Gaussian quantiles"),
                             ("completions.png", "occluded test images (bottom half hidden) and "
                              "completions sampled from the model")]:
            if (pathlib.Path(__file__).resolve().parent.parent / pictures / png).exists():
                lines += [f"![{caption}](../../{pictures / png})", ""]
    lines += [
        "## Serving", "",
        "Signatures (uint8 NHWC images, int64 (B, 2) seeds, see DESIGN.md): "
        + ", ".join(f"`{n}`" for n in model.serving_endpoints()) + "; the first is also "
        "`serving_default`. " + _serving_note(model),
        "",
    ]
    return "\n".join(lines)


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
    p.add_argument("--data_dir")
    p.add_argument("--card", help="where to write the model card")
    p.add_argument("--rerender", action="store_true",
                   help="only rewrite the card from the metrics.json beside it (no evaluation)")
    args = p.parse_args(argv)

    from serving import export
    from training import data
    from zoo import registry

    version = None
    try:
        if args.target in registry.PRESETS:
            folder = registry.version_path(args.target, args.version)
            version = int(folder.name)
            model = export.load_trained(folder)
            info_path = folder / "genzoo" / "train_info.json"
            out_dir = folder.parent
        else:
            model = export.load_trained(args.target)
            target = pathlib.Path(args.target)
            out_dir = target if target.is_dir() else target.parent
            info_path = out_dir / "train_info.json"
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
                               args.take, args.samples)
    except (FileNotFoundError, ValueError, KeyError, data.DataUnavailableError) as err:
        sys.exit(f"error: {err}")
    train_info = json.loads(info_path.read_text()) if info_path.exists() else None
    if not args.rerender:
        command = "python -m training.evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
        results.update(model=name, version=version, command=command)
        print(json.dumps(results, indent=2))
    card = model_card(name, model, preset, results, train_info, results["command"], version)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    card_path.write_text(card)
    (card_path.parent / "metrics.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {card_path}")


if __name__ == "__main__":
    main()
