"""Champion/challenger logic on plain files: no TensorFlow needed."""

import json

import pandas as pd
import pytest

from tasks import promote as pm


def fake_model(directory, tag):
    directory.mkdir(parents=True)
    for name in pm.MODEL_FILES:
        (directory / name).write_text(f"{tag}:{name}")
    return directory


def scorer(scores):
    """Score a champion by the tag written into its files (stands in for re-evaluation)."""
    def score(champion_dir):
        return scores[(champion_dir / "encoder.keras").read_text().split(":")[0]]
    return score


RUN = {"run_id": "r", "parameters": "{}", "data_sha256": "d", "code_version": "c"}


@pytest.mark.parametrize("challenger, champion, expected", [
    (0.090, None, True), (0.090, 0.091, True), (0.0914, 0.0910, True),  # within 0.5%
    (0.0920, 0.0910, False),
])
def test_decide(challenger, champion, expected):
    promoted, reason = pm.decide(challenger, champion, tolerance=0.005)
    assert promoted is expected
    assert ("no champion" in reason) if champion is None else (f"{champion:.5f}" in reason)


def test_better_challenger_is_promoted_and_worse_one_kept_out(tmp_path):
    scores = {"a": 0.095, "b": 0.090, "c": 0.099}
    for tag in "abc":
        fake_model(tmp_path / "runs" / tag, tag)
    first = pm.promote_model({"model_dir": str(tmp_path / "runs/a"), "test_bce": scores["a"]},
                             tmp_path, 0.005, scorer(scores), RUN | {"run_id": "1"})
    second = pm.promote_model({"model_dir": str(tmp_path / "runs/b"), "test_bce": scores["b"]},
                              tmp_path, 0.005, scorer(scores), RUN | {"run_id": "2"})
    third = pm.promote_model({"model_dir": str(tmp_path / "runs/c"), "test_bce": scores["c"]},
                             tmp_path, 0.005, scorer(scores), RUN | {"run_id": "3"})
    assert (first["promoted"], second["promoted"], third["promoted"]) == (True, True, False)
    assert "0.09900 > champion 0.09000" in third["reason"]
    champion = tmp_path / "models" / "champion"
    assert (champion / "encoder.keras").read_text().startswith("b:")
    assert json.loads((champion / "champion.json").read_text())["run_id"] == "2"
    registry = pd.read_parquet(tmp_path / "models" / "registry.parquet")
    assert list(registry["run_id"]) == ["1", "2", "3"]
    assert list(registry["promoted"]) == [True, True, False]
    assert pd.isna(registry["champion_test_bce"][0])
    assert list(registry["champion_test_bce"][1:]) == [0.095, 0.090]
    assert registry["reason"][2] == third["reason"]
    assert {"time", "parameters", "data_sha256", "code_version", "model_path"} <= set(registry)


def test_failed_install_leaves_the_champion_intact(tmp_path, monkeypatch):
    scores = {"a": 0.095, "b": 0.090}
    fake_model(tmp_path / "runs" / "a", "a")
    fake_model(tmp_path / "runs" / "b", "b")
    pm.promote_model({"model_dir": str(tmp_path / "runs/a"), "test_bce": 0.095}, tmp_path, 0.0,
                     scorer(scores), RUN)
    (tmp_path / "runs" / "b" / "decoder.keras").unlink()  # the copy will fail half-way
    with pytest.raises(FileNotFoundError):
        pm.promote_model({"model_dir": str(tmp_path / "runs/b"), "test_bce": 0.090}, tmp_path,
                         0.0, scorer(scores), RUN)
    champion = tmp_path / "models" / "champion"
    assert sorted(p.name for p in champion.iterdir()) == sorted([*pm.MODEL_FILES,
                                                                 "champion.json"])
    assert all((champion / n).read_text().startswith("a:") for n in pm.MODEL_FILES)
    assert not [p for p in champion.parent.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert len(pd.read_parquet(tmp_path / "models" / "registry.parquet")) == 1
