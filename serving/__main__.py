"""``python -m serving``: the embedded model server (see serving/server.py)."""
import logging

from serving.server import main

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
# TensorFlow loaded before the root logger had a handler (zoo/__init__.py imports it), so it
# gave its own logger a handler; the root's now prints its lines, so that one would print them twice.
logging.getLogger("tensorflow").handlers.clear()

main()
