"""Spark job: one Spark SQL query on the catalog.  See `spark-submit.sh sql --help`."""
import sys

from hdfsad.cli import main

if __name__ == "__main__":
    sys.exit(main(["sql", *sys.argv[1:]]))
