"""The model, its configuration, the preprocessing and the artifact round trip."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from hdfsad import artifacts
from hdfsad.models import ModelConfig, SequenceClassifier, build_model, predict_proba_encoded
from hdfsad.preprocessing import augment_windows, dedup_weighted, distinct_rows, encode, training_arrays
from hdfsad.templates import EVENT_ENCODING_VERSION
from hdfsad.training import TrainConfig, array_source, fit

torch.set_num_threads(1)


def separable(n: int = 48, seed: int = 0) -> tuple[list[list[int]], np.ndarray]:
    """Odd rows are anomalies: event 3 (never in normal rows) among their last three events."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        s = rng.choice([4, 8, 10, 21, 25], size=int(rng.integers(5, 30))).tolist()
        if i % 2:
            s[-int(rng.integers(1, 4))] = 3
        seqs.append(s)
        labels.append(i % 2)
    return seqs, np.array(labels)


# configuration -----------------------------------------------------------------------------------

def test_config_defaults_follow_the_study():
    cfg = ModelConfig()
    assert cfg.vocab_size == 32 and cfg.embedding_dim == 3 and cfg.max_len == 19
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig(lstm_units=[72, 72]).lstm_units == (72, 72)


@pytest.mark.parametrize("data, message", [
    ({"lstm_units": []}, "model.lstm_units: expected a non-empty list of positive integers"),
    ({"lstm_units": [64, 0]}, "model.lstm_units: expected a non-empty list of positive integers"),
    ({"dropout": 1.5}, "model.dropout: expected a number in [0, 1), got 1.5"),
    ({"init": "he"}, "model.init: expected one of ['keras', 'torch'], got 'he'"),
    ({"batch_norm": "yes"}, "model.batch_norm: expected true or false, got 'yes'"),
    ({"max_len": 0}, "model.max_len: expected an integer >= 1, got 0"),
    ({"units": [64]}, "model: unknown key(s) ['units']; allowed keys: ['vocab_size', 'embedding_dim', "
                      "'lstm_units', 'batch_norm', 'dropout', 'max_len', 'init']"),
])
def test_config_errors_name_key_and_allowed_values(data, message):
    with pytest.raises(ValueError) as err:
        ModelConfig.from_dict(data)
    assert message in str(err.value)


def test_model_shapes_and_layers():
    model = SequenceClassifier(ModelConfig(lstm_units=(8, 6), batch_norm=True, dropout=0.2))
    assert [lstm.hidden_size for lstm in model.lstms] == [8, 6]
    assert isinstance(model.norm, torch.nn.BatchNorm1d) and isinstance(model.dropout, torch.nn.Dropout)
    assert model(torch.zeros(5, 19, dtype=torch.int64)).shape == (5, 2)
    assert torch.equal(model.embedding.weight[0], torch.zeros(3))  # padding row
    plain = SequenceClassifier(ModelConfig(lstm_units=(4,)))
    assert isinstance(plain.norm, torch.nn.Identity) and isinstance(plain.dropout, torch.nn.Identity)


def test_build_model_is_seeded():
    a, b = build_model(ModelConfig(lstm_units=(4,)), seed=3), build_model(ModelConfig(lstm_units=(4,)), seed=3)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_model_overfits_tiny_separable_set():
    seqs, y = separable(32)
    model = build_model(ModelConfig(lstm_units=(16,)), seed=0)
    cfg = TrainConfig(batch_size=8, epochs=25, learning_rate=0.02, patience=None, seed=0)
    fit(model, array_source(seqs, y, 19, cfg), cfg)
    pred = predict_proba_encoded(model, encode(seqs, 19)) >= 0.5
    assert (pred == y).all()


# preprocessing -----------------------------------------------------------------------------------

def test_padding_and_truncation_are_exact():
    x = encode([[0, 1, 2], [], list(range(25)), [29] * 19, [30]], max_len=5)
    assert x.dtype == np.int64 and x.shape == (5, 5)
    assert x.tolist() == [[0, 0, 1, 2, 3],             # left padded, shifted +1
                          [0, 0, 0, 0, 0],             # empty
                          [21, 22, 23, 24, 25],        # last five of 0..24, shifted
                          [30, 30, 30, 30, 30],
                          [0, 0, 0, 0, 31]]            # UNKNOWN_EVENT_ID 30 -> 31


def test_encode_accepts_pyarrow_slices_and_nulls():
    seqs = [[1, 2], None, list(range(20)), [5]]
    arr = pa.array(seqs, pa.list_(pa.int32()))
    expected = encode([[1, 2], [], list(range(20)), [5]], 19)
    assert np.array_equal(encode(arr, 19), expected)
    assert np.array_equal(encode(arr.slice(2, 2), 19), expected[2:])
    assert np.array_equal(encode(pa.chunked_array([arr[:2], arr[2:]]), 19), expected)


def test_encode_rejects_out_of_range_ids():
    with pytest.raises(ValueError) as err:
        encode([[1, 31]], 19)
    assert "event id 31 out of range: ids must be 0..30" in str(err.value)
    with pytest.raises(ValueError) as err:
        encode([[-1]], 19)
    assert "event id -1 out of range" in str(err.value)


def test_augmentation_adds_the_expected_windows():
    seqs = [list(range(5)), list(range(6)), list(range(10)), [7, 7]]
    x, y = augment_windows(seqs, [0, 1, 1, 0], max_len=5, extra_windows=3)
    assert np.array_equal(x[:4], encode(seqs, 5)) and y[:4].tolist() == [0, 1, 1, 0]
    # length 5: none; length 6: one (ending 1 before the end); length 10: three.
    assert (x[4:] - 1).tolist() == [[0, 1, 2, 3, 4],
                                    [4, 5, 6, 7, 8], [3, 4, 5, 6, 7], [2, 3, 4, 5, 6]]
    assert y[4:].tolist() == [1, 1, 1, 1]
    x0, _ = augment_windows(seqs, [0, 1, 1, 0], max_len=5, extra_windows=0)
    assert np.array_equal(x0, encode(seqs, 5))


def test_dedup_weighted_collapses_identical_pairs():
    x = np.array([[1, 2], [1, 2], [0, 1], [1, 2], [1, 2]])
    y = np.array([0, 0, 1, 1, 0])
    xd, yd, counts = dedup_weighted(x, y)
    rows = {(tuple(a), b): c for a, b, c in zip(xd.tolist(), yd.tolist(), counts.tolist())}
    assert rows == {((1, 2), 0): 3.0, ((1, 2), 1): 1.0, ((0, 1), 1): 1.0}
    xw, yw, w = training_arrays([[0, 1], [0, 1], [5]], [1, 1, 0], max_len=3, dedup=True)
    assert xw.tolist() == [[0, 0, 6], [0, 1, 2]] and yw.tolist() == [0, 1] and w.tolist() == [1.0, 2.0]


def test_distinct_rows_in_numeric_order():
    x = np.array([[3, 1], [0, 2], [3, 1], [0, 10], [0, 2]])
    uniq, inverse = distinct_rows(x)
    assert uniq.tolist() == [[0, 2], [0, 10], [3, 1]] and inverse.tolist() == [2, 0, 2, 1, 0]
    with pytest.raises(ValueError) as err:
        distinct_rows(np.zeros(3))
    assert "distinct_rows: expected a 2-D array, got shape (3,)" in str(err.value)


# artifacts ---------------------------------------------------------------------------------------

@pytest.fixture()
def saved(tmp_path):
    model = build_model(ModelConfig(lstm_units=(6, 5), batch_norm=True), seed=1)
    model.eval()
    out = artifacts.save_model(tmp_path / "m", model, threshold=0.3, metrics={"f1": 0.9, "roc_auc": float("nan")},
                               train_config=TrainConfig(), extra={"variant": "test"})
    return model, out


def test_artifact_round_trip_gives_identical_predictions(saved):
    model, out = saved
    seqs, _ = separable(20)
    loaded = artifacts.load_model(out)
    assert loaded.threshold == 0.3 and loaded.max_len == 19 and loaded.config == model.config
    assert loaded.metrics == {"f1": 0.9, "roc_auc": None}
    assert np.array_equal(artifacts.predict_proba(model, seqs), artifacts.predict_proba(loaded, seqs))
    meta = json.loads((out / "model.json").read_text())
    assert meta["event_encoding_version"] == EVENT_ENCODING_VERSION and meta["variant"] == "test"
    assert meta["train_config"]["batch_size"] == 32
    assert artifacts.predict(loaded, seqs).tolist() == (artifacts.predict_proba(loaded, seqs) >= 0.3).tolist()


def test_corrupted_weights_fail_with_advice(saved):
    _, out = saved
    (out / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.load_model(out)
    assert "weights.pt does not match the checksum recorded in model.json" in str(err.value)
    assert "copy the model directory again" in str(err.value)
    meta = json.loads((out / "model.json").read_text())
    del meta["weights_sha256"]
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.load_model(out)
    assert "cannot read weights.pt" in str(err.value) and "the file is damaged" in str(err.value)


def test_shape_mismatch_names_the_tensor(saved):
    _, out = saved
    meta = json.loads((out / "model.json").read_text())
    meta["model_config"]["lstm_units"] = [7, 5]
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.load_model(out)
    msg = str(err.value)
    assert "the weights do not fit the model_config in model.json" in msg
    assert "lstms.0.weight_ih_l0 has shape [24, 3] in weights.pt but the model needs [28, 3]" in msg
    assert "copy the directory again as a whole, or retrain" in msg


@pytest.mark.parametrize("key, value, message", [
    ("event_encoding_version", EVENT_ENCODING_VERSION + 1,
     f"the model was trained on event encoding version {EVENT_ENCODING_VERSION + 1}, but this hdfsad"),
    ("artifact_format", 99, "artifact format 99"),
])
def test_version_mismatch_fails(saved, key, value, message):
    _, out = saved
    meta = json.loads((out / "model.json").read_text())
    meta[key] = value
    (out / "model.json").write_text(json.dumps(meta))
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.load_model(out)
    assert message in str(err.value)
    assert "retrain" in str(err.value)


def test_missing_model_json(tmp_path):
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.load_model(tmp_path)
    assert "is not a model directory: model.json is missing" in str(err.value)
