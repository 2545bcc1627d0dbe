"""The two split protocols of the comparison, in numpy: row indices for train, validation and test.

* ``seed`` — the study's split. Rows are permuted by ``numpy.random.RandomState(seed)`` (the generator
  scikit-learn's ``train_test_split(test_size=0.25, random_state=seed)`` draws from), the first
  ``ceil(25 %)`` rows of the permutation are the test set, the rest the training part; the last 10 %
  of the training part (in permutation order) are the validation set, as Keras' ``validation_split``
  takes them. With seed 24 on ``log_classification_train.csv`` (in file order) the test set is the
  study's own: 96,323 rows, 2,901 abnormal.
* ``unseen`` — the same proportions, but by **distinct full sequence**: identical sequences always land
  on the same side, so no test sequence occurs in training or validation (and no validation sequence in
  training). The distinct sequences are shuffled with ``seed``; walking that order, a sequence goes to
  the held-out side while its rows still fit in the held-out share (``ceil(25 %)`` of the rows for
  test, then ``ceil(10 %)`` of the remaining rows for validation), so the shares come out almost
  exactly as ``seed``'s. A sequence with more rows than the whole held-out share stays in training.

Both return a :class:`Split` whose three index arrays are disjoint, sorted and together cover every
row exactly once; the same input and seed give the same split.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hdfsad.preprocessing import flatten

PROTOCOLS = ("seed", "unseen")
#: The study's ``random_state``.
STUDY_SEED = 24
TEST_FRACTION = 0.25
VALIDATION_FRACTION = 0.10


@dataclass(frozen=True)
class Split:
    """Row indices (int64, sorted) of each part, and how they were drawn."""

    protocol: str
    seed: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def _fractions(test_fraction: float, validation_fraction: float) -> None:
    for key, value in (("test_fraction", test_fraction), ("validation_fraction", validation_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{key}: expected a number strictly between 0 and 1, got {value!r}")


def _finish(protocol: str, seed: int, train: np.ndarray, validation: np.ndarray, test: np.ndarray,
            why_empty: str) -> Split:
    for name, part in (("training", train), ("validation", validation), ("test", test)):
        if not len(part):
            raise ValueError(f"split {protocol!r}: the {name} set is empty ({why_empty}); "
                             f"use more data")
    return Split(protocol, seed, *(np.sort(p).astype(np.int64) for p in (train, validation, test)))


def seed_split(n: int, seed: int = STUDY_SEED, test_fraction: float = TEST_FRACTION,
               validation_fraction: float = VALIDATION_FRACTION) -> Split:
    """The study's random split of ``n`` rows (see the module docstring)."""
    _fractions(test_fraction, validation_fraction)
    perm = np.random.RandomState(seed).permutation(n)
    n_test = math.ceil(test_fraction * n)
    test, rest = perm[:n_test], perm[n_test:]
    cut = int(len(rest) * (1.0 - validation_fraction))
    return _finish("seed", seed, rest[:cut], rest[cut:], test, f"{n} rows")


def sequence_groups(sequences: Any) -> np.ndarray:
    """One int64 id per row; rows with identical full sequences share it (ids in first-seen order)."""
    values, lengths = flatten(sequences)
    ends = np.cumsum(lengths)
    raw = values.astype(np.int64).tobytes()
    ids: dict[bytes, int] = {}
    out = np.empty(len(lengths), dtype=np.int64)
    for i, (end, length) in enumerate(zip(ends.tolist(), lengths.tolist())):
        out[i] = ids.setdefault(raw[(end - length) * 8:end * 8], len(ids))
    return out


def _hold_out(groups: np.ndarray, rows: np.ndarray, fraction: float, rng: np.random.Generator
              ) -> np.ndarray:
    """Mask over ``rows``: whole groups, in a shuffled order, while they fit in ``ceil(fraction)``."""
    ids, inverse, sizes = np.unique(groups[rows], return_inverse=True, return_counts=True)
    target = math.ceil(fraction * len(rows))
    taken = np.zeros(len(ids), dtype=bool)
    filled = 0
    for g in rng.permutation(len(ids)).tolist():
        if filled + sizes[g] <= target:
            taken[g] = True
            filled += int(sizes[g])
            if filled == target:
                break
    return taken[inverse.reshape(-1)]


def unseen_split(sequences: Any, seed: int = STUDY_SEED, test_fraction: float = TEST_FRACTION,
                 validation_fraction: float = VALIDATION_FRACTION) -> Split:
    """Split by distinct full sequence (see the module docstring)."""
    _fractions(test_fraction, validation_fraction)
    groups = sequence_groups(sequences)
    rows = np.arange(len(groups))
    test_mask = _hold_out(groups, rows, test_fraction, np.random.default_rng([seed, 0]))
    rest = rows[~test_mask]
    val_mask = _hold_out(groups, rest, validation_fraction, np.random.default_rng([seed, 1]))
    n_groups = len(np.unique(groups))
    return _finish("unseen", seed, rest[~val_mask], rest[val_mask], rows[test_mask],
                   f"{len(groups)} rows in {n_groups} distinct sequence(s) cannot be split by sequence "
                   f"into {1 - test_fraction:.0%} / {test_fraction:.0%} with {validation_fraction:.0%} "
                   f"validation")


def make_split(protocol: str, sequences: Any, seed: int = STUDY_SEED,
               test_fraction: float = TEST_FRACTION,
               validation_fraction: float = VALIDATION_FRACTION) -> Split:
    """The split of ``protocol`` (one of :data:`PROTOCOLS`) over ``sequences`` (in row order)."""
    if protocol == "seed":
        return seed_split(len(sequences), seed, test_fraction, validation_fraction)
    if protocol == "unseen":
        return unseen_split(sequences, seed, test_fraction, validation_fraction)
    raise ValueError(f"protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")
