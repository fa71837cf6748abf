"""TF Serving's REST API v1 on aiohttp.

    POST /v1/models/NAME[/versions/N|/labels/L]:predict    (row or columnar JSON)
    POST ...:classify | ...:regress                         (TF Serving's errors; see below)
    GET  /v1/models/NAME[/versions/N|/labels/L]             (model status)
    GET  /v1/models/NAME[/versions/N|/labels/L]/metadata    (signature defs)
    GET  /monitoring/prometheus/metrics

Requests and answers follow TF Serving (tensorflow_serving/model_servers/
http_rest_api_util.cc, http_rest_api_handler.cc, http_server.cc and
util/json_tensor.cc): the same case-insensitive paths, ``{"instances": [...]}``
-> ``{"predictions": [...]}`` and ``{"inputs": ...}`` -> ``{"outputs": ...}``,
the same JSON typing rules for inputs, floats written in their short form,
``{"b64": "..."}`` for binary strings, errors as ``{"error": "..."}`` with TF
Serving's HTTP codes.

One event loop serves both protocols, so large bodies are parsed and answers
rendered on a small thread pool, in pieces (one array row at a time, or
vectorised NumPy steps), so that the loop gets the GIL back within a few
milliseconds. genzoo adds three limits TF Serving lacks: the body size
(--max_request_bytes), the rows of a request (--max_rows), and the seconds a
client may take to send its body or leave its connection idle
(--rest_body_read_timeout_seconds).
"""
import asyncio
import base64
import binascii
import concurrent.futures
import functools
import json
import math
import re
import time
import urllib.parse

import numpy as np
from aiohttp import web

from serving import predict, responses
from serving.errors import ServingError

# http_rest_api_util.cc: kPredictionApiGegex and kModelStatusApiRegex, matched in full and
# case-insensitively against the raw request path (http_server.cc hands the handler every
# path matching (?i)/v1/.*; other paths get the HTTP server's 404).
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?", re.IGNORECASE)
_INT64_MAX = (1 << 63) - 1

# Work on the event loop up to these sizes; larger bodies and answers go to the codec pool.
_INLINE_BODY_BYTES = 64 << 10
_WHOLE_BODY_BYTES = 1 << 20  # larger bodies are parsed one array element at a time
_INLINE_OUTPUT_ELEMENTS = 16 << 10
_BLOCK_ELEMENTS = 1 << 16  # elements rendered per NumPy step
_FLOAT_BLOCK = 1 << 12  # floats formatted per step (Python formatting holds the GIL)
_PARSE_STEP = 32  # array elements parsed between pauses


def _pause():
    """Lets the event loop thread take the GIL. A thread that runs NumPy steps back to back
    (each releasing and retaking the GIL) keeps resetting the other threads' 5 ms switch
    wait, so they may starve; a sleep hands the GIL over.

    Only on the codec pool: on the event loop itself (small bodies, worked inline) a sleep
    would hand the GIL to the threads running signatures in the middle of a request (five
    sleeps per small answer cost 0.4 ms and halved REST throughput at 32 clients)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: a codec pool thread
        time.sleep(0)


# ------------------------------------------------------------------ JSON in

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()  # accepts NaN and Infinity, as rapidjson's kParseNanAndInfFlag


def _parse_error(message, offset):
    # json_tensor.cc ParseJson: "JSON Parse error: <rapidjson message> at offset: N"
    return ServingError("INVALID_ARGUMENT", f"JSON Parse error: {message} at offset: {offset}")


def _raw_value(text, i):
    """The JSON value starting at ``text[i]`` and the offset after it."""
    try:
        return _DECODER.raw_decode(text, i)
    except json.JSONDecodeError as err:
        raise _parse_error(err.msg, err.pos) from None
    except RecursionError:
        raise _parse_error("The document is nested too deeply", i) from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise _parse_error(str(err), i) from None


def _skip(text, i):
    return _WHITESPACE.match(text, i).end()


def _is_b64(value):
    # json_tensor.cc IsValBase64Object: an object with the single string member "b64".
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _neutral(value):
    """``value`` as a NumPy array of whatever dtype NumPy picks; None when it is ragged."""
    try:
        return np.array(value)
    except (ValueError, TypeError, RecursionError, OverflowError):
        return None


class _Elem:
    """One element of a JSON array: a NumPy array of it (or, for a row object of the
    'instances' list, one per key) made as soon as it is parsed, and how to get its
    JSON value back for the exact, slower checks."""

    __slots__ = ("array", "named", "bools", "_text", "_start", "_value")

    def __init__(self, value, text=None, start=0, end=0, bools=None):
        self._text, self._start = text, start
        self._value = None if text is not None else value
        # Numbers can hide JSON booleans (NumPy turns [true, 2] into [1, 2]); the text says
        # whether any are there (None: unknown, the exact check looks).
        self.bools = bools if text is None else (
            text.find("true", start, end) >= 0 or text.find("false", start, end) >= 0)
        if isinstance(value, dict) and not _is_b64(value):
            self.array, self.named = None, {k: _neutral(v) for k, v in value.items()}
        else:
            self.array, self.named = _neutral(value), None

    def value(self):
        if self._text is None:
            return self._value
        return _DECODER.raw_decode(self._text, self._start)[0]


class _Array(list):
    """A JSON array parsed one element at a time: a list of _Elem."""


class _Doc(dict):
    """A parsed request body; ``bools``: whether its text has a true or false anywhere
    (None when its arrays were parsed in pieces: their elements know)."""

    bools = None


def _parse_array(text, i):
    items = _Array()
    i = _skip(text, i + 1)
    if text.startswith("]", i):
        return items, i + 1
    while True:
        start = i
        value, i = _raw_value(text, i)
        items.append(_Elem(value, text, start, i))
        if len(items) % _PARSE_STEP == 0:
            _pause()
        i = _skip(text, i)
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith("]", i):
            return items, i + 1
        else:
            raise _parse_error("Missing a comma or ']' after an array element.", i)


def _parse_object(text, i, depth, pieces):
    doc = {}
    i = _skip(text, i + 1)
    if text.startswith("}", i):
        return doc, i + 1
    while True:
        if not text.startswith('"', i):
            raise _parse_error("Missing a name for object member.", i)
        key, i = _raw_value(text, i)
        i = _skip(text, i)
        if not text.startswith(":", i):
            raise _parse_error("Missing a colon after a name of object member.", i)
        i = _skip(text, i + 1)
        if pieces and depth == 0 and key in ("instances", "inputs") and text.startswith("[", i):
            value, i = _parse_array(text, i)
        elif pieces and depth == 0 and key == "inputs" and text.startswith("{", i):
            value, i = _parse_object(text, i, 1, pieces)
        elif pieces and depth == 1 and text.startswith("[", i):
            value, i = _parse_array(text, i)
        else:
            value, i = _raw_value(text, i)
        doc[key] = value
        i = _skip(text, i)
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith("}", i):
            return doc, i + 1
        else:
            raise _parse_error("Missing a comma or '}' after an object member.", i)


def parse_body(body, pieces=None):
    """A request body as a JSON object (json_tensor.cc ParseJson).

    With ``pieces`` (by default, for bodies over 1 MiB) the arrays of 'instances' and
    'inputs' (and those in an 'inputs' object) are parsed one element at a time, each
    turned into a NumPy array at once: no long GIL hold, and no millions of small lists
    alive for the collector to walk.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    except UnicodeDecodeError as err:
        raise _parse_error("Invalid encoding in string.", err.start) from None
    if pieces is None:
        pieces = len(text) > _WHOLE_BODY_BYTES
    i = _skip(text, 0)
    if i == len(text):
        raise ServingError("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
    if text[i] == "{" and pieces:
        doc, i = _parse_object(text, i, 0, pieces)
    else:
        doc, i = _raw_value(text, i)
    i = _skip(text, i)
    if i != len(text):
        raise _parse_error("The document root must not be followed by other values.", i)
    if not isinstance(doc, dict):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {_json_text(doc)} Is not object")
    doc = _Doc(doc)
    if not pieces:
        doc.bools = "true" in text or "false" in text
    return doc


def _json_text(value, limit=1000):
    """A JSON value as text for error messages (json_tensor.cc JsonValueToString)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          default=lambda v: "...")
    except (ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


_JSON_TYPES = {type(None): "Null", dict: "Object", list: "Array", str: "String"}
_TF_NAMES = {"float32": "float", "float64": "double"}  # tensorflow::DataTypeString


def _tf_name(dtype):
    return _TF_NAMES.get(dtype.name, dtype.name)


def _json_type(value):
    if isinstance(value, bool):
        return "True" if value else "False"
    return _JSON_TYPES.get(type(value), "Number")


def _hint(dtype, name):
    if dtype.is_integer:
        return (f"input '{name}' takes integers (whole numbers) in the range "
                f"[{dtype.min}, {dtype.max}]")
    if dtype.is_floating:
        return f"input '{name}' takes numbers ({_tf_name(dtype)})"
    if dtype.is_bool:
        return f"input '{name}' takes true or false"
    return f"input '{name}' takes strings or {{\"b64\": \"...\"}} objects"


# json_tensor.cc AddValueToTensor: which JSON numbers each type takes.
_TF_INT_RANGE = {"int64": (-(1 << 63), _INT64_MAX), "uint32": (0, (1 << 32) - 1),
                 "uint64": (0, (1 << 64) - 1)}  # int32, int16, int8, uint8: IsInt()
_LOSSLESS = {"float32": (1 << 24) - 1, "float64": (1 << 53) - 1}  # IsLosslessDecimal
_FLOAT_MAX = {"float32": float(np.finfo(np.float32).max), "float64": math.inf}
_JSON_DTYPES = {"float32", "float64", "int32", "int16", "int8", "uint8", "string", "int64",
                "bool", "uint32", "uint64"}


def _leaf_error(x, dtype):
    """TF Serving's error for the JSON value ``x`` in a tensor of ``dtype`` (None: fine)."""
    type_error = (f"JSON Value: {_json_text(x)} Type: {_json_type(x)} is not of expected "
                  f"type: {_tf_name(dtype)}")
    if dtype == "string":
        if isinstance(x, str):
            return None
        if isinstance(x, dict):
            if not _is_b64(x):
                return f"JSON Value: {_json_text(x)} not formatted correctly for base64 data"
            return None if _b64(x["b64"]) is not None else "Unable to base64 decode"
        return type_error
    if isinstance(x, bool):
        return None if dtype.is_bool else type_error
    if dtype.is_bool or not isinstance(x, (int, float)):
        return type_error
    if dtype.is_integer:
        if isinstance(x, float):
            return type_error
        lo, hi = _TF_INT_RANGE.get(dtype.name, (-(1 << 31), (1 << 31) - 1))
        if not lo <= x <= hi:
            return type_error
        if not dtype.min <= x <= dtype.max:  # genzoo's: TF Serving would wrap it silently
            return f"JSON Value: {x} is outside the range of {dtype.name}"
        return None
    lossy = f"Cannot convert JSON value: {_json_text(x)} to {_tf_name(dtype)} without loss of precision."
    if isinstance(x, int):
        return lossy if abs(x) > _LOSSLESS[dtype.name] else None
    return lossy if math.isfinite(x) and abs(x) > _FLOAT_MAX[dtype.name] else None


def _check_leaves(value, dtype, name, context):
    """Walks ``value`` in document order; raises TF Serving's error for the first bad leaf."""
    stack = [iter((value,))]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            error = _leaf_error(x, dtype)
            if error is not None:
                raise ServingError("INVALID_ARGUMENT", f"{context}{error}; {_hint(dtype, name)}")
        else:
            stack.pop()


def _fast_ok(array, bools, dtype):
    """True when a NumPy-made array certainly holds only values TF Serving takes for
    ``dtype``; otherwise the exact walk decides."""
    if array.size == 0:
        return array.dtype.kind in "biuf"
    kind = array.dtype.kind
    if dtype.is_bool:
        return kind == "b"
    if bools is not False or kind not in "iuf":
        return False
    if dtype.is_integer:
        return kind in "iu" and dtype.min <= array.min() and array.max() <= dtype.max
    if kind in "iu":
        limit = _LOSSLESS[dtype.name]
        return -limit <= array.min() and array.max() <= limit
    if dtype.name == "float64":
        return True
    finite = np.abs(array[np.isfinite(array)])
    return finite.size == 0 or finite.max() <= _FLOAT_MAX[dtype.name]


def _b64(text):
    """absl::Base64Unescape: standard or web-safe alphabet, padding optional; None if bad."""
    text = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _strings(value):
    if isinstance(value, list):
        return [_strings(v) for v in value]
    return _b64(value["b64"]) if isinstance(value, dict) else value.encode("utf-8")


def _ragged(name):
    return ServingError("INVALID_ARGUMENT",
                        f"Input '{name}' is not a rectangular array: its lists of one level "
                        "must all have the same length, with values only at the innermost level")


def _cast(array, bools, value, dtype, name, context=""):
    """One JSON value (``array``: NumPy's view of it; ``value()``: the JSON) as an array of
    ``dtype``, with TF Serving's typing rules."""
    if dtype.name not in _JSON_DTYPES:  # json_tensor.cc: other types have no JSON form
        raise ServingError("UNIMPLEMENTED",
                           f"{context}Conversion of JSON Value to type: {_tf_name(dtype)} "
                           f"(input '{name}') is not supported")
    if dtype == "string":
        value = value()
        _check_leaves(value, dtype, name, context)
        try:
            strings = np.array(_strings(value), dtype=object)
        except ValueError:
            raise _ragged(name) from None
        if strings.dtype != object or any(isinstance(s, list) for s in strings.reshape(-1)):
            raise _ragged(name)
        return strings
    if array is None or not _fast_ok(array, bools, dtype):
        try:
            _check_leaves(value(), dtype, name, context)
        except RecursionError:
            raise _ragged(name) from None
        if array is None or array.dtype.kind not in "biuf":
            raise _ragged(name)
    return array.astype(dtype.as_numpy_dtype, copy=False)


def _elements(value, bools):
    if isinstance(value, _Array):
        return value
    return [_Elem(v, bools=bools) for v in value]


def _whole(values, dtype, bools):
    """A list of JSON values as one array when NumPy can make it and it certainly passes
    TF Serving's rules (the common case: one C call); else None."""
    if dtype == "string" or dtype.name not in _JSON_DTYPES:
        return None
    item = _Elem(values, bools=bools)
    if item.array is None or item.named is not None or not _fast_ok(item.array, item.bools, dtype):
        return None
    return item.array.astype(dtype.as_numpy_dtype, copy=False)


def _shape_text(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def _column(value, spec, name, bools=None):
    """The value of one input in the columnar format as an array of the spec's dtype."""
    dtype = spec.dtype
    if not isinstance(value, list):
        item = _Elem(value, bools=bools)
        return _cast(item.array, item.bools, item.value, dtype, name)
    if not isinstance(value, _Array) and value:
        array = _whole(value, dtype, bools)
        if array is not None:
            return array
    rows = []
    for e in _elements(value, bools):
        rows.append(_cast(e.array, e.bools, e.value, dtype, name) if e.named is None
                    else _cast(None, None, e.value, dtype, name))
        if len(rows) % _PARSE_STEP == 0:
            _pause()
    if not rows:
        return np.zeros((0,), object if dtype == "string" else dtype.as_numpy_dtype)
    first = rows[0].shape
    if any(r.shape != first for r in rows):
        raise _ragged(name)
    return np.stack(rows)


def to_array(value, spec, name):
    """The JSON ``value`` of input ``name`` as an array of the spec's dtype."""
    return _column(value, spec, name)


def _plain_instances(rows, specs, bools):
    """The row format's inputs when every row is well formed and every column passes
    TF Serving's rules at once (one NumPy call per input); else None."""
    first = rows[0]
    named = isinstance(first, dict) and not _is_b64(first)
    if named:
        keys = set(specs)
        if not all(isinstance(r, dict) and r.keys() == keys for r in rows):
            return None
        columns = {k: [r[k] for r in rows] for k in specs}
    else:
        if len(specs) > 1 or any(isinstance(r, dict) and not _is_b64(r) for r in rows):
            return None
        columns = {next(iter(specs)): rows}
    inputs = {}
    for name, column in columns.items():
        inputs[name] = _whole(column, specs[name].dtype, bools)
        if inputs[name] is None:
            return None
    return inputs


def _instances(rows, specs, bools=None):
    """Row format (json_tensor.cc FillTensorMapFromInstancesList)."""
    if not isinstance(rows, list) or not rows:
        raise ServingError("INVALID_ARGUMENT",
                           "'instances' must be a non-empty list (No values in 'instances' array)")
    if not isinstance(rows, _Array):
        inputs = _plain_instances(rows, specs, bools)
        if inputs is not None:
            return inputs
    elems = _elements(rows, bools)
    named = elems[0].named is not None
    if not named and len(specs) > 1:
        raise ServingError("INVALID_ARGUMENT",
                           "instances is a plain list, but expecting list of objects as multiple "
                           f"input tensors required as per tensorinfo_map ({', '.join(sorted(specs))})")
    columns = {k: [] for k in specs} if named else {next(iter(specs)): []}
    for i, e in enumerate(elems):
        if i % _PARSE_STEP == _PARSE_STEP - 1:
            _pause()
        where = f"Failed to process element: {i} of 'instances' list. Error: "
        if named != (e.named is not None):
            raise ServingError("INVALID_ARGUMENT",
                               f"Expecting {'object but got list' if named else 'value/list but got object'} "
                               f"at item {i} of input list")
        if named:
            for key, array in e.named.items():
                if key not in specs:
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"Failed to process element: {i} key: {key} of 'instances' list. Error: "
                        f"JSON object: does not have named input: {key}")
                columns[key].append(_cast(array, e.bools, lambda e=e, key=key: e.value()[key],
                                          specs[key].dtype, key,
                                          f"Failed to process element: {i} key: {key} of "
                                          "'instances' list. Error: "))
            if set(e.named) != set(specs):
                raise ServingError("INVALID_ARGUMENT",
                                   f"{where.replace(' Error: ', ' ')}JSON object: "
                                   f"{_json_text(e.value(), 200)} must only have keys: "
                                   f"{','.join(sorted(specs))}")
        else:
            name = next(iter(columns))
            columns[name].append(_cast(e.array, e.bools, e.value, specs[name].dtype, name, where))
    inputs = {}
    for name, arrays in columns.items():
        first = arrays[0].shape
        for i, array in enumerate(arrays):
            if array.shape != first:
                raise ServingError("INVALID_ARGUMENT",
                                   f"Failed to process element: {i} of 'instances' list. Error: "
                                   f"Expecting shape {_shape_text(first)} but got: "
                                   f"{_shape_text(array.shape)} (the instances of input "
                                   f"'{name}' must form a rectangular array)")
        inputs[name] = np.stack(arrays)
    return inputs


def parse_predict(doc, signature):
    """(inputs, row_format) of a predict request body parsed by ``parse_body`` (or
    json.loads), for ``signature`` (json_tensor.cc FillPredictRequestFromJson)."""
    if not isinstance(doc, dict):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {_json_text(doc)} Is not object")
    has_rows, has_cols = "instances" in doc, "inputs" in doc
    if has_rows == has_cols:
        raise ServingError("INVALID_ARGUMENT",
                           "Request needs exactly one of 'instances' (row format) or 'inputs' "
                           "(columnar format): " + ("Not formatted correctly expecting only one of "
                                                    "'inputs' or 'instances' keys to exist"
                                                    if has_rows else "Missing 'inputs' or 'instances' key"))
    specs = signature.inputs
    bools = getattr(doc, "bools", None)
    if has_rows:
        return _instances(doc["instances"], specs, bools), True
    cols = doc["inputs"]
    if not isinstance(cols, dict) or _is_b64(cols):
        if len(specs) > 1:
            raise ServingError("INVALID_ARGUMENT",
                               "inputs is a plain value/list, but expecting an object as multiple "
                               f"input tensors required as per tensorinfo_map ({', '.join(sorted(specs))})")
        name = next(iter(specs))
        return {name: _column(cols, specs[name], name, bools)}, False
    inputs = {}
    for name, spec in specs.items():  # keys that name no input are ignored, as in TF Serving
        if name not in cols:
            raise ServingError("INVALID_ARGUMENT", f"Missing named input: {name} in 'inputs' object.")
        inputs[name] = _column(cols[name], spec, name, bools)
    return inputs, False


def decode_predict(body, lookup):
    """(version, signature, inputs, row_format) of a predict request body.

    ``lookup(signature_name)`` resolves the model version and signature; TF Serving does
    it after parsing the JSON and reading 'signature_name', before the inputs.
    """
    doc = parse_body(body)
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise ServingError("INVALID_ARGUMENT",
                           f"JSON Value: {_json_text(doc, 200)} not formatted correctly. "
                           "'signature_name' key must be a string value.")
    version, signature = lookup(name)
    inputs, row_format = parse_predict(doc, signature)
    return version, signature, inputs, row_format


def _feature_errors(value, name, kinds):
    """json_tensor.cc AddValueToFeature for one value of feature ``name``."""
    if isinstance(value, bool):
        kind = "int64"
    elif value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        return f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
    elif isinstance(value, (str, dict)):
        kind = "bytes"
        if isinstance(value, dict) and _b64(value["b64"]) is None:
            return "Unable to base64 decode"
    elif isinstance(value, float):
        kind = "float"
        if math.isfinite(value) and abs(value) > _FLOAT_MAX["float32"]:
            return f"Cannot convert JSON value: {_json_text(value)} to float without loss of precision."
    elif value > _INT64_MAX:
        if value > (1 << 64) - 1:  # rapidjson reads it as a double
            kind = "float"
        else:
            return f"Feature: {name} has uint64 element. Only int64 is supported."
    else:
        kind = "int64"
    if kinds.setdefault(name, kind) != kind:
        return f"Unexpected element type in feature: {name} expecting type: {kinds[name]}"
    return None


def _check_example(example):
    if not isinstance(example, dict):
        return f"Example must be JSON object but got JSON {_json_type(example)}"
    kinds = {}
    for name, content in example.items():
        for value in content if isinstance(content, list) else [content]:
            error = _feature_errors(value, name, kinds)
            if error:
                return error
    return None


def decode_examples(body):
    """The signature name of a classify or regress request body, checked as TF Serving
    checks it (json_tensor.cc FillClassifyRegressRequestFromJson)."""
    doc = parse_body(body, pieces=False)
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise ServingError("INVALID_ARGUMENT",
                           f"JSON Value: {_json_text(doc, 200)} not formatted correctly. "
                           "'signature_name' key must be a string value.")
    if "context" in doc:
        error = _check_example(doc["context"])
        if error:
            raise ServingError("INVALID_ARGUMENT", error)
    examples = doc.get("examples")
    if examples is None and "examples" not in doc:
        # (TF Serving says "classify" for regress requests too)
        raise ServingError("INVALID_ARGUMENT",
                           f"JSON Value: {_json_text(doc, 200)} When method is classify, key "
                           "'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise ServingError("INVALID_ARGUMENT", f"JSON Value: {_json_text(doc, 200)} Expecting "
                                               "'examples' value to be an list/array")
    if not examples:
        raise ServingError("INVALID_ARGUMENT",
                           f"JSON Value: {_json_text(doc, 200)} 'examples' value is an empty array")
    for example in examples:
        error = _check_example(example)
        if error:
            raise ServingError("INVALID_ARGUMENT", error)
    return name


# ----------------------------------------------------------------- JSON out

def _u8_table():
    table = np.zeros((256, 3), np.uint8)
    for v in range(256):
        digits = str(v).encode()
        table[v, 3 - len(digits):] = list(digits)
    return table


_U8 = _u8_table()
_TRUE_FALSE = np.array([list(b"false"), list(b"true\0")], np.uint8)


def _int_tokens(flat):
    """(n, w) uint8: each integer's decimal digits, right-aligned, 0-padded."""
    if flat.dtype == np.uint8:
        return _U8[flat]
    signed = flat.dtype.kind == "i"
    wide = flat.astype(np.int64) if signed else flat.astype(np.uint64)
    negative = wide < 0 if signed else np.zeros(flat.shape, bool)
    magnitude = np.where(negative, (-(wide + 1)).astype(np.uint64) + np.uint64(1),
                         wide.astype(np.uint64)) if signed else wide
    places = len(str(int(magnitude.max()))) if flat.size else 1
    width = places + int(negative.any())
    tokens = np.zeros((flat.size, width), np.uint8)
    count = np.zeros(flat.size, np.int64)
    rest = magnitude.copy()
    for place in range(places):
        present = (rest > 0) | (place == 0)
        tokens[:, width - 1 - place] = np.where(present, 48 + (rest % 10).astype(np.uint8), 0)
        count += present
        rest //= np.uint64(10)
    rows = np.flatnonzero(negative)
    tokens[rows, width - 1 - count[rows]] = ord("-")
    return tokens


def _decimals(values, double):
    """json_tensor.cc WriteDecimal for each value: absl::StrCat's six significant digits
    when they read back as the same number, else max_digits10 (9 or 17); '.0' after whole
    numbers not in exponent form; NaN, Infinity, -Infinity."""
    cast = np.float64 if double else np.float32
    wide = values.astype(np.float64).tolist()
    texts = ["%.6g" % v for v in wide]
    back = np.array(texts).astype(cast)
    full = "%.17g" if double else "%.9g"
    for j in np.flatnonzero(back != values).tolist():
        texts[j] = full % wide[j]
    texts = [t if "." in t or "e" in t else t + ".0" for t in texts]
    for j in np.flatnonzero(~np.isfinite(values)).tolist():
        v = wide[j]
        texts[j] = "NaN" if v != v else ("-Infinity" if v < 0 else "Infinity")
    return np.array(texts, dtype="S")


def _float_tokens(flat, double):
    parts = []
    for a in range(0, flat.size, _FLOAT_BLOCK):
        parts.append(_decimals(flat[a:a + _FLOAT_BLOCK], double))
        _pause()
    width = max((p.itemsize for p in parts), default=1)
    tokens = np.zeros((flat.size, width), np.uint8)
    at = 0
    for p in parts:
        tokens[at:at + p.size, :p.itemsize] = p.view(np.uint8).reshape(p.size, p.itemsize)
        at += p.size
    return tokens


def _tokens(flat):
    kind = flat.dtype.kind
    if kind == "b":
        return _TRUE_FALSE[flat.astype(np.uint8)]
    if kind in "iu":
        return _int_tokens(flat)
    if kind == "f":
        return _float_tokens(flat, flat.dtype.itemsize > 4)
    raise ServingError("INVALID_ARGUMENT", f"Failed to write JSON value for tensor type: {flat.dtype.name}")


def _brackets(row_shape):
    """Per element of one row: the '[' before it and the ']' (then ',') after it."""
    size = math.prod(row_shape)
    depth = len(row_shape)
    opens, closes = np.zeros(size, np.uint8), np.zeros(size, np.uint8)
    group = 1
    for dim in reversed(row_shape):
        group *= dim
        opens[::group] += 1
        closes[group - 1::group] += 1
    before = np.zeros((size, depth), np.uint8)
    after = np.zeros((size, depth + 1), np.uint8)
    for q in range(depth):
        before[opens > q, depth - 1 - q] = ord("[")
        after[closes > q, q] = ord("]")
    after[closes < depth, depth] = ord(",")
    return before, after


def _py_json(value, as_bytes):
    if isinstance(value, list):
        return "[" + ",".join(_py_json(v, as_bytes) for v in value) + "]"
    if isinstance(value, bytes):
        if as_bytes:
            return '{"b64":' + json.dumps(base64.b64encode(value).decode()) + "}"
        value = value.decode("utf-8", "replace")
    return json.dumps(value, ensure_ascii=False)


def _blocks(array, name, block_rows, separate):
    """The JSON text of ``array[i]`` for every row i, a block of rows at a time: yields
    (text, starts) with the rows back to back and where each starts, or, with
    ``separate``, (text, None) with a comma between rows."""
    count = array.shape[0]
    row_shape = array.shape[1:]
    size = math.prod(row_shape)
    if array.dtype.kind in "OSU" or size == 0:
        # json_tensor.cc IsNamedTensorBytes: string tensors named *_bytes are base64.
        as_bytes = array.dtype.kind in "OS" and name.endswith("_bytes")
        for a in range(0, count, block_rows):
            texts = [_py_json(row, as_bytes).encode() for row in array[a:a + block_rows].tolist()]
            if separate:
                last = a + block_rows >= count
                yield b",".join(texts) + (b"" if last else b","), None
            else:
                yield b"".join(texts), np.cumsum([0] + [len(t) for t in texts]).tolist()
        return
    flat = array.reshape(count, size)
    before, after = _brackets(row_shape)
    depth = before.shape[1]
    for a in range(0, count, block_rows):
        _pause()
        chunk = flat[a:a + block_rows]
        tokens = _tokens(chunk.reshape(-1))
        k, width = chunk.shape[0], tokens.shape[1]
        table = np.zeros((k, size, depth + width + after.shape[1] + 1), np.uint8)
        table[:, :, :depth] = before
        table[:, :, depth:depth + width] = tokens.reshape(k, size, width)
        table[:, :, depth + width:-1] = after
        if separate:  # a comma after every row but the array's last
            table[:, -1, -1] = ord(",")
            if a + k >= count:
                table[-1, -1, -1] = 0
        table = table.reshape(k, -1)
        text = table[table != 0].tobytes()
        if separate:
            yield text, None
        else:
            yield text, np.concatenate([[0], np.cumsum(np.count_nonzero(table, axis=1))]).tolist()


def _block_rows(arrays):
    return max(1, _BLOCK_ELEMENTS // max(1, max(math.prod(a.shape[1:]) for a in arrays)))


def _array_chunks(array, name):
    """The JSON text of a whole array (a nested list, or a scalar) in pieces."""
    if array.ndim == 0:
        return [next(_blocks(array.reshape(1), name, 1, True))[0]]
    return [b"[", *(text for text, _ in _blocks(array, name, _block_rows([array]), True)), b"]"]


def _key(name):
    return json.dumps(name, ensure_ascii=False).encode()


def encode_chunks(outputs, row_format):
    """The JSON answer of a predict request as a list of byte strings of a megabyte or so
    (json_tensor.cc MakeJsonFromTensors): no copy of the whole answer is ever made."""
    if not outputs:
        raise ServingError("INVALID_ARGUMENT", "Cannot convert empty tensor map to JSON")
    outputs = {k: np.asarray(v) for k, v in outputs.items()}
    if not row_format:
        if len(outputs) == 1:
            (name, array), = outputs.items()
            return [b'{"outputs":', *_array_chunks(array, name), b"}"]
        chunks = [b'{"outputs":{']
        for i, (name, array) in enumerate(outputs.items()):
            chunks += [b"," if i else b"", _key(name) + b":", *_array_chunks(array, name)]
        return chunks + [b"}}"]
    batch = None
    for name, array in outputs.items():  # MakeRowFormatJsonFromTensors
        if array.ndim == 0:
            raise ServingError("INVALID_ARGUMENT", f"Tensor name: {name} has no shape information ")
        if array.shape[0] < 1:
            raise ServingError("INVALID_ARGUMENT",
                               f"Tensor name: {name} has invalid batch size: {array.shape[0]}")
        if batch is not None and array.shape[0] != batch:
            raise ServingError("INVALID_ARGUMENT", f"Tensor name: {name} has inconsistent batch "
                                                   f"size: {array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    if len(outputs) == 1:
        (name, array), = outputs.items()
        return [b'{"predictions":', *_array_chunks(array, name), b"}"]
    keys = [b"{" + _key(name) + b":" if i == 0 else b"," + _key(name) + b":"
            for i, name in enumerate(outputs)]
    rows = _block_rows(outputs.values())
    chunks = [b'{"predictions":[']
    blocks = zip(*(_blocks(a, n, rows, False) for n, a in outputs.items()), strict=True)
    for b, parts in enumerate(blocks):
        _pause()
        pieces = []
        for i in range(len(parts[0][1]) - 1):
            pieces.append(b"," if b or i else b"")
            for key, (text, starts) in zip(keys, parts, strict=True):
                pieces += [key, memoryview(text)[starts[i]:starts[i + 1]]]
            pieces.append(b"}")
        chunks.append(b"".join(pieces))
    return chunks + [b"]}"]


def encode_predict(outputs, row_format):
    """The JSON answer of a predict request, as bytes."""
    return b"".join(encode_chunks(outputs, row_format))


def render_predict(outputs, row_format):
    """``encode_predict``'s answer as a Python object."""
    return json.loads(encode_predict(outputs, row_format))


# ------------------------------------------------------------------ the app

class _SlowBody(Exception):
    """The client did not send its body within the read timeout."""


class RestApi:
    """The aiohttp application of the REST front end.

    Args:
        predictor: the shared Predictor (its manager resolves models).
        executor: thread pool running signatures off the event loop.
        timeout: seconds a request may take (--rest_api_timeout_in_ms).
        max_inflight: concurrent predict requests before 429s (genzoo's, counted once a
            body has arrived).
        metrics: Metrics, or None; ``metrics_path`` is where they are served.
        max_request_bytes: largest body (genzoo's; 413 above it).
        body_read_timeout: seconds a client may take to send a body, and may leave its
            connection idle (genzoo's --rest_body_read_timeout_seconds).
    """

    def __init__(self, predictor, executor, timeout=30.0, max_inflight=256, metrics=None,
                 metrics_path="/monitoring/prometheus/metrics", max_request_bytes=32 << 20,
                 body_read_timeout=30.0):
        self.predictor = predictor
        self.executor = executor
        self.timeout = timeout
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.inflight = 0
        self.body_read_timeout = body_read_timeout
        # JSON work of large requests: two threads, so that few compete with the event
        # loop for the GIL.
        self.codec = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="genzoo-json")
        # keepalive_timeout also closes connections that never send a whole request line
        # and headers (aiohttp starts it when a connection opens).
        self.app = web.Application(client_max_size=max_request_bytes, middlewares=[self._errors],
                                   handler_args={"keepalive_timeout": body_read_timeout})
        if metrics is not None:
            self.app.router.add_get(metrics_path, self._metrics)
        self.app.router.add_route("*", "/{path:.*}", self._dispatch)
        self.app.on_cleanup.append(self._close)

    async def _close(self, app):
        self.codec.shutdown(wait=False)

    @web.middleware
    async def _errors(self, request, handler):
        try:
            return await handler(request)
        except ServingError as err:
            return web.json_response({"error": err.message}, status=err.http_status)
        except _SlowBody:
            return await self._close_slow(request)
        except web.HTTPRequestEntityTooLarge as err:
            return web.json_response({"error": f"Request body too large: {err.text}"}, status=413)
        except web.HTTPException as err:
            return web.json_response({"error": err.reason}, status=err.status)
        except Exception as err:  # never let a request take the server down
            return web.json_response({"error": f"Internal error: {type(err).__name__}: {err}"},
                                     status=500)

    async def _close_slow(self, request):
        """408, then the connection closes at once (no lingering read of the rest)."""
        response = web.json_response(
            {"error": f"Request body not received within {self.body_read_timeout:g} s "
                      "(--rest_body_read_timeout_seconds)"}, status=408)
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        if request.transport is not None:
            request.transport.close()
        return response

    async def _metrics(self, request):
        return web.Response(body=self.metrics.exposition(),
                            content_type="text/plain", charset="utf-8")

    async def _read(self, request):
        try:
            return await asyncio.wait_for(request.read(), self.body_read_timeout)
        except asyncio.TimeoutError:
            raise _SlowBody() from None

    async def _code(self, large, fn, *args):
        """``fn(*args)`` here, or on the codec pool when the work is large."""
        if not large:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.codec, fn, *args)

    async def _dispatch(self, request):
        """http_rest_api_handler.cc ProcessRequest."""
        path = request.rel_url.raw_path
        if not _API_PATH.fullmatch(path):
            raise web.HTTPNotFound()
        method = request.method
        malformed = ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        match = (_PREDICT_PATH if method == "POST" else _STATUS_PATH).fullmatch(path)
        if method not in ("POST", "GET") or match is None:
            raise malformed
        name, version, label, tail = match.groups()
        name = urllib.parse.unquote(name or "")
        label = urllib.parse.unquote(label) if label else None
        if version is not None:
            if int(version) > _INT64_MAX:
                raise ServingError("INVALID_ARGUMENT",
                                   f"Failed to convert version: {version} to numeric.")
            version = int(version)
        if method == "GET":
            if not name:
                raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
            manager = self.predictor.manager
            if tail == "metadata":  # (compared case-sensitively, as in TF Serving)
                text = responses.metadata_json(
                    responses.metadata_response(manager.resolve(name, version, label)))
            else:
                text = responses.to_json(responses.status_response(manager, name, version, label))
            return web.Response(text=text, content_type="application/json")
        if tail == "predict":  # (":PREDICT" matches the path but no method: malformed)
            return await self._predict(request, name, version, label)
        if tail in ("classify", "regress"):
            return await self._examples(request, name, version, label, tail)
        raise malformed

    def _lookup(self, name, version, label, signature_name):
        resolved = self.predictor.manager.resolve(name, version, label)
        return resolved, self.predictor.signature(resolved, signature_name, rest=True)

    async def _examples(self, request, name, version, label, method):
        """Classify and Regress: TF Serving's checks of the body, the model and the
        signature (classifier.cc, regressor.cc)."""
        start, status = time.perf_counter(), "OK"
        try:
            body = await self._read(request)
            signature_name = await self._code(len(body) > _INLINE_BODY_BYTES, decode_examples, body)
            resolved = self.predictor.manager.resolve(name, version, label)
            predict.check_example_signature(resolved, signature_name, method)
        except ServingError as err:
            status = err.code
            raise
        finally:
            if self.metrics is not None:
                self.metrics.request(name, method, "REST", status, time.perf_counter() - start)

    async def _predict(self, request, name, version, label):
        start = time.perf_counter()
        status = "OK"
        try:
            # The body first: a client that is slow to send it holds no slot.
            body = await self._read(request)
            if self.inflight >= self.max_inflight:
                raise ServingError("RESOURCE_EXHAUSTED",
                                   f"Too many requests in flight ({self.max_inflight}, "
                                   "--max_inflight_requests); retry later")
            self.inflight += 1
            try:
                lookup = functools.partial(self._lookup, name, version, label)
                resolved, signature, inputs, row_format = await self._code(
                    len(body) > _INLINE_BODY_BYTES, decode_predict, body, lookup)
                del body
                outputs = await self.predictor.run_async(
                    resolved, signature.name, inputs, executor=self.executor, timeout=self.timeout)
                large = sum(np.size(v) for v in outputs.values()) > _INLINE_OUTPUT_ELEMENTS
                chunks = await self._code(large, encode_chunks, outputs, row_format)
            finally:
                self.inflight -= 1
            if len(chunks) < 16:
                return web.Response(body=b"".join(chunks), content_type="application/json")
            # Piece by piece: the loop never copies a whole large answer at once.
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = sum(len(c) for c in chunks)
            await response.prepare(request)
            for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
            return response
        except asyncio.TimeoutError:
            status = "DEADLINE_EXCEEDED"
            raise ServingError(status, f"Request timed out after {self.timeout:g} s") from None
        except ServingError as err:
            status = err.code
            raise
        except _SlowBody:
            status = "DEADLINE_EXCEEDED"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.request(name, "predict", "REST", status, time.perf_counter() - start)
