"""MNIST and Fashion-MNIST through TensorFlow Datasets, as tf.data pipelines.

Forms (what a batch holds):
    binary   float32 in {0, 1}. Training images are binarized afresh every
             epoch (pixel ~ Bernoulli(intensity / 255)); every other split is
             binarized once, image i with the stateless seed
             (TEST_BINARIZATION_SEED, i), so the evaluation set is fixed.
    uint8    the 8-bit pixels as float32 0..255 (the discrete values).
    float01  float32 intensity / 255, in [0, 1].
    float11  float32 in [-1, 1].

Translation tasks (``TASKS``; image-to-image models): a batch is
{"a": domain-A images, "b": domain-B images} in the form asked for, both made
from the same original uint8 images by the task's exact definitions (with
"labels", the originals' classes, when asked). An unpaired task trains on A
made from the even-indexed training images and B from the odd-indexed ones,
so no training image is in both domains; every other split is paired.

Offline use: set $GENZOO_DATA_DIR (or pass ``data_dir``) to a folder holding
``<dataset>/`` with the original archives (e.g. ``mnist/train-images-idx3-ubyte.gz``);
it is handed to TFDS as ``DownloadConfig(manual_dir=...)``. Without it TFDS
downloads as usual. Prepared data go to TFDS's data dir ($TFDS_DATA_DIR).
"""
import dataclasses
import os
import pathlib
import socket
from collections.abc import Callable

import tensorflow as tf
import tensorflow_datasets as tfds

DATA_DIR_ENV = "GENZOO_DATA_DIR"
DATASETS = ("mnist", "fashion_mnist")
FORMS = ("binary", "uint8", "float01", "float11")
# Seed of the fixed binarization of evaluation splits; part of the reported protocol.
TEST_BINARIZATION_SEED = 20151127
RAW_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class DataUnavailableError(RuntimeError):
    """The data set is neither prepared, nor in the manual folder, nor downloadable."""


def _manual_dir(dataset, data_dir):
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        return None
    folder = pathlib.Path(data_dir).expanduser().resolve() / dataset
    missing = [f for f in RAW_FILES if not (folder / f).is_file()]
    if missing:
        raise DataUnavailableError(
            f"{DATA_DIR_ENV}/--data_dir points at {pathlib.Path(data_dir)}, but "
            f"{folder} lacks {', '.join(missing)}. It must hold {dataset}/ with the "
            f"original files {', '.join(RAW_FILES)}."
        )
    return folder


DOWNLOAD_HOST = ("storage.googleapis.com", 443)  # where TFDS fetches MNIST and Fashion-MNIST


def _can_download(timeout=5.0):
    """Whether TFDS's download host answers (checked first: TFDS retries for minutes)."""
    try:
        socket.create_connection(DOWNLOAD_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def _unavailable(dataset, reason):
    return DataUnavailableError(
        f"Could not prepare {dataset!r}: {reason}\n"
        f"With no network, put the original files ({', '.join(RAW_FILES)}) in "
        f"<folder>/{dataset}/ and set {DATA_DIR_ENV}=<folder> or pass "
        f"--data_dir <folder> (in this repository's CI: ../shared/data)."
    )


def builder(dataset, data_dir=None):
    """A prepared TFDS builder for ``dataset``, preparing it on first use.

    Args:
        dataset: "mnist" or "fashion_mnist".
        data_dir: folder holding ``<dataset>/`` with the original files
            (defaults to $GENZOO_DATA_DIR); None lets TFDS download.
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}")
    manual = _manual_dir(dataset, data_dir)
    b = tfds.builder(dataset)
    if b.is_prepared():
        return b
    if manual is None and not _can_download():
        raise _unavailable(dataset, f"it is not prepared and {DOWNLOAD_HOST[0]} cannot be reached.")
    config = tfds.download.DownloadConfig(manual_dir=str(manual) if manual else None)
    # MNIST and Fashion-MNIST name their archives alike, and TFDS keys its
    # extraction cache by file name: a shared download folder would hand the
    # second data set the first one's images. One folder per data set.
    downloads = pathlib.Path(b.data_dir_root) / "downloads" / dataset
    try:
        b.download_and_prepare(download_dir=str(downloads), download_config=config)
    except Exception as err:  # network errors come in many types
        raise _unavailable(dataset, f"{type(err).__name__}: {err}") from err
    return b


def _binarize(images, seed):
    """Pixel ~ Bernoulli(intensity / 255) with stateless noise from ``seed`` (2,)."""
    noise = tf.random.stateless_uniform(tf.shape(images), seed=seed)
    return tf.cast(noise * 255.0 < tf.cast(images, tf.float32), tf.float32)


def _convert(images, form):
    x = tf.cast(images, tf.float32)
    if form == "uint8":
        return x
    if form == "float01":
        return x / 255.0
    if form == "float11":
        return x / 127.5 - 1.0
    raise ValueError(form)


# ------------------------------------------------------------ translation tasks
def downsample4(images):
    """uint8 (B, H, W, C) -> (B, H/4, W/4, C): each 4x4 block's mean, rounded to the nearest
    integer (a tie, a mean of k + 0.5, goes to the even neighbour: ``tf.round``)."""
    means = tf.nn.avg_pool2d(tf.cast(images, tf.float32), 4, 4, "VALID")  # exact: a sum / 16
    return tf.cast(tf.round(means), tf.uint8)


def sobel_edges(images):
    """uint8 (B, H, W, C) -> the same shape: 255 where the Sobel gradient magnitude of
    image / 255 (``tf.image.sobel_edges``; sqrt(dy^2 + dx^2)) exceeds 0.5, else 0."""
    gradients = tf.image.sobel_edges(tf.cast(images, tf.float32) / 255.0)  # (..., 2): dy, dx
    magnitude = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=-1))
    return tf.cast(tf.where(magnitude > 0.5, 255.0, 0.0), tf.uint8)


def dilate3(images):
    """uint8 (B, H, W, C) -> the same shape: the 3x3 grey dilation (a 3x3 max filter,
    stride 1, same padding: the border takes the maximum of the pixels inside)."""
    return tf.cast(tf.nn.max_pool2d(tf.cast(images, tf.float32), 3, 1, "SAME"), tf.uint8)


def _same(images):
    return tf.cast(images, tf.uint8)


@dataclasses.dataclass(frozen=True)
class Task:
    """An image-to-image task: how domains A and B are made from an original image.

    Args:
        a, b: uint8 (B, H, W, C) originals -> that domain's uint8 images.
        unpaired: train on A and B from disjoint images (even and odd indices).
        description: the exact definition, for the model card.
    """

    a: Callable
    b: Callable
    unpaired: bool
    description: str


TASKS = {
    "superres4": Task(
        downsample4, _same, False,
        "input = the uint8 image average-pooled over 4x4 blocks and rounded to the nearest "
        "integer (ties to even, `tf.round`), (B, 7, 7, 1); target = the original (B, 28, 28, 1)"),
    "edges": Task(
        sobel_edges, _same, False,
        "input = 255 where the Sobel gradient magnitude of image / 255 (`tf.image.sobel_edges`, "
        "magnitude = sqrt(dy^2 + dx^2)) exceeds 0.5, else 0, (B, 28, 28, 1); target = the original"),
    "thicken": Task(
        _same, dilate3, True,
        "domain A = the images; domain B = their 3x3 grey dilation (3x3 max filter, stride 1, same "
        "padding). Training is unpaired: A from the even-indexed training images, B from the "
        "dilations of the odd-indexed ones; evaluation is paired (each test image and its dilation)"),
}


def get_task(name):
    """The ``Task`` called ``name``; an unknown name lists the valid ones."""
    if name not in TASKS:
        raise ValueError(f"Unknown translation task {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name]


def _load_translation(b, split, task, form, batch_size, labels, shuffle, seed, take,
                      drop_remainder):
    """The batches of a translation task (see the module docstring)."""
    task = get_task(task)
    ds = b.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    if take is not None:
        ds = ds.take(take)

    def batched(source, shuffle_seed):
        source = source.cache()
        if shuffle:
            source = source.shuffle(60000, seed=shuffle_seed, reshuffle_each_iteration=True)
        return source.batch(batch_size, drop_remainder=drop_remainder)

    if task.unpaired and split.startswith("train"):
        if labels:
            raise ValueError("an unpaired task's training batches pair no labels with images")
        def parity(remainder):
            def keep(index, example):
                return index % 2 == remainder
            return keep

        def image(index, example):
            return example[0]

        def domains(x_a, x_b):
            return {"a": _convert(task.a(x_a), form), "b": _convert(task.b(x_b), form)}

        indexed = ds.enumerate()
        evens = indexed.filter(parity(0)).map(image)
        odds = indexed.filter(parity(1)).map(image)
        ds = tf.data.Dataset.zip(batched(evens, seed), batched(odds, seed + 1)).map(
            domains, num_parallel_calls=tf.data.AUTOTUNE)
        # The filters hide the length; saying it lets Keras size the first epoch (no
        # "ran out of data" warning) and fails loudly if it were ever wrong.
        count = b.info.splits[split].num_examples
        count = count if take is None else min(count, take)
        odd_count = count // 2  # the smaller domain
        batches = odd_count // batch_size if drop_remainder else -(-odd_count // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    else:
        def pair(x, y):
            found = {"a": _convert(task.a(x), form), "b": _convert(task.b(x), form)}
            return dict(found, labels=y) if labels else found

        ds = batched(ds, seed).map(pair, num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def load(
    dataset,
    split,
    form,
    batch_size,
    labels=False,
    shuffle=None,
    seed=0,
    data_dir=None,
    take=None,
    drop_remainder=None,
    task=None,
):
    """A batched, prefetched tf.data pipeline.

    Args:
        dataset: "mnist" or "fashion_mnist".
        split: TFDS split ("train", "test", "train[:1000]", ...).
        form: one of FORMS.
        batch_size: global batch size.
        labels: yield {"images": x, "labels": y} instead of x.
        shuffle: shuffle each epoch; defaults to True for training splits.
        seed: shuffle seed.
        data_dir: see ``builder``.
        take: keep only the first ``take`` examples (tests, quick runs).
        drop_remainder: defaults to True for training splits.
        task: a translation task of ``TASKS``: batches are {"a", "b"} (and
            "labels") in ``form`` ("binary" is not one of its forms).

    Returns:
        A ``tf.data.Dataset`` of (B, 28, 28, 1) float32 images (or dicts).
    """
    if form not in FORMS:
        raise ValueError(f"Unknown form {form!r}; valid: {', '.join(FORMS)}")
    training = split.startswith("train")
    shuffle = training if shuffle is None else shuffle
    drop_remainder = training if drop_remainder is None else drop_remainder
    b = builder(dataset, data_dir)
    if task is not None:
        if form == "binary":
            raise ValueError("translation tasks come as uint8, float01 or float11 images")
        ds = _load_translation(b, split, task, form, batch_size, labels, shuffle, seed, take,
                               drop_remainder)
        return _finish(ds)
    ds = b.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    if take is not None:
        ds = ds.take(take)
    dynamic = form == "binary" and training
    if form == "binary" and not training:
        ds = ds.enumerate().map(
            lambda i, ex: (_binarize(ex[0], tf.stack([tf.constant(TEST_BINARIZATION_SEED, tf.int64), i])),
                           ex[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(b.info.splits[split].num_examples, 60000), seed=seed,
                        reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if dynamic:
        # One fresh random key per batch and per pass over the data (epoch),
        # whatever global seed is set: a new Bernoulli draw every epoch.
        keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, keys).map(lambda batch, key: batch + (key,))

    def finish(images, y, key=None):
        if dynamic:
            x = _binarize(images, tf.stack([key, tf.constant(0, tf.int64)]))
        elif form == "binary":
            x = images
        else:
            x = _convert(images, form)
        return {"images": x, "labels": y} if labels else x

    return _finish(ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE))


def _finish(ds):
    """``ds`` sharded by data across workers, prefetched."""
    options = tf.data.Options()
    # Whole-dataset sharding across workers: TFDS MNIST is a single file.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def num_examples(dataset, split, data_dir=None):
    """Number of examples in a split."""
    return builder(dataset, data_dir).info.splits[split].num_examples
