"""Training/evaluation reports: Markdown and HTML with PNG plots.

Plots are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend
switch, nothing shown); matplotlib is imported inside the plotting functions only.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: Metrics listed first in the report table, in this order; the rest follow alphabetically.
HEADLINE = ("accuracy", "precision", "recall", "f1", "macro_precision", "macro_recall", "macro_f1",
            "roc_auc", "pr_auc", "threshold")


def _figure(width: float = 6.0, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_history(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Loss curves (left) and validation metric curves (right) per epoch."""
    fig = _figure(10, 4)
    ax_loss, ax_metric = fig.subplots(1, 2)
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    keys = sorted({k for row in history for k in row})
    for key in ("loss", "val_loss"):
        if key in keys:
            ax_loss.plot(epochs, [row.get(key, np.nan) for row in history], marker="o", label=key)
    for key in keys:
        if key.startswith("val_") and key != "val_loss":
            ax_metric.plot(epochs, [row.get(key, np.nan) for row in history], marker=".", label=key)
    for ax, title in ((ax_loss, "loss"), (ax_metric, "validation metrics")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_confusion(cm: np.ndarray, path: str | Path) -> Path:
    """The 2×2 confusion matrix ``[[tn, fp], [fn, tp]]`` as an annotated heat map."""
    cm = np.asarray(cm)
    fig = _figure(4, 4)
    ax = fig.subplots()
    ax.imshow(np.log1p(cm), cmap="Blues")
    names = ["normal", "anomaly"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(cm[i, j]):,}", ha="center", va="center")
    ax.set_title("confusion matrix")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_pr_curve(precision: np.ndarray, recall: np.ndarray, path: str | Path,
                  average_precision: float | None = None) -> Path:
    """Precision against recall (step plot)."""
    fig = _figure(5, 4)
    ax = fig.subplots()
    ax.step(np.r_[0.0, recall], np.r_[precision[:1] if len(precision) else [1.0], precision], where="post")
    title = "precision-recall"
    if average_precision is not None and not math.isnan(average_precision):
        title += f" (AP {average_precision:.4f})"
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.01), title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.5f}"
    return str(value)


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    keys = [k for k in HEADLINE if k in metrics] + sorted(k for k in metrics if k not in HEADLINE)
    return [(k, _fmt(metrics[k])) for k in keys]


def write_report(directory: str | Path, *, title: str, metrics: dict[str, Any],
                 history: Sequence[dict[str, float]] = (), confusion: np.ndarray | None = None,
                 pr_curve: tuple[np.ndarray, np.ndarray] | None = None,
                 notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and the PNGs they show into ``directory``.

    Returns the written paths by name (``markdown``, ``html``, ``history``, ``confusion``, ``pr_curve``).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    images: list[tuple[str, str]] = []
    if history:
        paths["history"] = plot_history(history, out / "history.png")
        images.append(("Training curves", "history.png"))
    if confusion is not None:
        paths["confusion"] = plot_confusion(confusion, out / "confusion.png")
        images.append(("Confusion matrix", "confusion.png"))
    if pr_curve is not None:
        paths["pr_curve"] = plot_pr_curve(*pr_curve, out / "pr_curve.png",
                                          average_precision=metrics.get("pr_auc"))
        images.append(("Precision-recall curve", "pr_curve.png"))
    rows = _metric_rows(metrics)

    md = [f"# {title}", ""] + [f"{n}" for n in notes] + ([""] if notes else [])
    md += ["| metric | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    if confusion is not None:
        (tn, fp), (fn, tp) = np.asarray(confusion).tolist()
        md += ["| true \\ predicted | normal | anomaly |", "| --- | --- | --- |",
               f"| normal | {tn} | {fp} |", f"| anomaly | {fn} | {tp} |", ""]
    for caption, name in images:
        md += [f"## {caption}", "", f"![{caption}]({name})", ""]
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text("\n".join(md), "utf-8")

    e = html.escape
    body = [f"<h1>{e(title)}</h1>"] + [f"<p>{e(n)}</p>" for n in notes]
    body += ["<table><tr><th>metric</th><th>value</th></tr>"]
    body += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows] + ["</table>"]
    for caption, name in images:
        body += [f"<h2>{e(caption)}</h2>", f'<img src="{e(name)}" alt="{e(caption)}">']
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + e(title) +
            "</title><style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
            "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    paths["html"] = out / "report.html"
    paths["html"].write_text(page, "utf-8")
    return paths
