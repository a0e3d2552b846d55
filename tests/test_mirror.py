"""The mirror of a storage URL, against a real S3 endpoint (moto's server on loopback):
the publish protocol, what a reader trusts, and the one-line refusals."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mnist_autoencoder import store
from mnist_autoencoder.mirror import Mirror
from mnist_autoencoder.store import StorageError
from tests.helpers import PROJECT
from tests.s3 import S3Server


@pytest.fixture
def bucket(s3, request):
    return s3.bucket(request.node.name.replace("_", "-")[:50].strip("-").lower())


def write(root, files):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_push_publishes_objects_then_a_tree_and_a_pull_fetches_small_files_first(
        s3, bucket, tmp_path):
    writer = Mirror(f"s3://{bucket}/data", tmp_path / "a")
    writer.pull()
    write(writer.local, {"raw/x/a.json": "{}", "shards/x/b/images.u8": "1" * 5000,
                         "leases/run.json": "{}", "shards/.verified/s.json": "{}"})
    assert writer.push() == {"files": 2, "uploaded": 2}  # leases and stamps stay here
    keys = s3.keys(bucket)
    assert sorted(k.split("/")[1] for k in keys) == ["objects", "objects", "trees"]
    tree = json.loads(s3.client().get_object(Bucket=bucket, Key="data/trees/000000000001.json")[
        "Body"].read())["files"]
    assert sorted(tree) == ["raw/x/a.json", "shards/x/b/images.u8"]

    reader = Mirror(f"s3://{bucket}/data", tmp_path / "b")
    assert reader.pull() == {"files": 2, "fetched": 1, "deferred": 1}  # shards: when used
    assert (reader.local / "raw/x/a.json").read_text() == "{}"
    assert not (reader.local / "shards/x/b/images.u8").exists()
    assert reader.ensure(reader.local / "shards/x/b")
    assert (reader.local / "shards/x/b/images.u8").read_text() == "1" * 5000
    assert not reader.ensure(reader.local / "shards/x/b")  # present: nothing fetched
    assert reader.push() == {"files": 0, "uploaded": 0}  # nothing changed here


def test_a_changed_object_is_refused_on_read(s3, bucket, tmp_path):
    writer = Mirror(f"s3://{bucket}/r", tmp_path / "a")
    writer.pull()
    write(writer.local, {"raw/a.json": '{"a": 1}'})
    writer.push()
    sha = writer.tree["raw/a.json"][0]
    s3.client().put_object(Bucket=bucket, Key=f"r/objects/{sha[:2]}/{sha}", Body=b'{"a": 2}')
    with pytest.raises(StorageError, match="does not match its hash"):
        Mirror(f"s3://{bucket}/r", tmp_path / "b").pull()
    assert not (tmp_path / "b/raw/a.json").exists()  # nothing half-trusted left in place


def test_two_pushes_that_change_the_same_file_the_second_is_refused(s3, bucket, tmp_path):
    first, second = (Mirror(f"s3://{bucket}/c", tmp_path / n) for n in "ab")
    for m in (first, second):
        m.pull()
    write(first.local, {"models/registry.parquet": "one", "a/x": "x"})
    write(second.local, {"models/registry.parquet": "two", "b/y": "y"})
    first.push()
    with pytest.raises(StorageError, match="registry.parquet was changed by another run"):
        second.push()
    third = Mirror(f"s3://{bucket}/c", tmp_path / "c")
    third.pull()
    assert (third.local / "models/registry.parquet").read_text() == "one"
    assert not (third.local / "b/y").exists()  # nothing of the refused push is visible
    write(third.local, {"b/y": "y"})  # a push of other files merges with the newest tree
    third.push()
    assert sorted(Mirror(f"s3://{bucket}/c", tmp_path / "d").newest()[1]) == [
        "a/x", "b/y", "models/registry.parquet"]


def test_a_writer_killed_between_objects_and_tree_publishes_nothing_and_the_next_recovers(
        s3, bucket, tmp_path):
    scratch = tmp_path / "a"
    write(scratch, {"artifacts/train/k/model.keras": "weights", "models/champion.json": "{}"})
    code = textwrap.dedent(f"""
        import os, signal
        from mnist_autoencoder.mirror import Mirror
        m = Mirror("s3://{bucket}/k", {str(scratch)!r})
        m.pull()
        Mirror._write_tree = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        m.push()
    """)
    killed = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=os.environ.copy(),
                            capture_output=True, timeout=120)
    assert killed.returncode == -9
    objects = [k for k in s3.keys(bucket) if "/objects/" in k]
    assert len(objects) == 2 and not [k for k in s3.keys(bucket) if "/trees/" in k]
    reader = Mirror(f"s3://{bucket}/k", tmp_path / "b")
    assert reader.pull()["files"] == 0  # objects no tree names are invisible
    again = Mirror(f"s3://{bucket}/k", scratch)
    again.pull()
    assert again.push() == {"files": 2, "uploaded": 0}  # the objects were there: reused
    assert reader.pull()["files"] == 2


def test_bad_stores_are_refused_in_one_line(s3, tmp_path, monkeypatch):
    def refused(url):
        with pytest.raises(StorageError) as caught:
            Mirror(url, tmp_path / "x").probe()
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "unknown storage scheme 'nope'" in refused("nope://bucket/x")
    assert "the bucket does not exist" in refused("s3://no-such-bucket/x")
    s3.bucket("creds")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert "no credentials" in refused("s3://creds/x")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setattr(store, "RETRIES", (0.1,))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    assert "could not be reached after 2 attempts" in refused("s3://creds/x")


def _closed_port() -> int:
    from tests.s3 import free_port

    return free_port()  # nothing listens there once the probe socket is closed


def test_wrong_credentials_and_a_read_only_prefix_are_refused_in_one_line(tmp_path, monkeypatch):
    import boto3

    server = S3Server(tmp_path / "moto.log", auth=True, free_requests=4)
    try:
        iam = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:List*", "s3:GetObject"],
                 "Resource": ["arn:aws:s3:::auth", "arn:aws:s3:::auth/*"]},
                {"Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"],
                 "Resource": ["arn:aws:s3:::auth/rw/*"]}]}))
        server.client(key="x", secret="x").create_bucket(Bucket="auth")
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        Mirror("s3://auth/rw", tmp_path / "a").probe()  # allowed: no error
        with pytest.raises(StorageError, match="access denied: cannot write to this prefix"):
            Mirror("s3://auth/ro", tmp_path / "b").probe()
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        with pytest.raises(StorageError, match="refused the credentials"):
            Mirror("s3://auth/rw", tmp_path / "c").probe()
    finally:
        server.stop()


def test_the_same_bytes_pushed_from_two_machines_merge_and_records_may_be_overwritten(
        s3, bucket, tmp_path):
    first, second = (Mirror(f"s3://{bucket}/m", tmp_path / n) for n in "ab")
    records = Mirror(f"s3://{bucket}/m", tmp_path / "c", overwrite=True)
    for m in (first, second, records):
        m.pull()
    write(first.local, {"train/key/model.keras": "same", "one": "1"})
    write(second.local, {"train/key/model.keras": "same", "two": "2"})  # same stage, same bytes
    write(records.local, {"one": "a record of its own"})
    first.push()
    second.push()  # no clash: the file it changed holds what it wrote
    records.push()  # a clash on "one", overwritten by design
    tree = Mirror(f"s3://{bucket}/m", tmp_path / "d").newest()[1]
    assert sorted(tree) == ["one", "train/key/model.keras", "two"]
    assert tree["one"] == records.tree["one"]


def test_pushes_racing_for_one_generation_all_land(s3, bucket, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    mirrors = [Mirror(f"s3://{bucket}/race", tmp_path / str(k)) for k in range(4)]
    for k, m in enumerate(mirrors):
        m.pull()
        write(m.local, {f"score/part-{k}/summary.npz": str(k)})
    with ThreadPoolExecutor(4) as pool:  # all four read generation 0, then race for 1
        list(pool.map(Mirror.push, mirrors))
    generation, tree = Mirror(f"s3://{bucket}/race", tmp_path / "r").newest()
    assert generation == 4 and sorted(tree) == [f"score/part-{k}/summary.npz" for k in range(4)]


def test_a_network_cut_partway_through_a_push_is_retried_then_named(s3, bucket, tmp_path,
                                                                     monkeypatch):
    import threading

    from tests.s3 import Cable

    cable = Cable(s3.port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", cable.url)
    monkeypatch.setattr(store, "RETRIES", (1.0, 2.0))
    # botocore's own retries (5 attempts by default) would make the last case take 80 s
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    try:
        m = Mirror(f"s3://{bucket}/net", tmp_path / "a")
        m.pull()
        write(m.local, {f"f{k}": str(k) for k in range(4)})
        put = m.fs.put_file
        calls = []

        def flaky(*args, **kwargs):  # the cable is cut after the first upload
            calls.append(args[1])
            if len(calls) == 2:
                cable.unplug()
                threading.Timer(1.5, cable.plug).start()  # back within the retries
            return put(*args, **kwargs)

        monkeypatch.setattr(m.fs, "put_file", flaky)
        assert m.push() == {"files": 4, "uploaded": 4}  # retried with backoff, then done
        assert sorted(Mirror(f"s3://{bucket}/net", tmp_path / "b").newest()[1]) == [
            "f0", "f1", "f2", "f3"]

        write(m.local, {"g": "g"})
        cable.unplug()  # and it stays cut
        with pytest.raises(StorageError, match="could not be reached after 3 attempts"):
            m.push()
        cable.plug()
        assert "g" not in Mirror(f"s3://{bucket}/net", tmp_path / "c").newest()[1]
    finally:
        cable.close()


def test_a_cache_check_trusts_the_store_for_large_files_and_a_reader_fetches_them(
        s3, bucket, tmp_path):
    import shutil

    from mnist_autoencoder.mirror import LAZY_BYTES
    from mnist_autoencoder.roots import mirrored
    from mnist_autoencoder.storage import describe_outputs, invalid_outputs

    url, scratch = f"s3://{bucket}/lazy", tmp_path / "scratch"
    writer = Mirror(url, scratch)
    writer.pull()
    write(scratch, {"corrupt/k/images.npz": "x" * (LAZY_BYTES + 1), "corrupt/k/m.json": "{}"})
    outputs = describe_outputs(scratch / "corrupt/k", ["images.npz", "m.json"])
    writer.push()
    shutil.rmtree(scratch)  # another machine: the same scratch path, empty
    with mirrored(url, scratch) as reader:
        assert (scratch / "corrupt/k/m.json").is_file()  # small: pulled
        assert not (scratch / "corrupt/k/images.npz").exists()  # large: when used
        assert invalid_outputs(outputs, fetch=False) == []  # a cache check: trusted
        assert not (scratch / "corrupt/k/images.npz").exists()
        assert invalid_outputs(outputs) == []  # a stage about to read it: fetched, checked
        assert (scratch / "corrupt/k/images.npz").stat().st_size == LAZY_BYTES + 1
        assert reader.moved["fetched"] == 2
