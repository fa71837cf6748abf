"""GAN training techniques one at a time: an ablation table from one command.

    python -m training.ablation dcgan_mnist [--variants plain,ema,...,minibatch_code,all]
        [--epochs N] [--samples 10000] [--output_dir runs/ablation] [--out FILE]
        [--set KEY=JSON ...] [--steps_per_epoch N] [--train_examples N] [--batch_size B]
        [--data_dir DIR]

Trains the preset once per variant with ``training.train`` (the preset's
settings, the same seed, data and schedule; each variant adds one technique,
``all`` adds every one), each in its own run folder under
``<output_dir>/<preset>/<variant>``: a finished run is kept and reused, a
killed one resumes from its backup when the command runs again. Then it
measures the sample quality of each variant's final model on the zoo
classifier's features (``training.evaluate.sample_quality``: FID, KID,
precision, recall, mode coverage, beside the real-data floor) and writes a
Markdown table to ``--out`` (default ``docs/ablation_<preset>.md``) naming
this command, and the same figures beside it as JSON (``.json``), which
``training.evaluate`` puts into the adversarial models' cards. Rows of
variants not named in ``--variants`` are kept from the record already at
``--out`` when it was measured with the same settings (preset, seed, epochs,
samples, ``--set`` and data options), so a new technique's row can be added
without retraining the others; the table then names every command that made
its rows.

The variants:

- ``plain``: the preset as it is;
- ``ema``: sample from an exponential moving average of the generator's
  weights, momentum 0.999 warmed up as the zoo's other averages (Karras et
  al. 2018; Yazici et al. 2019);
- ``spectral_norm``: spectrally normalized discriminator (Miyato et al. 2018);
- ``r1``: R1 penalty on real images, gamma = 10 (Mescheder et al. 2018);
- ``ttur``: the two time-scale update rule, generator 1e-4 and discriminator
  4e-4 (Heusel et al. 2017; the rates of Zhang et al. 2019, sec. 5);
- ``minibatch``: minibatch discrimination in D (Salimans et al. 2016, sec.
  3.2), the lecture's remedy for mode collapse;
- ``code``: InfoGAN's 10-way categorical latent code, recovered by a second
  head of D (Chen et al. 2016), so G can switch between digit classes;
- ``minibatch_code``: minibatch discrimination and the code together;
- ``all``: ema, spectral_norm, r1, ttur and minibatch together (the row
  predates ``code``).
"""
import argparse
import json
import pathlib
import shlex
import sys
import time

from training import evaluate, model_card
from training import train as train_lib
from zoo import registry, saving

VARIANTS = {
    "plain": ([], "the preset's settings"),
    "ema": (["--set", "ema_momentum=0.999", "--set", "ema_warmup=true"],
            "averaged generator, momentum 0.999 (warmed up)"),
    "spectral_norm": (["--set", "spectral_norm=true"], "spectral normalization of D"),
    "r1": (["--set", "r1_weight=10"], "R1 penalty, gamma 10"),
    "ttur": (["--learning_rate", "1e-4", "--d_learning_rate", "4e-4"], "TTUR: G 1e-4, D 4e-4"),
    "minibatch": (["--set", "minibatch=discrimination"], "minibatch discrimination in D"),
    "code": (["--set", "latent_code=10"], "InfoGAN's 10-way categorical code"),
    "minibatch_code": (["--set", "minibatch=discrimination", "--set", "latent_code=10"],
                       "minibatch discrimination and the code"),
}
VARIANTS["all"] = ([flag for name in ("ema", "spectral_norm", "r1", "ttur", "minibatch")
                    for flag in VARIANTS[name][0]],
                   "ema to minibatch together")
SETTINGS = ("preset", "seed", "epochs", "samples", "set", "steps_per_epoch", "train_examples",
            "batch_size")  # what rows measured by different commands must share


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.ablation", description=__doc__.split("\n")[0])
    p.add_argument("preset", help="an adversarial preset, e.g. dcgan_mnist")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--epochs", type=int, help="default: the preset's")
    p.add_argument("--samples", type=int, default=10000, help="samples per variant for the metrics")
    p.add_argument("--output_dir", default="runs/ablation")
    p.add_argument("--out", help="the Markdown table (default docs/ablation_<preset>.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="a model argument for every variant (repeatable)")
    for flag in ("--steps_per_epoch", "--train_examples", "--batch_size"):
        p.add_argument(flag, type=int)
    p.add_argument("--data_dir")
    p.add_argument("--verbose", type=int, default=2)
    args = p.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    if registry.get_preset(args.preset).model.family != "adversarial":
        p.error(f"{args.preset} is not adversarial: the ablation compares GAN training techniques")
    return args


def train_argv(args, variant, folder):
    """The ``training.train`` arguments of one variant's run."""
    argv = [args.preset, "--output_dir", str(folder), "--seed", str(args.seed),
            "--verbose", str(args.verbose)]
    for flag in ("epochs", "steps_per_epoch", "train_examples", "batch_size", "data_dir"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag}", str(getattr(args, flag))]
    for item in args.set:
        argv += ["--set", item]
    return argv + VARIANTS[variant][0]


def finished(folder):
    return (folder / "train_info.json").exists() and not (folder / "backup").exists()


def settings(args):
    """The settings a record's rows were measured with (``SETTINGS``), from the arguments."""
    return {key: list(args.set) if key == "set" else getattr(args, key) for key in SETTINGS}


def earlier_record(path, args):
    """The record at ``path`` when its settings are ``args``'s (a missing key: the default),
    else None, with its ``runs`` (``model_card.ablation_runs``)."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    defaults = {key: [] if key == "set" else None for key in SETTINGS}
    if any(record.get(key, defaults[key]) != value for key, value in settings(args).items()):
        return None
    return dict(record, runs=model_card.ablation_runs(record))


def main(argv=None):
    args = parse_args(argv)
    preset = registry.get_preset(args.preset)
    base = pathlib.Path(args.output_dir) / args.preset
    out = pathlib.Path(args.out or f"docs/ablation_{args.preset}.md")
    start, rows = time.time(), []
    for variant in args.variants.split(","):
        folder = base / variant
        if not finished(folder):
            train_lib.main(train_argv(args, variant, folder))
        model = saving.load_trained(folder)
        quality = evaluate.sample_quality(model, preset, args.samples, args.data_dir, seed=args.seed)
        if quality is None:
            sys.exit(f"error: no exported classifier_{preset.dataset} to measure samples with")
        rows.append((variant, VARIANTS[variant][1], quality))
        print(f"{variant}: FID {quality['model']['fid']:.2f}", file=sys.stderr, flush=True)
    command = shlex.join(["python", "-m", "training.ablation", *(sys.argv[1:] if argv is None else argv)])
    this_run = dict(command=command, wall_time_s=round(time.time() - start),
                    variants=[v for v, _, _ in rows])
    measured = {v: dict(variant=v, adds=adds, model=q["model"]) for v, adds, q in rows}
    earlier = earlier_record(out.with_suffix(".json"), args)
    runs = [this_run]
    if earlier is not None:
        kept = {r["variant"]: r for r in earlier["rows"] if r["variant"] not in measured}
        measured = {**kept, **measured}
        runs = [dict(r, variants=[v for v in r["variants"] if v in kept])
                for r in earlier["runs"]] + runs
        runs = [r for r in runs if r["variants"]]
    record = dict(settings(args), command=runs[-1]["command"], runs=runs,
                  wall_time_s=sum(r["wall_time_s"] for r in runs),
                  classifier=rows[0][2]["classifier"], floor=rows[0][2]["floor"],
                  rows=[dict(measured[v], adds=VARIANTS[v][1]) for v in VARIANTS if v in measured])
    lines = [f"# {args.preset}: GAN training techniques, one at a time", "",
             f"Made by {model_card.ablation_commands(record)}: each variant trained from the same "
             f"seed ({args.seed}) with the preset's settings plus what its row adds, run folders "
             f"under `{base}`; {args.samples} samples per variant against the 10,000 test images "
             f"on the features of `exported/{rows[0][2]['classifier']}`.", ""]
    lines += model_card.ablation_table([(r["variant"], r["adds"], r["model"]) for r in record["rows"]],
                                       record["floor"]) + [""]
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
