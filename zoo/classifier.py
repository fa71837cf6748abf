"""Classifiers the zoo trains per dataset: the feature space of sample-quality metrics.

Inception weights cannot be downloaded here, so FID, KID, precision/recall
and mode coverage use a small CNN trained on the same data (its penultimate
layer for features, its softmax for classes).
"""
import keras
import tensorflow as tf

from zoo import contract, steps


@keras.saving.register_keras_serializable(package="genzoo")
class Classifier(steps.OneOptimizerModel):
    """A CNN classifier: two conv blocks (2 x 3x3 conv, max-pool, dropout), a dense
    feature layer, softmax over classes.

    Args:
        image_shape: (H, W, C); inputs are intensities in [0, 1].
        num_classes: classes.
        filters: width of the first block (the second has twice as many).
        feature_dim: size of the feature layer (the metrics' embedding).
        dropout: rate after each block and the feature layer.
    """

    family = "classifier"
    serving_note = "`classify` returns logits, probabilities and classes; `features` the embedding."

    def __init__(self, image_shape=(28, 28, 1), num_classes=10, filters=32, feature_dim=128,
                 dropout=0.25, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_classes = int(num_classes)
        self.filters = int(filters)
        self.feature_dim = int(feature_dim)
        self.dropout = float(dropout)
        layers = []
        for width in (self.filters, 2 * self.filters):
            layers += [keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
                       keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
                       keras.layers.MaxPooling2D(), keras.layers.Dropout(self.dropout)]
        layers += [keras.layers.Flatten(), keras.layers.Dense(self.feature_dim, activation="relu")]
        self.body = keras.Sequential(layers, name="features")
        self.head = keras.Sequential([keras.layers.Dropout(self.dropout),
                                      keras.layers.Dense(self.num_classes, dtype="float32")], name="head")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.build((None,) + self.image_shape)

    def build(self, input_shape):
        self.body.build((None,) + self.image_shape)
        self.head.build((None, self.feature_dim))
        self.built = True

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "num_classes": self.num_classes, "filters": self.filters,
                "feature_dim": self.feature_dim, "dropout": self.dropout}

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def features(self, x, training=False):
        """Feature vectors (B, feature_dim) of images in [0, 1]."""
        return self.body(x, training=training)

    def call(self, x, training=False):
        """Class logits (B, num_classes)."""
        return self.head(self.features(x, training), training=training)

    def describe(self):
        return (f"two blocks of two 3x3 convolutions ({self.filters}, {2 * self.filters} "
                f"channels, ReLU), max-pooling and dropout {self.dropout}; a {self.feature_dim}-d "
                f"ReLU feature layer (the sample metrics' embedding); softmax over "
                f"{self.num_classes} classes.")

    def step_terms(self, data, training):
        if not isinstance(data, dict) or "labels" not in data:
            raise ValueError('Classifier trains on {"images": ..., "labels": ...}')
        x, labels = tf.cast(data["images"], tf.float32), data["labels"]
        logits = self(x, training=training)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                           from_logits=True))
        return {"loss": loss, "labels": labels, "logits": logits}

    def update_metrics(self, terms, weight=None):
        # Each example counts once; validation's padding example of an empty batch, none.
        rows = None if weight is None else tf.fill(tf.shape(terms["labels"])[:1], tf.minimum(weight, 1.0))
        self.accuracy.update_state(terms["labels"], terms["logits"], sample_weight=rows)
        return steps.update_trackers(self.metrics, {"loss": terms["loss"]}, weight)

    # --------------------------------------------------------------- serving
    def serve_classify(self, images):
        logits = self(tf.cast(images, tf.float32) / 255.0)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits),
                "classes": tf.argmax(logits, axis=-1)}

    def serve_features(self, images):
        return {"features": self.features(tf.cast(images, tf.float32) / 255.0)}

    def serving_endpoints(self, **options):
        """{name: (function, input specs)}: classify (serving_default), features."""
        s = contract.specs(self.image_shape)
        return {"classify": (self.serve_classify, [s["images"]]),
                "features": (self.serve_features, [s["images"]])}
