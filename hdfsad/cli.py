"""The ``hdfsad`` command line; the Spark jobs in ``jobs/`` call :func:`main` with their job name.

Every subcommand takes ``--config FILE`` (repeatable, merged over ``conf/default.yaml``) and
``--set section.key=value`` (repeatable) before or after its own options.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Sequence

from hdfsad.config import ConfigError, load_config


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", default=[], metavar="FILE",
                        help="YAML file merged over conf/default.yaml (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one key, e.g. --set ingest.keep_events=true (repeatable)")


def _add_ingest(sub) -> None:
    p = sub.add_parser("ingest", help="raw HDFS logs -> sequences, rejects (and events) Parquet tables")
    p.add_argument("inputs", nargs="+", metavar="URI",
                   help="log files, directories or globs on any Hadoop FileSystem (hdfs://, file://, "
                        "plain paths); .gz and .bz2 are decompressed")
    p.add_argument("--labels", metavar="CSV", help="Loghub anomaly_label.csv (BlockId,Label) to join")
    p.add_argument("--date", help="ingest_date partition to (re)write, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--tables", metavar="URI", help="root of the output tables (default: paths.tables)")
    _common(p)


def _add_import(sub) -> None:
    p = sub.add_parser("import-reference",
                       help="reference CSV (id,sequence[,class]) -> sequences table (block_id seq-<id>)")
    p.add_argument("csv", help="CSV file (plain or .gz), e.g. log_classification_train.csv.gz")
    p.add_argument("--date", default="1970-01-01", help="ingest_date partition (default: 1970-01-01)")
    p.add_argument("--tables", metavar="URI", help="root of the output tables (default: paths.tables)")
    _common(p)


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write synthetic raw HDFS logs (generate) or render sequences (render)")
    modes = p.add_subparsers(dest="mode", required=True)
    g = modes.add_parser("generate", help="N blocks with realistic normal and anomalous lifecycles")
    g.add_argument("out_dir")
    g.add_argument("--blocks", type=int, default=2000)
    g.add_argument("--anomaly-rate", type=float, default=0.03)
    g.add_argument("--files", type=int, default=2)
    r = modes.add_parser("render", help="raw lines whose parse gives back the sequences of a reference CSV")
    r.add_argument("csv")
    r.add_argument("out_dir")
    r.add_argument("--files", type=int, default=4)
    r.add_argument("--limit", type=int, help="render only the first N rows")
    for m in (g, r):
        m.add_argument("--seed", type=int, default=0)
        m.add_argument("--compress", choices=["gz", "bz2"])
        m.add_argument("--overwrite", action="store_true", help="delete OUT_DIR first if it exists")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job end to end on generated logs and the embedded default")
    p.add_argument("--blocks", type=int, default=5000)
    p.add_argument("--dir", default="work/demo", help="where the demo writes logs and tables")
    _common(p)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hdfsad", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    for add in (_add_ingest, _add_import, _add_synth, _add_demo):
        add(sub)
    return top


def cmd_ingest(args) -> int:
    from hdfsad.ingest import run_ingest, validate_date
    from hdfsad.session import build_session

    cfg = load_config(args.config, args.overrides)
    date = validate_date(args.date)
    spark = build_session(cfg, "ingest")
    summary = run_ingest(spark, cfg, args.inputs, date, labels=args.labels, tables=args.tables)
    print(summary.render())
    return 0


def cmd_import_reference(args) -> int:
    from hdfsad.ingest import validate_date
    from hdfsad.tables import write_partition
    from hdfsad.reference import check_reference, read_reference
    from hdfsad.session import build_session

    cfg = load_config(args.config, args.overrides)
    date = validate_date(args.date)
    spark = build_session(cfg, "import-reference")
    path = (args.tables or cfg["paths"]["tables"]).rstrip("/") + "/sequences"
    table = read_reference(spark, args.csv, date)
    rows = check_reference(table, args.csv)
    write_partition(table, path)
    print(f"imported {rows} sequences from {args.csv} into {path} (ingest_date={date})")
    return 0


def cmd_synth(args) -> int:
    from hdfsad import synth

    if args.overwrite and os.path.isdir(args.out_dir):
        shutil.rmtree(args.out_dir)
    if args.mode == "generate":
        res = synth.generate(args.out_dir, args.blocks, anomaly_rate=args.anomaly_rate, seed=args.seed,
                             n_files=args.files, compress=args.compress)
    else:
        res = synth.render(args.csv, args.out_dir, n_files=args.files, seed=args.seed, limit=args.limit,
                           compress=args.compress)
    print(f"wrote {res.lines} lines of {res.blocks} blocks ({res.anomalies} anomalous) "
          f"into {len(res.log_files)} file(s) under {args.out_dir}"
          + (f"; labels: {res.labels_csv}" if res.labels_csv else ""))
    return 0


def cmd_demo(args) -> int:
    """Generate logs → ingest; later stages extend this same command."""
    from hdfsad import synth
    from hdfsad.ingest import run_ingest
    from hdfsad.session import build_session

    logs = os.path.join(args.dir, "logs")
    if os.path.isdir(logs):
        shutil.rmtree(logs)
    res = synth.generate(logs, args.blocks, seed=7, n_files=4)
    print(f"[demo] generated {res.lines} log lines of {res.blocks} blocks ({res.anomalies} anomalous) in {logs}")
    cfg = load_config(args.config, ["paths.tables=" + os.path.join(args.dir, "tables"), *args.overrides])
    spark = build_session(cfg, "demo")
    summary = run_ingest(spark, cfg, [logs], "2008-11-09", labels=res.labels_csv)
    print(summary.render())
    seqs = spark.read.parquet(summary.tables["sequences"])
    print("[demo] a few sequences (event ids in order; label 1 = anomaly):")
    seqs.orderBy("label", "block_id", ascending=[False, True]).show(5, truncate=80)
    return 0


COMMANDS = {"ingest": cmd_ingest, "import-reference": cmd_import_reference, "synth": cmd_synth,
            "demo": cmd_demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"hdfsad {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
