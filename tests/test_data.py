"""TFDS pipelines: forms, fixed test binarization, fresh training draws, offline errors."""
import os

import numpy as np
import pytest

import subprocess
import sys

from conftest import ROOT
from training import data


@pytest.mark.parametrize("dataset", data.DATASETS)
@pytest.mark.parametrize("form,low,high", [("uint8", 0, 255), ("float01", 0, 1),
                                            ("float11", -1, 1), ("binary", 0, 1)])
def test_forms(dataset, form, low, high):
    batch = next(iter(data.load(dataset, "test", form, 32, take=64)))
    x = batch.numpy()
    assert x.shape == (32, 28, 28, 1) and x.dtype == np.float32
    assert x.min() >= low and x.max() <= high and x.max() > x.min()
    if form == "uint8":
        assert np.array_equal(x, np.round(x)) and x.max() > 128
    if form == "binary":
        assert set(np.unique(x)) == {0.0, 1.0}


def test_mnist_and_fashion_mnist_are_different_data():
    # Both ship archives with the same names; a shared TFDS extraction cache
    # once gave Fashion-MNIST the digits.
    digits = next(iter(data.load("mnist", "test", "uint8", 500, take=500))).numpy()
    clothes = next(iter(data.load("fashion_mnist", "test", "uint8", 500, take=500))).numpy()
    assert digits.mean() < 45 < 60 < clothes.mean()  # MNIST ~33, Fashion-MNIST ~73


def test_labels_and_split_sizes():
    batch = next(iter(data.load("mnist", "test", "float01", 10, labels=True, take=10)))
    assert set(batch) == {"images", "labels"} and batch["labels"].shape == (10,)
    assert data.num_examples("mnist", "train") == 60000
    assert data.num_examples("fashion_mnist", "test") == 10000


def test_test_binarization_is_fixed_and_train_binarization_is_fresh():
    first = np.concatenate([b.numpy() for b in data.load("mnist", "test", "binary", 50, take=100)])
    again = np.concatenate([b.numpy() for b in data.load("mnist", "test", "binary", 30, take=100)])
    np.testing.assert_array_equal(first, again)  # batch size does not matter either
    gray = np.concatenate([b.numpy() for b in data.load("mnist", "test", "uint8", 50, take=100)])
    # A Bernoulli(intensity / 255) draw: white stays 1, black stays 0.
    assert np.all(first[gray == 255] == 1) and np.all(first[gray == 0] == 0)
    train = data.load("mnist", "train", "binary", 100, take=100, shuffle=False)
    epoch1, epoch2 = (next(iter(train)).numpy() for _ in range(2))
    assert not np.array_equal(epoch1, epoch2), "training binarization is not redrawn"


def test_training_batches_are_shuffled_each_epoch():
    train = data.load("mnist", "train", "uint8", 100, take=500, seed=3)
    a, b = (next(iter(train)).numpy() for _ in range(2))
    assert not np.array_equal(a, b)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="Unknown form"):
        data.load("mnist", "test", "grey", 10)
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.builder("cifar10")


def test_a_manual_folder_without_the_files_says_what_is_missing(tmp_path):
    (tmp_path / "mnist").mkdir()
    with pytest.raises(data.DataUnavailableError, match="train-images-idx3-ubyte.gz"):
        data.builder("mnist", data_dir=str(tmp_path))


def test_no_data_and_no_network_says_what_to_do(tmp_path):
    if data._can_download(timeout=3):
        pytest.skip("this machine can reach TFDS's download host")
    full_env = {k: v for k, v in os.environ.items() if k != data.DATA_DIR_ENV}
    full_env["TFDS_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "training.train", "vae_mnist", "--epochs", "1",
                             "--output_dir", str(tmp_path / "run")],
                            cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "GENZOO_DATA_DIR" in result.stderr and "--data_dir" in result.stderr
    assert "Traceback" not in result.stderr
