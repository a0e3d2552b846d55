"""Start and stop a local Prefect server (SQLite, loopback only) and a process worker.

    python -m ops.local_prefect server [--port 4200]   # start in the background, wait until healthy
    python -m ops.local_prefect worker [--pool NAME]   # start a worker in the background
    python -m ops.local_prefect stop                   # stop both, wait until they are gone
    python -m ops.local_prefect status

State (PREFECT_HOME with the server's database, pid files, logs) lives in
``.cache/prefect-local/``. The processes run in their own sessions, so they
outlive the command that started them; ``stop`` ends them with SIGINT (the
worker ignores SIGTERM for a long while) and kills what is left after a grace
period. The test suite uses the same functions with its own directories.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
STATE = PROJECT / ".cache" / "prefect-local"
POOL = "mnist-autoencoder"


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect_executable() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(condition, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll ``condition`` until true; on timeout raise with ``what`` and the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    detail = f"; log:\n{tail}" if tail else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s{detail}")


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a long-running process in its own session, output to ``log``.

    SIGINT is restored to its default in the child: started from a background job
    (``nohup``, ``&`` in a script) it would inherit SIGINT as ignored, and
    ``stop_process``'s SIGINT would wait out its grace period before SIGKILL.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=PROJECT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def server_database_url(url: str) -> str:
    """Prefect's server takes PostgreSQL through asyncpg: ``postgresql://`` is made
    ``postgresql+asyncpg://`` (other forms pass as they are)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain):]
    return url


def start_server(port: int, home: Path, log: Path, timeout: float = 180,
                 database: str | None = None) -> subprocess.Popen:
    """A Prefect server on 127.0.0.1:``port``: on SQLite in ``home``, or on ``database`` (a
    PostgreSQL URL: a team's server, where several workers write at once)."""
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                        "PREFECT_API_URL": api_url(port)} | (
        {"PREFECT_API_DATABASE_CONNECTION_URL": server_database_url(database)} if database
        else {})
    proc = spawn([prefect_executable(), "server", "start", "--host", "127.0.0.1",
                  "--port", str(port)], env, log)
    try:
        wait_until(lambda: is_healthy(api_url(port)) or proc.poll() is not None, timeout,
                   f"Prefect server on port {port}", log)
        if proc.poll() is not None:
            raise RuntimeError(f"Prefect server exited with {proc.returncode}; see {log}")
    except BaseException:
        stop_process(proc.pid)
        raise
    return proc


def start_worker(port: int, pool: str, log: Path, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.Popen:
    env = (env or dict(os.environ)) | {"PREFECT_API_URL": api_url(port),
                                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = spawn([prefect_executable(), "worker", "start", "--pool", pool], env, log)
    # The worker logs this line once it has registered with the pool and polls it.
    wait_until(lambda: "started!" in log.read_text() or proc.poll() is not None, timeout,
               f"Prefect worker for pool {pool!r}", log)
    if proc.poll() is not None:
        raise RuntimeError(f"Prefect worker exited with {proc.returncode}; see {log}")
    return proc


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # reap our own child if it has exited
            return False
    return True


def stop_process(pid: int, grace: float = 30) -> None:
    """SIGINT the process group of ``pid``; SIGKILL it if it is still there after ``grace``."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and is_alive(pid):
            time.sleep(0.2)
        if not is_alive(pid):
            return


def group_is_empty(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("server", "worker", "stop", "status"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PREFECT_PORT", 4200)))
    parser.add_argument("--pool", default=POOL)
    parser.add_argument("--database", default=os.environ.get("PREFECT_DATABASE") or None,
                        help="the server's database: a PostgreSQL URL (default: SQLite in "
                             ".prefect-local); SQLite locks under concurrent writers")
    args = parser.parse_args(argv)
    url = api_url(args.port)
    pids = {name: STATE / f"{name}.pid" for name in ("server", "worker")}

    if args.command == "server":
        if is_healthy(url):
            print(f"Prefect server already running at {url}")
        else:
            proc = start_server(args.port, STATE / "home", STATE / "server.log",
                                database=args.database)
            pids["server"].write_text(str(proc.pid))
            where = "PostgreSQL" if args.database else "SQLite"
            print(f"Prefect server started on {where} (pid {proc.pid}), "
                  f"log {STATE / 'server.log'}")
        print(f"UI: http://127.0.0.1:{args.port}    API: export PREFECT_API_URL={url}")
    elif args.command == "worker":
        if not is_healthy(url):
            sys.exit(f"No Prefect server at {url}: run `make server` first.")
        proc = start_worker(args.port, args.pool, STATE / "worker.log")
        pids["worker"].write_text(str(proc.pid))
        print(f"Worker for pool {args.pool!r} started (pid {proc.pid}), "
              f"log {STATE / 'worker.log'}")
    elif args.command == "stop":
        for name in ("worker", "server"):
            if pids[name].exists():
                pid = int(pids[name].read_text())
                stop_process(pid)
                pids[name].unlink()
                print(f"Stopped {name} (pid {pid})")
    else:
        print(f"server at {url}: {'up' if is_healthy(url) else 'down'}")
        for name, path in pids.items():
            alive = path.exists() and is_alive(int(path.read_text()))
            print(f"{name}: {'running, pid ' + path.read_text() if alive else 'not running'}")


if __name__ == "__main__":
    main()
