"""TF Serving's gRPC API with the official protos: PredictionService and ModelService.

The services are grpc.aio servicers: they run on the server's event loop and
wait for signatures (run by the batcher or an executor) without holding a
thread per request. Outputs travel in the typed fields (float_val, int_val,
...) as TF Serving sends them; large tensors are converted off the loop.
"""
import asyncio
import concurrent.futures
import logging
import math
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import models, predict, responses
from serving.errors import ServingError

log = logging.getLogger("genzoo.serving")
_INLINE_ELEMENTS = 16 << 10  # tensors up to this many elements are converted on the loop


def _spec_args(spec):
    """(name, version, label) of a ModelSpec."""
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    return spec.name, version, label


async def _abort(context, err):
    await context.abort(err.grpc_code, err.message)


def _missing_spec(request):
    # predict_impl.cc, classification_service.cc, get_model_metadata_impl.cc
    if not request.HasField("model_spec"):
        raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")


def to_array(name, proto, max_elements):
    """A TensorProto as an array, refusing shapes that would not fit the request limit."""
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise ServingError("INVALID_ARGUMENT", f"Input '{name}' has an unknown dimension {dims}")
    if math.prod(dims) > max_elements:
        raise ServingError("INVALID_ARGUMENT",
                           f"Input '{name}' has shape {dims}: more elements than this server "
                           f"accepts in one request ({max_elements}, --max_request_bytes)")
    try:
        return tf.make_ndarray(proto)
    except Exception as err:  # predict_util.cc: Tensor::FromProto failed
        raise ServingError("INVALID_ARGUMENT", f"tensor parsing error: {name} ({err})") from err


# Tensor::AsProtoField: the repeated field of each dtype (tensor.proto).
_TYPED_FIELDS = {
    tf.float32: "float_val", tf.float64: "double_val", tf.int32: "int_val", tf.int16: "int_val",
    tf.int8: "int_val", tf.uint8: "int_val", tf.uint16: "int_val", tf.int64: "int64_val",
    tf.bool: "bool_val", tf.string: "string_val", tf.uint32: "uint32_val",
    tf.uint64: "uint64_val", tf.float16: "half_val", tf.bfloat16: "half_val",
}
_FIELD_CHUNK = 1 << 16  # values per extend(): the event loop gets the GIL between chunks


def to_tensor_proto(array, proto=None):
    """An output array as TF Serving sends it: values in the dtype's typed field
    (predict_util.cc serializes with kAsProtoField), not tensor_content; written into
    ``proto`` when given."""
    array = np.asarray(array)
    dtype = tf.as_dtype(array.dtype)
    field = _TYPED_FIELDS.get(dtype)
    if proto is None:
        proto = tensor_pb2.TensorProto()
    if field is None:  # complex and other rare types: TensorFlow's own encoding
        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    proto.dtype = dtype.as_datatype_enum
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.reshape(-1)
    if dtype in (tf.float16, tf.bfloat16):  # half_val holds the 16-bit patterns
        flat = flat.view(np.uint16)
    values = getattr(proto, field)
    for start in range(0, flat.size, _FIELD_CHUNK):
        values.extend(flat[start:start + _FIELD_CHUNK].tolist())
        if flat.size > _FIELD_CHUNK:
            time.sleep(0)  # hands the GIL to the event loop (see rest._pause)
    return proto


def _predict_response(version, signature_name, outputs):
    response = predict_pb2.PredictResponse()
    response.model_spec.name = version.model
    response.model_spec.version.value = version.number
    response.model_spec.signature_name = signature_name or "serving_default"
    for key, value in outputs.items():
        to_tensor_proto(value, response.outputs[key])
    return response


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, GetModelMetadata, and TF Serving's errors for Classify and Regress (genzoo's
    signatures take tensors, not tf.Example); MultiInference is refused."""

    def __init__(self, predictor, metrics=None, max_elements=32 << 20, executor=None, timeout=None):
        self.predictor = predictor
        self.metrics = metrics
        self.max_elements = max_elements
        self.executor = executor
        self.timeout = timeout
        # Converting large tensors from and to protos runs here, off the event loop.
        self.codec = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="genzoo-proto")

    async def _code(self, elements, fn, *args):
        if elements <= _INLINE_ELEMENTS:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.codec, fn, *args)

    def _inputs(self, request):
        return {k: to_array(k, v, self.max_elements) for k, v in request.inputs.items()}

    async def Predict(self, request, context):
        start = time.perf_counter()
        status = "OK"
        name = request.model_spec.name
        try:
            _missing_spec(request)
            name, version, label = _spec_args(request.model_spec)
            resolved = self.predictor.manager.resolve(name, version, label)
            elements = sum(math.prod(d.size for d in v.tensor_shape.dim)
                           for v in request.inputs.values())
            inputs = await self._code(elements, self._inputs, request)
            try:
                outputs = await self.predictor.run_async(
                    resolved, request.model_spec.signature_name, inputs,
                    list(request.output_filter), self.executor, self.timeout)
            except asyncio.TimeoutError:
                raise ServingError("DEADLINE_EXCEEDED",
                                   f"Request timed out after {self.timeout:g} s") from None
            return await self._code(sum(np.size(v) for v in outputs.values()), _predict_response,
                                    resolved, request.model_spec.signature_name, outputs)
        except ServingError as err:
            status = err.code
            await _abort(context, err)
        finally:
            if self.metrics is not None:
                self.metrics.request(name, "predict", "GRPC", status, time.perf_counter() - start)

    async def GetModelMetadata(self, request, context):
        try:
            _missing_spec(request)
            fields = tuple(request.metadata_field)
            if not fields:
                raise ServingError("INVALID_ARGUMENT",
                                   "GetModelMetadataRequest must specify at least one metadata_field")
            name, version, label = _spec_args(request.model_spec)
            resolved = self.predictor.manager.resolve(name, version, label)
            return responses.metadata_response(resolved, fields)
        except ServingError as err:
            await _abort(context, err)

    async def _examples(self, request, context, method):
        """classification_service.cc / regression_service.cc, then classifier.cc /
        regressor.cc's signature checks."""
        start, status, name = time.perf_counter(), "OK", request.model_spec.name
        try:
            _missing_spec(request)
            resolved = self.predictor.manager.resolve(*_spec_args(request.model_spec))
            predict.check_example_signature(resolved, request.model_spec.signature_name, method)
        except ServingError as err:
            status = err.code
            await _abort(context, err)
        finally:
            if self.metrics is not None:
                self.metrics.request(name, method, "GRPC", status, time.perf_counter() - start)

    async def Classify(self, request, context):
        await self._examples(request, context, "classify")

    async def Regress(self, request, context):
        await self._examples(request, context, "regress")

    async def MultiInference(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "MultiInference runs tf.Example signatures, which genzoo's server "
                            "does not; use Predict")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest (model_servers/model_service_impl.cc)."""

    def __init__(self, manager):
        self.manager = manager

    async def GetModelStatus(self, request, context):
        try:
            if not request.HasField("model_spec"):  # get_model_status_impl.cc
                raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
            return responses.status_response(self.manager, *_spec_args(request.model_spec))
        except ServingError as err:
            await _abort(context, err)

    async def HandleReloadConfigRequest(self, request, context):
        """Validates and applies the config; returns when the models it adds have loaded.

        As TF Serving, an error is the call's gRPC status (INVALID_ARGUMENT for an
        invalid config, FAILED_PRECONDITION for a label on a version that is not
        available, UNKNOWN when added models did not become available); TF Serving
        also copies it into the response's ``status``, which gRPC does not send
        with an error status, so the response is OK whenever it arrives.
        """
        try:  # loading models takes seconds: off the event loop
            await asyncio.get_running_loop().run_in_executor(
                None, self.manager.reload_config, request.config)
        except ServingError as err:
            log.error("ReloadConfig failed: %s", err.message)
            await _abort(context, err)
        except models.ModelsUnavailable as err:
            log.error("ReloadConfig failed: %s", err)
            await context.abort(grpc.StatusCode.UNKNOWN, str(err))
        except Exception as err:  # a bug must not look like success
            log.exception("ReloadConfig failed")
            await context.abort(grpc.StatusCode.INTERNAL,
                                f"ReloadConfig failed: {type(err).__name__}: {err}")
        log.info("ReloadConfig applied: models %s", ", ".join(sorted(self.manager.models)))
        return model_management_pb2.ReloadConfigResponse()  # status: OK


def add_services(server, predictor, metrics=None, max_elements=32 << 20, executor=None,
                 timeout=None):
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(predictor, metrics, max_elements, executor, timeout), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(predictor.manager), server)
