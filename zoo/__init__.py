"""genzoo's models: Keras 3 generative models for images (no I/O at import).

TensorFlow's C++ log level is set here, once for the whole project: every
package (``training``, ``serving``) and every script imports ``zoo`` before
TensorFlow loads, so its INFO and WARNING lines stay off unless
``TF_CPP_MIN_LOG_LEVEL`` says otherwise.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
