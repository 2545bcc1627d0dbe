"""One experiment end to end on tiny generated data: split, train, threshold, test, artifact, report;
the data sources; and the comparison page."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from hdfsad import metrics
from hdfsad.artifacts import load_model, predict_proba
from hdfsad.compare import reference_csv, run_compare
from hdfsad.experiment import as_labelled, train_variant
from hdfsad.labelled import from_arrays, from_reference_csv, from_table, table_order
from hdfsad.preprocessing import encode
from hdfsad.results_doc import render, study_results
from hdfsad.splits import make_split
from hdfsad.variants import variant_from_dict

torch.set_num_threads(1)


def tiny(n: int = 480, seed: int = 0) -> tuple[list[list[int]], np.ndarray]:
    """Every 8th block is an anomaly: event 3 among its last events; lengths 3..24, with repeats."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        s = rng.choice([4, 8, 21], size=int(rng.integers(3, 25))).tolist()
        if i % 8 == 0:
            s[-int(rng.integers(1, 3))] = 3
        seqs.append(s)
        labels.append(int(i % 8 == 0))
    seqs += [[4, 21, 8]] * 40  # a common sequence
    labels += [0] * 40
    return seqs, np.array(labels)


def variant(name: str = "tiny", **train):
    return variant_from_dict({"name": name, "description": "tiny test variant",
                              "model": {"lstm_units": [8]},
                              "train": {"batch_size": 32, "epochs": 2, "patience": None, **train}})


def test_train_variant_writes_a_model_and_a_report_and_never_tunes_on_test(tmp_path):
    seqs, y = tiny()
    lines: list[str] = []
    run = train_variant(variant(dedup=True), (seqs, y), "seed", tmp_path / "run", log=lines.append)

    split = make_split("seed", seqs)
    assert run.sizes == split.sizes() and run.epochs_done == 2 and run.dedup and run.max_len == 19
    assert run.train_rows == len(split.train) and run.fed_rows < run.train_rows  # distinct pairs
    assert lines[0].startswith("[tiny / seed] 520 labelled sequences (60 anomalies) from arrays; split ")
    assert lines[1].startswith("epoch 1/2  loss ") and "val_f1" in lines[1]
    assert lines[-1].startswith("[tiny / seed] test at threshold ")

    # the threshold is the validation optimum; the metrics are the test set's at that threshold
    artifact = load_model(tmp_path / "run" / "model")
    y_val = y[split.validation]
    val_scores = predict_proba(artifact, [seqs[i] for i in split.validation])
    assert artifact.threshold == pytest.approx(run.threshold)
    assert metrics.best_f1_threshold(y_val, val_scores) == pytest.approx((run.threshold, run.validation_f1))
    test_scores = predict_proba(artifact, [seqs[i] for i in split.test])
    expected = metrics.score_metrics(y[split.test], test_scores, run.threshold)
    assert {k: pytest.approx(v) for k, v in expected.items()} == run.metrics
    assert artifact.meta["protocol"] == "seed" and artifact.meta["variant"]["name"] == "tiny"
    assert artifact.meta["split_sizes"] == split.sizes()

    for name in ("report.md", "report.html", "history.png", "confusion.png", "pr_curve.png", "checkpoint.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    report = (tmp_path / "run" / "report.md").read_text()
    assert report.startswith("# tiny — seed protocol")
    assert "fed as" in report and "distinct (window, label) pairs" in report
    assert f"| threshold | {run.threshold:.5f} |" in report


def test_train_variant_resumes_or_starts_afresh(tmp_path):
    data = from_arrays(*tiny())
    first = train_variant(variant(epochs=1), data, "unseen", tmp_path, log=None)
    assert first.resumed_from is None and first.epochs_done == 1 and not first.dedup
    longer = train_variant(variant(epochs=2), data, "unseen", tmp_path, resume=True, log=None)
    assert longer.resumed_from == 1 and longer.epochs_done == 2 and len(longer.history) == 2
    assert longer.history[0] == first.history[0]
    fresh = train_variant(variant(epochs=2), data, "unseen", tmp_path, resume=False, log=None)
    assert fresh.resumed_from is None  # same seed, same run:
    assert [r["loss"] for r in fresh.history] == [r["loss"] for r in longer.history]


def test_train_variant_errors(tmp_path):
    data = from_arrays(*tiny())
    with pytest.raises(ValueError) as err:
        train_variant(variant(), data, "seed", tmp_path, split=make_split("unseen", data.sequences))
    assert "split: drawn for protocol 'unseen', but protocol is 'seed'" in str(err.value)
    with pytest.raises(TypeError) as err:
        as_labelled([1, 2, 3])
    assert "data: expected a Labelled, a sequences table path or (sequences, labels), got list" in str(err.value)


def write_table(path, block_ids, seqs, labels) -> None:
    part = path / "ingest_date=1970-01-01"
    part.mkdir(parents=True)
    pq.write_table(pa.table({
        "block_id": pa.array(block_ids), "events": pa.array(seqs, type=pa.list_(pa.int32())),
        "length": pa.array([len(s) for s in seqs], type=pa.int32()),
        "label": pa.array(labels, type=pa.int32())}), part / "part-0.parquet")


def test_data_sources_give_the_same_rows_in_the_same_order(tmp_path):
    seqs, y = tiny(40)
    csv = tmp_path / "ref.csv"
    csv.write_text("id,sequence,class\n" + "".join(
        f'{i},"({", ".join(map(str, s))}{"," if len(s) == 1 else ""})",{"abnormal" if lab else "normal"}\n'
        for i, (s, lab) in enumerate(zip(seqs, y))))
    order = np.random.default_rng(1).permutation(len(seqs))  # a table stores rows in any order
    write_table(tmp_path / "t", [f"seq-{i}" for i in order], [seqs[i] for i in order],
                [int(y[i]) for i in order])
    from_csv, from_parquet = from_reference_csv(str(csv)), from_table(str(tmp_path / "t"))
    for d in (from_csv, from_parquet, as_labelled(str(tmp_path / "t")), as_labelled((seqs, y))):
        assert d.labels.tolist() == y.tolist()
        assert [s.tolist() for s in d.sequences] == seqs
    assert table_order(np.array(["blk_9", "blk_10", "blk_1"])).tolist() == [2, 1, 0]
    assert table_order(np.array(["seq-10", "seq-9", "seq-1"])).tolist() == [2, 1, 0]


def test_data_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        from_table(str(tmp_path / "nowhere"))
    assert f"sequences table {tmp_path / 'nowhere'} does not exist" in str(err.value)
    write_table(tmp_path / "t", ["blk_1"], [[4, 21]], [None])
    with pytest.raises(ValueError) as err:
        from_table(str(tmp_path / "t"))
    assert f"sequences table {tmp_path / 't'} holds no labelled row" in str(err.value)
    (tmp_path / "u.csv").write_text('id,sequence\n0,"(4, 21)"\n')
    with pytest.raises(ValueError) as err:
        from_reference_csv(str(tmp_path / "u.csv"))
    assert "has no 'class' column: training needs labelled sequences" in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        from_reference_csv(str(tmp_path / "v.csv"))
    assert f"reference CSV {tmp_path / 'v.csv'} does not exist" in str(err.value)
    with pytest.raises(ValueError) as err:
        from_arrays([[1], [2]], [0, 2])
    assert "arrays: labels must be 0 (normal) or 1 (anomaly), found 2" in str(err.value)
    with pytest.raises(ValueError) as err:
        from_arrays([], [])
    assert "arrays: no labelled sequence to train on" in str(err.value)


def test_window_bound_counts_what_identical_windows_force():
    # window A: 2 anomalies + 1 normal; B: 2 normal; C: 1 anomaly; D: 1 anomaly + 3 normal
    x = np.array([[1], [1], [1], [2], [2], [3], [4], [4], [4], [4]])
    y = np.array([1, 1, 0, 0, 0, 1, 1, 0, 0, 0])
    b = metrics.window_bound(x, y)
    # best: flag C and A (TP 3, FP 1, FN 1); flagging D too would cost 3 FP for 1 TP
    assert (b["tp"], b["fp"], b["fn"], b["tn"]) == (3, 1, 1, 5)
    assert b["f1"] == pytest.approx(0.75) and (b["ambiguous"], b["ambiguous_rows"]) == (2, 7)
    clean = metrics.window_bound(encode([[1, 2], [3]], 4), np.array([1, 0]))
    assert clean["f1"] == 1.0 and clean["ambiguous"] == 0


def test_compare_renders_the_results_page(spark, tmp_path):
    seqs, y = tiny()
    paths = []
    for name, units, window in (("a", [6], 19), ("b", [4], 24)):
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\ndescription: test\nmodel: {{lstm_units: {units}, max_len: {window}}}\n"
            f"train: {{batch_size: 64, epochs: 1, dedup: true}}\n")
        paths.append(str(tmp_path / f"{name}.yaml"))
    cmp = run_compare(from_arrays(seqs, y, "tiny"), tmp_path / "out", spark=spark, variants=paths,
                      toggle_dedup=["a"], log=None)
    assert [p.protocol for p in cmp.protocols] == ["seed", "unseen"]
    seed = cmp.protocols[0]
    assert [r.variant for r in seed.runs] == ["a", "b"] and [r.dedup for r in seed.toggled_runs] == [False]
    assert seed.baseline.metrics["f1"] > 0.9 and seed.bounds[19]["f1"] == 1.0
    assert (tmp_path / "out" / "unseen" / "b" / "report.md").is_file()
    assert (tmp_path / "out" / "seed" / "a-plain" / "model" / "model.json").is_file()

    page = render(cmp, command="hdfsad compare --variants a b", machine="test machine")
    assert page.startswith("# Results: the nine LSTM variants against the study")
    assert "hdfsad compare --variants a b" in page and "- **Machine**: test machine." in page
    assert "## Protocol `seed` — the study's split" in page and "## Protocol `unseen`" in page
    assert "| decision tree, Spark MLlib, event counts of the full sequence |" in page
    assert "| *bound: best possible on the last 19 events* |" in page
    assert "| *bound: best possible on the last 24 events* |" in page  # b's window has its own row
    best = max(seed.runs, key=lambda r: r.metrics["f1"])
    assert f"; no model of the last {best.max_len} events can exceed " in page
    assert "| a, dedup × 1 |" in page and "| a, plain |" in page
    assert "- Best anomaly-class F1 ≥ 0.999 (`seed`):" in page
    with pytest.raises(ValueError) as err:
        run_compare(from_arrays(seqs, y), tmp_path / "x", variants=paths, toggle_dedup=["v2_grid"], log=None)
    assert "toggle_dedup: ['v2_grid'] not among the variants compared (['a', 'b'])" in str(err.value)


def test_the_study_numbers_are_data():
    study = study_results()
    assert list(study["variants"]) == ["v0_baseline", "v1_improved", "v2_grid", "v3_bn", "v4_gc", "v5_gn",
                                       "v6_bn_gn", "v7_da", "v8_da_gn"]
    assert study["variants"]["v8_da_gn"]["f1"] == 0.99269 and study["decision_tree"]["f1"] == 0.9990
    assert (study["split"]["test_rows"], study["split"]["test_anomalies"]) == (96323, 2901)


def test_compare_needs_the_reference_data(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        reference_csv(str(tmp_path))
    assert f"the labelled reference data is not at {tmp_path}/hdfs_v1/log_classification_train.csv.gz" in str(err.value)
    assert "HDFSAD_REFERENCE_DATA" in str(err.value)


def test_model_json_is_strict_json(tmp_path):
    run = train_variant(variant(epochs=1), tiny(), "seed", tmp_path, log=None)
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["threshold"] == pytest.approx(run.threshold) and meta["train_seconds"] > 0
