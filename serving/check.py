"""Servability audit of SavedModels: would stock TensorFlow Serving run them?

    python -m serving.check exported/vae_mnist/1     # one version
    python -m serving.check exported                 # every version of every model

For each SavedModel: every op of every graph and function (loop and branch
bodies included) must be a core TensorFlow op and none may be Python-only
(PyFunc, EagerPyFunc); then, in a fresh process that cannot import genzoo,
the model is loaded with TensorFlow's session-based loader (as TF Serving loads
it) and every signature runs on small inputs built from its signature def.
Exit status 1 when any model fails.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}

# Runs with `python -I` in an empty folder: TF's TF1 loader, no genzoo code.
_SESSION_RUN = r"""
import importlib.util, json, sys
import numpy as np
import tensorflow as tf
assert importlib.util.find_spec("zoo") is None
path = sys.argv[1]
tf1 = tf.compat.v1
report = {}
# Valid values of string inputs (zeros are not strings): the model's warmup requests.
warm = {}
try:
    from tensorflow_serving.apis import prediction_log_pb2
    records = path + "/assets.extra/tf_serving_warmup_requests"
    for record in tf.compat.v1.io.tf_record_iterator(records):
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        for key, value in request.inputs.items():
            warm[key] = tf.make_ndarray(value)
except (ImportError, OSError, tf.errors.NotFoundError):
    pass
with tf.Graph().as_default(), tf1.Session() as sess:
    meta = tf1.saved_model.loader.load(sess, ["serve"], path)
    for name, sig in meta.signature_def.items():
        if name.startswith("__"):
            continue
        feed = {}
        for key, info in sig.inputs.items():
            dims = [d.size if d.size >= 0 else 2 for d in info.tensor_shape.dim]
            dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
            value = np.zeros(dims, dtype)
            if key == "seed":
                value = np.stack([np.zeros(dims[0]), np.arange(dims[0])], 1).astype(dtype)
            elif info.dtype == tf.string.as_datatype_enum and key in warm:
                value = warm[key][:dims[0]]
            feed[info.name] = value
        fetches = {k: v.name for k, v in sig.outputs.items()}
        try:
            out = sess.run(fetches, feed)
            report[name] = {k: list(np.shape(v)) for k, v in out.items()}
        except Exception as err:
            report[name] = "error: " + type(err).__name__ + ": " + str(err).split("\n")[0]
print("REPORT " + json.dumps(report))
"""


def saved_models(path):
    """SavedModel folders at or under ``path`` (a version, a model or a zoo folder)."""
    path = pathlib.Path(path)
    if (path / "saved_model.pb").exists():
        return [path]
    found = sorted(p.parent for p in path.rglob("saved_model.pb")
                   if not any(part.startswith(".") for part in p.relative_to(path).parts))
    return found


def audit_ops(path):
    """Problems with the ops of a SavedModel: a list of strings (empty if fine)."""
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((pathlib.Path(path) / "saved_model.pb").read_bytes())
    except Exception as err:
        return [f"saved_model.pb cannot be parsed: {type(err).__name__}: {err}"]
    problems = []
    for meta in proto.meta_graphs:
        library = meta.graph_def.library
        functions = {f.signature.name for f in library.function}
        nodes = [("graph", n) for n in meta.graph_def.node]
        nodes += [(f.signature.name, n) for f in library.function for n in f.node_def]
        for where, node in nodes:
            if node.op in PYTHON_OPS:
                problems.append(f"{where}: node {node.name!r} uses Python-only op {node.op}")
            elif node.op not in functions and op_def_registry.get(node.op) is None:
                problems.append(f"{where}: node {node.name!r} uses {node.op}, not a core TensorFlow op")
    if not any("serve" in m.meta_info_def.tags for m in proto.meta_graphs):
        problems.append("no meta graph is tagged 'serve'")
    return problems


def run_signatures(path, timeout=300):
    """Runs every signature in a fresh process via the session-based loader."""
    with tempfile.TemporaryDirectory() as empty:
        script = pathlib.Path(empty) / "run.py"
        script.write_text(_SESSION_RUN)
        # The script runs bare (python -I, no zoo import), so it gets the log level here.
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("PYTHONPATH", None)
        result = subprocess.run([sys.executable, "-I", str(script), str(pathlib.Path(path).resolve())],
                                cwd=empty, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return None, [f"the session-based loader failed: {tail}"]
    report = json.loads(lines[-1][len("REPORT "):])
    problems = [f"signature {k}: {v}" for k, v in report.items() if isinstance(v, str)]
    return report, problems


def check(path):
    """(report, problems) for one SavedModel."""
    problems = audit_ops(path)
    report, run_problems = run_signatures(path)
    return report, problems + run_problems


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m serving.check", description=__doc__.split("\n")[0])
    p.add_argument("path", help="a SavedModel, a model folder of versions, or a zoo folder")
    args = p.parse_args(argv)
    models = saved_models(args.path)
    if not models:
        sys.exit(f"error: no SavedModel (saved_model.pb) at or under {args.path}")
    failed = 0
    for path in models:
        report, problems = check(path)
        if problems:
            failed += 1
            print(f"FAIL {path}")
            for line in problems:
                print(f"  - {line}")
        else:
            sigs = ", ".join(f"{k} -> {v}" for k, v in sorted(report.items()))
            print(f"ok   {path}: core ops only; signatures ran: {sigs}")
    print(f"{len(models) - failed} servable, {failed} not")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
