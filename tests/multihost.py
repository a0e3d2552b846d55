"""Hosts for the multi-host test (tests/test_multihost.py): three machines made of Linux
namespaces, or, where those are not available, three folders that talk over loopback.

With namespaces (root, ``ip netns``, ``unshare``, ``nsenter``), each host is

- a network namespace with one veth into a bridge (itself in a namespace of its own, the
  "switch"), and an address ``10.213.37.<n>``; the test process reaches the bridge
  through one more veth (``.254``), so it can talk to the servers as a client would;
- a mount and UTS namespace, held open by one ``sleep`` process: the hostname is the
  host's name, the repository is mounted read-only over itself, the other hosts' disks
  (``<base>/disks/<other>``) and the test's own folders are covered by empty read-only
  tmpfs mounts, and ``<base>/scratch`` (``MNIST_AE_SCRATCH``, the same string on every
  host) is the host's own ``disks/<host>/scratch`` bound there;

and every process of a host enters those namespaces with ``nsenter``. Without them, a
host is its folder, its HOME, PREFECT_HOME, TMPDIR and scratch (a different path per
host), and every server listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import PROJECT
from tests.postgres import PgCluster, Unavailable, _bin

SUBNET = "10.213.37"
CONTROLLER = f"{SUBNET}.254"
NAMES = ("a", "b", "c")


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc


def namespaces_unavailable() -> str | None:
    """Why the namespace hosts cannot be built here (None: they can)."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "unshare", "nsenter", "mount"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    name = f"mhprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode:
        return f"ip netns add failed: {made.stderr.strip()[:200]}"
    try:
        probe = subprocess.run(
            ["ip", "netns", "exec", name, "unshare", "--mount", "--uts", "--propagation",
             "private", "sh", "-c", "hostname probe && mount -t tmpfs tmpfs /mnt"],
            capture_output=True, text=True, timeout=30)
        if probe.returncode:
            return f"unshare --mount --uts failed: {probe.stderr.strip()[:200]}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


class Host:
    """One machine: its name, address, disk and environment; ``spawn`` runs a process on it."""

    def __init__(self, cluster: Cluster, name: str, index: int):
        self.cluster, self.name, self.index = cluster, name, index
        self.hostname = f"host-{name}"
        self.disk = cluster.base / "disks" / name
        for sub in ("home", "prefect", "results", "tmp", "scratch", "work"):
            (self.disk / sub).mkdir(parents=True, exist_ok=True)
        self.ip = f"{SUBNET}.{index}" if cluster.namespaces else "127.0.0.1"
        self.netns = f"{cluster.prefix}-{name}"
        # what MNIST_AE_SCRATCH says on this host: the same string everywhere with namespaces
        self.scratch = cluster.base / "scratch" if cluster.namespaces else self.disk / "scratch"
        self.holder: subprocess.Popen | None = None
        self.processes: list[tuple[str, subprocess.Popen, Path]] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TZ")
                if key in os.environ}
        return base | {
            "HOME": str(self.disk / "home"), "TMPDIR": str(self.disk / "tmp"),
            "PREFECT_HOME": str(self.disk / "prefect"),
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.disk / "results"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "INFO",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(PROJECT),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "MNIST_AE_SCRATCH": str(self.scratch),
            "MNIST_AE_CACHE_DIR": str(self.scratch / "prefect-cache"),
        } | self.cluster.shared_env | (extra or {})

    # ---- the namespaces ---------------------------------------------------------------------

    def hold(self) -> None:
        """Make the host's mount and UTS namespaces, held open by a ``sleep``."""
        c = self.cluster
        hide = [c.base / "disks" / other for other in NAMES if other != self.name]
        hide += [c.base / "ctl", c.base / "logs", *c.hidden]
        script = [
            "set -e",
            f"hostname {self.hostname}",
            f"mount --bind {c.base / 'config' / 'hosts'} /etc/hosts",
            f"mount --bind {PROJECT} {PROJECT}",
            f"mount -o remount,bind,ro {PROJECT}",
            f"mount --bind {c.base / 'config'} {c.base / 'config'}",
            f"mount -o remount,bind,ro {c.base / 'config'}",
            *[f"mount -t tmpfs -o ro,size=16k,mode=0555 hidden {path}" for path in hide],
            f"mount --bind {self.disk / 'scratch'} {self.scratch}",
            "echo ready",
            "exec sleep 100000",
        ]
        log = c.base / "logs" / f"{self.name}-holder.log"
        handle = open(log, "wb")  # noqa: SIM115 - the child keeps it
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts", "--propagation",
             "private", "sh", "-c", "\n".join(script)],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        handle.close()
        deadline = time.monotonic() + 30
        while "ready" not in log.read_text():
            if self.holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {self.hostname} did not come up: {log.read_text()}")
            time.sleep(0.1)

    def command(self, args: list[str], mount: bool = True) -> list[str]:
        """``args`` as run on this host (entering its namespaces)."""
        if not self.cluster.namespaces:
            return args
        return ["nsenter", "-t", str(self.holder.pid), "-n", "-u",
                *(["-m"] if mount else []), "--", *args]

    def run(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args), env=env or self.env(), cwd=cwd or PROJECT,
                              capture_output=True, text=True, timeout=timeout)

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None,
              private_scratch: bool = False) -> subprocess.Popen:
        """A long-running process on this host, its output in ``logs/<host>-<name>.log``.

        ``private_scratch``: in a mount namespace of its own inside the host's, with an
        empty tmpfs over the scratch folder and over the host's disk (a Dask worker that
        sees nothing but the store); without namespaces, a scratch folder of its own.
        """
        log = self.cluster.base / "logs" / f"{self.name}-{name}.log"
        env = env or self.env()
        if private_scratch and self.cluster.namespaces:
            own = [f"mount -t tmpfs -o size=2g {name} {self.scratch}",
                   f"mount -t tmpfs -o size=64m {name} {self.disk}",
                   *[f"mkdir -p {self.disk / sub}" for sub in ("home", "prefect", "results",
                                                              "tmp")],
                   f'cd {self.disk / "home"}', 'exec "$@"']
            args = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    " && ".join(own), name, *args]
        elif private_scratch:
            own = self.disk / name
            env = env | {"MNIST_AE_SCRATCH": str(own / "scratch"),
                         "MNIST_AE_CACHE_DIR": str(own / "scratch" / "prefect-cache")}
        handle = open(log, "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(self.command(args), env=env, stdout=handle,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=self.disk / "work", start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        handle.close()
        self.processes.append((name, proc, log))
        return proc

    def sees(self, path: Path) -> list[str]:
        """What this host sees at ``path`` (a folder): the names in it, [] if it has none."""
        listed = self.run(["sh", "-c", f"ls -A {path} 2>/dev/null || true"], timeout=30)
        return listed.stdout.split()


class Cluster:
    """The three hosts, their network, and the clean-up of everything started on them."""

    def __init__(self, base: Path, namespaces: bool):
        self.base, self.namespaces = base, namespaces
        self.prefix = f"mh{os.getpid() % 100000}"
        self.shared_env: dict[str, str] = {}
        self.hidden: list[Path] = []  # more folders no host may see (the test session's)
        for sub in ("config", "ctl", "logs", "scratch"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.hosts = {name: Host(self, name, i + 1) for i, name in enumerate(NAMES)}
        self._made: list[str] = []
        self._links: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def up(self) -> None:
        hosts = "".join(f"{h.ip} {h.hostname}\n" for h in self.hosts.values())
        (self.base / "config" / "hosts").write_text(
            f"127.0.0.1 localhost\n::1 localhost\n{hosts}")
        if not self.namespaces:
            return
        switch = f"{self.prefix}-sw"
        for netns in (switch, *(h.netns for h in self.hosts.values())):
            _sh("ip", "netns", "add", netns)
            self._made.append(netns)
            _sh("ip", "-n", netns, "link", "set", "lo", "up")
        _sh("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            inner, outer = f"{self.prefix}{host.name}0", f"{self.prefix}{host.name}1"
            _sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            _sh("ip", "link", "set", inner, "netns", host.netns)
            _sh("ip", "link", "set", outer, "netns", switch)
            _sh("ip", "-n", host.netns, "link", "set", inner, "name", "eth0")
            _sh("ip", "-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            _sh("ip", "-n", host.netns, "link", "set", "eth0", "up")
            _sh("ip", "-n", switch, "link", "set", outer, "master", "br0")
            _sh("ip", "-n", switch, "link", "set", outer, "up")
        ctl, peer = f"{self.prefix}ctl0", f"{self.prefix}ctl1"
        _sh("ip", "link", "add", ctl, "type", "veth", "peer", "name", peer)
        self._links.append(ctl)
        _sh("ip", "link", "set", peer, "netns", switch)
        _sh("ip", "-n", switch, "link", "set", peer, "master", "br0")
        _sh("ip", "-n", switch, "link", "set", peer, "up")
        _sh("ip", "addr", "add", f"{CONTROLLER}/24", "dev", ctl)
        _sh("ip", "link", "set", ctl, "up")
        for host in self.hosts.values():
            host.hold()

    def tails(self, lines: int = 25) -> str:
        """The last lines of every process's log: what a failure message shows."""
        out = []
        for log in sorted((self.base / "logs").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"---- {log.name} ----\n" + "\n".join(text))
        return "\n".join(out)

    def down(self) -> None:
        """Stop everything started on the hosts, then remove the network and namespaces."""
        from ops.local_prefect import stop_process

        for host in reversed(list(self.hosts.values())):
            for _, proc, _ in reversed(host.processes):
                stop_process(proc.pid, grace=15)
        if self.namespaces:
            for netns in self._made:  # whatever is left in them (flow runs, postgres)
                for sig in ("INT", "KILL"):
                    pids = _sh("ip", "netns", "pids", netns, check=False).stdout.split()
                    if pids:
                        subprocess.run(["kill", f"-{sig}", *pids], capture_output=True)
                        time.sleep(2 if sig == "INT" else 0.5)
            for host in self.hosts.values():
                if host.holder is not None:
                    host.holder.kill()
                    host.holder.wait(10)
            for netns in self._made:
                _sh("ip", "netns", "del", netns, check=False)
            for link in self._links:
                _sh("ip", "link", "del", link, check=False)  # gone with its peer already


class HostPgCluster(PgCluster):
    """``tests.postgres.PgCluster`` on a host: its files on the host's disk, listening on
    the host's address (and taking passwords from the hosts' subnet)."""

    def __init__(self, host: Host):
        super().__init__()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.host = host
        self.dir = host.disk / "pg"
        self.dir.mkdir()
        self.data = self.dir / "data"
        if host.cluster.namespaces:
            self.port = 5432

    def start(self) -> HostPgCluster:
        if not self.host.cluster.namespaces:
            return super().start()
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise Unavailable("PostgreSQL's initdb and pg_ctl are not installed")
        import pwd

        info = pwd.getpwnam("postgres")
        os.chown(self.dir, info.pw_uid, info.pw_gid)
        pwfile = self.dir / "pw"
        from tests.postgres import PASSWORD

        pwfile.write_text(PASSWORD)
        os.chown(pwfile, info.pw_uid, -1)
        self._run(initdb, "-D", str(self.data), "-A", "scram-sha-256", "-U", "owner",
                  f"--pwfile={pwfile}")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 scram-sha-256\n")
        start = (f"{pg_ctl} -D {self.data} -l {self.dir / 'log'} -w -o "
                 f"'-p {self.port} -k {self.dir} -c listen_addresses=*' start")
        proc = self.host.run(["su", "postgres", "-s", "/bin/sh", "-c", start], env={
            "PATH": os.environ["PATH"]}, timeout=120, cwd=self.dir)
        if proc.returncode:
            raise RuntimeError(f"pg_ctl start on {self.host.hostname} failed: "
                               f"{proc.stdout[-500:]} {proc.stderr[-500:]}")
        self.started = True
        return self

    def url(self, database: str = "postgres", user: str = "owner", password: str | None = None,
            host: str | None = None) -> str:
        from tests.postgres import PASSWORD

        return super().url(database, user, password or PASSWORD, host or self.host.ip)

    def stop(self) -> None:
        if self.started and self.host.cluster.namespaces:
            self.host.run(["su", "postgres", "-s", "/bin/sh", "-c",
                           f"{_bin('pg_ctl')} -D {self.data} -m immediate -w stop"],
                          env={"PATH": os.environ["PATH"]}, timeout=60, cwd=self.dir)
            self.started = False
            return
        super().stop()
