"""Ingest benchmark: hdfsad's Spark ingest against Drain3, and a full-scale reference ingest.

Run from the project root::

    .venv/bin/python benchmarks/bench_ingest.py [--lines N] [--full] [--work DIR]

(a) always: ``--lines`` (default 2,000,000) lines made by :func:`hdfsad.synth.generate` (cached
    under ``--work``) are ingested by :func:`hdfsad.ingest.run_ingest` (wall time per stage,
    lines/s, lines/s per core) and a prefix of the same lines is fed to Drain3 (single process);
    the ratio hdfsad per-core lines/s / Drain3 lines/s is printed (target >= 1).
(b) with ``--full``: every row of the two reference CSVs is rendered into one raw corpus (cached)
    and ingested; per-stage wall time, lines/s, the <= 60 s target and a correctness check
    (row count, events of 1,000 sampled blocks) are printed. Skipped when the reference data is
    absent.

Everything goes to stdout as Markdown a person can paste into the README; exit status 0.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from typing import Callable, Iterable, Iterator, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script: make the package importable without installing it
    sys.path.insert(0, ROOT)

from hdfsad import synth  # noqa: E402
from hdfsad.config import load_config, reference_data_dir  # noqa: E402
from hdfsad.templates import classify, load_templates  # noqa: E402

INGEST_DATE = "2008-11-09"
N_FILES = 8
#: Mean lines per generated block is ~19.4; this divisor makes the corpus reach --lines.
LINES_PER_BLOCK = 19.0
#: Test-file row k becomes block reference_block_id(TEST_ID_OFFSET + k): no clash with train ids.
TEST_ID_OFFSET = 1_000_000
REFERENCE_FILES = ("hdfs_v1/log_classification_train.csv.gz", "hdfs_v1/log_classification_test.csv.gz")
FULL_TARGET_S = 60.0
SAMPLE_BLOCKS = 1_000
WARMUP_LINES = 200_000
MANIFEST = "corpus.json"
LOG_GLOB = "*.log"
#: Spark settings on top of the default configuration (no UI, no progress bars in the output).
SPARK_OVERRIDES = ("spark.conf.spark.ui.enabled=false", "spark.conf.spark.ui.showConsoleProgress=false")
#: The usual HDFS masking for Drain3 (block ids, IPs with optional port, then other numbers).
DRAIN_MASKING = (
    (r"blk_-?\d+", "BLK"),
    (r"/?\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
)


# ---------------------------------------------------------------------------------------------
# output


def fmt_int(n: float) -> str:
    return f"{round(n):,}"


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s"


def md_table(rows: Sequence[tuple[str, object]], header: tuple[str, str] = ("measure", "value"),
             align: str = "---:") -> str:
    lines = [f"| {header[0]} | {header[1]} |", f"| --- | {align} |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def say(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


# ---------------------------------------------------------------------------------------------
# corpora (cached under --work; a manifest written last marks a complete corpus)


@dataclass
class Corpus:
    path: str
    source: str                # how it was made, in words
    params: dict
    files: list[str] = field(default_factory=list)
    lines: int = 0
    blocks: int = 0
    bytes: int = 0
    build_seconds: float = 0.0
    cached: bool = False       # True when reused from an earlier run

    @property
    def glob(self) -> str:
        return os.path.join(self.path, LOG_GLOB)


def load_cached(path: str, params: dict) -> Corpus | None:
    """The corpus in ``path`` if its manifest has the same parameters and its files are intact."""
    try:
        with open(os.path.join(path, MANIFEST), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if data.get("params") != params:
        return None
    corpus = Corpus(**{k: v for k, v in data.items() if k != "cached"}, cached=True)
    sizes = [os.path.getsize(f) if os.path.isfile(f) else -1 for f in corpus.files]
    return corpus if sum(sizes) == corpus.bytes and min(sizes, default=-1) >= 0 else None


def build_cached(path: str, params: dict, source: str, build: Callable[[str], synth.SynthResult]) -> Corpus:
    """Reuse the corpus in ``path`` or (re)build it with ``build(path)``."""
    cached = load_cached(path, params)
    if cached is not None:
        return cached
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    result = build(path)
    corpus = Corpus(path=path, source=source, params=params, files=sorted(result.log_files),
                    lines=result.lines, blocks=result.blocks,
                    bytes=sum(os.path.getsize(f) for f in result.log_files),
                    build_seconds=time.perf_counter() - t0)
    with open(os.path.join(path, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump({k: v for k, v in asdict(corpus).items() if k != "cached"}, fh, indent=1)
    return corpus


def generated_corpus(work: str, lines: int, seed: int, n_files: int = N_FILES) -> Corpus:
    n_blocks = max(1, math.ceil(lines / LINES_PER_BLOCK))
    params = {"kind": "generate", "lines": lines, "n_blocks": n_blocks, "seed": seed, "n_files": n_files}
    path = os.path.join(work, f"generated-{lines}-seed{seed}-{n_files}files")
    source = f"hdfsad.synth.generate(n_blocks={n_blocks:,}, seed={seed}, n_files={n_files})"
    return build_cached(path, params, source,
                        lambda out: synth.generate(out, n_blocks, seed=seed, n_files=n_files))


def reference_rows(ref_dir: str) -> Iterator[tuple[str, list[int], int | None]]:
    """``(block_id, events, label)`` of every train row, then every test row (ids offset)."""
    train, test = (os.path.join(ref_dir, f) for f in REFERENCE_FILES)
    for offset, path in ((0, train), (TEST_ID_OFFSET, test)):
        for row_id, events, label in synth.read_reference_csv(path):
            yield synth.reference_block_id(offset + row_id), events, label


def reference_corpus(work: str, ref_dir: str, seed: int, n_files: int = N_FILES) -> Corpus:
    sources = {f: os.path.getsize(os.path.join(ref_dir, f)) for f in REFERENCE_FILES}
    params = {"kind": "render-reference", "sources": sources, "seed": seed, "n_files": n_files,
              "test_id_offset": TEST_ID_OFFSET}
    path = os.path.join(work, f"reference-full-seed{seed}-{n_files}files")
    source = ("hdfsad.synth.render_sequences of all train + test rows (train row k -> "
              f"reference_block_id(k), test row k -> reference_block_id({TEST_ID_OFFSET:_} + k))")
    return build_cached(path, params, source,
                        lambda out: synth.render_sequences(reference_rows(ref_dir), out, n_files=n_files,
                                                           seed=seed))


def corpus_rows(corpus: Corpus) -> list[tuple[str, object]]:
    how = (f"reused (built by an earlier run in {fmt_s(corpus.build_seconds)})" if corpus.cached
           else f"built by this run in {fmt_s(corpus.build_seconds)} (not part of any timing below)")
    return [("corpus", f"`{corpus.path}`"), ("made by", corpus.source), ("cache", how),
            ("files", f"{len(corpus.files)} plain text"), ("size", f"{corpus.bytes / 2**20:,.0f} MiB"),
            ("lines", fmt_int(corpus.lines)), ("blocks", fmt_int(corpus.blocks))]


# ---------------------------------------------------------------------------------------------
# Spark ingest


def spark_session():
    from hdfsad.session import build_session

    cfg = load_config([], SPARK_OVERRIDES)
    return build_session(cfg, "bench"), cfg


def timed_ingest(spark, cfg, corpus: Corpus, tables: str):
    """``(summary, wall seconds)`` of one ``run_ingest`` of the corpus's ``*.log`` files."""
    from hdfsad.ingest import run_ingest

    t0 = time.perf_counter()
    summary = run_ingest(spark, cfg, [corpus.glob], INGEST_DATE, tables=tables)
    return summary, time.perf_counter() - t0


def fresh_tables(work: str) -> str:
    return tempfile.mkdtemp(prefix="tables-", dir=work)


@dataclass
class Measured:
    """The median of ``repeat`` timed ingests (all walls kept) and what ``check`` said on the last."""

    summary: object
    wall: float
    walls: list[float]
    checked: object = None


def measure_ingest(spark, cfg, corpus: Corpus, work: str, repeat: int,
                   check: Callable[[object], object] | None = None) -> Measured:
    """Ingest ``corpus`` ``repeat`` times, each into fresh (then deleted) tables."""
    runs, checked = [], None
    for i in range(repeat):
        tables = fresh_tables(work)
        try:
            summary, wall = timed_ingest(spark, cfg, corpus, tables)
            if check is not None and i == repeat - 1:
                checked = check(summary)
        finally:
            shutil.rmtree(tables, ignore_errors=True)
        runs.append((wall, summary))
    walls = [w for w, _ in runs]
    wall, summary = sorted(runs, key=lambda r: r[0])[(len(runs) - 1) // 2]
    return Measured(summary, wall, walls, checked)


def warm_up(spark, cfg, work: str, seed: int) -> Corpus:
    """One untimed ingest so JVM start-up, first code generation and JIT are not timed (a tiny
    corpus was measured to leave the next run ~2x slower than the one after it)."""
    corpus = generated_corpus(work, WARMUP_LINES, seed)
    measure_ingest(spark, cfg, corpus, work, 1)
    return corpus


def ingest_rows(m: Measured, cores: int) -> list[tuple[str, object]]:
    summary, wall = m.summary, m.wall
    rows = [(f"hdfsad ingest: {stage}", fmt_s(sec)) for stage, sec in summary.seconds.items()
            if stage != "total"]
    rate = summary.lines / wall
    if len(m.walls) > 1:
        rows.append(("hdfsad ingest: runs (wall)", ", ".join(fmt_s(w) for w in m.walls) + "; median run shown"))
    rows += [("hdfsad ingest: total wall time", fmt_s(wall)),
             ("hdfsad lines/s", fmt_int(rate)),
             ("cores (`defaultParallelism`)", cores),
             ("hdfsad lines/s per core", fmt_int(rate / cores))]
    return rows


def summary_checks(summary, corpus: Corpus) -> list[tuple[str, object]]:
    """Cheap sanity checks from the ingest's own counters."""
    ok_lines = summary.lines == corpus.lines
    ok_blocks = summary.blocks == corpus.blocks
    clean = summary.rejected == 0 and summary.unknown_lines == 0
    return [("check: lines read = lines written", f"{verdict(ok_lines)} ({fmt_int(summary.lines)})"),
            ("check: blocks = blocks written", f"{verdict(ok_blocks)} ({fmt_int(summary.blocks)})"),
            ("check: no rejects, no unknown templates",
             f"{verdict(clean)} ({summary.rejected} rejects, {summary.unknown_lines} unknown)")]


# ---------------------------------------------------------------------------------------------
# Drain3


def contents(files: Sequence[str], limit: int) -> list[str]:
    """The content part (after ``yyMMdd HHmmss pid LEVEL component: ``) of the first ``limit`` lines."""
    def lines() -> Iterator[str]:
        for path in files:
            with open(path, encoding="utf-8") as fh:
                yield from fh
    return [line.rstrip("\n").split(" ", 5)[5] for line in islice(lines(), limit)]


def drain_miner(masked: bool):
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    if masked:
        config.masking_instructions = [MaskingInstruction(p, name) for p, name in DRAIN_MASKING]
    return TemplateMiner(config=config)


def run_drain(messages: Sequence[str], masked: bool) -> tuple[float, int]:
    """``(seconds, templates found)`` of mining ``messages`` in this process."""
    miner = drain_miner(masked)
    add = miner.add_log_message
    t0 = time.perf_counter()
    for message in messages:
        add(message)
    return time.perf_counter() - t0, len(miner.drain.clusters)


@functools.lru_cache(maxsize=None)
def _classify_digit_masked(content: str) -> int:
    return classify(content)


def events_present(messages: Iterable[str]) -> int:
    """Distinct hdfsad event ids among ``messages`` (templates have no digits, so digit runs can
    be collapsed before classifying, which lets the cache hit)."""
    digits = re.compile(r"\d+")
    return len({_classify_digit_masked(digits.sub("0", m)) for m in messages})


# ---------------------------------------------------------------------------------------------
# sections


def header(argv: Sequence[str], spark) -> None:
    command = shlex.join([os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd())
                          else sys.executable, sys.argv[0], *argv])
    say("# hdfsad ingest benchmark")
    say()
    say(md_table([
        ("command", f"`{command}`"),
        ("date (UTC)", time.strftime("%Y-%m-%d %H:%M", time.gmtime())),
        ("machine", f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}"),
        ("load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("python -V", f"Python {platform.python_version()}"),
        ("Spark", f"{spark.version} (master {spark.sparkContext.master}, "
                  f"defaultParallelism {spark.sparkContext.defaultParallelism}, "
                  f"Java {spark._jvm.java.lang.System.getProperty('java.version')})"),
        ("configuration", "hdfsad defaults + " + ", ".join(o.split("=", 1)[0].removeprefix("spark.conf.") + "="
                                                         + o.split("=", 1)[1] for o in SPARK_OVERRIDES)),
    ], ("item", "value"), align="---"))
    say()


def throughput_section(spark, cfg, args) -> None:
    say(f"## (a) Throughput on {args.lines:,} generated lines")
    say()
    corpus = generated_corpus(args.work, args.lines, args.seed)
    cores = spark.sparkContext.defaultParallelism
    m = measure_ingest(spark, cfg, corpus, args.work, args.repeat)
    hdfsad_per_core = m.summary.lines / m.wall / cores

    messages = contents(corpus.files, args.drain_lines)
    drain_s, drain_templates = run_drain(messages, masked=True)
    plain_s, plain_templates = run_drain(messages, masked=False)
    drain_rate, plain_rate = len(messages) / drain_s, len(messages) / plain_s
    present = events_present(messages)
    ratio = hdfsad_per_core / drain_rate

    rows = corpus_rows(corpus) + ingest_rows(m, cores) + summary_checks(m.summary, corpus)
    rows += [
        ("Drain3 input", f"content of the first {fmt_int(len(messages))} lines (files in name order), "
                         "read into memory before timing"),
        ("Drain3 (default config + BLK/IP/NUM masking): time", fmt_s(drain_s)),
        ("Drain3 (masked) lines/s, 1 process", fmt_int(drain_rate)),
        ("Drain3 (default config, no masking) lines/s, 1 process", fmt_int(plain_rate)),
        ("**ratio: hdfsad lines/s per core / Drain3 (masked) lines/s**",
         f"**{ratio:.2f}** (target >= 1: {verdict(ratio >= 1)})"),
        ("ratio vs Drain3 without masking", f"{hdfsad_per_core / plain_rate:.2f}"),
        ("Drain3 templates found (masked / no masking)",
         f"{drain_templates} / {plain_templates} vs the {len(load_templates())} hdfsad knows "
         f"({present} of them occur in the Drain3 input)"),
    ]
    say(md_table(rows))
    say()


def full_section(spark, cfg, args) -> None:
    say("## (b) Full-scale ingest of the rendered reference corpus")
    say()
    ref_dir = os.path.abspath(reference_data_dir(cfg))
    if not all(os.path.isfile(os.path.join(ref_dir, f)) for f in REFERENCE_FILES):
        say(f"skipped: reference data not found at {ref_dir}")
        say()
        return
    corpus = reference_corpus(args.work, ref_dir, args.seed)
    cores = spark.sparkContext.defaultParallelism
    m = measure_ingest(spark, cfg, corpus, args.work, args.repeat,
                       check=lambda summary: check_full(spark, summary, corpus, ref_dir, args.seed))
    count_ok, sample_ok, sample_note = m.checked
    target = f"<= {FULL_TARGET_S:.0f} s on {cores} cores"
    rows = corpus_rows(corpus) + ingest_rows(m, cores)
    rows += [
        ("**target**", f"**{target}: {verdict(m.wall <= FULL_TARGET_S)}** ({fmt_s(m.wall)})"),
        ("check: sequences rows = rendered blocks", f"{verdict(count_ok)}"),
        (f"check: events of {SAMPLE_BLOCKS:,} sampled blocks = input sequences",
         f"{verdict(sample_ok)} ({sample_note})"),
    ]
    rows += summary_checks(m.summary, corpus)
    say(md_table(rows))
    say()


def sample_rows(ref_dir: str, total: int, k: int, seed: int) -> dict[str, list[int]]:
    """Events of ``k`` blocks drawn uniformly from the ``total`` reference rows (re-read from the CSVs)."""
    picked = set(random.Random(seed).sample(range(total), min(k, total)))
    return {blk: events for i, (blk, events, _) in enumerate(reference_rows(ref_dir)) if i in picked}


def check_full(spark, summary, corpus: Corpus, ref_dir: str, seed: int) -> tuple[bool, bool, str]:
    """Row count of the written sequences partition, and a sample of blocks compared event by event."""
    from pyspark.sql import functions as F

    table = spark.read.parquet(summary.tables["sequences"]).where(F.col("ingest_date") == INGEST_DATE)
    count = table.count()
    expected = sample_rows(ref_dir, corpus.blocks, SAMPLE_BLOCKS, seed)
    got = {r["block_id"]: list(r["events"]) for r in
           table.where(F.col("block_id").isin(list(expected))).select("block_id", "events").collect()}
    missing = sum(1 for b in expected if b not in got)
    wrong = sum(1 for b, ev in expected.items() if b in got and got[b] != ev)
    note = f"{len(expected) - missing - wrong} equal, {wrong} different, {missing} missing"
    return count == corpus.blocks, missing == 0 and wrong == 0, f"{note}; table rows {count:,}"


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=2_000_000, help="generated lines for (a) (default 2,000,000)")
    p.add_argument("--full", action="store_true", help="also (b): ingest the rendered reference corpus")
    p.add_argument("--work", default=os.path.join("work", "bench"), help="cache and scratch dir (default work/bench)")
    p.add_argument("--drain-lines", type=int, default=500_000,
                   help="lines fed to Drain3 (a prefix of the corpus; default 500,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated/rendered corpora (default 0)")
    p.add_argument("--repeat", type=int, default=1,
                   help="timed ingests per corpus; the median run is reported (default 1)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="do not run a small untimed ingest first")
    args = p.parse_args(argv)
    if min(args.lines, args.drain_lines, args.repeat) < 1:
        p.error("--lines, --drain-lines and --repeat must be positive")
    args.work = os.path.abspath(args.work)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    spark, cfg = spark_session()
    try:
        header(argv, spark)
        if args.warmup:
            warm = warm_up(spark, cfg, args.work, args.seed)
            say(f"Untimed warm-up: one ingest of {warm.lines:,} generated lines "
                "(JVM start-up and first code generation are not in the figures below).")
            say()
        throughput_section(spark, cfg, args)
        if args.full:
            full_section(spark, cfg, args)
        say("Load average at the end (1/5/15 min): " + " / ".join(f"{x:.2f}" for x in os.getloadavg())
            + f" on {os.cpu_count()} cores (other processes share this machine).")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
