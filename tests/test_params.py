import inspect
import json
import os

import pytest

from flows.autoencoder import mnist_autoencoder
from flows.cli import build_parser, group_params
from mnist_autoencoder.params import ParameterError, PathsConfig, validate_pipeline

DEFAULTS = vars(build_parser(mnist_autoencoder).parse_args([]))


def check(**changes):
    validate_pipeline(**group_params(mnist_autoencoder, DEFAULTS | changes))


def test_defaults_are_valid_and_match_the_seed():
    check()
    assert (DEFAULTS["latent_dim"], DEFAULTS["batch_size"], DEFAULTS["epochs"]) == (32, 256, 50)
    assert DEFAULTS["val_size"] == 10_000


@pytest.mark.parametrize("changes, name, hint", [
    ({"dataset": "cifar"}, "dataset", "fashion_mnist"),
    ({"latent_dim": 0}, "latent_dim", "at least 1"),
    ({"epochs": 0}, "epochs", "at least 1"),
    ({"batch_size": -4}, "batch_size", "at least 1"),
    ({"val_size": 60_000}, "val_size", "must leave training data: 1 <= val_size < 60000"),
    ({"val_size": 0}, "val_size", "must leave training data"),
    ({"learning_rate": 0.0}, "learning_rate", "(0, 1]"),
    ({"patience": 0}, "patience", "at least 1"),
    ({"seed": -1}, "seed", "non-negative"),
    ({"source": "/no/such/mirror"}, "source", "is not a directory"),
    ({"source": "file:///no/such/mirror"}, "source", "is not a directory"),
])
def test_bad_parameters_are_named_with_the_allowed_values(changes, name, hint):
    with pytest.raises(ParameterError) as excinfo:
        check(**changes)
    message = str(excinfo.value)
    assert f"Invalid parameter {name}=" in message and hint in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_artifacts_dir_is_rejected(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ParameterError, match="artifacts_dir"):
        check(artifacts_dir=str(locked / "artifacts"))


def test_artifacts_dir_under_a_file_is_rejected(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ParameterError, match="artifacts_dir"):
        check(artifacts_dir=str(tmp_path / "file" / "artifacts"))


def test_relative_dirs_are_anchored_at_the_project():
    paths = PathsConfig().resolved()
    assert os.path.isabs(paths.data_dir) and paths.data_dir.endswith("/data")


def test_cli_exposes_every_flow_parameter_with_its_default():
    parser = build_parser(mnist_autoencoder)
    defaults = group_params(mnist_autoencoder, vars(parser.parse_args([])))
    assert defaults == {name: p.default for name, p in
                        inspect.signature(mnist_autoencoder.fn).parameters.items()}
    parsed = vars(parser.parse_args(["--epochs", "3", "--learning-rate", "0.01",
                                     "--source", "x", "--val_size", "5"]))
    assert parsed["epochs"] == 3 and parsed["learning_rate"] == 0.01
    assert parsed["source"] == "x" and parsed["val_size"] == 5
    help_text = parser.format_help()
    assert "--latent-dim" in help_text and "(default: 32)" in help_text


def test_cli_reads_lists_and_booleans():
    from flows.sweep import mnist_sweep

    args = vars(build_parser(mnist_sweep).parse_args(
        ["--latent-dims", "2,4,8", "--variants", "shallow,vae", "--probe", "false"]))
    params = group_params(mnist_sweep, args)
    assert params["data"].seed == 0 and params["training"].epochs == 50
    assert args["latent_dims"] == (2, 4, 8) and args["variants"] == ("shallow", "vae")
    assert args["probe"] is False
    assert build_parser(mnist_sweep).parse_args([]).seeds == (0,)


def test_a_champion_calibrated_before_the_two_sided_score_is_refused_before_any_work(tmp_path):
    from mnist_autoencoder.errors import StateError
    from mnist_autoencoder.lifecycle import registry as rg
    from mnist_autoencoder.params import validate_score
    from mnist_autoencoder.paths import models_dir
    from tests.helpers import fake_model

    model = fake_model(tmp_path / "runs" / "old", "old")
    (model / "calibration.json").write_text(json.dumps(
        {"score": "max_z(bce,kl)", "mean": {}, "std": {}, "quantiles": [0, 1],
         "n_validation": 10000}))  # the format before typicality
    run = rg.RunInfo(run_id="old", training=rg.TrainingRecord(latent_dim=32),
                     data_sha256="d", splits_sha256="s", code_version="c")
    rg.promote_model({"model_dir": str(model), "test_bce": 0.09},
                     models_dir(tmp_path / "artifacts"), "mnist", 0.005, lambda _: 0.09, run)
    paths = PathsConfig(data_dir=str(tmp_path / "data"), artifacts_dir=str(tmp_path / "artifacts"))
    with pytest.raises(StateError, match="predates the two-sided anomaly score.*make run"):
        validate_score(str(model), "mnist", "champion", 0.01, paths)


def test_a_warm_run_on_more_new_images_than_its_replay_trains_at_the_cold_rate():
    from mnist_autoencoder.params import PipelineConfig, TrainingConfig

    training, pipeline = TrainingConfig(), PipelineConfig(warm_replay=1000)
    assert pipeline.schedule(training, warm=False, new_images=10**6) == training
    small = pipeline.schedule(training, warm=True, new_images=1000)
    large = pipeline.schedule(training, warm=True, new_images=1001)
    assert small.epochs == large.epochs == pipeline.warm_epochs < training.epochs
    assert small.learning_rate == pipeline.warm_learning_rate < training.learning_rate
    assert large.learning_rate == training.learning_rate
