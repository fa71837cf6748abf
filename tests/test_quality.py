"""Sample-quality metrics on known distributions."""
import numpy as np
import pytest

from training import quality


def _gauss(n, d=8, shift=0.0, scale=1.0, seed=0):
    return np.random.default_rng(seed).normal(shift, scale, (n, d))


def test_fid_matches_the_closed_form_for_gaussians():
    a, b = _gauss(20000, seed=0), _gauss(20000, seed=1)
    assert quality.fid(a, b) < 0.01
    # means 2 apart in every one of 8 dims, same covariance: FID = 8 * 4
    assert quality.fid(a, _gauss(20000, shift=2.0, seed=2)) == pytest.approx(32.0, rel=0.02)
    # covariance 4 I against I: Tr(I + 4I - 2 * 2I) = 8 * 1
    assert quality.fid(a, _gauss(20000, scale=2.0, seed=3)) == pytest.approx(8.0, rel=0.03)


def test_kid_is_unbiased_near_zero_and_grows_with_the_gap():
    a, b = _gauss(3000, seed=0), _gauss(3000, seed=1)
    same, spread = quality.kid(a, b, subsets=20, subset_size=500)
    assert abs(same) < 3 * spread + 1e-3
    far, _ = quality.kid(a, _gauss(3000, shift=1.0, seed=2), subsets=20, subset_size=500)
    assert far > 0.5


def test_precision_and_recall_separate_quality_from_coverage():
    real = _gauss(2000, d=2, seed=0)
    assert quality.precision_recall(real, _gauss(2000, d=2, seed=1)) > (0.9, 0.9)
    # samples piled on one corner of the data: precise but with poor recall
    collapsed = _gauss(2000, d=2, shift=1.0, scale=0.1, seed=2)
    precision, recall = quality.precision_recall(real, collapsed)
    assert precision > 0.9 and recall < 0.2
    # samples off the data: neither
    precision, recall = quality.precision_recall(real, _gauss(2000, d=2, shift=20.0, seed=3))
    assert precision == 0.0 and recall == 0.0


def test_mode_coverage():
    even = np.eye(10)[np.arange(1000) % 10]
    report = quality.mode_coverage(even)
    assert report["kl_to_uniform"] == pytest.approx(0.0, abs=1e-9)
    assert report["classes_covered"] == 10 and report["min_class_share"] == pytest.approx(0.1)
    one = quality.mode_coverage(np.eye(10)[np.zeros(100, int)])
    assert one["kl_to_uniform"] == pytest.approx(np.log(10)) and one["classes_covered"] == 1


def test_label_agreement_per_requested_class():
    requested = np.arange(100) % 4
    predicted = requested.copy()
    predicted[requested == 2] = 0  # every sample asked to be a 2 looks like a 0
    predicted[0] = 1  # and one 0 looks like a 1
    report = quality.label_agreement(np.eye(4)[predicted], requested)
    assert report["per_class"] == [pytest.approx(24 / 25), 1.0, 0.0, 1.0]
    assert report["overall"] == pytest.approx(74 / 100)


@pytest.mark.skipif(not __import__("zoo.registry").saving.versions("classifier_mnist"),
                    reason="needs the exported classifier_mnist")
def test_sample_quality_of_a_model_against_the_floor():
    from training import evaluate
    from zoo import registry

    model = registry.build("dcgan_mnist", filters=4, latent_dim=8)  # untrained: noise
    result = evaluate.sample_quality(model, registry.get_preset("dcgan_mnist"), samples=300)
    model_q, floor = result["model"], result["floor"]
    assert model_q["samples"] == floor["samples"] == 300 and model_q["reference"] == 10000
    # real digits sit far closer to the test set than an untrained generator's output
    assert floor["fid"] < model_q["fid"] / 10
    # its near-identical grey images cover none of the data's variety
    assert floor["recall"] > 0.5 > model_q["recall"]
    assert floor["mode_coverage"]["classes_covered"] == 10

    conditional = registry.build("cgan_mnist", filters=4, latent_dim=8)
    agreement = evaluate.sample_quality(conditional, registry.get_preset("cgan_mnist"),
                                        samples=100)["label_agreement"]
    assert len(agreement["per_class"]) == 10 and 0.0 <= agreement["overall"] <= 1.0
    from training import model_card
    lines = model_card._quality_lines({**result, "label_agreement": agreement})
    assert any(line.startswith("Label agreement: the classifier names the requested class")
               for line in lines)


@pytest.mark.skipif(not all(__import__("zoo.registry").saving.versions(n)
                            for n in ("classifier_mnist", "dcgan_mnist", "vae2d_mnist")),
                    reason="needs the exported classifier_mnist, dcgan_mnist and vae2d_mnist")
def test_compare_takes_figures_from_a_card_only_when_they_match():
    import json

    from conftest import ROOT
    from training import compare

    card = json.loads((ROOT / "exported" / "dcgan_mnist" / "metrics.json").read_text())
    carded = compare.carded("dcgan_mnist", card["sample_quality"]["samples"])
    assert carded["model"] == card["sample_quality"]["model"] and carded["command"] == card["command"]
    assert compare.carded("dcgan_mnist", 300) is None  # another sample count: measure afresh


@pytest.mark.slow  # 15 s: it samples and embeds two models and the test set twice
@pytest.mark.skipif(not all(__import__("zoo.saving").saving.versions(n)
                            for n in ("classifier_mnist", "dcgan_mnist", "vae2d_mnist")),
                    reason="needs the exported classifier_mnist, dcgan_mnist and vae2d_mnist")
def test_compare_table_measures_every_family_beside_the_floor(tmp_path):
    from training import compare
    from zoo import saving

    gan = f"dcgan_mnist (v{saving.versions('dcgan_mnist')[-1]})"
    out = tmp_path / "results.md"
    compare.main(["--models", "vae2d_mnist,dcgan_mnist", "--samples", "300", "--sharpness_samples", "300",
                  "--out", str(out)])
    lines = out.read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| model")]
    names = [row.split(" | ")[0] for row in rows]
    assert names == ["| vae2d_mnist (v1)", "| vae2d_mnist (v1), decoder means E[x\\|z]",
                     f"| {gan}", "| real-data floor: mnist train vs test",
                     "| real-data floor: mnist train vs test"]
    assert [row.split(" | ")[2] for row in rows] == ["binarized", "8-bit", "8-bit", "8-bit", "binarized"]
    assert f"- {gan}: this command" in lines  # 300 samples: not the card's figures
    sharpness = {row.split(" | ")[0]: float(row.split(" | ")[-1].rstrip(" |")) for row in rows}
    # a VAE's decoder means are blurrier than the data; the training images are as sharp as the test
    assert sharpness["| vae2d_mnist (v1), decoder means E[x\\|z]"] < 0.8
    assert all(0.9 < float(row.split(" | ")[-1].rstrip(" |")) < 1.1 for row in rows if "floor" in row)


def test_sharpness_falls_when_images_are_blurred():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    sharp = np.zeros((20, 28, 28, 1), np.float32)
    for image in sharp:  # a bright bar per image, at a random place
        r, c = rng.integers(4, 20, 2)
        image[r:r + 4, c:c + 8] = 1.0
    kernel = tf.ones([5, 5, 1, 1]) / 25.0  # a 5x5 box blur keeps each bar's total brightness
    blurred = tf.nn.conv2d(sharp, kernel, 1, "SAME").numpy()
    as_uint8 = lambda x: (x * 255).round().astype(np.uint8)  # noqa: E731
    s_sharp, s_blur = quality.sharpness(as_uint8(sharp)), quality.sharpness(as_uint8(blurred))
    assert s_blur < s_sharp / 2
    # the same images in another order and batch size give the same figure
    assert quality.sharpness(as_uint8(sharp[::-1]), batch_size=3) == pytest.approx(s_sharp, rel=1e-5)
    assert quality.sharpness(np.zeros((4, 28, 28, 1), np.uint8)) == 0.0
