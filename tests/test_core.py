"""The core package stands alone: no Prefect anywhere in it, TensorFlow only where models are."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import mnist_autoencoder
from tests.helpers import PROJECT

CORE_MODULES = sorted(m.name for m in pkgutil.walk_packages(mnist_autoencoder.__path__,
                                                            "mnist_autoencoder."))
TENSORFLOW_AT_IMPORT = {"mnist_autoencoder.models.model", "mnist_autoencoder.models.variants"}


def imported_by(module: str) -> dict[str, bool]:
    code = (f"import sys, json; import {module}; "
            "print(json.dumps({m: m in sys.modules for m in ('prefect', 'tensorflow')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return json.loads(out.splitlines()[-1])


def test_no_core_module_imports_prefect():
    code = ("import sys; " + "; ".join(f"import {m}" for m in CORE_MODULES)
            + "; print('prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.split()[-1] == "False"
    assert len(CORE_MODULES) >= 35


def test_only_the_model_modules_import_tensorflow_when_imported():
    for module in CORE_MODULES:
        if module not in TENSORFLOW_AT_IMPORT:
            assert imported_by(module) == {"prefect": False, "tensorflow": False}, module


def test_each_domain_package_says_what_it_holds_and_imports_nothing():
    packages = [m.name for m in pkgutil.iter_modules(mnist_autoencoder.__path__) if m.ispkg]
    assert len(packages) >= 5
    for name in packages:
        module = __import__(f"mnist_autoencoder.{name}", fromlist=["_"])
        assert len((module.__doc__ or "").split()) >= 20, name
        source = Path(module.__file__).read_text()
        assert "import " not in source.replace(module.__doc__, ""), name
