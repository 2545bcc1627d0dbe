"""Data-parallel training: scaling rules, sharded class counts, and 2 DDP processes on CPU through
TorchDistributor against single-process training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hdfsad.artifacts import load_model
from hdfsad.distributed import (DistributedConfig, _local_slots, scale_train_config, train_distributed,
                                write_part)
from hdfsad.experiment import train_variant
from hdfsad.labelled import from_arrays
from hdfsad.reader import ShardedParquetReader, TableTransform
from hdfsad.training import TrainConfig

from test_experiment import tiny, variant

torch.set_num_threads(1)


def test_scaling_per_process_batch_scales_the_learning_rate_with_the_global_batch():
    base = TrainConfig(batch_size=32, learning_rate=1e-3)
    assert scale_train_config(base, 1) == base
    four = scale_train_config(base, 4, "per_process", "linear")
    assert (four.batch_size, four.learning_rate) == (32, pytest.approx(4e-3))
    assert scale_train_config(base, 4, "per_process", "sqrt").learning_rate == pytest.approx(2e-3)
    assert scale_train_config(base, 4, "per_process", "none").learning_rate == pytest.approx(1e-3)
    split = scale_train_config(base, 4, "global", "linear")  # the global batch stays 32: lr unchanged
    assert (split.batch_size, split.learning_rate) == (8, pytest.approx(1e-3))


def test_scaling_and_distributed_configuration_errors_say_what_to_fix():
    with pytest.raises(ValueError, match=r"train.batch_size 32 is not divisible by 3 processes \(distributed."
                                         r"batch_scaling: global splits it evenly\); choose a batch size"):
        scale_train_config(TrainConfig(batch_size=32), 3, "global")
    with pytest.raises(ValueError, match=r"distributed.lr_scaling: expected one of \['none', 'linear', 'sqrt'\]"):
        DistributedConfig(2, lr_scaling="cubic")
    with pytest.raises(ValueError, match=r"--num-processes: expected an integer >= 1 \(or 0: train in this "
                                         r"process\), got -1"):
        DistributedConfig(-1)
    assert [_local_slots(m) for m in ("local", "local[3]", "local[2,4]", "spark://h:7077", "yarn")] == \
        [1, 3, 2, None, None]


def test_per_shard_label_counts_sum_to_the_global_counts(tmp_path):
    seqs, y = tiny()
    path = write_part(tmp_path / "train", from_arrays(seqs, y), 12)
    transform = TableTransform(19, extra_windows=3)
    readers = [ShardedParquetReader(path, batch_size=16, rank=r, world_size=3, transform=transform)
               for r in range(3)]
    shards = [r.shard_label_counts(0) for r in readers]
    assert all(s.sum() > 0 for s in shards)
    np.testing.assert_array_equal(sum(shards), readers[0].label_counts())
    rows = [r.shard_arrays(0)[1] for r in readers]
    assert sum(len(r) for r in rows) == readers[0].label_counts().sum()


def test_more_processes_than_local_task_slots_fails_before_training(spark, tmp_path):
    with pytest.raises(ValueError, match=r"--num-processes 3 needs 3 Spark task slots at once \(a barrier stage\), "
                                         r"but the master local\[2\] has 2; use --master local\[3\]"):
        train_distributed(spark, variant(), from_arrays(*tiny()), "seed", tmp_path, DistributedConfig(3))
    assert not (tmp_path / "data").exists()


#: How close 2-process DDP lands to single-process training on the same data (anomaly-class F1 and
#: ROC AUC on the test part). DDP with per-process batches and the linear lr rule takes half the steps
#: at twice the learning rate, so the runs are not identical, only equally good.
TOLERANCE = 0.05


@pytest.mark.slow
def test_two_ddp_processes_keep_identical_replicas_and_match_single_process(spark, tmp_path):
    seqs, y = tiny(960, seed=3)
    data = from_arrays(seqs, y)
    v = variant(dedup=True, dedup_passes=10, epochs=4)
    single = train_variant(v, data, "seed", tmp_path / "single", log=None)
    lines: list[str] = []
    ddp = train_distributed(spark, v, data, "seed", tmp_path / "ddp", DistributedConfig(2), log=lines.append)

    assert "DDP on 2 process(es) (gloo, CPU) through TorchDistributor on local[2]: batch 32 per process " \
           "(global 64), learning rate 0.002" in lines[0]
    assert ddp.epochs_done == 4 and len(ddp.history) == 4
    assert [h["replica_max_abs_diff"] for h in ddp.history] == [0.0] * 4  # every epoch, every rank
    losses = [h["loss"] for h in ddp.history]
    assert losses[-1] < losses[0]
    assert sum(h["samples"] for h in ddp.history) == pytest.approx(sum(h["samples"] for h in single.history))
    assert ddp.fed_rows == single.fed_rows and ddp.sizes == single.sizes
    assert abs(ddp.metrics["f1"] - single.metrics["f1"]) <= TOLERANCE
    assert abs(ddp.metrics["roc_auc"] - single.metrics["roc_auc"]) <= TOLERANCE
    assert ddp.metrics["f1"] > 0.8

    # rank 0 wrote the artifact and the report; the artifact records how it was scaled
    artifact = load_model(tmp_path / "ddp" / "model")
    assert artifact.threshold == pytest.approx(ddp.threshold)
    assert artifact.meta["distributed"] == {"num_processes": 2, "backend": "gloo", "batch_scaling": "per_process",
                                            "lr_scaling": "linear", "batch_size_per_process": 32,
                                            "global_batch_size": 64, "learning_rate": pytest.approx(0.002)}
    assert (tmp_path / "ddp" / "report.html").is_file() and (tmp_path / "ddp" / "checkpoint.pt").is_file()


def test_cli_distributed_and_grid_errors_are_one_clear_line(tmp_path, capsys):
    from hdfsad.cli import main

    base = ["train", "--variant", "v2_grid", "--table", str(tmp_path / "t"), "--out", str(tmp_path / "o")]
    assert main([*base, "--use-gpu"]) == 2
    assert "hdfsad train: error: --use-gpu trains on the executors' GPUs through TorchDistributor: add " \
           "--num-processes N" in capsys.readouterr().err
    assert main([*base, "--num-processes", "-2"]) == 2
    assert "hdfsad train: error: --num-processes: expected an integer >= 1 (or 0: train in this process), " \
           "got -2" in capsys.readouterr().err
    assert main(["grid-search", "--grid", str(tmp_path / "none.yaml")]) == 2
    assert f"hdfsad grid-search: error: grid file {tmp_path / 'none.yaml'} does not exist" in capsys.readouterr().err
    assert main(["grid-search", "--configs", "0"]) == 2
    assert "hdfsad grid-search: error: --configs: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_a_failed_ddp_job_is_started_again_only_when_it_left_a_newer_checkpoint(tmp_path):
    from hdfsad.distributed import _run_attempts

    checkpoint = tmp_path / "checkpoint.pt"
    calls, lines = [], []

    def fails_after_an_epoch():
        calls.append(1)
        if len(calls) < 3:
            checkpoint.write_bytes(b"epoch %d" % len(calls))  # the epoch this attempt finished
            raise RuntimeError("Job aborted due to stage failure: Could not recover from a failed barrier ResultStage\n...")
        return {"ok": True}

    assert _run_attempts(fails_after_an_epoch, checkpoint, 3, "[v / seed]", lines.append) == {"ok": True}
    assert len(calls) == 3
    assert lines == [f"[v / seed] attempt {k} of 3 of the DDP job failed (Job aborted due to stage failure: Could "
                     f"not recover from a failed barrier ResultStage); starting it again: the ranks resume from "
                     f"{checkpoint}" for k in (1, 2)]

    def fails_at_once():  # no new checkpoint: a configuration or code error, not retried
        calls.append(1)
        raise ValueError("bad config")

    calls.clear()
    with pytest.raises(ValueError, match="bad config"):
        _run_attempts(fails_at_once, checkpoint, 3, "[v / seed]", None)
    assert len(calls) == 1

    def always_fails_after_an_epoch():
        calls.append(1)
        checkpoint.write_bytes(b"epoch %d" % len(calls))
        raise RuntimeError("Could not recover from a failed barrier ResultStage")

    calls.clear()
    with pytest.raises(RuntimeError, match="Could not recover"):  # the attempts are spent: the error stands
        _run_attempts(always_fails_after_an_epoch, checkpoint, 2, "[v / seed]", None)
    assert len(calls) == 2
    with pytest.raises(ValueError, match=r"distributed.max_attempts: expected an integer >= 1, got 0"):
        DistributedConfig(2, max_attempts=0)
