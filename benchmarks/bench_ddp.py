"""DDP throughput benchmark: samples/s of the same training with 1 and 2 DDP processes through
TorchDistributor (gloo, CPU), on the labelled HDFS_v1 data.

Run from the project root::

    .venv/bin/python benchmarks/bench_ddp.py [--rows N] [--epochs E] [--processes 1 2] [--variant v2_grid]

Trains ``--variant`` with ``train.dedup`` off (every row is a sample: the sharded Parquet reader's
streaming path) for ``--epochs`` epochs on the first ``--rows`` labelled rows, once per process count,
and prints per-epoch samples/s (global samples / the slowest rank's epoch time) and the wall time
including the launch. Without the reference data it says so and exits 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="labelled rows used (default 100,000; 0 = all)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--variant", default="v2_grid")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from hdfsad.compare import REFERENCE_CSV
    from hdfsad.config import load_config, reference_data_dir
    from hdfsad.distributed import DistributedConfig, train_distributed
    from hdfsad.labelled import from_reference_csv
    from hdfsad.results_doc import machine_description
    from hdfsad.session import build_session
    from hdfsad.variants import load_variant

    print("## DDP throughput benchmark\n")
    cfg = load_config(overrides=[f"spark.master=local[{max(args.processes)}]", "catalog.metastore=session"])
    csv = os.path.join(reference_data_dir(cfg), REFERENCE_CSV)
    if not os.path.isfile(csv):
        print(f"skipped: reference data not found at {os.path.abspath(csv)} (set HDFSAD_REFERENCE_DATA)")
        return 0
    data = from_reference_csv(csv)
    if args.rows:
        import numpy as np

        data = data.subset(np.arange(min(args.rows, len(data))))
    variant = load_variant(args.variant, overrides={"train": {"dedup": False, "epochs": args.epochs,
                                                              "patience": None}})
    spark = build_session(cfg, "bench-ddp")
    rows = []
    for n in args.processes:
        with tempfile.TemporaryDirectory(prefix="hdfsad-ddp-") as out:
            t0 = time.perf_counter()
            run = train_distributed(spark, variant, data, "seed", out, DistributedConfig(n), threads=args.threads,
                                    log=None)
            wall = time.perf_counter() - t0
        rates = [h["samples_per_s"] for h in run.history]
        rows.append((n, rates, wall, run.metrics["f1"], run.history[-1]["loss"]))
    print(f"Command: `python benchmarks/bench_ddp.py {' '.join(sys.argv[1:] if argv is None else argv)}`  ")
    print(f"Machine: {machine_description(args.threads)}\n")
    print(f"{data.summary()}; variant {variant.name} (dedup off, batch {variant.train.batch_size} per process, "
          f"linear lr scaling), {args.epochs} epoch(s)\n")
    print("| processes | samples/s per epoch | best samples/s | speed-up | wall time incl. launch | final loss | test F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = max(rows[0][1])
    for n, rates, wall, f1, loss in rows:
        print(f"| {n} | {', '.join(f'{r:,.0f}' for r in rates)} | {max(rates):,.0f} | {max(rates) / base:.2f}x | "
              f"{wall:.1f} s | {loss:.5f} | {f1:.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
