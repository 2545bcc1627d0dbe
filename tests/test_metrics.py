"""Metrics against hand-computed values, and the report writer."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hdfsad import metrics
from hdfsad.reports import write_report


def labels_for(tn: int, fp: int, fn: int, tp: int) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.array([0] * (tn + fp) + [1] * (fn + tp))
    y_pred = np.array([0] * tn + [1] * fp + [0] * fn + [1] * tp)
    return y_true, y_pred


def test_confusion_matrix_layout():
    y_true, y_pred = labels_for(90, 5, 2, 3)
    rng = np.random.default_rng(0).permutation(100)
    assert metrics.confusion_matrix(y_true[rng], y_pred[rng]).tolist() == [[90, 5], [2, 3]]


def test_metrics_match_hand_computed_values():
    m = metrics.classification_metrics(*labels_for(90, 5, 2, 3))
    assert m["accuracy"] == pytest.approx(93 / 100)
    assert m["precision"] == pytest.approx(3 / 8)
    assert m["recall"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(6 / 13)                 # 2tp / (2tp + fp + fn)
    assert m["macro_precision"] == pytest.approx((3 / 8 + 90 / 92) / 2)
    assert m["macro_recall"] == pytest.approx((3 / 5 + 90 / 95) / 2)
    assert m["macro_f1"] == pytest.approx((6 / 13 + 180 / 187) / 2)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (90, 5, 2, 3)


def test_zero_division_gives_zero():
    m = metrics.classification_metrics(*labels_for(10, 0, 3, 0))
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0 + 20 / 23) / 2)


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError) as err:
        metrics.confusion_matrix([0, 2], [0, 1])
    assert "labels and predictions must be 0 (normal) or 1 (anomaly)" in str(err.value)
    with pytest.raises(ValueError) as err:
        metrics.confusion_matrix([0, 1], [0])
    assert "2 labels but 1 predictions" in str(err.value)


def test_roc_and_pr_auc_by_hand():
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert metrics.roc_auc(y, s) == pytest.approx(0.75)
    assert metrics.pr_auc(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    precision, recall, thr = metrics.precision_recall_curve(y, s)
    assert thr.tolist() == [0.8, 0.4, 0.35, 0.1]
    assert precision.tolist() == pytest.approx([1, 0.5, 2 / 3, 0.5])
    assert recall.tolist() == pytest.approx([0.5, 0.5, 1, 1])
    # ties count one half; a single class gives NaN
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.pr_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3])) and math.isnan(metrics.pr_auc([0, 0], [0.2, 0.3]))
    assert metrics.roc_auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0


def test_best_f1_threshold():
    thr, f1 = metrics.best_f1_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    assert thr == 0.35 and f1 == pytest.approx(0.8)
    with pytest.raises(ValueError) as err:
        metrics.best_f1_threshold([0, 0], [0.1, 0.2])
    assert "the labels hold no anomaly, so no threshold can be chosen" in str(err.value)


def test_score_metrics_applies_threshold():
    m = metrics.score_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.35)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (1, 1, 0, 2)
    assert m["threshold"] == 0.35 and m["roc_auc"] == pytest.approx(0.75)


def test_report_writes_markdown_html_and_pngs(tmp_path):
    y, s = np.array([0, 0, 1, 1, 0]), np.array([0.1, 0.4, 0.35, 0.8, 0.05])
    m = metrics.score_metrics(y, s)
    history = [{"epoch": 1.0, "loss": 0.5, "val_loss": 0.6, "val_f1": 0.4},
               {"epoch": 2.0, "loss": 0.3, "val_loss": 0.4, "val_f1": 0.7}]
    cm = metrics.confusion_matrix(y, (s >= 0.5).astype(int))
    precision, recall, _ = metrics.precision_recall_curve(y, s)
    paths = write_report(tmp_path / "r", title="v0 <test>", metrics=m, history=history, confusion=cm,
                         pr_curve=(precision, recall), notes=["tiny data"])
    for key in ("history", "confusion", "pr_curve"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "# v0 <test>" in md and "| macro_f1 |" in md and "![Confusion matrix](confusion.png)" in md
    assert "| anomaly | 1 | 1 |" in md
    page = paths["html"].read_text()
    assert "<h1>v0 &lt;test&gt;</h1>" in page and '<img src="pr_curve.png"' in page
