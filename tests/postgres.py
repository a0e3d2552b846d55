"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temporary folder owned by
the ``postgres`` user, ``pg_ctl`` on a free loopback port, removed when stopped.

Debian's ``postgresql`` package provides the binaries (``.ci/run`` installs it);
``initdb`` refuses to run as root, so as root the cluster runs as ``postgres``.
Where it cannot start, ``PgCluster.start`` raises ``Unavailable`` with the reason
(the fixture skips with it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.s3 import free_port

PASSWORD = "pg-secret-Zq81"  # the owner's: searched for in logs by the tests


class Unavailable(Exception):
    pass


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PgCluster:
    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mnist-ae-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres" if os.geteuid() == 0 else None
        self.started = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = list(args)
        if self.user:
            command = ["su", self.user, "-s", "/bin/sh", "-c", " ".join(
                f"'{a}'" for a in command)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and proc.returncode:
            raise Unavailable(f"{args[0]} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc

    def start(self) -> PgCluster:
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise Unavailable("PostgreSQL's initdb and pg_ctl are not installed "
                              "(Debian package postgresql)")
        if self.user:
            try:
                info = pwd.getpwnam(self.user)
            except KeyError:
                raise Unavailable("no postgres user to run the cluster as") from None
            os.chown(self.dir, info.pw_uid, info.pw_gid)
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD)
        if self.user:
            os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
        self._run(initdb, "-D", str(self.data), "-A", "scram-sha-256", "-U", "owner",
                  f"--pwfile={pwfile}")
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")
        self.started = True
        return self

    def url(self, database: str = "postgres", user: str = "owner",
            password: str = PASSWORD, host: str = "127.0.0.1") -> str:
        return f"postgresql://{user}:{password}@{host}:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the owner (autocommit: CREATE DATABASE needs it)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                      check=False)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
