"""A browser demo of the zoo over TF Serving's REST API (genzoo's embedded server or stock TF Serving).

    python -m serving --model_config_file exported/models.config --rest_api_port 8501 &
    python -m serving.demo --rest_url http://localhost:8501        # then open http://127.0.0.1:7860

The page uses the public REST API alone: a model's status (GET /v1/models/NAME), its
metadata (GET /v1/models/NAME/metadata) and POST /v1/models/NAME:predict. It learns what
a model can do from its signatures, so a new preset appears with its panels and no change
here:

- ``sample``: a grid for a seed and a count, with the label or caption the signature takes;
- ``complete``: a test image or an upload with a half hidden or a drawn mask, several
  completions;
- ``log_prob``: nats and bits per dimension of an image, beside the model card's test average;
- interpolation: between two seeds (``sample``'s latents through ``decode`` or ``generate``)
  or two images (``encode``'s means through ``decode``);
- ``translate`` and ``translate_back``: input, output and round trip.

The models are the entries of ``--model_config_file`` (TF Serving's REST API has no call
that lists models) or of ``--models``. An error answer of the server (a bad shape, an
unknown word, a model that is still loading) appears in the page as the server's message.
No request carries more than ``--max_rows`` rows: larger draws are split, with progress.
``?model=NAME`` in the page's address selects a model.

The demo is the one module of ``serving/`` that imports ``training/``: it is a client
(it loads no model) and offers the data sets' test images as a model's inputs, built by
``training.data`` (a binarized model's fixed test binarization, a translation task's domains).
"""
import argparse
import dataclasses
import json
import logging
import pathlib
import re
import urllib.parse

import gradio as gr
import numpy as np
import requests
from PIL import Image
from tensorflow.core.framework import types_pb2

from serving import protos
from serving.client import Client, ServerError, fit_image, read_image
from training import data  # the test images and the translation tasks' exact inputs (see below)
from zoo import registry
from zoo import images as zoo_images
from zoo.images import grid

log = logging.getLogger("genzoo.demo")
CONDITIONS = ("label", "text")  # inputs a signature may take beside its main ones
TEST_IMAGES = 100  # test images offered per model
MAX_SAMPLES, MAX_COMPLETIONS, MAX_STEPS = 64, 16, 16  # the most images a panel draws at once
HIDDEN_GREY = 128  # how a hidden pixel is drawn in the masked view
SHOWN_SCALE = 4  # the page shows images this many times larger
# A Markdown link or picture: its text (one level of brackets inside, as in "E[x|z]"), its target.
_LINK = r"(!?\[(?:[^\[\]]|\[[^\]]*\])*\])\(([^)\s]+)\)"


class DemoError(Exception):
    """What the page shows instead of a result: the server's answer or the input's problem."""


@dataclasses.dataclass
class Signature:
    """A signature's inputs and outputs: {name: (dtype name, shape with -1 for any size)}."""

    inputs: dict
    outputs: dict

    def input_shape(self, name="images"):
        return tuple(self.inputs[name][1][1:])

    def conditions(self):
        return [c for c in CONDITIONS if c in self.inputs]


@dataclasses.dataclass
class ModelInfo:
    """What the page knows of a model: its served version, signatures and card."""

    name: str
    state: str  # the newest version's state, or why the server could not say
    version: int | None  # the version being served (AVAILABLE), if any
    signatures: dict  # {signature name: Signature}
    card: pathlib.Path | None = None
    card_metrics: dict = dataclasses.field(default_factory=dict)

    @property
    def panels(self):
        """The demo's panels that this model's signatures allow, in page order."""
        s = self.signatures
        found = [p for p in ("sample", "complete", "log_prob") if p in s]
        if self.interpolation_modes():
            found.append("interpolate")
        if "translate" in s:
            found.append("translate")
        return found

    def interpolation_modes(self):
        """"seeds" when ``sample`` returns latents that ``decode`` or ``generate`` takes,
        "images" when ``encode`` and ``decode`` exist."""
        s = self.signatures
        modes = []
        if "sample" in s and "latents" in s["sample"].outputs and self.decoder():
            modes.append("seeds")
        if "encode" in s and "decode" in s:
            modes.append("images")
        return modes

    def decoder(self):
        """The signature that maps latents to images (``decode`` or ``generate``), if any."""
        return next((n for n in ("decode", "generate")
                     if n in self.signatures and "latents" in self.signatures[n].inputs), None)

    def conditions(self):
        """The condition inputs (label, text) of the model's ``sample`` or first signature."""
        first = self.signatures.get("sample") or next(iter(self.signatures.values()), None)
        return first.conditions() if first else []

    def card_average(self):
        """(nats, bits/dim, what) of the card's test set, or None."""
        m = self.card_metrics
        for key, what in (("test_nll", "exact test NLL"), ("test_nll_iwae", "test NLL bound (IWAE)")):
            if key in m:
                return m[key], m.get("test_bits_per_dim"), what
        return None


def _parse_signatures(metadata):
    """{name: Signature} from TF Serving's REST metadata answer."""
    defs = metadata["metadata"]["signature_def"]["signature_def"]

    def tensors(infos):
        return {name: (types_pb2.DataType.Name(types_pb2.DataType.Value(info["dtype"])),
                       [int(d.get("size", -1)) for d in info.get("tensor_shape", {}).get("dim", [])])
                for name, info in infos.items()}

    return {name: Signature(tensors(d.get("inputs", {})), tensors(d.get("outputs", {})))
            for name, d in defs.items() if name != "__saved_model_init_op"}


def _whole(value, what, low=-(2 ** 63), high=2 ** 63 - 1):
    """``value`` as an int in [low, high]; a DemoError names ``what`` otherwise."""
    try:
        number = int(value)
        exact = number == float(value)
    except (TypeError, ValueError, OverflowError):
        raise DemoError(f"{what} must be a whole number, not {value!r}") from None
    if not exact or not low <= number <= high:
        raise DemoError(f"{what} must be a whole number from {low} to {high}, not {value!r}")
    return number


def _message(err):
    """The text a page shows for an exception of a call."""
    if isinstance(err, ServerError):
        return f"The server answered {err.status}: {err.message}"
    if isinstance(err, requests.RequestException):
        return f"Cannot reach the server: {type(err).__name__}"
    return str(err)


def slerp(a, b, t):
    """Spherical interpolation between latent vectors (White 2016, "Sampling Generative
    Networks"): it keeps the norm that Gaussian latents have; linear when they are parallel."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return np.stack([(1 - s) * a + s * b for s in t]).astype(np.float32)
    return np.stack([(np.sin((1 - s) * omega) * a + np.sin(s * omega) * b) / np.sin(omega)
                     for s in t]).astype(np.float32)


def half_mask(shape, which):
    """A uint8 mask of ``shape`` (H, W, C): 1 keeps a pixel, 0 hides it; ``which`` half hidden
    ("bottom" or "right")."""
    mask = np.ones(shape, np.uint8)
    h, w = shape[:2]
    if which == "bottom":
        mask[h // 2:] = 0
    elif which == "right":
        mask[:, w // 2:] = 0
    else:
        raise DemoError(f"unknown half {which!r}: 'bottom' or 'right'")
    return mask


def drawn_mask(painted, shape):
    """A uint8 mask of ``shape`` from a drawing: pixels painted over (alpha > 0) are hidden."""
    if painted is None:
        raise DemoError("draw over the pixels to hide first")
    layer = np.asarray(painted)
    if layer.ndim == 3 and layer.shape[-1] == 4:
        hidden = layer[..., 3] > 0
    else:
        hidden = np.asarray(layer).reshape(layer.shape[:2] + (-1,)).max(-1) > 0
    h, w, c = shape
    small = Image.fromarray(hidden.astype(np.uint8) * 255).resize((w, h), Image.Resampling.BOX)
    keep = (np.asarray(small) < 128).astype(np.uint8)
    return np.repeat(keep[..., None], c, axis=-1)


def editor_mask(editor, shape):
    """A uint8 mask of ``shape`` from a Gradio ImageEditor value ({"background", "layers",
    "composite"}): what any layer paints over is hidden."""
    layers = [np.asarray(layer) for layer in (editor or {}).get("layers") or []]
    return drawn_mask(np.max(np.stack(layers), 0) if layers else None, shape)


def to_model_image(picture, shape):
    """Any picture (a path or an array) as the uint8 (H, W, C) array a signature takes."""
    if picture is None:
        raise DemoError("choose or upload an image first")
    if isinstance(picture, (str, pathlib.Path)):
        return read_image(picture, shape)
    array = np.asarray(picture)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return fit_image(Image.fromarray(array), shape)


def enlarge(image):
    """An image or grid as the page shows it: SHOWN_SCALE times larger."""
    return zoo_images.enlarge(image, SHOWN_SCALE)


class TestImages:
    """The first test images of a zoo model's data set, as its signatures take them.

    A binarized model gets the test set's fixed binarization (the one its card's NLL is
    measured on); a translation model the task's two domains. Models outside the registry
    (or without ``data_dir``'s files) get none, and the page offers uploads only.
    """

    def __init__(self, data_dir=None, count=TEST_IMAGES):
        self.data_dir = data_dir
        self.count = count
        self._cache = {}

    def get(self, model, role="images"):
        """uint8 (N, H, W, C) test images of ``model`` for ``role`` ("images", or "a"/"b" of a
        translation task), or None when the model or the data is unknown."""
        try:
            preset = registry.get_preset(model)
        except (KeyError, ValueError):
            return None
        key = (preset.dataset, preset.form, preset.task)
        if key not in self._cache:  # one load per data set and task: a task's domains together
            self._cache[key] = self._load(preset)
        found = self._cache[key]
        return None if found is None else found[role if preset.task else "images"]

    def _load(self, preset):
        """{role: uint8 images} of ``preset``'s test split, or None without the data."""
        form = "uint8" if preset.task or preset.form != "binary" else "binary"
        try:
            ds = data.load(preset.dataset, "test", form, self.count, data_dir=self.data_dir,
                           take=self.count, task=preset.task)
            batch = next(iter(ds))
        except Exception as err:  # no data files here (TFDS raises several kinds): uploads only
            log.warning("no test images of %s for the demo: %s", preset.dataset, err)
            return None
        roles = {"images": batch["a"], "a": batch["a"], "b": batch["b"]} if preset.task else {"images": batch}
        scale = 255 if form == "binary" else 1
        return {k: (np.asarray(v, np.float32) * scale).round().astype(np.uint8) for k, v in roles.items()}


class Demo:
    """The demo's panel logic over a TF Serving REST endpoint; the page calls these.

    Args:
        rest_url: the server's REST address, e.g. http://localhost:8501.
        model_config_file: TF Serving's models.config: the models to list and where their
            cards are (base paths relative to the file's folder).
        models: model names to list instead.
        max_rows: most rows per request (keep it <= the server's own limit).
        data_dir: where the data sets' files are, for the test images.
    """

    def __init__(self, rest_url, model_config_file=None, models=None, max_rows=64,
                 data_dir=None, timeout=120.0):
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.client = Client(rest_url=rest_url, timeout=timeout)
        self.max_rows = max_rows
        self.bases = {}
        if model_config_file:
            config = protos.model_server_config(model_config_file)
            root = pathlib.Path(model_config_file).resolve().parent
            for entry in config.model_config_list.config:
                base = pathlib.Path(entry.base_path)
                self.bases[entry.name] = base if base.is_absolute() else root / base
        for name in models or ():
            self.bases.setdefault(name, None)
        if not self.bases:
            raise ValueError("give --model_config_file or --models: TF Serving's REST API "
                             "does not list its models")
        self.test_images = TestImages(data_dir)

    @property
    def model_names(self):
        return list(self.bases)

    # ------------------------------------------------------------------ models
    def info(self, name):
        """The model's ModelInfo; raises DemoError when it cannot be served now."""
        if name not in self.bases:
            raise DemoError(f"unknown model {name!r}; the demo lists {', '.join(self.bases)}")
        try:
            status = self.client.status(name)["model_version_status"]
        except (ServerError, requests.RequestException) as err:
            raise DemoError(_message(err)) from None
        available = [int(v["version"]) for v in status if v.get("state") == "AVAILABLE"]
        if not available:
            states = ", ".join(f"version {v['version']}: {v.get('state')}"
                               + (f" ({v['status'].get('error_message')})"
                                  if v.get("status", {}).get("error_message") else "")
                               for v in status)
            raise DemoError(f"{name} has no version being served yet ({states}); "
                            "try again when it is AVAILABLE")
        try:
            signatures = _parse_signatures(self.client.metadata(name, version=max(available)))
        except (ServerError, requests.RequestException) as err:
            raise DemoError(_message(err)) from None
        info = ModelInfo(name, "AVAILABLE", max(available), signatures)
        base = self.bases.get(name)
        if base is not None:
            card = base / "MODEL_CARD.md"
            info.card = card if card.exists() else None
            metrics = base / "metrics.json"
            if metrics.exists():
                try:
                    info.card_metrics = json.loads(metrics.read_text())
                except ValueError:
                    pass
        return info

    def card_markdown(self, info, file_url):
        """The model card's text with its relative links and pictures made links to the files
        through ``file_url`` (a function of a path), or a line saying there is none."""
        if info.card is None:
            return f"No model card for {info.name} beside the config."
        text = info.card.read_text()

        def absolute(match):
            if re.match(r"[a-z]+:|[#/]", match.group(2)):  # a URL, an anchor, an absolute path
                return match.group(0)
            target = (info.card.parent / match.group(2)).resolve()
            return f"{match.group(1)}({file_url(target)})"

        return re.sub(_LINK, absolute, text)

    def _predict_rows(self, info, signature, rows, inputs, progress=None):
        """Runs ``signature`` over ``rows`` rows of ``inputs`` {name: array}, at most
        ``max_rows`` per request; returns {output: array}."""
        outputs = {}
        for start in range(0, rows, self.max_rows):
            stop = min(rows, start + self.max_rows)
            if progress is not None:
                progress(start / rows, desc=f"{info.name}:{signature} rows {start + 1}-{stop} of {rows}")
            chunk = {k: v[start:stop] for k, v in inputs.items()}
            try:
                answer = self.client.predict(info.name, signature, version=info.version, **chunk)
            except (ServerError, requests.RequestException) as err:
                raise DemoError(_message(err)) from None
            for k, v in answer.items():
                outputs.setdefault(k, []).append(v)
        return {k: np.concatenate(v) for k, v in outputs.items()}

    def _conditions(self, info, signature, rows, label=None, text=None):
        """The condition inputs ``signature`` takes, repeated for ``rows`` rows."""
        found = {}
        takes = info.signatures[signature].conditions()
        if "label" in takes:
            if label is None or label == "":
                raise DemoError(f"{info.name} is class-conditional: choose a label")
            found["label"] = np.full(rows, _whole(label, "the label"), np.int64)  # its range: the server's
        if "text" in takes:
            if not text or not str(text).strip():
                raise DemoError(f"{info.name} draws from a caption: write one")
            found["text"] = np.array([str(text)] * rows, dtype=object)
        return found

    # ------------------------------------------------------------------ panels
    def sample(self, info, seed, count, label=None, text=None, progress=None):
        """A grid of ``count`` samples; row i's seed is (seed, i), as the command-line client's."""
        count = _whole(count, "count", 1, MAX_SAMPLES)
        seeds = np.stack([np.full(count, _whole(seed, "seed")), np.arange(count)], 1).astype(np.int64)
        inputs = dict(seed=seeds, **self._conditions(info, "sample", count, label, text))
        images = self._predict_rows(info, "sample", count, inputs, progress)["images"]
        return grid(images)

    def complete(self, info, image, mask, count, seed, label=None, progress=None):
        """A grid: the masked image (hidden pixels grey), ``count`` completions, the image."""
        shape = info.signatures["complete"].input_shape()
        image = to_model_image(image, shape)
        mask = np.asarray(mask, np.uint8).reshape(shape)
        count = _whole(count, "completions", 1, MAX_COMPLETIONS)
        seeds = np.stack([np.full(count, _whole(seed, "seed")), np.arange(count)], 1).astype(np.int64)
        inputs = dict(images=np.repeat(image[None], count, 0), mask=np.repeat(mask[None], count, 0),
                      seed=seeds, **self._conditions(info, "complete", count, label))
        done = self._predict_rows(info, "complete", count, inputs, progress)["images"]
        shown = np.where(mask > 0, image, HIDDEN_GREY).astype(np.uint8)
        return grid(np.concatenate([shown[None], done, image[None]]), cols=count + 2)

    def log_prob(self, info, image, label=None):
        """Markdown: the image's log-likelihood in nats and bits/dim, beside the card's average."""
        shape = info.signatures["log_prob"].input_shape()
        image = to_model_image(image, shape)
        inputs = dict(images=image[None], **self._conditions(info, "log_prob", 1, label))
        out = self._predict_rows(info, "log_prob", 1, inputs)
        nats = float(out["log_prob"][0])
        bits = float(out["bits_per_dim"][0]) if "bits_per_dim" in out else None
        lines = [f"**log p(x)** = {nats:.2f} nats, so **{-nats:.2f} nats** of negative log-likelihood"
                 + (f", **{bits:.4f} bits per dimension**" if bits is not None else "")]
        average = info.card_average()
        if average:
            value, card_bits, what = average
            lines.append(f"The model card's {what}, the test set's average: {value:.2f} nats"
                         + (f", {card_bits:.4f} bits per dimension" if card_bits else ""))
        return "\n\n".join(lines)

    def interpolate(self, info, mode, steps, seeds=None, images=None, label=None, text=None,
                    progress=None):
        """A strip from one end to the other in ``steps`` images, by spherical interpolation
        of the latents of two seeds (mode "seeds") or two images' codes (mode "images")."""
        steps = _whole(steps, "steps", 2, MAX_STEPS)
        if mode not in info.interpolation_modes():
            raise DemoError(f"{info.name} cannot interpolate between {mode}")
        if mode == "seeds":
            ends = np.array([[_whole(seeds[0], "seed A"), 0], [_whole(seeds[1], "seed B"), 0]], np.int64)
            inputs = dict(seed=ends, **self._conditions(info, "sample", 2, label, text))
            latents = self._predict_rows(info, "sample", 2, inputs)["latents"]
            decoder = info.decoder()
        else:
            shape = info.signatures["encode"].input_shape()
            pair = np.stack([to_model_image(images[0], shape), to_model_image(images[1], shape)])
            inputs = dict(images=pair, **self._conditions(info, "encode", 2, label))
            latents = self._predict_rows(info, "encode", 2, inputs)["mean"]
            decoder = "decode"
        path = slerp(latents[0], latents[1], np.linspace(0.0, 1.0, steps))
        inputs = dict(latents=path, **self._conditions(info, decoder, steps, label, text))
        return grid(self._predict_rows(info, decoder, steps, inputs, progress)["images"], cols=steps)

    def translate(self, info, image, back=False):
        """A row: the input, its translation and the round trip (when the model has both
        directions)."""
        forward, reverse = ("translate_back", "translate") if back else ("translate", "translate_back")
        if forward not in info.signatures:
            raise DemoError(f"{info.name} has no {forward} signature")
        shape = info.signatures[forward].input_shape()
        x = to_model_image(image, shape)[None]
        y = self._predict_rows(info, forward, 1, {"images": x})["images"]
        shown = [x[0], y[0]]
        if reverse in info.signatures:
            shown.append(self._predict_rows(info, reverse, 1, {"images": y})["images"][0])
        if any(s.shape != shown[0].shape for s in shown):  # e.g. 7x7 -> 28x28: show each enlarged to the largest
            size = max(s.shape[0] for s in shown)
            shown = [zoo_images.enlarge(s, size // s.shape[0]) for s in shown]
        return grid(np.stack(shown), cols=len(shown))

    def picks(self, info, role="images"):
        """uint8 test images for ``role`` (None when there are none)."""
        return self.test_images.get(info.name, role)


def _file_url(path):
    return "/gradio_api/file=" + urllib.parse.quote(str(path))


def build_app(demo):
    """The Gradio page over ``demo`` (a ``Demo``)."""
    def shown(image):
        return None if image is None else enlarge(image)

    def guarded(fn):
        """Runs a panel's action: (result, "") or (None, the message to show)."""
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs), ""
            except DemoError as err:
                return None, f"**Error:** {err}"
        return run

    with gr.Blocks(title="genzoo demo") as app:
        gr.Markdown("# genzoo\nGenerative models served over TF Serving's REST API at "
                    f"`{demo.client.base}`. Pick a model: its panels come from its signatures.")
        with gr.Row():
            choice = gr.Dropdown(demo.model_names, value=demo.model_names[0], label="Model",
                                 elem_id="model", scale=4)
            refresh = gr.Button("Ask the server again", elem_id="refresh", scale=1)

        @gr.render(inputs=choice, triggers=[choice.change, refresh.click, app.load])
        def panels(name):
            try:
                info = demo.info(name)
            except DemoError as err:
                gr.Markdown(f"**Error:** {err}", elem_id="model-status")
                return
            card = (f" · [model card]({_file_url(info.card)})" if info.card else "")
            gr.Markdown(f"**{name}**, version {info.version} being served · signatures: "
                        f"{', '.join(sorted(info.signatures))}{card}", elem_id="model-status")
            if info.card:
                with gr.Accordion("Model card", open=False):
                    gr.Markdown(demo.card_markdown(info, _file_url))
            conditions = info.conditions()

            def condition_inputs():
                found = []
                if "label" in conditions:
                    found.append(gr.Number(0, label="label (class)", precision=0, elem_id="label",
                                           interactive=True))
                if "text" in conditions:
                    found.append(gr.Textbox("a thick seven", label="caption", elem_id="caption",
                                            interactive=True))
                return found

            def split(values):
                values = list(values)
                label = values.pop(0) if "label" in conditions else None
                text = values.pop(0) if "text" in conditions else None
                return label, text

            def picker(role, label):
                """A gallery of test images to pick from and an upload box; returns the
                image component the actions read."""
                picks = demo.picks(info, role)
                box = gr.Image(label=label, type="numpy", image_mode="L", height=160,
                               elem_id=f"{role}-input", interactive=True)
                if picks is not None:
                    gallery = gr.Gallery([enlarge(p) for p in picks[:24]], label="or pick a test image",
                                         columns=12, height=140, allow_preview=False)

                    def pick(evt: gr.SelectData, role=role):
                        return enlarge(demo.picks(info, role)[evt.index])
                    gallery.select(pick, None, box)
                return box

            if not info.panels:
                gr.Markdown(f"None of {name}'s signatures has a panel here (the demo draws, "
                            "completes, scores, interpolates and translates images); "
                            "`python -m serving.client` or any TF Serving client can call them.",
                            elem_id="no-panels")
                return
            with gr.Tabs():
                if "sample" in info.panels:
                    with gr.Tab("Sample", elem_id="tab-sample"):
                        with gr.Row():
                            seed = gr.Number(0, label="seed", precision=0, elem_id="sample-seed",
                                             interactive=True)
                            count = gr.Slider(1, MAX_SAMPLES, 16, step=1, label="count", elem_id="sample-count",
                                              interactive=True)
                            extra = condition_inputs()
                        go = gr.Button("Draw samples", variant="primary", elem_id="sample-go")
                        out = gr.Image(label="samples", elem_id="sample-output", format="png", interactive=False)
                        status = gr.Markdown(elem_id="sample-status")

                        def draw(seed, count, *values, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
                            label, text = split(values)
                            image, message = guarded(demo.sample)(info, seed, count, label, text,
                                                                   progress=progress)
                            return shown(image), message
                        go.click(draw, [seed, count, *extra], [out, status])

                if "complete" in info.panels:
                    with gr.Tab("Complete", elem_id="tab-complete"):
                        shape = info.signatures["complete"].input_shape()
                        image = picker("images", "image")
                        with gr.Row():
                            hide = gr.Radio(["bottom half", "right half", "drawn mask"],
                                            value="bottom half", label="hide", interactive=True)
                            count = gr.Slider(1, MAX_COMPLETIONS, 6, step=1, label="completions", interactive=True)
                            seed = gr.Number(0, label="seed", precision=0, interactive=True)
                            extra = [e for e in condition_inputs() if e.elem_id == "label"]
                        sketch = gr.ImageEditor(label="drawn mask: paint over the pixels to hide "
                                                "(on the chosen image)", type="numpy", height=260, interactive=True)
                        image.change(lambda x: x, image, sketch)
                        go = gr.Button("Complete", variant="primary", elem_id="complete-go")
                        out = gr.Image(label="masked, completions, original", format="png",
                                       elem_id="complete-output", interactive=False)
                        status = gr.Markdown(elem_id="complete-status")

                        def complete(image, hide, count, seed, sketch, *values, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
                            def run():
                                if hide == "drawn mask":
                                    mask = editor_mask(sketch, shape)
                                else:
                                    mask = half_mask(shape, hide.split()[0])
                                return demo.complete(info, image, mask, count, seed,
                                                     split(values)[0], progress=progress)
                            result, message = guarded(run)()
                            return shown(result), message
                        go.click(complete, [image, hide, count, seed, sketch, *extra], [out, status])

                if "log_prob" in info.panels:
                    with gr.Tab("Likelihood", elem_id="tab-log-prob"):
                        image = picker("images", "image")
                        extra = [e for e in condition_inputs() if e.elem_id == "label"]
                        go = gr.Button("Score", variant="primary", elem_id="log-prob-go")
                        out = gr.Markdown(elem_id="log-prob-output")

                        def score(image, *values):
                            text, message = guarded(demo.log_prob)(info, image, split(values)[0])
                            return text or message
                        go.click(score, [image, *extra], out)

                if "interpolate" in info.panels:
                    with gr.Tab("Interpolate", elem_id="tab-interpolate"):
                        modes = info.interpolation_modes()
                        mode = gr.Radio(modes, value=modes[0], label="between", interactive=True)
                        with gr.Row():
                            seed_a = gr.Number(0, label="seed A", precision=0, interactive=True)
                            seed_b = gr.Number(1, label="seed B", precision=0, interactive=True)
                            steps = gr.Slider(2, MAX_STEPS, 9, step=1, label="steps", interactive=True)
                            extra = condition_inputs()
                        with gr.Row():
                            image_a = picker("images", "image A") if "images" in modes else gr.State()
                            image_b = picker("images", "image B") if "images" in modes else gr.State()
                        go = gr.Button("Interpolate", variant="primary", elem_id="interpolate-go")
                        out = gr.Image(label="interpolation", format="png", elem_id="interpolate-output",
                                       interactive=False)
                        status = gr.Markdown(elem_id="interpolate-status")

                        def interpolate(mode, a, b, steps, image_a, image_b, *values,
                                        progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
                            label, text = split(values)
                            result, message = guarded(demo.interpolate)(
                                info, mode, steps, seeds=(a, b), images=(image_a, image_b),
                                label=label, text=text, progress=progress)
                            return shown(result), message
                        go.click(interpolate, [mode, seed_a, seed_b, steps, image_a, image_b, *extra],
                                 [out, status])

                if "translate" in info.panels:
                    with gr.Tab("Translate", elem_id="tab-translate"):
                        directions = ["translate"] + (["translate_back"]
                                                      if "translate_back" in info.signatures else [])
                        direction = gr.Radio(directions, value="translate", label="signature", interactive=True)
                        image_a = picker("a", "input (translate)")
                        image_b = picker("b", "input (translate_back)") if len(directions) > 1 else gr.State()
                        go = gr.Button("Translate", variant="primary", elem_id="translate-go")
                        out = gr.Image(label="input, output, round trip", format="png",
                                       elem_id="translate-output", interactive=False)
                        status = gr.Markdown(elem_id="translate-status")

                        def translate(direction, a, b):
                            back = direction == "translate_back"
                            result, message = guarded(demo.translate)(info, b if back else a, back)
                            return shown(result), message
                        go.click(translate, [direction, image_a, image_b], [out, status])

        def from_address(request: gr.Request):
            wanted = request.query_params.get("model") if request else None
            return gr.Dropdown(value=wanted) if wanted in demo.model_names else gr.Dropdown()
        app.load(from_address, None, choice)
    return app


def build_parser():
    p = argparse.ArgumentParser(prog="python -m serving.demo",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rest_url", default="http://localhost:8501",
                   help="the model server's REST address (default: %(default)s)")
    p.add_argument("--model_config_file", default="exported/models.config",
                   help="TF Serving's models.config: the models to list and their cards "
                        "(default: %(default)s)")
    p.add_argument("--models", nargs="+", help="list these models instead of the config's")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface the page binds to (default: %(default)s; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=7860, help="the page's port (default: %(default)s)")
    p.add_argument("--max_rows", type=int, default=64,
                   help="most rows per request; keep it <= the server's --max_rows "
                        "(default: %(default)s)")
    p.add_argument("--data_dir", help="data sets' files for the test images (default: "
                                      "GENZOO_DATA_DIR)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        demo = Demo(args.rest_url, None if args.models else args.model_config_file,
                    models=args.models, max_rows=args.max_rows, data_dir=args.data_dir)
    except (ValueError, protos.ConfigError) as err:
        raise SystemExit(f"error: {err}") from None
    roots = sorted({str(b.parent) for b in demo.bases.values() if b is not None}
                   | {str(pathlib.Path(__file__).resolve().parents[1] / "docs")})
    build_app(demo).queue(default_concurrency_limit=2).launch(
        server_name=args.host, server_port=args.port, allowed_paths=roots, show_error=False)


if __name__ == "__main__":
    main()
