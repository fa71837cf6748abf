"""Runs a signature for a request: resolves the version, checks inputs, batches.

Shared by the REST and gRPC front ends, so both give the same answers and the
same errors.
"""
import asyncio
import time

import tensorflow as tf

from serving.errors import ServingError, from_tf_error

DEFAULT_SIGNATURE = "serving_default"


def _shape_text(shape):
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def check_inputs(signature, inputs, max_rows):
    """Checks names, dtypes, shapes and the shared batch size; returns the rows."""
    expected = signature.inputs
    names = ", ".join(sorted(expected))
    missing = sorted(set(expected) - set(inputs))
    extra = sorted(set(inputs) - set(expected))
    if missing or extra:
        problems = ([f"missing input(s): {', '.join(missing)}"] if missing else []) + \
                   ([f"unexpected input(s): {', '.join(extra)}"] if extra else [])
        raise ServingError("INVALID_ARGUMENT",
                           f"{'; '.join(problems).capitalize()}. Signature '{signature.name}' "
                           f"expects inputs: {names}")
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
    def signature(version, signature_name):
        name = signature_name or DEFAULT_SIGNATURE
        if name not in version.signatures:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Serving signature name: \"{name}\" not found in signature def. Signatures of "
                f"{version.model} version {version.number}: {', '.join(sorted(version.signatures))}")
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
            unknown = sorted(set(output_filter) - set(outputs))
            if unknown:
                raise ServingError("INVALID_ARGUMENT",
                                   f"output tensor alias not found in signature: {', '.join(unknown)}. "
                                   f"Outputs expected to be in the set {{{', '.join(sorted(outputs))}}}.")
            outputs = {k: outputs[k] for k in output_filter}
        return outputs

    def _prepare(self, version, signature_name, inputs):
        """(signature, rows) of a checked request."""
        signature = self.signature(version, signature_name)
        return signature, check_inputs(signature, inputs, self.max_rows)

    def run(self, version, signature_name, inputs, output_filter=()):
        """Runs a signature of a resolved version here, unbatched; returns its outputs."""
        signature, _ = self._prepare(version, signature_name, inputs)
        try:
            outputs = self._call(version.model, signature, inputs)
        except Exception as err:
            return self._finish(None, err, output_filter)
        return self._finish(outputs, None, output_filter)

    async def run_async(self, version, signature_name, inputs, output_filter=(), executor=None,
                        timeout=None):
        """Runs a request for the event-loop front ends: batched when batching is on,
        else on ``executor``; waits at most ``timeout`` seconds (asyncio.TimeoutError)."""
        signature, rows = self._prepare(version, signature_name, inputs)
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
