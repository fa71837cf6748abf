"""genzoo serving: export, servability check, embedded server, client."""
import zoo  # noqa: F401  (sets TensorFlow's log level before TensorFlow loads)
