"""The core package stands alone: no Prefect anywhere in it, TensorFlow only where models are."""

import json
import pkgutil
import subprocess
import sys

import mnist_autoencoder
from tests.flowrun import PROJECT

CORE_MODULES = sorted(f"mnist_autoencoder.{m.name}"
                      for m in pkgutil.iter_modules(mnist_autoencoder.__path__))
TENSORFLOW_AT_IMPORT = {"mnist_autoencoder.model", "mnist_autoencoder.variants"}


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
    assert len(CORE_MODULES) >= 20


def test_only_the_model_modules_import_tensorflow_when_imported():
    for module in CORE_MODULES:
        if module not in TENSORFLOW_AT_IMPORT:
            assert imported_by(module) == {"prefect": False, "tensorflow": False}, module
