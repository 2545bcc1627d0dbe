"""Grid search: the grid file, folds, ranking, one Spark task per fit, resume, MLflow parent/child runs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from hdfsad import grid as G
from hdfsad.labelled import from_arrays
from hdfsad.tracking import Tracker
from hdfsad.variants import load_variant

from conftest import REPO
from test_experiment import tiny

torch.set_num_threads(1)

BASE = "name: base\nmodel: {lstm_units: [8]}\ntrain: {batch_size: 32, epochs: 2, dedup: true, dedup_passes: 5, patience: null}\n"


def test_the_default_grid_is_the_studys():
    grid = G.load_grid(f"{REPO}/conf/grid.yaml")
    assert (grid.base_variant, grid.folds, grid.metric, grid.protocol) == ("v2_grid", 3, "f1", "seed")
    candidates = grid.candidates()
    assert len(candidates) == 18
    assert {c["train.batch_size"] for c in candidates} == {16, 32}
    assert {c["train.epochs"] for c in candidates} == {2, 8, 15}
    assert {tuple(c["model.lstm_units"]) for c in candidates} == {(2, 2), (64, 64), (72, 72)}
    assert len(G.build_tasks(grid, G.base_variant_data(grid.base_variant), "d")) == 54


@pytest.mark.parametrize("data, message", [
    ({"name": "g", "base_variant": "v2_grid", "params": {"epochs": [1]}},
     "params key 'epochs' must be model.<key> or train.<key>"),
    ({"name": "g", "base_variant": "v2_grid", "params": {"train.epochs": 3}},
     "params.train.epochs must be a non-empty list of values, got 3"),
    ({"name": "g", "base_variant": "v2_grid", "params": {"train.epochs": [1]}, "metric": "accuracyy"},
     "'metric' must be one of ['accuracy', 'precision', 'recall', 'f1'"),
    ({"name": "g", "base_variant": "v2_grid", "params": {"train.epochs": [1]}, "folds": 1},
     "'folds' must be an integer >= 2, got 1"),
    ({"name": "g", "params": {"train.epochs": [1]}}, "'base_variant' is required"),
    ({"name": "g", "base_variant": "v2_grid", "params": {"train.epochs": [1]}, "fold": 3},
     "unknown key(s) ['fold']; allowed keys: ['name', 'description', 'base_variant'"),
])
def test_grid_file_errors_name_the_key(data, message):
    with pytest.raises(ValueError) as err:
        G.grid_from_dict(data, "g.yaml")
    assert message in str(err.value) and str(err.value).startswith("g.yaml: ")


def test_a_candidate_that_would_tune_on_its_held_out_fold_is_refused(tmp_path):
    (tmp_path / "b.yaml").write_text("name: b\ntrain: {monitor: val_f1}\n")
    grid = G.grid_from_dict({"name": "g", "base_variant": str(tmp_path / "b.yaml"), "params": {"train.epochs": [1]}})
    with pytest.raises(ValueError, match=r"the base variant's train.monitor is 'val_f1'; a grid fit has no "
                                         r"validation set besides its held-out fold"):
        G.build_tasks(grid, G.base_variant_data(str(tmp_path / "b.yaml")), "d")


def test_folds_are_balanced_and_fixed_by_the_seed():
    folds = G.fold_ids(100, 3, 24)
    assert sorted(np.bincount(folds).tolist()) == [33, 33, 34]
    np.testing.assert_array_equal(folds, G.fold_ids(100, 3, 24))
    assert not np.array_equal(folds, G.fold_ids(100, 3, 25))
    with pytest.raises(ValueError, match="2 rows cannot be cut into 3 folds"):
        G.fold_ids(2, 3, 0)


def test_ranking_by_mean_metric_leaves_incomplete_configs_out():
    tasks = [{"key": f"{c}-{f}", "config_id": c, "fold": f} for c in range(3) for f in range(2)]
    row = lambda c, f, f1: {"key": f"{c}-{f}", "fold": f, "params": json.dumps({"c": c}), "variant": "{}",
                            "fit_seconds": 1.0, **{m: 0.5 for m in G.RANK_METRICS}, "f1": f1}
    rows = [row(0, 0, 0.6), row(0, 1, 0.8), row(1, 0, 0.9), row(1, 1, 0.9), row(2, 0, 1.0), row("x", 0, 1.0)]
    ranking, incomplete = G.rank_configs(rows, tasks, "f1", 2)
    assert [e["config_id"] for e in ranking] == [1, 0] and incomplete == [2]
    assert ranking[1]["mean_f1"] == pytest.approx(0.7) and ranking[1]["folds"] == [0.6, 0.8]
    assert ranking[1]["std"] == pytest.approx(0.1)


def test_fit_fold_trains_on_the_other_folds_and_scores_the_held_out_one(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    grid = G.grid_from_dict({"name": "g", "base_variant": str(tmp_path / "base.yaml"),
                             "params": {"train.epochs": [1]}, "folds": 2})
    arrays, n = G._cv_arrays(from_arrays(*tiny()), grid)
    task = G.build_tasks(grid, G.base_variant_data(grid.base_variant), "d")[1]
    row = G.fit_fold(task, arrays)
    assert row["fold"] == 1 and row["eval_rows"] == int((arrays[3] == 1).sum()) and row["threads"] == 1
    assert row["train_rows"] + row["eval_rows"] == n == 390  # the 130 test rows of the seed split stay out
    assert row["epochs_done"] == 1 and 0.0 <= row["f1"] <= 1.0 and len(json.loads(row["history"])) == 1


@pytest.mark.slow
def test_grid_runs_one_task_per_fit_resumes_and_tracks_parent_and_children(spark, tmp_path):
    from mlflow import MlflowClient

    (tmp_path / "base.yaml").write_text(BASE)
    grid = G.grid_from_dict({"name": "t", "base_variant": str(tmp_path / "base.yaml"),
                             "params": {"train.epochs": [1, 3], "model.lstm_units": [[4], [8]]}, "folds": 2})
    tracker = Tracker((tmp_path / "mlruns").as_uri(), "grid-tests")
    data = from_arrays(*tiny())
    lines: list[str] = []
    result = G.run_grid(spark, grid, data, tmp_path / "out", tracker=tracker, configs=3, log=lines.append)
    assert (result.fits_run, result.fits_skipped) == (6, 0)
    assert "3 configs x 2 folds = 6 fits, 0 done already, 6 to run on 2 task slot(s) of local[2]" in lines[0]
    rows = G.read_results(tmp_path / "out" / "results")
    assert sorted((r["config_id"], r["fold"]) for r in rows) == [(c, f) for c in range(3) for f in range(2)]
    assert [e["config_id"] for e in result.ranking] != [] and len(result.ranking) == 3
    means = [e["mean_f1"] for e in result.ranking]
    assert means == sorted(means, reverse=True)

    best = G.write_best(result, tmp_path / "grid_best.yaml")
    v = load_variant(best)
    winner = result.ranking[0]["params"]
    assert v.name == "grid_best" and v.train.epochs == winner["train.epochs"]
    assert list(v.model.lstm_units) == winner["model.lstm_units"] and v.train.dedup_passes == 5
    result.doc_path = str(tmp_path / "grid.md")
    page = G.render(result)
    assert "3 configurations ranked by the mean **f1** over 2 held-out folds" in page
    assert f"| 1 | {winner['train.epochs']} | {json.dumps(winner['model.lstm_units'])} | " \
           f"{result.ranking[0]['mean_f1']:.5f} |" in page
    (tmp_path / "grid.md").write_text(page)
    G.finish_parent(tracker, result)

    # a rerun with one more config runs only its two fits
    again = G.run_grid(spark, grid, data, tmp_path / "out", tracker=tracker, log=None)
    assert (again.fits_run, again.fits_skipped) == (2, 6) and len(again.ranking) == 4
    G.finish_parent(tracker, again)

    client = MlflowClient(tracking_uri=tracker.uri)
    runs = client.search_runs([client.get_experiment_by_name("grid-tests").experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("hdfsad.kind") == "grid-search"]
    children = [r for r in runs if r.data.tags.get("hdfsad.kind") == "grid-fit"]
    assert len(parents) == 2 and len(children) == 8
    first = next(p for p in parents if p.info.run_id == result.parent_run)
    assert sum(c.data.tags["mlflow.parentRunId"] == first.info.run_id for c in children) == 6
    assert first.data.metrics["best_mean_f1"] == pytest.approx(result.ranking[0]["mean_f1"])
    assert {a.path for a in client.list_artifacts(first.info.run_id)} == {"grid.md", "grid_best.yaml"}


def test_committed_pages_show_paths_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert G.shown_path(tmp_path / "work" / "grid" / "results") == os.path.join("work", "grid", "results")
    assert G.shown_path("conf/grid.yaml") == "conf/grid.yaml"
    assert G.shown_path("/elsewhere/grid.yaml") == "/elsewhere/grid.yaml"  # not under the working dir
    assert G.shown_path("hdfs:///warehouse/grid") == "hdfs:///warehouse/grid"
