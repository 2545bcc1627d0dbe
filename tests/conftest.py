"""Shared fixtures: one local SparkSession for the whole test session, small generated data."""
from __future__ import annotations

import os

import pytest

from hdfsad.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEST_OVERRIDES = [
    "spark.master=local[2]",
    "spark.conf.spark.driver.memory=2g",
    "spark.conf.spark.sql.shuffle.partitions=4",
    "spark.conf.spark.ui.showConsoleProgress=false",
    # The shared session keeps an in-memory catalog; tests of the persistent (Derby) catalog start
    # their own JVMs with a metastore under tmp_path.
    "catalog.metastore=session",
    # No MLflow runs from the tests that do not ask for them (they would land under ./work/mlruns).
    "tracking.enabled=false",
]


@pytest.fixture(scope="session")
def cfg():
    return load_config(overrides=TEST_OVERRIDES)


@pytest.fixture(scope="session")
def spark(cfg):
    from hdfsad.session import build_session

    session = build_session(cfg, "tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def reference_dir():
    """The shared reference data, or skip (it is never part of the repository)."""
    path = os.environ.get("HDFSAD_REFERENCE_DATA") or os.path.join(REPO, "..", "shared", "data")
    if not os.path.isfile(os.path.join(path, "hdfs_v1", "log_classification_train.csv.gz")):
        pytest.skip(f"reference data not found at {os.path.abspath(path)} (set HDFSAD_REFERENCE_DATA)")
    return path
