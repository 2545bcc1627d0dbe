"""The comparison with the study: every variant under both split protocols, plus a decision tree.

:func:`run_compare` reads the labelled reference CSV once, draws each protocol's split once, trains
and evaluates every variant on it (:func:`hdfsad.experiment.train_variant`, reports under
``out_dir/<protocol>/<variant>``), trains the Spark MLlib baseline (:mod:`hdfsad.baseline`) on the same
split, computes the bound that identical last-``max_len`` windows with both labels put on any model of
those windows (:func:`hdfsad.metrics.window_bound`), and returns everything as a :class:`Comparison`,
which :mod:`hdfsad.results_doc` renders as ``docs/results.md``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from hdfsad.baseline import BaselineResult, TreeConfig, run_baseline
from hdfsad.experiment import RunResult, train_variant
from hdfsad.labelled import Labelled, from_reference_csv
from hdfsad.splits import PROTOCOLS, STUDY_SEED, make_split
from hdfsad.variants import load_variant, variant_names

REFERENCE_CSV = os.path.join("hdfs_v1", "log_classification_train.csv.gz")


@dataclass
class ProtocolResults:
    """One protocol's table: the variants' runs, the tree, the window bounds (by ``max_len``)."""

    protocol: str
    sizes: dict[str, int]
    test_anomalies: int
    runs: list[RunResult] = field(default_factory=list)
    toggled_runs: list[RunResult] = field(default_factory=list)
    baseline: BaselineResult | None = None
    bounds: dict[int, dict[str, float]] = field(default_factory=dict)


@dataclass
class Comparison:
    source: str
    rows: int
    anomalies: int
    split_seed: int
    protocols: list[ProtocolResults]
    ambiguous_windows: dict[int, int]
    seconds: float = 0.0


def reference_csv(reference_dir: str) -> str:
    """The labelled reference CSV under ``reference_dir``; fails saying where it looked."""
    path = os.path.join(reference_dir, REFERENCE_CSV)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"the labelled reference data is not at {os.path.abspath(path)}: `hdfsad compare` trains on "
            f"{REFERENCE_CSV}; point paths.reference_data (--set paths.reference_data=DIR) or the "
            f"environment variable HDFSAD_REFERENCE_DATA at the directory that holds hdfs_v1/, or pass "
            f"--reference CSV")
    return path


def run_compare(data: Labelled | str, out_dir: str | os.PathLike, *, spark: Any = None,
                variants: Sequence[str] | None = None, protocols: Sequence[str] = PROTOCOLS,
                toggle_dedup: Sequence[str] = (), overrides: dict[str, dict[str, Any]] | None = None,
                split_seed: int = STUDY_SEED, tree: TreeConfig = TreeConfig(), resume: bool = False,
                log: Callable[[str], None] | None = print) -> Comparison:
    """Train and evaluate ``variants`` (default: every variant file) under ``protocols``.

    ``variants`` are names in ``conf/variants`` or YAML paths; ``data`` is a :class:`Labelled` or a
    labelled reference CSV path. ``toggle_dedup`` names variants to train a second time under the
    ``seed`` protocol with ``train.dedup`` switched (to measure dedup against plain training). ``overrides`` (``{"train": {...}}``) apply to every variant. Without ``spark`` there is
    no baseline row.
    """
    from hdfsad.metrics import window_bound
    from hdfsad.preprocessing import encode

    start = time.perf_counter()
    if isinstance(data, str):
        data = from_reference_csv(data)
    loaded = {}
    for name in (list(variants) if variants else variant_names()):
        variant = load_variant(name, overrides=overrides)
        loaded[variant.name] = (name, variant)
    unknown = sorted(set(toggle_dedup) - set(loaded))
    if unknown:
        raise ValueError(f"toggle_dedup: {unknown} not among the variants compared ({sorted(loaded)})")
    max_lens = sorted({v.model.max_len for _, v in loaded.values()})
    out = Path(out_dir)
    results = []
    for protocol in protocols:
        split = make_split(protocol, data.sequences, split_seed)
        test = data.subset(split.test)
        res = ProtocolResults(protocol, split.sizes(), int(test.labels.sum()))
        res.bounds = {m: window_bound(encode(test.sequences, m), test.labels) for m in max_lens}
        for name, (_, variant) in loaded.items():
            res.runs.append(train_variant(variant, data, protocol, out / protocol / name, split=split,
                                          resume=resume, log=log))
        if protocol == "seed":
            for name in toggle_dedup:
                path, variant = loaded[name]
                dedup = not variant.train.dedup
                variant = load_variant(path, overrides=_merge(overrides, {"train": {"dedup": dedup}}))
                res.toggled_runs.append(train_variant(
                    variant, data, protocol, out / protocol / f"{name}-{'dedup' if dedup else 'plain'}",
                    split=split, resume=resume, log=log))
        if spark is not None:
            res.baseline = run_baseline(spark, data, split, tree)
            if log:
                m = res.baseline.metrics
                log(f"[decision tree / {protocol}] test: F1 {m['f1']:.5f} (P {m['precision']:.5f} "
                    f"R {m['recall']:.5f}), macro F1 {m['macro_f1']:.5f}; trained in "
                    f"{res.baseline.train_seconds:.1f}s")
        results.append(res)
    everything = {m: int(window_bound(encode(data.sequences, m), data.labels)["ambiguous"]) for m in max_lens}
    return Comparison(data.source, len(data), int(data.labels.sum()), split_seed, results, everything,
                      time.perf_counter() - start)


def _merge(base: dict | None, extra: dict) -> dict:
    out = {k: dict(v) for k, v in (base or {}).items()}
    for key, section in extra.items():
        out.setdefault(key, {}).update(section)
    return out
