"""Runs a signature for a request: resolves the version, checks inputs, batches.

Shared by the REST and gRPC front ends, so both give the same answers and the
same errors.
"""
import asyncio
import time

import tensorflow as tf
from google.protobuf import text_format

from serving import responses
from serving.errors import ServingError, from_tf_error

DEFAULT_SIGNATURE = "serving_default"


def _shape_text(shape):
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def check_inputs(signature, inputs, max_rows):
    """Checks names, dtypes, shapes and the shared batch size; returns the rows."""
    expected = signature.inputs
    # predict_util.cc VerifyRequestInputsSize and PreProcessPrediction.
    if len(inputs) != len(expected):
        sent, wanted = sorted(inputs), sorted(expected)
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input size does not match signature: {len(sent)}!={len(wanted)} "
            f"len({{{','.join(sent)}}}) != len({{{','.join(wanted)}}}). "
            f"Sent extra: {{{','.join(sorted(set(sent) - set(wanted)))}}}. "
            f"Missing but required: {{{','.join(sorted(set(wanted) - set(sent)))}}}.")
    for alias in sorted(inputs):
        if alias not in expected:
            raise ServingError("INVALID_ARGUMENT",
                               f"input tensor alias not found in signature: {alias}. Inputs "
                               f"expected to be in the set {{{','.join(sorted(expected))}}}.")
    rows = set()
    for name, value in inputs.items():
        spec = expected[name]
        want = spec.dtype.as_numpy_dtype
        if value.dtype != want:
            raise ServingError("INVALID_ARGUMENT",
                               f"Input '{name}' has dtype {value.dtype.name}, but signature "
                               f"'{signature.name}' expects {spec.dtype.name}")
        shape = spec.shape.as_list()
        if value.ndim != len(shape) or any(
                d is not None and d != v for d, v in zip(shape, value.shape, strict=True)):
            raise ServingError("INVALID_ARGUMENT",
                               f"Input '{name}' has shape {_shape_text(value.shape)}, but signature "
                               f"'{signature.name}' expects {_shape_text(shape)}")
        rows.add(value.shape[0])
    if len(rows) > 1:
        raise ServingError("INVALID_ARGUMENT",
                           f"Inputs have different batch sizes {sorted(rows)}; every input of "
                           "a signature needs the same leading (batch) dimension")
    count = rows.pop() if rows else 0
    if count > max_rows:
        raise ServingError("INVALID_ARGUMENT",
                           f"Request has {count} rows, more than this server's limit of "
                           f"{max_rows} (--max_rows)")
    return count


class Predictor:
    """Resolves, checks and runs predictions.

    Args:
        manager: the ModelManager.
        batcher: a Batcher, or None to call signatures directly.
        max_rows: largest number of rows a request may carry.
        metrics: a Metrics recorder, or None.
    """

    def __init__(self, manager, batcher=None, max_rows=4096, metrics=None):
        self.manager = manager
        self.batcher = batcher
        self.max_rows = max_rows
        self.metrics = metrics

    @staticmethod
    def signature(version, signature_name, rest=False):
        """The version's signature ``signature_name`` ('' or None: serving_default).

        An unknown name is FAILED_PRECONDITION over gRPC (predict_util.cc RunPredict) and
        INVALID_ARGUMENT over REST (http_rest_api_handler.cc GetInfoMap): HTTP 400 both.
        """
        name = signature_name or DEFAULT_SIGNATURE
        if name not in version.signatures:
            known = (f" (signatures of {version.model} version {version.number}: "
                     f"{', '.join(sorted(version.signatures))})")
            if rest:
                raise ServingError("INVALID_ARGUMENT",
                                   f'Serving signature name: "{name}" not found in signature def'
                                   + known)
            raise ServingError("FAILED_PRECONDITION",
                               f'Serving signature key "{name}" not found.' + known)
        return version.signatures[name]

    def _call(self, model, signature, inputs):
        """Runs a signature in this thread, timing it."""
        start = time.perf_counter()
        outputs = signature(inputs)
        if self.metrics is not None:
            self.metrics.runtime(model, time.perf_counter() - start)
        return outputs

    @staticmethod
    def _finish(outputs, error, output_filter):
        """The outputs of a finished call, filtered; its error as a ServingError."""
        if isinstance(error, ServingError):
            raise error
        if error is not None:
            if isinstance(error, tf.errors.OpError):
                raise from_tf_error(error) from error
            raise ServingError("INTERNAL", f"{type(error).__name__}: {error}") from error
        if output_filter:
            outputs = {k: outputs[k] for k in output_filter}
        return outputs

    @staticmethod
    def _check_filter(signature, output_filter):
        """predict_util.cc PreProcessPrediction's checks of output_filter, before running."""
        names = getattr(signature, "outputs", None) or {}
        seen = set()
        for alias in output_filter:
            if names and alias not in names:
                raise ServingError("INVALID_ARGUMENT",
                                   f"output tensor alias not found in signature: {alias} Outputs "
                                   f"expected to be in the set {{{','.join(sorted(names))}}}.")
            if alias in seen:
                raise ServingError("INVALID_ARGUMENT", f"duplicate output tensor alias: {alias}")
            seen.add(alias)

    def _prepare(self, version, signature_name, inputs, output_filter=()):
        """(signature, rows) of a checked request."""
        signature = self.signature(version, signature_name)
        rows = check_inputs(signature, inputs, self.max_rows)
        self._check_filter(signature, output_filter)
        return signature, rows

    def run(self, version, signature_name, inputs, output_filter=()):
        """Runs a signature of a resolved version here, unbatched; returns its outputs."""
        signature, _ = self._prepare(version, signature_name, inputs, output_filter)
        try:
            outputs = self._call(version.model, signature, inputs)
        except Exception as err:
            return self._finish(None, err, output_filter)
        return self._finish(outputs, None, output_filter)

    async def run_async(self, version, signature_name, inputs, output_filter=(), executor=None,
                        timeout=None):
        """Runs a request for the event-loop front ends: batched when batching is on,
        else on ``executor``; waits at most ``timeout`` seconds (asyncio.TimeoutError)."""
        signature, rows = self._prepare(version, signature_name, inputs, output_filter)
        if self.batcher is not None and rows > 0:
            pending = self.batcher.run((version.model, version.number, signature.name),
                                       signature, inputs, rows)
        else:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(executor, self._call, version.model, signature, inputs)
        try:
            outputs = await asyncio.wait_for(pending, timeout)
        except asyncio.TimeoutError:
            raise
        except Exception as err:
            return self._finish(None, err, output_filter)
        return self._finish(outputs, None, output_filter)

    def run_warmup(self, version, request):
        """Replays one warmup PredictRequest against a version being loaded."""
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        self.run(version, request.model_spec.signature_name, inputs)


# classifier.cc and regressor.cc, with --enable_signature_method_name_check=false (TF
# Serving's default): GetClassificationSignatureDef / GetRegressionSignatureDef and their
# PreProcessClassification / PreProcessRegression checks of the signature.
_EXAMPLE_CHECKS = {
    "classify": ("classification", ("scores", "classes"), (1, 2), "one or two output Tensors"),
    "regress": ("regression", ("outputs",), (1,), "one output Tensor"),
}


def check_example_signature(version, signature_name, method):
    """TF Serving's INVALID_ARGUMENT for a Classify or Regress request on a signature that
    cannot serve it; UNIMPLEMENTED when it could (genzoo runs no tf.Example signatures)."""
    kind, outputs, counts, expected = _EXAMPLE_CHECKS[method]
    name = signature_name or DEFAULT_SIGNATURE
    defs = responses.signature_defs(version)
    if name not in defs:
        raise ServingError("INVALID_ARGUMENT", f"No signature was found with the name: {name}")
    signature = defs[name]
    text = text_format.MessageToString(signature)
    if len(signature.inputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
    if len(signature.outputs) not in counts:
        raise ServingError("INVALID_ARGUMENT",
                           f"Expected {expected}, found {len(signature.outputs)}"
                           if method == "classify" else f"Expected {expected}.")
    if "inputs" not in signature.inputs:
        raise ServingError("INVALID_ARGUMENT", f"No {kind} inputs found in SignatureDef: {text}")
    if not any(o in signature.outputs for o in outputs):
        if method == "classify":
            raise ServingError("INVALID_ARGUMENT",
                               'Expected classification signature outputs to contain at least one '
                               f'of "classes" or "scores". Signature was: {text}')
        raise ServingError("INVALID_ARGUMENT", f"No regression outputs found in SignatureDef: {text}")
    raise ServingError("UNIMPLEMENTED",
                       f"{method.capitalize()} runs tf.Example signatures, which genzoo's server "
                       f"does not; signature '{name}' of {version.model} takes tensors: use Predict")
