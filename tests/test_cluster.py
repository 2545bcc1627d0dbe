"""A real Spark standalone cluster on 127.0.0.1: a master and two one-core workers started from the pip
PySpark installation; ingest, 2-process DDP training and a reduced grid search are submitted to it
through ``spark-submit.sh -- --master spark://127.0.0.1:<port>``. Every process started here is
stopped by its pid (its process group), also when a test fails."""
from __future__ import annotations

import json

import pytest

from hdfsad import synth

from standalone import StandaloneCluster, submit as _submit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running master with two registered one-core workers."""
    c = StandaloneCluster(tmp_path_factory.mktemp("standalone"), workers=2)
    try:
        yield c
    finally:
        c.close()


def submit(cluster, job: str, *args: str, timeout: int = 420) -> str:
    return _submit(cluster.master, cluster.base, job, *args, timeout=timeout)


def test_ingest_train_and_grid_search_on_a_standalone_cluster(cluster, tmp_path):
    sets = ["--set", f"paths.tables={tmp_path}/tables", "--set", "catalog.metastore=session",
            "--set", f"paths.work_dir={tmp_path}/work"]
    res = synth.generate(str(tmp_path / "logs"), 600, anomaly_rate=0.15, seed=11, n_files=2)
    out = submit(cluster, "ingest", str(tmp_path / "logs"), "--labels", res.labels_csv, "--date", "2008-11-09",
                 *sets)
    assert "blocks                                        600" in out
    table = str(tmp_path / "tables" / "sequences")

    (tmp_path / "tiny.yaml").write_text("name: tiny\nmodel: {lstm_units: [8]}\n"
                                        "train: {epochs: 2, dedup: true, dedup_passes: 5, patience: null}\n")
    out = submit(cluster, "train", "--variant", str(tmp_path / "tiny.yaml"), "--table", table, "--out",
                 str(tmp_path / "run"), "--num-processes", "2", *sets)
    assert f"DDP on 2 process(es) (gloo, CPU) through TorchDistributor on {cluster.master}" in out
    assert "[tiny / seed] test at threshold" in out and "MLflow run " in out
    meta = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert meta["distributed"]["num_processes"] == 2 and meta["distributed"]["backend"] == "gloo"
    assert (tmp_path / "run" / "report.html").is_file()
    assert (tmp_path / "work" / "mlruns").is_dir()

    (tmp_path / "grid.yaml").write_text(
        f"name: small\nbase_variant: {tmp_path / 'tiny.yaml'}\nparams:\n  train.epochs: [1, 2]\n"
        f"  model.lstm_units: [[4], [8]]\nfolds: 3\n")
    out = submit(cluster, "grid-search", "--grid", str(tmp_path / "grid.yaml"), "--table", table,
                 "--out", str(tmp_path / "grid"), "--doc", str(tmp_path / "grid.md"),
                 "--best", str(tmp_path / "grid_best.yaml"), "--configs", "2", "--folds", "2", *sets)
    assert "[grid small] 4 fits run, 0 skipped" in out
    assert "4 fits, 0 done already, 4 to run on 2 task slot(s) of " + cluster.master in out
    assert len(list((tmp_path / "grid" / "results").glob("fit-*.parquet"))) == 4
    assert (tmp_path / "grid.md").read_text().startswith("# Grid search `small`")
    assert "name: grid_best" in (tmp_path / "grid_best.yaml").read_text()
    assert {"hdfsad-ingest", "hdfsad-train", "hdfsad-grid-search"} <= set(cluster.completed_apps())
