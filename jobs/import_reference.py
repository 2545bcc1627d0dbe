"""Spark job: reference CSV (id,sequence[,class]) -> sequences table.  See `spark-submit.sh import-reference --help`."""
import sys

from hdfsad.cli import main

if __name__ == "__main__":
    sys.exit(main(["import-reference", *sys.argv[1:]]))
