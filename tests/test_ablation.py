"""training.ablation: one command trains and measures a GAN per technique."""
import json

import pytest

from conftest import run_main
from training import ablation
from zoo import saving


def test_every_variant_adds_its_technique():
    args = ablation.parse_args(["dcgan_mnist", "--epochs", "3"])
    argvs = {v: ablation.train_argv(args, v, "runs/x") for v in ablation.VARIANTS}
    assert "ema_momentum=0.999" in argvs["ema"] and "ema_warmup=true" in argvs["ema"]
    assert "spectral_norm=true" in argvs["spectral_norm"] and "ema_warmup=true" in argvs["all"]
    assert "r1_weight=10" in argvs["r1"] and argvs["ttur"][-2:] == ["--d_learning_rate", "4e-4"]
    assert argvs["minibatch"][-2:] == ["--set", "minibatch=discrimination"]
    assert argvs["code"][-2:] == ["--set", "latent_code=10"] and "latent_code=10" not in argvs["all"]
    assert argvs["minibatch_code"][-4:] == ["--set", "minibatch=discrimination", "--set", "latent_code=10"]
    assert all(flag in argvs["all"] for flag in ("ema_momentum=0.999", "spectral_norm=true",
                                                 "r1_weight=10", "--d_learning_rate",
                                                 "minibatch=discrimination"))
    assert argvs["plain"] == ["dcgan_mnist", "--output_dir", "runs/x", "--seed", "0", "--verbose", "2",
                              "--epochs", "3"]
    for bad in (["vae_mnist"], ["dcgan_mnist", "--variants", "plain,dropout"]):
        with pytest.raises(SystemExit):
            ablation.parse_args(bad)


@pytest.mark.slow  # a minute: trains and measures each variant
@pytest.mark.skipif(not saving.versions("classifier_mnist"), reason="needs the exported classifier_mnist")
def test_ablation_trains_each_variant_once_and_tables_their_figures(tmp_path):
    args = ["dcgan_mnist", "--variants", "plain,ema", "--epochs", 1, "--steps_per_epoch", 2,
            "--train_examples", 128, "--batch_size", 32, "--samples", 100, "--set", "filters=4",
            "--set", "latent_dim=12", "--output_dir", tmp_path / "runs", "--out", tmp_path / "a.md",
            "--verbose", 0]
    result = run_main("training.ablation", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / "a.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| plain") or line.startswith("| ema")]
    assert len(rows) == 2 and "| real-data floor |" in text and "python -m training.ablation" in text
    assert saving.load_trained(tmp_path / "runs" / "dcgan_mnist" / "ema").ema_momentum == 0.999
    record = json.loads((tmp_path / "a.json").read_text())  # what the model cards show
    assert [r["variant"] for r in record["rows"]] == ["plain", "ema"]
    assert all(f"| {r['model']['fid']:.2f} |" in text for r in record["rows"])
    assert record["command"] in text and record["floor"]["fid"] >= 0
    model_file = tmp_path / "runs" / "dcgan_mnist" / "plain" / "model.keras"
    before = model_file.stat().st_mtime_ns
    again = run_main("training.ablation", *args)  # finished runs are measured, not retrained
    assert again.returncode == 0 and model_file.stat().st_mtime_ns == before
    # a new variant's row joins the record: the others are kept, both commands named
    code = [a if a != "plain,ema" else "code" for a in args]
    result = run_main("training.ablation", *code)
    assert result.returncode == 0, result.stderr[-2000:]
    merged = json.loads((tmp_path / "a.json").read_text())
    assert [r["variant"] for r in merged["rows"]] == ["plain", "ema", "code"]
    assert merged["rows"][:2] == record["rows"] and model_file.stat().st_mtime_ns == before
    assert [r["variants"] for r in merged["runs"]] == [["plain", "ema"], ["code"]]
    text = (tmp_path / "a.md").read_text()
    assert "| code | InfoGAN's 10-way categorical code |" in text and ", then `" in text
    assert saving.load_trained(tmp_path / "runs" / "dcgan_mnist" / "code").latent_code == 10


def test_rows_of_an_earlier_record_are_kept_only_when_measured_with_the_same_settings(tmp_path):
    path = tmp_path / "a.json"
    old = dict(preset="dcgan_mnist", command="python -m training.ablation dcgan_mnist --epochs 2",
               wall_time_s=9, seed=0, samples=10000, epochs=2, rows=[dict(variant="plain")])
    path.write_text(json.dumps(old))
    same = ablation.parse_args(["dcgan_mnist", "--epochs", "2", "--variants", "code"])
    record = ablation.earlier_record(path, same)  # a record older than "runs": its one command
    assert record["runs"] == [dict(command=old["command"], wall_time_s=9, variants=["plain"])]
    for other in (["--epochs", "3"], ["--epochs", "2", "--set", "filters=8"], ["--epochs", "2", "--seed", "1"],
                  ["--epochs", "2", "--samples", "100"]):
        assert ablation.earlier_record(path, ablation.parse_args(["dcgan_mnist", *other])) is None, other
    assert ablation.earlier_record(tmp_path / "none.json", same) is None
