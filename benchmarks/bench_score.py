"""Benchmark of the nightly scoring job: raw logs → scores table, wall time per stage, with and without dedup.

    .venv/bin/python benchmarks/bench_score.py                  # the whole HDFS_v1 corpus (~11.2M lines)
    .venv/bin/python benchmarks/bench_score.py --lines 500000   # a prefix of it

The raw corpus is rendered from the reference CSVs (``hdfsad.synth.render``: the parse gives back the
reference sequences exactly) under ``--work`` once and reused. The model has the study's shape
(v2_grid: LSTM(64), window 19); its weights are untrained unless ``--model`` names a trained one —
the cost of inference does not depend on the weights. Prints:

1. the nightly job as ``hdfsad score`` runs it (ingest → score + write → report → catalog), per stage;
2. the scoring stage alone on the ingested sequences (read → score → write to Spark's ``noop`` sink),
   with dedup (each distinct window scored once) and without (every block through the UDF).

Skips (exit 0, with the reason) when the reference data is absent.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

#: HDFS_v1: 11,175,629 lines for 575,061 blocks.
LINES_PER_BLOCK = 11_175_629 / 575_061
DATE = "2008-11-09"


def render_corpus(ref_dir: str, out: str, blocks: int | None) -> list[str]:
    """Raw logs of the first ``blocks`` train rows, or (None) the full corpus of both CSVs; cached.

    The full corpus is ``bench_ingest``'s (train row k -> block ``reference_block_id(k)``, test row
    k -> ``reference_block_id(1_000_000 + k)``: the two files' ids never merge into one block).
    """
    from hdfsad import synth

    if blocks is None:
        import bench_ingest

        return bench_ingest.reference_corpus(out, ref_dir, seed=0).files
    csv = os.path.join(ref_dir, "hdfs_v1", "log_classification_train.csv.gz")
    target = os.path.join(out, f"logs-{blocks}")
    marker = os.path.join(target, ".complete")
    if not os.path.exists(marker):
        shutil.rmtree(target, ignore_errors=True)
        t = time.time()
        res = synth.render(csv, target, n_files=8, limit=blocks, compress="gz")
        print(f"rendered {res.lines:,} lines of {res.blocks:,} blocks from {os.path.basename(csv)} "
              f"in {time.time() - t:.0f} s -> {target}", flush=True)
        open(marker, "w").close()
    return [os.path.join(target, f) for f in sorted(os.listdir(target)) if f.endswith(".log.gz")]


def bench_model(out: str, trained: str | None) -> str:
    if trained:
        return trained
    from hdfsad.artifacts import save_model
    from hdfsad.models import ModelConfig, build_model

    path = os.path.join(out, "model-untrained-v2-shape")
    save_model(path, build_model(ModelConfig(lstm_units=(64,), max_len=19), seed=0), threshold=0.5,
               extra={"variant": {"name": "untrained-lstm64"}})
    return path


def scoring_stage(spark, cfg, model, dedup: bool) -> tuple[float, int, int]:
    """Read the date's sequences, score, write to the noop sink: (seconds, blocks, windows scored)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from hdfsad.nightly import date_sequences
    from hdfsad.scoring import score_sequences

    seqs = date_sequences(spark, os.path.join(cfg["paths"]["tables"], "sequences"), DATE, 0, 100000)
    distinct, rows = Observation("d"), Observation("r")
    scored = score_sequences(spark, seqs, model, dedup=dedup, batch_size=cfg["score"]["batch_size"],
                             distinct=distinct).observe(rows, F.count(F.lit(1)).alias("n"))
    t = time.time()
    scored.write.format("noop").mode("overwrite").save()
    seconds = time.time() - t
    n = int(rows.get["n"])
    return seconds, n, int(distinct.get["distinct"]) if dedup else n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--lines", type=int, help="render about this many lines (a prefix of the train CSV)")
    size.add_argument("--blocks", type=int, help="render the first N rows of the train CSV")
    p.add_argument("--work", default=os.path.join(REPO, "work", "bench_score"))
    p.add_argument("--model", help="a trained model directory (default: untrained weights, same shape)")
    p.add_argument("--master", default="local[2]")
    args = p.parse_args(argv)

    from hdfsad.config import load_config, reference_data_dir

    base = load_config()
    ref = reference_data_dir(base)
    if not os.path.isfile(os.path.join(ref, "hdfs_v1", "log_classification_train.csv.gz")):
        print(f"SKIP: reference data not found at {os.path.abspath(ref)} (set HDFSAD_REFERENCE_DATA)")
        return 0
    blocks = args.blocks or (round(args.lines / LINES_PER_BLOCK) if args.lines else None)
    os.makedirs(args.work, exist_ok=True)
    logs = render_corpus(ref, args.work, blocks)
    run_dir = os.path.join(args.work, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    # The tables are fresh each time; the metastore (work_dir) is kept, as it is from night to night.
    cfg = load_config(overrides=[f"spark.master={args.master}", f"paths.tables={run_dir}/tables",
                                 f"paths.work_dir={args.work}/catalog", "tracking.enabled=false",
                                 "spark.conf.spark.ui.showConsoleProgress=false"])

    from hdfsad.nightly import run_score
    from hdfsad.scoring import load_scoring_model
    from hdfsad.session import build_session

    t = time.time()
    model = load_scoring_model(bench_model(args.work, args.model))
    spark = build_session(cfg, "bench-score", catalog=True)
    startup = time.time() - t
    summary = run_score(spark, cfg, model, DATE, logs, log=None)
    cores = spark.sparkContext.defaultParallelism
    print(f"\nnightly job, raw logs -> scores table ({args.master}, {cores} cores, model {model.name}, "
          f"window {model.max_len})")
    print(f"  {'lines read':<28}{summary.lines:>14,}")
    print(f"  {'blocks scored':<28}{summary.blocks:>14,}")
    print(f"  {'distinct windows scored':<28}{summary.distinct_sequences:>14,}")
    print(f"  {'session start + model load':<28}{startup:>12.1f} s")
    for stage, seconds in summary.seconds.items():
        print(f"  {stage:<28}{seconds:>12.1f} s")
    end_to_end = summary.seconds["total"] + summary.seconds.get("catalog", 0.0)
    print(f"  {'raw logs -> scores (all)':<28}{end_to_end:>12.1f} s   "
          f"({summary.lines / end_to_end:,.0f} lines/s)")

    print("\nscoring stage alone (read sequences -> pandas UDF -> noop sink), same session:")
    for dedup in (True, False):
        seconds, n, scored = scoring_stage(spark, cfg, model, dedup)
        label = "with dedup" if dedup else "without dedup"
        print(f"  {label:<16}{seconds:>8.1f} s  {n / seconds:>12,.0f} blocks/s  "
              f"({scored:,} windows through the model)")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
