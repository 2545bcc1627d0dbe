"""Spark job: train one LSTM variant on labelled sequences, evaluate it, save model and report.  See `spark-submit.sh train --help`."""
import sys

from hdfsad.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
