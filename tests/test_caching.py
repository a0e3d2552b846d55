import sys

from tasks.caching import code_version, described_outputs, stage_key


def test_code_version_follows_module_source_without_importing(tmp_path, monkeypatch):
    module = tmp_path / "helper_mod_xyz.py"
    module.write_text("def helper():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_version(("helper_mod_xyz",))
    assert "helper_mod_xyz" not in sys.modules
    module.write_text("def helper():\n    return 2\n")
    assert code_version(("helper_mod_xyz",)) != before


def test_code_version_includes_library_versions():
    assert code_version(("tasks.storage",), ("numpy",)) != code_version(("tasks.storage",))


def test_stage_key_depends_on_stage_inputs_and_is_stable():
    key = stage_key("train", ("tasks.storage",), {"epochs": 2, "splits": {"hash": "a"}})
    assert key == stage_key("train", ("tasks.storage",), {"splits": {"hash": "a"}, "epochs": 2})
    assert key.startswith("train-")
    assert key != stage_key("train", ("tasks.storage",), {"epochs": 3, "splits": {"hash": "a"}})
    assert key != stage_key("train", ("tasks.storage",), {"epochs": 2, "splits": {"hash": "b"}})


def test_described_outputs_finds_nested_descriptions():
    inner = {"dir": "/x", "files": {}, "hash": "h"}
    assert described_outputs({"a": inner, "metrics": {"bce": 1}}) == [inner]
    assert described_outputs(inner | {"metrics": {}}) == [inner | {"metrics": {}}]
    assert described_outputs(3) == []


def test_stage_key_ignores_where_upstream_outputs_live():
    upstream = {"dir": "/a/preprocess-1", "files": {"x": "1"}, "hash": "h", "counts": {}}
    moved = upstream | {"dir": "/a/preprocess-2"}
    changed = upstream | {"hash": "other"}
    key = stage_key("train", ("tasks.storage",), {"splits": upstream})
    assert key == stage_key("train", ("tasks.storage",), {"splits": moved})
    assert key != stage_key("train", ("tasks.storage",), {"splits": changed})


def test_lock_of_a_dead_process_is_released_and_a_live_one_is_kept(tmp_path):
    import json
    import subprocess
    import sys

    from tasks.caching import ProcessLockManager

    manager = ProcessLockManager(lock_files_directory=tmp_path)
    assert manager.acquire_lock("k", holder="me")
    info = json.loads((tmp_path / "k.lock").read_bytes())
    assert info["holder"] == "me" and info["pid"] > 0
    assert ProcessLockManager(tmp_path).is_locked("k")  # our own process is alive

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "k.lock").write_text(json.dumps(info | {"pid": int(dead)}))
    other = ProcessLockManager(tmp_path)
    assert not other.is_locked("k")
    assert other.acquire_lock("k", holder="next", acquire_timeout=1)
