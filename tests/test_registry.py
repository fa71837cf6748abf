"""The preset table: building, listing, unknown names, loading pretrained models."""
import ast

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from serving import export
from zoo import latent, registry, saving


def test_list_and_build():
    names = registry.list_models()
    assert names == sorted(names) and {"vae_mnist", "vae2d_mnist", "ae_mnist"} <= set(names)
    model = registry.build("vae_mnist", latent_dim=8)
    assert isinstance(model, latent.VAE) and model.latent_dim == 8 and model.name == "vae_mnist"
    assert isinstance(registry.build("beta_vae_mnist"), latent.BetaVAE)
    assert registry.build("beta_vae_mnist").beta == 4.0
    assert isinstance(registry.build("cvae_mnist"), latent.ConditionalVAE)


def test_preset_names_name_the_data():
    for name in registry.list_models():
        assert name.endswith("_" + registry.get_preset(name).dataset), name


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError) as err:
        registry.build("vae_cifar")
    assert "vae_mnist" in str(err.value) and "Valid presets" in str(err.value)
    with pytest.raises(FileNotFoundError, match="No exported versions"):
        registry.load("ae_mnist")


# One model of each family by default, every exported one with `pytest -m slow`.
DEFAULT_LOADS = {"vae_mnist", "pixelcnn_mnist", "dcgan_mnist", "classifier_mnist"}


@pytest.mark.parametrize("name", [n if n in DEFAULT_LOADS else pytest.param(n, marks=pytest.mark.slow)
                                  for n in registry.list_models() if saving.versions(n)])
def test_pretrained_models_load(name):
    served = registry.load(name)
    assert "serving_default" in served.signatures
    keras_model = registry.load(name, keras_model=True)
    endpoints = keras_model.serving_endpoints()
    first = next(iter(endpoints))  # the serving_default
    fn, specs = endpoints[first]
    inputs = export._example_inputs(specs, rows=2)
    out = served.signatures[first](**{k: tf.constant(v) for k, v in inputs.items()})
    again = fn(*[tf.constant(inputs[spec.name]) for spec in specs])
    for key, value in out.items():
        np.testing.assert_allclose(value.numpy(), again[key].numpy(), rtol=1e-5, atol=1e-5)


def test_the_readme_lists_the_presets_as_list_models_does():
    line = next(line for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("registry.list_models()"))
    shown = ast.literal_eval(line.split("#", 1)[1].replace(", ...", "").strip())
    assert shown == registry.list_models()[:len(shown)], (shown, registry.list_models())
