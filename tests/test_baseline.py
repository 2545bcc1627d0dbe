"""The Spark MLlib baseline: event-count features and a decision tree on a split."""
from __future__ import annotations

import numpy as np

from hdfsad.baseline import PART, count_features, run_baseline, split_frame, tree_scores, fit_tree
from hdfsad.labelled import from_arrays
from hdfsad.splits import make_split
from hdfsad.templates import NUM_EVENT_IDS


def test_count_features_counts_every_event_id(spark):
    df = spark.createDataFrame([(0, [4, 4, 21, 30]), (1, [])], "row long, events array<int>")
    rows = count_features(df).orderBy("row").collect()
    first = rows[0].features.toArray()
    assert len(first) == NUM_EVENT_IDS
    assert (first[4], first[21], first[30], first.sum()) == (2.0, 1.0, 1.0, 4.0)
    assert rows[1].features.toArray().sum() == 0.0


def test_the_tree_trains_on_train_and_validation_and_scores_the_test_rows(spark):
    rng = np.random.default_rng(0)
    seqs = [rng.choice([4, 8, 21], size=int(rng.integers(3, 30))).tolist() for _ in range(300)]
    labels = np.array([int(i % 6 == 0) for i in range(300)])
    for i in np.flatnonzero(labels):
        seqs[i][0] = 3  # an anomaly holds event 3 somewhere (not necessarily in its last events)
    data = from_arrays(seqs, labels)
    split = make_split("seed", data.sequences)
    frame = split_frame(spark, data, split)
    sizes = {r[PART]: r["count"] for r in frame.groupBy(PART).count().collect()}
    assert sizes == split.sizes()

    res = run_baseline(spark, data, split)
    assert res.train_rows == len(split.train) + len(split.validation)
    assert (res.metrics["f1"], res.metrics["fp"], res.metrics["fn"]) == (1.0, 0.0, 0.0)
    assert res.metrics["tp"] == labels[split.test].sum() and res.train_seconds > 0

    model = fit_tree(frame)
    y, p = tree_scores(model, frame)
    assert y.tolist() == labels.tolist() and ((p >= 0.5) == (labels == 1)).all()
