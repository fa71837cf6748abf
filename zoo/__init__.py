"""genzoo's models: Keras 3 generative models for images (no I/O at import).

TensorFlow's C++ log is set up here, once for the whole project: every package
(``training``, ``serving``) and every script imports ``zoo`` before TensorFlow
loads. ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (warnings and errors only), and
TensorFlow is imported, and its devices listed, with the process's stderr
caught: TensorFlow 2.21 logs a few lines through absl before absl's logging is
initialised, and those ignore ``TF_CPP_MIN_LOG_LEVEL`` (abseil-cpp pull
requests 1718 and 1957). On a machine without a GPU they are INFO lines ("oneDNN
custom operations are on", "Could not find cuda drivers on your machine") and
an error for the missing driver ("failed call to cuInit"), which is no error
there. Those lines are dropped and every other line is written to stderr as it
was. ``TF_CPP_MIN_LOG_LEVEL=0`` shows everything.
"""
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|I\d{4} [\d:.]+ +\d+ \S+:\d+\] "  # absl INFO lines
    rb"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] failed call to cuInit")  # no driver: no GPU to use


def _import_tensorflow_quietly():
    """Imports TensorFlow and lists its GPUs with stderr caught; writes back what is not noise."""
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("0", "") or "tensorflow" in sys.modules:
        return
    with tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # initialises the platforms: cuInit runs here
        except ImportError:
            pass  # raised again, with its message, where TensorFlow is imported next
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not _NOISE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


_import_tensorflow_quietly()
