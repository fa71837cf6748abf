"""How the packages are put together: their layering, read from the source (zoo <- training,
zoo <- serving), and TensorFlow's start-up log, set up once in zoo/__init__.py.

``zoo/`` (models, the saved-model format) imports neither ``training/`` nor
``serving/``; ``serving/`` does not import ``training/`` (a served model needs
no training code), but for the demo: a client of the server that loads no model and
offers test images built by ``training.data``. ``training/`` may use ``serving/`` and ``zoo/``.
"""
import ast
import os
import subprocess
import sys

import pytest
import tensorflow as tf

import zoo
from conftest import ROOT

SETTER = "setdefault(" + '"TF_CPP_MIN_LOG_LEVEL"'
FORBIDDEN = {"zoo": ("training", "serving"), "serving": ("training",)}
ALLOWED = {"serving/demo.py": {"training"}}  # a client app, not part of serving a model


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
    offenders = {str(path.relative_to(ROOT)): sorted(_imports(path) & set(FORBIDDEN[package])
                                                      - ALLOWED.get(str(path.relative_to(ROOT)), set()))
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


def test_starting_tensorflow_prints_no_cuda_lines_on_a_cpu_machine():
    script = "import zoo, tensorflow as tf; print(int(tf.constant(1) + 1))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 0 and result.stdout.strip() == "2", result.stderr[-2000:]
    if not tf.config.list_physical_devices("GPU"):
        assert "cuda" not in result.stderr.lower() and "absl" not in result.stderr, result.stderr


def test_only_tensorflows_start_up_noise_is_dropped():
    noise = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             b"I0000 00:00:1796202347.191684    1560 cudart_stub.cc:31] Could not find cuda drivers on your "
             b"machine, GPU will not be used.",
             b"E0000 00:00:1796202349.202081    1560 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
             b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"]
    kept = [b"E0000 00:00:1796202349.202081    1560 op_kernel.cc:1842] OP_REQUIRES failed: out of memory",
            b"W0000 00:00:1796202349.202081    1560 cpu_allocator.cc:10] Allocation exceeds 10% of memory",
            b"Traceback (most recent call last):", b"ImportError: libfoo.so: cannot open shared object file"]
    assert all(zoo._NOISE.match(line) for line in noise)
    assert not any(zoo._NOISE.match(line) for line in kept)


def test_the_loaders_import_every_module_that_registers_zoo_classes():
    # A .keras file or an exported version names its classes as genzoo>Name; zoo/saving.py can
    # rebuild them only if their modules are imported, whoever calls it (a bare
    # `from zoo import saving`, without the registry, as serving does).
    registering = {path.stem for path in (ROOT / "zoo").glob("*.py")
                   if "register_keras_serializable" in path.read_text()}
    imported = set()
    for node in ast.walk(ast.parse((ROOT / "zoo" / "saving.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "zoo":
            imported |= {alias.name for alias in node.names}
    assert registering <= imported, registering - imported
