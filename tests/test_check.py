"""The servability check on the zoo's exports and on models it must reject."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT, run_main, run_module
from serving import check
from zoo import registry, saving

EXPORTED = [saving.version_path(n, v) for n in registry.list_models() for v in saving.versions(n)]
LATEST = {saving.version_path(n) for n in registry.list_models() if saving.versions(n)}


# The latest version of each model by default; the older ones (which no card describes any
# more, but models.config may still serve) with `pytest -m slow`.
@pytest.mark.parametrize("path", [p if p in LATEST else pytest.param(p, marks=pytest.mark.slow)
                                  for p in EXPORTED],
                         ids=[f"{p.parent.name}/{p.name}" for p in EXPORTED])
def test_every_exported_model_is_servable(path):
    report, problems = check.check(path)
    assert not problems, problems
    endpoints = saving.load_keras(path).serving_endpoints()
    assert set(report) == set(endpoints) | {"serving_default"}


@pytest.mark.slow  # a minute: every version of the zoo again; the command itself is tested below
def test_command_over_the_zoo_folder():
    if not EXPORTED:
        pytest.skip("no exported models")
    result = run_module("serving.check", ROOT / "exported")
    assert f"{len(EXPORTED)} servable, 0 not" in result.stdout


def test_python_ops_and_broken_files_are_rejected(tmp_path):
    module = tf.Module()
    module.f = tf.function(
        lambda x: {"y": tf.numpy_function(np.square, [x], tf.float32)},
        input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    tf.saved_model.save(module, str(tmp_path / "py" / "1"), signatures={"serving_default": module.f})
    problems = check.audit_ops(tmp_path / "py" / "1")
    assert any("PyFunc" in p for p in problems), problems
    (tmp_path / "bad" / "1").mkdir(parents=True)
    (tmp_path / "bad" / "1" / "saved_model.pb").write_bytes(b"\x00garbage")
    _, problems = check.check(tmp_path / "bad" / "1")
    assert any("cannot be parsed" in p for p in problems)
    result = run_main("serving.check", tmp_path)
    assert result.returncode == 1 and "0 servable, 2 not" in result.stdout
