"""One experiment: train a variant on labelled sequences under a split protocol, then evaluate it.

:func:`train_variant` is the unit of ``hdfsad train`` and of every row of ``hdfsad compare``:

1. split the rows (:mod:`hdfsad.splits`: ``seed`` or ``unseen``);
2. train on the training part with :func:`hdfsad.training.fit` (augmentation and dedup as the variant's
   ``train`` section says), validation metrics logged each epoch, a checkpoint after each epoch;
3. choose the decision threshold that maximizes the anomaly-class F1 on **validation**;
4. evaluate on **test** at that threshold (the test set is touched once, here);
5. save the model artifact (:func:`hdfsad.artifacts.save_model`) and write the report
   (:func:`hdfsad.reports.write_report`).

Output directory layout: ``model/`` (the artifact), ``checkpoint.pt``, ``report.md``, ``report.html``
and the report's PNGs.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hdfsad import metrics
from hdfsad.labelled import Labelled, from_arrays, from_table
from hdfsad.splits import STUDY_SEED, Split, make_split
from hdfsad.variants import Variant

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_DIR = "model"


@dataclass
class RunResult:
    """What one experiment measured. ``metrics`` are the test metrics at ``threshold``."""

    variant: str
    protocol: str
    out_dir: str
    metrics: dict[str, float]
    metrics_at_half: dict[str, float]
    threshold: float
    validation_f1: float
    train_seconds: float
    epochs_done: int
    best_epoch: int | None
    resumed_from: int | None
    train_rows: int
    fed_rows: int
    dedup: bool
    passes: int
    max_len: int
    sizes: dict[str, int]
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_labelled(data: Any) -> Labelled:
    """A :class:`Labelled`, a path to a ``sequences`` table, or ``(sequences, labels)``."""
    if isinstance(data, Labelled):
        return data
    if isinstance(data, (str, os.PathLike)):
        return from_table(str(data))
    if isinstance(data, tuple) and len(data) == 2:
        return from_arrays(*data)
    raise TypeError(f"data: expected a Labelled, a sequences table path or (sequences, labels), "
                    f"got {type(data).__name__}")


def scores(model: Any, x: np.ndarray) -> np.ndarray:
    """P(anomaly) of encoded rows, computed once per distinct row."""
    from hdfsad.models import predict_proba_encoded
    from hdfsad.preprocessing import distinct_rows

    uniq, inverse = distinct_rows(x)
    return predict_proba_encoded(model, uniq)[inverse]


def train_variant(variant: Variant, data: Any, protocol: str, out_dir: str | os.PathLike, *,
                  split: Split | None = None, split_seed: int = STUDY_SEED, resume: bool = False,
                  log: Callable[[str], None] | None = print) -> RunResult:
    """Train ``variant`` on ``data`` (see :func:`as_labelled`) under ``protocol``; write into ``out_dir``.

    ``split`` reuses a split already drawn for ``data`` (``hdfsad compare`` draws each protocol's
    once); otherwise it is drawn with ``split_seed``. ``resume`` continues from ``out_dir``'s
    checkpoint when there is one (a finished run is only evaluated again); without it an old
    checkpoint is discarded and training starts afresh.
    """
    from hdfsad.models import build_model
    from hdfsad.preprocessing import encode
    from hdfsad.training import array_source, fit

    data = as_labelled(data)
    if split is None:
        split = make_split(protocol, data.sequences, split_seed)
    elif split.protocol != protocol:
        raise ValueError(f"split: drawn for protocol {split.protocol!r}, but protocol is {protocol!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT_FILE
    if not resume and checkpoint.exists():
        checkpoint.unlink()
    tcfg, max_len = variant.train, variant.model.max_len
    train, val, test = (data.subset(rows) for rows in (split.train, split.validation, split.test))
    source = array_source(train.sequences, train.labels, max_len, tcfg)
    x_val = encode(val.sequences, max_len)
    if log:
        log(f"[{variant.name} / {protocol}] {data.summary()}; split {split.sizes()}; training on "
            f"{len(source.y):,} {'distinct weighted ' if tcfg.dedup else ''}rows"
            + (f", {source.passes} passes per epoch" if source.passes > 1 else ""))

    model = build_model(variant.model, seed=tcfg.seed)
    start = time.perf_counter()
    result = fit(model, source, tcfg, validation=(x_val, val.labels), log=log,
                 checkpoint_path=checkpoint, resume=resume)
    seconds = time.perf_counter() - start
    train_rows = len(train) + int(_extra_windows(train, max_len, tcfg.extra_windows))
    return finish_run(variant, model, result, seconds, protocol, out, data_source=data.source,
                      data_summary=data.summary(), split_sizes=split.sizes(), split_seed=split.seed,
                      val=val, test=test, train_rows=train_rows, fed_rows=len(source.y),
                      passes=source.passes, log=log)


def finish_run(variant: Variant, model: Any, result: Any, seconds: float, protocol: str, out: Path, *,
               data_source: str, data_summary: str, split_sizes: dict[str, int], split_seed: int,
               val: Labelled, test: Labelled, train_rows: int, fed_rows: int,
               passes: int, log: Callable[[str], None] | None = print,
               extra: dict[str, Any] | None = None) -> RunResult:
    """Steps 3 to 5 after :func:`~hdfsad.training.fit`: threshold on validation, test once, write the
    artifact and the report. Shared by in-process and distributed (rank 0) training."""
    from hdfsad.artifacts import save_model
    from hdfsad.preprocessing import encode
    from hdfsad.reports import write_report

    tcfg, max_len = variant.train, variant.model.max_len
    x_val, x_test = encode(val.sequences, max_len), encode(test.sequences, max_len)
    threshold, val_f1 = metrics.best_f1_threshold(val.labels, scores(model, x_val))
    s_test = scores(model, x_test)
    test_metrics = metrics.score_metrics(test.labels, s_test, threshold)
    at_half = metrics.score_metrics(test.labels, s_test, 0.5)
    run = RunResult(variant.name, protocol, str(out), test_metrics, at_half, threshold, val_f1, seconds,
                    result.epochs_done, result.best_epoch, result.resumed_from, train_rows, fed_rows,
                    tcfg.dedup, passes, max_len, dict(split_sizes), result.history)

    save_model(out / MODEL_DIR, model, threshold=threshold, metrics=test_metrics, train_config=tcfg,
               extra={"variant": variant.to_dict(), "protocol": protocol, "split_seed": split_seed,
                      "data": data_source, "split_sizes": dict(split_sizes), "train_seconds": seconds,
                      "validation_f1": val_f1, "epochs_done": result.epochs_done,
                      "resumed_from": result.resumed_from, **(extra or {})})
    precision, recall, _ = metrics.precision_recall_curve(test.labels, s_test)
    write_report(out, title=f"{variant.name} — {protocol} protocol", metrics=test_metrics,
                 history=result.history, pr_curve=(precision, recall),
                 confusion=metrics.confusion_matrix(test.labels, (s_test >= threshold).astype(np.int64)),
                 notes=_notes(variant, run, data_summary))
    if log:
        m = test_metrics
        log(f"[{variant.name} / {protocol}] test at threshold {threshold:.4f}: F1 {m['f1']:.5f} "
            f"(P {m['precision']:.5f} R {m['recall']:.5f}), macro F1 {m['macro_f1']:.5f}, "
            f"{int(m['fp'])} FP {int(m['fn'])} FN; trained in {seconds:.1f}s; report {out / 'report.md'}")
    return run


def _extra_windows(data: Labelled, max_len: int, extra: int) -> int:
    from hdfsad.preprocessing import extra_window_counts

    lengths = np.fromiter((len(s) for s in data.sequences), dtype=np.int64, count=len(data))
    return int(extra_window_counts(lengths, max_len, extra).sum())


def _notes(variant: Variant, run: RunResult, data_summary: str) -> list[str]:
    sizes = run.sizes
    notes = [
        f"{variant.description}.",
        f"Data: {data_summary}. Protocol `{run.protocol}`: {sizes['train']:,} training, "
        f"{sizes['validation']:,} validation and {sizes['test']:,} test rows.",
        f"Training: {run.train_rows:,} rows after augmentation"
        + (f", fed as {run.fed_rows:,} distinct (window, label) pairs weighted by their counts"
           f" ({run.passes} pass(es) over them per epoch)" if run.dedup else "")
        + f"; {run.epochs_done} epoch(s) in {run.train_seconds:.1f} s"
        + (f", best epoch {run.best_epoch}" if run.best_epoch else "")
        + (f", resumed after epoch {run.resumed_from}" if run.resumed_from is not None else "") + ".",
        f"Decision threshold {run.threshold:.6f}, chosen on validation (F1 {run.validation_f1:.5f}); "
        f"the test metrics below are at that threshold (at 0.5: F1 {run.metrics_at_half['f1']:.5f}, "
        f"macro F1 {run.metrics_at_half['macro_f1']:.5f}).",
    ]
    return notes
