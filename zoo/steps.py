"""What every zoo train_step needs under a tf.distribute strategy."""
import tensorflow as tf


def replica_loss(optimizer, loss):
    """The loss a replica differentiates: its mean over the replica count, loss-scaled.

    Keras sums gradients over replicas, so dividing by their number makes the
    update that of the global mean over the global batch.
    """
    return optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)


def strategy_logs(logs):
    """Logs a train/test step returns, shaped for the current strategy.

    Keras reduces the logs of collective (multi-worker) strategies with
    strategy.reduce(MEAN, v, axis=0), which needs a leading axis.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(v, [1]) for name, v in logs.items()}
    return logs


def unpack(data, num_classes, model_name):
    """(images as float32, labels or None) from a tensor, a dict or a Keras (x, y) tuple.

    A conditional model (``num_classes`` > 0) needs {"images": ..., "labels": ...}.
    """
    if isinstance(data, (tuple, list)):
        data = data[0]
    labels = None
    if isinstance(data, dict):
        x, labels = data["images"], data.get("labels")
    else:
        x = data
    if num_classes and labels is None:
        raise ValueError(f"{model_name} is conditional: give "
                         '{"images": ..., "labels": ...}')
    return tf.cast(x, tf.float32), labels
