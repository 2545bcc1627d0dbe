"""A real Spark standalone cluster on 127.0.0.1: a master and two one-core workers started from the pip
PySpark installation; ingest, 2-process DDP training and a reduced grid search are submitted to it
through ``spark-submit.sh -- --master spark://127.0.0.1:<port>``. Every process started here is
stopped by its pid (its process group), also when a test fails."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hdfsad import synth

from conftest import REPO

pytestmark = pytest.mark.slow

WORKERS = 2
STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_home() -> str:
    import pyspark

    return os.path.dirname(pyspark.__file__)


def alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as resp:
            state = json.load(resp)
    except OSError:
        return -1
    return sum(w.get("state") == "ALIVE" for w in state.get("workers", []))


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group the process leads (the JVM and any executor it forked), then
    SIGKILL when it has not exited within 20 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # executors left behind by the worker share its group
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``spark://127.0.0.1:<port>`` of a running master with WORKERS registered one-core workers."""
    base = tmp_path_factory.mktemp("standalone")
    home = spark_home()
    env = {**os.environ, "SPARK_HOME": home, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(base / "logs"),
           "PYSPARK_PYTHON": sys.executable, "SPARK_NO_DAEMONIZE": "1"}
    port, ui = free_port(), free_port()
    klass = os.path.join(home, "bin", "spark-class")
    procs: list[subprocess.Popen] = []
    logs = []

    def start(name: str, args: list[str]) -> None:
        log = open(base / f"{name}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([klass, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, cwd=base))

    try:
        start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                         "--webui-port", str(ui)])
        for i in range(WORKERS):
            start(f"worker{i}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                                 "--memory", "3g", "--webui-port", str(free_port()), "--work-dir",
                                 str(base / f"work{i}"), f"spark://127.0.0.1:{port}"])
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while alive_workers(ui) < WORKERS:
            dead = [p.args[1] for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                                  for p in sorted(base.glob("*.log")))
                pytest.fail(f"standalone cluster did not come up ({'exited: ' + str(dead) if dead else 'timeout'}, "
                            f"{alive_workers(ui)} alive workers)\n{tails}")
            time.sleep(1)
        yield {"master": f"spark://127.0.0.1:{port}", "ui": ui, "base": base}
    finally:
        for proc in reversed(procs):
            stop(proc)
        for log in logs:
            log.close()


def submit(cluster, job: str, *args: str, timeout: int = 420) -> str:
    cmd = [os.path.join(REPO, "spark-submit.sh"), job, *args, "--", "--master", cluster["master"],
           "--driver-memory", "1g", "--executor-memory", "1g", "--conf", "spark.sql.shuffle.partitions=2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cluster["base"],
                         env={**os.environ, "HDFSAD_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"})
    assert out.returncode == 0, f"{job} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out.stdout


def completed_apps(cluster) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster['ui']}/json/", timeout=5) as resp:
        return [a["name"] for a in json.load(resp).get("completedapps", [])]


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
    assert f"DDP on 2 process(es) (gloo, CPU) through TorchDistributor on {cluster['master']}" in out
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
    assert "4 fits, 0 done already, 4 to run on 2 task slot(s) of " + cluster["master"] in out
    assert len(list((tmp_path / "grid" / "results").glob("fit-*.parquet"))) == 4
    assert (tmp_path / "grid.md").read_text().startswith("# Grid search `small`")
    assert "name: grid_best" in (tmp_path / "grid_best.yaml").read_text()
    assert {"hdfsad-ingest", "hdfsad-train", "hdfsad-grid-search"} <= set(completed_apps(cluster))
