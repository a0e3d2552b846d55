"""Test isolation. Prefect reads its settings when imported, so they are set here first.

Every test session gets its own PREFECT_HOME, result storage and stage cache in a
temporary directory: cache records never leak between sessions or into the
project's own ``.cache``.
"""

import os
import shutil
import tempfile
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mnist-ae-tests-"))
os.environ.update({
    "PREFECT_HOME": str(_SESSION_DIR / "prefect-home"),
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(_SESSION_DIR / "prefect-results"),
    "MNIST_AE_CACHE_DIR": str(_SESSION_DIR / "stage-cache"),
    # the synthetic datasets the tests declare; subprocesses and workers inherit it
    "MNIST_AE_CATALOG": str(_SESSION_DIR / "catalog.json"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "TF_CPP_MIN_LOG_LEVEL": "3",
})
os.environ.pop("PREFECT_API_URL", None)

import pytest  # noqa: E402

from tests import helpers  # noqa: E402

MNIST_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def session_dir():
    yield _SESSION_DIR
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api(session_dir):
    """One real Prefect API server (SQLite in the session's PREFECT_HOME) for the whole session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def synthetic_source(session_dir):
    """A directory of synthetic IDX files, pinned in the catalog as dataset ``synthetic``."""
    directory = session_dir / "synthetic-source"
    helpers.write_dataset(directory)
    helpers.register(directory)
    return directory


@pytest.fixture(scope="session")
def s3(session_dir):
    """A real S3 endpoint (moto's server on loopback) for the session, its standard
    variables set (AWS_ENDPOINT_URL, a key pair), and a scratch folder of the session's."""
    from tests.s3 import S3Server

    server = S3Server(session_dir / "moto.log")
    env = server.env | {"MNIST_AE_SCRATCH": str(session_dir / "scratch")}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture
def mnist_mirror():
    if not (MNIST_MIRROR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST mirror not found at {MNIST_MIRROR}")
    return MNIST_MIRROR


def pytest_collection_modifyitems(config, items):
    """Mark as ``slow`` every test that needs a Prefect server or real MNIST: ``make test-fast``
    leaves them out. Derived from the fixtures a test uses, so the mark cannot drift."""
    for item in items:
        if {"prefect_api", "mnist_mirror"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
