"""Model cards: every exported model has one, and its figures reproduce.

The reproduction runs the card's own evaluation command on the full test set
(minutes per model), so it is marked slow: run it with `pytest -m slow`.
"""
import json
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, run_module
from training import evaluate
from training.model_card import DESCRIPTION_KEYS, model_card
from zoo import registry, saving

EXPORTED = [n for n in registry.list_models() if saving.versions(n)]


@pytest.mark.parametrize("name", EXPORTED)
def test_card_exists_and_matches_latest_version(name):
    card = (ROOT / "exported" / name / "MODEL_CARD.md").read_text()
    metrics = json.loads((ROOT / "exported" / name / "metrics.json").read_text())
    assert metrics["version"] == saving.versions(name)[-1], "card is for an older version"
    headline = [f"{metrics[k]:.2f}" for k in ("test_nll_iwae", "test_nll") if k in metrics]
    headline += [f"{100 * metrics['test_accuracy']:.2f}%"] if "test_accuracy" in metrics else []
    if "sample_quality" in metrics:
        headline.append(f"{metrics['sample_quality']['model']['fid']:.3f}")
    for row in metrics.get("translation", {}).get("rows", {}).values():
        headline += [f"{row['psnr']:.2f}"] if "psnr" in row else []
        headline.append(f"{100 * row['accuracy']:.2f}%")
    assert headline and all(h in card for h in headline), headline
    assert metrics["command"] in card and "python -m training.train" in card


@pytest.mark.parametrize("name", EXPORTED)
def test_card_is_what_the_generator_writes(name):
    """Re-rendering a card from its metrics.json gives the committed text."""
    folder = saving.version_path(name)
    metrics = json.loads((folder.parent / "metrics.json").read_text())
    model = saving.load_trained(folder)
    description = evaluate.describe(model, registry.get_preset(name), name, int(folder.name))
    card = model_card(metrics, saving.train_info(folder), description)
    assert card == (folder.parent / "MODEL_CARD.md").read_text()


DESCRIPTION = dict(
    name="pixelcnn_mnist", version=3, summary="A Gated PixelCNN", dataset="mnist", form="binary",
    binarization_seed=1234, architecture="`zoo.X` with 10 parameters: parts.", config={"filters": 4},
    pixels=784, objective=None, signatures=["sample", "log_prob"], serving_note="Exact.",
    pictures=[("../../docs/images/pixelcnn_mnist/samples.png", "samples")])
RESULTS = dict(test_images=10000, eval_wall_time_s=1.5, command="python -m training.evaluate x",
               test_nll=80.3149, test_nll_stderr=0.2, test_bits_per_dim=0.14778)
TRAIN_INFO = dict(command="python -m training.train pixelcnn_mnist", epochs_done=24, replicas=1,
                  wall_time_s=3600, hardware="2 x CPU", versions={},
                  config=dict(batch_size=64, learning_rate=1e-3, final_lr_fraction=0.05, seed=0,
                              strategy="default", ema_momentum=0.9995, dtype_policy="mixed_bfloat16"))


def test_model_card_renders_without_tensorflow():
    """The card renders in a process where TensorFlow cannot even be imported."""
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); sys.modules['tensorflow'] = None\n"
              "from training.model_card import model_card\n"
              f"print(model_card({RESULTS!r}, {TRAIN_INFO!r}, {DESCRIPTION!r}))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    card = result.stdout
    assert card == model_card(RESULTS, TRAIN_INFO, DESCRIPTION) + "\n"
    assert card.startswith("# pixelcnn_mnist (version 3)")
    assert "| NLL, exact (nats/image) | 80.31 +- 0.20 |" in card
    assert "NLL / (784 ln 2)" in card and "| bits per dimension | 0.1478 |" in card
    assert "stateless seed (1234, i)" in card and "Table 4: PixelCNN 81.30" in card
    assert "precision policy mixed_bfloat16 (evaluated in float32)" in card
    assert "momentum 0.9995" in card and "(its averaged weights)." in card
    assert "![samples](../../docs/images/pixelcnn_mnist/samples.png)" in card
    assert "[docs/design.md](../../docs/design.md)" in card and (ROOT / "docs" / "design.md").is_file()


def test_model_card_names_what_its_description_lacks():
    with pytest.raises(KeyError, match="objective"):
        model_card(RESULTS, None, {k: v for k, v in DESCRIPTION.items() if k != "objective"})
    assert set(DESCRIPTION) == set(DESCRIPTION_KEYS)


def _figures(fid):
    return dict(fid=fid, kid=1.0, precision=0.7, recall=0.8, mode_coverage=dict(min_class_share=0.09))


ABLATION = dict(preset="dcgan_mnist", command="python -m training.ablation dcgan_mnist --epochs 2",
                wall_time_s=100, seed=0, samples=10000, epochs=2, classifier="classifier_mnist/2",
                floor=_figures(2.1), rows=[dict(variant="plain", adds="the preset's settings",
                                                model=_figures(40.0)),
                                           dict(variant="ema", adds="averaged generator",
                                                model=_figures(20.5))])


@pytest.mark.parametrize("name", ["dcgan_mnist", "lsgan_mnist"])
def test_gan_cards_show_the_ablation(name):
    card = model_card(RESULTS, TRAIN_INFO, dict(DESCRIPTION, name=name, ablation=ABLATION))
    assert "## Training techniques, one at a time" in card and ABLATION["command"] in card
    assert "| plain | the preset's settings | 40.00 |" in card and "| ema | averaged generator | 20.50 |" in card
    assert "| real-data floor | training vs test images | 2.10 |" in card and "2 epochs" in card
    assert ("Measured on this preset" in card) == (name == "dcgan_mnist")
    assert "Training techniques" not in model_card(RESULTS, TRAIN_INFO, DESCRIPTION)
    # rows measured by two commands: both named
    runs = [dict(command="python -m training.ablation dcgan_mnist --epochs 2", variants=["plain"],
                 wall_time_s=60),
            dict(command="python -m training.ablation dcgan_mnist --epochs 2 --variants ema",
                 variants=["ema"], wall_time_s=40)]
    card = model_card(RESULTS, TRAIN_INFO, dict(DESCRIPTION, name=name, ablation=dict(ABLATION, runs=runs)))
    assert (f"`{runs[0]['command']}` (plain; 60 s), then `{runs[1]['command']}` (ema; 40 s)" in card)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTED)
def test_card_figures_reproduce(name, tmp_path):
    metrics = json.loads((ROOT / "exported" / name / "metrics.json").read_text())
    args = shlex.split(metrics["command"])[3:]  # after "python -m training.evaluate"
    run_module("training.evaluate", *args, "--card", tmp_path / "CARD.md", timeout=3600)
    again = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test_nll_iwae", "test_nll", "test_bits_per_dim", "test_neg_elbo", "test_accuracy"):
        if key in metrics:
            assert again[key] == pytest.approx(metrics[key], abs=0.02), key
    if "sample_quality" in metrics:  # same seeds, same samples: the same figures
        for key in ("fid", "precision", "recall"):
            assert again["sample_quality"]["model"][key] == pytest.approx(
                metrics["sample_quality"]["model"][key], rel=0.02, abs=1e-3), key
