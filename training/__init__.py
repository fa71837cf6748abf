"""genzoo's training side: data pipelines, the training command, evaluation."""
import zoo  # noqa: F401  (sets TensorFlow's log level before TensorFlow loads)
