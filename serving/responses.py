"""Status and metadata responses, built from the official serving protos.

Both front ends use these: gRPC sends the messages, REST renders them with
protobuf's JSON printer, as TF Serving does (model_servers/http_rest_api_util.cc
ToJsonString).
"""
import pathlib
import weakref

from google.protobuf import json_format
from google.protobuf import message as pb_message
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from serving.errors import ServingError

_STATE = get_model_status_pb2.ModelVersionStatus.State
_SIGNATURE_DEFS = weakref.WeakKeyDictionary()  # Version -> {name: SignatureDef}


def status_response(manager, name, version=None, label=None):
    """GetModelStatusResponse for a model (or one version or label of it)."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for number, state, error in manager.status(name, version, label):
        entry = response.model_version_status.add(version=number, state=_STATE.Value(state))
        entry.status.SetInParent()  # TF Serving always prints error_code and error_message
        if error:
            entry.status.error_code = 13  # tensorflow.error.Code.INTERNAL
            entry.status.error_message = error
    return response


def signature_defs(version):
    """Every SignatureDef of a loaded version's 'serve' meta graph, ``__saved_model_init_op``
    included, as TF Serving's SavedModelBundle holds them (tf.saved_model.load's
    ``signatures`` leave that one out). Read from saved_model.pb once per version."""
    try:
        return _SIGNATURE_DEFS[version]
    except (KeyError, TypeError):
        pass
    defs = None
    path = getattr(version, "path", None)
    if path is not None:
        try:
            proto = saved_model_pb2.SavedModel.FromString(
                (pathlib.Path(path) / "saved_model.pb").read_bytes())
            graph = next((g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags), None)
            defs = dict(graph.signature_def) if graph is not None else None
        except (OSError, pb_message.DecodeError):
            defs = None
    if defs is None or not set(version.signatures) <= set(defs):
        defs = {name: s.signature_def for name, s in version.signatures.items()}
    try:
        _SIGNATURE_DEFS[version] = defs
    except TypeError:
        pass
    return defs


def metadata_response(version, fields=("signature_def",)):
    """GetModelMetadataResponse with the version's SignatureDefMap (get_model_metadata_impl.cc)."""
    if not fields:
        raise ServingError("INVALID_ARGUMENT",
                           "GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != "signature_def":
            raise ServingError("INVALID_ARGUMENT",
                               f"Metadata field {field} is not supported; the only field is "
                               "signature_def")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = version.model
    response.model_spec.version.value = version.number
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in signature_defs(version).items():
        signatures.signature_def[name].CopyFrom(signature_def)
    response.metadata["signature_def"].Pack(signatures)
    return response


def to_json(message):
    """Renders a proto as TF Serving's REST API does (defaults printed)."""
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def metadata_json(response):
    """A GetModelMetadataResponse as TF Serving's REST API writes it: the model spec and the
    unpacked SignatureDefMap, each printed on its own (no "@type" of the Any)."""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return ('{\n"model_spec":' + to_json(response.model_spec) + ',\n"metadata": {"signature_def": '
            + to_json(signatures) + "}\n}\n")
