"""Figures of image-to-image translation models, measured against ground truth.

    figures = translation_figures(model, preset, data_dir=None)

On the 10,000 test images of the preset's task (``training.data.TASKS``),
each output is compared with its true counterpart: PSNR and SSIM, the zoo
classifier's accuracy on the outputs (the test labels), their sharpness
(``quality.sharpness``) and, for pix2pix, FID against the target images. Beside
the model stand the task's baselines, computed the same way: bicubic
upsampling of the super-resolution input, the untranslated input, the true
images themselves (accuracy and sharpness), and the same U-Net trained with
L1 alone (``ABLATIONS``) where it is exported.
"""
import numpy as np
import tensorflow as tf

from training import data, quality
from zoo import saving, text2image

# pix2pix presets and their L1-alone ablation (Isola et al. 2017, sec. 4.2)
ABLATIONS = {"pix2pix_superres_mnist": "unet_l1_superres_mnist",
             "pix2pix_edges_fashion_mnist": "unet_l1_edges_fashion_mnist"}
PIXELS = 28 * 28


def per_image_psnr(images, targets):
    """The PSNR (dB, peak 255) of each uint8 image of ``images`` against ``targets``.

    Each image's mean squared error is floored at 1 / (H W C), the smallest
    non-zero error of a uint8 image (one grey level at one pixel), so an exact
    match counts as that, not as infinity.
    """
    x, y = np.asarray(images, np.float64), np.asarray(targets, np.float64)
    mse = np.mean(np.square(x - y), axis=tuple(range(1, x.ndim)))
    return 10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1.0 / np.prod(x.shape[1:])))


def psnr(images, targets):
    """Mean over images of ``per_image_psnr``."""
    return float(np.mean(per_image_psnr(images, targets)))


def ssim(images, targets, batch_size=1000):
    """Mean SSIM of uint8 images against targets (``tf.image.ssim``, peak 255, 11x11 Gaussian window)."""
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = tf.constant(images[start:start + batch_size], tf.float32)
        y = tf.constant(targets[start:start + batch_size], tf.float32)
        total += float(tf.reduce_sum(tf.image.ssim(x, y, 255.0)))
    return total / len(images)


def bicubic(images, shape):
    """uint8 ``images`` resized to ``shape`` (H, W) by bicubic interpolation, rounded and clipped."""
    up = tf.image.resize(tf.constant(images, tf.float32), shape, method="bicubic")
    return tf.cast(tf.clip_by_value(tf.round(up), 0.0, 255.0), tf.uint8).numpy()


def apply(fn, images, batch_size=500):
    """uint8 outputs of a serving function ``fn(images) -> {"images": ...}`` over ``images``."""
    run = tf.function(fn)
    return np.concatenate([run(tf.constant(images[start:start + batch_size]))["images"].numpy()
                           for start in range(0, len(images), batch_size)])


def test_domains(preset, data_dir=None, take=None):
    """(A images, B images, labels) of the preset's test set (the first ``take``), as NumPy arrays."""
    batches = list(data.load(preset.dataset, "test", "uint8", 1000, labels=True, shuffle=False,
                             data_dir=data_dir, task=preset.task, take=take))
    a, b, labels = (np.concatenate([batch[key].numpy() for batch in batches])
                    for key in ("a", "b", "labels"))
    return a.astype(np.uint8), b.astype(np.uint8), labels.astype(np.int64)


class Scorer:
    """Scores uint8 image sets against one set of true images, with the zoo classifier."""

    def __init__(self, classifier, truth, labels, fid=False):
        self.classifier = classifier
        self.truth = truth
        self.labels = labels
        self.truth_features = quality.embed(classifier, truth)[0] if fid else None

    def accuracy(self, images):
        _, probabilities = quality.embed(self.classifier, images)
        return float(np.mean(np.argmax(probabilities, axis=1) == self.labels))

    def __call__(self, images, against_truth=True):
        """{psnr, ssim, accuracy, sharpness[, fid]} of ``images`` (PSNR/SSIM only if ``against_truth``)."""
        found = {"accuracy": self.accuracy(images), "sharpness": quality.sharpness(images)}
        if against_truth:
            found.update(psnr=psnr(images, self.truth), ssim=ssim(images, self.truth))
        if self.truth_features is not None:
            features = quality.embed(self.classifier, images)[0]
            found["fid"] = quality.fid(self.truth_features, features)
        return found


def stroke_width(images):
    """Per uint8 image (B, H, W, C): 2 x its ink over its boundary ink, in pixels.

    Ink is ``text2image.ink``'s (pixels >= 128); boundary ink is the ink with a
    pixel that is not ink among its 8 neighbours. A stroke of width w >= 2
    and length L has about w L pixels of ink and 2 L on its boundary, so the
    figure is about w.
    """
    inked = tf.cast(tf.constant(images) >= 128, tf.float32)
    interior = -tf.nn.max_pool2d(-inked, 3, 1, "SAME")  # 1 where the 3x3 neighbourhood is all ink
    ink = tf.reduce_sum(inked, [1, 2, 3])
    return (2.0 * ink / tf.maximum(1.0, ink - tf.reduce_sum(interior, [1, 2, 3]))).numpy()


def by_stroke_width(a, b, to_b, to_a):
    """A CycleGAN's PSNR in both directions and its outputs' ink against the truth's, for each
    quarter of the test images by the stroke width of A (``stroke_width``): whether G and F
    follow each image's width or draw every image with about the same."""
    width = stroke_width(a)
    edges = np.quantile(width, [0.25, 0.5, 0.75])
    quarter = np.digitize(width, edges)
    bounds = [float(width.min()), *map(float, edges), float(width.max())]
    to_b_psnr, to_a_psnr = per_image_psnr(to_b, b), per_image_psnr(to_a, a)
    inks = {name: text2image.ink(tf.constant(x)).numpy()
            for name, x in (("g_a", to_b), ("b", b), ("f_b", to_a), ("a", a))}
    rows = []
    for k in range(4):
        keep = quarter == k
        if not keep.any():  # ties on a quartile can leave a quarter empty
            continue
        rows.append({"width": [bounds[k], bounds[k + 1]], "images": int(keep.sum()),
                     "a_to_b_psnr": float(to_b_psnr[keep].mean()),
                     "b_to_a_psnr": float(to_a_psnr[keep].mean()),
                     **{f"ink_{name}": float(v[keep].mean()) for name, v in inks.items()}})
    return rows


def translation_figures(model, preset, data_dir=None, take=None):
    """The figures of a translation model (pix2pix or CycleGAN) on its task's test set
    (its first ``take`` images)."""
    a, b, labels = test_domains(preset, data_dir, take)
    classifier_name, classifier = quality.zoo_classifier(preset.dataset)
    found = {"task": preset.task, "definition": data.get_task(preset.task).description,
             "classifier": classifier_name, "images": int(len(a))}
    if "translate_back" not in model.serving_endpoints():  # pix2pix: A -> B against B
        score = Scorer(classifier, b, labels, fid=preset.task == "edges")
        rows = {"model": score(apply(model.serve_translate, a)),
                "target images": score(b, against_truth=False)}
        if a.shape[1:] == b.shape[1:]:
            rows["input, untranslated"] = score(a)
        else:
            rows["bicubic upsampling"] = score(bicubic(a, b.shape[1:3]))
        ablation = ABLATIONS.get(model.name)
        if ablation and saving.versions(ablation):
            folder = saving.version_path(ablation)
            rows[f"L1 alone ({ablation}/{folder.name})"] = score(
                apply(saving.load_keras(folder).serve_translate, a))
        found["rows"] = rows
        return found
    # CycleGAN: each direction against the true images of the other domain.
    to_b, to_a = apply(model.serve_translate, a), apply(model.serve_translate_back, b)
    score_b, score_a = Scorer(classifier, b, labels), Scorer(classifier, a, labels)
    found["rows"] = {
        "A -> B (translate)": score_b(to_b),
        "B -> A (translate_back)": score_a(to_a),
        "A untranslated, against B": score_b(a),
        "B untranslated, against A": score_a(b),
        "true B images": score_b(b, against_truth=False),
        "true A images": score_a(a, against_truth=False),
    }
    back_a, back_b = apply(model.serve_translate_back, to_b), apply(model.serve_translate, to_a)
    found["cycle"] = {
        "a_mae": float(np.mean(np.abs(back_a.astype(np.float64) - a))),
        "a_psnr": psnr(back_a, a),
        "b_mae": float(np.mean(np.abs(back_b.astype(np.float64) - b))),
        "b_psnr": psnr(back_b, b),
    }
    found["by_stroke_width"] = by_stroke_width(a, b, to_b, to_a)
    return found
