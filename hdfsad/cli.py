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

from hdfsad.config import ConfigError, load_config, parse_override
from hdfsad.splits import PROTOCOLS, STUDY_SEED

#: Sections of ``--set`` that configure the variant (``--set train.epochs=1``), not the configuration.
VARIANT_SECTIONS = ("model", "train")
DEFAULT_TORCH_THREADS = 1
VARIANT_SET_HELP = ("--set model.KEY=VALUE and --set train.KEY=VALUE override the variant (e.g. --set "
                    "train.epochs=1, --set model.lstm_units=[8]); other --set keys override the configuration.")


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


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one LSTM variant on labelled sequences, evaluate it, save the "
                                     "model and a report", description=VARIANT_SET_HELP)
    p.add_argument("--variant", required=True, help="a variant of conf/variants (e.g. v2_grid) or a YAML file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", metavar="PATH", help="a sequences table (Parquet), e.g. work/tables/sequences")
    src.add_argument("--reference", metavar="CSV", help="a labelled reference CSV (id,sequence,class)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="seed",
                   help="seed: the study's random split; unseen: split by distinct sequence (default: seed)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the model, checkpoint and report go")
    p.add_argument("--split-seed", type=int, default=STUDY_SEED, help=f"default: {STUDY_SEED}, the study's")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    _torch_threads(p)
    _common(p)


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="every variant under both protocols and a Spark decision tree on the "
                                       "labelled reference data -> docs/results.md",
                       description=VARIANT_SET_HELP)
    p.add_argument("--reference", metavar="CSV", help="default: <paths.reference_data>/hdfs_v1/"
                                                      "log_classification_train.csv.gz")
    p.add_argument("--variants", nargs="+", metavar="NAME", help="default: every file in conf/variants")
    p.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    p.add_argument("--toggle-dedup", nargs="+", default=[], metavar="NAME",
                   help="also train these variants with train.dedup switched (seed protocol), to measure "
                        "dedup against plain training")
    p.add_argument("--out", metavar="DIR", help="per-run models and reports (default: <paths.work_dir>/compare)")
    p.add_argument("--doc", default="docs/results.md", help="the Markdown page to write (default: docs/results.md)")
    p.add_argument("--no-baseline", action="store_true", help="skip the Spark decision tree")
    p.add_argument("--resume", action="store_true", help="continue every run from its checkpoint")
    _torch_threads(p)
    _common(p)


def _torch_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=DEFAULT_TORCH_THREADS,
                   help=f"PyTorch CPU threads (default: {DEFAULT_TORCH_THREADS}; these small LSTMs gain "
                        f"little from more)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="hdfsad", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    for add in (_add_ingest, _add_import, _add_synth, _add_demo, _add_train, _add_compare):
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


def _split_overrides(overrides: Sequence[str]) -> tuple[dict, list[str]]:
    """``--set`` values: ``model.*`` / ``train.*`` → variant overrides; the rest → configuration."""
    variant: dict = {}
    rest = []
    for text in overrides:
        if text.split(".", 1)[0].strip() in VARIANT_SECTIONS:
            for section, values in parse_override(text).items():
                variant.setdefault(section, {}).update(values)
        else:
            rest.append(text)
    return variant, rest


def _set_threads(n: int) -> None:
    import torch

    if n < 1:
        raise ValueError(f"--threads: expected an integer >= 1, got {n}")
    torch.set_num_threads(n)


def cmd_train(args) -> int:
    from hdfsad.experiment import train_variant
    from hdfsad.labelled import from_reference_csv, from_table
    from hdfsad.variants import load_variant

    variant_overrides, overrides = _split_overrides(args.overrides)
    load_config(args.config, overrides)  # validates the rest of --set / --config
    _set_threads(args.threads)
    variant = load_variant(args.variant, overrides=variant_overrides)
    data = from_table(args.table) if args.table else from_reference_csv(args.reference)
    train_variant(variant, data, args.protocol, args.out, split_seed=args.split_seed, resume=args.resume)
    return 0


def cmd_compare(args) -> int:
    from hdfsad.compare import reference_csv, run_compare
    from hdfsad.config import reference_data_dir
    from hdfsad.results_doc import machine_description, render
    from hdfsad.session import build_session

    variant_overrides, overrides = _split_overrides(args.overrides)
    cfg = load_config(args.config, overrides)
    _set_threads(args.threads)
    csv = args.reference or reference_csv(reference_data_dir(cfg))
    out = args.out or os.path.join(cfg["paths"]["work_dir"], "compare")
    spark = None if args.no_baseline else build_session(cfg, "compare")
    cmp = run_compare(csv, out, spark=spark, variants=args.variants, protocols=args.protocols,
                      toggle_dedup=args.toggle_dedup, overrides=variant_overrides, resume=args.resume)
    command = " ".join(["hdfsad", *[_quote(a) for a in (args.argv or [])]])
    page = render(cmp, command=command, machine=machine_description(args.threads))
    os.makedirs(os.path.dirname(os.path.abspath(args.doc)), exist_ok=True)
    with open(args.doc, "w", encoding="utf-8") as fh:
        fh.write(page)
    print(f"wrote {args.doc} ({cmp.seconds / 60:.1f} min); per-run reports under {out}")
    return 0


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


COMMANDS = {"ingest": cmd_ingest, "import-reference": cmd_import_reference, "synth": cmd_synth,
            "demo": cmd_demo, "train": cmd_train, "compare": cmd_compare}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"hdfsad {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
