"""Where a flow's concurrent tasks run: a Dask cluster when one is named, else a thread pool."""

from __future__ import annotations

import os
import re

from prefect.task_runners import ThreadPoolTaskRunner

from mnist_autoencoder.errors import ParameterError

DASK_ADDRESS_ENV = "MNIST_AE_DASK_ADDRESS"
WORKERS_ENV = "MNIST_AE_SWEEP_WORKERS"


def dask_address() -> str:
    """The scheduler named by ``MNIST_AE_DASK_ADDRESS`` (empty: none), checked."""
    address = os.environ.get(DASK_ADDRESS_ENV, "").strip()
    if address and ("{{" in address
                    or not re.fullmatch(r"([a-z]+://)?[\w.\-\[\]:]+:\d+/?", address)):
        raise ParameterError(f"{DASK_ADDRESS_ENV}={address!r} is not a Dask scheduler address; "
                         "give one like tcp://scheduler:8786, or leave it empty to run "
                         "tasks on a thread pool here")
    return address


def task_runner():
    """prefect-dask's runner on the cluster of ``MNIST_AE_DASK_ADDRESS``, else a thread pool.

    Called when a flow module is imported, where an error would be a traceback before
    the command line could say it in one line: a malformed address falls back to the
    thread pool here, and is refused by ``flows.cli.main`` (exit 2) and by ``dask_address``
    wherever a flow asks for it.
    """
    try:
        address = dask_address()
    except ParameterError:
        address = ""
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    return ThreadPoolTaskRunner(max_workers=int(os.environ.get(WORKERS_ENV) or os.cpu_count()))
