"""Data-parallel training on Spark: PyTorch DDP processes launched by ``TorchDistributor``.

``hdfsad train --num-processes N`` (or ``distributed.num_processes: N``) runs :func:`train_distributed`
on the driver:

1. the driver draws the split (as in-process training does) and writes its three parts as Parquet
   ``sequences`` tables under ``<out>/data/`` (many row groups, so that ``N`` ranks get disjoint
   shards);
2. ``TorchDistributor(num_processes=N, local_mode=False, use_gpu=...)`` starts one Spark barrier task
   per process on the executors; each runs :func:`rank_main` under ``torchrun``: gloo on CPU, NCCL
   with one GPU per process;
3. every rank reads **only its own shard** of the training part with
   :class:`~hdfsad.reader.ShardedParquetReader`; class weights come from the per-shard label counts
   summed by an all-reduce, epoch loss and throughput likewise; with ``train.dedup`` each rank
   collapses its shard to distinct weighted ``(window, label)`` pairs and the (small) pair tables are
   all-gathered and merged, so every rank trains on the same global pairs, split between the ranks
   each epoch. DDP averages the gradients; uneven batch counts are handled with DDP's ``Join``;
4. after every epoch :class:`ReplicaCheck` all-gathers the weights and fails if any rank's differ
   from rank 0's (the largest difference is logged as ``replica_max_abs_diff``);
5. rank 0 chooses the threshold on validation, tests once, writes the artifact and the report into
   ``<out>`` (:func:`hdfsad.experiment.finish_run`) and returns the run's summary to the driver,
   which logs it to MLflow.

Batch size and learning rate scale with ``N`` as :func:`scale_train_config` says (configured by
``distributed.batch_scaling`` and ``distributed.lr_scaling``).

``<out>`` must be one directory every executor and the driver see (local disk on one machine, an
NFS mount on a cluster).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from hdfsad.training import BaseCallback, EpochStats, TrainConfig

BATCH_SCALING = ("per_process", "global")
LR_SCALING = ("none", "linear", "sqrt")
DATA_DIR = "data"
#: Row groups written per process for the training part (the unit of sharding).
ROW_GROUPS_PER_PROCESS = 8


@dataclass(frozen=True)
class DistributedConfig:
    """``distributed:`` of the configuration (see ``conf/default.yaml``)."""

    num_processes: int = 0
    use_gpu: bool = False
    batch_scaling: str = "per_process"
    lr_scaling: str = "linear"
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.num_processes, int) or self.num_processes < 0:
            raise ValueError(f"--num-processes: expected an integer >= 1 (or 0: train in this process), "
                             f"got {self.num_processes!r}")
        if self.batch_scaling not in BATCH_SCALING:
            raise ValueError(f"distributed.batch_scaling: expected one of {list(BATCH_SCALING)}, "
                             f"got {self.batch_scaling!r}")
        if self.lr_scaling not in LR_SCALING:
            raise ValueError(f"distributed.lr_scaling: expected one of {list(LR_SCALING)}, "
                             f"got {self.lr_scaling!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"distributed.max_attempts: expected an integer >= 1, got {self.max_attempts!r}")

    @classmethod
    def from_config(cls, cfg: Mapping, num_processes: int | None = None,
                    use_gpu: bool | None = None) -> "DistributedConfig":
        d = cfg["distributed"]
        return cls(d["num_processes"] if num_processes is None else num_processes,
                   d["use_gpu"] if use_gpu is None else use_gpu, d["batch_scaling"], d["lr_scaling"],
                   d["max_attempts"])


def scale_train_config(config: TrainConfig, world_size: int, batch_scaling: str = "per_process",
                       lr_scaling: str = "linear") -> TrainConfig:
    """The per-process training configuration for ``world_size`` processes.

    * ``batch_scaling: per_process`` — each process steps on ``batch_size`` rows, so the global batch
      is ``world_size * batch_size``; ``global`` — ``batch_size`` is the global batch, each process
      takes ``batch_size / world_size`` rows (it must divide evenly).
    * ``lr_scaling`` — with ``k = global batch / batch_size``: ``linear`` multiplies the learning rate
      by ``k`` (the linear scaling rule), ``sqrt`` by ``sqrt(k)``, ``none`` keeps it.

    With one process the configuration is returned unchanged.
    """
    if batch_scaling not in BATCH_SCALING:
        raise ValueError(f"distributed.batch_scaling: expected one of {list(BATCH_SCALING)}, got {batch_scaling!r}")
    if lr_scaling not in LR_SCALING:
        raise ValueError(f"distributed.lr_scaling: expected one of {list(LR_SCALING)}, got {lr_scaling!r}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size: expected an integer >= 1, got {world_size!r}")
    if batch_scaling == "global":
        if config.batch_size % world_size:
            raise ValueError(f"train.batch_size {config.batch_size} is not divisible by {world_size} processes "
                             f"(distributed.batch_scaling: global splits it evenly); choose a batch size "
                             f"that is a multiple of --num-processes, or batch_scaling: per_process")
        per_process = config.batch_size // world_size
    else:
        per_process = config.batch_size
    k = per_process * world_size / config.batch_size
    factor = {"none": 1.0, "linear": k, "sqrt": math.sqrt(k)}[lr_scaling]
    return replace(config, batch_size=per_process, learning_rate=config.learning_rate * factor)


# collectives (CPU tensors for gloo, CUDA tensors for NCCL) ----------------------------------------

def _device_for_collectives() -> torch.device:
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``t`` summed (or max-ed) over all ranks, returned on the CPU."""
    import torch.distributed as dist

    x = t.to(_device_for_collectives()).clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return x.cpu()


def reduce_stats(stats: EpochStats) -> EpochStats:
    """A rank's epoch sums → the global sums; seconds → the slowest rank's."""
    total = all_reduce(stats.to_tensor())
    seconds = float(all_reduce(torch.tensor([stats.seconds], dtype=torch.float64), "max")[0])
    return EpochStats.from_tensor(total, seconds)


def flat_state(module: torch.nn.Module) -> torch.Tensor:
    """Every parameter and floating buffer of ``module``, flattened into one float64 CPU vector."""
    parts = [p.detach().reshape(-1).double().cpu() for p in module.parameters()]
    parts += [b.detach().reshape(-1).double().cpu() for b in module.buffers() if b.is_floating_point()]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


class ReplicaCheck(BaseCallback):
    """After every epoch: all-gather the weights, log the largest difference to rank 0's as
    ``replica_max_abs_diff``, and fail if it is not 0 (DDP keeps replicas bit-identical)."""

    def on_epoch_end(self, state: Any, log: dict[str, float]) -> None:
        import torch.distributed as dist

        from hdfsad.models import unwrap

        mine = flat_state(unwrap(state.model)).to(_device_for_collectives())
        gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, mine)
        diffs = [float((g - gathered[0]).abs().max()) if len(g) else 0.0 for g in gathered]
        log["replica_max_abs_diff"] = max(diffs)
        if max(diffs) != 0.0:
            worst = int(np.argmax(diffs))
            raise RuntimeError(f"epoch {state.epoch}: the weights of rank {worst} differ from rank 0's by up "
                               f"to {max(diffs):.3g}; the DDP replicas diverged")


class JoinedBatches:
    """A rank's batch source inside DDP's ``Join`` (ranks may have a different number of batches),
    with buffers (BatchNorm statistics) broadcast from rank 0 after every epoch, so that evaluation
    and early stopping see the same model everywhere."""

    def __init__(self, inner: Any, model: torch.nn.Module):
        self.inner, self.model = inner, model

    def label_counts(self) -> np.ndarray:
        return self.inner.label_counts()

    def batches(self, epoch: int):
        import torch.distributed as dist
        from torch.distributed.algorithms.join import Join

        from hdfsad.models import unwrap

        with Join([self.model]):
            yield from self.inner.batches(epoch)
        for buffer in unwrap(self.model).buffers():
            dist.broadcast(buffer, src=0)


# the driver --------------------------------------------------------------------------------------

def write_part(path: str | os.PathLike, part: Any, row_groups: int) -> str:
    """A :class:`~hdfsad.labelled.Labelled` part as a Parquet ``sequences`` table with about
    ``row_groups`` row groups; block ids ``seq-<i>`` keep the part's row order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hdfsad import schemas

    n = len(part)
    table = pa.table({
        schemas.BLOCK_ID: pa.array([f"seq-{i}" for i in range(n)], pa.string()),
        schemas.EVENTS: pa.array([s.tolist() for s in part.sequences], pa.list_(pa.int32())),
        schemas.LENGTH: pa.array([len(s) for s in part.sequences], pa.int32()),
        schemas.LABEL: pa.array(part.labels.astype(np.int32), pa.int32()),
    })
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    pq.write_table(table, out / "part-0.parquet", row_group_size=max(1, math.ceil(n / row_groups)))
    return str(out)


def _local_slots(master: str) -> int | None:
    """Task slots of a ``local[k]`` master (None for a cluster master)."""
    import re

    if master == "local":
        return 1
    m = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master)
    if not m:
        return None
    return (os.cpu_count() or 1) if m.group(1) == "*" else int(m.group(1))


def portable_entry(search_paths: list[str]) -> Callable[[dict], Any]:
    """The function TorchDistributor runs in each process, pickled by value: it first puts the
    shipped ``hdfsad`` (the ``--py-files`` zip, found relative to the executor's working directory, or
    the driver's checkout when it is reachable) on ``sys.path``, then calls :func:`rank_main`. So the
    executors need PyTorch but not an installed hdfsad."""

    def run_rank(spec: dict) -> Any:
        import importlib
        import os as _os
        import sys as _sys

        for p in search_paths:
            p = _os.path.abspath(p)
            if _os.path.exists(p) and p not in _sys.path:
                _sys.path.insert(0, p)
        return importlib.import_module("hdfsad.distributed").rank_main(spec)

    return run_rank


def train_distributed(spark: Any, variant: Any, data: Any, protocol: str, out_dir: str | os.PathLike,
                      dist_cfg: DistributedConfig, *, split_seed: int | None = None, resume: bool = False,
                      threads: int | None = None, log: Callable[[str], None] | None = print) -> Any:
    """Train ``variant`` with ``dist_cfg.num_processes`` DDP processes (see the module docstring);
    returns the :class:`~hdfsad.experiment.RunResult` rank 0 computed."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from hdfsad.experiment import CHECKPOINT_FILE, RunResult, _extra_windows, as_labelled
    from hdfsad.splits import STUDY_SEED, make_split

    n = dist_cfg.num_processes
    if n < 1:
        raise ValueError(f"--num-processes: expected an integer >= 1 for distributed training, got {n}")
    tcfg = scale_train_config(variant.train, n, dist_cfg.batch_scaling, dist_cfg.lr_scaling)  # fails fast
    master = spark.sparkContext.master
    slots = _local_slots(master)
    if slots is not None and n > slots:
        raise ValueError(f"--num-processes {n} needs {n} Spark task slots at once (a barrier stage), but "
                         f"the master {master} has {slots}; use --master local[{n}] (or more), a cluster, "
                         f"or fewer processes")
    task_cpus = int(spark.conf.get("spark.task.cpus", "1"))
    data = as_labelled(data)
    split = make_split(protocol, data.sequences, STUDY_SEED if split_seed is None else split_seed)
    train, val, test = (data.subset(rows) for rows in (split.train, split.validation, split.test))
    if len(train) < n:
        raise ValueError(f"{len(train)} training rows cannot be shared by {n} processes; use more data "
                         f"or fewer processes")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT_FILE
    if not resume and checkpoint.exists():
        checkpoint.unlink()
    parts = {name: write_part(out / DATA_DIR / name, part, ROW_GROUPS_PER_PROCESS * n if name == "train" else 1)
             for name, part in (("train", train), ("validation", val), ("test", test))}
    py_files = [os.path.basename(p) for p in spark.conf.get("spark.submit.pyFiles", "").split(",") if p]
    spec = {
        "variant": variant.to_dict(), "protocol": protocol, "out": str(out), "parts": parts,
        "data_source": data.source, "data_summary": data.summary(), "split_sizes": split.sizes(),
        "split_seed": split.seed, "resume": resume, "threads": threads or task_cpus,
        "use_gpu": dist_cfg.use_gpu, "batch_scaling": dist_cfg.batch_scaling,
        "lr_scaling": dist_cfg.lr_scaling, "num_processes": n,
        "train_rows": len(train) + int(_extra_windows(train, variant.model.max_len, variant.train.extra_windows)),
    }
    if log:
        log(f"[{variant.name} / {protocol}] {data.summary()}; split {split.sizes()}; DDP on {n} process(es) "
            f"({'NCCL, GPU' if dist_cfg.use_gpu else 'gloo, CPU'}) through TorchDistributor on {master}: "
            f"batch {tcfg.batch_size} per process (global {tcfg.batch_size * n}), learning rate "
            f"{tcfg.learning_rate:g} ({dist_cfg.batch_scaling} batch, {dist_cfg.lr_scaling} lr scaling)")
    search = py_files + [str(Path(__file__).resolve().parents[1])]
    distributor = TorchDistributor(num_processes=n, local_mode=False, use_gpu=dist_cfg.use_gpu)
    summary = _run_attempts(lambda: distributor.run(portable_entry(search), spec), checkpoint,
                            dist_cfg.max_attempts, f"[{variant.name} / {protocol}]", log)
    if not isinstance(summary, dict):
        raise RuntimeError(f"distributed training returned {summary!r} from rank 0 instead of a summary; "
                           f"see the executors' logs")
    run = RunResult(**summary)
    if log and run.resumed_from is not None:
        log(f"[{variant.name} / {protocol}] resumed from the checkpoint after epoch {run.resumed_from} "
            f"({'--resume' if resume else 'written by a failed attempt of the DDP job'})")
    return run


def _run_attempts(run: Callable[[], Any], checkpoint: Path, max_attempts: int, tag: str,
                  log: Callable[[str], None] | None) -> Any:
    """``run()`` (the barrier job), started again while it fails after writing ``checkpoint``.

    Spark retries a failed barrier *result* stage never ("Could not recover from a failed barrier
    ResultStage"): a rank's executor lost ends the job. The ranks of the next attempt resume from the
    checkpoint the last finished epoch left. A failure before the first checkpoint (a configuration or
    code error, most often) is raised at once.
    """
    for attempt in range(1, max_attempts + 1):
        before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        try:
            return run()
        except Exception as exc:  # noqa: BLE001 - Py4J/PySpark errors of the barrier job; re-raised below
            progressed = checkpoint.exists() and checkpoint.stat().st_mtime_ns != before
            if attempt == max_attempts or not progressed:
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            if log:
                log(f"{tag} attempt {attempt} of {max_attempts} of the DDP job failed ({reason}); starting it "
                    f"again: the ranks resume from {checkpoint}")
    raise AssertionError("unreachable")


# the ranks ---------------------------------------------------------------------------------------

def rank_main(spec: dict) -> dict | None:
    """One DDP process (under torchrun: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT`` are set).
    Returns the run summary on rank 0 and None elsewhere."""
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world != spec["num_processes"]:
        raise RuntimeError(f"rank {rank}: WORLD_SIZE {world} but {spec['num_processes']} processes were asked for")
    if spec["use_gpu"]:
        if not torch.cuda.is_available():
            raise RuntimeError(f"--use-gpu: rank {rank} sees no CUDA device (torch {torch.__version__}, "
                               f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); install a "
                               f"CUDA build of PyTorch on the workers and set spark.task.resource.gpu.amount "
                               f"(and the executors' GPU resources), or drop --use-gpu")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    torch.set_num_threads(max(1, int(spec["threads"])))
    dist.init_process_group("nccl" if spec["use_gpu"] else "gloo")
    try:
        return _train_rank(spec, rank, world, device)
    finally:
        dist.destroy_process_group()


def rank_source(train_path: str, config: TrainConfig, max_len: int, rank: int, world: int
                ) -> tuple[Any, np.ndarray, int]:
    """``(source, global class counts, rows fed per epoch)`` for this rank, reading only its shard."""
    import torch.distributed as dist

    from hdfsad.preprocessing import dedup_weighted
    from hdfsad.reader import ArrayBatches, ShardedParquetReader, TableTransform, _label_counts

    reader = ShardedParquetReader(train_path, batch_size=config.batch_size, rank=rank, world_size=world,
                                  seed=config.seed, transform=TableTransform(max_len, config.extra_windows),
                                  labelled_only=True)
    if not config.dedup:
        counts = all_reduce(torch.from_numpy(reader.shard_label_counts(0))).numpy()
        return reader, counts, int(counts.sum())
    x, y = reader.shard_arrays(0)
    local = dedup_weighted(x, y)
    counts = all_reduce(torch.from_numpy(_label_counts(local[1], local[2]))).numpy()
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, local)
    xs, ys, ws = (np.concatenate([g[i] for g in gathered]) for i in range(3))
    xd, yd, wd = dedup_weighted(xs, ys, ws)
    source = ArrayBatches(xd, yd, wd, batch_size=config.batch_size, seed=config.seed, rank=rank,
                          world_size=world, passes=config.dedup_passes)
    return source, counts, len(yd)


def _train_rank(spec: dict, rank: int, world: int, device: torch.device) -> dict | None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from hdfsad.experiment import CHECKPOINT_FILE, finish_run
    from hdfsad.labelled import from_table
    from hdfsad.models import build_model
    from hdfsad.preprocessing import encode
    from hdfsad.training import fit
    from hdfsad.variants import variant_from_dict

    variant = variant_from_dict(spec["variant"], "the variant shipped to the executors")
    tcfg = scale_train_config(variant.train, world, spec["batch_scaling"], spec["lr_scaling"])
    max_len = variant.model.max_len
    source, counts, fed_rows = rank_source(spec["parts"]["train"], tcfg, max_len, rank, world)
    val = from_table(spec["parts"]["validation"])
    model = build_model(variant.model, seed=tcfg.seed).to(device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    out = Path(spec["out"])
    is_main = rank == 0
    start = time.perf_counter()
    result = fit(ddp, JoinedBatches(source, ddp), tcfg, validation=(encode(val.sequences, max_len), val.labels),
                 callbacks=[ReplicaCheck()], log=print if is_main else None,
                 checkpoint_path=out / CHECKPOINT_FILE,
                 # The driver removed any earlier run's checkpoint unless --resume; one found now was
                 # written by this run's failed attempt of the DDP job (an executor lost): go on from it.
                 resume=True, class_counts=counts,
                 reduce_stats=reduce_stats, is_main=is_main)
    seconds = time.perf_counter() - start
    if not is_main:
        return None
    test = from_table(spec["parts"]["test"])
    scaled = {"num_processes": world, "backend": "nccl" if device.type == "cuda" else "gloo",
              "batch_scaling": spec["batch_scaling"], "lr_scaling": spec["lr_scaling"],
              "batch_size_per_process": tcfg.batch_size, "global_batch_size": tcfg.batch_size * world,
              "learning_rate": tcfg.learning_rate}
    run = finish_run(variant, model.cpu(), result, seconds, spec["protocol"], out,
                     data_source=spec["data_source"], data_summary=spec["data_summary"],
                     split_sizes=spec["split_sizes"], split_seed=spec["split_seed"], val=val, test=test,
                     train_rows=spec["train_rows"], fed_rows=fed_rows,
                     passes=tcfg.dedup_passes if tcfg.dedup else 1, log=print, extra={"distributed": scaled})
    return run.to_dict()
