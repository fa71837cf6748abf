"""The serving contract's shared pieces: input specs and label checks.

Every exported signature takes batched inputs (leading dimension None);
randomness comes in as ``seed`` (int64, (B, 2)) and images as uint8 NHWC.
"""
import tensorflow as tf


def specs(image_shape, latent_dim=None):
    """{name: TensorSpec} of the contract's inputs for images of ``image_shape``."""
    h, w, c = image_shape
    found = dict(
        images=tf.TensorSpec([None, h, w, c], tf.uint8, name="images"),
        mask=tf.TensorSpec([None, h, w, c], tf.uint8, name="mask"),
        seed=tf.TensorSpec([None, 2], tf.int64, name="seed"),
        label=tf.TensorSpec([None], tf.int64, name="label"),
    )
    if latent_dim is not None:
        found["latents"] = tf.TensorSpec([None, latent_dim], tf.float32, name="latents")
    return found


def check_labels(label, num_classes):
    """``label`` after asserting 0 <= label < num_classes (None passes through)."""
    if label is None:
        return None
    tf.debugging.assert_non_negative(label, message="label must be >= 0")
    tf.debugging.assert_less(label, tf.constant(num_classes, label.dtype),
                             message=f"label must be < {num_classes}")
    return label
