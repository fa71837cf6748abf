"""Saved zoo models: the layout of an exported version, its writer and every loader.

This module is the one place that knows how a zoo model is kept on disk
(in the spirit of keras-hub's ``preset_utils``, which holds both the saver and
the loader): the Keras model of a training run (``<run>/model.keras``), a
``.keras`` file, and an exported version in TF Serving's layout::

    <base>/<name>/<version>/             TF Serving's version folder (a SavedModel)
        saved_model.pb, variables/       the signatures; the root object's
                                         ``model_weights`` lists model.weights in order
        assets.extra/                    warmup records (written by serving.export)
        genzoo/keras_config.json         the Keras config, to rebuild the trainable model
        genzoo/train_info.json           the training run's record, if there was one
        genzoo/export_info.json          name, version and export options

It is the only zoo module that reads or writes files: the zoo's models and
layers do no I/O. ``serving.export`` writes versions through ``write_genzoo_files``
and ``WEIGHTS``; the training and evaluation commands load through ``load_trained``.
"""
import json
import os
import pathlib
import shutil

import keras
import tensorflow as tf

# The zoo's classes register themselves with Keras when imported; the loaders need them.
from zoo import adversarial, autoregressive, classifier, latent, pixelrnn, text2image, translation  # noqa: F401,E501

GENZOO_DIR = "genzoo"
KERAS_CONFIG = "keras_config.json"
TRAIN_INFO = "train_info.json"
EXPORT_INFO = "export_info.json"
RUN_MODEL = "model.keras"
WEIGHTS = "model_weights"  # the SavedModel root's list of the Keras model's weights


def exported_dir():
    """The zoo's export folder: $GENZOO_EXPORTED_DIR or the repository's exported/."""
    default = pathlib.Path(__file__).resolve().parent.parent / "exported"
    return pathlib.Path(os.environ.get("GENZOO_EXPORTED_DIR", default))


def versions(name, base=None):
    """Numeric versions exported for ``name`` under ``base`` (default: the zoo's), ascending."""
    folder = pathlib.Path(base or exported_dir()) / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())


def version_path(name, version=None, base=None):
    """Folder of an exported version of ``name`` (the latest when ``version`` is None)."""
    base = pathlib.Path(base or exported_dir())
    found = versions(name, base)
    if not found:
        raise FileNotFoundError(
            f"No exported versions of {name!r} under {base}; train and export it: "
            f"python -m training.train {name} && python -m serving.export runs/{name}")
    if version is None:
        version = found[-1]
    if int(version) not in found:
        raise FileNotFoundError(f"{name!r} has no version {version}; versions: {found}")
    return base / name / str(int(version))


def is_version(path):
    """Whether ``path`` is an exported version folder written by genzoo."""
    return (pathlib.Path(path) / GENZOO_DIR / KERAS_CONFIG).is_file()


def keras_config(model):
    """The Keras config that rebuilds ``model`` (without its compile settings)."""
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    return config


def write_genzoo_files(model, version_dir, export_info, run_dir=None):
    """Writes ``version_dir/genzoo/``: the Keras config, the export record and the run's record."""
    extra = pathlib.Path(version_dir) / GENZOO_DIR
    extra.mkdir(parents=True)
    (extra / KERAS_CONFIG).write_text(json.dumps(keras_config(model), indent=2))
    if run_dir and (pathlib.Path(run_dir) / TRAIN_INFO).exists():
        shutil.copy(pathlib.Path(run_dir) / TRAIN_INFO, extra / TRAIN_INFO)
    (extra / EXPORT_INFO).write_text(json.dumps(export_info, indent=2))


def read_export_info(version_dir):
    """The export record of a version folder ({} when it has none)."""
    path = pathlib.Path(version_dir) / GENZOO_DIR / EXPORT_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def load_keras(version_dir):
    """Rebuilds the Keras model of an exported version from its config and variables."""
    version_dir = pathlib.Path(version_dir)
    try:
        config = json.loads((version_dir / GENZOO_DIR / KERAS_CONFIG).read_text())
        model = keras.saving.deserialize_keras_object(config)
        reader = tf.train.load_checkpoint(str(version_dir / "variables" / "variables"))
        for i, weight in enumerate(model.weights):
            value = reader.get_tensor(f"{WEIGHTS}/{i}/.ATTRIBUTES/VARIABLE_VALUE")
            if tuple(value.shape) != tuple(weight.shape):
                raise ValueError(f"weight {weight.path} has shape {weight.shape}, stored {value.shape}")
            weight.assign(value)
    except (OSError, ValueError, KeyError, json.JSONDecodeError, tf.errors.OpError) as err:
        raise ValueError(f"{version_dir} does not hold a loadable genzoo model: {err}") from err
    return model


def load_trained(path):
    """The Keras model at ``path`` in float32: a run folder, a .keras file or an exported version."""
    path = pathlib.Path(path)
    if path.is_dir() and is_version(path):
        return in_float32(load_keras(path))
    file = path / RUN_MODEL if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"No Keras model at {file} (give a run folder or a .keras file)")
    try:
        return in_float32(keras.saving.load_model(file))
    except Exception as err:
        raise ValueError(f"{file} is not a loadable Keras model: {err}") from err


def train_info(path):
    """The training record of the model at ``path`` (run folder, .keras file or version), or None."""
    path = pathlib.Path(path)
    for info in (path / TRAIN_INFO, path / GENZOO_DIR / TRAIN_INFO, path.parent / TRAIN_INFO):
        if info.is_file():
            return json.loads(info.read_text())
    return None


def in_float32(model):
    """``model`` computing in float32, whatever precision policy it was trained under.

    A run trained with ``--dtype_policy mixed_bfloat16`` keeps float32 weights
    but computes in bfloat16; evaluation and export want exact log-likelihoods
    and outputs that do not depend on how the model was trained, so every
    layer is set back to float32 before anything is traced.
    """
    for layer in model._flatten_layers(include_self=True):
        if layer.dtype_policy.name != "float32":
            layer.dtype_policy = "float32"
    return model


def architecture(model, weights_only=False):
    """(class name, config without name, trainable and dtype); the model card prints the config.

    With ``weights_only``, also without the model's ``objective_args`` (loss
    weights and the like): what two models must share for one's weights to fit
    the other.
    """
    drop = {"name", "trainable", "dtype"} | set(getattr(model, "objective_args", ()) if weights_only else ())
    return type(model).__name__, {k: v for k, v in model.get_config().items() if k not in drop}
