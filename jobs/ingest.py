"""Spark job: raw HDFS logs -> sequences / rejects / events tables.  See `spark-submit.sh ingest --help`."""
import sys

from hdfsad.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
