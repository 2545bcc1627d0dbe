"""The scoring job on generated logs: pandas UDF scores, dedup, tables, nightly semantics, explain, report.

In process, on the shared session (in-memory catalog); the persistent Derby catalog, spark-submit and
the Thrift server are in tests/test_catalog.py.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from pyspark.sql import functions as F

from hdfsad import schemas as S
from hdfsad import synth
from hdfsad.artifacts import ArtifactError, load_model, predict_proba, save_model
from hdfsad.config import load_config
from hdfsad.explain import BlockNotFound, explain
from hdfsad.ingest import run_ingest
from hdfsad.models import ModelConfig, build_model
from hdfsad.nightly import run_score
from hdfsad.scoring import load_scoring_model

from conftest import TEST_OVERRIDES

DATE = "2008-11-09"
MAX_LEN = 10  # shorter than most sequences, so that truncation matters to dedup


def make_cfg(tmp, *extra):
    return load_config(overrides=[*TEST_OVERRIDES, f"paths.tables={tmp}/tables", f"paths.work_dir={tmp}/work",
                                  *extra])


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    """300 generated blocks ingested once: (tables root, {block_id: events})."""
    tmp = tmp_path_factory.mktemp("scoring")
    res = synth.generate(str(tmp / "logs"), 300, anomaly_rate=0.1, seed=11, n_files=2)
    cfg = make_cfg(tmp)
    run_ingest(spark, cfg, res.log_files, DATE, labels=res.labels_csv)
    rows = spark.read.parquet(f"{tmp}/tables/sequences").select(S.BLOCK_ID, S.EVENTS).collect()
    return tmp, {r[S.BLOCK_ID]: list(r[S.EVENTS]) for r in rows}, res


@pytest.fixture(scope="module")
def model_dir(corpus, tmp_path_factory):
    """An (untrained, seeded) model whose stored threshold is the median score, so both classes occur."""
    _, seqs, _ = corpus
    model = build_model(ModelConfig(lstm_units=(8,), max_len=MAX_LEN), seed=3)
    median = float(np.median(predict_proba(model, list(seqs.values()))))
    out = tmp_path_factory.mktemp("model") / "model"
    save_model(out, model, threshold=median, extra={"variant": {"name": "tiny"}})
    return str(out)


def fresh_tables(corpus, tmp_path):
    """A copy of the ingested tables, so a test may rewrite them."""
    shutil.copytree(corpus[0] / "tables", tmp_path / "tables")
    return make_cfg(tmp_path)


def read_scores(spark, cfg, date=DATE):
    return spark.read.parquet(f"{cfg['paths']['tables']}/scores").where(F.col(S.INGEST_DATE) == date)


def direct_scores(model_dir, seqs):
    ids = sorted(seqs)
    return dict(zip(ids, predict_proba(load_model(model_dir), [seqs[i] for i in ids])))


@pytest.mark.parametrize("dedup", [True, False])
def test_scores_equal_the_model_applied_directly(spark, corpus, model_dir, tmp_path, dedup):
    _, seqs, _ = corpus
    cfg = fresh_tables(corpus, tmp_path)
    cfg["score"]["dedup"] = dedup
    model = load_scoring_model(model_dir)
    summary = run_score(spark, cfg, model, DATE, log=None)
    got = {r[S.BLOCK_ID]: r for r in read_scores(spark, cfg).collect()}
    want = direct_scores(model_dir, seqs)
    assert set(got) == set(want) and summary.blocks == len(seqs) == 300
    diff = max(abs(got[b][S.SCORE] - want[b]) for b in want)
    assert diff < 1e-6, f"largest score difference {diff}"
    assert all(got[b][S.IS_ANOMALY] == (want[b] >= model.threshold) for b in want)
    assert summary.anomalies == sum(want[b] >= model.threshold for b in want) > 0
    windows = {tuple(s[-MAX_LEN:]) for s in seqs.values()}
    assert summary.distinct_sequences == (len(windows) if dedup else 300)
    assert len(windows) < 300
    r = got[next(iter(want))]
    assert (r[S.MODEL_NAME], r[S.MODEL_VERSION], r[S.RUN_ID]) == ("tiny", model.version, summary.run_id)
    assert r[S.LENGTH] == len(seqs[r[S.BLOCK_ID]])
    assert read_scores(spark, cfg).schema == S.SCORES_SCHEMA or \
        [f.name for f in read_scores(spark, cfg).schema.fields] == [f.name for f in S.SCORES_SCHEMA.fields]


def test_sql_counts_and_runs_row(spark, corpus, model_dir, tmp_path):
    _, seqs, _ = corpus
    cfg = fresh_tables(corpus, tmp_path)
    cfg["catalog"]["database"] = "scoring_sql"
    summary = run_score(spark, cfg, load_scoring_model(model_dir), DATE, log=None)
    assert summary.registered == ["sequences", "scores", "runs"]
    want = direct_scores(model_dir, seqs)
    row = spark.sql(f"SELECT count(*) n, sum(CAST(is_anomaly AS INT)) a FROM scoring_sql.scores "
                    f"WHERE ingest_date = DATE'{DATE}'").first()
    assert (row.n, row.a) == (300, sum(v >= summary.model.threshold for v in want.values()))
    joined = spark.sql("SELECT count(*) FROM scoring_sql.scores JOIN scoring_sql.sequences "
                       "USING (block_id, ingest_date)").first()[0]
    assert joined == 300
    run = spark.sql("SELECT * FROM scoring_sql.runs").collect()
    assert len(run) == 1 and run[0].status == "ok" and run[0].blocks == 300
    assert run[0].distinct_sequences == summary.distinct_sequences and run[0].seconds["score + write"] > 0
    assert os.path.isfile(summary.report)
    page = open(summary.report, encoding="utf-8").read()
    assert f"{summary.anomalies:,}" in page and "score_histogram.png" in page and "Top 20 blocks" in page
    assert os.path.isfile(os.path.join(os.path.dirname(summary.report), "score_histogram.png"))


def test_rerun_of_a_date_replaces_its_partition(spark, corpus, model_dir, tmp_path):
    cfg = fresh_tables(corpus, tmp_path)
    model = load_scoring_model(model_dir)
    first = run_score(spark, cfg, model, DATE, log=None)
    second = run_score(spark, cfg, load_scoring_model(model_dir, threshold=0.0), DATE, log=None)
    scores = read_scores(spark, cfg)
    assert scores.count() == scores.select(S.BLOCK_ID).distinct().count() == 300
    assert {r[0] for r in scores.select(S.RUN_ID).distinct().collect()} == {second.run_id}
    assert scores.where(~F.col(S.IS_ANOMALY)).count() == 0  # threshold 0: the second run's rows
    runs = spark.read.parquet(f"{tmp_path}/tables/runs").collect()
    assert sorted(r.run_id for r in runs) == sorted([first.run_id, second.run_id])


def test_failed_run_leaves_the_previous_partition_intact(spark, corpus, model_dir, tmp_path):
    cfg = fresh_tables(corpus, tmp_path)
    model = load_scoring_model(model_dir)
    good = run_score(spark, cfg, model, DATE, log=None)
    before = sorted(tuple(r) for r in read_scores(spark, cfg).select(S.BLOCK_ID, S.SCORE, S.RUN_ID).collect())
    part = tmp_path / "tables" / "sequences" / f"ingest_date={DATE}"
    (part / "part-99999-damaged.snappy.parquet").write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(Exception) as err:
        run_score(spark, cfg, model, DATE, log=None)
    assert "parquet" in str(err.value).lower()
    after = sorted(tuple(r) for r in read_scores(spark, cfg).select(S.BLOCK_ID, S.SCORE, S.RUN_ID).collect())
    assert after == before and {r[2] for r in after} == {good.run_id}
    runs = {r.run_id: r for r in spark.read.parquet(f"{tmp_path}/tables/runs").collect()}
    failed = [r for r in runs.values() if r.status == "failed"]
    assert len(runs) == 2 and len(failed) == 1 and "parquet" in failed[0].error.lower()


def test_empty_input_is_a_clean_run_with_zero_rows(spark, model_dir, tmp_path):
    cfg = make_cfg(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "empty.log").write_text("")
    summary = run_score(spark, cfg, load_scoring_model(model_dir), DATE, [str(tmp_path / "logs")], log=None)
    assert (summary.status, summary.blocks, summary.anomalies, summary.lines) == ("ok", 0, 0, 0)
    assert summary.rejects == 1  # the empty file, recorded by the ingest stage
    assert summary.message == (f"no sequences for {DATE} in {tmp_path}/tables/sequences: nothing to score; "
                               f"the scores partition of that date is empty")
    assert not os.path.exists(tmp_path / "tables" / "scores" / f"ingest_date={DATE}")
    runs = spark.read.parquet(f"{tmp_path}/tables/runs").collect()
    assert [(r.status, r.blocks) for r in runs] == [("ok", 0)]
    assert "No block was scored on this date." in open(summary.report, encoding="utf-8").read()


def test_blocks_straddling_midnight_are_scored_on_all_their_events(spark, model_dir, tmp_path):
    """Lines of 23:59:30 onwards, split by day into two nightly inputs; lookback 1 merges them."""
    res = synth.generate(str(tmp_path / "all"), 60, seed=5, n_files=1, start="081109 235930")
    lines = open(res.log_files[0], encoding="utf-8").read().splitlines(keepends=True)
    for day, prefix in (("2008-11-09", "081109"), ("2008-11-10", "081110")):
        (tmp_path / day).mkdir()
        (tmp_path / day / "part.log").write_text("".join(l for l in lines if l.startswith(prefix)))
    model = load_scoring_model(model_dir)
    full_cfg = make_cfg(tmp_path / "full")
    run_ingest(spark, full_cfg, res.log_files, "2008-11-10")
    full = {r[S.BLOCK_ID]: list(r[S.EVENTS]) for r in spark.read.parquet(f"{tmp_path}/full/tables/sequences").collect()}

    cfg = make_cfg(tmp_path / "nightly")
    run_score(spark, cfg, model, "2008-11-09", [str(tmp_path / "2008-11-09")], log=None)
    day2 = run_score(spark, cfg, model, "2008-11-10", [str(tmp_path / "2008-11-10")], log=None)
    seqs = spark.read.parquet(f"{tmp_path}/nightly/tables/sequences")
    by_day = {d: {r[S.BLOCK_ID] for r in seqs.where(F.col(S.INGEST_DATE) == d).collect()}
              for d in ("2008-11-09", "2008-11-10")}
    straddling = by_day["2008-11-09"] & by_day["2008-11-10"]
    assert straddling, "the generated logs should have blocks on both sides of midnight"
    got = {r[S.BLOCK_ID]: r for r in read_scores(spark, cfg, "2008-11-10").collect()}
    assert set(got) == by_day["2008-11-10"] and day2.blocks == len(got)
    want = direct_scores(model_dir, {b: full[b] for b in got})
    for b in straddling:
        assert got[b][S.LENGTH] == len(full[b])
        assert abs(got[b][S.SCORE] - want[b]) < 1e-6

    alone_cfg = make_cfg(tmp_path / "nightly", "score.lookback_days=0")
    run_score(spark, alone_cfg, model, "2008-11-10", log=None)
    alone = {r[S.BLOCK_ID]: r[S.LENGTH] for r in read_scores(spark, alone_cfg, "2008-11-10").collect()}
    assert all(alone[b] < len(full[b]) for b in straddling)


def test_explain_prints_score_events_and_raw_lines(spark, model_dir, tmp_path):
    res = synth.generate(str(tmp_path / "logs"), 20, seed=9, n_files=1)
    cfg = make_cfg(tmp_path, "ingest.keep_events=true")
    run_score(spark, cfg, load_scoring_model(model_dir), DATE, res.log_files, log=None)
    block = spark.read.parquet(f"{tmp_path}/tables/scores").first()
    text = explain(spark, cfg, block[S.BLOCK_ID])
    assert text.startswith(f"block {block[S.BLOCK_ID]}  date {DATE}")
    assert f"score {block[S.SCORE]:.6f}" in text
    assert "E22 " in text and "allocateBlock" in text  # every generated block starts with E22
    raw = [l for l in open(res.log_files[0], encoding="utf-8") if block[S.BLOCK_ID] + " " in l
           or l.rstrip().endswith(block[S.BLOCK_ID])]
    assert f"  {raw[0].rstrip()}" in text.splitlines()
    with pytest.raises(BlockNotFound, match=r"block blk_1 has no score on 2001-01-01 in .*/tables/scores"):
        explain(spark, cfg, "blk_1", "2001-01-01")


def test_model_problems_fail_before_any_spark_work(model_dir, tmp_path):
    with pytest.raises(ArtifactError, match=r"--model .*/nope does not exist; pass the model directory"):
        load_scoring_model(str(tmp_path / "nope"))
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    with open(damaged / "weights.pt", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match="does not match the checksum recorded in model.json"):
        load_scoring_model(str(damaged))
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    meta = json.loads((other / "model.json").read_text())
    meta["event_encoding_version"] = 999
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="trained on event encoding version 999"):
        load_scoring_model(str(other))


def test_an_unknown_mlflow_run_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    with pytest.raises(ArtifactError, match=r"--model runs:/abc/model: cannot download it from MLflow "
                                            r"\(tracking URI file://.*/mlruns\): .*check the run id"):
        load_scoring_model("runs:/abc/model")


def test_cli_score_reports_a_bad_model_in_one_line(tmp_path, capsys):
    from hdfsad.cli import main

    rc = main(["score", "--model", str(tmp_path / "nope"), "--date", DATE, "--set", f"paths.work_dir={tmp_path}"])
    assert rc == 2
    assert capsys.readouterr().err == (f"hdfsad score: error: --model {tmp_path}/nope does not exist; pass the "
                                       f"model directory written by `hdfsad train` (<out>/model, holding "
                                       f"model.json and weights.pt)\n")
    assert not os.path.exists(tmp_path / "metastore.lock")  # failed before the session (and its lock)


def test_a_sequences_table_as_input_is_scored_without_ingest(spark, corpus, model_dir, tmp_path):
    source = str(corpus[0] / "tables" / "sequences")
    cfg = make_cfg(tmp_path)
    summary = run_score(spark, cfg, load_scoring_model(model_dir), DATE, [source], log=None)
    assert (summary.input, summary.lines, summary.rejects, summary.blocks) == (source, None, None, 300)
    assert "ingest" not in summary.seconds and read_scores(spark, cfg).count() == 300
    assert not os.path.exists(tmp_path / "tables" / "sequences")  # nothing was ingested
