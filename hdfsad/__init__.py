"""hdfsad: anomaly detection for HDFS logs as a distributed batch system on Apache Spark."""

__version__ = "0.1.0"
