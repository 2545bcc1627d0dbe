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
    assert all(job in out.stdout for job in ("ingest", "import-reference", "train", "compare", "--master"))


def test_spark_submit_rejects_an_unknown_job():
    out = subprocess.run([os.path.join(REPO, "spark-submit.sh"), "trian"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown job 'trian'; jobs: ingest import-reference train compare score sql explain grid-search" in out.stderr


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
    # 2,000 blocks (60 anomalous, seed 7): the validation split of the training step holds anomalies
    assert main(["demo", "--blocks", "2000", "--dir", str(tmp_path / "demo"), *SETS]) == 0
    out = capsys.readouterr().out
    assert "ingest summary" in out and "blocks                                        2000" in out
    assert os.path.isdir(tmp_path / "demo" / "tables" / "sequences" / "ingest_date=2008-11-09")
    assert "[demo_fast / seed] test at threshold" in out
    assert "blocks scored              2000" in out and "catalog tables             sequences, scores, runs" in out
    assert "[demo] the top anomalies through Spark SQL:" in out and "|block_id" in out.replace(" ", "")
    assert os.path.isfile(tmp_path / "demo" / "reports" / "2008-11-09" / "report.html")


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


def test_cli_train_and_compare_errors_are_one_clear_line(tmp_path, capsys):
    base = ["train", "--variant", "v2_grid", "--table", str(tmp_path / "t"), "--out", str(tmp_path / "o")]
    assert main(base) == 2
    assert f"hdfsad train: error: sequences table {tmp_path / 't'} does not exist" in capsys.readouterr().err
    assert main([*base, "--set", "train.epochs=0"]) == 2
    assert "hdfsad train: error: " in (err := capsys.readouterr().err) and "train.epochs: expected an integer >= 1, got 0" in err
    assert main([*base, "--set", "ingest.bogus=1"]) == 2
    assert "unknown configuration key 'ingest.bogus'" in capsys.readouterr().err
    assert main([*base, "--threads", "0"]) == 2
    assert "hdfsad train: error: --threads: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["compare", "--no-baseline", "--set", f"paths.reference_data={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert f"hdfsad compare: error: the labelled reference data is not at {tmp_path}/hdfs_v1/" in err


@pytest.mark.slow
def test_cli_train_on_an_ingested_table(spark, cfg, tmp_path, capsys):
    from hdfsad.ingest import run_ingest

    res = synth.generate(str(tmp_path / "logs"), 400, anomaly_rate=0.15, seed=5, n_files=2)
    run_ingest(spark, cfg, [str(tmp_path / "logs")], "2008-11-09", labels=res.labels_csv,
               tables=str(tmp_path / "t"))
    (tmp_path / "tiny.yaml").write_text("name: tiny\nmodel: {lstm_units: [8]}\ntrain: {epochs: 5, dedup: true}\n")
    args = ["train", "--variant", str(tmp_path / "tiny.yaml"), "--table", str(tmp_path / "t" / "sequences"),
            "--out", str(tmp_path / "run"), "--set", "train.epochs=2", *SETS]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"[tiny / seed] 400 labelled sequences ({res.anomalies} anomalies) from {tmp_path / 't' / 'sequences'}" in out
    assert "epoch 2/2  loss" in out and "[tiny / seed] test at threshold" in out
    assert (tmp_path / "run" / "model" / "model.json").is_file() and (tmp_path / "run" / "report.html").is_file()
    assert main([*args, "--resume"]) == 0
    assert "resumed from checkpoint after epoch 2" in capsys.readouterr().out
