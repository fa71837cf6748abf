"""Figures of a text-to-image model, per caption of its grammar.

    figures = caption_figures(model, preset, data_dir=None, seeds=1000)

For every digit and style ("a <digit>", "a thin <digit>", "a thick <digit>")
the model draws one sample per seed (0, i), i < ``seeds``, through its
``sample(seed, text)`` signature. Measured per caption: the share of samples
whose digit the zoo classifier reads as the caption's, and the FID (on the
classifier's features) against the real test images the caption is true of
(their ink against ``zoo.text2image`` medians of the training images). Per
digit: the share of seeds whose "thick" sample has more ink than its "thin"
one (ink: pixels >= 128).
"""
import numpy as np
import tensorflow as tf

from training import data, quality
from zoo import text2image

STYLE_NAMES = ("a", "thin", "thick")  # how the tables name the styles 0, 1, 2


def test_images(model, preset, data_dir=None, take=None):
    """(uint8 test images, labels, styles) of the preset's data set, styles by the model's rule."""
    batches = list(data.load(preset.dataset, "test", "uint8", 1000, labels=True, shuffle=False,
                             data_dir=data_dir, take=take))
    images = np.concatenate([b["images"].numpy() for b in batches]).astype(np.uint8)
    labels = np.concatenate([b["labels"].numpy() for b in batches]).astype(np.int64)
    medians = np.asarray(model.ink_medians)[labels]
    ink = text2image.ink(images).numpy()
    styles = np.where(ink < medians, 1, np.where(ink > medians, 2, 0))
    return images, labels, styles


def draw(model, captions, seeds, batch_size=500):
    """uint8 samples of ``captions`` (a list of strings), one per seed (0, i) of each."""
    sample = tf.function(model.serve_sample)
    out = []
    for text in captions:
        for start in range(0, seeds, batch_size):
            n = min(batch_size, seeds - start)
            seed = tf.stack([tf.zeros([n], tf.int64), tf.range(start, start + n, dtype=tf.int64)], 1)
            out.append(sample(seed, tf.fill([n], text))["images"].numpy())
    return np.concatenate(out).reshape(len(captions), seeds, *out[0].shape[1:])


def caption_figures(model, preset, data_dir=None, seeds=1000, take=None):
    """{"captions": {caption: {accuracy, fid, real}}, "thicker": [share per digit], ...}."""
    images, labels, styles = test_images(model, preset, data_dir, take)
    classifier_name, classifier = quality.zoo_classifier(preset.dataset)
    real_features = quality.embed(classifier, images)[0]
    rows, thicker = {}, []
    for digit in range(len(text2image.DIGITS)):
        texts = [text2image.caption(digit, style) for style in range(3)]
        drawn = draw(model, texts, seeds)
        for style, text in enumerate(texts):
            features, probabilities = quality.embed(classifier, drawn[style])
            true_of = (labels == digit) & ((styles == style) if style else True)
            rows[text] = {"digit": digit, "style": STYLE_NAMES[style],
                          "accuracy": float(np.mean(np.argmax(probabilities, 1) == digit)),
                          "fid": quality.fid(real_features[true_of], features),
                          "real": int(true_of.sum())}
        ink_thin, ink_thick = (text2image.ink(drawn[s]).numpy() for s in (1, 2))
        thicker.append(float(np.mean(ink_thick > ink_thin)))
    accuracy = [row["accuracy"] for row in rows.values()]
    return {"classifier": classifier_name, "seeds": seeds, "captions": rows, "thicker": thicker,
            "accuracy_min": float(min(accuracy)), "accuracy_mean": float(np.mean(accuracy)),
            "thicker_min": float(min(thicker)), "thicker_mean": float(np.mean(thicker)),
            "grammar": text2image.GRAMMAR, "ink_medians": list(model.ink_medians)}
