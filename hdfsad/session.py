"""The one place that builds a SparkSession from configuration."""
from __future__ import annotations

import os
import sys
from typing import Mapping


def launched_by_spark_submit() -> bool:
    """True when this Python driver was started by spark-submit (the JVM exists already)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def session_exists() -> bool:
    """True when this process already runs a SparkSession (``build_session`` then returns it)."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession() or SparkSession._instantiatedSession
    return session is not None and session._sc._jsc is not None


def build_session(cfg: Mapping, app_suffix: str = "", catalog: bool = False):
    """A SparkSession configured by ``cfg['spark']``.

    Under spark-submit the master and driver settings come from the command line (spark-submit.sh
    defaults to ``local[*]``); started from plain Python, ``spark.master`` of the config is used.

    With ``catalog`` the session opens the persistent catalog of ``cfg['catalog']``
    (:mod:`hdfsad.catalog`); for the embedded metastore the lock is taken first, so a second job
    fails before Spark starts. Without it the session keeps an in-memory catalog. A session that
    exists already is returned as it is (static settings cannot change).
    """
    from pyspark.sql import SparkSession

    from hdfsad import catalog as C

    fresh = not session_exists()
    extra = {"spark.sql.catalogImplementation": "in-memory"}
    if catalog and fresh:
        C.acquire(cfg)
        extra = C.session_conf(cfg)
    spark_cfg = cfg["spark"]
    name = spark_cfg["app_name"] + (f"-{app_suffix}" if app_suffix else "")
    builder = SparkSession.builder.appName(name)
    if not launched_by_spark_submit():
        builder = builder.master(spark_cfg["master"])
        # Python workers (pandas UDFs) run this interpreter, not whatever `python3` is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**spark_cfg["conf"], **(extra if fresh else {})}.items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("HDFSAD_SPARK_LOG_LEVEL", "WARN"))
    if catalog and fresh:
        C.prepare(spark, cfg)
    return spark
