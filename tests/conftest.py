"""Shared fixtures: repository paths, the offline data folder, subprocess runs."""
import contextlib
import importlib
import io
import os
import pathlib
import subprocess
import sys

import pytest

import zoo  # noqa: F401  (sets TensorFlow's log level before any test imports TensorFlow)

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Tests read MNIST offline from ../shared/data unless GENZOO_DATA_DIR says otherwise.
_SHARED = ROOT.parent / "shared" / "data"
if "GENZOO_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["GENZOO_DATA_DIR"] = str(_SHARED)

MAX_WORKERS = 4  # each worker holds its own TensorFlow (and servers): memory, not cores, caps it


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pytest.ini): one worker per core, at most ``MAX_WORKERS``.

    The tests spend most of their time single-threaded (tracing, starting
    servers and interpreters), so a 2-core machine runs about 1.6x faster with two.
    """
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def pytest_sessionstart(session):
    """Prepares MNIST and Fashion-MNIST once, before any worker starts.

    Workers would otherwise prepare a data set on first use, two at once into
    the same TFDS folder. Runs in the controlling process (or the only one);
    a data set that cannot be prepared is left to the tests that need it,
    which report why.
    """
    if hasattr(session.config, "workerinput"):
        return
    import tensorflow_datasets as tfds

    from training import data

    tfds.disable_progress_bar()  # not between pytest's own lines
    for dataset in data.DATASETS:
        try:
            data.builder(dataset)
        except data.DataUnavailableError:
            pass


@pytest.fixture(autouse=True)
def _same_random_state():
    """Every test starts from one random state (Python, NumPy, TensorFlow, Keras).

    Layers initialise their weights from the global state, so without this a
    test's figures would depend on the tests that ran before it.
    """
    import keras

    keras.utils.set_random_seed(0)


def run_module(module, *args, env=None, timeout=600, check=True, cwd=ROOT):
    """Runs ``python -m module args`` from the repository root; returns the result."""
    full_env = dict(os.environ, **(env or {}))
    result = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"python -m {module} {' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def run_main(module, *args):
    """Runs ``module.main(args)`` in this process; returns what ``run_module(..., check=False)``
    would (a CompletedProcess with returncode, stdout and stderr).

    For a command's error paths and short runs: no new interpreter loads TensorFlow.
    A ``sys.exit("error: ...")`` becomes returncode 1 with the message on stderr.
    """
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            importlib.import_module(module).main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code
    if isinstance(code, str):
        print(code, file=err)
        code = 1
    return subprocess.CompletedProcess([module, *args], code or 0, out.getvalue(), err.getvalue())


def read_history(path):
    """history.csv as a list of {column: float} rows."""
    import csv

    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A vae_mnist run of 2 short epochs on 1,000 images (a training folder)."""
    out = tmp_path_factory.mktemp("runs") / "vae_mnist"
    run_module("training.train", "vae_mnist", "--epochs", 2, "--steps_per_epoch", 10,
               "--train_examples", 1000, "--batch_size", 50, "--output_dir", out,
               "--verbose", 2)
    return out
