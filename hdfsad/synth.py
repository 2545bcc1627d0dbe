"""Synthetic raw HDFS logs, so that the pipeline can be tested end to end on data it makes itself.

Two modes write the same raw format (``<yyMMdd> <HHmmss> <pid> <LEVEL> <component>: <content>``,
one event per line) into ``part-00000.log`` ... files of one directory:

* :func:`generate` invents block lifecycles that look like the HDFS_v1 traces: the three-replica
  write pipeline, reads, scanner checks, re-replication and deletion for normal blocks, and
  several kinds of failure for anomalous ones. It also writes ``anomaly_label.csv`` (Loghub's
  ``BlockId,Label`` format). It keeps the whole corpus in memory: meant for up to about 10^5 blocks.
* :func:`render` / :func:`render_sequences` turn given event-id sequences (the reference CSVs)
  back into raw lines whose parse gives exactly those sequences. They stream in chunks and scale
  to the full reference corpus.

Every line names exactly one block id. Each block lives in one file; lines of many blocks
interleave there, timestamps never decrease within a file, and a block's events appear in order
(equal timestamps are resolved by line order, as the parser does). Output is a pure function of
the arguments and the seed: the same call writes byte-identical files.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import os
import random
import re
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from itertools import chain, islice
from operator import itemgetter
from typing import Callable, Iterable, Iterator

import numpy as np

from hdfsad.templates import UNKNOWN_EVENT_ID, classify, load_templates

DEFAULT_START = "081109 203518"
TIME_FORMAT = "%y%m%d %H%M%S"
LABELS_FILE = "anomaly_label.csv"
BLOCK_IDS_FILE = "block_ids.csv"
BLOCK_ID_RE = re.compile(r"blk_-?[0-9]+")
SUFFIXES = {None: ".log", "gz": ".log.gz", "bz2": ".log.bz2"}
#: gzip level of compressed output (zlib's default; level 9 is several times slower for ~2 % less).
GZIP_LEVEL = 6
#: Rate at which new blocks are allocated (the HDFS_v1 cluster wrote about 4 blocks a second).
BLOCKS_PER_SECOND = 4.0
#: Blocks rendered per chunk; bounds the memory of :func:`render_sequences`.
RENDER_CHUNK = 20_000
#: Distinct random renderings of each event in render mode.
VARIANTS_PER_EVENT = 64
#: Seconds between consecutive events of one block in render mode, drawn uniformly from this table.
RENDER_DELAYS = np.array([0] * 11 + [1] * 5 + [2, 3, 5, 30], dtype=np.int64)

#: Unknown-event rendering: a well-formed line with a block id that matches no template.
UNKNOWN_FORMAT = ("INFO", "dfs.DataNode", "Unrecognized synthetic message about {blk} from /{ip}")
#: Thread-id ranges of the header's pid field: small, stable ids for the name node and the
#: data node's daemons, a wide range for the per-request data node threads.
PID_RANGES = {
    "dfs.FSNamesystem": (26, 36),
    "dfs.DataBlockScanner": (11, 14),
    "dfs.FSDataset": (17, 23),
    "dfs.PendingReplicationMonitor": (24, 25),
}
THREAD_PID_RANGE = (100, 9999)
FULL_BLOCK_SIZE = 67108864
LABEL_NAMES = {0: "Normal", 1: "Anomaly"}
REFERENCE_CLASSES = {"normal": 0, "abnormal": 1}


class Event(IntEnum):
    """Event ids (template ``E<n>`` is ``n - 1``), named after what they mean for a block."""

    ADD_EXISTING = 0           # E1  Adding an already existing block
    VERIFIED = 1               # E2  Verification succeeded
    SERVED = 2                 # E3  Served block
    SERVE_EXCEPTION = 3        # E4  Got exception while serving
    RECEIVING = 4              # E5  Receiving block src dest
    RECEIVED_FROM = 5          # E6  Received block src dest of size
    WRITE_EXCEPTION = 6        # E7  writeBlock received exception
    RESPONDER_INTERRUPTED = 7  # E8  PacketResponder Interrupted
    RECEIVED = 8               # E9  Received block of size from
    RESPONDER_EXCEPTION = 9    # E10 PacketResponder Exception
    RESPONDER_DONE = 10        # E11 PacketResponder terminating
    MIRROR_EXCEPTION = 11      # E12 Exception writing block to mirror
    EMPTY_PACKET = 12          # E13 Receiving empty packet
    RECEIVE_EXCEPTION = 13     # E14 Exception in receiveBlock
    OFFSET_CHANGE = 14         # E15 Changing block file offset
    TRANSMITTED = 15           # E16 Transmitted block
    TRANSFER_FAILED = 16       # E17 Failed to transfer
    TRANSFER_START = 17        # E18 Starting thread to transfer block
    REOPEN = 18                # E19 Reopen Block
    DELETE_ERROR = 19          # E20 Unexpected error trying to delete block
    DELETING = 20              # E21 Deleting block file
    ALLOCATE = 21              # E22 NameSystem.allocateBlock
    INVALIDATE = 22            # E23 NameSystem.delete: added to invalidSet
    UNNEEDED = 23              # E24 Removing block from neededReplications
    ASK_REPLICATE = 24         # E25 ask to replicate
    STORED = 25                # E26 addStoredBlock: blockMap updated
    REDUNDANT_STORED = 26      # E27 Redundant addStoredBlock request
    ORPHAN_STORED = 27         # E28 addStoredBlock: does not belong to any file
    REPLICATION_TIMEOUT = 28   # E29 PendingReplicationMonitor timed out
    ASK_DELETE = 29            # E30 ask to delete


@dataclass
class SynthResult:
    """What a generator call wrote."""

    log_files: list[str]
    labels_csv: str | None
    blocks: int
    lines: int
    anomalies: int


# ---------------------------------------------------------------------------------------------
# public API


def generate(out_dir: str, n_blocks: int, anomaly_rate: float = 0.03, seed: int = 0,
             n_files: int = 2, start: str = DEFAULT_START, compress: str | None = None) -> SynthResult:
    """Write ``n_blocks`` invented block lifecycles, ``round(n_blocks * anomaly_rate)`` anomalous.

    Blocks are assigned to the files round robin (at most ``n_blocks`` files are written); every
    block is listed in ``anomaly_label.csv`` in generation order.
    """
    _check_output_args(n_files, compress)
    if n_blocks < 1:
        raise ValueError("n_blocks must be at least 1")
    if not 0.0 <= anomaly_rate <= 1.0:
        raise ValueError("anomaly_rate must be within [0, 1]")
    _prepare_out_dir(out_dir)
    rng = random.Random(seed)
    anomalous = set(rng.sample(range(n_blocks), round(n_blocks * anomaly_rate)))
    blocks = _random_blocks(rng, n_blocks)
    per_file = _lifecycle_lines(rng, blocks, anomalous, min(n_files, n_blocks))
    clock = _Clock(start)
    with _PartWriter(out_dir, compress) as parts:
        for index, lines in enumerate(per_file):
            parts.write(index, [clock.stamp(t) + body for t, _, _, body in sorted(lines)])
        log_files = parts.paths()
    labels_csv = os.path.join(out_dir, LABELS_FILE)
    with _LabelWriter(labels_csv) as labels:
        for index, block in enumerate(blocks):
            labels.add(block.blk, int(index in anomalous))
    return SynthResult(log_files, labels_csv, n_blocks, sum(map(len, per_file)), len(anomalous))


def render(sequences_csv: str, out_dir: str, n_files: int = 4, seed: int = 0,
           limit: int | None = None, compress: str | None = None,
           start: str = DEFAULT_START) -> SynthResult:
    """Render the first ``limit`` rows (all when None) of a reference CSV as raw logs.

    Row id ``k`` becomes block :func:`reference_block_id` ``(k)``; the mapping is written to
    ``block_ids.csv`` (``id,BlockId``). Labels, when the CSV has them, go to ``anomaly_label.csv``.
    """
    _check_output_args(n_files, compress)
    _prepare_out_dir(out_dir)
    rows = islice(read_reference_csv(sequences_csv), limit)
    with open(os.path.join(out_dir, BLOCK_IDS_FILE), "w", encoding="utf-8", newline="") as mapping:
        writer = csv.writer(mapping, lineterminator="\n")
        writer.writerow(["id", "BlockId"])
        return render_sequences(_with_block_ids(rows, writer.writerow), out_dir, n_files=n_files,
                                seed=seed, compress=compress, start=start)


def render_sequences(sequences: Iterable[tuple[str, list[int], int | None]], out_dir: str,
                     n_files: int = 4, seed: int = 0, compress: str | None = None,
                     start: str = DEFAULT_START) -> SynthResult:
    """Render ``(block_id, events, label)`` triples as raw logs whose parse gives back ``events``.

    ``label`` is 1 (anomaly), 0 (normal) or None; ``anomaly_label.csv`` lists the labelled blocks
    and is written only when there is at least one. Event id 30 (unknown) is rendered as a line
    that matches no template. Blocks go to the files round robin in input order.
    """
    _check_output_args(n_files, compress)
    _prepare_out_dir(out_dir)
    rng = np.random.default_rng(seed)
    variants = _variant_pool(seed)
    clock = _Clock(start)
    seen: set[str] = set()
    first_second = blocks = lines = anomalies = 0
    labels_csv = os.path.join(out_dir, LABELS_FILE)
    with _PartWriter(out_dir, compress) as parts, _LabelWriter(labels_csv) as labels:
        for chunk in _batched(sequences, RENDER_CHUNK):
            block_ids, lengths, events = _validated_chunk(chunk, seen)
            for block_id, _, label in chunk:
                labels.add(block_id, label)
                anomalies += label == 1
            plan = _ChunkPlan.draw(rng, lengths, events, blocks, first_second, n_files)
            _write_chunk(parts, plan, block_ids, variants, clock)
            first_second = plan.last_second + 1
            blocks += len(chunk)
            lines += len(plan.events)
        log_files = parts.paths()
        labels_written = labels.opened
    return SynthResult(log_files, labels_csv if labels_written else None, blocks, lines, anomalies)


def read_reference_csv(path: str) -> Iterator[tuple[int, list[int], int | None]]:
    """Rows ``(id, events, label)`` of a reference CSV (``id,sequence[,class]``, gzip or plain).

    ``class`` is ``normal`` (0) or ``abnormal`` (1); without that column the label is None.
    """
    with _open_text_input(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or header[:2] != ["id", "sequence"]:
            raise ValueError(f"{path}: expected a header 'id,sequence[,class]', got {header}")
        labelled = header[2:3] == ["class"]
        for row in reader:
            yield int(row[0]), parse_sequence(row[1]), _reference_label(row[2]) if labelled else None


def _reference_label(name: str) -> int:
    if name not in REFERENCE_CLASSES:
        raise ValueError(f"class must be one of {list(REFERENCE_CLASSES)}, got {name!r}")
    return REFERENCE_CLASSES[name]


def parse_sequence(text: str) -> list[int]:
    """Event ids of a Python-tuple-like string: ``"(4, 21)"``, ``"(4,)"`` or ``"()"``."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError(f"not a sequence: {text!r}")
    body = text[1:-1].strip().rstrip(",")
    return [int(x) for x in body.split(",")] if body else []


def reference_block_id(row_id: int) -> str:
    """The block id standing for reference row ``row_id`` >= 0: ``blk_k`` if even, ``blk_-k`` if odd."""
    if row_id < 0:
        raise ValueError(f"row ids must be non-negative, got {row_id}")
    return f"blk_-{row_id}" if row_id % 2 else f"blk_{row_id}"


# ---------------------------------------------------------------------------------------------
# generate mode: block lifecycles

Step = tuple[int, int, int]  # (seconds after the block's allocation, event id, replica index)


class _Timeline:
    """The steps of one block's life, built phase by phase on a clock (``now``, in seconds)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.now = 0
        self._steps: list[Step] = []

    def wait(self, low: int, high: int) -> int:
        """Advance the clock by a random number of seconds in [low, high]; return the new time."""
        self.now += self.rng.randint(low, high)
        return self.now

    def add(self, event: Event, replica: int = 0, jitter: int = 0) -> int:
        """Log ``event`` now (plus up to ``jitter`` seconds); return its time."""
        t = self.now + self.rng.randint(0, jitter)
        self._steps.append((t, int(event), replica))
        return t

    def steps(self) -> list[Step]:
        """The steps in time order (stable: same-second steps keep the order they were added)."""
        return sorted(self._steps, key=itemgetter(0))


def _write(tl: _Timeline, replicas: int = 3) -> None:
    """allocateBlock, then the pipeline's ``Receiving block`` on each of ``replicas`` data nodes."""
    tl.add(Event.ALLOCATE)
    tl.wait(0, 1)
    for r in range(replicas):
        tl.add(Event.RECEIVING, r, jitter=1)


def _acknowledge(tl: _Timeline, replicas: Iterable[int] = range(3), empty_packets: bool = False) -> None:
    """Each replica closes its PacketResponder and reports the block to the name node."""
    base = tl.wait(1, 5)
    last = base
    for r in replicas:
        tl.now = base + tl.rng.randint(0, 2)
        if empty_packets:
            tl.add(Event.EMPTY_PACKET, r)
        tl.add(Event.RESPONDER_DONE, r)
        tl.add(Event.RECEIVED, r)
        last = max(last, tl.add(Event.STORED, r, jitter=1))
    tl.now = last


def _read(tl: _Timeline) -> None:
    """Sometimes clients read the block (a few failing) and the block scanner verifies it."""
    rng = tl.rng
    if rng.random() < 0.25:
        tl.wait(10, 1800)
        for _ in range(rng.randint(1, 8)):
            tl.add(Event.SERVE_EXCEPTION if rng.random() < 0.3 else Event.SERVED, rng.randrange(3))
            tl.wait(0, 60)
    if rng.random() < 0.15:
        for _ in range(rng.randint(1, 3)):
            tl.wait(600, 7200)
            tl.add(Event.VERIFIED, rng.randrange(3))


def _rebalance(tl: _Timeline) -> None:
    """The name node copies the block to a spare node, which reports it; an old copy is deleted."""
    tl.wait(60, 3600)
    tl.add(Event.ASK_REPLICATE)
    tl.add(Event.TRANSFER_START, jitter=1)
    tl.add(Event.RECEIVING, 3, jitter=1)
    tl.wait(1, 3)
    tl.add(Event.TRANSMITTED)
    tl.add(Event.RECEIVED_FROM, 3)
    tl.add(Event.STORED, 3, jitter=1)
    tl.add(Event.STORED, 0, jitter=1)
    tl.wait(1, 60)
    tl.add(Event.DELETING, 0)


def _delete(tl: _Timeline, replicas: int = 3, error: bool = False) -> None:
    """The file is deleted: the name node invalidates each replica, each data node deletes it."""
    tl.wait(300, 7200)
    for r in range(replicas):
        tl.add(Event.INVALIDATE, r)
    tl.wait(1, 30)
    for r in range(replicas):
        tl.add(Event.DELETING, r, jitter=2)
    if error:
        tl.add(Event.DELETE_ERROR, tl.rng.randrange(replicas), jitter=2)


def _normal_lifecycle(tl: _Timeline) -> list[Step]:
    """Write, maybe reads, rarely a rebalancing copy, and (mostly) deletion."""
    _write(tl)
    _acknowledge(tl)
    _read(tl)
    if tl.rng.random() < 0.005:
        for _ in range(tl.rng.randint(1, 3)):
            _rebalance(tl)
    if tl.rng.random() < 0.82:
        _delete(tl)
    return tl.steps()


def _truncated_write(tl: _Timeline) -> list[Step]:
    """The client dies after allocating: one or two ``Receiving block`` and nothing else."""
    _write(tl, replicas=tl.rng.randint(1, 2))
    return tl.steps()


def _write_failure(tl: _Timeline) -> list[Step]:
    """The pipeline breaks: exceptions on some replicas, responders interrupted, never stored."""
    rng = tl.rng
    _write(tl)
    tl.wait(1, 5)
    for r in sorted(rng.sample(range(3), rng.randint(1, 3))):
        if rng.random() < 0.3:
            tl.add(Event.MIRROR_EXCEPTION, r)
        tl.add(Event.RECEIVE_EXCEPTION, r)
        tl.add(Event.WRITE_EXCEPTION, r)
        tl.add(rng.choice((Event.RESPONDER_INTERRUPTED, Event.RESPONDER_EXCEPTION)), r)
        tl.add(Event.RESPONDER_DONE, r, jitter=1)
    return tl.steps()


def _pipeline_recovery(tl: _Timeline) -> list[Step]:
    """A replica fails mid-write and the client recovers the pipeline, then re-replicates."""
    rng = tl.rng
    _write(tl)
    tl.wait(1, 5)
    tl.add(Event.RECEIVE_EXCEPTION, 2)
    tl.add(Event.RESPONDER_EXCEPTION, 2)
    tl.wait(1, 10)
    if rng.random() < 0.3:
        tl.add(Event.REOPEN, 1)
    for r in (0, 1):
        tl.add(Event.OFFSET_CHANGE, r)
        if rng.random() < 0.5:
            tl.add(Event.ADD_EXISTING, r)
        tl.add(Event.RECEIVING, r)
    _acknowledge(tl, replicas=(0, 1))
    _rebalance(tl)
    _delete(tl)
    return tl.steps()


def _failed_transfer(tl: _Timeline) -> list[Step]:
    """Re-replication fails: the transfer breaks, sometimes times out or the file goes away."""
    rng = tl.rng
    _write(tl)
    _acknowledge(tl, replicas=(0, 1))
    tl.wait(1, 600)
    tl.add(Event.ASK_REPLICATE)
    tl.add(Event.TRANSFER_START, jitter=1)
    tl.wait(1, 10)
    tl.add(Event.TRANSFER_FAILED)
    if rng.random() < 0.3:
        tl.wait(300, 600)
        tl.add(Event.REPLICATION_TIMEOUT)
    if rng.random() < 0.5:
        _delete(tl, replicas=2)
        tl.add(Event.UNNEEDED, jitter=1)
    return tl.steps()


def _delete_error(tl: _Timeline) -> list[Step]:
    """A normal life whose deletion fails on one data node (BlockInfo not in volumeMap)."""
    _write(tl)
    _acknowledge(tl)
    _read(tl)
    _delete(tl, error=True)
    return tl.steps()


def _redundant_store(tl: _Timeline) -> list[Step]:
    """A data node reports the block twice (redundant addStoredBlock)."""
    _write(tl)
    _acknowledge(tl)
    tl.add(Event.REDUNDANT_STORED, tl.rng.randrange(3), jitter=2)
    _read(tl)
    if tl.rng.random() < 0.8:
        _delete(tl)
    return tl.steps()


def _orphan_store(tl: _Timeline) -> list[Step]:
    """After deletion a late block report re-adds the block, which belongs to no file."""
    _write(tl)
    _acknowledge(tl)
    _read(tl)
    _delete(tl)
    tl.wait(1, 120)
    replica = tl.rng.randrange(3)
    tl.add(Event.ORPHAN_STORED, replica)
    tl.add(Event.STORED, replica)
    tl.wait(1, 30)
    tl.add(Event.DELETING, replica)
    return tl.steps()


def _empty_packets(tl: _Timeline) -> list[Step]:
    """Every replica receives an empty packet before its responder terminates."""
    _write(tl)
    _acknowledge(tl, empty_packets=True)
    _read(tl)
    if tl.rng.random() < 0.8:
        _delete(tl)
    return tl.steps()


#: Anomalous lifecycles; an anomalous block draws one uniformly.
ANOMALY_KINDS: tuple[Callable[[_Timeline], list[Step]], ...] = (
    _truncated_write, _write_failure, _pipeline_recovery, _failed_transfer,
    _delete_error, _redundant_store, _orphan_store, _empty_packets,
)


def _lifecycle_lines(rng: random.Random, blocks: list[_Block], anomalous: set[int],
                     n_files: int) -> list[list[tuple[int, int, int, str]]]:
    """Per file (blocks round robin), ``(second, block index, step index, line body)`` of every
    step of every block's lifecycle, unsorted. Blocks arrive at :data:`BLOCKS_PER_SECOND`."""
    per_file: list[list[tuple[int, int, int, str]]] = [[] for _ in range(n_files)]
    arrival = 0.0
    for index, block in enumerate(blocks):
        arrival += rng.expovariate(BLOCKS_PER_SECOND)
        lifecycle = rng.choice(ANOMALY_KINDS) if index in anomalous else _normal_lifecycle
        lines = per_file[index % n_files]
        for k, (offset, event, replica) in enumerate(lifecycle(_Timeline(rng))):
            body = _line_body(rng, event, block.params(rng, event, replica))
            lines.append((int(arrival) + offset, index, k, body))
    return per_file


# ---------------------------------------------------------------------------------------------
# rendering of lines


@dataclass(frozen=True)
class _Block:
    """A block and the facts its lines mention: 3 pipeline data nodes plus a spare, its size."""

    blk: str
    nodes: tuple[str, ...]
    size: int
    task: int
    part: int
    subdir: int

    def params(self, rng: random.Random, event: int, replica: int) -> dict[str, object]:
        """The placeholder values of one line about this block on data node ``replica``."""
        if event == Event.DELETING:
            n = self.subdir
        elif event == Event.OFFSET_CHANGE:
            n = rng.randrange(self.size)
        else:
            n = replica % 3
        return {
            "blk": self.blk, "ip": self.nodes[replica], "ip2": self.nodes[(replica + 1) % len(self.nodes)],
            "port": rng.randint(32768, 60999), "size": self.size, "n": n,
            "n2": rng.randint(7, 524295), "n5": f"{self.part:05d}", "n6": f"{self.task:06d}",
        }


def _cluster(rng: random.Random, size: int = 200) -> list[str]:
    """Distinct data node addresses in the 10.250/10.251 ranges of the HDFS_v1 cluster."""
    nodes: dict[str, None] = {}
    while len(nodes) < size:
        nodes[f"10.{rng.choice((250, 251))}.{rng.randrange(256)}.{rng.randint(1, 254)}"] = None
    return list(nodes)


def _draw_block(rng: random.Random, blk: str, cluster: list[str]) -> _Block:
    size = FULL_BLOCK_SIZE if rng.random() < 0.9 else rng.randint(1, FULL_BLOCK_SIZE - 1)
    return _Block(blk, tuple(rng.sample(cluster, 4)), size, task=rng.randrange(2000),
                  part=rng.randrange(2000), subdir=rng.randrange(64))


def _random_blocks(rng: random.Random, n: int) -> list[_Block]:
    """``n`` blocks with distinct random signed 64-bit ids (both signs)."""
    cluster = _cluster(rng)
    ids: dict[int, None] = {}
    while len(ids) < n:
        ids[rng.getrandbits(64) - 2 ** 63] = None
    return [_draw_block(rng, f"blk_{i}", cluster) for i in ids]


def _line_format(event: int) -> tuple[str, str, str]:
    """(level, component, content format) of an event id, the unknown id included."""
    if event == UNKNOWN_EVENT_ID:
        return UNKNOWN_FORMAT
    t = load_templates()[event]
    return t.level, t.component, t.example


def _line_body(rng: random.Random, event: int, params: dict[str, object]) -> str:
    """Everything after the timestamp: ``<pid> <LEVEL> <component>: <content>``."""
    level, component, example = _line_format(event)
    low, high = PID_RANGES.get(component, THREAD_PID_RANGE)
    return f"{rng.randint(low, high)} {level} {component}: {example.format(**params)}"


class _Clock:
    """Header timestamps (``yyMMdd HHmmss `` with the separating space) of second offsets."""

    def __init__(self, start: str):
        self._start = datetime.strptime(start, TIME_FORMAT)
        self._cache: dict[int, str] = {}

    def stamp(self, second: int) -> str:
        text = self._cache.get(second)
        if text is None:
            text = self._cache[second] = (self._start + timedelta(seconds=second)).strftime(TIME_FORMAT) + " "
        return text

    def stamps(self, first: int, last: int) -> list[str]:
        """The stamps of seconds ``first..last`` (not cached)."""
        base = self._start + timedelta(seconds=first)
        return [(base + timedelta(seconds=s)).strftime(TIME_FORMAT) + " " for s in range(last - first + 1)]


# ---------------------------------------------------------------------------------------------
# render mode


#: Stand-in for the block id while building variants; a block's line is ``blk.join(parts)``.
_BLK_SLOT = "\x00"


def _variant_pool(seed: int) -> tuple[tuple[str, ...], ...]:
    """``VARIANTS_PER_EVENT`` renderings of every event id 0..30, split around the block id.

    Entry ``event * VARIANTS_PER_EVENT + v`` is a tuple of parts; ``blk.join(parts)`` is a line
    body for block ``blk``. Each variant is checked to classify as its event.
    """
    rng = random.Random(seed)
    cluster = _cluster(rng)
    pool = []
    for event in range(UNKNOWN_EVENT_ID + 1):
        for _ in range(VARIANTS_PER_EVENT):
            block = _draw_block(rng, _BLK_SLOT, cluster)
            body = _line_body(rng, event, block.params(rng, event, rng.randrange(4)))
            _check_classifies(body.split(": ", 1)[1].replace(_BLK_SLOT, "blk_1"), event)
            pool.append(tuple(body.split(_BLK_SLOT)))
    return tuple(pool)


def _check_classifies(content: str, event: int) -> None:
    """Guard against a template or example edit that makes a rendering ambiguous."""
    found = classify(content)
    if found != event:
        raise AssertionError(f"synthetic content for event {event} classifies as {found}: {content!r}")


@dataclass
class _ChunkPlan:
    """Where and when each event of a chunk of blocks goes (flat arrays, one entry per event)."""

    events: np.ndarray   # event id
    block: np.ndarray    # block index within the chunk
    second: np.ndarray   # timestamp, seconds after the start
    file: np.ndarray     # output file index
    variant: np.ndarray  # index into the variant pool
    last_second: int

    @classmethod
    def draw(cls, rng: np.random.Generator, lengths: np.ndarray, events: np.ndarray,
             blocks_before: int, first_second: int, n_files: int) -> _ChunkPlan:
        """Plan blocks of ``lengths`` events (``events`` concatenated). Blocks start uniformly over
        a window of :data:`BLOCKS_PER_SECOND` from ``first_second``; a block's events follow each
        other by :data:`RENDER_DELAYS`."""
        n = len(lengths)
        block = np.repeat(np.arange(n), lengths)
        firsts = np.cumsum(lengths) - lengths
        delays = RENDER_DELAYS[rng.integers(0, len(RENDER_DELAYS), len(events))]
        delays[firsts] = 0
        elapsed = np.cumsum(delays)
        elapsed -= np.repeat(elapsed[firsts], lengths)
        window = max(1, int(n / BLOCKS_PER_SECOND))
        starts = first_second + rng.integers(0, window, n)
        second = starts[block] + elapsed
        variant = events * VARIANTS_PER_EVENT + rng.integers(0, VARIANTS_PER_EVENT, len(events))
        return cls(events, block, second, (blocks_before + block) % n_files, variant, int(second.max()))


def _write_chunk(parts: _PartWriter, plan: _ChunkPlan, block_ids: list[str],
                 variants: tuple[tuple[str, ...], ...], clock: _Clock) -> None:
    """Write a chunk's lines, per file in (second, block, event) order."""
    first = int(plan.second.min())
    stamps = clock.stamps(first, plan.last_second)
    order = np.lexsort((np.arange(len(plan.events)), plan.second, plan.file))
    bounds = np.searchsorted(plan.file[order], np.arange(plan.file.max() + 2))
    for index in range(len(bounds) - 1):
        rows = order[bounds[index]:bounds[index + 1]]
        parts.write(index, [
            stamps[s] + block_ids[b].join(variants[v])
            for s, b, v in zip((plan.second[rows] - first).tolist(), plan.block[rows].tolist(),
                               plan.variant[rows].tolist())
        ])


def _validated_chunk(chunk: list[tuple[str, list[int], int | None]],
                     seen: set[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Block ids, sequence lengths and concatenated events of a chunk, checked: well-formed
    unique block ids, non-empty sequences of ids 0..30, labels 0/1/None."""
    block_ids, seqs = [], []
    for block_id, events, label in chunk:
        if not BLOCK_ID_RE.fullmatch(block_id):
            raise ValueError(f"not a block id: {block_id!r}")
        if block_id in seen:
            raise ValueError(f"duplicate block id: {block_id}")
        if not events:
            raise ValueError(f"{block_id}: a block needs at least one event")
        if label not in (0, 1, None):
            raise ValueError(f"{block_id}: label must be 0, 1 or None, got {label!r}")
        seen.add(block_id)
        block_ids.append(block_id)
        seqs.append(events)
    lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
    events = np.fromiter(chain.from_iterable(seqs), np.int64, int(lengths.sum()))
    if events.min() < 0 or events.max() > UNKNOWN_EVENT_ID:
        raise ValueError(f"event ids must be within 0..{UNKNOWN_EVENT_ID}")
    return block_ids, lengths, events


def _with_block_ids(rows: Iterable[tuple[int, list[int], int | None]],
                    record: Callable[[list], object]) -> Iterator[tuple[str, list[int], int | None]]:
    """Reference rows as render triples, passing each ``[id, BlockId]`` pair to ``record``."""
    for row_id, events, label in rows:
        block_id = reference_block_id(row_id)
        record([row_id, block_id])
        yield block_id, events, label


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


# ---------------------------------------------------------------------------------------------
# files


def _check_output_args(n_files: int, compress: str | None) -> None:
    if n_files < 1:
        raise ValueError("n_files must be at least 1")
    if compress not in SUFFIXES:
        raise ValueError(f"compress must be one of {list(SUFFIXES)}, got {compress!r}")


def _prepare_out_dir(out_dir: str) -> None:
    """Create ``out_dir``; refuse one holding part files (stale parts would join the corpus)."""
    os.makedirs(out_dir, exist_ok=True)
    stale = sorted(name for name in os.listdir(out_dir) if name.startswith("part-"))
    if stale:
        raise FileExistsError(f"{out_dir} already holds log parts ({stale[0]}, ...)")


class _PartWriter:
    """The ``part-NNNNN`` log files of one directory, opened on first write."""

    def __init__(self, out_dir: str, compress: str | None):
        self._out_dir = out_dir
        self._compress = compress
        self._stack = ExitStack()
        self._handles: dict[int, io.TextIOBase] = {}

    def __enter__(self) -> _PartWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def path(self, index: int) -> str:
        return os.path.join(self._out_dir, f"part-{index:05d}{SUFFIXES[self._compress]}")

    def paths(self) -> list[str]:
        return [self.path(i) for i in sorted(self._handles)]

    def write(self, index: int, lines: list[str]) -> None:
        if not lines:
            return
        handle = self._handles.get(index)
        if handle is None:
            handle = self._handles[index] = _open_text_output(self.path(index), self._compress, self._stack)
        handle.write("\n".join(lines))
        handle.write("\n")


def _open_text_output(path: str, compress: str | None, stack: ExitStack) -> io.TextIOBase:
    """A UTF-8 text handle on ``path``, closed by ``stack``; gzip output carries no timestamp."""
    if compress == "gz":
        raw = stack.enter_context(open(path, "wb"))
        binary = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0)
    elif compress == "bz2":
        binary = bz2.BZ2File(path, "wb")
    else:
        binary = open(path, "wb")
    return stack.enter_context(io.TextIOWrapper(binary, encoding="utf-8", newline="\n"))


def _open_text_input(path: str) -> io.TextIOBase:
    """A text handle on a plain or gzip file (detected by its magic bytes)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


class _LabelWriter:
    """``anomaly_label.csv`` (``BlockId,Label``, ``Normal``/``Anomaly``), created at the first label."""

    def __init__(self, path: str):
        self._path = path
        self._handle = None
        self._writer = None

    @property
    def opened(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> _LabelWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()

    def add(self, block_id: str, label: int | None) -> None:
        if label is None:
            return
        if self._writer is None:
            self._handle = open(self._path, "w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._handle, lineterminator="\n")
            self._writer.writerow(["BlockId", "Label"])
        self._writer.writerow([block_id, LABEL_NAMES[label]])
