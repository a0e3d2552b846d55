"""A real S3 endpoint on loopback for the tests: moto's server, run as s3fs's own tests run it.

``S3Server`` starts ``moto_server`` in a subprocess on a free port and stops it; its
``env`` holds the standard variables (``AWS_ENDPOINT_URL`` and a key pair) that boto3,
s3fs and this project read. Nothing is patched: every call crosses a socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SECRET = "s3-test-secret-never-written-anywhere"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """``moto_server`` on 127.0.0.1. ``auth``: moto's IAM checks on (by default its server
    accepts any key) after ``free_requests`` unchecked ones, for the set-up of users."""

    def __init__(self, log: Path, auth: bool = False, free_requests: int = 0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or \
            shutil.which("moto_server")
        if binary is None:
            raise RuntimeError("moto_server not found: pip install 'moto[server]'")
        env = os.environ | ({"INITIAL_NO_AUTH_ACTION_COUNT": str(free_requests)} if auth else {})
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                break
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"moto_server exited: see {log}") from None
                time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"moto_server did not answer in 30 s: see {log}")
        self.env = {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "test-key",
                    "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self, **keys):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=keys.get("key", "test-key"),
                            aws_secret_access_key=keys.get("secret", SECRET))

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                        Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Cable:
    """A TCP relay on loopback in front of a server, that a test can unplug: while
    ``down``, new connections are accepted and closed at once, and open ones are cut
    (what a flaky network does to a client)."""

    def __init__(self, port: int):
        import threading

        self.target, self.down, self._open = port, False, []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def unplug(self) -> None:
        self.down = True
        for s in self._open:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._open.clear()

    def plug(self) -> None:
        self.down = False

    def close(self) -> None:
        self.unplug()
        self._listener.close()
