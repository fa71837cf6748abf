"""TF Serving's configuration messages, parsed with protobuf's text format.

``ModelServerConfig`` ships with tensorflow-serving-api. ``BatchingParameters``
(tensorflow_serving/servables/tensorflow/session_bundle_config.proto) and
``MonitoringConfig`` (tensorflow_serving/config/monitoring_config.proto) do not,
so their descriptors are declared here with the same package, names, field
numbers and types as TF Serving's .proto files; the files a user writes for
TF Serving parse unchanged.
"""
import os

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2  # noqa: F401  (registers the wrapper types)
from tensorflow_serving.config import model_server_config_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _field(message, name, number, ftype, label=_F.LABEL_OPTIONAL, type_name=None):
    field = message.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        field.type_name = type_name


def _build():
    pool = descriptor_pool.Default()
    try:
        return pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"), \
            pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    except KeyError:
        pass
    f = descriptor_pb2.FileDescriptorProto(
        name="genzoo/tf_serving_batching_and_monitoring.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    b = f.message_type.add(name="BatchingParameters")
    i64, s = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    boolean = ".google.protobuf.BoolValue"
    _field(b, "max_batch_size", 1, _F.TYPE_MESSAGE, type_name=i64)
    _field(b, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, type_name=i64)
    _field(b, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, type_name=i64)
    _field(b, "num_batch_threads", 4, _F.TYPE_MESSAGE, type_name=i64)
    _field(b, "thread_pool_name", 5, _F.TYPE_MESSAGE, type_name=s)
    _field(b, "allowed_batch_sizes", 6, _F.TYPE_INT64, label=_F.LABEL_REPEATED)
    _field(b, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    _field(b, "enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, type_name=boolean)
    _field(b, "max_execution_batch_size", 9, _F.TYPE_MESSAGE, type_name=i64)
    p = f.message_type.add(name="PrometheusConfig")
    _field(p, "enable", 1, _F.TYPE_BOOL)
    _field(p, "path", 2, _F.TYPE_STRING)
    m = f.message_type.add(name="MonitoringConfig")
    _field(m, "prometheus_config", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(f)
    return pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"), \
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")


_BATCHING, _MONITORING = _build()
BatchingParameters = message_factory.GetMessageClass(_BATCHING)
MonitoringConfig = message_factory.GetMessageClass(_MONITORING)


class ConfigError(ValueError):
    """A configuration file is missing or malformed."""


def read_text(path):
    """The text of the file ``path``; a ConfigError names it when it cannot be read."""
    try:
        return open(path).read()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err


def parse_string(text, message, path):
    """Parses text format read from ``path`` into ``message``; errors name the file."""
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise ConfigError(f"{path} is not a valid {message.DESCRIPTOR.name}: {err}") from err
    return message


def parse_text(path, message):
    """Parses the text-format file ``path`` into ``message``; errors name the file."""
    return parse_string(read_text(path), message, path)


def model_server_config(path):
    """The ModelServerConfig in text format at ``path``."""
    return parse_text(path, model_server_config_pb2.ModelServerConfig())


def batching_parameters(path=None):
    """BatchingParameters from ``path`` (TF Serving's defaults for unset fields)."""
    params = BatchingParameters()
    if path:
        parse_text(path, params)
    return dict(
        max_batch_size=params.max_batch_size.value if params.HasField("max_batch_size") else 1000,
        batch_timeout_micros=params.batch_timeout_micros.value
        if params.HasField("batch_timeout_micros") else 0,
        max_enqueued_batches=params.max_enqueued_batches.value
        if params.HasField("max_enqueued_batches") else 10,
        num_batch_threads=params.num_batch_threads.value
        if params.HasField("num_batch_threads") else (os.cpu_count() or 1),
    )
