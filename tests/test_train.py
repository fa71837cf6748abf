"""The training command: outputs, strategies and resuming after a kill."""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, read_history, run_main, run_module
from training import config as config_lib
from training import model_card, train
from zoo import saving

# Settings shared by the strategy runs: plain SGD so that a wrong gradient scale
# across replicas shows up (Adam would hide it), a small learning rate so that
# the runs stay close despite their different reparameterization noise.
STRATEGY_ARGS = ["--optimizer", "sgd", "--learning_rate", 5e-4, "--epochs", 2,
                 "--steps_per_epoch", 10, "--train_examples", 2000, "--batch_size", 64,
                 "--seed", 0, "--verbose", 0]
# Loss tolerance (nats/image) between strategies after 20 steps. Measured:
# default vs mirrored differ by ~0.1; summing replica gradients without
# scaling the loss (a 2x step) moves the loss by ~3.3.
TOLERANCE = 0.5


def _final_loss(out):
    return read_history(out / "history.csv")[-1]["loss"]


@pytest.fixture(scope="module")
def default_loss(tmp_path_factory):
    out = tmp_path_factory.mktemp("default")
    run_module("training.train", "vae2d_mnist", "--output_dir", out, *STRATEGY_ARGS)
    history = read_history(out / "history.csv")
    assert history[-1]["loss"] < history[0]["loss"] - 2 * TOLERANCE, "training did not move"
    return history[-1]["loss"]


def test_training_run_writes_its_outputs(tiny_run):
    assert (tiny_run / "model.keras").is_file()
    assert len(read_history(tiny_run / "history.csv")) == 2
    assert sorted(p.name for p in (tiny_run / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    tags = set()
    for events in (tiny_run / "logs").rglob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            tags.update(v.tag for v in event.summary.value)
    assert {"samples", "epoch_loss", "epoch_kl"} <= tags, tags
    info = json.loads((tiny_run / "train_info.json").read_text())
    assert info["epochs_done"] == 2 and info["wall_time_s"] > 0
    assert info["command"].startswith("python -m training.train vae_mnist")


def test_a_finished_run_is_not_overwritten(tiny_run):
    before = (tiny_run / "model.keras").read_bytes()
    result = run_main("training.train", "vae_mnist", "--epochs", 1, "--output_dir", tiny_run)
    assert result.returncode != 0 and "finished run" in result.stderr
    assert (tiny_run / "model.keras").read_bytes() == before


def test_unknown_preset_lists_valid_ones():
    result = run_main("training.train", "vae_cifar")
    assert result.returncode != 0
    assert "vae_mnist" in result.stderr and "Unknown preset" in result.stderr


def test_preset_defaults_give_way_to_flags():
    from training import train

    cfg = train.config_from_args(train.parse_args(["pixelcnn_mnist"]))
    assert (cfg.epochs, cfg.dtype_policy, cfg.ema_momentum) == (24, "mixed_bfloat16", 0.9995)
    args = ["pixelcnn_mnist", "--epochs", "2", "--dtype_policy", "float32", "--ema_momentum", "0"]
    cfg = train.config_from_args(train.parse_args(args))
    assert (cfg.epochs, cfg.dtype_policy, cfg.ema_momentum) == (2, "float32", None)
    cfg = train.config_from_args(train.parse_args(["vae_mnist"]))
    assert (cfg.dtype_policy, cfg.ema_momentum) == ("float32", None)


def test_set_replaces_model_arguments_as_json_values():
    from training import train

    args = ["pixelcnn_mnist", "--set", "kernel_size=5", "--set", "image_shape=[28, 28, 1]",
            "--set", "likelihood=categorical"]
    cfg = train.config_from_args(train.parse_args(args))
    assert dict(cfg.model_overrides) == {"kernel_size": 5, "image_shape": [28, 28, 1],
                                         "likelihood": "categorical"}
    with pytest.raises(ValueError, match="KEY=JSON.*'kernel_size'"):
        train.config_from_args(train.parse_args(["pixelcnn_mnist", "--set", "kernel_size"]))


def test_mirrored_strategy_matches_single_device(tmp_path, default_loss):
    run_module("training.train", "vae2d_mnist", "--strategy", "mirrored", "--cpu_devices", 2,
               "--output_dir", tmp_path, *STRATEGY_ARGS)
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert info["strategy"] == "MirroredStrategy" and info["replicas"] == 2
    assert abs(_final_loss(tmp_path) - default_loss) < TOLERANCE


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_strategy_matches_single_device(tmp_path, default_loss):
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "training.train", "vae2d_mnist", "--strategy", "multi_worker",
             "--output_dir", str(tmp_path), *map(str, STRATEGY_ARGS)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs[0][-3000:] + outputs[1][-3000:]
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert info["config"]["strategy"] == "multi_worker" and info["replicas"] == 2
    assert (tmp_path / "worker_1" / "history.csv").exists(), "worker 1 wrote over the chief"
    assert abs(_final_loss(tmp_path) - default_loss) < TOLERANCE


def test_killed_run_resumes_from_last_epoch(tmp_path):
    args = [sys.executable, "-m", "training.train", "vae2d_mnist", "--epochs", 8,
            "--steps_per_epoch", 40, "--train_examples", 2000, "--batch_size", 50,
            "--output_dir", str(tmp_path), "--verbose", 2]
    args = [str(a) for a in args]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    meta = tmp_path / "backup" / "training_metadata.json"
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        if meta.exists() and json.loads(meta.read_text() or "{}").get("epoch", 0) >= 2:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the first run ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = json.loads(meta.read_text())["epoch"]
    assert 2 <= done < 8

    changed = run_main("training.train", *args[3:], "--learning_rate", "0.01")
    assert changed.returncode != 0 and "learning_rate was 0.001, now 0.01" in changed.stderr
    assert json.loads(meta.read_text())["epoch"] == done, "the refused restart touched the backup"

    second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    epochs = [line.split()[1] for line in second.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs[0] == f"{done + 1}/8", f"restart began at {epochs[0]}, backup had {done} epochs"
    assert epochs[-1] == "8/8"
    history = read_history(tmp_path / "history.csv")
    assert [int(row["epoch"]) for row in history][-1] == 7
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert info["starts"] == 2 and info["epochs_done"] == 8
    # the per-epoch record survives the kill: one entry per epoch, the last one the final logs
    assert len(info["history"]) == 8 and info["history"][-1] == info["final_metrics"]


def test_mixed_precision_run_trains_in_bfloat16_and_exports_in_float32(tmp_path):
    # A VAE: TFP distributions on bfloat16 network outputs fail unless the model
    # hands them float32 parameters.
    run_module("training.train", "vae_mnist", "--dtype_policy", "mixed_bfloat16", "--epochs", 1,
               "--steps_per_epoch", 5, "--train_examples", 500, "--batch_size", 50,
               "--output_dir", tmp_path, "--verbose", 0)
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert info["config"]["dtype_policy"] == "mixed_bfloat16"
    assert all(v == v for v in info["final_metrics"].values())  # no NaN
    import keras

    import zoo.registry  # noqa: F401  (registers the zoo's classes)
    trained = keras.saving.load_model(tmp_path / "model.keras")
    assert trained.dtype_policy.name == "mixed_bfloat16"
    loaded = saving.load_trained(tmp_path)
    assert {layer.compute_dtype for layer in loaded._flatten_layers()} == {"float32"}


def test_model_card_follows_a_chain_of_fine_tunes():
    def record(epochs, command, start=None):
        info = dict(epochs_done=epochs, command=command, wall_time_s=1.0,
                    config=dict(learning_rate=1e-3, batch_size=64, final_lr_fraction=0.05))
        if start:
            info["init_from"] = dict(path=start[0], train_info=start[1])
        return info

    first = record(20, "python -m training.train p")
    second = record(15, "python -m training.train p --init_from v1", ("v1", first))
    third = record(12, "python -m training.train p --init_from v2", ("v2", second))
    lines = model_card._init_from_lines(third)
    assert len(lines) == 2 and lines[0].endswith("; 47 epochs in all")
    assert "`v2`: the weights after 15 epochs of `python -m training.train p --init_from v1`" in lines[0]
    assert "`v2` itself started from `v1`: the weights after 20 epochs" in lines[1]
    # A starting point without a training record: no total is claimed.
    second["init_from"]["train_info"] = None
    lines = model_card._init_from_lines(third)
    assert "`v1`: weights with no training record" in lines[1] and "in all" not in lines[0]


def test_init_from_starts_at_the_given_weights_and_rejects_other_architectures(tiny_run, tmp_path):
    # Learning rate 0: the run's weights stay those it started from.
    result = run_main("training.train", "vae_mnist", "--init_from", tiny_run, "--optimizer", "sgd",
                      "--learning_rate", 0, "--epochs", 1, "--steps_per_epoch", 2, "--train_examples", 200,
                      "--batch_size", 50, "--output_dir", tmp_path / "ft", "--verbose", 0)
    assert result.returncode == 0, result.stderr[-2000:]
    start, tuned = saving.load_trained(tiny_run), saving.load_trained(tmp_path / "ft")
    for a, b in zip(start.get_weights(), tuned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    info = json.loads((tmp_path / "ft" / "train_info.json").read_text())
    assert info["init_from"]["path"] == str(tiny_run)
    assert info["init_from"]["train_info"]["epochs_done"] == 2
    assert "2 epochs of `python -m training.train vae_mnist" in "\n".join(model_card._init_from_lines(info))
    assert "3 epochs in all" in model_card._init_from_lines(info)[0]

    # the objective's weights are not the architecture: a fine-tune may change them
    beta = run_main("training.train", "vae_mnist", "--init_from", tiny_run, "--set", "beta=2.0",
                    "--epochs", 1, "--steps_per_epoch", 1, "--train_examples", 100, "--batch_size", 50,
                    "--output_dir", tmp_path / "beta", "--verbose", 0)
    assert beta.returncode == 0, beta.stderr[-2000:]
    assert saving.load_trained(tmp_path / "beta").beta == 2.0
    other = run_main("training.train", "vae2d_mnist", "--init_from", tiny_run, "--epochs", 1,
                     "--steps_per_epoch", 1, "--output_dir", tmp_path / "other")
    assert other.returncode != 0 and "architectures must match" in other.stderr, other.stderr[-2000:]
    missing = run_main("training.train", "vae_mnist", "--init_from", tmp_path / "nothing",
                       "--epochs", 1, "--steps_per_epoch", 1, "--output_dir", tmp_path / "m")
    assert missing.returncode != 0 and "No Keras model" in missing.stderr, missing.stderr[-2000:]


def test_init_grow_deepens_a_pixelrnn_from_the_same_function(tiny_run, tmp_path):
    common = ("--set", "filters=4", "--epochs", 1, "--steps_per_epoch", 1, "--train_examples", 64,
              "--batch_size", 32, "--verbose", 0)
    first = run_main("training.train", "row_lstm_mnist", "--set", "num_blocks=1", *common,
                     "--output_dir", tmp_path / "a")
    assert first.returncode == 0, first.stderr[-2000:]
    # Learning rate 0: the grown run ends where it started.
    grown = run_main("training.train", "row_lstm_mnist", "--set", "num_blocks=3", "--init_from",
                     tmp_path / "a", "--init_grow", "--optimizer", "sgd", "--learning_rate", 0,
                     "--ema_momentum", 0, *common, "--output_dir", tmp_path / "b")
    assert grown.returncode == 0, grown.stderr[-2000:]
    a, b = saving.load_trained(tmp_path / "a"), saving.load_trained(tmp_path / "b")
    assert (a.num_blocks, b.num_blocks) == (1, 3)
    x = (np.random.default_rng(0).random((3, 28, 28, 1)) < 0.3).astype(np.float32)
    np.testing.assert_allclose(a.log_prob(x), b.log_prob(x), rtol=1e-5)
    info = json.loads((tmp_path / "b" / "train_info.json").read_text())
    assert info["config"]["init_grow"] and info["init_from"]["grown_from_blocks"] == 1
    lines = model_card._init_from_lines(info)
    assert "`--init_grow`: its 1 layers fill the first ones" in lines[0] and "2 epochs in all" in lines[0]
    # Without --init_grow the depths must match; only PixelRNNs grow.
    same = run_main("training.train", "row_lstm_mnist", "--set", "num_blocks=2", "--init_from",
                    tmp_path / "a", *common, "--output_dir", tmp_path / "c")
    assert same.returncode != 0 and "--init_grow deepens" in same.stderr, same.stderr[-2000:]
    vae = run_main("training.train", "vae_mnist", "--init_from", tiny_run, "--init_grow", *common[2:],
                   "--output_dir", tmp_path / "d")
    assert vae.returncode != 0 and "VAE cannot grow" in vae.stderr, vae.stderr[-2000:]


def test_ema_momentum_keeps_the_averaged_weights(tiny_run, tmp_path):
    # SGD from the same start on the same batches. The average starts at the first step's
    # weights w1; the second update's momentum is min(M, 2 / 11) with the warm-up
    # (tf.train.ExponentialMovingAverage's num_updates), so two steps end at
    # 2/11 w1 + 9/11 w2. Keras's plain average (--no_ema_warmup), at a momentum this close
    # to 1, stays at w1.
    common = ["vae_mnist", "--init_from", tiny_run, "--optimizer", "sgd", "--learning_rate", 0.05,
              "--epochs", 1, "--train_examples", 200, "--batch_size", 50, "--verbose", 0]
    ema = ["--steps_per_epoch", 2, "--ema_momentum", 0.9999999]
    for name, extra in (("one", ["--steps_per_epoch", 1]), ("two", ["--steps_per_epoch", 2]),
                        ("warm", ema), ("plain", [*ema, "--no_ema_warmup"])):
        result = run_main("training.train", *common, *extra, "--output_dir", tmp_path / name)
        assert result.returncode == 0, result.stderr[-2000:]
    start, one, two, warm, plain = (saving.load_trained(p).get_weights() for p in (
        tiny_run, *(tmp_path / name for name in ("one", "two", "warm", "plain"))))
    moved = max(np.abs(a - b).max() for a, b in zip(one, two, strict=True))
    assert moved > 1e-4
    for w1, w2, average, kept in zip(one, two, warm, plain, strict=True):
        np.testing.assert_allclose(average, 2 / 11 * w1 + 9 / 11 * w2, atol=moved * 1e-3)
        np.testing.assert_allclose(kept, w1, atol=moved * 1e-3)
    for name, warmed in (("warm", True), ("plain", False)):
        config = json.loads((tmp_path / name / "train_info.json").read_text())["config"]
        text = model_card._optimizer_text(config)
        assert "Polyak averaging" in text and ("warmed up" in text) == warmed
    bad = run_main("training.train", "dcgan_mnist", "--ema_momentum", 0.999, "--epochs", 1,
                   "--steps_per_epoch", 1, "--output_dir", tmp_path / "gan")
    assert bad.returncode != 0 and "one-optimizer models" in bad.stderr, bad.stderr[-2000:]


def test_d_learning_rate_gives_the_discriminator_its_own_rate():
    from training import train
    from zoo import registry

    cfg = train.config_from_args(train.parse_args(
        ["dcgan_mnist", "--learning_rate", "1e-4", "--d_learning_rate", "4e-4"]))
    model = registry.build("dcgan_mnist", filters=4, latent_dim=4)
    train.compile_model(model, cfg, steps_per_epoch=10)
    assert np.isclose(float(model.d_optimizer.learning_rate), 4e-4)
    assert np.isclose(float(model.g_optimizer.learning_rate), 1e-4)
    assert "two time-scale update rule" in model_card._optimizer_text(dataclasses.asdict(cfg))
    with pytest.raises(ValueError, match="adversarial family"):
        train.config_from_args(train.parse_args(["vae_mnist", "--d_learning_rate", "1e-3"]))


def test_final_lr_fraction_decays_both_players_rates_by_the_last_step():
    from training import train
    from zoo import registry

    cfg = train.config_from_args(train.parse_args(["dcgan_mnist", "--final_lr_fraction", "0.1"]))
    assert cfg.final_lr_fraction == 0.1  # the preset's is 1.0: constant
    model = registry.build("dcgan_mnist", filters=4, latent_dim=4)
    train.compile_model(model, cfg, steps_per_epoch=10)
    for optimizer in (model.g_optimizer, model.d_optimizer):
        schedule = optimizer._learning_rate
        assert np.isclose(float(schedule(0)), cfg.learning_rate)
        assert np.isclose(float(schedule(10 * cfg.epochs)), 0.1 * cfg.learning_rate)
    assert "cosine-decayed to 0.1 of it" in model_card._optimizer_text(dataclasses.asdict(cfg))


def test_averaging_momentum_warms_up_as_tf_exponential_moving_average():
    from zoo import steps

    got = [float(steps.averaging_momentum(0.999, n)) for n in (0, 1, 90, 8990, 10**6)]
    np.testing.assert_allclose(got, [0.0, 2 / 11, 0.91, 8991 / 9000, 0.999], rtol=1e-6)


def test_init_networks_copies_only_the_named_networks(tmp_path):
    """A pix2pix's generator into one with another discriminator (d_norm): the generator is the
    source's, the discriminator keeps its fresh weights; a missing or different network is an
    error naming it."""
    from zoo import translation

    keras.utils.set_random_seed(0)
    source = translation.Pix2Pix(source_shape=(7, 7, 1), filters=4, d_filters=4)
    source.save(tmp_path / "source.keras")
    keras.utils.set_random_seed(1)
    target = translation.Pix2Pix(source_shape=(7, 7, 1), filters=4, d_filters=4, d_norm="none")
    fresh_d = [w.numpy().copy() for w in target.discriminator.weights]
    with pytest.raises(train.InitFromError, match="architectures must match"):
        train.initialize_from(target, tmp_path / "source.keras")
    start = train.initialize_from(target, tmp_path / "source.keras", networks=("generator",))
    assert start["networks"] == ["generator"]
    for a, b in zip(source.generator.weights, target.generator.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(fresh_d, target.discriminator.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    with pytest.raises(train.InitFromError, match="'generator_ab' is not a network"):
        train.initialize_from(target, tmp_path / "source.keras", networks=("generator_ab",))
    wider = translation.Pix2Pix(source_shape=(7, 7, 1), filters=6, d_filters=4)
    with pytest.raises(train.InitFromError, match="the generator at"):
        train.initialize_from(wider, tmp_path / "source.keras", networks=("generator",))
    lines = model_card._init_from_lines(dict(epochs_done=1, init_from=dict(start, train_info=None)))
    assert "`--init_networks`: only its generator" in lines[0]
    with pytest.raises(ValueError, match="init_networks needs init_from"):
        config_lib.TrainConfig(preset="pix2pix_superres_mnist", init_networks=("generator",))
