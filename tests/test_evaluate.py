"""Evaluation command: figures and the model card."""
import json

from conftest import run_main, run_module


def test_evaluate_run_folder_writes_card(tiny_run):
    run_module("training.evaluate", tiny_run, "--take", 200, "--k", 50, "--samples", 300)
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["iwae_k"] == 50 and metrics["test_images"] == 200
    # The IWAE bound is at least as tight as the ELBO (up to Monte Carlo noise).
    assert metrics["test_nll_iwae"] <= metrics["test_neg_elbo"] + 1.0
    assert abs(metrics["test_bits_per_dim"] * 784 * 0.6931471805599453 - metrics["test_nll_iwae"]) < 1e-3
    card = (tiny_run / "MODEL_CARD.md").read_text()
    assert f"{metrics['test_nll_iwae']:.2f}" in card and "k = 50" in card
    assert "python -m training.train vae_mnist" in card and "--k 50" in card
    # the zoo classifier scores its samples beside the real-data floor
    assert metrics["sample_quality"]["samples"] == 300 and "## Sample quality" in card


def test_evaluate_unknown_target_is_clear(tmp_path):
    result = run_main("training.evaluate", tmp_path / "missing")
    assert result.returncode != 0 and "No Keras model" in result.stderr


def test_began_cards_show_the_convergence_curve():
    from training import model_card

    history = [{"convergence": 0.30, "val_convergence": 0.28, "k": 0.01},
               {"convergence": 0.20, "val_convergence": 0.21, "k": 0.02}]
    lines = model_card._convergence_lines({"history": history})
    assert lines[0] == "## Convergence" and "| 2 | 0.2000 | 0.2100 | 0.0200 |" in lines
    assert model_card._convergence_lines({"history": [{"loss": 1.0}]}) == []  # not a BEGAN
