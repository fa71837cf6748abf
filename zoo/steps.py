"""What every zoo model shares: its data handling, its label check and, for the
one-optimizer families, its ``train_step``/``test_step`` under any tf.distribute strategy.

``ZooModel`` is the base of every model in the zoo: it says the model's family
once (``family``: "latent", "autoregressive", "adversarial" or "classifier",
the rows of the design document's table) and how it scores images
(``density``: "exact", "bound" or "none"), and it describes its own
architecture for the model card (``describe``). ``OneOptimizerModel`` adds the
training loop of the models that minimise one loss with one optimizer
(latent, autoregressive, classifier); the adversarial family, with two
optimizers, writes its own.
"""
import keras
import tensorflow as tf

from zoo import contract


def replica_loss(optimizer, loss):
    """The loss a replica differentiates: its mean over the replica count, loss-scaled.

    Keras sums gradients over replicas, so dividing by their number makes the
    update that of the global mean over the global batch.
    """
    return optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)


def averaging_momentum(momentum, updates):
    """The moving average's momentum for the update that follows ``updates`` others.

    0 for the first (the average starts at the first step's weights, as in Keras),
    then min(``momentum``, (1 + n) / (10 + n)): the warm-up of
    ``tf.train.ExponentialMovingAverage(decay, num_updates=n)``. Early on the
    average follows the weights closely and so forgets where training started;
    it reaches ``momentum`` after about 9 / (1 - momentum) updates.
    """
    n = tf.cast(updates, tf.float32)
    warm = tf.minimum(tf.constant(momentum, tf.float32), (1.0 + n) / (10.0 + n))
    return tf.where(n > 0, warm, 0.0)


def validation_batch(data):
    """(``data`` with at least one example, its number of examples as float32).

    MultiWorkerMirroredStrategy hands a worker whose share of the validation data
    has run out an empty batch while another worker finishes its own. TF's fused
    convolutions and TFP's broadcast samplers fail on an empty batch of unknown
    size, so it becomes one example of zeros, of weight 0 in ``update_trackers``.
    ``data``: a tensor, a dict of them or a Keras (x, y) tuple, examples on axis 0.
    """
    count = tf.shape(tf.nest.flatten(data)[0])[0]
    missing = tf.cast(tf.equal(count, 0), tf.int32)

    def pad(t):
        t = tf.convert_to_tensor(t)
        return tf.pad(t, tf.concat([[[0, missing]], tf.zeros([tf.rank(t) - 1, 2], tf.int32)], 0))

    return tf.nest.map_structure(pad, data), tf.cast(count, tf.float32)


def update_trackers(trackers, values, weight=None):
    """Updates each tracker named in ``values`` {name: value}; returns the logs of all.

    Validation passes ``weight``, the batch's number of examples (``validation_batch``):
    a batch's means then count once per example, however the last partial batch
    falls, and a batch that was empty counts for nothing.
    """
    for tracker in trackers:
        if tracker.name in values:
            value = values[tracker.name]
            tracker.update_state(value, sample_weight=weight)
    return strategy_logs({tracker.name: tracker.result() for tracker in trackers})


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


class ZooModel(keras.Model):
    """The base of every zoo model.

    Subclasses set ``family`` and ``density``, keep ``image_shape`` and
    ``num_classes`` (0: unconditional) as attributes, and implement
    ``describe`` and ``serving_endpoints``.
    """

    family = None  # "latent", "autoregressive", "adversarial" or "classifier"
    density = "none"  # "exact" log p(x), a "bound" on it, or "none"
    serving_note = ""  # what the model card says of the signatures beyond their names
    # Config keys that set the training objective, not the weights: a run started from
    # another one's weights (--init_from) may change them.
    objective_args = ()

    def unpack(self, data):
        """(images as float32, labels or None) from a tensor, a dict or a Keras (x, y) tuple."""
        return unpack(data, self.num_classes, type(self).__name__)

    def conditions(self, labels):
        """The conditioning inputs of the serving signatures that ask for class ``labels`` (B,):
        ``[labels]`` (int64) for class-conditional models, ``[]`` for the others."""
        return [tf.cast(labels, tf.int64)] if self.num_classes else []

    def check_labels(self, label):
        """A served ``label`` after asserting 0 <= label < num_classes (None passes through)."""
        return contract.check_labels(label, self.num_classes)

    def describe(self):
        """One paragraph naming the model's parts, for its model card."""
        raise NotImplementedError

    def serving_endpoints(self, **options):
        """{signature name: (function, input TensorSpecs)}; the first is also serving_default."""
        raise NotImplementedError

    def serving_examples(self):
        """{input name: a valid value per row} for inputs whose zeros are not valid (strings);
        the export's warmup requests use them."""
        return {}

    def test_step(self, data):
        """Validation of every zoo model: an empty batch is padded (``validation_batch``),
        then each tracker takes its ``validation_terms`` value, weighted by the batch's size."""
        data, weight = validation_batch(data)
        return self.update_metrics(self.validation_terms(data), weight)

    def validation_terms(self, data):
        """{tracker name: value} for one validation batch of at least one example."""
        raise NotImplementedError

    def update_metrics(self, terms, weight=None):
        """Updates every tracker named in ``terms`` (weighted as ``update_trackers`` says);
        returns the logs of all."""
        return update_trackers(self.metrics, terms, weight)


class OneOptimizerModel(ZooModel):
    """A zoo model that minimises one loss with one optimizer.

    Subclasses implement ``step_terms(data, training)``, returning a dict with
    the scalar ``loss`` and a value for each tracker in ``metrics`` under the
    tracker's name; ``update_metrics`` may be overridden for trackers that
    need more than a value (such as an accuracy).
    """

    def step_terms(self, data, training):
        raise NotImplementedError

    def train_step(self, data):
        with tf.GradientTape() as tape:
            terms = self.step_terms(data, training=True)
            scaled = replica_loss(self.optimizer, terms["loss"])
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self.update_metrics(terms)

    def validation_terms(self, data):
        return self.step_terms(data, training=False)
