"""Model cards: a pure function from (results, training record, description) to Markdown.

``training.evaluate`` measures a model and gathers what the card says of it;
this module only writes text (no TensorFlow, no files), so a card can be
re-rendered, and tested, anywhere.

    card = model_card(results, train_info, description)

``results``: the figures of ``training.evaluate.evaluate`` plus ``command``
(the evaluation command); ``train_info``: the run's ``train_info.json`` (or
None); ``description``: a dict with the keys of ``DESCRIPTION_KEYS`` and,
for GANs, optionally ``ablation`` (``training.ablation``'s JSON record).
"""
import json

DESCRIPTION_KEYS = (
    "name",             # the preset
    "version",          # the exported version, or None for a run folder
    "summary",          # the preset's one-line description
    "dataset",          # TFDS name
    "form",             # pixel form the model reads (training.data.FORMS)
    "binarization_seed",  # the test set's binarization seed (binary form)
    "architecture",     # one paragraph: class, parameters, parts
    "config",           # the architecture's config (saving.architecture)
    "pixels",           # H * W * C
    "objective",        # the adversarial family's game (GAN loss or BEGAN), else None
    "signatures",       # names of the serving signatures, serving_default first
    "serving_note",     # what the card says of them
    "pictures",         # [(link relative to the card, caption)]
)
DESIGN_LINK = "../../docs/design.md"

_SCALES = {"uint8": "the 8-bit values 0..255 as they are",
           "float01": "intensity / 255, in [0, 1]",
           "float11": "intensity / 127.5 - 1, in [-1, 1]"}


def _optimizer_text(config):
    betas = (config.get("adam_beta_1", 0.9), config.get("adam_beta_2", 0.999))
    text = f"Adam (betas {betas[0]}, {betas[1]}), learning rate {config['learning_rate']}"
    if config.get("d_learning_rate"):
        text += (f" (generator) and {config['d_learning_rate']} (discriminator: two time-scale "
                 "update rule)")
    if config.get("final_lr_fraction", 1.0) == 1.0:
        text += ", constant"
    else:
        text += f" cosine-decayed to {config['final_lr_fraction']} of it"
        if config.get("wall_clock_budget_s"):  # training/pixelrnn_jax.py's schedule
            text += (f" over the training time of a {config['wall_clock_budget_s']:g} s wall-clock budget "
                     f"(not over epochs), after a linear warm-up over its first "
                     f"{100 * config['warmup_fraction']:g}%")
    if config.get("ema_momentum"):
        text += (f"; Polyak averaging: the weights are an exponential moving average "
                 f"(momentum {config['ema_momentum']}) of the trained ones")
        if config.get("ema_warmup", False):  # runs before the warm-up existed lack the key
            text += (", its momentum warmed up as min(M, (1 + n) / (10 + n)) after n updates "
                     "(as tf.train.ExponentialMovingAverage's num_updates)")
    return text


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
    agreement = quality.get("label_agreement")
    if agreement:
        lines += [f"Label agreement: the classifier names the requested class for "
                  f"{agreement['overall']:.2%} of the samples (labels requested in turn); per "
                  "requested class: " + ", ".join(
                      f"{i}: {share:.3f}" for i, share in enumerate(agreement["per_class"])), ""]
    return lines


def ablation_table(rows, floor):
    """Markdown lines of an ablation: [(variant, what it adds, model figures)], the floor last."""
    lines = ["| variant | adds | FID | KID | precision | recall | smallest class |",
             "|---|---|---|---|---|---|---|"]

    def cells(m):
        return (f"{m['fid']:.2f} | {m['kid']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                f"{m['mode_coverage']['min_class_share']:.3f} |")

    lines += [f"| {variant} | {adds} | " + cells(m) for variant, adds, m in rows]
    return lines + ["| real-data floor | training vs test images | " + cells(floor)]


def ablation_runs(record):
    """The commands that measured an ablation record's rows: [{command, wall_time_s, variants}]
    (a record older than ``runs``: its one command, which measured every row)."""
    return record.get("runs") or [dict(command=record["command"], wall_time_s=record["wall_time_s"],
                                       variants=[r["variant"] for r in record["rows"]])]


def ablation_commands(record):
    """The commands that measured an ablation record's rows, with their wall times (Markdown)."""
    runs = ablation_runs(record)
    if len(runs) == 1:
        return f"`{runs[0]['command']}` ({runs[0]['wall_time_s']} s)"
    return ", then ".join(f"`{r['command']}` ({', '.join(r['variants'])}; {r['wall_time_s']} s)"
                          for r in runs)


def _ablation_lines(ablation, name):
    """The GAN training techniques one at a time (``training.ablation``'s record), if measured."""
    if not ablation:
        return []
    own = ablation["preset"] == name
    lines = ["## Training techniques, one at a time", "",
             ("Measured on this preset" if own else f"Measured on `{ablation['preset']}`, the "
              "zoo's reference GAN (which of them this model used: its training command above)") +
             f" by {ablation_commands(ablation)}: each variant trained "
             + (f"{ablation['epochs']} epochs" if ablation["epochs"] else "the preset's epochs")
             + f" from the same seed, "
             f"{ablation['samples']} samples each on the features of "
             f"`exported/{ablation['classifier']}`. The variants share one schedule, so the rows "
             "compare the techniques; the exported model's own figures are in the sample-quality "
             "table.", ""]
    lines += ablation_table([(r["variant"], r["adds"], r["model"]) for r in ablation["rows"]],
                            ablation["floor"])
    return lines + [""]


def _translation_lines(t):
    """The card's table of a translation model's outputs against the true images, with baselines."""
    if not t:
        return []
    fid = any("fid" in row for row in t["rows"].values())
    lines = ["## Translation against ground truth", "", f"Task `{t['task']}`: {t['definition']}.", "",
             f"On the {t['images']} test images. PSNR (dB, peak 255, the mean over images; an "
             "image's mean squared error is floored at one grey level at one pixel) and SSIM "
             "(`tf.image.ssim`, 11x11 Gaussian window) against the true images; accuracy: the zoo "
             f"classifier (`exported/{t['classifier']}`) on the images, against the test labels; "
             "sharpness: the mean squared Sobel gradient of x / 255 (Tenengrad; blur lowers it)"
             + ("; FID on the classifier's features against the true images" if fid else "")
             + ". Higher is better for all but FID; sharpness is best close to the true images'.",
             "", "| images | PSNR (dB) | SSIM | accuracy | sharpness |" + (" FID |" if fid else ""),
             "|---|---|---|---|---|" + ("---|" if fid else "")]
    for name, row in t["rows"].items():
        cells = [f"{row['psnr']:.2f}" if "psnr" in row else "-",
                 f"{row['ssim']:.4f}" if "ssim" in row else "-",
                 f"{100 * row['accuracy']:.2f}%", f"{row['sharpness']:.4f}"]
        if fid:
            cells.append(f"{row['fid']:.2f}" if "fid" in row else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    cycle = t.get("cycle")
    if cycle:
        lines += [f"Cycle consistency: F(G(a)) against a, mean absolute error {cycle['a_mae']:.2f} "
                  f"grey levels, PSNR {cycle['a_psnr']:.2f} dB; G(F(b)) against b, "
                  f"{cycle['b_mae']:.2f} grey levels, PSNR {cycle['b_psnr']:.2f} dB.", ""]
    widths = t.get("by_stroke_width")
    if widths:
        lines += ["By the stroke width of A (2 x ink / boundary ink, in pixels; ink: pixels >= 128; "
                  "a quarter of the test images each): PSNR in each direction, and the ink of the "
                  "outputs beside the truth's. A translation that follows each image's width keeps "
                  "the ink of G(a) close to b's and of F(b) close to a's in every row.", "",
                  "| stroke width of A | images | A -> B PSNR | ink of G(a) / b | B -> A PSNR | ink of F(b) / a |",
                  "|---|---|---|---|---|---|"]
        for row in widths:
            low, high = row["width"]
            lines.append(f"| {low:.2f}-{high:.2f} | {row['images']} | {row['a_to_b_psnr']:.2f} | "
                         f"{row['ink_g_a']:.0f} / {row['ink_b']:.0f} | {row['b_to_a_psnr']:.2f} | "
                         f"{row['ink_f_b']:.0f} / {row['ink_a']:.0f} |")
        lines.append("")
    return lines


def _caption_lines(c):
    """The card's grammar and per-caption table of a text-to-image model."""
    if not c:
        return []
    digits = sorted({row["digit"] for row in c["captions"].values()})
    lines = ["## Captions", "",
             f"Grammar: {c['grammar']}; case and extra spaces are ignored; any other caption is "
             "refused with an error naming the word. \"thin\" and \"thick\" are facts about an "
             "image: its ink (pixels >= 128) below or above the median ink of the training images "
             "of its digit (" + ", ".join(f"{d}: {m:g}" for d, m in enumerate(c["ink_medians"]))
             + "); an image at the median is only \"a <digit>\".", "",
             f"{c['seeds']} samples per caption (seeds (0, i)). Accuracy: the share whose digit "
             f"the zoo classifier (`exported/{c['classifier']}`) reads as the caption's; FID on "
             "its features against the test images the caption is true of (their count beside "
             "it); thicker: the share of seeds whose \"a thick\" sample has more ink than their "
             "\"a thin\" one.", "",
             "| digit | accuracy: a / thin / thick | FID: a / thin / thick (real images) | thicker |",
             "|---|---|---|---|"]
    for digit in digits:
        rows = [row for row in c["captions"].values() if row["digit"] == digit]
        rows.sort(key=lambda row: ("a", "thin", "thick").index(row["style"]))
        lines.append(f"| {digit} | " + " / ".join(f"{100 * r['accuracy']:.1f}%" for r in rows)
                     + " | " + " / ".join(f"{r['fid']:.1f} ({r['real']})" for r in rows)
                     + f" | {100 * c['thicker'][digit]:.1f}% |")
    lines += ["", f"Over the {len(c['captions'])} captions: accuracy {100 * c['accuracy_mean']:.2f}% "
              f"on average, {100 * c['accuracy_min']:.2f}% at the least; thicker "
              f"{100 * c['thicker_mean']:.2f}% on average, {100 * c['thicker_min']:.2f}% for the "
              "digit where it is least.", ""]
    return lines


def _convergence_lines(train_info):
    """BEGAN's convergence measure M per epoch, from the run's history (if it logged M)."""
    history = [h for h in train_info.get("history", []) if "convergence" in h]
    if not history:
        return []
    lines = ["## Convergence", "",
             "BEGAN's convergence measure M = L(x) + |gamma L(x) - L(G(z))| (Berthelot et al. "
             "2017, sec. 3.4.1), the mean over each epoch's training steps and over the test "
             "set after it (also in TensorBoard as `epoch_convergence`); lower is better.", "",
             "| epoch | M (training) | M (test) | k_t |", "|---|---|---|---|"]
    for epoch, h in enumerate(history, 1):
        test = f"{h['val_convergence']:.4f}" if "val_convergence" in h else "-"
        lines.append(f"| {epoch} | {h['convergence']:.4f} | {test} | {h.get('k', float('nan')):.4f} |")
    return lines + [""]


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
        if start.get("grown_from_blocks"):
            head += (f" (`--init_grow`: its {start['grown_from_blocks']} layers fill the first ones; "
                     "the layers added after them started as the identity, zero residual outputs)")
        if start.get("networks"):
            head += (f" (`--init_networks`: only its {', '.join(start['networks'])}; the other "
                     "networks started from fresh weights)")
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


def _data_lines(d):
    if d["form"] == "binary":
        return [
            f"{d['dataset']} from TensorFlow Datasets (60,000 training, 10,000 test images, "
            "28x28). Binarized: training images are drawn afresh each epoch with "
            "pixel ~ Bernoulli(intensity / 255); the test set is binarized once, image i "
            f"with the stateless seed ({d['binarization_seed']}, i) "
            "(`training/data.py`). Served images: a pixel is 1 when it is >= 128; outputs are 0 or 255.",
            "",
        ]
    return [f"{d['dataset']} from TensorFlow Datasets (60,000 training, 10,000 test "
            f"images, 28x28), 8-bit pixels; the model reads {_SCALES[d['form']]}. Served images are "
            "uint8 0..255.", ""]


def _training_lines(info):
    if not info:
        return ["No training record was found beside this model.", ""]
    config = info["config"]
    hours = info.get("wall_time_s", 0) / 3600
    return [
        f"- Command: `{info.get('command', '?')}`",
        *([f"- Trained with {info['trained_with']}."] if info.get("trained_with") else []),
        f"- Epochs: {info.get('epochs_done')}"
        + (f" of the {config['epochs']} its schedule was set for (the run was stopped there)"
           if info.get("epochs_done") and info["epochs_done"] < config.get("epochs", 0) else "")
        + "; batch size "
        f"{config['batch_size']}; {_optimizer_text(config)}; seed {config['seed']}"
        + (f"; precision policy {config['dtype_policy']} (evaluated in float32)"
           if config.get("dtype_policy", "float32") != "float32" else ""),
        *_init_from_lines(info),
        f"- Strategy: {config['strategy']} ({info.get('replicas')} replica(s))",
        "- The test set served only as the per-epoch validation curve: no early stopping, "
        "no model selection; the model is the one after the last epoch"
        + (" (its averaged weights)." if config.get("ema_momentum") else "."),
        f"- Wall time: {info.get('wall_time_s')} s ({hours:.2f} h) on {info.get('hardware')}",
        f"- Versions: {info.get('versions')}",
        "",
    ]


def _metric_rows(r, d):
    """The rows of the metrics table, for the figures ``r`` holds."""
    rows, pixels = [], d["pixels"]
    if "test_nll_iwae" in r:
        rows += [
            f"| NLL, IWAE bound (nats/image) | {_fmt(r['test_nll_iwae'])} "
            f"+- {_fmt(r['test_nll_iwae_stderr'])} | -log of the importance-weighted "
            f"estimate with k = {r['iwae_k']} samples from q(z\\|x) per image "
            "(Burda et al. 2016, eq. 8); an upper bound on the true NLL; +- is the standard error over images |",
            f"| bits per dimension | {_fmt(r['test_bits_per_dim'], 4)} | NLL / ({pixels} ln 2) |",
            f"| ELBO (nats/image) | {_fmt(r['test_elbo'])} | one reparameterized sample per image |",
            f"| KL(q(z\\|x) ‖ p(z)) (nats/image) | {_fmt(r['test_kl'])} | analytic "
            "(`tfd.kl_divergence`) |",
        ]
    if "test_reconstruction" in r:
        rows += [f"| reconstruction -log p(x\\|z) (nats/image) | "
                 f"{_fmt(r['test_reconstruction'])} | one posterior sample per image |"]
    if "test_accuracy" in r:
        rows += [f"| accuracy | {100 * r['test_accuracy']:.2f}% | argmax of the softmax |",
                 f"| cross-entropy (nats) | {r['test_loss']:.4f} | |"]
    if "translation" in r:
        names = {"test_l1": ("L1", "mean \\|G(x) - y\\| over the test pairs' pixels, in [-1, 1] units"),
                 "test_cycle": ("cycle L1", "mean \\|F(G(a)) - a\\| + mean \\|G(F(b)) - b\\|"),
                 "test_identity": ("identity L1", "mean \\|G(b) - b\\| + mean \\|F(a) - a\\|"),
                 "test_d_loss": ("discriminator loss", f"of the objective ({d['objective']})"),
                 "test_g_gan": ("generator's adversarial term", "same batches")}
        rows += [f"| {text} | {r[key]:.4f} | {how} |" for key, (text, how) in names.items() if key in r]
        rows += ["| likelihood | none | the model maps images to images: judge it against the "
                 "true images below |"]
    elif "test_d_loss" in r:
        rows += [
            f"| discriminator loss | {r['test_d_loss']:.4f} | {d['objective']} loss on the "
            "test images and as many fresh samples |",
            f"| generator loss | {r['test_g_loss']:.4f} | same batches |",
            f"| mean D output, real / fake | {r['test_d_real']:.3f} / "
            f"{r['test_d_fake']:.3f} | logits (critic values for WGAN-GP) |",
        ]
        if "test_convergence" in r:
            rows += [f"| convergence M | {r['test_convergence']:.4f} | "
                     "L(x) + \\|gamma L(x) - L(G(z))\\| (Berthelot et al. 2017, sec. 3.4.1) |"]
        rows += ["| likelihood | none | a GAN's density is implicit: judge it by the sample "
                 "quality below |"]
    if "test_nll" in r:
        rows += [
            f"| NLL, exact (nats/image) | {_fmt(r['test_nll'])} +- "
            f"{_fmt(r['test_nll_stderr'])} | -sum_i log p(x_i \\| x_<i) over the {pixels} "
            "pixels in raster order; +- is the standard error over images |",
            f"| bits per dimension | {_fmt(r['test_bits_per_dim'], 4)} | NLL / ({pixels} ln 2) |",
        ]
    return rows


def _comparison_lines(r, d):
    """Published figures to set beside the card's (binarized MNIST only)."""
    if d["dataset"] != "mnist" or d["form"] != "binary":
        return []
    if "test_nll_iwae" in r:
        return ["For comparison (dynamically binarized MNIST, NLL in nats, lower is better): "
                "Burda et al. 2016 (IWAE paper), Table 1: VAE with one stochastic layer, k = 1, 86.76; "
                "IWAE, k = 50, 84.78. Their figures use k = 5000 for evaluation.", ""]
    if "test_nll" in r:
        return ["For comparison (binarized MNIST, exact NLL in nats, lower is better): van den Oord "
                "et al. 2016, \"Pixel Recurrent Neural Networks\", Table 4: PixelCNN 81.30, "
                "Row LSTM 80.54, Diagonal BiLSTM (7 layers) 79.20. genzoo's vae_mnist (IWAE bound, k = 5000): "
                "see its card.", ""]
    return []


def _picture_lines(d):
    if not d["pictures"]:
        return []
    lines = ["## Pictures", "", f"Made with `python -m training.visualize {d['name']}`:", ""]
    for link, caption in d["pictures"]:
        lines += [f"![{caption}]({link})", ""]
    return lines


def model_card(results, train_info, description):
    """The model card as Markdown."""
    d = description
    missing = [key for key in DESCRIPTION_KEYS if key not in d]
    if missing:
        raise KeyError(f"the model card's description lacks {', '.join(missing)}")
    lines = [f"# {d['name']}" + (f" (version {d['version']})" if d["version"] else ""), "",
             d["summary"] + ".", "", "## Data and preprocessing", ""]
    lines += _data_lines(d)
    lines += ["## Architecture", "", d["architecture"] + f" Config: `{json.dumps(d['config'])}`.", ""]
    lines += ["## Training", ""] + _training_lines(train_info)
    lines += _convergence_lines(train_info)
    lines += ["## Metrics (test set)", "", "| metric | value | how |", "|---|---|---|"]
    lines += _metric_rows(results, d)
    lines += ["", f"Evaluated on {results['test_images']} test images in "
              f"{results['eval_wall_time_s']} s with:", "", f"    {results['command']}", ""]
    lines += _comparison_lines(results, d)
    lines += _translation_lines(results.get("translation"))
    lines += _caption_lines(results.get("captions"))
    lines += _quality_lines(results.get("sample_quality"))
    lines += _ablation_lines(d.get("ablation"), d["name"])
    lines += _picture_lines(d)
    lines += [
        "## Serving", "",
        f"Signatures (uint8 NHWC images, int64 (B, 2) seeds, see [docs/design.md]({DESIGN_LINK})): "
        + ", ".join(f"`{n}`" for n in d["signatures"]) + "; the first is also "
        "`serving_default`. " + d["serving_note"],
        "",
    ]
    return "\n".join(lines)
