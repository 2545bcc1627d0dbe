"""The persistent catalog: the stage tables registered for Spark SQL under ``catalog.database``.

``catalog.metastore`` chooses where:

* ``embedded`` (default): a Derby metastore (``<work_dir>/metastore_db``) and a warehouse
  (``<work_dir>/warehouse``) on the local disk. Embedded Derby admits one JVM at a time, so the
  driver takes ``<work_dir>/metastore.lock`` before it starts Spark, and checks Derby's own lock
  (held by ``spark-sql`` or the Thrift server): a second job fails at once with
  :class:`CatalogBusy`, naming the holder. Every job also writes ``<work_dir>/spark-conf``: with
  ``SPARK_CONF_DIR`` pointing there, ``spark-sql``, the Thrift server and ``beeline`` see the tables.
* ``hive``: the cluster's Hive metastore, configured the usual way (``hive-site.xml`` or
  ``spark.hadoop.hive.metastore.uris``); no lock is needed.
* ``session``: the in-memory catalog of the session (tests; nothing persists but the Parquet).

The tables are *external*: Parquet directories under ``paths.tables``, registered by location, so
dropping a table never deletes data and the Parquet paths stay usable without any catalog.
"""
from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import sys
from typing import Mapping, Sequence

from hdfsad import schemas as S

LOCK_FILE = "metastore.lock"
METASTORE_DIR = "metastore_db"
WAREHOUSE_DIR = "warehouse"
CLIENT_CONF_DIR = "spark-conf"
THRIFT_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"

_held_lock: int | None = None  # fd of the metastore lock this process holds until it exits


class CatalogBusy(RuntimeError):
    """The embedded metastore is in use by another process; the message names it and what to do."""


def work_path(cfg: Mapping, name: str) -> str:
    return os.path.abspath(os.path.join(cfg["paths"]["work_dir"], name))


def metastore_url(cfg: Mapping) -> str:
    return f"jdbc:derby:;databaseName={work_path(cfg, METASTORE_DIR)};create=true"


def session_conf(cfg: Mapping) -> dict[str, str]:
    """Spark properties a session needs for ``catalog.metastore`` (static: set before it starts)."""
    kind = cfg["catalog"]["metastore"]
    if kind == "session":
        return {"spark.sql.catalogImplementation": "in-memory"}
    conf = {"spark.sql.catalogImplementation": "hive"}
    if kind == "embedded":
        conf.update({
            "spark.sql.warehouse.dir": work_path(cfg, WAREHOUSE_DIR),
            "spark.hadoop.javax.jdo.option.ConnectionURL": metastore_url(cfg),
            "spark.hadoop.datanucleus.schema.autoCreateAll": "true",
            "spark.hadoop.hive.metastore.schema.verification": "false",
        })
    return conf


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or "an unknown process"
    except OSError:
        return "an unknown process"


def _derby_in_use(metastore_dir: str) -> bool:
    """True when another process has the Derby database booted (Derby locks ``dbex.lck``)."""
    path = os.path.join(metastore_dir, "dbex.lck")
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EACCES, errno.EAGAIN)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def acquire(cfg: Mapping) -> None:
    """Take the embedded metastore for this process (until it exits), or raise :class:`CatalogBusy`.

    Does nothing for ``hive`` and ``session`` metastores, or when this process holds it already.
    """
    global _held_lock
    if cfg["catalog"]["metastore"] != "embedded" or _held_lock is not None:
        return
    path = work_path(cfg, LOCK_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise CatalogBusy(
            f"the embedded metastore under {os.path.dirname(path)} is in use by {_holder(path)}; embedded "
            f"Derby admits one job at a time: wait for that job to finish, use another paths.work_dir, "
            f"or configure a shared metastore (catalog.metastore: hive)") from None
    if _derby_in_use(work_path(cfg, METASTORE_DIR)):
        os.close(fd)
        raise CatalogBusy(
            f"the embedded metastore {work_path(cfg, METASTORE_DIR)} is open in another process "
            f"(spark-sql, the Thrift server or a Spark shell with this SPARK_CONF_DIR); embedded Derby "
            f"admits one at a time: stop it first, or configure a shared metastore "
            f"(catalog.metastore: hive)")
    os.ftruncate(fd, 0)
    os.write(fd, f"hdfsad pid {os.getpid()} since {dt.datetime.now().isoformat(timespec='seconds')} "
                 f"({' '.join(sys.argv[:3])})\n".encode())
    _held_lock = fd


def release() -> None:
    """Give the embedded metastore lock back (tests; a job keeps it until it exits)."""
    global _held_lock
    if _held_lock is not None:
        os.ftruncate(_held_lock, 0)
        os.close(_held_lock)
        _held_lock = None


def client_conf(cfg: Mapping) -> dict[str, str]:
    """``spark-defaults.conf`` entries that let spark-sql / the Thrift server open the same catalog."""
    conf = dict(session_conf(cfg))
    conf["spark.sql.session.timeZone"] = cfg["spark"]["conf"].get("spark.sql.session.timeZone", "UTC")
    if cfg["catalog"]["metastore"] == "embedded":
        conf["spark.driver.extraJavaOptions"] = f"-Dderby.stream.error.file={work_path(cfg, 'derby.log')}"
    return conf


def write_client_conf(cfg: Mapping, log4j: str | None = None) -> str:
    """Write ``<work_dir>/spark-conf/spark-defaults.conf`` (+ the quiet log4j2 file); returns the dir."""
    out = work_path(cfg, CLIENT_CONF_DIR)
    os.makedirs(out, exist_ok=True)
    lines = ["# Written by hdfsad: SPARK_CONF_DIR=<this dir> spark-sql / beeline / the Thrift server",
             "# open the catalog the hdfsad jobs register their tables in."]
    lines += [f"{k} {v}" for k, v in sorted(client_conf(cfg).items())]
    with open(os.path.join(out, "spark-defaults.conf"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    log4j = log4j or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf",
                                  "log4j2.properties")
    if os.path.isfile(log4j):
        with open(log4j, encoding="utf-8") as src, open(os.path.join(out, "log4j2.properties"), "w",
                                                         encoding="utf-8") as dst:
            dst.write(src.read())
    return out


def prepare(spark, cfg: Mapping) -> None:
    """After the session starts, before the metastore is first opened: Derby's log file, client conf."""
    if cfg["catalog"]["metastore"] == "embedded":
        spark._jvm.java.lang.System.setProperty("derby.stream.error.file", work_path(cfg, "derby.log"))
    if cfg["catalog"]["metastore"] != "session":
        write_client_conf(cfg)


def qualified(spark, path: str) -> tuple[str, bool]:
    """``(path made absolute with its scheme`` (``file:/…``, ``hdfs://nn/…``), ``exists)``."""
    jpath = spark._jvm.org.apache.hadoop.fs.Path(path)
    fs = jpath.getFileSystem(spark._jsc.hadoopConfiguration())
    return fs.makeQualified(jpath).toString(), fs.exists(jpath)


def _location(spark, table: str) -> str | None:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect()
    return next((r.data_type for r in rows if r.col_name == "Location"), None)


def register(spark, cfg: Mapping, tables_root: str, names: Sequence[str] = S.TABLES) -> list[str]:
    """Register (or refresh) the tables under ``tables_root`` in ``catalog.database``; returns them.

    A table whose directory does not exist yet is skipped. Partitions are synchronised with the
    directories (``MSCK REPAIR TABLE … SYNC PARTITIONS``): added dates appear, dropped ones vanish.
    A table registered at another location (``paths.tables`` changed) is re-registered here.
    """
    from hdfsad.tables import table_path

    db = cfg["catalog"]["database"]
    # On a cluster's metastore the database goes where its warehouse says; locally under work_dir.
    where = "" if cfg["catalog"]["metastore"] == "hive" else f" LOCATION '{work_path(cfg, WAREHOUSE_DIR)}/{db}.db'"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`{where}")
    done = []
    for name in names:
        location, exists = qualified(spark, table_path(tables_root, name))
        if not exists:
            continue
        full = f"`{db}`.`{name}`"
        if spark.catalog.tableExists(f"{db}.{name}"):
            if (_location(spark, full) or "").rstrip("/") != location.rstrip("/"):
                spark.sql(f"DROP TABLE {full}")  # external: the data stays
        if not spark.catalog.tableExists(f"{db}.{name}"):
            spark.sql(f"CREATE TABLE {full} USING parquet LOCATION '{location}'")
        spark.sql(f"MSCK REPAIR TABLE {full} SYNC PARTITIONS")
        spark.catalog.refreshTable(f"{db}.{name}")
        done.append(name)
    return done


def spark_home() -> str:
    import pyspark

    return os.path.dirname(os.path.abspath(pyspark.__file__))


def thriftserver_command(cfg: Mapping, host: str = "127.0.0.1", port: int = 10000) -> tuple[list[str], dict]:
    """``(argv, env)`` that run the Spark Thrift server (JDBC/ODBC, beeline) over this catalog.

    pip PySpark ships the server (``spark-hive-thriftserver`` jar) and ``bin/beeline`` but not
    ``sbin/start-thriftserver.sh``; this is what that script runs, in the foreground.
    """
    conf_dir = write_client_conf(cfg)
    env = {**os.environ, "SPARK_CONF_DIR": conf_dir}
    argv = [os.path.join(spark_home(), "bin", "spark-submit"), "--class", THRIFT_CLASS,
            "--name", "hdfsad-thriftserver", "--master", cfg["spark"]["master"],
            "spark-internal",
            "--hiveconf", f"hive.server2.thrift.bind.host={host}",
            "--hiveconf", f"hive.server2.thrift.port={port}"]
    return argv, env
