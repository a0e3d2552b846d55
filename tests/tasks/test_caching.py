import sys
import textwrap

from mnist_autoencoder.codeversion import code_version, reachable
from tasks.caching import described_outputs, stage_key


def write_package(root, files):
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


def test_code_version_follows_the_import_graph_without_importing(tmp_path, monkeypatch):
    write_package(tmp_path, {
        "pkgx/__init__.py": "",
        "pkgx/stage.py": "from pkgx import helper\n",
        "pkgx/helper.py": "def helper():\n    from pkgx.deep import value\n    return value\n",
        "pkgx/deep.py": "value = 1\n",
        "pkgx/other.py": "value = 1\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_version(("pkgx.stage",), project=("pkgx",))
    modules, _ = reachable(("pkgx.stage",), project=("pkgx",))
    assert modules == ["pkgx", "pkgx.deep", "pkgx.helper", "pkgx.stage"]
    assert not [name for name in sys.modules if name.startswith("pkgx")]

    (tmp_path / "pkgx/other.py").write_text("value = 2\n")  # not reachable: same version
    assert code_version(("pkgx.stage",), project=("pkgx",)) == before
    (tmp_path / "pkgx/deep.py").write_text("value = 2\n")  # two imports away, in a function
    assert code_version(("pkgx.stage",), project=("pkgx",)) != before


def test_code_version_includes_the_versions_of_imported_libraries(tmp_path, monkeypatch):
    write_package(tmp_path, {"plain_mod.py": "import json\n",
                             "numeric_mod.py": "import numpy as np\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert reachable(("plain_mod",), project=("plain_mod",))[1] == set()  # stdlib is not listed
    assert reachable(("numeric_mod",), project=("numeric_mod",))[1] == {"numpy"}


def test_stages_reach_exactly_the_core_modules_they_use():
    """The import graph, as the closing note of issue 13 lists it."""
    reach = {stage: set(reachable((f"tasks.{stage}",))[0])
             for stage in ("download", "preprocess", "train", "report", "promote")}
    assert "mnist_autoencoder.reports.figures" in reach["report"]
    assert not any("mnist_autoencoder.reports.figures" in reach[s] for s in reach if s != "report")
    assert "mnist_autoencoder.data.idx" in reach["preprocess"]
    assert "mnist_autoencoder.models.model" in reach["train"]
    assert "mnist_autoencoder.models.model" not in reach["download"] | reach["preprocess"]
    assert "mnist_autoencoder.lifecycle.registry" in reach["promote"]


def test_stage_key_depends_on_stage_code_and_inputs_and_is_stable():
    key = stage_key("train", "code", {"epochs": 2, "splits": {"hash": "a"}})
    assert key == stage_key("train", "code", {"splits": {"hash": "a"}, "epochs": 2})
    assert key.startswith("train-")
    assert key != stage_key("train", "code", {"epochs": 3, "splits": {"hash": "a"}})
    assert key != stage_key("train", "code", {"epochs": 2, "splits": {"hash": "b"}})
    assert key != stage_key("train", "other code", {"epochs": 2, "splits": {"hash": "a"}})


def test_described_outputs_finds_nested_descriptions():
    inner = {"dir": "/x", "files": {}, "hash": "h"}
    assert described_outputs({"a": inner, "metrics": {"bce": 1}}) == [inner]
    assert described_outputs(inner | {"metrics": {}}) == [inner | {"metrics": {}}]
    assert described_outputs(3) == []


def test_stage_key_ignores_where_upstream_outputs_live():
    upstream = {"dir": "/a/preprocess-1", "files": {"x": "1"}, "hash": "h", "counts": {}}
    moved = upstream | {"dir": "/a/preprocess-2"}
    changed = upstream | {"hash": "other"}
    key = stage_key("train", "code", {"splits": upstream})
    assert key == stage_key("train", "code", {"splits": moved})
    assert key != stage_key("train", "code", {"splits": changed})


def test_lock_of_a_dead_process_is_released_and_a_live_one_is_kept(tmp_path):
    import json
    import subprocess

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


def test_code_versions_are_the_same_in_every_process():
    """The walk once depended on set order, which Python randomises per process: a fresh
    process then computed other keys and reran cached stages."""
    import subprocess

    from tests.helpers import PROJECT

    code = ("from mnist_autoencoder.codeversion import code_version; import pkgutil, tasks; "
            "print([code_version((f'tasks.{m.name}',)) "
            "for m in pkgutil.iter_modules(tasks.__path__) if m.name not in ('caching', 'io')])")
    outputs = {subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                              text=True, check=True, env={"PYTHONHASHSEED": seed, "PATH": ""}
                              ).stdout for seed in ("1", "2", "3")}
    assert len(outputs) == 1
