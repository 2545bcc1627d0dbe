"""The classical baseline of the comparison: a Spark MLlib decision tree on per-block event-count vectors.

Features: for every block, how often each event id occurs in its **full** sequence (a vector of
``NUM_EVENT_IDS`` counts), built with native Spark SQL expressions (no Python UDF). The tree trains
on the training and validation parts of a split (a tree needs no validation set; the study's tree
trained on the whole 75 %) and is scored on the test part: the rows every LSTM is scored on. A block
is an anomaly when the tree's leaf says so (probability >= 0.5).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hdfsad import metrics
from hdfsad.labelled import Labelled
from hdfsad.splits import Split
from hdfsad.templates import NUM_EVENT_IDS

FEATURES = "features"
ROW = "row"
PART = "part"
PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class TreeConfig:
    """MLlib ``DecisionTreeClassifier`` parameters (``max_depth`` at most 30 in MLlib)."""

    max_depth: int = 20
    max_bins: int = 32
    min_instances_per_node: int = 1
    seed: int = 24

    def describe(self) -> str:
        return (f"MLlib DecisionTreeClassifier(maxDepth={self.max_depth}, maxBins={self.max_bins}, "
                f"minInstancesPerNode={self.min_instances_per_node}) on {NUM_EVENT_IDS} event counts")


@dataclass
class BaselineResult:
    metrics: dict[str, float]
    train_seconds: float
    train_rows: int
    config: TreeConfig

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_features(df: Any, events: str = "events") -> Any:
    """``df`` with a ``features`` vector column: the count of each event id 0..NUM_EVENT_IDS-1 in ``events``."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    counts = F.transform(F.sequence(F.lit(0), F.lit(NUM_EVENT_IDS - 1)),
                         lambda k: F.size(F.filter(F.col(events), lambda e: e == k)).cast("double"))
    return df.withColumn(FEATURES, array_to_vector(counts))


def split_frame(spark: Any, data: Labelled, split: Split) -> Any:
    """A DataFrame of ``row`` (index into ``data``), ``events``, ``label`` and ``part`` (train/validation/test)."""
    import pyarrow as pa

    from hdfsad import schemas
    from hdfsad.preprocessing import flatten

    values, lengths = flatten(data.sequences)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    part = np.empty(len(data), dtype=object)
    for name, rows in zip(PARTS, (split.train, split.validation, split.test)):
        part[rows] = name
    table = pa.table({
        ROW: pa.array(np.arange(len(data), dtype=np.int64)),
        schemas.EVENTS: pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.int32))),
        schemas.LABEL: pa.array(data.labels.astype(np.int32)),
        PART: pa.array(part.tolist(), type=pa.string()),
    })
    return spark.createDataFrame(table)


def fit_tree(train: Any, config: TreeConfig = TreeConfig(), label: str = "label") -> Any:
    """Fit the tree on a DataFrame with ``events`` and ``label`` columns."""
    from pyspark.ml.classification import DecisionTreeClassifier

    tree = DecisionTreeClassifier(featuresCol=FEATURES, labelCol=label, maxDepth=config.max_depth,
                                  maxBins=config.max_bins, seed=config.seed,
                                  minInstancesPerNode=config.min_instances_per_node)
    return tree.fit(count_features(train))


def tree_scores(model: Any, df: Any, label: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """``(labels, P(anomaly))`` of every row of ``df``, in ``row`` order when it has that column."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    out = model.transform(count_features(df))
    if ROW in df.columns:
        out = out.orderBy(ROW)
    table = out.select(F.col(label).alias("y"),
                       vector_to_array("probability")[1].alias("p")).toArrow()
    return (table.column("y").to_numpy().astype(np.int64),
            table.column("p").to_numpy().astype(np.float64))


def run_baseline(spark: Any, data: Labelled, split: Split, config: TreeConfig = TreeConfig()
                 ) -> BaselineResult:
    """Train on train + validation, score the test part at 0.5."""
    from pyspark.sql import functions as F

    frame = split_frame(spark, data, split).cache()
    try:
        train = frame.where(F.col(PART) != "test")
        start = time.perf_counter()
        model = fit_tree(train, config)
        seconds = time.perf_counter() - start
        y, p = tree_scores(model, frame.where(F.col(PART) == "test"))
    finally:
        frame.unpersist()
    return BaselineResult(metrics.score_metrics(y, p, 0.5), seconds,
                          len(split.train) + len(split.validation), config)
