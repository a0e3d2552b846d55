"""Sweep: model variants x code sizes x seeds, trained concurrently, compared in one report.

The data stages are the pipeline's own (``download``, ``preprocess``: run and
cached once). Every trial is a cached task (``tasks.trial``), so growing the grid
by one value trains only the new trials; PCA at each code size is computed the
same way as a reference. Trials run through the flow's task runner:

- by default a thread pool of ``MNIST_AE_SWEEP_WORKERS`` threads (default: the
  number of cores);
- with ``MNIST_AE_DASK_ADDRESS`` set (e.g. ``tcp://scheduler:8786``), prefect-dask's
  ``DaskTaskRunner`` on that existing Dask cluster. Its workers need this project
  installed, the Prefect API URL, and the data, artifacts and cache directories on
  storage every machine sees (set ``MNIST_AE_CACHE_DIR`` and pass absolute
  ``data_dir``/``artifacts_dir``).

Run it with ``python -m flows.sweep [--name value ...]``; list parameters are
comma-separated (``--latent-dims 2,4,8,16``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.futures import wait

from flows.data import run_data_stages
from flows.runners import task_runner
from flows.summary import StageRun, format_stages, run_stage
from mnist_autoencoder.errors import UserError
from mnist_autoencoder.models.trial import REFERENCE, VARIANTS
from mnist_autoencoder.params import DataConfig, PathsConfig, TrainingConfig, validate_sweep
from tasks.sweep_report import sweep_report
from tasks.trial import trial


class SweepError(RuntimeError):
    """Some trials failed; the report holds the others."""


class SweepUserError(SweepError, UserError):
    """Some trials failed, each with a problem the user can fix (exit 2, no traceback)."""


def validate(data: DataConfig, training: TrainingConfig, paths: PathsConfig,
             variants: tuple[str, ...], latent_dims: tuple[int, ...], seeds: tuple[int, ...],
             probe: bool) -> None:
    validate_sweep(data, training, paths, variants, latent_dims, seeds, VARIANTS)


@flow(name="mnist-sweep", task_runner=task_runner(), validate_parameters=True)
def mnist_sweep(
    data: DataConfig = DataConfig(),
    training: TrainingConfig = TrainingConfig(),
    paths: PathsConfig = PathsConfig(),
    variants: tuple[str, ...] = VARIANTS,
    latent_dims: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128),
    seeds: tuple[int, ...] = (0,),
    probe: bool = True,
) -> dict[str, Any]:
    """Train every variant at every code size and seed; compare them with PCA in one report.

    Args:
        data: which dataset, where from, and how it is split (its seed seeds the split,
            shared by every trial).
        training: epochs, batch size, learning rate, patience of every trial.
        paths: where data, trial models and the sweep report go.
        variants: model variants: shallow, sparse, deep, conv, vae (comma-separated).
        latent_dims: code sizes (comma-separated).
        seeds: seeds for weight initialisation and batch order (comma-separated).
        probe: also fit a linear probe (logistic regression) on each trial's codes.
    """
    validate(data, training, paths, variants, latent_dims, seeds, probe)
    # the folders, or scratch mirrors of storage URLs, pushed back at the end (docs/storage.md)
    with paths.local() as paths:
        stages: list[StageRun] = []
        _, _, splits = run_data_stages(data, paths, stages)
        grid = [(variant, size, seed) for variant in variants for size in latent_dims
                for seed in seeds]
        grid += [(REFERENCE, size, seeds[0]) for size in latent_dims]
        common = {"splits": splits, "probe": probe,
                  "artifacts_dir": paths.artifacts_dir}
        futures = [trial.submit(**common, variant=variant, latent_dim=size, seed=seed,
                                training=None if variant == REFERENCE else training.model_dump())
                   for variant, size, seed in grid]
        wait(futures)
        trials = [{"variant": v, "latent_dim": d, "seed": s, "state": f.state, "future": f}
                  for (v, d, s), f in zip(grid, futures)]
        done = [t for t in trials if t["state"].is_completed()]
        failed = [t for t in trials if not t["state"].is_completed()]
        outputs = [t["future"].result() for t in done]
        written = None
        if outputs:
            settings = (data.model_dump(include={"dataset", "val_size", "train_subset", "seed"})
                        | training.model_dump() | {"data": splits["hash"][:16]})
            written = run_stage(sweep_report, stages, trials=outputs, settings=settings,
                                artifacts_dir=paths.artifacts_dir)
        if failed:
            names = ", ".join(f"{t['variant']}/{t['latent_dim']}/seed {t['seed']} "
                              f"({t['state'].name})" for t in failed)
            users = all(isinstance(_exception_of(t["future"]), UserError) for t in failed)
            error = SweepUserError if users else SweepError
            raise error(f"{len(failed)} of {len(trials)} trials failed: {names}. "
                        f"The first one's error: {_error_of(failed[0]['future'])}. "
                        "A rerun retries only the failed trials."
                        + (f" Report of the others: {written['dir']}" if written else ""))
        report_path = str(Path(written["dir"]) / "sweep.html")
        rows = [{k: t[k] for k in ("variant", "latent_dim", "seed")}
                | {"state": t["state"].name, "metrics": out["metrics"], "dir": out["dir"]}
                for t, out in zip(done, outputs)]
        return {"stages": [vars(s) for s in stages], "trials": rows, "report": report_path,
                "summary_table": written["summary"],
                "summary": format_sweep_summary(stages, rows, report_path)}


def _exception_of(future) -> BaseException | None:
    """The exception a failed trial raised (None: it never ran, e.g. a Dask worker error)."""
    try:
        future.result(timeout=0)
    except Exception as exc:  # noqa: BLE001 - any error is reported, none is swallowed
        return exc
    return None


def _error_of(future) -> str:
    """The exception a failed trial raised, or why it never ran (e.g. a Dask worker error)."""
    exc = _exception_of(future)
    if exc is None:
        return f"state {future.state.name}"
    return str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"


def format_sweep_summary(stages: list[StageRun], rows: list[dict[str, Any]],
                         report_path: str) -> str:
    lines = ["Trials:", f"  {'variant':<8} {'latent':>6} {'seed':>4}  {'state':<7} "
             f"{'test BCE':>8} {'test MSE':>8} {'probe':>6}"]
    for row in rows:
        m, probe = row["metrics"], row["metrics"]["probe_accuracy"]
        lines.append(f"  {row['variant']:<8} {row['latent_dim']:>6} {row['seed']:>4}  "
                     f"{'cached' if row['state'] == 'Cached' else 'ran':<7} "
                     f"{m['test_bce']:8.4f} {m['test_mse']:8.4f} "
                     f"{'-' if probe is None else f'{probe:.1%}':>6}")
    return "\n".join([*format_stages(stages), *lines, f"Report: {report_path}"])


if __name__ == "__main__":
    from flows.cli import main

    main(mnist_sweep, validate, prog="python -m flows.sweep")
