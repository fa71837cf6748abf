"""Trains a zoo preset with ``model.fit`` under a tf.distribute strategy.

    python -m training.train vae_mnist [--epochs N] [--batch_size B]
        [--learning_rate LR] [--seed S] [--output_dir DIR]
        [--strategy default|mirrored|multi_worker|tpu] [--data_dir DIR]
        [--dtype_policy float32|mixed_bfloat16|mixed_float16]
        [--init_from PATH [--init_grow | --init_networks NAME,...]]

The output folder gets ``model.keras`` (saved every epoch), ``backup/`` (so a
killed run started again with the same command resumes from its last finished
epoch), ``logs/`` (TensorBoard scalars and sample grids), ``samples/`` (a PNG
per epoch), ``history.csv`` and ``train_info.json``.
"""
import argparse
import dataclasses
import json
import pathlib
import shlex
import sys

import keras
import tensorflow as tf

from training import callbacks as cb
from training import config as config_lib
from training import data
from training import strategy as strategy_lib
from zoo import registry, saving, steps


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    p.add_argument("preset", help="zoo preset, e.g. vae_mnist")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch_size", type=int)
    p.add_argument("--learning_rate", type=float)
    p.add_argument("--final_lr_fraction", type=float, metavar="F",
                   help="cosine-decay the learning rate to F times itself by the last step "
                        "(default: the preset's; 1 keeps it constant)")
    p.add_argument("--d_learning_rate", type=float,
                   help="the discriminator's learning rate, if not --learning_rate (two time-scale "
                        "update rule; adversarial family)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", help="default: runs/<preset>")
    p.add_argument("--strategy", choices=config_lib.STRATEGIES, default="default")
    p.add_argument("--cpu_devices", type=int, default=0,
                   help="split the CPU into N logical devices (for mirrored on a CPU)")
    p.add_argument("--data_dir", help="folder with <dataset>/ original files (else $GENZOO_DATA_DIR)")
    p.add_argument("--steps_per_epoch", type=int)
    p.add_argument("--train_examples", type=int, help="use only the first N training images")
    p.add_argument("--jit_compile", action="store_true", help="XLA-compile the train step")
    p.add_argument("--dtype_policy", choices=config_lib.DTYPE_POLICIES,
                   help="precision policy (default: the preset's, else float32); weights stay float32")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--init_from", metavar="PATH",
                   help="start from the weights of a run folder, .keras file or exported version "
                        "(fine-tuning, e.g. exported/vae_mnist/1); the architecture must match")
    p.add_argument("--init_grow", action="store_true",
                   help="with --init_from: the model there may have fewer layers (a PixelRNN's "
                        "num_blocks); they are copied into the first ones and the rest start as the "
                        "identity, so training continues from the same function, deeper")
    p.add_argument("--init_networks", metavar="NAME,...",
                   type=lambda text: tuple(n for n in text.split(",") if n),
                   help="with --init_from: copy only these networks of the model there (e.g. "
                        "generator or generator_ab,generator_ba: a GAN's generators with fresh "
                        "discriminators); each must match, the rest start fresh")
    p.add_argument("--ema_momentum", type=float, metavar="M",
                   help="validate, checkpoint and finish with an exponential moving average of "
                        "the weights (Polyak averaging), e.g. 0.999; 0 turns off a preset's; "
                        "not for the adversarial family")
    p.add_argument("--no_ema_warmup", dest="ema_warmup", action="store_false", default=None,
                   help="average with the momentum M from the first step (Keras's plain average) "
                        "instead of warming it up as min(M, (1 + n) / (10 + n)) after n updates")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a model argument, e.g. --set latent_dim=32 (repeatable)")
    p.add_argument("--verbose", type=int, default=1, help="0 silent, 1 progress bar, 2 a line per epoch")
    p.add_argument("--overwrite", action="store_true",
                   help="train afresh over a finished run in --output_dir")
    return p.parse_args(argv)


def config_from_args(args):
    preset = registry.get_preset(args.preset)
    if args.ema_momentum and preset.model.family == "adversarial":
        raise ValueError(f"--ema_momentum is for one-optimizer models; {args.preset} is adversarial "
                         "(two optimizers): average its generator with --set ema_momentum=M")
    if args.d_learning_rate and preset.model.family != "adversarial":
        raise ValueError(f"--d_learning_rate is for the adversarial family; {args.preset} has one "
                         "optimizer")
    values = config_lib.defaults_for(args.preset)
    for field in dataclasses.fields(config_lib.TrainConfig):
        value = getattr(args, field.name, None)
        if value is not None and field.name != "preset":
            values[field.name] = value
    if values.get("ema_momentum") == 0:
        values["ema_momentum"] = None
    values.setdefault("output_dir", str(pathlib.Path("runs") / args.preset))
    overrides = config_lib.parse_overrides(args.set)
    values["model_overrides"] = tuple(sorted(overrides.items()))
    return config_lib.TrainConfig(preset=args.preset, **values)


def _optimizer(cfg, updates, learning_rate=None):
    """The run's optimizer; ``updates``: how many times it will be applied in all.

    ``learning_rate``: the peak rate if not ``cfg.learning_rate``.
    """
    ema = dict(use_ema=True, ema_momentum=cfg.ema_momentum) if cfg.ema_momentum else {}
    peak = learning_rate or cfg.learning_rate
    if cfg.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(peak, **ema)
    else:
        rate = peak
        if cfg.final_lr_fraction != 1.0:
            rate = keras.optimizers.schedules.CosineDecay(
                peak, decay_steps=max(1, updates), alpha=cfg.final_lr_fraction)
        optimizer = keras.optimizers.Adam(rate, beta_1=cfg.adam_beta_1, beta_2=cfg.adam_beta_2,
                                          **ema)
    if cfg.ema_momentum and cfg.ema_warmup:
        _warm_up_average(optimizer)
    return optimizer


def _warm_up_average(optimizer):
    """Makes ``optimizer``'s Polyak average use ``zoo.steps.averaging_momentum``.

    Keras applies one momentum from the first step on, so a run shorter than a
    few times 1 / (1 - M) steps ends with part of its initial weights in the
    average. Only this instance's update is replaced: the optimizer stays the
    Keras class it is, and a saved model loads without genzoo.
    """
    def update(trainable_variables):
        momentum = steps.averaging_momentum(optimizer.ema_momentum, optimizer.iterations)
        for var, average in zip(trainable_variables, optimizer._model_variables_moving_average,
                                strict=True):
            if average is not None:
                m = tf.cast(momentum, var.dtype)
                average.assign(m * average + (1.0 - m) * var)

    optimizer._update_model_variables_moving_average = update


def compile_model(model, cfg, steps_per_epoch):
    """Compiles ``model``: one optimizer, or one per player for the adversarial family."""
    updates = cfg.epochs * steps_per_epoch
    if model.family == "adversarial":
        model.compile(d_optimizer=_optimizer(cfg, updates * model.d_steps, cfg.d_learning_rate),
                      g_optimizer=_optimizer(cfg, updates), jit_compile=cfg.jit_compile)
    else:
        model.compile(optimizer=_optimizer(cfg, updates), jit_compile=cfg.jit_compile)


class InitFromError(ValueError):
    """``--init_from`` names no loadable model, or one of another architecture."""


def initialize_from(model, path, grow=False, networks=()):
    """Copies the weights of the model at ``path`` into ``model``; returns where it started.

    ``path``: a run folder, a .keras file or an exported version. The result,
    the run record's ``init_from``, holds ``path`` and the training record
    beside it (``train_info``, or None), so that a model card can say what
    the model was trained on before. With ``grow``, the model at ``path`` may
    be shallower: ``model.grow_from`` (the PixelRNNs) copies it into the first
    layers and starts the others as the identity, and the result also holds
    ``grown_from_blocks``, the source's depth. With ``networks``, only those
    sub-networks (attributes of both models) are copied, each of which must
    match, and the result also holds ``networks``.
    """
    try:
        source = saving.load_trained(path)
    except (FileNotFoundError, ValueError) as err:
        raise InitFromError(f"--init_from {path}: {err}") from err
    start = dict(path=str(path), train_info=saving.train_info(path))
    if grow:
        if not hasattr(model, "grow_from"):
            raise InitFromError(f"--init_grow: {type(model).__name__} cannot grow; "
                                "only the PixelRNNs (row_lstm_*, diagonal_bilstm_*) can")
        try:
            start["grown_from_blocks"] = model.grow_from(source)
        except ValueError as err:
            raise InitFromError(f"--init_from {path} --init_grow: {err}") from err
        return start
    if networks:
        for name in networks:
            mine, theirs = getattr(model, name, None), getattr(source, name, None)
            if not isinstance(mine, keras.Model) or not isinstance(theirs, keras.Model):
                raise InitFromError(f"--init_networks: {name!r} is not a network of both "
                                    f"{type(model).__name__} and the model at {path}")
            have = [tuple(w.shape) for w in theirs.weights]
            if have != [tuple(w.shape) for w in mine.weights]:
                raise InitFromError(f"--init_networks: the {name} at {path} has other weights "
                                    f"than this run's ({len(have)} arrays: {have[:3]} ...)")
            mine.set_weights(theirs.get_weights())
        start["networks"] = list(networks)
        return start
    have, want = saving.architecture(source, True), saving.architecture(model, True)
    if have != want:
        raise InitFromError(f"--init_from {path} holds {have}, but this run builds {want}: "
                            "the architectures must match (--init_grow deepens a PixelRNN)")
    model.set_weights(source.get_weights())
    return start


def train(cfg, verbose=1, command=None):
    """Runs ``cfg`` to completion (resuming a killed run); returns the History.

    ``command``: the command line the run's record names (default: this process's).
    """
    strategy = strategy_lib.make(cfg.strategy, cfg.cpu_devices)
    _, task_index, is_chief = strategy_lib.worker_info()
    keras.utils.set_random_seed(cfg.seed)
    preset = registry.get_preset(cfg.preset)
    out = pathlib.Path(cfg.output_dir)
    if not is_chief:  # other workers write where they cannot clash with the chief
        out = out / f"worker_{task_index}"
    out.mkdir(parents=True, exist_ok=True)

    split = "train" if cfg.train_examples is None else f"train[:{cfg.train_examples}]"
    train_ds = data.load(preset.dataset, split, preset.form, cfg.batch_size,
                         labels=preset.labels, seed=cfg.seed, data_dir=cfg.data_dir,
                         task=preset.task)
    test_ds = data.load(preset.dataset, "test", preset.form, cfg.batch_size,
                        labels=preset.labels, data_dir=cfg.data_dir, task=preset.task)
    examples = data.num_examples(preset.dataset, "train", cfg.data_dir)
    if cfg.train_examples is not None:
        examples = min(examples, cfg.train_examples)
    steps = cfg.steps_per_epoch or examples // cfg.batch_size
    if cfg.steps_per_epoch:
        train_ds = train_ds.repeat()
        test_ds = test_ds.take(cfg.steps_per_epoch)

    reference = None  # test images for the sample grids of models that do not sample
    for batch in data.load(preset.dataset, "test", "uint8", 64, labels=False,
                           data_dir=cfg.data_dir, task=preset.task).take(1):
        reference = (batch["a"] if preset.task else batch).numpy().astype("uint8")

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(cfg.dtype_policy)  # layers take it when built
    try:
        with strategy.scope():
            model = registry.build(cfg.preset, **dict(cfg.model_overrides))
            compile_model(model, cfg, steps)
            # A resumed run's backup, restored when fit starts, overrides these weights.
            start = (initialize_from(model, cfg.init_from, cfg.init_grow, cfg.init_networks)
                     if cfg.init_from else None)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    record = dict(
        preset=cfg.preset,
        command=command or "python -m training.train " + shlex.join(sys.argv[1:]),
        config=dataclasses.asdict(cfg),
        strategy=type(strategy).__name__,
        replicas=strategy.num_replicas_in_sync,
        hardware=cb.hardware(),
        versions=dict(tensorflow=tf.__version__, keras=keras.__version__),
    )
    if start:
        record["init_from"] = start
    callbacks = [
        # The record comes before the backup: a run killed between the two redoes an epoch
        # the record already holds (on resume its history is cut back to the backup's), while
        # the other order would lose one epoch's logs.
        cb.RunRecord(out / "train_info.json", record),
        # The backup comes next so that it saves the raw weights; SwapEMAWeights then puts
        # the averaged ones in place for the checkpoint and the epoch's samples (it validates
        # with them too) and swaps back when the next epoch begins.
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.ema_momentum else []),
        keras.callbacks.ModelCheckpoint(str(out / "model.keras")),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(out / "logs")),
        keras.callbacks.TerminateOnNaN(),
        cb.SampleGrid(out / "samples", log_dir=out / "logs" / "samples", reference=reference),
    ]
    history = model.fit(
        train_ds, epochs=cfg.epochs, steps_per_epoch=steps if cfg.steps_per_epoch else None,
        validation_data=test_ds, callbacks=callbacks, verbose=verbose, shuffle=False,
    )
    return history


def check_resume(out, cfg):
    """Raises ValueError unless ``cfg`` keeps the settings of the unfinished run in ``out``.

    A resumed run must keep its settings: its backup holds the optimizer state and
    the epoch count of the learning-rate schedule they made. Settings the run's
    record does not name (it predates them) are not compared.
    """
    record = out / "train_info.json"
    try:
        stored = json.loads(record.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot read the run record {record} ({err!r}); move the folder "
                         "away or give another --output_dir") from err
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    changed = [f"{key} was {stored[key]!r}, now {value!r}" for key, value in now.items()
               if key in stored and stored[key] != value]
    if changed:
        raise ValueError(f"{out} holds an unfinished run with other settings ({'; '.join(changed)}); "
                         "resume it with the command in its train_info.json, or give another "
                         "--output_dir")


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (KeyError, ValueError) as err:
        sys.exit(f"error: {err.args[0]}")
    out = pathlib.Path(cfg.output_dir)
    finished = (out / "train_info.json").exists() and not (out / "backup").exists()
    if finished and not args.overwrite:
        sys.exit(f"error: {out} holds a finished run (model.keras, train_info.json); give another "
                 "--output_dir, or --overwrite to train afresh there")
    if finished:
        for name in ("train_info.json", "history.csv"):
            (out / name).unlink(missing_ok=True)
    elif (out / "backup").exists() and (out / "train_info.json").exists():
        try:
            check_resume(out, cfg)
        except ValueError as err:
            sys.exit(f"error: {err}")
    try:
        train(cfg, verbose=args.verbose, command="python -m training.train " + shlex.join(
            sys.argv[1:] if argv is None else [str(a) for a in argv]))
    except (data.DataUnavailableError, InitFromError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
