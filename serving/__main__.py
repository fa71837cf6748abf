"""``python -m serving``: the embedded model server (see serving/server.py)."""
import logging

# The root logger is set up before serving.server loads TensorFlow: TensorFlow gives its
# own logger a handler when the root has none, and its lines would then print twice.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

from serving.server import main  # noqa: E402  (after the logging set-up, see above)

main()
