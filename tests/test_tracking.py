"""MLflow tracking: one run per training, models resolved from a path or a runs:/ / models:/ URI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hdfsad.artifacts import load_model, predict_proba
from hdfsad.cli import main
from hdfsad.config import load_config
from hdfsad.distributed import write_part
from hdfsad.experiment import train_variant
from hdfsad.labelled import from_arrays
from hdfsad.tracking import Tracker, log_training, resolve_model, tracking_uri

from conftest import TEST_OVERRIDES
from test_experiment import tiny, variant

torch.set_num_threads(1)


def test_tracking_uri_env_wins_then_config_then_a_store_under_work_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(overrides=[f"paths.work_dir={tmp_path}"])
    assert tracking_uri(cfg) == (tmp_path / "mlruns").as_uri()
    cfg = load_config(overrides=[f"paths.work_dir={tmp_path}", "tracking.uri=http://mlflow:5000"])
    assert tracking_uri(cfg) == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///elsewhere/mlruns")
    assert tracking_uri(cfg) == "file:///elsewhere/mlruns"
    assert Tracker.from_config(load_config(overrides=["tracking.enabled=false"])).start_run("x") is None


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One small training logged as one run; returns (tracker, run id, run result, out dir, data)."""
    from mlflow import MlflowClient

    tmp = tmp_path_factory.mktemp("tracked")
    data = from_arrays(*tiny())
    run = train_variant(variant(dedup=True), data, "seed", tmp / "run", log=None)
    tracker = Tracker((tmp / "mlruns").as_uri(), "tests")
    run_id = log_training(tracker, "train:tiny", {"variant": {"name": "tiny", "train": {"epochs": 2}}}, run,
                          tmp / "run", tags={"hdfsad.kind": "train"})
    return tracker, run_id, run, tmp, data, MlflowClient(tracking_uri=tracker.uri)


def test_a_training_is_one_run_with_params_epoch_metrics_model_and_report(logged):
    tracker, run_id, run, tmp, _, client = logged
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.data.tags["hdfsad.kind"] == "train"
    assert got.data.params["variant.train.epochs"] == "2" and got.data.params["variant.name"] == "tiny"
    losses = client.get_metric_history(run_id, "loss")
    assert [m.step for m in losses] == [1, 2]
    assert [m.value for m in losses] == pytest.approx([h["loss"] for h in run.history])
    assert got.data.metrics["test_f1"] == pytest.approx(run.metrics["f1"])
    assert got.data.metrics["threshold"] == pytest.approx(run.threshold)
    names = {a.path for a in client.list_artifacts(run_id, "model")} | {a.path for a in client.list_artifacts(run_id, "report")}
    assert {"model/model.json", "model/weights.pt", "report/report.md", "report/report.html"} <= names


def test_resolve_model_takes_a_path_a_run_uri_or_a_registered_model(logged, tmp_path, monkeypatch):
    tracker, run_id, run, tmp, data, client = logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.uri)
    local = tmp / "run" / "model"
    assert resolve_model(local) == str(local) and resolve_model(tmp / "run") == str(local)
    expected = predict_proba(load_model(local), data.sequences[:50])
    client.create_registered_model("hdfsad-tiny")
    client.create_model_version("hdfsad-tiny", f"runs:/{run_id}/model", run_id=run_id)
    for i, uri in enumerate((f"runs:/{run_id}/model", f"runs:/{run_id}", "models:/hdfsad-tiny/1")):
        directory = resolve_model(uri, dst=tmp_path / str(i))
        assert directory.startswith(str(tmp_path / str(i)))
        artifact = load_model(directory)
        assert artifact.threshold == pytest.approx(run.threshold)
        np.testing.assert_array_equal(predict_proba(artifact, data.sequences[:50]), expected)


def test_resolve_model_errors_say_what_was_looked_for(logged, tmp_path, monkeypatch):
    tracker = logged[0]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.uri)
    with pytest.raises(FileNotFoundError, match=r"model .*/nowhere: no such directory; give the model directory "
                                                r"written by `hdfsad train` \(<out>/model\) or an MLflow URI"):
        resolve_model(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"holds no model.json \(nor model/model.json\); point to the model "
                                         r"directory of a training run"):
        resolve_model(tmp_path)
    with pytest.raises(ValueError, match=r"model runs:/0123456789abcdef/model: MLflow could not fetch it .*check "
                                         r"the run id / model name and version and MLFLOW_TRACKING_URI"):
        resolve_model("runs:/0123456789abcdef/model", dst=tmp_path / "x")


def test_cli_train_logs_one_run_to_the_store_under_the_work_dir(tmp_path, capsys, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    seqs, y = tiny()
    write_part(tmp_path / "table", from_arrays(seqs, y), 2)
    (tmp_path / "tiny.yaml").write_text("name: tiny\nmodel: {lstm_units: [8]}\ntrain: {epochs: 2, dedup: true}\n")
    sets = [a for o in TEST_OVERRIDES for a in ("--set", o)]
    assert main(["train", "--variant", str(tmp_path / "tiny.yaml"), "--table", str(tmp_path / "table"),
                 "--out", str(tmp_path / "run"), *sets, "--set", "tracking.enabled=true",
                 "--set", f"paths.work_dir={tmp_path / 'work'}"]) == 0
    out = capsys.readouterr().out
    uri = (tmp_path / "work" / "mlruns").resolve().as_uri()
    assert f"MLflow run " in out and f" at {uri}; model: runs:/" in out
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("hdfsad").experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["hdfsad.variant"] == "tiny"
    assert runs[0].data.params["distributed.num_processes"] == "0"
    assert load_model(resolve_model(f"runs:/{runs[0].info.run_id}/model", dst=tmp_path / "dl",
                                    tracking=uri)).threshold > 0
