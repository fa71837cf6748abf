"""Callbacks of the training command: sample grids and the run record."""
import json
import os
import pathlib
import platform
import time

import keras
import numpy as np
import tensorflow as tf

from zoo import images as image_utils


def preview_images(model, count=64, seed=0, reference=None):
    """uint8 images that show how a model is doing: samples, else translations or
    reconstructions of ``reference`` (test images of the model's input domain)."""
    seeds = tf.stack([tf.fill([count], tf.constant(seed, tf.int64)),
                      tf.range(count, dtype=tf.int64)], axis=1)
    label = model.conditions(tf.range(count, dtype=tf.int64) % max(model.num_classes, 1))
    endpoints = model.serving_endpoints()
    if "sample" in endpoints:
        return model.serve_sample(seeds, *label)["images"].numpy()
    if reference is not None and "translate" in endpoints:
        return model.serve_translate(reference[:count])["images"].numpy()
    if reference is not None and "reconstruct" in endpoints:
        return model.serve_reconstruct(reference[:count], seeds[: len(reference)], *label)["images"].numpy()
    return None


class SampleGrid(keras.callbacks.Callback):
    """Writes a grid of samples each epoch, as a PNG and as a TensorBoard image.

    Args:
        output_dir: PNGs go to ``output_dir/epoch_NNN.png``.
        log_dir: TensorBoard folder (None: PNG only).
        reference: uint8 images to reconstruct for models that cannot sample.
    """

    def __init__(self, output_dir, log_dir=None, reference=None, count=64):
        super().__init__()
        self.output_dir = pathlib.Path(output_dir)
        self.reference = reference
        self.count = count
        self.writer = tf.summary.create_file_writer(str(log_dir)) if log_dir else None

    def on_epoch_end(self, epoch, logs=None):
        images = preview_images(self.model, self.count, reference=self.reference)
        if images is None:
            return
        tile = image_utils.grid(images, cols=8)
        image_utils.save_png(tile, self.output_dir / f"epoch_{epoch + 1:03d}.png", scale=2)
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.image("samples", tile[None], step=epoch + 1)
            self.writer.flush()


def hardware():
    """A line naming the CPU (and GPUs) this process runs on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return f"{os.cpu_count()} x {cpu}" + (f"; GPUs: {', '.join(gpus)}" if gpus else "; no GPU")


class RunRecord(keras.callbacks.Callback):
    """Keeps ``train_info.json``: command, settings, wall time, last metrics and the
    per-epoch logs (``history``).

    Wall time adds up across restarts of the same run (BackupAndRestore); a
    resumed run keeps the history of the epochs its backup holds.
    """

    def __init__(self, path, info):
        super().__init__()
        self.path = pathlib.Path(path)
        self.info = dict(info)
        previous = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.base_time = float(previous.get("wall_time_s", 0.0))
        self.restarts = int(previous.get("starts", 0))
        self.history = list(previous.get("history", []))
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(np.asarray(v)) for k, v in (logs or {}).items()}
        record = dict(
            self.info,
            epochs_done=epoch + 1,
            wall_time_s=round(self.base_time + time.time() - self.start, 1),
            starts=self.restarts + 1,
            final_metrics=logs,
            parameters=int(self.model.count_params()),
            history=self.history[:epoch] + [logs],
        )
        self.history = record["history"]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(self.path)
