"""Champion/challenger logic on plain files: no TensorFlow needed."""

import json
from dataclasses import replace

import pandas as pd
import pytest

from mnist_autoencoder import database as db
from mnist_autoencoder.errors import UserError
from mnist_autoencoder.lifecycle import registry as rg
from mnist_autoencoder.paths import MODEL_FILES, location, models_dir
from tests.helpers import fake_model


def scorer(scores):
    """Score a champion by the tag written into its files (stands in for re-evaluation)."""
    def score(champion_dir):
        return scores[(champion_dir / "encoder.keras").read_text().split(":")[0]]
    return score


RUN = rg.RunInfo(run_id="r", training=rg.TrainingRecord(latent_dim=32), data_sha256="d",
                 splits_sha256="s", code_version="c")
SCORES = {"a": 0.095, "b": 0.090, "c": 0.099, "f": 0.300}


def promote(root, tag, dataset="mnist", run_id=None, tolerance=0.005):
    model = root / "runs" / tag
    if not model.exists():
        fake_model(model, tag)
    return rg.promote_model({"model_dir": str(model), "test_bce": SCORES[tag]}, root / "models",
                            dataset, tolerance, scorer(SCORES), replace(RUN, run_id=run_id or tag))


def champion_tag(root, dataset="mnist"):
    return (rg.champion_dir(root / "models", dataset) / "encoder.keras").read_text()[0]


@pytest.mark.parametrize("challenger, champion, expected", [
    (0.090, None, True), (0.090, 0.091, True), (0.0914, 0.0910, True),  # within 0.5%
    (0.0920, 0.0910, False),
])
def test_decide(challenger, champion, expected):
    promoted, reason = rg.decide(challenger, champion, tolerance=0.005)
    assert promoted is expected
    assert ("no champion" in reason) if champion is None else (f"{champion:.5f}" in reason)


def test_better_challenger_is_promoted_and_worse_one_kept_out(tmp_path):
    first, second, third = (promote(tmp_path, tag) for tag in "abc")
    assert (first["promoted"], second["promoted"], third["promoted"]) == (True, True, False)
    assert "0.09900 > champion 0.09000" in third["reason"]
    champion = rg.champion_dir(tmp_path / "models", "mnist")
    assert champion_tag(tmp_path) == "b"
    assert json.loads((champion / "champion.json").read_text())["run_id"] == "b"
    registry = rg.read_registry(tmp_path / "models")
    assert list(registry["run_id"]) == ["a", "b", "c"]
    assert list(registry["promoted"]) == [True, True, False]
    assert list(registry["dataset"]) == ["mnist"] * 3
    assert pd.isna(registry["champion_test_bce"][0])
    assert list(registry["champion_test_bce"][1:]) == [0.095, 0.090]
    assert registry["reason"][2] == third["reason"]
    assert {"time", "parameters", "data_sha256", "code_version", "model_path",
            "model_sha256", "event"} <= set(registry)
    assert rg.champion_problems(tmp_path / "models", "mnist") == []


def test_a_challenger_only_meets_the_champion_of_its_own_dataset(tmp_path):
    promote(tmp_path, "b", "mnist")
    fashion = promote(tmp_path, "f", "fashion_mnist")  # far worse BCE, other data
    assert fashion["promoted"] and fashion["reason"] == "no champion yet"
    assert champion_tag(tmp_path, "mnist") == "b" and champion_tag(tmp_path, "fashion_mnist") == "f"
    assert not promote(tmp_path, "c", "mnist")["promoted"]  # still meets b, not f


def test_failed_install_leaves_the_champion_intact(tmp_path):
    promote(tmp_path, "a", tolerance=0.0)
    fake_model(tmp_path / "runs" / "b", "b")
    (tmp_path / "runs" / "b" / "decoder.keras").unlink()  # the copy will fail half-way
    with pytest.raises(FileNotFoundError):
        promote(tmp_path, "b", tolerance=0.0)
    champion = rg.champion_dir(tmp_path / "models", "mnist")
    assert sorted(p.name for p in champion.iterdir()) == sorted([*MODEL_FILES, "champion.json"])
    assert all((champion / n).read_text().startswith("a:") for n in MODEL_FILES)
    assert not [p for p in champion.parent.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert len(rg.read_registry(tmp_path / "models")) == 1


@pytest.mark.parametrize("fault", ["deleted", "damaged", "replaced by hand"])
def test_a_broken_champion_is_reinstated_and_the_decision_made_again(tmp_path, fault):
    import shutil

    promote(tmp_path, "b")
    champion = rg.champion_dir(tmp_path / "models", "mnist")
    if fault == "deleted":
        shutil.rmtree(champion)
    elif fault == "damaged":
        (champion / "decoder.keras").write_text("garbage")
    else:  # a consistent champion, but not the registry's: someone copied a run in
        fake_model(tmp_path / "runs" / "c", "c")
        rg.install_champion(tmp_path / "runs" / "c", champion,
                            {"model_sha256": "x", "files": rg.model_files(tmp_path / "runs/c")})
    assert rg.champion_problems(tmp_path / "models", "mnist")
    shutil.rmtree(tmp_path / "runs" / "b")  # reinstated from the store, not the run's folder

    decision = promote(tmp_path, "a")  # worse than b: kept out once b is back
    assert not decision["promoted"] and "champion 0.09000" in decision["reason"]
    assert decision["repaired"].startswith("Champion reinstated")
    assert champion_tag(tmp_path) == "b"
    assert rg.champion_problems(tmp_path / "models", "mnist") == []
    registry = rg.read_registry(tmp_path / "models")
    assert list(registry["event"]) == ["promoted", "reinstated", "kept out"]
    if fault != "deleted":  # what stood there is kept aside, never lost
        (aside,) = champion.parent.glob("champion.displaced-*")
        assert (aside / "decoder.keras").is_file()


def test_a_champion_whose_stored_models_are_gone_is_recorded_as_lost(tmp_path):
    import shutil

    promote(tmp_path, "b")
    shutil.rmtree(rg.champion_dir(tmp_path / "models", "mnist"))
    shutil.rmtree(tmp_path / "models" / "mnist" / "store")
    shutil.rmtree(tmp_path / "runs" / "b")
    decision = promote(tmp_path, "c")
    assert decision["promoted"] and decision["reason"] == "no champion yet"
    assert decision["repaired"].startswith("Champion lost")
    events = list(rg.read_registry(tmp_path / "models")["event"])
    assert events == ["promoted", "lost", "promoted"]


def test_the_old_single_champion_layout_is_refused_with_what_to_do(tmp_path):
    fake_model(tmp_path / "models" / "champion", "a")
    (tmp_path / "models" / "champion" / "champion.json").write_text("{}")
    with pytest.raises(rg.RegistryError, match=r"old single-champion layout.*move it to .*"
                                               r"<dataset>/champion"):
        promote(tmp_path, "b")


def test_a_held_challenger_is_recorded_and_the_champion_stays(tmp_path):
    promote(tmp_path, "a")
    model = fake_model(tmp_path / "runs" / "b", "b")
    held = rg.promote_model({"model_dir": str(model), "test_bce": SCORES["b"]},
                            tmp_path / "models", "mnist", 0.005, scorer(SCORES),
                            replace(RUN, run_id="b"), hold="promotion held because of drift")
    assert held["held"] and not held["promoted"]
    assert held["reason"].startswith("promotion held because of drift; otherwise it would be "
                                     "promoted: challenger test BCE 0.09000 <=")
    assert champion_tag(tmp_path) == "a"
    registry = rg.read_registry(tmp_path / "models")
    assert list(registry["event"]) == ["promoted", "held"]
    worse = fake_model(tmp_path / "runs" / "c", "c")
    kept = rg.promote_model({"model_dir": str(worse), "test_bce": SCORES["c"]},
                            tmp_path / "models", "mnist", 0.005, scorer(SCORES),
                            replace(RUN, run_id="c"), hold="promotion held because of drift")
    assert not kept["held"] and "0.09900 > champion" in kept["reason"]  # worse anyway


def test_a_truncated_parquet_registry_is_refused_in_one_line_that_names_it(tmp_path):
    models = models_dir(tmp_path)
    row = rg.RegistryRow("mnist", "a", "promoted", "t", "first", True, "runs/a", "sha-a")
    path = location("legacy_registry", models)
    path.parent.mkdir(parents=True)
    pd.DataFrame([row.values()]).to_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a crash mid-write
    with pytest.raises(rg.RegistryError) as refused:
        rg.read_registry(models)
    message = str(refused.value)
    assert str(path) in message and "restore it from a backup" in message
    assert "\n" not in message and isinstance(refused.value, UserError)


def test_a_damaged_database_file_is_refused_in_one_line_that_names_the_rebuild(tmp_path):
    models = models_dir(tmp_path)
    rg.append_registry(models, rg.RegistryRow("mnist", "a", "promoted", "t", "first", True,
                                              "runs/a", "sha-a"))
    db.dispose()
    path = location("registry", models)
    path.write_bytes(b"\0" * 100 + path.read_bytes()[100:])  # its header overwritten
    with pytest.raises(db.DatabaseError) as refused:
        rg.read_registry(models)
    message = str(refused.value)
    assert "damaged" in message and "flows.rebuild" in message and "\n" not in message


def test_a_parquet_registry_is_imported_once_with_its_champion(tmp_path, capsys):
    models = models_dir(tmp_path)
    rows = [rg.RegistryRow("mnist", run, event, "t", "r", event == "promoted", f"runs/{run}",
                           f"sha-{run}") for run, event in
            (("a", "promoted"), ("b", "kept out"), ("c", "promoted"), ("d", "held"))]
    path = location("legacy_registry", models)
    path.parent.mkdir(parents=True)
    pd.DataFrame([r.values() for r in rows]).to_parquet(path)
    kept = path.read_bytes()
    table = rg.read_registry(models)
    assert list(table["run_id"]) == ["a", "b", "c", "d"]
    assert rg.registered_champion(models, "mnist").run_id == "c"
    assert "Imported the registry" in capsys.readouterr().out
    assert not path.exists() and path.with_name("registry.parquet.imported").is_file()
    path.write_bytes(kept)  # the same file again (another machine's copy): not imported twice
    assert len(rg.read_registry(models)) == 4 and not path.exists()


def test_a_registry_row_carries_its_training_as_one_typed_value(tmp_path):
    promote(tmp_path, "a")
    (row,) = rg.registry_rows(rg.read_registry(tmp_path / "models"))
    assert row.training == RUN.training and row.event == "promoted" and row.run_id == "a"
    assert rg.registered_champion(tmp_path / "models", "mnist") == row
