"""Model lifecycle of the embedded server: versions on disk -> loaded servables.

Follows TF Serving's model manager (tensorflow_serving/core/
aspired_versions_manager.cc with the model server's AvailabilityPreservingPolicy,
core/availability_preserving_policy.cc) and its file-system source
(sources/storage_path/file_system_storage_path_source.cc):

- Each configured model has a base path whose numeric subfolders are versions;
  its version policy (latest N, all, specific) picks the wanted ones.
- New versions are loaded (and warmed up) before unwanted ones are unloaded.
  While wanted versions exist but none is available (loading, or failed), the
  highest unwanted available version keeps serving; when the base path holds
  no version folder at all, nothing is wanted and every version is unloaded,
  with TF Serving's warning. A base path that cannot be read is a polling
  error: it is logged and the loaded versions stay (TF Serving's poll fails
  and emits nothing).
- Any error while loading a version, of any type, ends it (state END, the
  error in its status); the other versions and models keep serving, and the
  version is tried again when its folder changes on disk.
- Versions that were unloaded or failed stay in the status as END, as TF
  Serving's ServableStateMonitor keeps them (model_servers/
  get_model_status_impl.cc reads it); so do the versions of a model removed
  from the config.
- A request holds the Version it resolved: unloading drops the manager's
  reference, and the SavedModel is freed when the last request on it finishes.

The config is validated whole before anything changes (model_servers/
server_core.cc: ReloadConfig, ValidateModelConfigList,
UpdateModelVersionLabelMap) and then applied whole: base paths, policies and
labels of kept models, added models, removed models.
"""
import logging
import pathlib
import threading
import time

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import ServingError

log = logging.getLogger("genzoo.serving")

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
WARMUP_PATH = ("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit on warmup records
PLATFORMS = ("", "tensorflow")  # genzoo reads an unset platform as tensorflow


class ModelsUnavailable(Exception):
    """A config was applied, but some of its new models have no available version.

    TF Serving's ReloadConfig waits for the models a config adds and then fails
    with UNKNOWN "N model(s) did not become available" (server_core.cc:
    WaitUntilModelsAvailable); the config stays applied.
    """


class Signature:
    """One signature of a loaded version: its function and its typed specs.

    Keeps the loaded SavedModel alive (``owner``): a restored function's
    variables are freed with the object ``tf.saved_model.load`` returned.
    """

    def __init__(self, name, fn, signature_def, owner=None):
        self.name = name
        self.fn = fn
        self.signature_def = signature_def
        self.inputs = dict(fn.structured_input_signature[1])  # name -> TensorSpec
        self.outputs = dict(fn.structured_outputs)  # name -> TensorSpec
        self._owner = owner

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
        self.fingerprint = None  # of the folder as it was when loading started
        self._loaded = None

    def load(self, warmup_runner=None):
        """Loads the SavedModel and replays its warmup requests; True when AVAILABLE.

        Never raises: any error (a truncated variables file raises IndexError,
        a bad warmup record whatever its signature raises) ends the version,
        with the error in its status.
        """
        self.state = LOADING
        try:
            self.fingerprint = _fingerprint(self.path)
            proto = saved_model_pb2.SavedModel()
            proto.ParseFromString((self.path / "saved_model.pb").read_bytes())
            defs = next(
                (mg.signature_def for mg in proto.meta_graphs if "serve" in mg.meta_info_def.tags),
                None,
            )
            if defs is None:
                raise ValueError("no meta graph tagged 'serve'")
            loaded = tf.saved_model.load(str(self.path), tags=["serve"])
            self.signatures = {name: Signature(name, fn, defs[name], loaded)
                               for name, fn in loaded.signatures.items()}
            if not self.signatures:
                raise ValueError("the SavedModel has no signatures")
            self._loaded = loaded
            if warmup_runner is not None:
                self._warmup(warmup_runner)
        except Exception as err:  # any failure ends this version, never the server
            self.signatures = {}
            self._loaded = None
            self.error = f"failed to load {self.path}: {type(err).__name__}: {err}"
            self.state = END
            log.error("model %s version %d: %s", self.model, self.number, self.error)
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

    def ended(self):
        """Unloads: this version leaves service, and an END record of it is returned.

        This object keeps its signatures for the requests that resolved it and
        are still running; the record (what the status lists) holds nothing.
        """
        self.state = END
        record = Version(self.model, self.number, self.path)
        record.state, record.error, record.fingerprint = END, self.error, self.fingerprint
        return record


def _fingerprint(path):
    """(name, size, mtime) of every entry under ``path``: changes when anything is
    written, replaced (even by a copy that keeps the old modification time, if
    the size differs), added or removed."""
    try:
        entries = [path, *sorted(path.rglob("*"))]
        return tuple((str(p.relative_to(path)), st.st_size, st.st_mtime_ns)
                     for p in entries for st in [p.stat()])
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


def _base_path(config, base_dir):
    base = pathlib.Path(config.base_path)
    return base if base.is_absolute() else pathlib.Path(base_dir) / base


class ServedModel:
    """One entry of the model config and its versions.

    ``versions`` (number -> Version, every state) is replaced, never changed in
    place, so request threads can read it while the lifecycle thread works.
    """

    def __init__(self, config, base_dir, versions=None):
        self.config = config
        self.base_path = _base_path(config, base_dir)
        self.versions = dict(versions or {})
        self.failed = {}  # version path -> folder fingerprint of its failed load
        self.problem = ""  # what is wrong with the base path, logged once
        self.missing = []  # 'specific' versions not on disk, logged once

    @property
    def name(self):
        return self.config.name

    def set_version(self, number, version):
        self.versions = {**self.versions, number: version}

    def versions_on_disk(self):
        """(version numbers, problem): the problem when the base path cannot be read."""
        try:
            entries = list(self.base_path.iterdir())
        except OSError as err:
            return [], (f"Could not find base path {self.base_path} for servable {self.name} "
                        f"with error {err.strerror or err}")
        return sorted(int(p.name) for p in entries if p.name.isdigit() and p.is_dir()), ""

    def available(self):
        return {n: v for n, v in self.versions.items() if v.state == AVAILABLE}


class ModelManager:
    """Keeps the configured models' versions loaded as their policies say.

    Creating one validates the config and lists the models (their versions in
    state START) without loading anything; ``start`` loads them in the
    background and polls, ``poll`` runs one pass in the calling thread.

    Args:
        config: a ModelServerConfig (``model_config_list``).
        base_dir: folder relative base paths are resolved against.
        warmup_runner: ``f(version, PredictRequest)`` replaying warmup requests.
        allow_version_labels_for_unavailable_models: TF Serving's flag: a new
            label may name a version that is not available (yet).

    Raises:
        ServingError: the config is invalid (see ``reload_config``).
    """

    def __init__(self, config, base_dir=".", warmup_runner=None,
                 allow_version_labels_for_unavailable_models=False):
        self.base_dir = pathlib.Path(base_dir)
        self.warmup_runner = warmup_runner
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self.models = {}  # name -> ServedModel, replaced whole on every change
        self.retired = {}  # name -> {number: END record} of models removed from the config
        self._lock = threading.RLock()  # one lifecycle change at a time: polls and reloads
        self._stop = threading.Event()
        self._apply(self._validate(config))

    # ----------------------------------------------------------- config
    def _validate(self, config):
        """The config's entries, or a ServingError naming what is wrong with it.

        As TF Serving's HandleReloadConfigRequest and ReloadConfig (model_service_impl.cc,
        server_core.cc): only a ModelConfigList; no name listed twice; every label on a
        version that is available, unless --allow_version_labels_for_unavailable_models
        (and even then an existing label only moves to an available version). Also
        refused here, where TF Serving would take no action or unload every model: a
        config with no models.
        """
        kind = config.WhichOneof("config")
        if kind is None:
            raise ServingError("INVALID_ARGUMENT",
                               "The config is empty: it has no model_config_list. Only "
                               "ModelConfigList is currently supported")
        if kind != "model_config_list":
            raise ServingError("INVALID_ARGUMENT",
                               f"ServerModelConfig type {kind} not supported. Only ModelConfigList "
                               "is currently supported")
        entries = list(config.model_config_list.config)
        if not entries:
            raise ServingError("INVALID_ARGUMENT",
                               "The config's model_config_list lists no models: nothing would be "
                               "served (a reload to it would unload every model). List the models "
                               "to serve")
        seen = set()
        for i, c in enumerate(entries):
            if not c.name:
                raise ServingError("INVALID_ARGUMENT",
                                   f"Model config entry {i} (base_path {c.base_path!r}) has no name")
            if c.name in seen:
                raise ServingError("INVALID_ARGUMENT",
                                   f"Illegal to list model {c.name} multiple times in config list")
            seen.add(c.name)
            if not c.base_path:
                raise ServingError("INVALID_ARGUMENT", f"Model {c.name} has no base_path")
            if c.model_type not in (model_server_config_pb2.MODEL_TYPE_UNSPECIFIED,
                                    model_server_config_pb2.TENSORFLOW):  # server_core.cc GetPlatform
                raise ServingError("INVALID_ARGUMENT",
                                   f"Model {c.name}: ModelServerConfig::model_type choice "
                                   f"{c.model_type} not supported; use model_platform 'tensorflow'")
            if c.model_platform not in PLATFORMS:
                raise ServingError("INVALID_ARGUMENT",
                                   f"Model {c.name}: model_platform {c.model_platform!r} is not "
                                   "supported; genzoo serves 'tensorflow' SavedModels")
        for c in entries:
            self._check_labels(c)
        return entries

    def _check_labels(self, config):
        """server_core.cc: UpdateModelVersionLabelMap's rule and message."""
        current = self.models.get(config.name)
        available = current.available() if current is not None else {}
        old_labels = dict(current.config.version_labels) if current is not None else {}
        for label, version in sorted(config.version_labels.items()):
            if version in available:
                continue
            moves = label in old_labels and old_labels[label] != version
            if self.allow_unavailable_labels and not moves:
                continue
            hint = (f"; the label {label!r} already points at version {old_labels[label]} and "
                    "moves only to an available version" if self.allow_unavailable_labels
                    else "; start the server with --allow_version_labels_for_unavailable_models "
                         "to label versions before they load")
            raise ServingError("FAILED_PRECONDITION",
                               f"Request to assign label to version {version} of model "
                               f"{config.name}, which is not currently available for inference"
                               f"{hint}")

    def _apply(self, entries):
        """Swaps in validated entries; returns the names of models added or moved."""
        new, changed = {}, []
        for c in entries:
            current = self.models.get(c.name)
            if current is None:  # added (again): TF Serving's status keeps its old END states
                new[c.name] = ServedModel(c, self.base_dir, self.retired.get(c.name))
                changed.append(c.name)
                continue
            if _base_path(c, self.base_dir) != current.base_path:
                # Moved: the versions from the old path keep serving until the new ones load.
                log.info("model %s: base path %s -> %s", c.name, current.base_path,
                         _base_path(c, self.base_dir))
                changed.append(c.name)
                moved = ServedModel(c, self.base_dir, current.versions)
                moved.failed = current.failed
                new[c.name] = moved
                continue
            current.config = c
            new[c.name] = current
        removed = [m for name, m in self.models.items() if name not in new]
        retired = {name: v for name, v in self.retired.items() if name not in new}
        for model in removed:
            retired[model.name] = {n: v.ended() for n, v in model.versions.items()}
            log.info("model %s removed from the config: unloaded", model.name)
        self.models, self.retired = new, retired
        return changed

    def reload_config(self, config):
        """Validates a whole ModelServerConfig, applies it, and loads what it adds.

        An invalid config changes nothing. A valid one is applied whole: kept
        models take their new policies and labels, moved ones load from their
        new base path (the old versions serve until then), removed ones are
        unloaded, added ones loaded; this returns when the pass is done.

        Raises:
            ServingError: INVALID_ARGUMENT for an invalid config,
                FAILED_PRECONDITION for a label on a version that is not available.
            ModelsUnavailable: applied, but added or moved models did not load.
        """
        with self._lock:
            changed = self._apply(self._validate(config))
            self.poll()
            problems = []
            for name in changed:
                model = self.models[name]
                if any(v.path.parent == model.base_path for v in model.available().values()):
                    continue
                errors = [f"version {n}: {v.error}" for n, v in sorted(model.versions.items())
                          if v.error and v.path.parent == model.base_path]
                reason = "; ".join(errors) or model.problem or \
                    f"no version was loaded from {model.base_path}"
                problems.append(f"{{{name}: {reason}}}")
        if problems:
            raise ModelsUnavailable(f"{len(problems)} model(s) did not become available: "
                                    + ", ".join(problems))

    # ---------------------------------------------------------- polling
    def poll(self):
        """One pass over every model's base path: list, load and unload versions."""
        with self._lock:
            models = list(self.models.values())
            for model in models:  # every model shows its new versions as START at once
                self._guard(self._discover, model)
            for model in models:
                self._guard(self._sync_model, model)

    @staticmethod
    def _guard(step, model):
        try:
            step(model)
        except Exception:  # one model's surprise never stops the others' pass
            log.exception("model %s: lifecycle pass failed", model.name)

    def _wanted(self, model):
        """The version numbers the policy wants now, or None when the base path is unreadable."""
        on_disk, problem = model.versions_on_disk()
        if problem:
            if problem != model.problem:
                # file_system_storage_path_source.cc: the poll fails, nothing is
                # (un)aspired, the loaded versions stay.
                log.error("%s; its loaded versions keep serving", problem)
            model.problem = problem
            return None
        if not on_disk:
            problem = (f"No versions of servable {model.name} found under base path "
                       f"{model.base_path}. Did you forget to name your leaf directory as a "
                       "number (eg. '/1/')?")
            if problem != model.problem:
                loaded = sorted(model.available())
                log.warning("%s%s", problem, f" Unloading versions {loaded}." if loaded else "")
            model.problem = problem
            return set()
        if model.problem:
            log.info("model %s: versions %s found under %s", model.name, on_disk, model.base_path)
        model.problem = ""
        policy = model.config.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific":
            missing = sorted(set(policy.specific.versions) - set(on_disk))
            if missing and missing != model.missing:
                log.warning("Versions %s of servable %s, requested as 'specific' versions in its "
                            "version policy, were not found under %s", missing, model.name,
                            model.base_path)
            model.missing = missing
        return _policy_versions(policy, on_disk)

    def _discover(self, model):
        wanted = self._wanted(model)
        for number in sorted(wanted or ()):
            if number not in model.versions:
                model.set_version(number, Version(model.name, number, model.base_path / str(number)))

    def _sync_model(self, model):
        wanted = self._wanted(model)
        if wanted is None:
            return
        for number in sorted(wanted, reverse=True):  # the newest first, as TF Serving
            path = model.base_path / str(number)
            current = model.versions.get(number)
            if current is not None and current.path == path and current.state == AVAILABLE:
                continue
            if path in model.failed and _fingerprint(path) == model.failed[path]:
                continue  # failed before; tried again once the folder changes on disk
            version = Version(model.name, number, path)
            serving = current is not None and current.state == AVAILABLE  # from an old base path
            if not serving:
                model.set_version(number, version)  # the status shows it LOADING
            if version.load(self.warmup_runner):
                model.failed.pop(path, None)
                model.set_version(number, version)
                if serving:
                    current.ended()
            else:
                model.failed[path] = version.fingerprint
                if not serving:
                    model.set_version(number, version)
        self._unload_unwanted(model, wanted)

    @staticmethod
    def _unload_unwanted(model, wanted):
        """AvailabilityPreservingPolicy: unload the available versions no longer wanted;
        but while wanted versions exist and none of them is available, the highest
        unwanted one keeps serving. Nothing wanted (no version folder): unload all."""
        def is_wanted(n, v):
            return n in wanted and v.path == model.base_path / str(n)

        available = model.available()
        stale = sorted(n for n, v in available.items() if not is_wanted(n, v))
        if wanted and not any(is_wanted(n, v) for n, v in available.items()):
            stale = stale[:-1]
        for number in stale:
            model.set_version(number, available[number].ended())
            log.info("model %s version %d unloaded", model.name, number)
        # Records of START versions no longer wanted (their folder went away) are dropped.
        for number, version in list(model.versions.items()):
            if version.state == START and number not in wanted:
                model.versions = {n: v for n, v in model.versions.items() if n != number}

    def start(self, interval, on_first_pass=None):
        """Lists the models' versions now, then loads and polls in a daemon thread.

        The first pass runs at once; later ones every ``interval`` seconds (0:
        none, as TF Serving's one-shot poll). ``on_first_pass()`` runs after
        the first pass.
        """
        with self._lock:
            for model in self.models.values():
                self._guard(self._discover, model)

        def loop():
            self._poll_logged()
            if on_first_pass is not None:
                on_first_pass()
            if interval <= 0:
                return
            while not self._stop.wait(interval):
                self._poll_logged()

        thread = threading.Thread(target=loop, name="genzoo-models", daemon=True)
        thread.start()
        return thread

    def _poll_logged(self):
        try:
            self.poll()
        except Exception:  # keep polling whatever happens on disk
            log.exception("polling failed")

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
        if model is not None:
            versions = model.versions
            if label:
                version = _label_version(model, label)
        elif name in self.retired:
            versions = self.retired[name]
        else:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if not versions:
            problem = f": {model.problem}" if model is not None and model.problem else ""
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}{problem}")
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
