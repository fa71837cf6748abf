"""Model cards: every exported model has one, and its figures reproduce.

The reproduction runs the card's own evaluation command on the full test set
(minutes per model), so it is marked slow: run it with `pytest -m slow`.
"""
import json
import shlex

import pytest

from conftest import ROOT, run_module
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
    assert headline and all(h in card for h in headline), headline
    assert metrics["command"] in card and "python -m training.train" in card


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
