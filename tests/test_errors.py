"""One class for every user-fixable problem; one range per parameter; Prefect's private parts."""

import importlib
import inspect
import pickle
import pkgutil

import pytest

import mnist_autoencoder
from flows.sweep import SweepError, SweepUserError
from mnist_autoencoder.errors import MissingFileError, ParameterError, UserError


def core_exceptions():
    found = {}
    for info in pkgutil.walk_packages(mnist_autoencoder.__path__, "mnist_autoencoder."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                found[f"{info.name}.{value.__name__}"] = value
    return found


def test_every_exception_class_of_the_core_is_a_user_error():
    found = core_exceptions()
    assert {"mnist_autoencoder.data.catalog.UnknownDataset",
            "mnist_autoencoder.data.pixels.InputError",
            "mnist_autoencoder.lifecycle.registry.RegistryError"} <= set(found)
    assert [name for name, cls in found.items() if not issubclass(cls, UserError)] == []


@pytest.mark.parametrize("cls", sorted(core_exceptions().values(), key=str))
def test_user_errors_cross_processes_intact(cls):
    """A Dask worker sends the exception back pickled: the type and the message survive."""
    error = pickle.loads(pickle.dumps(cls("a problem:  fix it")))
    assert type(error) is cls and str(error) == "a problem: fix it"


def test_a_missing_file_is_still_a_file_not_found_error():
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(MissingFileError,
                                                                          UserError)


def test_a_sweep_error_is_a_user_error_only_when_every_trial_failed_with_one():
    assert not issubclass(SweepError, UserError) and issubclass(SweepUserError, SweepError)
    assert issubclass(SweepUserError, UserError)


def test_fpr_has_one_range_and_out_of_it_is_a_parameter_error(tmp_path):
    import numpy as np

    from mnist_autoencoder.params import PathsConfig, validate_score
    from mnist_autoencoder.scoring.scores import FPR_RANGE, Calibration

    calibration = Calibration("bce", {"bce": {"params": {}, "quantiles": [0.0, 1.0, 2.0]}}, 3, 3)
    images = tmp_path / "x.npy"
    np.save(images, np.zeros((2, 28, 28), np.float32))
    high = FPR_RANGE[1]
    for fpr in (0.0, high, 0.9, -0.1):
        with pytest.raises(ParameterError, match="Invalid parameter fpr="):
            calibration.threshold(fpr)
        with pytest.raises(ParameterError, match=f"in \\(0, {high:g}\\)"):
            validate_score(str(images), "mnist", "champion", fpr, PathsConfig())
    assert 0 < calibration.threshold(high / 2) < 2


def test_the_private_parts_of_prefect_that_caching_uses_are_there(tmp_path):
    """Fails, naming the missing part, when an upgrade of Prefect removes one of them."""
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore
    from prefect.serializers import JSONSerializer

    from tasks.caching import ProcessLockManager, _private, check_prefect_private

    check_prefect_private()
    manager = ProcessLockManager(lock_files_directory=tmp_path / "locks")
    assert manager.acquire_lock("stage-key", "me")
    path = _private("lock path", manager, "stage-key")
    assert path.is_file() and path.parent == tmp_path / "locks"
    manager.release_lock("stage-key", "me")
    assert not path.exists()
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path / "records")),
                        serializer=JSONSerializer())
    store.write(key="stage-key", obj={"a": 1})
    assert store.read("stage-key").result == {"a": 1}
    assert len(store.cache) == 1 and _private("forget", store, "stage-key") is not None
    assert len(store.cache) == 0


def test_a_lock_whose_holder_died_is_released_through_the_public_api(tmp_path):
    import json

    from tasks.caching import ProcessLockManager, _private

    manager = ProcessLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("k", "holder-1")
    path = _private("lock path", manager, "k")
    info = json.loads(path.read_text())
    assert info["holder"] == "holder-1"
    path.write_text(json.dumps(info | {"pid": 2 ** 22 + 12345}))  # no such process
    other = ProcessLockManager(lock_files_directory=tmp_path)
    assert not other.is_locked("k") and not path.exists()
