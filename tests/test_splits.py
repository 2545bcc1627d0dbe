"""The split protocols: sizes, disjointness, determinism, and the unseen property."""
from __future__ import annotations

import numpy as np
import pytest

from hdfsad.splits import make_split, seed_split, sequence_groups, unseen_split


def corpus(n: int = 2000, seed: int = 0) -> list[list[int]]:
    """Sequences with heavy repetition (few common ones, many rare ones), as in HDFS."""
    rng = np.random.default_rng(seed)
    common = [[4, 4, 21, 10, 8] * k for k in range(1, 6)]
    out = []
    for _ in range(n):
        if rng.random() < 0.6:
            out.append(common[int(rng.integers(0, len(common)))])
        else:
            out.append(rng.integers(0, 28, size=int(rng.integers(2, 8))).tolist())
    return out


def check_partition(split, n: int) -> None:
    parts = np.concatenate([split.train, split.validation, split.test])
    assert len(parts) == n and np.array_equal(np.sort(parts), np.arange(n))  # disjoint, covering
    for part in (split.train, split.validation, split.test):
        assert np.all(np.diff(part) > 0)


def test_seed_split_sizes_as_scikit_learn_and_keras():
    split = seed_split(1001, seed=24)
    check_partition(split, 1001)
    assert split.sizes() == {"test": 251, "train": 675, "validation": 75}  # ceil(25 %); int(90 %) of 750
    perm = np.random.RandomState(24).permutation(1001)  # what train_test_split(random_state=24) draws
    assert np.array_equal(split.test, np.sort(perm[:251]))
    assert np.array_equal(split.validation, np.sort(perm[251:][675:]))


def test_splits_are_deterministic_and_depend_on_the_seed():
    seqs = corpus()
    for protocol in ("seed", "unseen"):
        a, b, c = (make_split(protocol, seqs, seed) for seed in (24, 24, 25))
        assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "validation", "test"))
        assert not np.array_equal(a.test, c.test)
        assert a.protocol == protocol and a.seed == 24


def test_unseen_split_keeps_every_sequence_on_one_side():
    seqs = corpus()
    split = unseen_split(seqs, seed=24)
    check_partition(split, len(seqs))
    keys = [tuple(s) for s in seqs]
    train, val, test = ({keys[i] for i in part} for part in (split.train, split.validation, split.test))
    assert not train & test and not val & test and not train & val
    # the same proportions as the seed protocol (whole groups fill the shares almost exactly)
    assert abs(len(split.test) - 500) <= 5
    assert abs(len(split.validation) - 150) <= 5


def test_unseen_split_keeps_a_sequence_larger_than_the_share_in_training():
    seqs = [[1, 2]] * 60 + [[i, 7] for i in range(40)]
    for seed in range(5):
        split = unseen_split(seqs, seed=seed)
        assert split.sizes() == {"train": 67, "validation": 8, "test": 25} == seed_split(100).sizes()
        assert set(range(60)) <= set(split.train.tolist())


def test_sequence_groups():
    ids = sequence_groups([[1, 2], [1, 2], [2, 1], [1], [1, 2], []])
    assert ids.tolist() == [0, 0, 1, 2, 0, 3]


def test_split_errors_say_what_is_wrong():
    with pytest.raises(ValueError) as err:
        make_split("random", [[1]])
    assert "protocol: expected one of ['seed', 'unseen'], got 'random'" in str(err.value)
    with pytest.raises(ValueError) as err:
        unseen_split([[1, 2]] * 30 + [[3]] * 2)
    assert ("split 'unseen': the validation set is empty (32 rows in 2 distinct sequence(s) cannot be "
            "split by sequence into 75% / 25% with 10% validation); use more data") in str(err.value)
    with pytest.raises(ValueError) as err:
        seed_split(2)
    assert "split 'seed': the training set is empty (2 rows); use more data" in str(err.value)
    with pytest.raises(ValueError) as err:
        seed_split(100, test_fraction=1.5)
    assert "test_fraction: expected a number strictly between 0 and 1, got 1.5" in str(err.value)
