"""Spark job: a block's score, events and raw lines.  See `spark-submit.sh explain --help`."""
import sys

from hdfsad.cli import main

if __name__ == "__main__":
    sys.exit(main(["explain", *sys.argv[1:]]))
