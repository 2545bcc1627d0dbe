"""Tests of the synthetic log generator (pure Python: the oracle below regroups lines by block)."""
from __future__ import annotations

import bz2
import csv
import functools
import gzip
import os
import random
import re
from collections import Counter, defaultdict
from itertools import islice
from pathlib import Path

import pytest

from hdfsad import synth
from hdfsad.templates import UNKNOWN_EVENT_ID, classify

HEADER = re.compile(r"^(\d{6} \d{6}) \d+ [A-Z]+ [^ ]+: ")
BLOCK_ID = re.compile(r"blk_-?\d+")
REFERENCE_DATA = Path(os.environ.get("HDFSAD_REFERENCE_DATA",
                                     Path(__file__).resolve().parents[1].parent / "shared" / "data"))


# ---------------------------------------------------------------------------------------------
# oracle


def read_text(path: str) -> str:
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(Path(path).suffix, open)
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read()


@functools.lru_cache(maxsize=None)
def _classify_masked(masked_content: str) -> int:
    return classify(masked_content)


def event_of(content: str) -> int:
    """classify(), cached on the content with its block ids masked (they never affect the match)."""
    return _classify_masked(BLOCK_ID.sub("blk_0", content))


def parsed_lines(log_files: list[str]) -> list[tuple[str, int, int, list[str], int]]:
    """(timestamp, file index, line index, distinct block ids, event id) of every line."""
    rows = []
    for file_index, path in enumerate(log_files):
        for line_index, line in enumerate(read_text(path).splitlines()):
            header = HEADER.match(line)
            assert header, f"bad header: {line!r}"
            content = line[header.end():]
            blocks = list(dict.fromkeys(BLOCK_ID.findall(content)))
            rows.append((header.group(1), file_index, line_index, blocks, event_of(content)))
    return rows


def regroup(log_files: list[str]) -> dict[str, list[int]]:
    """Each block's events ordered by (timestamp, file index, line index), as the parser does."""
    groups: dict[str, list[int]] = defaultdict(list)
    for _, _, _, blocks, event in sorted(parsed_lines(log_files), key=lambda row: row[:3]):
        for block in blocks:
            groups[block].append(event)
    return dict(groups)


def read_labels(path: str) -> dict[str, str]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["BlockId", "Label"]
    labels = dict(rows[1:])
    assert len(labels) == len(rows) - 1, "a block is listed twice"
    return labels


def assert_files_well_ordered(log_files: list[str]) -> None:
    """Timestamps never decrease within a file, and each block lives in one file."""
    home: dict[str, int] = {}
    last: dict[int, str] = {}
    for stamp, file_index, _, blocks, _ in parsed_lines(log_files):
        assert stamp >= last.get(file_index, stamp)
        last[file_index] = stamp
        for block in blocks:
            assert home.setdefault(block, file_index) == file_index


def dir_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# ---------------------------------------------------------------------------------------------
# generate


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[synth.SynthResult, Path]:
    out = tmp_path_factory.mktemp("generated")
    return synth.generate(str(out), 1000, anomaly_rate=0.05, seed=3), out


def test_generate_is_deterministic(generated, tmp_path):
    result, out = generated
    again = synth.generate(str(tmp_path / "again"), 1000, anomaly_rate=0.05, seed=3)
    assert dir_bytes(tmp_path / "again") == dir_bytes(out)
    assert [Path(p).name for p in again.log_files] == ["part-00000.log", "part-00001.log"]
    synth.generate(str(tmp_path / "other"), 1000, anomaly_rate=0.05, seed=4)
    assert dir_bytes(tmp_path / "other")["part-00000.log"] != dir_bytes(out)["part-00000.log"]


def test_generate_labels_every_block_once_at_the_rate(generated):
    result, _ = generated
    labels = read_labels(result.labels_csv)
    assert len(labels) == result.blocks == 1000
    assert Counter(labels.values()) == {"Normal": 950, "Anomaly": 50}
    assert result.anomalies == 50
    assert {block.startswith("blk_-") for block in labels} == {True, False}


def test_generate_lines_parse_into_realistic_lifecycles(generated):
    result, _ = generated
    lines = parsed_lines(result.log_files)
    assert len(lines) == result.lines
    assert all(len(blocks) == 1 for _, _, _, blocks, _ in lines)
    assert UNKNOWN_EVENT_ID not in {event for *_, event in lines}
    assert_files_well_ordered(result.log_files)
    sequences = regroup(result.log_files)
    labels = read_labels(result.labels_csv)
    assert sequences.keys() == labels.keys()
    normal = [seq for block, seq in sequences.items() if labels[block] == "Normal"]
    assert all(seq[0] == synth.Event.ALLOCATE for seq in normal)
    assert all(Counter(seq)[synth.Event.RECEIVING] >= 3 for seq in normal)
    anomalous = {tuple(seq) for block, seq in sequences.items() if labels[block] == "Anomaly"}
    assert len(anomalous) > 20, "anomalies should come in many shapes"


def test_generate_interleaves_blocks(generated):
    result, _ = generated
    first_lines = [blocks[0] for _, file_index, _, blocks, _ in parsed_lines(result.log_files)[:200]
                   if file_index == 0]
    changes = sum(a != b for a, b in zip(first_lines, first_lines[1:]))
    assert changes > len(first_lines) / 3


@pytest.mark.parametrize("compress", ["gz", "bz2"])
def test_generate_compressed_matches_plain(generated, tmp_path, compress):
    result, _ = generated
    packed = synth.generate(str(tmp_path), 1000, anomaly_rate=0.05, seed=3, compress=compress)
    assert all(p.endswith(f".log.{compress}") for p in packed.log_files)
    assert [read_text(p) for p in packed.log_files] == [read_text(p) for p in result.log_files]


def test_generate_gzip_is_reproducible(tmp_path):
    one = synth.generate(str(tmp_path / "a"), 50, seed=1, compress="gz")
    two = synth.generate(str(tmp_path / "b"), 50, seed=1, compress="gz")
    assert [Path(p).read_bytes() for p in one.log_files] == [Path(p).read_bytes() for p in two.log_files]


def test_output_dir_with_parts_is_refused(tmp_path):
    synth.generate(str(tmp_path), 10, seed=1)
    with pytest.raises(FileExistsError):
        synth.generate(str(tmp_path), 10, seed=1)


def test_generate_writes_no_empty_files(tmp_path):
    result = synth.generate(str(tmp_path), 2, n_files=4)
    assert len(result.log_files) == 2


# ---------------------------------------------------------------------------------------------
# render


def random_sequences(count: int, seed: int) -> list[tuple[str, list[int], int | None]]:
    rng = random.Random(seed)
    ids = {f"blk_{rng.randint(-2 ** 63, 2 ** 63 - 1)}" for _ in range(count)}
    rows = []
    for block_id in sorted(ids):
        events = [rng.randrange(30) for _ in range(rng.randint(1, 60))]
        if rng.random() < 0.05:
            events[rng.randrange(len(events))] = UNKNOWN_EVENT_ID
        rows.append((block_id, events, rng.choice((0, 1, None))))
    return rows


def test_render_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "RENDER_CHUNK", 700)  # several chunks
    rows = random_sequences(3000, seed=5)
    result = synth.render_sequences(rows, str(tmp_path), n_files=3, seed=2)
    assert regroup(result.log_files) == {block_id: events for block_id, events, _ in rows}
    assert result.blocks == len(rows)
    assert result.lines == sum(len(events) for _, events, _ in rows)
    assert result.anomalies == sum(label == 1 for *_, label in rows)
    assert read_labels(result.labels_csv) == {
        block_id: synth.LABEL_NAMES[label] for block_id, _, label in rows if label is not None}
    assert_files_well_ordered(result.log_files)


def test_render_is_deterministic_and_compresses(tmp_path):
    rows = random_sequences(200, seed=6)
    plain = synth.render_sequences(rows, str(tmp_path / "a"), seed=1)
    synth.render_sequences(rows, str(tmp_path / "b"), seed=1)
    assert dir_bytes(tmp_path / "a") == dir_bytes(tmp_path / "b")
    packed = synth.render_sequences(rows, str(tmp_path / "c"), seed=1, compress="bz2")
    assert [read_text(p) for p in packed.log_files] == [read_text(p) for p in plain.log_files]


def test_render_unknown_event_matches_no_template(tmp_path):
    result = synth.render_sequences([("blk_7", [UNKNOWN_EVENT_ID] * 3, None)], str(tmp_path))
    assert regroup(result.log_files) == {"blk_7": [UNKNOWN_EVENT_ID] * 3}
    assert result.labels_csv is None


@pytest.mark.parametrize("rows, message", [
    ([("block_1", [4], 0)], "not a block id"),
    ([("blk_1", [31], 0)], "event ids"),
    ([("blk_1", [], 0)], "at least one event"),
    ([("blk_1", [4], 0), ("blk_1", [4], 0)], "duplicate"),
])
def test_render_rejects_bad_input(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        synth.render_sequences(rows, str(tmp_path))


def write_reference_csv(path: Path, text: str) -> None:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", newline="") as handle:
            handle.write(text)
    else:
        path.write_text(text)


REFERENCE_TEXT = 'id,sequence,class\n0,"(4,)",abnormal\n3,"(21, 4, 4, 4, 10, 8)",normal\n8,"(4, 30)",normal\n'


@pytest.mark.parametrize("name", ["train.csv", "train.csv.gz"])
def test_read_reference_csv(tmp_path, name):
    write_reference_csv(tmp_path / name, REFERENCE_TEXT)
    assert list(synth.read_reference_csv(str(tmp_path / name))) == [
        (0, [4], 1), (3, [21, 4, 4, 4, 10, 8], 0), (8, [4, 30], 0)]


def test_read_reference_csv_without_labels(tmp_path):
    write_reference_csv(tmp_path / "test.csv", 'id,sequence\n5,"(22, 20)"\n')
    assert list(synth.read_reference_csv(str(tmp_path / "test.csv"))) == [(5, [22, 20], None)]


@pytest.mark.parametrize("text, events", [
    ("(4, 21)", [4, 21]), ("(4,)", [4]), ("()", []), (" (1,2) ", [1, 2])])
def test_parse_sequence(text, events):
    assert synth.parse_sequence(text) == events


def test_reference_block_id_is_signed_and_bijective():
    assert [synth.reference_block_id(k) for k in range(4)] == ["blk_0", "blk_-1", "blk_2", "blk_-3"]


def read_block_ids(out: Path) -> dict[str, int]:
    with open(out / synth.BLOCK_IDS_FILE, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "BlockId"]
    return {block_id: int(row_id) for row_id, block_id in rows[1:]}


def assert_render_round_trip(csv_path: str, out: Path, limit: int | None = None) -> None:
    rows = list(islice(synth.read_reference_csv(csv_path), limit))
    result = synth.render(csv_path, str(out), limit=limit, n_files=2, compress="gz")
    block_ids = read_block_ids(out)
    assert sorted(block_ids.values()) == sorted(row_id for row_id, _, _ in rows)
    by_row = {block_ids[block]: events for block, events in regroup(result.log_files).items()}
    assert by_row == {row_id: events for row_id, events, _ in rows}
    labels = read_labels(result.labels_csv)
    assert labels == {synth.reference_block_id(row_id): synth.LABEL_NAMES[label] for row_id, _, label in rows}


def test_render_reference_format(tmp_path):
    write_reference_csv(tmp_path / "train.csv.gz", REFERENCE_TEXT)
    assert_render_round_trip(str(tmp_path / "train.csv.gz"), tmp_path / "out")


def test_render_real_reference_rows(tmp_path):
    train = REFERENCE_DATA / "hdfs_v1" / "log_classification_train.csv.gz"
    if not train.exists():
        pytest.skip(f"reference data not found at {REFERENCE_DATA}")
    assert_render_round_trip(str(train), tmp_path / "out", limit=2000)
