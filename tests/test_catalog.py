"""The persistent catalog: embedded Derby metastore lock, spark-submit score, Thrift server + beeline."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from hdfsad import catalog, synth
from hdfsad.config import ConfigError, load_config
from hdfsad.models import ModelConfig, build_model
from hdfsad.artifacts import save_model

from conftest import REPO, TEST_OVERRIDES

#: The test overrides, but with the default (embedded) metastore.
EMBEDDED_SETS = [a for o in TEST_OVERRIDES if not o.startswith("catalog.") for a in ("--set", o)]


def test_catalog_settings_are_validated():
    with pytest.raises(ConfigError, match=r"configuration key 'catalog.metastore': expected one of embedded, "
                                          r"hive, session, got 'derby'"):
        load_config(overrides=["catalog.metastore=derby"])
    with pytest.raises(ConfigError, match=r"configuration key 'catalog.database': expected a name of letters, "
                                          r"digits and underscores, starting with a letter, got 'my-db'"):
        load_config(overrides=["catalog.database=my-db"])
    with pytest.raises(ConfigError, match=r"'score.threshold': expected null \(use the model's stored "
                                          r"threshold\) or a number in \[0, 1\], got 1.5"):
        load_config(overrides=["score.threshold=1.5"])


def test_embedded_session_settings_point_under_the_work_dir(tmp_path):
    cfg = load_config(overrides=[f"paths.work_dir={tmp_path}"])
    conf = catalog.session_conf(cfg)
    assert conf["spark.sql.catalogImplementation"] == "hive"
    assert conf["spark.sql.warehouse.dir"] == f"{tmp_path}/warehouse"
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == \
        f"jdbc:derby:;databaseName={tmp_path}/metastore_db;create=true"
    conf_dir = catalog.write_client_conf(cfg)
    text = open(os.path.join(conf_dir, "spark-defaults.conf"), encoding="utf-8").read()
    assert f"spark.sql.warehouse.dir {tmp_path}/warehouse\n" in text
    assert catalog.session_conf(load_config(overrides=["catalog.metastore=hive"])) == \
        {"spark.sql.catalogImplementation": "hive"}


def test_a_second_job_on_the_embedded_metastore_fails_at_once(tmp_path):
    cfg = load_config(overrides=[f"paths.work_dir={tmp_path}"])
    catalog.acquire(cfg)
    try:
        start = time.time()
        out = subprocess.run([sys.executable, "-m", "hdfsad.cli", "sql", "SELECT 1", "--set",
                              f"paths.work_dir={tmp_path}"], capture_output=True, text=True, timeout=300)
        seconds = time.time() - start
    finally:
        catalog.release()
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"hdfsad sql: error: the embedded metastore under {tmp_path} is in use by "
                                 f"hdfsad pid {os.getpid()} since ")
    assert "embedded Derby admits one job at a time: wait for that job to finish, use another " \
           "paths.work_dir, or configure a shared metastore (catalog.metastore: hive)" in out.stderr
    assert "Exception" not in out.stderr and seconds < 60  # no JVM was started
    catalog.acquire(cfg)  # released: the next job gets it
    catalog.release()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the Thrift server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(1)
    raise AssertionError(f"the Thrift server did not listen on 127.0.0.1:{port} within {seconds} s")


@pytest.mark.slow
def test_spark_submit_score_then_beeline_through_the_thrift_server(tmp_path):
    """spark-submit.sh score on raw logs (embedded metastore) → Thrift server on the same warehouse →
    beeline SELECT on scores; while the server holds Derby, a scoring job fails at once."""
    res = synth.generate(str(tmp_path / "logs"), 120, seed=4, n_files=2)
    model = tmp_path / "model"
    save_model(model, build_model(ModelConfig(lstm_units=(8,), max_len=10), seed=1), threshold=0.5)
    sets = [*EMBEDDED_SETS, "--set", f"paths.work_dir={tmp_path}/work", "--set", f"paths.tables={tmp_path}/tables"]
    score = [os.path.join(REPO, "spark-submit.sh"), "score", "--model", str(model), "--input", *res.log_files,
             "--labels", res.labels_csv, "--date", "2008-11-09", *sets, "--", "--driver-memory", "1g",
             "--master", "local[2]"]
    out = subprocess.run(score, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "blocks scored              120" in out.stdout
    assert "catalog tables             sequences, scores, runs" in out.stdout

    cfg = load_config(overrides=[*(o for o in TEST_OVERRIDES if not o.startswith("catalog.")),
                                 f"paths.work_dir={tmp_path}/work", f"paths.tables={tmp_path}/tables"])
    port = _free_port()
    argv, env = catalog.thriftserver_command(cfg, "127.0.0.1", port)
    server = subprocess.Popen(argv, env=env, stdout=open(tmp_path / "thrift.log", "w"), stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, server, 240)
        beeline = [os.path.join(catalog.spark_home(), "bin", "beeline"), "-u",
                   f"jdbc:hive2://127.0.0.1:{port}/hdfsad", "--silent=true", "--outputformat=csv2", "-e",
                   "SELECT count(*) AS n, count(DISTINCT block_id) AS blocks FROM scores; "
                   "SELECT status, blocks FROM runs"]
        got = subprocess.run(beeline, capture_output=True, text=True, timeout=300,
                             env={**env, "SPARK_HOME": catalog.spark_home()})
        assert got.returncode == 0, got.stderr[-3000:]
        # beeline -e echoes its prompt ("0: jdbc:hive2://...> ") before the first result line
        lines = [l.split("> ", 1)[-1] for l in got.stdout.splitlines() if l.strip()]
        assert lines == ["n,blocks", "120,120", "status,blocks", "ok,120"], got.stdout

        start = time.time()
        busy = subprocess.run([sys.executable, "-m", "hdfsad.cli", "score", "--model", str(model), "--date",
                               "2008-11-09", *sets], capture_output=True, text=True, timeout=300)
        assert busy.returncode == 2
        assert busy.stderr.startswith(f"hdfsad score: error: the embedded metastore {tmp_path}/work/metastore_db "
                                      f"is open in another process (spark-sql, the Thrift server")
        assert time.time() - start < 60
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
    assert server.returncode is not None
