"""Spark job: k-fold grid search, one Spark task per (config, fold) fit.  See `spark-submit.sh grid-search --help`."""
import sys

from hdfsad.cli import main

if __name__ == "__main__":
    sys.exit(main(["grid-search", *sys.argv[1:]]))
