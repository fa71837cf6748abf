"""Model lifecycle of the embedded server: versions on disk -> loaded servables.

Follows TF Serving's model manager: each configured model has a base path whose
numeric subfolders are versions; a version policy (latest N, all, specific)
picks the ones to serve; new versions are loaded (and warmed up) before old
ones are unloaded, so a model never goes without an available version; a
version that fails to load is reported in the status and never replaces a
working one. The base paths are polled, and the config can be swapped whole.
"""
import logging
import pathlib
import threading
import time

import tensorflow as tf
from google.protobuf import message as pb_message
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving.errors import ServingError

log = logging.getLogger("genzoo.serving")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
WARMUP_PATH = ("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit on warmup records


class Signature:
    """One signature of a loaded version: its function and its typed specs."""

    def __init__(self, name, fn, signature_def):
        self.name = name
        self.fn = fn
        self.signature_def = signature_def
        self.inputs = dict(fn.structured_input_signature[1])  # name -> TensorSpec
        self.outputs = dict(fn.structured_outputs)  # name -> TensorSpec

    def __call__(self, inputs):
        outputs = self.fn(**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}


class Version:
    """A version folder and its state; ``signatures`` once it is AVAILABLE."""

    def __init__(self, model, number, path):
        self.model = model
        self.number = number
        self.path = pathlib.Path(path)
        self.state = START
        self.error = ""
        self.signatures = {}
        self.mtime = None

    def load(self, warmup_runner=None):
        """Loads the SavedModel and replays its warmup requests."""
        self.state = LOADING
        self.mtime = _tree_mtime(self.path)
        try:
            proto = saved_model_pb2.SavedModel()
            proto.ParseFromString((self.path / "saved_model.pb").read_bytes())
            defs = next(
                (mg.signature_def for mg in proto.meta_graphs if "serve" in mg.meta_info_def.tags),
                None,
            )
            if defs is None:
                raise ValueError("no meta graph tagged 'serve'")
            loaded = tf.saved_model.load(str(self.path), tags=["serve"])
            self.signatures = {
                name: Signature(name, fn, defs[name]) for name, fn in loaded.signatures.items()
            }
            if not self.signatures:
                raise ValueError("the SavedModel has no signatures")
            self._loaded = loaded  # keeps variables alive
            if warmup_runner is not None:
                self._warmup(warmup_runner)
        except (OSError, ValueError, pb_message.DecodeError, tf.errors.OpError, ServingError) as err:
            self.state = END
            self.error = f"failed to load {self.path}: {type(err).__name__}: {err}"
            self.signatures = {}
            log.error("%s", self.error)
            return False
        self.state = AVAILABLE
        log.info("model %s version %d AVAILABLE", self.model, self.number)
        return True

    def _warmup(self, run):
        path = self.path.joinpath(*WARMUP_PATH)
        if not path.exists():
            return
        for i, raw in enumerate(tf.data.TFRecordDataset(str(path))):
            if i >= MAX_WARMUP_RECORDS:
                break
            record = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
            if record.HasField("predict_log"):
                run(self, record.predict_log.request)

    def unload(self):
        self.state = UNLOADING
        self.signatures = {}
        self._loaded = None
        self.state = END


def _tree_mtime(path):
    try:
        return max(p.stat().st_mtime for p in [path, *path.rglob("*")])
    except OSError:
        return None


def _policy_versions(policy, on_disk):
    """The versions a ServableVersionPolicy selects from ``on_disk``."""
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return set(on_disk)
    if kind == "specific":
        return set(on_disk) & set(policy.specific.versions)
    n = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions else 1
    return set(sorted(on_disk)[-n:])


def _label_version(model, label):
    labels = dict(model.config.version_labels)
    if label not in labels:
        raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
    return labels[label]


class ServedModel:
    """One entry of the model config and its versions."""

    def __init__(self, config, base_dir):
        self.config = config
        base = pathlib.Path(config.base_path)
        self.base_path = base if base.is_absolute() else pathlib.Path(base_dir) / base
        self.versions = {}  # number -> Version (every state)
        self.lock = threading.Lock()

    @property
    def name(self):
        return self.config.name

    def versions_on_disk(self):
        try:
            entries = list(self.base_path.iterdir())
        except OSError:
            return []
        return sorted(int(p.name) for p in entries if p.name.isdigit() and p.is_dir())

    def available(self):
        return {n: v for n, v in self.versions.items() if v.state == AVAILABLE}


class ModelManager:
    """Keeps the configured models' versions loaded as their policies say.

    Args:
        config: a ModelServerConfig (``model_config_list``).
        base_dir: folder relative base paths are resolved against.
        warmup_runner: ``f(version, PredictRequest)`` replaying warmup requests.
    """

    def __init__(self, config, base_dir=".", warmup_runner=None):
        self.base_dir = pathlib.Path(base_dir)
        self.warmup_runner = warmup_runner
        self.models = {}
        self._config_lock = threading.Lock()
        self._stop = threading.Event()
        self.reload_config(config)

    # ----------------------------------------------------------- config
    def reload_config(self, config):
        """Swaps in a new ModelServerConfig: adds, updates and removes models."""
        if config.WhichOneof("config") not in (None, "model_config_list"):
            raise ServingError("INVALID_ARGUMENT", "only model_config_list configs are supported")
        entries = list(config.model_config_list.config)
        names = [c.name for c in entries]
        if len(set(names)) != len(names):
            raise ServingError("INVALID_ARGUMENT", f"duplicate model names in config: {names}")
        for c in entries:
            if not c.name or not c.base_path:
                raise ServingError("INVALID_ARGUMENT", "every model needs a name and a base_path")
            if c.model_platform not in ("", "tensorflow"):
                raise ServingError("INVALID_ARGUMENT",
                                   f"model {c.name}: unsupported platform {c.model_platform!r}")
        with self._config_lock:
            new = {}
            for c in entries:
                current = self.models.get(c.name)
                if current is not None:
                    current.config = c
                    new[c.name] = current
                else:
                    new[c.name] = ServedModel(c, self.base_dir)
            removed = [m for name, m in self.models.items() if name not in new]
            self.models = new
        for model in removed:
            for version in list(model.versions.values()):
                version.unload()
        self.poll()

    # ---------------------------------------------------------- polling
    def poll(self):
        """One pass over every model's base path: load and unload versions."""
        for model in list(self.models.values()):
            self._sync_model(model)

    def _sync_model(self, model):
        with model.lock:
            on_disk = model.versions_on_disk()
            wanted = _policy_versions(model.config.model_version_policy, on_disk)
            for number in sorted(wanted):
                version = model.versions.get(number)
                if version is not None and version.state == END and version.error:
                    # Failed before: retry only when the folder changed on disk.
                    if _tree_mtime(version.path) == version.mtime:
                        continue
                    version = None
                if version is None:
                    version = Version(model.name, number, model.base_path / str(number))
                    model.versions[number] = version
                    version.load(self.warmup_runner)
            # Unload what the policy no longer wants, but never the last
            # available version while nothing wanted is available.
            wanted_available = [n for n in wanted if model.versions.get(n)
                                and model.versions[n].state == AVAILABLE]
            for number, version in list(model.versions.items()):
                if number in wanted:
                    continue
                if version.state == AVAILABLE and not wanted_available:
                    continue
                if version.state == AVAILABLE:
                    version.unload()
                    log.info("model %s version %d unloaded", model.name, number)
                if number not in on_disk or version.state == END:
                    model.versions.pop(number, None)

    def start_polling(self, interval):
        """Polls every ``interval`` seconds in a daemon thread (0: never)."""
        if interval <= 0:
            return None

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception:  # keep serving whatever happens on disk
                    log.exception("polling failed")

        thread = threading.Thread(target=loop, name="genzoo-poll", daemon=True)
        thread.start()
        return thread

    def stop(self):
        self._stop.set()

    # -------------------------------------------------------- resolving
    def resolve(self, name, version=None, label=None):
        """The AVAILABLE Version a request addresses, or a NOT_FOUND error."""
        model = self.models.get(name)
        if model is None:
            raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        available = model.available()
        if label:
            version = _label_version(model, label)
        if version is None:
            if not available:
                raise ServingError("NOT_FOUND", f"Servable not found for request: Latest({name})")
            return available[max(available)]
        version = int(version)
        if version not in available:
            raise ServingError("NOT_FOUND",
                               f"Servable not found for request: Specific({name}, {version})")
        return available[version]

    def status(self, name, version=None, label=None):
        """[(version, state, error message)] for a model, or one version of it."""
        model = self.models.get(name)
        if model is None:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if label:
            version = _label_version(model, label)
        versions = dict(model.versions)
        if version is not None:
            version = int(version)
            if version not in versions:
                raise ServingError("NOT_FOUND",
                                   f"Could not find version {version} of model {name}")
            versions = {version: versions[version]}
        return [(n, v.state, v.error) for n, v in sorted(versions.items(), reverse=True)]

    def wait_until_available(self, timeout=60.0):
        """Blocks until every model has an available version (tests, startup)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(m.available() for m in self.models.values()):
                return True
            time.sleep(0.05)
        return False
