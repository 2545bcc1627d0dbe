"""Spark job: the nightly scoring run (ingest ->) scores, runs tables, report.  See `spark-submit.sh score --help`."""
import sys

from hdfsad.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
