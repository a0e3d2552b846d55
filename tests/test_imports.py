"""Importing the core changes no global state: matplotlib's backend, the umask, logging."""

import json
import os
import subprocess
import sys

from tests.helpers import PROJECT

CHILD = r"""
import importlib, json, logging, os, pkgutil, sys

import matplotlib

umask_calls = []
real_umask = os.umask
def watched_umask(mask):
    umask_calls.append(mask)
    return real_umask(mask)
os.umask = watched_umask

def handlers():
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in
                                       list(logging.Logger.manager.loggerDict)]
    return {f"{lg.name}: {type(h).__name__}" for lg in loggers for h in lg.handlers}

backend = dict.__getitem__(matplotlib.rcParams, "backend")
before = handlers()
import mnist_autoencoder
names = [m.name for m in pkgutil.walk_packages(mnist_autoencoder.__path__, "mnist_autoencoder.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "modules": len(names),
    "backend_before": str(backend),
    "backend_after": str(dict.__getitem__(matplotlib.rcParams, "backend")),
    "pyplot_backend_chosen": "matplotlib.pyplot" in sys.modules
        and matplotlib.pyplot._backend_mod is not None,
    "umask_calls": umask_calls,
    "new_handlers": sorted(handlers() - before),
}))
"""


def test_importing_every_core_module_changes_no_global_state():
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["modules"] > 30
    assert found["backend_after"] == found["backend_before"]  # no matplotlib.use()
    assert not found["pyplot_backend_chosen"]
    assert found["umask_calls"] == []  # not even set and put back
    # Nothing on the root logger nor on the project's loggers. Libraries may equip their own
    # named loggers (a NullHandler by convention; TensorFlow, imported by models.model and
    # models.variants, gives "tensorflow" a StreamHandler): their business, not the core's.
    ours = [h for h in found["new_handlers"]
            if h.startswith(("root:", "mnist_autoencoder", "prefect", "flows", "tasks"))]
    assert ours == []
    assert set(found["new_handlers"]) <= {"charset_normalizer: NullHandler",
                                          "requests: NullHandler", "urllib3: NullHandler",
                                          "tensorflow: StreamHandler"}


def test_the_report_figures_render_without_pyplot():
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from mnist_autoencoder.reports import figures

    fig = figures.plot_loss_curves(pd.DataFrame({"epoch": [1, 2], "loss": [0.3, 0.2],
                                                 "val_loss": [0.31, 0.25]}))
    assert isinstance(fig, Figure)
    assert figures.to_png(fig).startswith(b"\x89PNG")
    fig = figures.plot_probe_confusion(np.eye(10, dtype=int) * 5, 1.0)
    assert isinstance(fig, Figure) and figures.to_png(fig).startswith(b"\x89PNG")
