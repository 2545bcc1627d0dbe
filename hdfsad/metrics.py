"""Classification metrics in numpy (no scikit-learn), for labels 1 = anomaly, 0 = normal.

Conventions:

* the confusion matrix is ``[[tn, fp], [fn, tp]]`` (rows: true class, columns: predicted class);
* ``precision``/``recall``/``f1`` are those of the **anomaly** class (the log-anomaly literature);
* ``macro_*`` average the normal-class and anomaly-class figures, as the study's tables do
  (``macro_f1`` is the mean of the two per-class F1, not the F1 of the macro precision and recall);
* a ratio whose denominator is 0 is 0 (no prediction of a class has precision 0);
* a row is predicted anomalous when its score is ``>= threshold``;
* ``pr_auc`` is the average precision ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds (the
  step-wise area, as scikit-learn's ``average_precision_score``); ``roc_auc`` is the trapezoidal
  area under the ROC curve (ties count one half). Both are NaN when only one class is present.
"""
from __future__ import annotations

import numpy as np


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _f1(p: float, r: float) -> float:
    return _ratio(2 * p * r, p + r)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``[[tn, fp], [fn, tp]]`` as int64."""
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: {len(y_true)} labels but {len(y_pred)} predictions")
    bad = ~np.isin(y_true, (0, 1)) | ~np.isin(y_pred, (0, 1))
    if bad.any():
        raise ValueError("confusion_matrix: labels and predictions must be 0 (normal) or 1 (anomaly)")
    return np.bincount(2 * y_true + y_pred, minlength=4).reshape(2, 2)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """Accuracy, anomaly-class and macro precision/recall/F1, and the four counts."""
    (tn, fp), (fn, tp) = np.asarray(cm).tolist()
    p_abn, r_abn = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    p_norm, r_norm = _ratio(tn, tn + fn), _ratio(tn, tn + fp)
    f_abn, f_norm = _f1(p_abn, r_abn), _f1(p_norm, r_norm)
    return {
        "accuracy": _ratio(tp + tn, tn + fp + fn + tp),
        "precision": p_abn, "recall": r_abn, "f1": f_abn,
        "macro_precision": (p_abn + p_norm) / 2, "macro_recall": (r_abn + r_norm) / 2,
        "macro_f1": (f_abn + f_norm) / 2,
        "tn": float(tn), "fp": float(fp), "fn": float(fn), "tp": float(tp),
    }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """:func:`metrics_from_confusion` of the predictions."""
    return metrics_from_confusion(confusion_matrix(y_true, y_pred))


def _ranked(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Cumulative (tp, fp) at each distinct score, highest first; the scores; the positive count."""
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"scores: {len(y)} labels but {len(s)} scores")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.zeros(0, np.int64)
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    return tps.astype(np.float64), fps.astype(np.float64), s[last], int(y.sum())


def precision_recall_curve(y_true: np.ndarray, scores: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` at every distinct score, highest threshold first."""
    tps, fps, thr, pos = _ranked(y_true, scores)
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / pos if pos else np.zeros_like(tps)
    return precision, recall, thr


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``, starting at (0, 0) with threshold +inf."""
    tps, fps, thr, pos = _ranked(y_true, scores)
    neg = len(np.asarray(y_true).reshape(-1)) - pos
    fpr = np.r_[0.0, fps / neg if neg else fps * np.nan]
    tpr = np.r_[0.0, tps / pos if pos else tps * np.nan]
    return fpr, tpr, np.r_[np.inf, thr]


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when one class is absent."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def pr_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision; NaN without any anomaly."""
    precision, recall, _ = precision_recall_curve(y_true, scores)
    if not np.asarray(y_true).sum() or not len(recall):
        return float("nan")
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(threshold, f1)`` maximizing the anomaly-class F1 (``score >= threshold`` is an anomaly).

    Choose it on **validation** scores. Among equal F1 the highest threshold wins.
    """
    precision, recall, thr = precision_recall_curve(y_true, scores)
    if not len(thr) or not np.asarray(y_true).sum():
        raise ValueError("best_f1_threshold: the labels hold no anomaly, so no threshold can be "
                         "chosen; use a validation set that contains anomalies")
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    k = int(np.argmax(f1))
    return float(thr[k]), float(f1[k])


def score_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """:func:`classification_metrics` at ``threshold`` plus ``roc_auc`` and ``pr_auc``."""
    y = np.asarray(y_true).reshape(-1)
    pred = (np.asarray(scores).reshape(-1) >= threshold).astype(np.int64)
    out = classification_metrics(y, pred)
    out.update(roc_auc=roc_auc(y, scores), pr_auc=pr_auc(y, scores), threshold=float(threshold))
    return out


def window_bound(x: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """The best any classifier that sees only the rows of ``x`` can score on ``(x, y_true)``.

    Identical rows of ``x`` (e.g. the last 19 events of two blocks) that carry both labels force an
    error whatever a classifier answers for them. Of all answers that give each distinct row one
    label, this returns the metrics of the one that maximizes the anomaly-class F1 (it flags the
    distinct rows in decreasing order of their anomaly share and stops where F1 peaks: F1 is a ratio
    of sums, so the optimum is such a prefix), plus ``ambiguous`` (distinct rows holding both labels)
    and ``ambiguous_rows`` (the rows they cover).
    """
    from hdfsad.preprocessing import distinct_rows

    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    _, inverse = distinct_rows(np.asarray(x).reshape(len(y), -1))
    pos = np.bincount(inverse, weights=y).astype(np.int64)
    neg = np.bincount(inverse, weights=1 - y).astype(np.int64)
    order = np.argsort(-(pos / np.maximum(pos + neg, 1)), kind="stable")
    order = order[pos[order] > 0]
    tp, fp = np.r_[0, np.cumsum(pos[order])], np.r_[0, np.cumsum(neg[order])]
    total_pos = int(y.sum())
    f1 = np.where(tp > 0, 2 * tp / np.maximum(tp + fp + total_pos, 1), 0.0)
    k = int(np.argmax(f1))
    cm = np.array([[int(neg.sum() - fp[k]), int(fp[k])], [int(total_pos - tp[k]), int(tp[k])]])
    out = metrics_from_confusion(cm)
    both = (pos > 0) & (neg > 0)
    out.update(ambiguous=float(both.sum()), ambiguous_rows=float((pos + neg)[both].sum()))
    return out
