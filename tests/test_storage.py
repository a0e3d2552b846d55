import pytest

from mnist_autoencoder.storage import (
    atomic_dir,
    atomic_path,
    describe_outputs,
    invalid_outputs,
    require_valid,
    sha256_file,
)


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half-written")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind

    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o044  # readable by others, not mkstemp's 0600


def test_atomic_dir_keeps_old_directory_on_failure_and_swaps_on_success(tmp_path):
    final = tmp_path / "stage"
    final.mkdir()
    (final / "model").write_text("good")
    with pytest.raises(KeyboardInterrupt), atomic_dir(final) as tmp:
        (tmp / "model").write_text("partial")
        raise KeyboardInterrupt
    assert (final / "model").read_text() == "good"
    with atomic_dir(final) as tmp:
        (tmp / "model").write_text("better")
    assert (final / "model").read_text() == "better"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_invalid_outputs_detects_deleted_and_changed_files(tmp_path):
    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / "b").write_bytes(b"2")
    outputs = describe_outputs(tmp_path, ["a", "b"])
    assert outputs["files"]["a"] == sha256_file(tmp_path / "a")
    assert invalid_outputs(outputs) == []
    (tmp_path / "a").write_bytes(b"X")
    (tmp_path / "b").unlink()
    problems = invalid_outputs(outputs)
    assert len(problems) == 2
    assert "does not match" in problems[0] and "missing" in problems[1]
    with pytest.raises(RuntimeError, match="no longer valid"):
        require_valid(outputs)


def test_output_hash_changes_with_any_file(tmp_path):
    (tmp_path / "a").write_bytes(b"1")
    first = describe_outputs(tmp_path, ["a"])["hash"]
    (tmp_path / "a").write_bytes(b"2")
    assert describe_outputs(tmp_path, ["a"])["hash"] != first


def test_a_file_hashed_again_is_read_again_only_if_it_changed(tmp_path):
    import os
    import time

    from mnist_autoencoder import storage

    path = tmp_path / "big.bin"
    path.write_bytes(b"a" * 1000)
    old = time.time() - 10
    os.utime(path, (old, old))
    time.sleep(0.06)  # older than the coarse-clock margin
    first = storage.sha256_file(path)
    assert str(path.resolve()) in storage._HASHED
    with open(path, "r+b") as handle:  # same size, one byte flipped, mtime put back
        handle.seek(500)
        handle.write(b"b")
    os.utime(path, (old, old))
    assert storage.sha256_file(path) != first  # ctime moved: read again
    assert storage.sha256_file(path) == storage.sha256_bytes(b"a" * 500 + b"b" + b"a" * 499)
