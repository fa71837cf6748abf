"""Text-to-image (GAN-CLS): the caption grammar in Python and in the graph, the
matching-aware discriminator, the styles, the seed contract, the export and the
training command. The server's string input is in test_server.py; the shared
harness case in test_harness.py."""
import itertools
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_main
from serving import export
from serving.errors import from_tf_error
from training import caption_metrics, data
from zoo import adversarial, registry, text2image

RNG = np.random.default_rng(0)


def _tiny(**kwargs):
    return text2image.TextGAN(**{"image_shape": (8, 8, 1), "latent_dim": 4, "filters": 4,
                                 "embed_dim": 5, **kwargs})


def _captions():
    """Every caption of the grammar, with case and spaces varied."""
    found = []
    for digit, style in itertools.product(range(10), range(3)):
        text = text2image.caption(digit, style)
        found += [(text, (style, digit)), ("  " + text.upper() + " ", (style, digit)),
                  (text.replace(" ", "   \t").title(), (style, digit))]
    return found


def test_the_graph_reads_captions_as_the_python_grammar_does():
    texts, want = zip(*_captions(), strict=True)
    assert [text2image.parse(t) for t in texts] == list(want)
    got = tf.function(text2image.parse_captions)(tf.constant(texts)).numpy()
    assert got.tolist() == [list(w) for w in want]
    assert text2image.caption(7, 2) == "a thick seven" and text2image.caption(0) == "a zero"


@pytest.mark.parametrize("text,message", [
    ("a sevn", "unknown word in a caption: sevn"),
    ("a Big five", "unknown word in a caption: big"),
    ("seven a", "caption not in the grammar: seven a"),
    ("a thick", "caption not in the grammar: a thick"),
    ("a thin thick one", "caption not in the grammar: a thin thick one"),
    ("a one two", "caption not in the grammar: a one two"),
    ("", "caption not in the grammar: "),
])
def test_a_caption_outside_the_grammar_fails_naming_the_word(text, message):
    with pytest.raises(ValueError, match=message.split(":")[0]):
        text2image.parse(text)
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        tf.function(text2image.parse_captions)(tf.constant(["a one", text]))
    # what the embedded server answers (HTTP 400 / INVALID_ARGUMENT)
    served = from_tf_error(err.value)
    assert served.code == "INVALID_ARGUMENT"
    assert served.message.startswith(message) and text2image.GRAMMAR in served.message


def test_styles_come_from_the_ink_against_the_digit_median():
    model = _tiny(ink_medians=(10, 20) + (30,) * 8)
    images = -np.ones((4, 8, 8, 1), np.float32)
    for row, inked in enumerate((9, 10, 11, 25)):
        images[row].reshape(-1)[:inked] = 0.01  # a grey level of 128 is ink (> 0 in [-1, 1])
    styles = model.styles(tf.constant(images), tf.constant([0, 0, 0, 1]))
    assert styles.numpy().tolist() == [1, 0, 2, 2]  # thin, at the median, thick, thick
    assert text2image.ink(adversarial.to_uint8(tf.constant(images))).numpy().tolist() == [9, 10, 11, 25]


def test_ink_medians_are_those_of_the_training_images():
    batches = data.load("mnist", "train", "uint8", 10000, labels=True, shuffle=False)
    images, labels = zip(*((b["images"].numpy(), b["labels"].numpy()) for b in batches), strict=True)
    ink = text2image.ink(np.concatenate(images).astype(np.uint8)).numpy()
    labels = np.concatenate(labels)
    assert len(labels) == 60000
    medians = [float(np.median(ink[labels == d])) for d in range(10)]
    assert tuple(medians) == text2image.INK_MEDIANS_MNIST
    assert registry.get_preset("text2image_mnist").kwargs.get(
        "ink_medians", text2image.INK_MEDIANS_MNIST) == text2image.INK_MEDIANS_MNIST


def test_training_captions_are_true_and_mismatched_ones_false():
    model = _tiny()
    model.compile()
    images = tf.constant(RNG.uniform(-1, 1, (256, 8, 8, 1)).astype(np.float32))
    labels = tf.constant(np.arange(256) % 10)
    right, wrong = (c.numpy() for c in model.training_captions(images, labels))
    styles = model.styles(images, labels).numpy()
    assert (right[:, 1] == labels.numpy()).all()
    assert ((right[:, 0] == styles) | (right[:, 0] == 0)).all()  # the style, or no style word
    assert 0.35 < np.mean(right[:, 0] == 0) < 0.65  # the style word dropped half of the time
    assert (wrong != right).any(axis=1).all()  # never the true caption
    same_digit = wrong[:, 1] == right[:, 1]
    assert (right[same_digit, 0] > 0).all() and (wrong[same_digit, 0] == 3 - right[same_digit, 0]).all()
    assert same_digit.any() and (~same_digit).any()


def test_matching_aware_loss_counts_a_real_image_with_a_wrong_caption_as_fake():
    model = _tiny()
    real, fake = tf.constant([3.0]), tf.constant([-3.0])
    fooled = model.matching_loss(real, tf.constant([3.0]), fake)[0]  # D takes the mismatch for real
    right = model.matching_loss(real, tf.constant([-3.0]), fake)[0]
    assert float(fooled) > float(right) + 1.0
    softplus = tf.math.softplus  # the non-saturating D loss: softplus(-real) + softplus(fake)
    want = softplus(-3.0) + 0.5 * (softplus(3.0) + softplus(-3.0))
    np.testing.assert_allclose(float(fooled), float(want), rtol=1e-6)


def test_d_learns_to_refuse_mismatched_captions():
    """A few hundred steps on images whose digit is visible (G held still): D scores a real
    image higher with its own caption than with a wrong digit."""
    x = -np.ones((10, 8, 8, 1), np.float32)
    for d in range(10):
        x[d, :, d % 8] = 1.0  # digit d: a bright column (and for 8 and 9 a bright row)
    x[8:, 0, :] = 1.0
    model = _tiny(seed=1)
    model.compile(d_optimizer=keras.optimizers.Adam(3e-3), g_optimizer=keras.optimizers.Adam(0.0))
    ds = tf.data.Dataset.from_tensor_slices({"images": np.tile(x, (8, 1, 1, 1)),
                                             "labels": np.tile(np.arange(10), 8)}).batch(40)
    model.fit(ds.repeat(), steps_per_epoch=400, epochs=1, verbose=0)
    right = tf.constant([[0, d] for d in range(10)])
    wrong = tf.constant([[0, (d + 3) % 10] for d in range(10)])
    scores_right = model.discriminate(tf.constant(x), right).numpy()
    scores_wrong = model.discriminate(tf.constant(x), wrong).numpy()
    assert (scores_right > scores_wrong + 1.0).all(), (scores_right, scores_wrong)


def test_sample_keeps_the_seed_contract_in_the_savedmodel(tmp_path):
    model = registry.build("text2image_mnist", filters=4, latent_dim=8, embed_dim=4)
    path = export.export(model, tmp_path)
    seeds = np.array([[5, 0], [5, 1], [5, 2], [5, 0]], np.int64)  # rows 0 and 3: same seed, caption
    texts = np.array(["a seven", "a thick two", "A  thin ZERO", "a seven"], object)
    batch = model.serve_sample(tf.constant(seeds), tf.constant(texts))["images"].numpy()
    alone = np.concatenate([model.serve_sample(tf.constant(seeds[i:i + 1]), tf.constant(texts[i:i + 1]))
                            ["images"].numpy() for i in range(4)])
    np.testing.assert_array_equal(batch, alone)
    script = (
        "import sys, json, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['sample'](seed=tf.constant(json.loads(sys.argv[2]), tf.int64),\n"
        "                             text=tf.constant(json.loads(sys.argv[3])))\n"
        "np.save(sys.argv[4], out['images'].numpy())\n")
    result = subprocess.run([sys.executable, "-c", script, str(path), json.dumps(seeds.tolist()),
                             json.dumps(texts.tolist()), str(tmp_path / "x.npy")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), batch)
    assert (batch[0] == batch[3]).all()
    z = tf.random.stateless_normal([1, 8], seed=[0, 1])
    a, b = (model.generate(z, tf.constant([caption])).numpy() for caption in ([0, 7], [2, 7]))
    assert np.abs(a - b).max() > 1e-4  # the caption reaches the untrained generator
    loaded = tf.saved_model.load(str(path))
    spec = loaded.signatures["sample"].structured_input_signature[1]["text"]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    assert set(loaded.signatures) == {"sample", "generate", "discriminate", "serving_default"}
    check = run_main("serving.check", path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_caption_figures_cover_every_caption(tmp_path, monkeypatch):
    import shutil
    shutil.copytree(ROOT / "exported" / "classifier_mnist", tmp_path / "classifier_mnist")
    monkeypatch.setenv("GENZOO_EXPORTED_DIR", str(tmp_path))
    model = registry.build("text2image_mnist", filters=4, latent_dim=8, embed_dim=4)
    found = caption_metrics.caption_figures(model, registry.get_preset("text2image_mnist"),
                                            seeds=6, take=300)
    assert len(found["captions"]) == 30 and len(found["thicker"]) == 10
    row = found["captions"]["a thick seven"]
    assert row["digit"] == 7 and row["style"] == "thick" and 0 < row["real"] < 40
    assert found["captions"]["a seven"]["real"] > row["real"]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["fid"] >= 0 for r in found["captions"].values())


def test_the_training_command_trains_text2image(tmp_path):
    result = run_main("training.train", "text2image_mnist", "--epochs", 1, "--steps_per_epoch", 3,
                      "--train_examples", 200, "--batch_size", 8, "--set", "filters=4",
                      "--set", "latent_dim=8", "--output_dir", tmp_path, "--verbose", 0)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert set(info["final_metrics"]) >= {"d_loss", "g_loss", "val_d_loss"}
    trained = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(trained, text2image.TextGAN) and trained.ema_generator is not None
    assert (tmp_path / "samples" / "epoch_001.png").exists()
