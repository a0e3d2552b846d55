import gzip
import http.server
import socket
import threading
import time
import urllib.error

import pytest

from mnist_autoencoder.data import download as dl
from mnist_autoencoder.data.catalog import DatasetSpec, declare
from tests import helpers


@pytest.fixture
def spec(tmp_path, monkeypatch):
    spec = helpers.write_dataset(tmp_path / "mirror", n_train=20, n_test=5)
    monkeypatch.setenv("MNIST_AE_CATALOG", str(tmp_path / "catalog.json"))
    declare("tiny", spec)
    return spec


def with_mirrors(spec, *mirrors):
    declare("tiny", DatasetSpec(spec.files, mirrors, spec.train_size, spec.test_size))


def test_downloads_from_local_directory_and_verifies(tmp_path, spec):
    logs = []
    result = dl.download_dataset("tiny", str(tmp_path / "mirror"), tmp_path / "raw",
                                 log=logs.append)
    assert sorted(result["files"]) == sorted(name for name, _ in spec.files.values())
    assert all("verified" in line for line in logs)
    # a second call finds every file present and valid and fetches nothing
    logs.clear()
    again = dl.download_dataset("tiny", f"file://{tmp_path / 'mirror'}", tmp_path / "raw",
                                log=logs.append)
    assert again == result and all("present and verified" in line for line in logs)


def test_recompressed_copy_passes_because_the_payload_is_checked(tmp_path, spec):
    mirror = tmp_path / "mirror"
    for name, _ in spec.files.values():
        payload = gzip.decompress((mirror / name).read_bytes())
        (mirror / name).write_bytes(gzip.compress(payload, compresslevel=1, mtime=12345))
    dl.download_dataset("tiny", str(mirror), tmp_path / "raw", log=lambda _: None)


def test_corrupted_source_fails_naming_file_and_source_and_writes_nothing(tmp_path, spec):
    mirror = tmp_path / "mirror"
    name = spec.files["train_images"][0]
    payload = bytearray(gzip.decompress((mirror / name).read_bytes()))
    payload[-1] ^= 0xFF
    (mirror / name).write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(dl.DownloadError) as excinfo:
        dl.download_dataset("tiny", str(mirror), tmp_path / "raw", log=lambda _: None)
    message = str(excinfo.value)
    assert name in message and str(mirror) in message and "does not match" in message
    raw = tmp_path / "raw"
    assert not (raw / name).exists()
    assert not raw.exists() or not [p for p in raw.iterdir() if p.name.endswith(".tmp")]


def test_invalid_existing_file_is_replaced(tmp_path, spec):
    raw = tmp_path / "raw"
    name = spec.files["test_labels"][0]
    raw.mkdir()
    (raw / name).write_bytes(b"garbage")
    dl.download_dataset("tiny", str(tmp_path / "mirror"), raw, log=lambda _: None)
    assert dl.is_valid_file(raw / name, spec.files["test_labels"][1])


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from ``root``; the first ``failures`` requests per path get HTTP 500."""

    root = None
    failures = 0
    seen: dict = {}

    def do_GET(self):  # noqa: N802
        count = self.seen[self.path] = self.seen.get(self.path, 0) + 1
        path = self.root / self.path.lstrip("/")
        if count <= self.failures:
            self.send_error(500)
        elif not path.exists():
            self.send_error(404)
        else:
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_mirror(tmp_path, spec):
    handler = type("Handler", (FlakyHandler,), {"root": tmp_path / "mirror", "failures": 1,
                                                "seen": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", handler
    server.shutdown()
    server.server_close()


def test_http_500_is_retried_with_backoff_then_succeeds(tmp_path, http_mirror):
    url, handler = http_mirror
    sleeps = []
    dl.download_dataset("tiny", url, tmp_path / "raw", log=lambda _: None, sleep=sleeps.append,
                        backoff=0.01)
    assert len(sleeps) == 4 and all(0 <= s <= 0.01 for s in sleeps)  # one retry per file
    assert all(count == 2 for count in handler.seen.values())


def test_404_is_not_retried(http_mirror):
    url, handler = http_mirror
    handler.failures = 0
    with pytest.raises(urllib.error.HTTPError):
        dl.fetch_with_retries(url + "missing.gz", sleep=lambda _: pytest.fail("retried a 404"))
    assert handler.seen == {"/missing.gz": 1}


# ---------------------------------------------------------------- injected faults
class FaultyHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``root`` with one fault chosen by ``mode``; ``good`` is a healthy mirror's URL."""

    root = None
    mode = "ok"
    good = ""
    hits: list = []

    def do_GET(self):  # noqa: N802
        self.hits.append(self.path)
        body = (self.root / self.path.lstrip("/")).read_bytes()
        if self.mode == "slow":
            time.sleep(1.5)
        if self.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", self.good + self.path.lstrip("/"))
            self.end_headers()
            return
        if self.mode == "wrong-bytes":
            body = gzip.compress(b"\x00\x00\x08\x01" + bytes(4))
        self.send_response(200)
        length = len(body) + 100 if self.mode in ("truncated", "lying-length") else len(body)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.mode == "truncated" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path, spec):
    servers = []

    def start(mode, good=""):
        handler = type("Handler", (FaultyHandler,), {"root": tmp_path / "mirror", "mode": mode,
                                                     "good": good, "hits": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/", handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"  # nothing listens once closed


FAST = {"timeout": 0.5, "attempts": 2, "backoff": 0.01}


@pytest.mark.parametrize("mode", ["refused", "slow", "truncated", "lying-length",
                                  "wrong-bytes"])
def test_a_failing_mirror_is_abandoned_for_the_next_one(tmp_path, spec, serve, monkeypatch,
                                                          mode):
    good, good_handler = serve("ok")
    bad = closed_port_url() if mode == "refused" else serve(mode)[0]
    with_mirrors(spec, bad, good)
    logs = []
    result = dl.download_dataset("tiny", None, tmp_path / "raw", log=logs.append, **FAST)
    assert len(good_handler.hits) == 4  # every file came from the good mirror
    assert all(dl.is_valid_file(tmp_path / "raw" / name, digest)
               for name, digest in spec.files.values())
    assert sorted(result["files"]) == sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert sum(bad in line for line in logs) == 4


def test_redirect_is_followed(tmp_path, spec, serve):
    good, good_handler = serve("ok")
    redirecting, _ = serve("redirect", good=good)
    dl.download_dataset("tiny", redirecting, tmp_path / "raw", log=lambda _: None, **FAST)
    assert len(good_handler.hits) == 4


def test_all_mirrors_failing_names_the_file_and_every_source_and_keeps_only_verified_files(
        tmp_path, spec, serve, monkeypatch):
    wrong, _ = serve("wrong-bytes")
    refused = closed_port_url()
    labels_name, labels_digest = spec.files["train_labels"]
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / labels_name).write_bytes((tmp_path / "mirror" / labels_name).read_bytes())
    with_mirrors(spec, refused, wrong)
    with pytest.raises(dl.DownloadError) as excinfo:
        dl.download_dataset("tiny", None, raw, log=lambda _: None, **FAST)
    message = str(excinfo.value)
    images_name = spec.files["train_images"][0]
    assert images_name in message and refused + images_name in message
    assert wrong + images_name in message and "--source" in message
    assert [p.name for p in raw.iterdir()] == [labels_name]  # the verified file stays, no junk
    # a later run with a good source completes
    dl.download_dataset("tiny", str(tmp_path / "mirror"), raw, log=lambda _: None)
    assert len(list(raw.iterdir())) == 4
