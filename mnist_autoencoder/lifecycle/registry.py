"""The champion registry: one champion per dataset, replaced only by a model at least as good.

The registry lives in the state database (``database``): one ``decisions`` row per
event of every dataset (decisions, reinstatements, losses) and one ``champions`` row
per dataset pointing at the decision whose model is in use. Its files
(``paths.CATALOG``, under ``<artifacts>/models/``): ``model_store``, every model ever
promoted, by hash, kept for reinstatement and for other machines; ``champion``, this
machine's copy of the model in use with its ``champion.json``.

The database is the source of truth; ``champion/`` is a copy of the model it
names. A promotion commits the decision row and the pointer in one transaction,
compare-and-swap on the pointer's version: a decision made against a champion
that another run (on any machine) replaced meanwhile is made again against the
new one. A challenger is compared with the champion of its own dataset *on the
same test split* (the champion is re-scored on the challenger's test set) and is
promoted when its test BCE is at most ``champion * (1 + tolerance)``, unless the
promotion is held (``hold_reason``: the drift gate tripped on the data it was
trained on, as the drift policy counts it): then the row says ``held`` with the
reason, and the champion stays.

Before each decision the champion is checked as it is now. Deleted, damaged
(its files fail the hashes in ``champion.json``) or replaced by hand (not the
model the registry names): it is reinstated from the store (or the run's own
model directory), whatever stood there is kept aside as
``champion.displaced-<time>``, and a registry row says so. Where the database is
configured (``MNIST_AE_DATABASE_URL``, shared by machines), a missing
``champion/`` is this machine's first copy, installed from the store without a
row. Every file write is atomic and this machine's decisions hold a lock on its
``champion/``, so a crash or a second process never leaves a half-installed champion.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd
import sqlalchemy as sa

from mnist_autoencoder import database as db
from mnist_autoencoder.errors import ParameterError, StateError
from mnist_autoencoder.paths import CALIBRATION_FILE, CHAMPION_INFO, MODEL_FILES, location
from mnist_autoencoder.roots import ensure
from mnist_autoencoder.storage import (
    atomic_dir,
    locked,
    read_table,
    sha256_file,
    sha256_json,
    write_json_atomic,
)

DEFAULT_TOLERANCE = 0.005  # a challenger may be 0.5% worse (noise between equal runs is ~0.1%)


@dataclass(frozen=True)
class TrainingRecord:
    """How a model was trained, as the registry's ``parameters`` column holds it.

    Made once by ``promote`` from the train stage's config and the splits' counts;
    read back once, here (``from_json``), by lineage (the code size) and the drift
    gate (the seed and split sizes of the model's validation split).
    """

    latent_dim: int
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    patience: int | None = None
    seed: int = 0
    init: str = "scratch"  # or "warm": started from parent_model_sha256
    parent_model_sha256: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # images per split
    # the rows it trained and validated on: {"train", "val"}, and for a warm retrain
    # {"new"} (the batches since the parent) and {"replay"} (the sample of the history)
    rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: Any) -> TrainingRecord | None:
        """The record of a ``parameters`` value; None when it holds none (an old row)."""
        try:
            value = json.loads(text)
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in value.items() if k in known})
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class RunInfo:
    """What the registry records of the run that trained a challenger."""

    run_id: str
    training: TrainingRecord
    data_sha256: str
    splits_sha256: str
    code_version: str
    flow_run_name: str | None = None
    snapshot: str | None = None
    drift: str | None = None  # the drift gate's line on the data the model trained on
    drift_policy: str = "hold-anomalous"

    def columns(self) -> dict[str, Any]:
        """The registry's and champion.json's columns for this run."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "training"}
        return values | {"parameters": self.training.to_json(), "init": self.training.init,
                         "parent_model_sha256": self.training.parent_model_sha256}


@dataclass(frozen=True)
class RegistryRow:
    """One row of the registry (``database.decisions``): a decision, a reinstatement or a loss."""

    dataset: str
    run_id: str
    event: str  # promoted, held, kept out (decisions); reinstated, lost (repairs)
    time: str
    reason: str
    promoted: bool
    model_path: str
    model_sha256: str
    test_bce: float | None = None
    test_mse: float | None = None
    champion_test_bce: float | None = None
    # the run's columns (RunInfo.columns); None on repair rows
    flow_run_name: str | None = None
    parameters: str | None = None  # TrainingRecord.to_json()
    data_sha256: str | None = None
    splits_sha256: str | None = None
    snapshot: str | None = None
    code_version: str | None = None
    init: str | None = None
    parent_model_sha256: str | None = None
    drift: str | None = None
    drift_policy: str | None = None
    champion_model_sha256: str | None = None  # the champion a decision was compared with
    host: str | None = None  # the machine that wrote the row
    id: int | None = None  # its place in the commit order (set by the database)

    @property
    def training(self) -> TrainingRecord | None:
        return TrainingRecord.from_json(self.parameters)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RegistryRow:
        """A row as read back from the table (columns it lacks: None)."""
        known = {f.name for f in fields(cls)}
        values = {k: (None if _missing(v) else v) for k, v in record.items() if k in known}
        return cls(**{f.name: values.get(f.name) for f in fields(cls)})

    def repair(self, event: str, reason: str, promoted: bool) -> RegistryRow:
        """The row that records a repair of this (registered) champion."""
        return RegistryRow(self.dataset, self.run_id, event, _now(), reason, promoted,
                           self.model_path, self.model_sha256,
                           test_bce=self.test_bce if promoted else None, host=_host())

    def values(self) -> dict[str, Any]:
        """The row's columns as the database stores them (the id is its own)."""
        return {k: db.plain(v) for k, v in asdict(self).items() if k != "id"}


class Decision(TypedDict):
    """What ``promote_model`` decided, as the pipeline passes it on to the report."""

    promoted: bool
    held: bool
    reason: str
    champion_dir: str
    champion_test_bce: float | None
    challenger_test_bce: float
    repaired: str | None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN from Parquet


def registry_rows(table: pd.DataFrame) -> list[RegistryRow]:
    """The rows of a registry table, oldest first."""
    return [RegistryRow.from_record(record) for record in table.to_dict("records")]


class RegistryError(StateError):
    """The registry's state cannot be used as it is; the message says what to do."""


# What a trip does to the promotion of a model trained on the drifted batches (docs/drift.md):
# - hold-anomalous: hold it when the batch is also anomalous in bulk, i.e. the anomaly score
#   flags more than HOLD_FLAGGED_SHARE of it (3x the calibrated 1%): corrupted or foreign
#   images. A trip without that (new writers, a class missing) is recorded, and the usual
#   champion/challenger rule decides.
# - hold: hold it on every trip; record: never hold, only record.
POLICIES = ("hold-anomalous", "hold", "record")
DEFAULT_POLICY = "hold-anomalous"
HOLD_FLAGGED_SHARE = 0.03


def hold_reason(gate: Mapping[str, Any] | None, policy: str) -> str | None:
    """Why the promotion of a model trained on the gate's batches waits; None: it need not.

    ``gate`` is the pipeline's drift stage result, a ``scoring.drift.GateResult``
    (not imported: the registry's code version need not cover the drift tests).
    """
    if policy not in POLICIES:
        raise ParameterError(f"unknown drift policy {policy!r}; choose one of {list(POLICIES)}")
    if policy == "record" or not gate or not gate.get("tripped"):
        return None
    flagged = (gate.get("drift") or {}).get("flagged") or {}
    share = flagged.get("batch", 1.0)
    if policy == "hold-anomalous" and share <= HOLD_FLAGGED_SHARE:
        return None
    why = ("" if policy == "hold" else
           f" and flagged {share:.1%} of the new images as anomalous (more than "
           f"{HOLD_FLAGGED_SHARE:.0%})")
    where = f" (report: {Path(gate['dir']) / 'drift.md'})" if gate.get("dir") else ""
    return (f"promotion held because the drift gate tripped on the new data{why}{where}: "
            f"{gate['line']}. To promote it after review, run again with "
            "--drift-policy record")


# A decision's registry event, and how a sentence names it
VERDICTS = {"promoted": "promoted to champion", "held": "held for review",
            "kept out": "not promoted"}


def decision_event(decision: dict[str, Any]) -> str:
    """``promoted``, ``held`` or ``kept out``: the registry event of a ``promote_model`` result."""
    return ("promoted" if decision["promoted"] else
            "held" if decision.get("held") else "kept out")


def champion_dir(models_dir: Path, dataset: str) -> Path:
    return location("champion", models_dir, dataset=dataset)


def model_files(model_dir: Path) -> dict[str, str]:
    """SHA-256 of each model file in ``model_dir``."""
    return {name: sha256_file(Path(model_dir) / name) for name in MODEL_FILES}


def champion_files(model_dir: Path) -> dict[str, str]:
    """SHA-256 of what a champion carries: the model files and, when present, its calibration."""
    calibration = Path(model_dir) / CALIBRATION_FILE
    return model_files(model_dir) | (
        {CALIBRATION_FILE: sha256_file(calibration)} if calibration.is_file() else {})


def model_sha256(files: dict[str, str]) -> str:
    """One hash for a model: of its files' hashes."""
    return sha256_json(files)


def holds_model(directory: Path, sha: str) -> bool:
    """True when ``directory`` holds every model file and together they hash to ``sha``."""
    directory = Path(directory)
    return (all((directory / name).is_file() for name in MODEL_FILES)
            and model_sha256(model_files(directory)) == sha)


def decide(challenger_bce: float, champion_bce: float | None,
           tolerance: float) -> tuple[bool, str]:
    """Return (promote, reason)."""
    if champion_bce is None:
        return True, "no champion yet"
    limit = champion_bce * (1 + tolerance)
    verdict = "<=" if challenger_bce <= limit else ">"
    reason = (f"challenger test BCE {challenger_bce:.5f} {verdict} champion {champion_bce:.5f} "
              f"x (1 + {tolerance:g}) = {limit:.5f}")
    return challenger_bce <= limit, reason


def check_layout(models_dir: Path) -> None:
    """Refuse the old single-champion layout, which did not record the champion's dataset."""
    legacy = location("legacy_champion", models_dir)
    if (legacy / CHAMPION_INFO).is_file():
        raise RegistryError(
            f"{legacy} is a champion in the old single-champion layout, which did not "
            f"record its dataset: move it to {champion_dir(models_dir, '<dataset>')} "
            "(e.g. mnist) or delete it")


def registry_url(models_dir: Path) -> str:
    """The registry's database: the configured one, or ``registry.db`` under ``models_dir``.

    A Parquet registry of the version before the database is imported into it first, once.
    """
    url = db.default_url(location("registry", models_dir))
    legacy = location("legacy_registry", models_dir)
    if legacy.is_file():
        _import_parquet(url, legacy)
    return url


def _import_parquet(url: str, legacy: Path) -> None:
    """Copy a Parquet registry's rows into the database in one transaction, once (keyed by
    the file's hash), and set each dataset's pointer to its last champion event; then the
    file is renamed ``*.imported``."""
    table = read_table(legacy, RegistryError, "every decision is in it: restore it from a "
                       "backup, or move it aside to start a new history")
    records = [RegistryRow.from_record(r) for r in table.to_dict("records")]

    idents: list[int] = []

    def insert(conn: sa.Connection) -> None:
        idents[:] = [_insert(conn, row) for row in records]

    if db.import_once(url, legacy, "the registry", len(records), insert):
        for row, ident in zip(records, idents):
            write_record(legacy.parent, row, ident)


# The events that move a dataset's champion pointer: to their own row (True), or to none
POINTER_EVENTS = {"promoted": True, "reinstated": True, "lost": False}


def _insert(conn: sa.Connection, row: RegistryRow) -> int:
    """Insert a row; a champion event (``POINTER_EVENTS``) moves the dataset's pointer
    unconditionally (imports, repairs, rebuilds; decisions use ``_commit``). Returns the
    row's id."""
    ident = conn.execute(db.decisions.insert().values(**row.values())).inserted_primary_key[0]
    if row.event in POINTER_EVENTS:
        pointer = ident if POINTER_EVENTS[row.event] else None
        updated = conn.execute(db.champions.update().where(
            db.champions.c.dataset == row.dataset).values(
                decision_id=pointer, version=db.champions.c.version + 1)).rowcount
        if not updated:
            conn.execute(db.champions.insert().values(dataset=row.dataset, decision_id=pointer,
                                                      version=1))
    return ident


def write_record(models_dir: Path, row: RegistryRow, ident: int) -> Path:
    """Write a committed row beside the dataset's models (``decision_record``), so that
    ``python -m flows.state --rebuild`` can rebuild the registry from the storage alone."""
    name = f"{(row.time or 'undated').replace(':', '').replace('-', '')}-{ident:08d}"
    path = location("decision_record", models_dir, dataset=row.dataset, stamp=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, row.values() | {"id": ident})
    return path


def read_registry(models_dir: Path) -> pd.DataFrame:
    """Every registry row so far, in commit order (empty before the first decision)."""
    with db.reading(registry_url(models_dir)) as conn:
        found = db.rows(conn, sa.select(db.decisions).order_by(db.decisions.c.id))
    return pd.DataFrame(found, columns=[f.name for f in fields(RegistryRow)] if not found
                        else None)


def _pointer(url: str, dataset: str) -> tuple[RegistryRow | None, int | None]:
    """The row of ``dataset``'s champion (None: none) and the pointer's version (None: no
    pointer row yet)."""
    with db.reading(url) as conn:
        pointer = conn.execute(sa.select(db.champions).where(
            db.champions.c.dataset == dataset)).mappings().first()
        if pointer is None:
            return None, None
        if pointer["decision_id"] is None:
            return None, pointer["version"]
        row = conn.execute(sa.select(db.decisions).where(
            db.decisions.c.id == pointer["decision_id"])).mappings().first()
    return RegistryRow.from_record(dict(row)), pointer["version"]


def registered_champion(models_dir: Path, dataset: str) -> RegistryRow | None:
    """The registry row of the model that should be ``dataset``'s champion now, if any."""
    return _pointer(registry_url(models_dir), dataset)[0]


def read_champion(directory: Path) -> dict[str, Any] | None:
    info = Path(directory) / CHAMPION_INFO
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):
        return None


def champion_problems(models_dir: Path, dataset: str) -> list[str]:
    """What is wrong with ``dataset``'s champion as it is now; empty when it is intact."""
    directory = champion_dir(models_dir, dataset)
    expected = registered_champion(models_dir, dataset)
    if expected is None:
        return [f"{directory} was not installed by the registry"] if directory.exists() else []
    if not directory.is_dir():
        if db.configured_url() and _stored_model(models_dir, expected) is not None:
            return []  # a shared database's champion, not copied to this machine yet: intact
        return [f"{directory} is missing"]
    info = read_champion(directory)
    if info is None or "files" not in info:
        return [f"{directory / CHAMPION_INFO} is missing or unreadable"]
    damaged = [name for name, sha in info["files"].items()
               if not (directory / name).is_file() or sha256_file(directory / name) != sha]
    if damaged:
        return [f"{directory}: {', '.join(damaged)} do not match their recorded SHA-256"]
    if info.get("model_sha256") != expected.model_sha256:
        return [f"{directory} holds model {str(info.get('model_sha256'))[:12]}, not "
                f"{expected.model_sha256[:12]} that the registry names (replaced by hand?)"]
    return []


def append_registry(models_dir: Path, row: RegistryRow) -> RegistryRow:
    """Record one row (a repair, or an imported or test row); return it with its id."""
    with db.writing(registry_url(models_dir)) as conn:
        ident = _insert(conn, row)
    write_record(models_dir, row, ident)
    return RegistryRow(**{**asdict(row), "id": ident})


def restore_rows(models_dir: Path, rows: list[RegistryRow]) -> None:
    """Insert rows read back from their records, in commit order, in one transaction: each
    moves its dataset's pointer as it did (``flows.state --rebuild``). Their records exist."""
    with db.writing(registry_url(models_dir)) as conn:
        for row in rows:
            _insert(conn, row)


def install_champion(model_dir: Path, target: Path, info: dict[str, Any]) -> None:
    """Copy a model's files to ``target`` with ``champion.json``, as one atomic directory swap."""
    with atomic_dir(target) as tmp:
        for name in champion_files(model_dir):
            shutil.copy2(Path(model_dir) / name, tmp / name)
        write_json_atomic(tmp / CHAMPION_INFO, info)


def store_dir(models_dir: Path, dataset: str, sha: str) -> Path:
    """Where every promoted model of ``dataset`` is kept, by its ``model_sha256``."""
    return location("model_store", models_dir, dataset=dataset, sha=sha[:24])


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _host() -> str:
    return socket.gethostname()


def _stored_model(models_dir: Path, row: RegistryRow | dict[str, Any]) -> Path | None:
    """Where a registered model is intact: the store (by hash), or else the run's own folder."""
    row = row if isinstance(row, RegistryRow) else RegistryRow.from_record(row)
    for source in (store_dir(models_dir, row.dataset, str(row.model_sha256)),
                   Path(str(row.model_path))):
        for name in (*MODEL_FILES, CALIBRATION_FILE, CHAMPION_INFO):
            ensure(source / name)  # a model another machine stored since this one pulled
        if holds_model(source, row.model_sha256):
            return source
    return None


def _install_registered(models_dir: Path, expected: RegistryRow) -> Path | None:
    """Install the registered champion's model in ``champion/`` from where it is intact;
    return where it came from, or None where it is nowhere."""
    source = _stored_model(models_dir, expected)
    if source is not None:
        info = {"run_id": expected.run_id, "dataset": expected.dataset,
                "test_bce": expected.test_bce, "model_sha256": expected.model_sha256,
                "model_path": expected.model_path}
        stored = read_champion(source) or {}  # the store's copy carries the run's columns
        install_champion(source, champion_dir(models_dir, expected.dataset),
                         stored | info | {"files": champion_files(source), "promoted_at": _now()})
    return source


def repair_champion(models_dir: Path, dataset: str) -> str | None:
    """Make ``champion/`` the model the registry names again; return what was done, if anything.

    Call with the registry lock held.
    """
    problems = champion_problems(models_dir, dataset)
    directory = champion_dir(models_dir, dataset)
    if not problems:
        expected = registered_champion(models_dir, dataset)
        if expected is not None and not directory.exists():
            _install_registered(models_dir, expected)  # a shared database's: this machine's copy
        return None
    expected = registered_champion(models_dir, dataset)
    if directory.exists():  # keep whatever stood there: it may be someone's model
        stamp = _now().replace(":", "")
        directory.rename(location("displaced", models_dir, dataset=dataset, stamp=stamp))
    if expected is None:
        return f"Champion set aside: {problems[0]}; no registered champion to reinstate."
    source = _install_registered(models_dir, expected)
    if source is not None:
        reason = f"{problems[0]}; reinstated run {expected.run_id} from {source}"
        append_registry(models_dir, expected.repair("reinstated", reason, promoted=True))
        return f"Champion reinstated: {reason}."
    reason = f"{problems[0]}; its stored model is gone too, so there is no champion"
    append_registry(models_dir, expected.repair("lost", reason, promoted=False))
    return f"Champion lost: {reason}."


def promote_model(challenger: dict[str, Any], models_dir: Path, dataset: str, tolerance: float,
                  score_champion: Callable[[Path], float], run: RunInfo,
                  hold: str | None = None) -> Decision:
    """Check the champion, decide, record the decision and install the challenger if it wins.

    ``challenger`` holds ``model_dir`` and ``test_bce`` (and ``test_mse``);
    ``score_champion`` re-scores a champion directory on the challenger's test
    split; ``run`` is what the registry records of the run that trained it (run id,
    training, hashes, code version). ``hold``: why a challenger that wins is not installed.

    The decision row and the champion pointer commit together, only if the pointer is
    still the one the decision was made against (``_commit``); otherwise another run
    promoted meanwhile, its model is installed here and the decision is made again.
    """
    models_dir = Path(models_dir)
    check_layout(models_dir)
    url = registry_url(models_dir)
    directory = champion_dir(models_dir, dataset)
    model_dir = Path(challenger["model_dir"])
    files = champion_files(model_dir)
    sha = model_sha256(model_files(model_dir))
    # one decision at a time on this machine (its champion/ folder); across machines, _commit
    with locked(location("registry_lock", models_dir)):
        repaired = repair_champion(models_dir, dataset)
        while True:
            expected, version = _pointer(url, dataset)
            if expected is not None and (read_champion(directory) or {}).get(
                    "model_sha256") != expected.model_sha256:
                _install_registered(models_dir, expected)  # promoted meanwhile elsewhere
            champion_bce = (score_champion(directory)
                            if expected is not None and read_champion(directory) else None)
            promoted, reason = decide(challenger["test_bce"], champion_bce, tolerance)
            held = promoted and hold is not None
            if held:
                promoted, reason = False, f"{hold}; otherwise it would be promoted: {reason}"
            now = _now()
            row = RegistryRow(dataset=dataset, time=now, reason=reason, promoted=promoted,
                              event=decision_event({"promoted": promoted, "held": held}),
                              test_bce=challenger["test_bce"],
                              test_mse=challenger.get("test_mse"),
                              champion_test_bce=champion_bce, model_path=str(model_dir),
                              model_sha256=sha, host=_host(),
                              champion_model_sha256=expected.model_sha256 if expected else None,
                              **run.columns())
            info = {**run.columns(), "dataset": dataset, "test_bce": challenger["test_bce"],
                    "promoted_at": now, "model_path": str(model_dir), "model_sha256": sha,
                    "files": files}
            if promoted:  # by hash, before the pointer names it: other machines read it there
                store = store_dir(models_dir, dataset, sha)
                if not holds_model(store, sha):
                    install_champion(model_dir, store, info)
            try:
                write_record(models_dir, row, _commit(url, row, version))
                break
            except db.Conflict:  # decided meanwhile elsewhere: decide again against its champion
                continue
        if promoted:
            install_champion(model_dir, directory, info)
    return Decision(promoted=promoted, held=held, reason=reason, champion_dir=str(directory),
                    champion_test_bce=champion_bce, challenger_test_bce=challenger["test_bce"],
                    repaired=repaired)


def _commit(url: str, row: RegistryRow, version: int | None) -> int:
    """Insert a decision and move the pointer (to it if promoted) in one transaction, only if
    the pointer's version is still ``version`` (None: no pointer yet); else ``db.Conflict``."""
    with db.writing(url) as conn:
        ident = conn.execute(db.decisions.insert().values(**row.values())).inserted_primary_key[0]
        if version is None:  # the primary key refuses a second first pointer: Conflict
            conn.execute(db.champions.insert().values(
                dataset=row.dataset, decision_id=ident if row.promoted else None, version=1))
            return ident
        moved = conn.execute(db.champions.update().where(
            (db.champions.c.dataset == row.dataset) & (db.champions.c.version == version)
        ).values(version=version + 1, **({"decision_id": ident} if row.promoted else {})))
        if moved.rowcount != 1:
            raise db.Conflict(f"the {row.dataset} champion changed since version {version}")
    return ident


def scoring_model_dir(models_dir: Path, dataset: str, model: str = "champion") -> Path:
    """The folder of the model to score with: the dataset's champion, or a registered run's.

    Raises ``RegistryError`` saying what to do when there is none, or it is not intact.
    """
    models_dir = Path(models_dir)
    check_layout(models_dir)
    if model == "champion":
        expected = registered_champion(models_dir, dataset)
        if expected is None:
            raise RegistryError(
                f"no champion for dataset {dataset} yet: train one with "
                f"`python -m flows.autoencoder --dataset {dataset}` (make run)")
        problems = champion_problems(models_dir, dataset)
        if not problems and not champion_dir(models_dir, dataset).exists():
            return _stored_model(models_dir, expected)  # no copy on this machine: the store's
        if problems:
            raise RegistryError(f"the {dataset} champion is not intact ({problems[0]}): "
                                "the next training run reinstates it (make run)")
        return champion_dir(models_dir, dataset)
    table = read_registry(models_dir)
    rows = (table[(table["run_id"] == model) & (table["dataset"] == dataset)]
            if {"run_id", "dataset"} <= set(table) else table)
    for row in rows.iloc[::-1].to_dict("records"):
        source = _stored_model(models_dir, row)
        if source is not None:
            return source
    known = list(dict.fromkeys(table["run_id"].iloc[::-1]))[:5] if "run_id" in table else []
    raise RegistryError(f"no stored model with run id {model!r} for dataset {dataset} in "
                        f"the registry ({db.masked(registry_url(models_dir))}); use 'champion' "
                        "or a run id from it"
                        + (f" (latest: {', '.join(map(str, known))})" if known else ""))
