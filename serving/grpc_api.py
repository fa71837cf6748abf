"""TF Serving's gRPC API with the official protos: PredictionService and ModelService.

The services are grpc.aio servicers: they run on the server's event loop and
wait for signatures (run by the batcher or an executor) without holding a
thread per request.
"""
import asyncio
import logging
import math
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import models, responses
from serving.errors import ServingError

log = logging.getLogger("genzoo.serving")


def _spec_args(spec):
    """(name, version, label) of a ModelSpec."""
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.WhichOneof("version_choice") == "version_label" else None
    return spec.name, version, label


async def _abort(context, err):
    await context.abort(err.grpc_code, err.message)


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
    except Exception as err:
        raise ServingError("INVALID_ARGUMENT", f"Malformed input tensor '{name}': {err}") from err


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify, Regress and MultiInference are refused."""

    def __init__(self, predictor, metrics=None, max_elements=32 << 20, executor=None, timeout=None):
        self.predictor = predictor
        self.metrics = metrics
        self.max_elements = max_elements
        self.executor = executor
        self.timeout = timeout

    async def Predict(self, request, context):
        start = time.perf_counter()
        status = "OK"
        name = request.model_spec.name
        try:
            inputs = {k: to_array(k, v, self.max_elements) for k, v in request.inputs.items()}
            name, version, label = _spec_args(request.model_spec)
            resolved = self.predictor.manager.resolve(name, version, label)
            try:
                outputs = await self.predictor.run_async(
                    resolved, request.model_spec.signature_name, inputs,
                    list(request.output_filter), self.executor, self.timeout)
            except asyncio.TimeoutError:
                raise ServingError("DEADLINE_EXCEEDED",
                                   f"Request timed out after {self.timeout:g} s") from None
            response = predict_pb2.PredictResponse()
            response.model_spec.name = resolved.model
            response.model_spec.version.value = resolved.number
            response.model_spec.signature_name = request.model_spec.signature_name or "serving_default"
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response
        except ServingError as err:
            status = err.code
            await _abort(context, err)
        finally:
            if self.metrics is not None:
                self.metrics.request(name, "predict", "GRPC", status, time.perf_counter() - start)

    async def GetModelMetadata(self, request, context):
        try:
            name, version, label = _spec_args(request.model_spec)
            resolved = self.predictor.manager.resolve(name, version, label)
            return responses.metadata_response(resolved, tuple(request.metadata_field))
        except ServingError as err:
            await _abort(context, err)

    async def _unsupported(self, request, context):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "genzoo models have no classification or regression signatures; use Predict")

    Classify = Regress = MultiInference = _unsupported


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
