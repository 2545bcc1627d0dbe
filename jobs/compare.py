"""Spark job: every variant under both protocols + an MLlib decision tree -> docs/results.md.  See `spark-submit.sh compare --help`."""
import sys

from hdfsad.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
