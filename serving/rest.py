"""TF Serving's REST API v1 on aiohttp.

    POST /v1/models/NAME[/versions/N|/labels/L]:predict   (row or columnar JSON)
    POST ...:classify | ...:regress                        (answered: not supported)
    GET  /v1/models/NAME[/versions/N|/labels/L]            (model status)
    GET  /v1/models/NAME[/versions/N|/labels/L]/metadata   (signature defs)
    GET  /monitoring/prometheus/metrics

Requests and responses follow TF Serving's JSON mapping: ``{"instances": [...]}``
-> ``{"predictions": [...]}`` and ``{"inputs": ...}`` -> ``{"outputs": ...}``,
``{"b64": "..."}`` for binary strings, errors as ``{"error": "..."}`` with TF
Serving's HTTP codes.
"""
import asyncio
import base64
import json
import re
import time

import numpy as np
from aiohttp import web

from serving import responses
from serving.errors import ServingError

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<tail>/metadata|:predict|:classify|:regress)?$"
)


def _leaf_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _decode_b64(value):
    if _leaf_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as err:
            raise ServingError("INVALID_ARGUMENT", f"invalid base64 value: {err}") from err
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def to_array(value, spec, name):
    """The JSON ``value`` of input ``name`` as an array of the spec's dtype."""
    dtype = spec.dtype
    if dtype.name == "string":
        try:
            return np.array(_decode_b64(value), dtype=object)
        except ValueError as err:
            raise ServingError("INVALID_ARGUMENT", f"Input '{name}' is ragged: {err}") from err
    if _contains_b64(value):
        raise ServingError("INVALID_ARGUMENT",
                           f"Input '{name}' has a b64 value, but its dtype is {dtype.name}; "
                           "b64 is for string inputs")
    try:
        array = np.array(value)
    except (ValueError, TypeError) as err:
        raise ServingError("INVALID_ARGUMENT",
                           f"Input '{name}' is not a rectangular array of numbers: {err}") from err
    kind = array.dtype.kind
    want = np.dtype(dtype.as_numpy_dtype)
    if array.size == 0:
        return array.astype(want)
    if kind == "O" and all(isinstance(v, int) and not isinstance(v, bool)
                           for v in array.reshape(-1)):
        raise ServingError("INVALID_ARGUMENT",
                           f"Input '{name}' has integers outside the range of {dtype.name}")
    if kind not in "biuf":
        raise ServingError("INVALID_ARGUMENT",
                           f"Input '{name}' must hold numbers (dtype {dtype.name}), "
                           f"got values of type {array.dtype.name}")
    if want.kind in "iu":
        if kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
            raise ServingError("INVALID_ARGUMENT",
                               f"Input '{name}' has dtype {dtype.name}; its values must be integers")
        info = np.iinfo(want)
        if array.min() < info.min or array.max() > info.max:
            raise ServingError("INVALID_ARGUMENT",
                               f"Input '{name}' has values outside the range of {dtype.name} "
                               f"[{info.min}, {info.max}]")
    elif want.kind == "b" and kind != "b":
        raise ServingError("INVALID_ARGUMENT", f"Input '{name}' must hold true/false values")
    return array.astype(want)


def _contains_b64(value):
    if _leaf_b64(value):
        return True
    return isinstance(value, list) and bool(value) and _contains_b64(value[0])


def parse_predict(doc, signature):
    """(inputs, row_format) from a predict request body already parsed as JSON."""
    if not isinstance(doc, dict):
        raise ServingError("INVALID_ARGUMENT", "Request body must be a JSON object")
    has_rows, has_cols = "instances" in doc, "inputs" in doc
    if has_rows == has_cols:
        raise ServingError("INVALID_ARGUMENT",
                           "Request needs exactly one of 'instances' (row format) "
                           "or 'inputs' (columnar format)")
    specs = signature.inputs
    single = next(iter(specs)) if len(specs) == 1 else None
    if has_cols:
        cols = doc["inputs"]
        if not (isinstance(cols, dict) and not _leaf_b64(cols)):
            if single is None:
                raise ServingError("INVALID_ARGUMENT",
                                   f"'inputs' must be an object naming the inputs {sorted(specs)}")
            cols = {single: cols}
        return {k: to_array(v, specs[k], k) if k in specs else np.zeros(0)
                for k, v in cols.items()}, False
    rows = doc["instances"]
    if not isinstance(rows, list) or not rows:
        raise ServingError("INVALID_ARGUMENT", "'instances' must be a non-empty list")
    named = isinstance(rows[0], dict) and not _leaf_b64(rows[0])
    if not named:
        if single is None:
            raise ServingError("INVALID_ARGUMENT",
                               f"Each instance must be an object naming the inputs {sorted(specs)}")
        return {single: to_array(rows, specs[single], single)}, True
    keys = set(rows[0])
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != keys:
            raise ServingError("INVALID_ARGUMENT",
                               f"Instance {i} does not name the same inputs as instance 0 "
                               f"({sorted(keys)})")
    return {k: to_array([row[k] for row in rows], specs[k], k) if k in specs else np.zeros(0)
            for k in keys}, True


def _jsonable(array, name):
    if array.dtype == object or array.dtype.kind == "S":
        flat = [base64.b64encode(v).decode() if name.endswith("_bytes") else v.decode("utf-8", "replace")
                for v in array.reshape(-1)]
        out = np.array(flat, dtype=object).reshape(array.shape)
        if name.endswith("_bytes"):
            return _wrap_b64(out.tolist())
        return out.tolist()
    return array.tolist()


def _wrap_b64(value):
    if isinstance(value, list):
        return [_wrap_b64(v) for v in value]
    return {"b64": value}


def render_predict(outputs, row_format):
    if not row_format:
        cols = {k: _jsonable(v, k) for k, v in outputs.items()}
        return {"outputs": next(iter(cols.values())) if len(cols) == 1 else cols}
    names = list(outputs)
    values = {k: _jsonable(v, k) for k, v in outputs.items()}
    count = len(next(iter(values.values()))) if values else 0
    if len(names) == 1:
        return {"predictions": values[names[0]]}
    return {"predictions": [{k: values[k][i] for k in names} for i in range(count)]}


class RestApi:
    """The aiohttp application of the REST front end.

    Args:
        predictor: the shared Predictor (its manager resolves models).
        executor: thread pool running signatures off the event loop.
        timeout: seconds a request may take (--rest_api_timeout_in_ms).
        max_inflight: concurrent predict requests before 429s.
        metrics: Metrics, or None; ``metrics_path`` is where they are served.
    """

    def __init__(self, predictor, executor, timeout=30.0, max_inflight=256, metrics=None,
                 metrics_path="/monitoring/prometheus/metrics", max_request_bytes=32 << 20):
        self.predictor = predictor
        self.executor = executor
        self.timeout = timeout
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.inflight = 0
        self.app = web.Application(client_max_size=max_request_bytes,
                                   middlewares=[self._errors])
        self.app.router.add_route("*", "/v1/models/{rest:.*}", self._models)
        if metrics is not None:
            self.app.router.add_get(metrics_path, self._metrics)

    @web.middleware
    async def _errors(self, request, handler):
        try:
            return await handler(request)
        except ServingError as err:
            return web.json_response({"error": err.message}, status=err.http_status)
        except web.HTTPRequestEntityTooLarge as err:
            return web.json_response({"error": f"Request body too large: {err.text}"}, status=413)
        except web.HTTPException as err:
            return web.json_response({"error": err.reason}, status=err.status)
        except Exception as err:  # never let a request take the server down
            return web.json_response({"error": f"Internal error: {type(err).__name__}: {err}"},
                                     status=500)

    async def _metrics(self, request):
        return web.Response(body=self.metrics.exposition(),
                            content_type="text/plain", charset="utf-8")

    async def _models(self, request):
        match = _PATH.match(request.path)
        if not match:
            raise ServingError("NOT_FOUND", f"Malformed request: {request.method} {request.path}")
        name, version, label, tail = match.group("name", "version", "label", "tail")
        if version is not None and not version.isdigit():
            raise ServingError("INVALID_ARGUMENT", f"Version must be a number, got {version!r}")
        if request.method == "GET" and tail in (None, "/metadata"):
            manager = self.predictor.manager
            if tail is None:
                message = responses.status_response(manager, name, version, label)
            else:
                resolved = manager.resolve(name, version, label)
                message = responses.metadata_response(resolved)
            return web.Response(text=responses.to_json(message), content_type="application/json")
        if request.method == "POST" and tail in (":classify", ":regress"):
            raise ServingError("INVALID_ARGUMENT",
                               f"{tail[1:]} is not supported: genzoo models have no "
                               "classification or regression signatures; use :predict")
        if request.method == "POST" and tail == ":predict":
            return await self._predict(request, name, version, label)
        raise ServingError("NOT_FOUND", f"Malformed request: {request.method} {request.path}")

    async def _predict(self, request, name, version, label):
        start = time.perf_counter()
        status = "OK"
        try:
            if self.inflight >= self.max_inflight:
                raise ServingError("RESOURCE_EXHAUSTED",
                                   f"Too many requests in flight ({self.max_inflight}); retry later")
            self.inflight += 1
            try:
                body = await request.read()
                try:
                    doc = json.loads(body)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise ServingError("INVALID_ARGUMENT", f"JSON Parse error: {err}") from err
                signature_name = doc.get("signature_name") if isinstance(doc, dict) else None
                if signature_name is not None and not isinstance(signature_name, str):
                    raise ServingError("INVALID_ARGUMENT", "'signature_name' must be a string")
                resolved = self.predictor.manager.resolve(name, version, label)
                signature = self.predictor.signature(resolved, signature_name)
                inputs, row_format = parse_predict(doc, signature)
                outputs = await self.predictor.run_async(
                    resolved, signature.name, inputs, executor=self.executor, timeout=self.timeout)
            finally:
                self.inflight -= 1
            return web.json_response(render_predict(outputs, row_format))
        except asyncio.TimeoutError:
            status = "DEADLINE_EXCEEDED"
            raise ServingError(status, f"Request timed out after {self.timeout:g} s") from None
        except ServingError as err:
            status = err.code
            raise
        finally:
            if self.metrics is not None:
                self.metrics.request(name, "predict", "REST", status, time.perf_counter() - start)
