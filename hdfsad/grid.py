"""Distributed grid search with k-fold cross-validation: every (config, fold) fit is one Spark task.

A grid file (``conf/grid.yaml``, the study's grid) names a base variant, the values to try per
dotted variant key (``train.batch_size: [16, 32]``, ``model.lstm_units: [[2, 2], [64, 64]]``), the
number of folds and the metric that ranks the configurations. :func:`run_grid`:

1. splits the labelled rows with the split protocol and keeps the test part out (the grid never
   sees it); the rest is cut into ``folds`` shuffled folds (:func:`fold_ids`);
2. broadcasts those rows once (flat event ids + lengths + labels + fold ids: a few MB for HDFS_v1)
   and submits one single-task Spark job per pending ``(config, fold)`` fit from a pool of driver
   threads as wide as the cluster's task slots, so the fits spread over the executors; each task
   trains in one process (:func:`fit_fold`, torch threads = the task's ``spark.task.cpus``) and
   scores its held-out fold at ``threshold``;
3. writes every finished fit at once as one Parquet file of the results table
   (``<out>/results/``), so a rerun skips the fits already done (a fit is identified by the resolved
   variant, the fold, the number of folds, the seeds and the data);
4. ranks the configurations whose folds are all done by the mean of ``metric`` (default ``f1``, the
   anomaly class's F1; the study ranked by accuracy, which the 97 % normal class dominates),
   writes ``docs/grid.md`` and the best configuration as a variant file (``grid_best.yaml``).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import yaml

from hdfsad.splits import PROTOCOLS, STUDY_SEED
from hdfsad.training import VAL_METRICS

GRID_KEYS = ("name", "description", "base_variant", "params", "folds", "seed", "metric", "protocol",
             "threshold")
#: Metrics a grid can rank by (all: higher is better), computed on each held-out fold.
RANK_METRICS = tuple(m for m in VAL_METRICS if m != "loss")
RESULTS_DIR = "results"


@dataclass(frozen=True)
class Grid:
    """A parsed, validated grid file (see ``conf/grid.yaml``)."""

    name: str
    base_variant: str
    params: dict[str, list]
    folds: int = 3
    seed: int = STUDY_SEED
    metric: str = "f1"
    protocol: str = "seed"
    threshold: float = 0.5
    description: str = ""
    source: str = "<dict>"

    def candidates(self) -> list[dict[str, Any]]:
        """Every combination, the first key varying slowest (file order)."""
        keys = list(self.params)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.params[k] for k in keys))]


def grid_from_dict(data: Any, source: str = "<dict>") -> Grid:
    """Validate a parsed grid mapping; every mistake names the key and what is allowed."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a grid must be a mapping with keys {list(GRID_KEYS)}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed keys: {list(GRID_KEYS)}")
    for key in ("name", "base_variant"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ValueError(f"{source}: '{key}' is required (a non-empty string)")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise ValueError(f"{source}: 'params' must map dotted variant keys (train.batch_size, "
                         f"model.lstm_units, ...) to lists of values")
    for key, values in params.items():
        section = str(key).split(".", 1)[0]
        if section not in ("model", "train") or "." not in str(key):
            raise ValueError(f"{source}: params key {key!r} must be model.<key> or train.<key>")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}: params.{key} must be a non-empty list of values, got {values!r}")
    folds = data.get("folds", 3)
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ValueError(f"{source}: 'folds' must be an integer >= 2, got {folds!r}")
    seed = data.get("seed", STUDY_SEED)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{source}: 'seed' must be an integer >= 0, got {seed!r}")
    metric = data.get("metric", "f1")
    if metric not in RANK_METRICS:
        raise ValueError(f"{source}: 'metric' must be one of {list(RANK_METRICS)}, got {metric!r}")
    protocol = data.get("protocol", "seed")
    if protocol not in PROTOCOLS:
        raise ValueError(f"{source}: 'protocol' must be one of {list(PROTOCOLS)}, got {protocol!r}")
    threshold = data.get("threshold", 0.5)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold < 1:
        raise ValueError(f"{source}: 'threshold' must be a number in (0, 1), got {threshold!r}")
    return Grid(data["name"], data["base_variant"], dict(params), folds, seed, metric, protocol,
                float(threshold), str(data.get("description", "")), source)


def load_grid(path: str | os.PathLike, *, folds: int | None = None, metric: str | None = None) -> Grid:
    """Read and validate a grid file; ``folds`` / ``metric`` override the file's."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"grid file {p} does not exist (the study's grid is conf/grid.yaml)")
    data = yaml.safe_load(p.read_text("utf-8"))
    if isinstance(data, dict):
        data = {**data, **({"folds": folds} if folds is not None else {}),
                **({"metric": metric} if metric is not None else {})}
    return grid_from_dict(data, str(p))


def overrides_of(candidate: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"train.epochs": 8}`` → ``{"train": {"epochs": 8}}`` (the form variants take)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in candidate.items():
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each of ``n`` rows: a ``RandomState(seed)`` permutation dealt round
    robin, so fold sizes differ by at most one."""
    if n < folds:
        raise ValueError(f"{n} rows cannot be cut into {folds} folds; use more data or fewer folds")
    out = np.empty(n, dtype=np.int64)
    out[np.random.RandomState(seed).permutation(n)] = np.arange(n) % folds
    return out


def fit_key(variant: Mapping[str, Any], fold: int, folds: int, seed: int, threshold: float,
            data_id: str) -> str:
    """What identifies one fit's result (resume skips a fit whose key is in the results table)."""
    text = json.dumps({"model": variant["model"], "train": variant["train"], "fold": fold, "folds": folds,
                       "seed": seed, "threshold": threshold, "data": data_id}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# the executor side -------------------------------------------------------------------------------

def task_threads() -> int:
    """``spark.task.cpus`` of the running task (1 outside a task)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return max(1, int(ctx.cpus())) if ctx is not None else 1


def fit_fold(task: Mapping[str, Any], data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
             ) -> dict[str, Any]:
    """One fit: train the task's variant on every fold but ``task['fold']``, score that fold.

    ``data`` is ``(values, lengths, labels, folds)``: the cross-validation rows, flat. Runs in a
    Spark task (or anywhere); torch uses the task's cpus as threads.
    """
    import torch

    from hdfsad import metrics
    from hdfsad.experiment import scores
    from hdfsad.models import build_model
    from hdfsad.preprocessing import encode
    from hdfsad.training import array_source, fit
    from hdfsad.variants import variant_from_dict

    threads = task_threads()
    torch.set_num_threads(threads)
    values, lengths, labels, folds = data
    seqs = np.empty(len(lengths), dtype=object)
    seqs[:] = np.split(values.astype(np.int64), np.cumsum(lengths)[:-1])
    variant = variant_from_dict(task["variant"], f"grid candidate {task['config_id']}")
    tcfg, max_len = variant.train, variant.model.max_len
    held_out = folds == task["fold"]
    source = array_source(seqs[~held_out], labels[~held_out], max_len, tcfg)
    model = build_model(variant.model, seed=tcfg.seed)
    start = time.perf_counter()
    result = fit(model, source, tcfg)
    seconds = time.perf_counter() - start
    s = scores(model, encode(seqs[held_out], max_len))
    m = metrics.score_metrics(labels[held_out], s, task["threshold"])
    return {"key": task["key"], "config_id": task["config_id"], "fold": task["fold"],
            "params": json.dumps(task["params"], sort_keys=True), "variant": json.dumps(task["variant"]),
            **{k: float(m[k]) for k in RANK_METRICS}, "tp": int(m["tp"]), "fp": int(m["fp"]),
            "fn": int(m["fn"]), "tn": int(m["tn"]), "epochs_done": result.epochs_done,
            "train_rows": int((~held_out).sum()), "eval_rows": int(held_out.sum()),
            "fit_seconds": seconds, "threads": threads, "history": json.dumps(result.history)}


# the driver side ---------------------------------------------------------------------------------

@dataclass
class GridResult:
    """The ranked configurations and what the run did."""

    grid: Grid
    ranking: list[dict[str, Any]]
    fits_run: int
    fits_skipped: int
    seconds: float
    out_dir: str
    results_path: str
    data_summary: str
    cv_rows: int
    parent_run: str | None = None
    best_path: str | None = None
    doc_path: str | None = None
    incomplete: list[int] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any] | None:
        return self.ranking[0] if self.ranking else None


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of the results table (empty when it does not exist yet)."""
    import pyarrow.parquet as pq

    files = sorted(Path(path).glob("*.parquet")) if Path(path).is_dir() else []
    rows: list[dict[str, Any]] = []
    for f in files:
        rows += pq.read_table(f).to_pylist()
    return rows


def _write_result(path: Path, row: Mapping[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".fit-{row['key']}.parquet.tmp"
    pq.write_table(pa.Table.from_pylist([dict(row)]), tmp)
    os.replace(tmp, path / f"fit-{row['key']}.parquet")


def rank_configs(rows: list[Mapping[str, Any]], tasks: list[Mapping[str, Any]], metric: str,
                 folds: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Configurations with all ``folds`` done, best first by mean ``metric`` (ties: lower config id);
    and the ids of the configurations still incomplete."""
    wanted = {t["key"]: t for t in tasks}
    by_config: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row["key"] in wanted:
            by_config.setdefault(wanted[row["key"]]["config_id"], []).append(row)
    ranking, incomplete = [], []
    for config_id in sorted({t["config_id"] for t in tasks}):
        fits = sorted(by_config.get(config_id, []), key=lambda r: r["fold"])
        if len(fits) < folds:
            incomplete.append(config_id)
            continue
        entry: dict[str, Any] = {"config_id": config_id, "params": json.loads(fits[0]["params"]),
                                 "variant": json.loads(fits[0]["variant"]),
                                 "folds": [float(r[metric]) for r in fits],
                                 "fit_seconds": float(np.mean([r["fit_seconds"] for r in fits]))}
        for m in RANK_METRICS:
            entry[f"mean_{m}"] = float(np.mean([r[m] for r in fits]))
        entry["std"] = float(np.std(entry["folds"]))
        ranking.append(entry)
    ranking.sort(key=lambda e: (-(e[f"mean_{metric}"] if not math.isnan(e[f"mean_{metric}"]) else -1.0),
                                e["config_id"]))
    return ranking, incomplete


def _cv_arrays(data: Any, grid: Grid) -> tuple[tuple[np.ndarray, ...], int]:
    from hdfsad.preprocessing import flatten
    from hdfsad.splits import make_split

    split = make_split(grid.protocol, data.sequences, STUDY_SEED)
    rows = np.sort(np.concatenate([split.train, split.validation]))  # the test part stays out
    part = data.subset(rows)
    values, lengths = flatten(part.sequences)
    dtype = np.int8 if values.size == 0 or int(values.max()) < 127 else np.int32
    return (values.astype(dtype), lengths.astype(np.int32), part.labels.astype(np.int64),
            fold_ids(len(part), grid.folds, grid.seed)), len(part)


def build_tasks(grid: Grid, base: Mapping[str, Any], data_id: str, limit: int | None = None
                ) -> list[dict[str, Any]]:
    """One task per (config, fold), configs in grid order; ``base`` is the base variant's raw mapping."""
    from hdfsad.variants import variant_from_dict

    tasks = []
    for config_id, params in enumerate(grid.candidates()[:limit]):
        variant = variant_from_dict({**base, "name": f"{grid.name}_{config_id}"}, grid.source,
                                    overrides_of(params))
        if variant.train.monitor != "loss" and variant.train.patience is not None:
            raise ValueError(f"{grid.source}: the base variant's train.monitor is {variant.train.monitor!r}; a "
                             f"grid fit has no validation set besides its held-out fold (which must not "
                             f"steer training): use train.monitor: loss or patience: null")
        resolved = variant.to_dict()
        for fold in range(grid.folds):
            tasks.append({"key": fit_key(resolved, fold, grid.folds, grid.seed, grid.threshold, data_id),
                          "config_id": config_id, "fold": fold, "params": params, "variant": resolved,
                          "threshold": grid.threshold})
    return tasks


def base_variant_data(name_or_path: str) -> dict[str, Any]:
    """The base variant's raw mapping (validated), from conf/variants or a YAML path."""
    from hdfsad.variants import load_variant, variants_dir

    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = variants_dir() / f"{name_or_path}.yaml"
    load_variant(path)  # validates, with the usual messages
    return yaml.safe_load(path.read_text("utf-8"))


def run_grid(spark: Any, grid: Grid, data: Any, out_dir: str | os.PathLike, *, tracker: Any = None,
             configs: int | None = None, log: Callable[[str], None] | None = print) -> GridResult:
    """Run the pending fits of ``grid`` on ``data`` (a :class:`~hdfsad.labelled.Labelled`) over the
    cluster; results accumulate in ``<out_dir>/results``. ``configs`` keeps the first N candidates."""
    from hdfsad.experiment import as_labelled
    from hdfsad.tracking import Tracker

    tracker = tracker or Tracker(None)
    start = time.perf_counter()
    data = as_labelled(data)
    base = base_variant_data(grid.base_variant)
    arrays, cv_rows = _cv_arrays(data, grid)
    data_id = hashlib.sha1(b"".join(a.tobytes() for a in arrays[:3])).hexdigest()[:16]
    tasks = build_tasks(grid, base, data_id, configs)
    out = Path(out_dir).resolve()
    results = out / RESULTS_DIR
    done = {r["key"] for r in read_results(results)}
    pending = [t for t in tasks if t["key"] not in done]
    sc = spark.sparkContext
    slots = max(1, sc.defaultParallelism)
    if log:
        log(f"[grid {grid.name}] {data.summary()}; {cv_rows:,} cross-validation rows (test part held out), "
            f"{len(tasks) // grid.folds} configs x {grid.folds} folds = {len(tasks)} fits, {len(tasks) - len(pending)} "
            f"done already, {len(pending)} to run on {slots} task slot(s) of {sc.master}")
    parent = tracker.start_run(f"grid:{grid.name}", {"grid": {"name": grid.name, "base_variant": grid.base_variant,
                                                              "folds": grid.folds, "seed": grid.seed,
                                                              "metric": grid.metric, "protocol": grid.protocol,
                                                              "threshold": grid.threshold,
                                                              "params": json.dumps(grid.params)},
                                                     "data": data.source, "configs": len(tasks) // grid.folds},
                               {"hdfsad.kind": "grid-search"})
    lock = threading.Lock()
    finished = [0]
    try:
        if pending:
            shared = sc.broadcast(arrays)

            def run_one(task: dict[str, Any]) -> dict[str, Any]:
                sc.setJobDescription(f"grid {grid.name}: config {task['config_id']} fold {task['fold']}")
                row = sc.parallelize([task], 1).map(lambda t: fit_fold(t, shared.value)).collect()[0]
                _write_result(results, row)
                child = tracker.start_run(f"{grid.name} config {row['config_id']} fold {row['fold']}",
                                          {**task["params"], "fold": row["fold"], "config_id": row["config_id"]},
                                          {"hdfsad.kind": "grid-fit"}, parent=parent)
                tracker.log_history(child, json.loads(row["history"]))
                tracker.log_metrics(child, {k: row[k] for k in (*RANK_METRICS, "fit_seconds")},
                                    step=row["epochs_done"])
                tracker.end_run(child)
                with lock:
                    finished[0] += 1
                    if log:
                        log(f"[grid {grid.name}] {finished[0]}/{len(pending)} config {row['config_id']} "
                            f"{json.dumps(task['params'])} fold {row['fold']}: {grid.metric} "
                            f"{row[grid.metric]:.5f} in {row['fit_seconds']:.1f}s")
                return row

            with ThreadPoolExecutor(max_workers=min(slots, len(pending))) as pool:
                list(pool.map(run_one, pending))
            shared.unpersist()
        ranking, incomplete = rank_configs(read_results(results), tasks, grid.metric, grid.folds)
        result = GridResult(grid, ranking, len(pending), len(tasks) - len(pending), time.perf_counter() - start,
                            str(out), str(results), data.summary(), cv_rows, parent, incomplete=incomplete)
        if ranking:
            best = ranking[0]
            tracker.log_params(parent, {"best": best["params"]})
            tracker.log_metrics(parent, {f"best_mean_{m}": best[f"mean_{m}"] for m in RANK_METRICS})
    except BaseException:
        tracker.end_run(parent, "FAILED")
        raise
    return result


def finish_parent(tracker: Any, result: GridResult) -> None:
    """Attach the page and the best variant to the grid's parent run and close it."""
    if result.doc_path:
        tracker.log_artifact(result.parent_run, result.doc_path)
    if result.best_path:
        tracker.log_artifact(result.parent_run, result.best_path)
    tracker.end_run(result.parent_run)


def best_variant_yaml(result: GridResult, name: str, base: Mapping[str, Any]) -> str:
    """The best configuration as a variant file: the base variant's keys with the best values."""
    best = result.best
    if best is None:
        raise ValueError("no configuration has all its folds done; rerun the grid search to finish it")
    over = overrides_of(best["params"])
    data = {"name": name,
            "description": f"Best of grid {result.grid.name} by mean {result.grid.metric} over "
                           f"{result.grid.folds} folds: " + ", ".join(f"{k} {v}" for k, v in best["params"].items()),
            "model": {**(base.get("model") or {}), **over.get("model", {})},
            "train": {**(base.get("train") or {}), **over.get("train", {})}}
    header = (f"# Written by `hdfsad grid-search` (grid {shown_path(result.grid.source)}): the configuration with the best\n"
              f"# mean {result.grid.metric} ({best[f'mean_{result.grid.metric}']:.5f} +- {best['std']:.5f}) on the "
              f"held-out folds; every other key is the base variant's ({result.grid.base_variant}).\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def write_best(result: GridResult, path: str | os.PathLike) -> str:
    """Write :func:`best_variant_yaml` to ``path`` (its name is the file's stem) and validate it."""
    from hdfsad.variants import load_variant

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(best_variant_yaml(result, p.stem, base_variant_data(result.grid.base_variant)), "utf-8")
    load_variant(p)
    result.best_path = str(p)
    return str(p)


def shown_path(path: Any) -> str:
    """``path`` relative to the working directory when it lies under it (pages and files that are
    committed should not carry one machine's absolute paths), else as it is."""
    text = str(path)
    if "://" in text or not os.path.isabs(text):
        return text
    rel = os.path.relpath(text)
    return text if rel.startswith("..") else rel


def _fmt(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def render(result: GridResult, *, command: str = "", machine: str = "") -> str:
    """``docs/grid.md``: the configurations ranked by the grid's metric."""
    g = result.grid
    keys = list(g.params)
    lines = [f"# Grid search `{g.name}`", ""]
    if g.description:
        lines += [g.description, ""]
    lines += [
        f"{len(result.ranking)} configurations ranked by the mean **{g.metric}** over {g.folds} held-out folds "
        f"(threshold {g.threshold}); base variant `{g.base_variant}`. Data: {result.data_summary}; "
        f"{result.cv_rows:,} cross-validation rows (the `{g.protocol}` protocol's test part is held out and "
        f"never seen). `f1`, `precision`, `recall` are the anomaly class's; the study ranked by accuracy, "
        f"which the ~97 % normal class dominates.",
        "",
        f"Wall time {result.seconds / 60:.1f} min for {result.fits_run} fits run "
        f"({result.fits_skipped} done by an earlier run and skipped); results table `{shown_path(result.results_path)}`.",
        "",
    ]
    if command:
        lines += [f"Command: `{command}`", ""]
    if machine:
        lines += [f"Machine: {machine}", ""]
    head = ["rank", *keys, f"mean {g.metric}", "std", "folds", "accuracy", "macro F1", "PR AUC", "fit s"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for i, e in enumerate(result.ranking, 1):
        cells = [str(i), *[_fmt(e["params"][k]) for k in keys], f"{e[f'mean_{g.metric}']:.5f}", f"{e['std']:.5f}",
                 " ".join(f"{v:.4f}" for v in e["folds"]), f"{e['mean_accuracy']:.5f}", f"{e['mean_macro_f1']:.5f}",
                 f"{e['mean_pr_auc']:.5f}", f"{e['fit_seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if result.incomplete:
        lines += ["", f"Incomplete (rerun to finish): configs {result.incomplete}."]
    if result.best_path:
        lines += ["", f"Best configuration written to `{result.best_path}`."]
    return "\n".join(lines) + "\n"


def result_dict(result: GridResult) -> dict[str, Any]:
    d = asdict(result)
    d["grid"] = asdict(result.grid)
    return d
