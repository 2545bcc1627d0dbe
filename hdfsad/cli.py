"""The ``hdfsad`` command line; the Spark jobs in ``jobs/`` call :func:`main` with their job name.

Every subcommand takes ``--config FILE`` (repeatable, merged over ``conf/default.yaml``) and
``--set section.key=value`` (repeatable) before or after its own options.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

from hdfsad.catalog import CatalogBusy
from hdfsad.config import ConfigError, load_config, parse_override
from hdfsad.splits import PROTOCOLS, STUDY_SEED

#: Sections of ``--set`` that configure the variant (``--set train.epochs=1``), not the configuration.
VARIANT_SECTIONS = ("model", "train")
DEFAULT_TORCH_THREADS = 1
#: The variant ``hdfsad demo`` trains: a small LSTM, two epochs over distinct weighted pairs.
DEMO_VARIANT = Path(__file__).resolve().parents[1] / "conf" / "demo" / "demo_fast.yaml"
DEMO_DATE = "2008-11-09"
GRID_FILE = Path(__file__).resolve().parents[1] / "conf" / "grid.yaml"
GRID_BEST = Path(__file__).resolve().parents[1] / "conf" / "variants" / "grid_best.yaml"
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
    p = sub.add_parser("demo", help="the main job end to end on generated logs and the embedded default: "
                                    "generate -> ingest -> train -> score -> SQL")
    p.add_argument("--blocks", type=int, default=5000)
    p.add_argument("--dir", default="work/demo", help="where the demo writes logs, tables, model, metastore")
    p.add_argument("--variant", default=str(DEMO_VARIANT),
                   help="the variant trained (default: conf/demo/demo_fast.yaml, a few seconds)")
    _common(p)


def _add_score(sub) -> None:
    p = sub.add_parser("score", help="score every block of a date with a trained model -> scores and runs "
                                     "tables, daily report")
    p.add_argument("--model", required=True, metavar="DIR|URI",
                   help="model directory written by `hdfsad train` (<out>/model) or an MLflow artifact URI")
    p.add_argument("--input", nargs="+", metavar="URI",
                   help="raw log files/directories/globs (ingested first, as `hdfsad ingest`), or one "
                        "sequences table directory; default: <tables>/sequences")
    p.add_argument("--labels", metavar="CSV", help="with raw logs: Loghub anomaly_label.csv to join")
    p.add_argument("--date", help="the date to score, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--threshold", type=float, help="decision threshold (default: score.threshold, else "
                                                   "the model's stored one)")
    p.add_argument("--tables", metavar="URI", help="root of the tables (default: paths.tables)")
    _common(p)


def _add_sql(sub) -> None:
    p = sub.add_parser("sql", help="run a Spark SQL query on the catalog (sequences, rejects, events, "
                                   "scores, runs)")
    p.add_argument("query", help='e.g. "SELECT * FROM scores ORDER BY score DESC LIMIT 10"')
    p.add_argument("--max-rows", type=int, default=100, help="rows printed at most (default: 100)")
    p.add_argument("--no-refresh", action="store_true",
                   help="do not (re)register the tables under paths.tables first")
    _common(p)


def _add_explain(sub) -> None:
    p = sub.add_parser("explain", help="a block's score, its events with template text and raw lines")
    p.add_argument("block_id")
    p.add_argument("--date", help="the scored date (default: the block's latest)")
    p.add_argument("--tables", metavar="URI", help="root of the tables (default: paths.tables)")
    _common(p)


def _add_thriftserver(sub) -> None:
    p = sub.add_parser("thriftserver", help="run the Spark Thrift server (JDBC, beeline) over the catalog, "
                                            "in the foreground")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=10000)
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
    p.add_argument("--num-processes", type=int, metavar="N",
                   help="train with PyTorch DDP in N processes on the Spark executors (TorchDistributor; "
                        "default: distributed.num_processes, 0 = in this process)")
    p.add_argument("--use-gpu", action="store_true", default=None,
                   help="with --num-processes: one GPU per process, NCCL (default: distributed.use_gpu)")
    _torch_threads(p)
    _common(p)


def _add_grid_search(sub) -> None:
    p = sub.add_parser("grid-search", help="k-fold grid search over variant settings, one Spark task per "
                                           "(config, fold) fit -> results table, docs/grid.md, best variant")
    p.add_argument("--grid", default=str(GRID_FILE), metavar="YAML", help="default: conf/grid.yaml (the study's)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--table", metavar="PATH", help="a labelled sequences table (Parquet)")
    src.add_argument("--reference", metavar="CSV", help="a labelled reference CSV (default: <paths.reference_data>/"
                                                        "hdfs_v1/log_classification_train.csv.gz)")
    p.add_argument("--out", metavar="DIR", help="results table and state (default: <paths.work_dir>/grid/<name>); "
                                                "a rerun skips the fits done there")
    p.add_argument("--doc", default="docs/grid.md", help="the ranking page (default: docs/grid.md)")
    p.add_argument("--best", default=str(GRID_BEST), metavar="YAML",
                   help="where the best config goes as a variant (default: conf/variants/grid_best.yaml)")
    p.add_argument("--configs", type=int, metavar="N", help="only the first N configs of the grid")
    p.add_argument("--folds", type=int, metavar="K", help="k of the k-fold CV (default: the grid file's)")
    p.add_argument("--metric", help="ranking metric (default: the grid file's, f1)")
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
    for add in (_add_ingest, _add_import, _add_synth, _add_demo, _add_train, _add_compare, _add_score, _add_sql,
                _add_explain, _add_thriftserver, _add_grid_search):
        add(sub)
    return top


def cmd_ingest(args) -> int:
    from hdfsad.catalog import register
    from hdfsad.ingest import run_ingest, validate_date
    from hdfsad.session import build_session

    cfg = load_config(args.config, args.overrides)
    date = validate_date(args.date)
    spark = build_session(cfg, "ingest", catalog=True)
    summary = run_ingest(spark, cfg, args.inputs, date, labels=args.labels, tables=args.tables)
    print(summary.render())
    registered = register(spark, cfg, args.tables or cfg["paths"]["tables"])
    print(f"catalog: {cfg['catalog']['database']}.{{{', '.join(registered)}}} ({cfg['catalog']['metastore']})")
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


def top_anomalies_query(database: str, date: str, limit: int = 10) -> str:
    """The README's "top anomalies of a day" query."""
    return (f"SELECT s.block_id, round(s.score, 4) AS score, s.is_anomaly, s.length, q.label, q.events "
            f"FROM {database}.scores s JOIN {database}.sequences q USING (block_id, ingest_date) "
            f"WHERE s.ingest_date = DATE'{date}' ORDER BY s.score DESC, s.block_id LIMIT {limit}")


def cmd_demo(args) -> int:
    """Generate logs → ingest → train a fast variant → score → the top anomalies through Spark SQL."""
    from hdfsad import synth
    from hdfsad.experiment import train_variant
    from hdfsad.ingest import run_ingest
    from hdfsad.labelled import from_table
    from hdfsad.nightly import run_score
    from hdfsad.scoring import load_scoring_model
    from hdfsad.session import build_session
    from hdfsad.variants import load_variant

    cfg = load_config(args.config, ["paths.tables=" + os.path.join(args.dir, "tables"),
                                    "paths.work_dir=" + args.dir, *args.overrides])
    variant = load_variant(args.variant)
    logs = os.path.join(args.dir, "logs")
    if os.path.isdir(logs):
        shutil.rmtree(logs)
    res = synth.generate(logs, args.blocks, seed=7, n_files=4)
    print(f"[demo] generated {res.lines} log lines of {res.blocks} blocks ({res.anomalies} anomalous) in {logs}")
    spark = build_session(cfg, "demo", catalog=True)
    summary = run_ingest(spark, cfg, res.log_files, DEMO_DATE, labels=res.labels_csv)
    print(summary.render())

    print(f"[demo] training {variant.name} ({variant.description}) on {summary.tables['sequences']}")
    _set_threads(DEFAULT_TORCH_THREADS)
    out = os.path.join(args.dir, "train")
    train_variant(variant, from_table(summary.tables["sequences"]), "seed", out)

    model = load_scoring_model(os.path.join(out, "model"), cfg["score"]["threshold"])
    scored = run_score(spark, cfg, model, DEMO_DATE)
    print(scored.render())
    query = top_anomalies_query(cfg["catalog"]["database"], DEMO_DATE)
    print(f"[demo] the top anomalies through Spark SQL:\n  {query}")
    spark.sql(query).show(10, truncate=70)
    print(f"[demo] query the tables yourself: hdfsad sql --set paths.work_dir={args.dir} "
          f"--set paths.tables={os.path.join(args.dir, 'tables')} \"SELECT * FROM "
          f"{cfg['catalog']['database']}.runs\"")
    return 0


def cmd_score(args) -> int:
    from hdfsad.ingest import validate_date
    from hdfsad.nightly import run_score
    from hdfsad.scoring import load_scoring_model
    from hdfsad.session import build_session

    cfg = load_config(args.config, args.overrides)
    date = validate_date(args.date)
    threshold = args.threshold if args.threshold is not None else cfg["score"]["threshold"]
    model = load_scoring_model(args.model, threshold)  # every model problem surfaces before Spark starts
    spark = build_session(cfg, "score", catalog=True)
    summary = run_score(spark, cfg, model, date, args.input or (), labels=args.labels, tables=args.tables)
    print(summary.render())
    return 0


def cmd_sql(args) -> int:
    from hdfsad.catalog import register
    from hdfsad.session import build_session

    cfg = load_config(args.config, args.overrides)
    spark = build_session(cfg, "sql", catalog=True)
    db = cfg["catalog"]["database"]
    if not args.no_refresh:
        register(spark, cfg, cfg["paths"]["tables"])
    if spark.catalog.databaseExists(db):
        spark.catalog.setCurrentDatabase(db)
    spark.sql(args.query).show(args.max_rows, truncate=False)
    return 0


def cmd_explain(args) -> int:
    from hdfsad.explain import explain
    from hdfsad.session import build_session

    cfg = load_config(args.config, args.overrides)
    spark = build_session(cfg, "explain")
    print(explain(spark, cfg, args.block_id, args.date, tables=args.tables))
    return 0


def cmd_thriftserver(args) -> int:
    from hdfsad import catalog

    cfg = load_config(args.config, args.overrides)
    catalog.acquire(cfg)  # fail now, not after the JVM started, when a job holds the metastore
    catalog.release()
    argv, env = catalog.thriftserver_command(cfg, args.host, args.port)
    print(f"[thriftserver] jdbc:hive2://{args.host}:{args.port}/{cfg['catalog']['database']} "
          f"(beeline: SPARK_CONF_DIR={env['SPARK_CONF_DIR']} beeline -u ...)", flush=True)
    os.execve(argv[0], argv, env)
    return 0  # not reached


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
    from hdfsad.distributed import DistributedConfig
    from hdfsad.experiment import train_variant
    from hdfsad.tracking import Tracker, log_training
    from hdfsad.labelled import from_reference_csv, from_table
    from hdfsad.variants import load_variant

    variant_overrides, overrides = _split_overrides(args.overrides)
    cfg = load_config(args.config, overrides)  # validates the rest of --set / --config
    _set_threads(args.threads)
    variant = load_variant(args.variant, overrides=variant_overrides)
    dist_cfg = DistributedConfig.from_config(cfg, args.num_processes, args.use_gpu)
    if dist_cfg.use_gpu and not dist_cfg.num_processes:
        raise ValueError("--use-gpu trains on the executors' GPUs through TorchDistributor: add --num-processes N "
                         "(one GPU per process)")
    data = from_table(args.table) if args.table else from_reference_csv(args.reference)
    tracker = Tracker.from_config(cfg)
    if dist_cfg.num_processes:
        from hdfsad.distributed import train_distributed
        from hdfsad.session import build_session

        spark = build_session(cfg, "train")
        run = train_distributed(spark, variant, data, args.protocol, args.out, dist_cfg, split_seed=args.split_seed,
                                resume=args.resume)
    else:
        run = train_variant(variant, data, args.protocol, args.out, split_seed=args.split_seed, resume=args.resume)
    run_id = log_training(tracker, f"train:{variant.name}", {
        "variant": variant.to_dict(), "protocol": args.protocol, "split_seed": args.split_seed, "data": data.source,
        "distributed": {"num_processes": dist_cfg.num_processes, "use_gpu": dist_cfg.use_gpu,
                        "batch_scaling": dist_cfg.batch_scaling, "lr_scaling": dist_cfg.lr_scaling}},
        run, args.out, tags={"hdfsad.kind": "train", "hdfsad.variant": variant.name})
    if run_id:
        print(f"[{variant.name} / {args.protocol}] MLflow run {run_id} at {tracker.uri}; model: "
              f"{tracker.run_url(run_id)}")
    return 0


def cmd_grid_search(args) -> int:
    from hdfsad import grid as G
    from hdfsad.compare import reference_csv
    from hdfsad.config import reference_data_dir
    from hdfsad.labelled import from_reference_csv, from_table
    from hdfsad.results_doc import machine_description
    from hdfsad.session import build_session
    from hdfsad.tracking import Tracker

    cfg = load_config(args.config, args.overrides)
    for flag, value in (("--configs", args.configs), ("--folds", args.folds)):
        if value is not None and value < 1:
            raise ValueError(f"{flag}: expected an integer >= 1, got {value}")
    grid = G.load_grid(args.grid, folds=args.folds, metric=args.metric)
    G.base_variant_data(grid.base_variant)  # a bad base variant fails before Spark starts
    data = (from_table(args.table) if args.table else
            from_reference_csv(args.reference or reference_csv(reference_data_dir(cfg))))
    out = args.out or os.path.join(cfg["paths"]["work_dir"], "grid", grid.name)
    spark = build_session(cfg, "grid-search")
    tracker = Tracker.from_config(cfg)
    result = G.run_grid(spark, grid, data, out, tracker=tracker, configs=args.configs)
    if result.ranking:
        G.write_best(result, args.best)
    result.doc_path = args.doc
    page = G.render(result, command=" ".join(["hdfsad", *[_quote(a) for a in (args.argv or [])]]),
                    machine=machine_description(1))
    os.makedirs(os.path.dirname(os.path.abspath(args.doc)), exist_ok=True)
    with open(args.doc, "w", encoding="utf-8") as fh:
        fh.write(page)
    G.finish_parent(tracker, result)
    best = result.best
    print(f"[grid {grid.name}] {result.fits_run} fits run, {result.fits_skipped} skipped, "
          f"{result.seconds / 60:.1f} min; best config {best['config_id'] if best else '-'} "
          + (f"{json.dumps(best['params'])} mean {grid.metric} {best[f'mean_{grid.metric}']:.5f}; "
             f"wrote {args.best}, " if best else "")
          + f"{args.doc}; results table {result.results_path}"
          + (f"; MLflow parent run {result.parent_run}" if result.parent_run else ""))
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
            "demo": cmd_demo, "train": cmd_train, "compare": cmd_compare, "score": cmd_score, "sql": cmd_sql,
            "explain": cmd_explain, "thriftserver": cmd_thriftserver, "grid-search": cmd_grid_search}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, ValueError, FileExistsError, FileNotFoundError, CatalogBusy) as exc:
        print(f"hdfsad {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
