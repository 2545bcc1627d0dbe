"""Fault tolerance on a real standalone cluster (master + two one-core workers on 127.0.0.1).

* a worker (its JVM and its executor) is SIGKILLed while ``ingest`` and then ``score`` run, after the
  first tasks finished: the job completes on the surviving worker and its tables equal those of an
  undisturbed run, row for row;
* a worker is SIGKILLed during 2-process DDP training: the barrier job fails (Spark never retries a
  barrier result stage), ``hdfsad train`` starts it again once the worker is back, and training
  continues from the last epoch checkpoint, not from epoch 0;
* the driver of a ``score`` run is SIGKILLed while it writes: that date's ``scores`` partition is
  still the previous run's, whole; a rerun replaces it with no duplicates.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from hdfsad import synth

from standalone import StandaloneCluster, stop, submit, submit_cmd, submit_env

pytestmark = pytest.mark.slow

DATE = "2008-11-09"
WORKERS = ["worker0", "worker1"]
#: Many small tasks (so that the job is still running when the first has finished), and no
#: coalescing of them by adaptive execution.
MANY_TASKS = ["--conf", "spark.sql.files.maxPartitionBytes=262144",
              "--conf", "spark.sql.adaptive.coalescePartitions.enabled=false"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = StandaloneCluster(tmp_path_factory.mktemp("faults"), workers=len(WORKERS))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture()
def healthy(cluster):
    """Both workers up before and after each test (a test kills one)."""
    cluster.ensure_workers(WORKERS)
    yield cluster
    cluster.ensure_workers(WORKERS)


def sets(root: Path) -> list[str]:
    return ["--set", f"paths.tables={root}/tables", "--set", "catalog.metastore=session",
            "--set", f"paths.work_dir={root}/work", "--set", "tracking.enabled=false",
            "--set", "score.report=false", "--set", "spark.conf.spark.sql.shuffle.partitions=8"]


def start(cluster, cwd: Path, job: str, *args: str) -> subprocess.Popen:
    cmd = submit_cmd(cluster.master, job, *args)
    return subprocess.Popen(cmd + MANY_TASKS, cwd=cwd, env=submit_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: int = 420) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise
    assert proc.returncode == 0, f"job failed ({proc.returncode}):\n{out[-3000:]}\n{err[-6000:]}"
    return out, err


def kill_a_worker_after_first_tasks(cluster, proc: subprocess.Popen, earlier: set[Path],
                                    timeout: float = 300) -> str:
    """Wait until an executor of ``proc``'s job finished a task, then SIGKILL that worker (its map
    output goes with it). ``earlier``: the application dirs that existed before ``proc`` started (the
    tasks of earlier jobs on the same workers must not count, or a worker is killed before the job
    has an executor on it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before any task was seen finishing"
        done = {name: cluster.finished_tasks(name, earlier) for name in WORKERS if name in cluster.procs}
        busy = [name for name, n in done.items() if n > 0]
        if busy:
            cluster.kill_worker(busy[0])
            return busy[0]
        time.sleep(0.1)
    raise AssertionError("no task finished in time")


def table_rows(spark, path: str, columns: list[str]) -> list[tuple]:
    return sorted(tuple(r) for r in spark.read.parquet(path).select(*columns).collect())


def untrained_model(path: Path) -> str:
    from hdfsad.artifacts import save_model
    from hdfsad.models import ModelConfig, build_model

    save_model(path, build_model(ModelConfig(lstm_units=(16,), max_len=19), seed=0), threshold=0.5,
               extra={"variant": {"name": "faults-untrained"}})
    return str(path)


SEQ_COLS = ["block_id", "events", "length", "first_ts", "last_ts", "label", "ingest_date"]
SCORE_COLS = ["block_id", "score", "is_anomaly", "length", "first_ts", "last_ts", "ingest_date"]


def test_losing_a_worker_during_ingest_and_scoring_changes_no_output_row(healthy, spark, tmp_path):
    cluster = healthy
    logs = synth.generate(str(tmp_path / "logs"), 6000, anomaly_rate=0.05, seed=5, n_files=6)
    model = untrained_model(tmp_path / "model")
    ingest_args = [str(tmp_path / "logs"), "--labels", logs.labels_csv, "--date", DATE]

    # undisturbed reference runs
    calm, hit = tmp_path / "calm", tmp_path / "hit"
    finish(start(cluster, cluster.base, "ingest", *ingest_args, *sets(calm)))
    calm_seqs = str(calm / "tables" / "sequences")
    finish(start(cluster, cluster.base, "score", "--model", model, "--input", calm_seqs, "--date", DATE, *sets(calm)))

    # the same with a worker lost mid-job, each time
    earlier = cluster.app_dirs()
    proc = start(cluster, cluster.base, "ingest", *ingest_args, *sets(hit))
    kill_a_worker_after_first_tasks(cluster, proc, earlier)
    out, err = finish(proc)
    assert "Lost executor" in err  # the driver saw the executor go while the job ran
    assert "blocks                                        6000" in out
    cluster.ensure_workers(WORKERS)
    hit_seqs = str(hit / "tables" / "sequences")
    earlier = cluster.app_dirs()
    proc = start(cluster, cluster.base, "score", "--model", model, "--input", hit_seqs, "--date", DATE, *sets(hit))
    kill_a_worker_after_first_tasks(cluster, proc, earlier)
    out, err = finish(proc)
    assert "Lost executor" in err
    assert "blocks scored              6000" in out

    assert table_rows(spark, hit_seqs, SEQ_COLS) == table_rows(spark, calm_seqs, SEQ_COLS)
    calm_scores = table_rows(spark, str(calm / "tables" / "scores"), SCORE_COLS)
    hit_scores = table_rows(spark, str(hit / "tables" / "scores"), SCORE_COLS)
    assert len(hit_scores) == len(calm_scores) == 6000
    for a, b in zip(hit_scores, calm_scores):
        assert a[0] == b[0] and a[2:] == b[2:] and a[1] == pytest.approx(b[1], abs=1e-6)


def test_losing_a_worker_during_ddp_training_resumes_from_the_last_checkpoint(healthy, tmp_path):
    cluster = healthy
    logs = synth.generate(str(tmp_path / "logs"), 1500, anomaly_rate=0.15, seed=3, n_files=2)
    submit(cluster.master, cluster.base, "ingest", str(tmp_path / "logs"), "--labels", logs.labels_csv,
           "--date", DATE, *sets(tmp_path))
    variant = tmp_path / "slow.yaml"
    variant.write_text("name: slow\nmodel: {lstm_units: [32, 32]}\n"
                       "train: {epochs: 12, batch_size: 16, patience: null}\n")
    run = tmp_path / "run"
    proc = subprocess.Popen(submit_cmd(cluster.master, "train", "--variant", str(variant), "--table",
                                       str(tmp_path / "tables" / "sequences"), "--out", str(run),
                                       "--num-processes", "2", *sets(tmp_path)),
                            cwd=cluster.base, env=submit_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    checkpoint = run / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists():  # the first epoch is done and saved
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"training ended before its first checkpoint:\n{out[-3000:]}\n{err[-8000:]}")
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.1)
    time.sleep(1.0)
    cluster.kill_worker("worker1")
    cluster.ensure_workers(WORKERS)  # the next attempt needs two task slots again
    out, err = finish(proc, timeout=600)

    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["resumed_from"] is not None and meta["resumed_from"] >= 1  # not epoch 0
    assert meta["epochs_done"] == 12 and meta["distributed"]["num_processes"] == 2
    assert "[slow / seed] attempt 1 of 3 of the DDP job failed (" in out
    assert f"resumed from the checkpoint after epoch {meta['resumed_from']} (written by a failed attempt of " \
           f"the DDP job)" in out
    assert "[slow / seed] test at threshold" in out
    assert (run / "report.html").is_file()


def test_a_killed_scoring_driver_leaves_the_previous_partition_whole(healthy, spark, tmp_path):
    cluster = healthy
    logs = synth.generate(str(tmp_path / "logs"), 4000, anomaly_rate=0.05, seed=9, n_files=4)
    submit(cluster.master, cluster.base, "ingest", str(tmp_path / "logs"), "--date", DATE, *sets(tmp_path))
    model = untrained_model(tmp_path / "model")
    seqs = str(tmp_path / "tables" / "sequences")
    scores = tmp_path / "tables" / "scores"
    args = ["--model", model, "--input", seqs, "--date", DATE, *sets(tmp_path)]
    finish(start(cluster, cluster.base, "score", *args))
    before = spark.read.parquet(str(scores)).where(F.col("ingest_date") == DATE).collect()
    assert len(before) == 4000 and len({r.run_id for r in before}) == 1

    proc = start(cluster, cluster.base, "score", *args)
    deadline = time.monotonic() + 300
    while not list(scores.glob(".spark-staging-*")):  # the new files are being written aside
        assert proc.poll() is None, "the run ended before it wrote:\n" + proc.stderr.read()[-4000:]
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.02)
    stop(proc, signal.SIGKILL, 0)  # the driver (spark-submit's JVM and Python) dies mid-write

    after = spark.read.parquet(str(scores)).where(F.col("ingest_date") == DATE).collect()
    assert sorted(map(tuple, after)) == sorted(map(tuple, before))  # the old partition, whole

    out, _ = finish(start(cluster, cluster.base, "score", *args))
    assert "blocks scored              4000" in out
    final = spark.read.parquet(str(scores)).where(F.col("ingest_date") == DATE)
    assert final.count() == 4000 and final.select("block_id").distinct().count() == 4000
    assert final.select("run_id").distinct().count() == 1 and final.first().run_id != before[0].run_id
