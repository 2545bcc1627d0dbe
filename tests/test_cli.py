"""Entry points: the hdfsad command line (in process) and spark-submit.sh (a real spark-submit)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hdfsad import synth
from hdfsad.cli import main

from conftest import REPO, TEST_OVERRIDES

SETS = [a for o in TEST_OVERRIDES for a in ("--set", o)]


def test_spark_submit_help_lists_the_jobs():
    out = subprocess.run([os.path.join(REPO, "spark-submit.sh"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "ingest" in out.stdout and "import-reference" in out.stdout and "--master" in out.stdout


def test_spark_submit_rejects_an_unknown_job():
    out = subprocess.run([os.path.join(REPO, "spark-submit.sh"), "trian"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown job 'trian'; jobs: ingest import-reference" in out.stderr


def test_cli_errors_are_one_clear_line(spark, tmp_path, capsys):
    rc = main(["ingest", str(tmp_path / "missing-*.log"), "--set", f"paths.tables={tmp_path}/t", *SETS])
    assert rc == 2
    assert f"hdfsad ingest: error: input '{tmp_path}/missing-*.log' matches no file or directory" in capsys.readouterr().err
    rc = main(["ingest", str(tmp_path), "--set", "ingest.max_line_chars=-1"])
    assert rc == 2
    assert "configuration key 'ingest.max_line_chars': expected an integer >= 64, got -1" in capsys.readouterr().err


def test_cli_synth_and_import_reference(spark, tmp_path, capsys):
    assert main(["synth", "generate", str(tmp_path / "logs"), "--blocks", "50", "--seed", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    csv = tmp_path / "ref.csv"
    csv.write_text('id,sequence,class\n0,"(4, 21)",normal\n1,"(4,)",abnormal\n')
    assert main(["import-reference", str(csv), "--tables", str(tmp_path / "t"), *SETS]) == 0
    assert "imported 2 sequences" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_demo_runs_the_main_job(spark, tmp_path, capsys):
    assert main(["demo", "--blocks", "300", "--dir", str(tmp_path / "demo"), *SETS]) == 0
    out = capsys.readouterr().out
    assert "ingest summary" in out and "blocks                                        300" in out
    assert os.path.isdir(tmp_path / "demo" / "tables" / "sequences" / "ingest_date=2008-11-09")


@pytest.mark.slow
def test_spark_submit_runs_ingest_with_spark_options_passed_through(tmp_path):
    res = synth.generate(str(tmp_path / "logs"), 120, seed=2, n_files=2, compress="bz2")
    cmd = [os.path.join(REPO, "spark-submit.sh"), "ingest", str(tmp_path / "logs" / "*.log.bz2"),
           "--labels", res.labels_csv, "--date", "2008-11-10", "--set", f"paths.tables={tmp_path}/t",
           "--", "--master", "local[2]", "--conf", "spark.sql.shuffle.partitions=3", "--driver-memory", "1g"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HDFSAD_PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ingest summary" in out.stdout
    assert "blocks                                        120" in out.stdout
    assert "labelled blocks                               120" in out.stdout
    assert os.path.isdir(tmp_path / "t" / "sequences" / "ingest_date=2008-11-10")
