"""The state database: the champion registry and the snapshot manifests, in SQL.

Where it is: ``MNIST_AE_DATABASE_URL`` when set (any SQLAlchemy URL; the plain
``postgresql://`` form is taken with psycopg 3), otherwise a SQLite file beside the
state it holds: ``<artifacts>/models/registry.db`` for the registry and
``<data>/snapshots/manifest.db`` for the manifests, with nothing to set up. Data or
artifacts on a store need the variable (``params.validate_paths``): a SQLite file per
machine would give each machine its own champion.

What it guarantees (``docs/database.md``):
- a promotion is one transaction, guarded by compare-and-swap on the dataset's
  ``champions`` row (its ``version``): of two decisions made against the same
  champion, one commits and the other is decided again against the new one;
- an ingest's batch row commits with the snapshot it makes, as the next ``seq`` of
  the dataset (primary key): of two ingests at once, one commits and the other
  compares its images with the batch that landed, then tries the next ``seq``;
- the schema is created on first use and versioned in ``schema_migrations``; a
  database whose schema is newer than the code is refused.

Migrations are a list of functions here rather than Alembic (which Prefect installs):
three tables and one step do not need Alembic's script folder, ``env.py`` and ini
file, and the refusal of a newer schema is the same check either way.

Every failure of the database a user can fix (unreachable, wrong credentials, read
only, newer schema) is a ``DatabaseError``: one line naming the database, with its
password hidden, and the fix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

from mnist_autoencoder.errors import StateError

DATABASE_ENV = "MNIST_AE_DATABASE_URL"


class DatabaseError(StateError):
    """The state database cannot be used; the message names it and the fix."""


class Conflict(StateError):
    """Another transaction changed what this one was decided against: decide again. The
    registry and ingest retry on it; one that escapes says to run again."""


metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Text, nullable=False))

# The registry: every decision, reinstatement and loss (``lifecycle.registry.RegistryRow``)
decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset", sa.String(200), nullable=False, index=True),
    sa.Column("run_id", sa.String(200), nullable=False),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("time", sa.String(40)),
    sa.Column("reason", sa.Text),
    sa.Column("promoted", sa.Boolean),
    sa.Column("model_path", sa.Text),
    sa.Column("model_sha256", sa.String(64)),
    *(sa.Column(name, sa.Float) for name in ("test_bce", "test_mse", "champion_test_bce")),
    *(sa.Column(name, sa.Text) for name in (
        "flow_run_name", "parameters", "data_sha256", "splits_sha256", "snapshot",
        "code_version", "init", "parent_model_sha256", "drift", "drift_policy",
        "champion_model_sha256", "host")))

# The champion pointer of each dataset: the decision that installed it (None: no champion)
champions = sa.Table(
    "champions", metadata,
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("decision_id", sa.Integer, sa.ForeignKey("decisions.id")),
    sa.Column("version", sa.Integer, nullable=False))

# The manifests: one row per accepted batch; snapshot k of a dataset is the base plus seq 1..k
batches = sa.Table(
    "batches", metadata,
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("snapshot_id", sa.String(200), nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_files", sa.Text, nullable=False),
    *(sa.Column(name, sa.BigInteger, nullable=False)
      for name in ("offered", "new", "duplicates")),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("payload_sha256", sa.String(64), nullable=False),
    sa.Column("host", sa.Text),
    sa.UniqueConstraint("dataset", "batch_id"))

# Parquet files imported once (the registry and manifests before the database)
imports = sa.Table(
    "imports", metadata,
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("time", sa.String(40), nullable=False))


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=[decisions, champions, batches, imports])


# (version, what it does, the step): applied in order, each in the transaction that records it
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "decisions, champions, batches, imports", _create_tables),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def configured_url() -> str | None:
    """``MNIST_AE_DATABASE_URL`` when set and not empty."""
    return os.environ.get(DATABASE_ENV) or None


def default_url(local_file: Path) -> str:
    """The database of a local root: the configured one, or a SQLite file at ``local_file``."""
    return configured_url() or f"sqlite:///{Path(local_file).resolve()}"


def driver_url(url: str) -> sa.URL:
    """``url`` as SQLAlchemy takes it: ``postgresql://`` (and ``postgres://``) with psycopg 3."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as error:
        raise DatabaseError(f"{DATABASE_ENV}={masked(url)} is not a database URL ({error}); "
                            "give one such as postgresql://user:password@host:5432/db "
                            "or sqlite:////path/to/state.db") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def masked(url: str | sa.URL) -> str:
    """``url`` with its password hidden: the only form that is ever printed or stored."""
    try:
        return make_url(url).render_as_string(hide_password=True) if isinstance(url, str) \
            else url.render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparseable: show nothing after the scheme
        return str(url).split("://")[0] + "://..."


_ENGINES: dict[str, Engine] = {}
_READY: set[str] = set()
_LOCK = threading.Lock()


def engine(url: str) -> Engine:
    """The engine of ``url``, made once per process, its schema checked and brought up to date."""
    with _LOCK:
        if url not in _ENGINES:
            _ENGINES[url] = _make_engine(url)
        made = _ENGINES[url]
    if url not in _READY:
        with guarded(url):
            _migrate(made, url)
        _READY.add(url)
    return made


def _make_engine(url: str) -> Engine:
    parsed = driver_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # no pool: a connection is a file open (microseconds), and none outlives its use
        made = sa.create_engine(parsed, poolclass=sa.pool.NullPool, connect_args={"timeout": 60})

        @sa.event.listens_for(made, "connect")
        def _no_implicit_begin(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # transactions begin below, not by pysqlite

        @sa.event.listens_for(made, "begin")
        def _begin(conn):
            # a writer takes the lock when it begins, so two writers queue instead of one
            # failing to upgrade its read lock halfway through
            immediate = conn.get_execution_options().get("writing")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return made
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, pool_pre_ping=True,
                                connect_args={"connect_timeout": 10})
    return sa.create_engine(parsed, pool_pre_ping=True)


def _migrate(made: Engine, url: str) -> None:
    with made.connect() as conn, conn.begin():
        current = _version(conn)
    if current > SCHEMA_VERSION:
        raise DatabaseError(
            f"the database {masked(url)} has schema version {current}, newer than this "
            f"code's {SCHEMA_VERSION}: run the newer version of the project that wrote it, "
            f"or point {DATABASE_ENV} at another database")
    if current == SCHEMA_VERSION:
        return
    with made.connect().execution_options(writing=True) as conn, conn.begin():
        if made.dialect.name == "postgresql":  # one migrating process at a time
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7340301)"))
        schema_migrations.create(conn, checkfirst=True)
        current = _version(conn)
        for version, description, step in MIGRATIONS:
            if version > current:
                step(conn)
                conn.execute(schema_migrations.insert().values(
                    version=version, description=description, applied_at=now()))


def _version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("schema_migrations"):
        return 0
    return conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar() or 0


def check(url: str, writing: bool = False) -> None:
    """Connect to ``url`` (schema checked, and made on first use); with ``writing``, also
    begin a write and roll it back, so that a read-only database is named before any work."""
    engine(url)
    if writing:
        with guarded(url), engine(url).connect().execution_options(writing=True) as conn, \
                conn.begin() as transaction:
            conn.execute(schema_migrations.update().where(
                schema_migrations.c.version < 0).values(description=""))
            transaction.rollback()


def _explain(url: str, error: BaseException) -> str | None:
    """One line for a failure the user can fix, or None (a bug: raised as it is)."""
    text = str(getattr(error, "orig", None) or error)
    first = " ".join(text.split())[:300]
    password = make_url(url).password if "://" in url else None
    if password:
        first = first.replace(str(password), "***")
    lowered = first.lower()
    where = masked(url)
    if "password authentication failed" in lowered or "role" in lowered and \
            "does not exist" in lowered or "no password supplied" in lowered:
        return (f"the database {where} refused the credentials ({first}): fix the user and "
                f"password in {DATABASE_ENV}")
    if "malformed" in lowered or "not a database" in lowered:
        return (f"the database {where} is damaged ({first}): restore it from a backup, or "
                "rebuild it from the storage with `python -m flows.rebuild` (docs/database.md)")
    if "disk is full" in lowered or "no space left" in lowered:
        return (f"the database {where} has no room left ({first}); nothing was changed: free "
                "some space and run again")
    if "read-only" in lowered or "readonly" in lowered or "read only" in lowered:
        return (f"the database {where} is read-only ({first}): point {DATABASE_ENV} at a "
                "writable database, or make this one writable")
    if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError)) and any(
            word in lowered for word in ("connect", "refused", "timeout", "timed out",
                                         "could not translate", "unable to open",
                                         "does not exist", "no route")):
        return (f"cannot reach the database {where} ({first}): start it, or fix "
                f"{DATABASE_ENV} (host, port, database name)")
    return None


@contextlib.contextmanager
def guarded(url: str) -> Iterator[None]:
    """Turn the database's failures a user can fix into one-line ``DatabaseError``s."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        line = _explain(url, error)
        if line is None:
            raise
        raise DatabaseError(line) from None


@contextlib.contextmanager
def reading(url: str) -> Iterator[Connection]:
    """A connection in a read transaction."""
    with guarded(url), engine(url).connect() as conn, conn.begin():
        yield conn


@contextlib.contextmanager
def writing(url: str) -> Iterator[Connection]:
    """A connection in a write transaction: committed when the block ends, rolled back if
    it raises. A unique key that another transaction took first raises ``Conflict``."""
    try:
        with guarded(url), engine(url).connect().execution_options(writing=True) as conn, \
                conn.begin():
            yield conn
    except sa.exc.IntegrityError as error:
        raise Conflict(str(error.orig).splitlines()[0]) from None


def plain(value: Any) -> Any:
    """A value as every driver takes it: NumPy scalars as Python's, NaN as NULL."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def import_once(url: str, legacy: Path, what: str, count: int,
                insert: Callable[[Connection], None]) -> bool:
    """Import a Parquet file of the version before the database (``insert`` writes its
    ``count`` rows) in one transaction, once: keyed by the file's hash, so another machine's
    copy of the same file is not imported again. Then the file is renamed ``*.imported``.
    Returns whether this call imported it."""
    from mnist_autoencoder.storage import sha256_file

    sha = sha256_file(legacy)
    with writing(url) as conn:
        done = conn.execute(sa.select(imports.c.sha256).where(imports.c.sha256 == sha)).first()
        if not done:
            insert(conn)
            conn.execute(imports.insert().values(path=str(legacy), sha256=sha, rows=count,
                                                 time=now()))
    legacy.rename(legacy.with_name(legacy.name + ".imported"))
    if not done:
        print(f"Imported {what} {legacy} ({count} rows) into {masked(url)}; the file is kept "
              f"as {legacy.name}.imported", flush=True)
    return not done


def rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    """The rows of ``query`` as plain dicts."""
    return [dict(row) for row in conn.execute(query).mappings()]


def dispose() -> None:
    """Close every engine (tests that stop a database server; a forked process)."""
    with _LOCK:
        for made in _ENGINES.values():
            made.dispose()
        _ENGINES.clear()
        _READY.clear()
