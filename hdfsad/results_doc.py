"""``docs/results.md``: a :class:`~hdfsad.compare.Comparison` rendered as Markdown, the study alongside.

The study's numbers come from ``hdfsad/resources/study.yaml`` (:func:`study_results`), the one place
they are kept. Every figure here is computed; the page says how to regenerate it.
"""
from __future__ import annotations

import math
import os
import platform
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Sequence

import yaml

from hdfsad.compare import Comparison, ProtocolResults
from hdfsad.experiment import RunResult

#: The issue's targets.
TARGET_ABN_F1_SEED = 0.999
TARGET_MACRO_F1_SEED = 0.9995
TARGET_ABN_F1_UNSEEN = 0.998
TARGET_GRID_SECONDS = 120.0
GRID_VARIANT = "v2_grid"


def study_results() -> dict[str, Any]:
    """The study's reported results (``hdfsad/resources/study.yaml``)."""
    return yaml.safe_load(resources.files("hdfsad.resources").joinpath("study.yaml").read_text("utf-8"))


def machine_description(threads: int | None = None) -> str:
    """CPU model, cores, torch threads, versions, load average (benchmarks may share the machine)."""
    import pyspark
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{cpu}, {os.cpu_count()} cores, torch threads {threads or torch.get_num_threads()}, no GPU "
            f"used; Python {platform.python_version()}, PyTorch {torch.__version__}, PySpark "
            f"{pyspark.__version__}; load average at the end {load}")


def _f(value: Any, digits: int = 5) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _pair(ours: float, study: float | None) -> str:
    return _f(ours) if study is None else f"{_f(ours)} ({_f(study)})"


def _run_row(run: RunResult, study: dict[str, Any], label: str | None = None) -> str:
    m, s = run.metrics, study.get(run.variant) if run.protocol == "seed" else None
    s = s or {}
    name = label or (f"{run.variant} ({s['label']})" if s.get("label") else run.variant)
    fed = f"{run.fed_rows:,}" + (f" distinct × {run.passes}" if run.dedup else "")
    return (f"| {name} | {_pair(m['accuracy'], s.get('accuracy'))} | "
            f"{_pair(m['macro_precision'], s.get('precision'))} | {_pair(m['macro_recall'], s.get('recall'))} | "
            f"**{_pair(m['macro_f1'], s.get('f1'))}** | {_f(m['precision'])} | {_f(m['recall'])} | "
            f"**{_f(m['f1'])}** | {_f(m['roc_auc'])} | {_f(m['pr_auc'])} | {int(m['fp'])} / {int(m['fn'])} | "
            f"{_f(run.threshold, 4)} | {run.train_seconds:.0f} s | {run.epochs_done} | {fed} |")


HEADER = ("| variant | accuracy | macro P | macro R | macro F1 | P (anomaly) | R (anomaly) | F1 (anomaly) "
          "| ROC-AUC | PR-AUC | FP / FN | threshold | training | epochs | rows fed |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def _protocol_section(res: ProtocolResults, study: dict[str, Any]) -> list[str]:
    variants = study["variants"]
    lines = []
    if res.protocol == "seed":
        sp = study["split"]
        same = (res.sizes["test"], res.test_anomalies) == (sp["test_rows"], sp["test_anomalies"])
        lines += [f"## Protocol `seed` — the study's split", "",
                  f"Random 75 / 25 split with seed {sp['random_state']} (numpy `RandomState`, the generator of "
                  f"scikit-learn's `train_test_split`), then the last 10 % of the training part as validation. "
                  f"Test set: {res.sizes['test']:,} rows, {res.test_anomalies:,} anomalies"
                  + (" — the study's test set exactly (96,323 rows, 2,901 anomalies)." if same else
                     f" (the study's: {sp['test_rows']:,} and {sp['test_anomalies']:,}).")]
    else:
        lines += ["## Protocol `unseen` — no test sequence occurs in training", "",
                  f"Split by distinct full sequence in the same proportions (identical sequences stay on one "
                  f"side; see `hdfsad/splits.py`). Test set: {res.sizes['test']:,} rows, "
                  f"{res.test_anomalies:,} anomalies. The study has no such protocol."]
    lines += ["", f"Training {res.sizes['train']:,} rows, validation {res.sizes['validation']:,}. "
              + ("Cells read `ours (study)`; the study reported macro figures only. " if res.protocol == "seed" else "")
              + "Macro = mean of the normal-class and the anomaly-class figure. The threshold is chosen on "
              "validation (maximum anomaly-class F1); training time is the wall time of `fit` (validation "
              "each epoch included).", "", HEADER]
    lines += [_run_row(run, variants) for run in res.runs]
    if res.baseline is not None:
        b, m = res.baseline, res.baseline.metrics
        dt = study["decision_tree"] if res.protocol == "seed" else {}
        lines.append(f"| decision tree, Spark MLlib, event counts of the full sequence | {_f(m['accuracy'])} | "
                     f"{_f(m['macro_precision'])} | {_f(m['macro_recall'])} | **{_f(m['macro_f1'])}** | "
                     f"{_pair(m['precision'], dt.get('precision'))} | {_pair(m['recall'], dt.get('recall'))} | "
                     f"**{_pair(m['f1'], dt.get('f1'))}** | {_f(m['roc_auc'])} | {_f(m['pr_auc'])} | "
                     f"{int(m['fp'])} / {int(m['fn'])} | 0.5 | {b.train_seconds:.0f} s | — | {b.train_rows:,} |")
    for window, bound in sorted(res.bounds.items()):  # one row per window the compared variants use
        lines.append(f"| *bound: best possible on the last {window} events* | {_f(bound['accuracy'])} | "
                     f"{_f(bound['macro_precision'])} | {_f(bound['macro_recall'])} | {_f(bound['macro_f1'])} | "
                     f"{_f(bound['precision'])} | {_f(bound['recall'])} | {_f(bound['f1'])} | — | — | "
                     f"{int(bound['fp'])} / {int(bound['fn'])} | — | — | — | — |")
    if res.toggled_runs:
        lines += ["", "Dedup against plain training (same variant, split and seed; plain = every training row "
                  "once per epoch, dedup = the distinct (window, label) pairs weighted by their counts, "
                  "`dedup_passes` times per epoch):", "", HEADER]
        by_name = {r.variant: r for r in res.runs}
        for other in res.toggled_runs:
            for run in filter(None, (by_name.get(other.variant), other)):
                mode = f"dedup × {run.passes}" if run.dedup else "plain"
                lines.append(_run_row(run, variants, f"{run.variant}, {mode}"))
    return lines + [""]


def _best(runs: Sequence[RunResult], key: str) -> RunResult | None:
    return max(runs, key=lambda r: r.metrics[key]) if runs else None


def _targets(cmp: Comparison, study: dict[str, Any]) -> list[str]:
    by = {p.protocol: p for p in cmp.protocols}
    lines = ["## Targets", ""]

    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    seed = by.get("seed")
    if seed and seed.runs:
        below = [f"{r.variant} {r.metrics['macro_f1']:.5f} < {study['variants'][r.variant]['f1']:.5f}"
                 for r in seed.runs if r.variant in study["variants"]
                 and r.metrics["macro_f1"] < study["variants"][r.variant]["f1"]]
        lines.append(f"- Every variant ≥ its study row (macro F1, `seed`): {mark(not below)}"
                     + (f" — below: {'; '.join(below)}." if below else "."))
        # each best run is set against the bound of its own window
        b_f1, b_macro = _best(seed.runs, "f1"), _best(seed.runs, "macro_f1")
        lines.append(f"- Best anomaly-class F1 ≥ {TARGET_ABN_F1_SEED} (`seed`): {mark(b_f1.metrics['f1'] >= TARGET_ABN_F1_SEED)}"
                     f" — {b_f1.variant} {b_f1.metrics['f1']:.5f}; no model of the last {b_f1.max_len} events "
                     f"can exceed {_f(seed.bounds.get(b_f1.max_len, {}).get('f1'))} on this test set.")
        lines.append(f"- Best macro F1 ≥ {TARGET_MACRO_F1_SEED} (`seed`): "
                     f"{mark(b_macro.metrics['macro_f1'] >= TARGET_MACRO_F1_SEED)} — {b_macro.variant} "
                     f"{b_macro.metrics['macro_f1']:.5f}; bound for its last {b_macro.max_len} events "
                     f"{_f(seed.bounds.get(b_macro.max_len, {}).get('macro_f1'))}.")
        grid = next((r for r in seed.runs if r.variant == GRID_VARIANT), None)
        if grid is not None:
            lines.append(f"- {GRID_VARIANT} ({grid.epochs_done} epochs) trains in ≤ {TARGET_GRID_SECONDS:.0f} s: "
                         f"{mark(grid.train_seconds <= TARGET_GRID_SECONDS)} — {grid.train_seconds:.0f} s "
                         f"on {grid.fed_rows:,} {'distinct weighted ' if grid.dedup else ''}rows "
                         f"(the study: about {study['seconds_per_epoch_v0_gpu']} s per epoch of its baseline "
                         f"on a GPU).")
    unseen = by.get("unseen")
    if unseen and unseen.runs:
        b = _best(unseen.runs, "f1")
        lines.append(f"- Best anomaly-class F1 ≥ {TARGET_ABN_F1_UNSEEN} (`unseen`): "
                     f"{mark(b.metrics['f1'] >= TARGET_ABN_F1_UNSEEN)} — {b.variant} {b.metrics['f1']:.5f}; "
                     f"bound for its last {b.max_len} events {_f(unseen.bounds.get(b.max_len, {}).get('f1'))}.")
    return lines + [""]


def _bound_section(cmp: Comparison, max_len: int) -> list[str]:
    lines = [f"## What the last {max_len} events allow", "",
             f"Every variant sees a block through its last {max_len} events (the study's window). Blocks whose "
             f"windows are identical but whose labels differ cannot all be classified right by any model of "
             f"that window. In the whole labelled file {cmp.ambiguous_windows.get(max_len, 0)} distinct "
             f"last-{max_len} windows carry both labels. On each test set, the best any classifier of the "
             f"window can do (each distinct window gets the answer that maximizes the anomaly-class F1; "
             f"`hdfsad.metrics.window_bound`) is:", "",
             "| protocol | windows with both labels | rows they cover | FP / FN at best | F1 (anomaly) | macro F1 | accuracy |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for res in cmp.protocols:
        b = res.bounds.get(max_len)
        if b:
            lines.append(f"| `{res.protocol}` | {int(b['ambiguous'])} | {int(b['ambiguous_rows'])} | "
                         f"{int(b['fp'])} / {int(b['fn'])} | {_f(b['f1'])} | {_f(b['macro_f1'])} | "
                         f"{_f(b['accuracy'])} |")
    seed = next((r.bounds.get(max_len) for r in cmp.protocols if r.protocol == "seed"), None)
    if seed and (seed["f1"] < TARGET_ABN_F1_SEED or seed["macro_f1"] < TARGET_MACRO_F1_SEED):
        lines += ["", f"So on the `seed` test set an anomaly-class F1 of {TARGET_ABN_F1_SEED} and a macro F1 of "
                  f"{TARGET_MACRO_F1_SEED} are out of reach of any model of the last {max_len} events, whatever "
                  f"its architecture or training. The decision tree sees the counts of the whole sequence (no "
                  f"window), which is why it can go beyond that bound."]
    return lines + [""]


def render(cmp: Comparison, *, command: str, machine: str, study: dict[str, Any] | None = None,
           generated: datetime | None = None) -> str:
    """The Markdown page."""
    study = study or study_results()
    runs = [r for p in cmp.protocols for r in p.runs]
    max_len = runs[0].max_len if runs else 19
    when = (generated or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Results: the nine LSTM variants against the study", "",
             f"Generated by `hdfsad compare` on {when} — do not edit by hand; regenerate with:", "",
             "```", command, "```", "",
             f"- **Data**: `{cmp.source}`: {cmp.rows:,} labelled sequences, {cmp.anomalies:,} anomalies.",
             f"- **Machine**: {machine}.",
             f"- **Wall time** of the whole comparison: {cmp.seconds / 60:.1f} min. Per-variant reports "
             f"(Markdown, HTML, curves, confusion matrix, PR curve) and model artifacts are written next to "
             f"each run (`<out>/<protocol>/<variant>/`), not committed.", ""]
    lines += _targets(cmp, study)
    for res in cmp.protocols:
        lines += _protocol_section(res, study)
    lines += _bound_section(cmp, max_len)
    return "\n".join(lines).rstrip() + "\n"

