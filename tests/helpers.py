"""What the tests share: tiny synthetic IDX data, runs of the flows, the Prefect API.

Test modules import from here only, never from one another.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from mnist_autoencoder.data.catalog import IDX_NAMES, ROLES, DatasetSpec, declare
from mnist_autoencoder.paths import MODEL_FILES

# ---- synthetic IDX datasets: real IDX bytes, class-dependent patterns, no network ---------

NAME = "synthetic"


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def make_digits(n: int, seed: int, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Images whose structure depends on the label: one bright bar per class, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, side, side)).astype(np.float32)
    for i, label in enumerate(labels):
        row = 3 + 2 * int(label)
        images[i, row:row + 3, 4:24] = 255
        images[i, 4:24, row:row + 2] += 120
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_dataset(directory: Path, n_train: int = 600, n_test: int = 100,
                  seed: int = 0, side: int = 28) -> DatasetSpec:
    """Write the four .gz IDX files into ``directory``; return a spec pinning their payloads.

    ``declare(name, spec)`` (or ``register``) adds it to the catalog of this session.
    """
    directory.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = make_digits(n_train, seed, side)
    test_images, test_labels = make_digits(n_test, seed + 1, side)
    arrays = dict(zip(ROLES, (train_images, train_labels, test_images, test_labels)))
    files = {}
    for role, array in arrays.items():
        payload = idx_bytes(array)
        (directory / IDX_NAMES[role]).write_bytes(gzip.compress(payload, mtime=0))
        files[role] = (IDX_NAMES[role], hashlib.sha256(payload).hexdigest())
    return DatasetSpec(files, mirrors=(), train_size=n_train, test_size=n_test)


def register(directory: str | Path, name: str = NAME) -> DatasetSpec:
    """Pin the synthetic files in ``directory`` as dataset ``name`` in the session's catalog."""
    directory = Path(directory)
    files, sizes = {}, {}
    for role in ROLES:
        payload = gzip.decompress((directory / IDX_NAMES[role]).read_bytes())
        files[role] = (IDX_NAMES[role], hashlib.sha256(payload).hexdigest())
        sizes[role] = int.from_bytes(payload[4:8], "big")
    spec = DatasetSpec(files, mirrors=(), train_size=sizes["train_images"],
                       test_size=sizes["test_images"])
    declare(name, spec)
    return spec


def write_idx(directory, images, labels=None, stem="t10k", gz=True):
    """One IDX images file (and labels file) in ``directory``, as a scoring or ingest input."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else (lambda b: b)
    (directory / f"{stem}-images-idx3-ubyte{suffix}").write_bytes(pack(idx_bytes(images)))
    if labels is not None:
        (directory / f"{stem}-labels-idx1-ubyte{suffix}").write_bytes(pack(idx_bytes(labels)))
    return directory


def fake_model(directory, tag):
    """A model folder whose files hold only ``tag`` (for the registry, which only hashes them)."""
    directory.mkdir(parents=True)
    for name in MODEL_FILES:
        (directory / name).write_text(f"{tag}:{name}")
    return directory


# ---- runs of the flows ----------------------------------------------------------------------

@functools.cache
def pipeline_stages() -> tuple[str, ...]:
    """The cached stages of the pipeline flow, read from the tasks its modules wire."""
    from prefect import Task
    from prefect.cache_policies import NO_CACHE

    import flows.autoencoder
    import flows.data

    tasks = [value for module in (flows.data, flows.autoencoder)
             for value in vars(module).values() if isinstance(value, Task)]
    return tuple(dict.fromkeys(t.name for t in tasks if t.cache_policy is not NO_CACHE))


PROJECT = Path(__file__).resolve().parents[1]


def small_run(dataset, source, root, **changes):
    """Parameters of a pipeline run on a small synthetic dataset that trains in seconds."""
    return {"dataset": dataset, "source": str(source), "val_size": 100, "epochs": 2,
            "batch_size": 64, "latent_dim": 8, "learning_rate": 0.01,
            "data_dir": str(root / "data"), "artifacts_dir": str(root / "artifacts")} | changes


def growing_run(dataset, root, n_train, **changes):
    """A synthetic dataset of its own under ``root`` (so batches can be ingested into it),
    registered as ``dataset``, and ``small_run``'s parameters for it."""
    write_dataset(root / "source", n_train=n_train, n_test=100, seed=0)
    register(root / "source", dataset)
    return small_run(dataset, root / "source", root, **changes)


def pipeline(**params):
    """Run the pipeline flow in this process with flat parameters, as the CLI takes them."""
    from flows.autoencoder import mnist_autoencoder
    from flows.cli import group_params

    return mnist_autoencoder(**group_params(mnist_autoencoder, params))


def cli_command(params, module="flows.autoencoder"):
    """argv for a fresh interpreter running a flow's command line.

    The session's synthetic datasets reach it through ``MNIST_AE_CATALOG``.
    """
    args = [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in params.items()]
    return [sys.executable, "-m", module, *args]


def cli_env(api_url, cwd=PROJECT):
    return os.environ | {"PREFECT_API_URL": api_url, "PYTHONPATH": str(cwd)}


def states(result):
    """Ran or cached, per cached stage (not the uncached look-ups: snapshot, model, input)."""
    return {s["stage"]: "cached" if s["state"] == "Cached" else "ran" for s in result["stages"]
            if s["stage"] in (*pipeline_stages(), "score")}


def expect(*ran):
    return {stage: "ran" if stage in ran else "cached" for stage in pipeline_stages()}


def cli_run(params, api_url, cwd=PROJECT, **changes):
    """Run the flow's command line in a fresh interpreter against the same API and caches."""
    params = params | changes
    proc = subprocess.run(cli_command(params), cwd=cwd,
                          env=cli_env(api_url, cwd), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def summary_states(stdout):
    lines = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {parts[0]: parts[1] for parts in lines if parts[0] in pipeline_stages()}


# ---- the Prefect API ------------------------------------------------------------------------

def epoch(timestamp) -> float:
    """Seconds since the epoch of a timestamp the Prefect API gives (ISO text)."""
    import pandas as pd

    return pd.Timestamp(timestamp).timestamp()


def api(url, path, body=None, method=None):
    """One call of the Prefect REST API at ``url``; its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def wait_for_event(url, name, resource, timeout=30):
    """The events called ``name`` about ``resource`` that the API has, once there are any."""
    deadline, events = time.monotonic() + timeout, []
    while not events and time.monotonic() < deadline:
        events = [e for e in api(url, "/events/filter", {"filter": {"event": {"name": [name]}}})[
            "events"] if e["resource"]["prefect.resource.id"] == resource]
        time.sleep(0.5)
    return events
