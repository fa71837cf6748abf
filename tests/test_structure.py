"""The layering of the packages, read from the source: zoo <- training, zoo <- serving.

``zoo/`` (models, the saved-model format) imports neither ``training/`` nor
``serving/``; ``serving/`` does not import ``training/`` (a served model needs
no training code). ``training/`` may use ``serving/`` and ``zoo/``.
"""
import ast

import pytest

from conftest import ROOT

SETTER = "setdefault(" + '"TF_CPP_MIN_LOG_LEVEL"'
FORBIDDEN = {"zoo": ("training", "serving"), "serving": ("training",)}


def _imports(path):
    """Top-level package names a module imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(package):
    offenders = {str(path.relative_to(ROOT)): sorted(_imports(path) & set(FORBIDDEN[package]))
                 for path in sorted((ROOT / package).rglob("*.py"))}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_the_layer_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training import data\n    import serving.export\n")
    assert _imports(module) == {"training", "serving"}


def test_tensorflow_log_level_is_set_in_one_place():
    setters = [str(p.relative_to(ROOT)) for folder in ("zoo", "training", "serving", "benchmarks", "tests")
               for p in sorted((ROOT / folder).rglob("*.py"))
               if SETTER in p.read_text()]
    assert setters == ["zoo/__init__.py"], setters
