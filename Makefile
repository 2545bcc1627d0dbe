# hdfsad: two commands on a fresh machine (Python 3.11, Java 17):
#   make demo   set everything up, run the main job end to end on generated logs (local Spark)
#   make test   set everything up, run the full test suite
#   make compare  the nine LSTM variants against the study on the reference data -> docs/results.md
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast bench-ingest bench-score bench-ddp bench-grid compare clean

$(BIN)/hdfsad: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is the CPU build; setup.py pins it so no multi-GB CUDA build is pulled.
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BIN)/hdfsad

demo: $(BIN)/hdfsad
	$(BIN)/hdfsad demo

test: $(BIN)/hdfsad
	$(BIN)/python -m pytest

test-fast: $(BIN)/hdfsad
	$(BIN)/python -m pytest -m "not slow"

bench-ingest: $(BIN)/hdfsad
	$(BIN)/python benchmarks/bench_ingest.py --full

bench-score: $(BIN)/hdfsad
	$(BIN)/python benchmarks/bench_score.py

bench-ddp: $(BIN)/hdfsad
	$(BIN)/python benchmarks/bench_ddp.py

# The study's full grid (18 configs x 3 folds); BENCH_GRID_ARGS="--configs 6" for a reduced one.
bench-grid: $(BIN)/hdfsad
	$(BIN)/python benchmarks/bench_grid.py $(BENCH_GRID_ARGS)

# Trains the nine variants under both split protocols and a Spark decision tree on the labelled
# reference data (paths.reference_data / HDFSAD_REFERENCE_DATA), writes docs/results.md.
compare: $(BIN)/hdfsad
	$(BIN)/hdfsad compare $(COMPARE_ARGS)

clean:
	rm -rf $(VENV) work build *.egg-info
