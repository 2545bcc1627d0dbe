"""The training loop, apart from the model and the data: configured, with features as callbacks.

Layers, from the inside out:

* :func:`weighted_loss` — cross-entropy with class weights and sample weights;
* :func:`train_epoch` — one pass over an iterable of :class:`~hdfsad.reader.Batch`; takes a model that
  may be wrapped in ``DistributedDataParallel`` and an optimizer it does not own, and returns
  summable :class:`EpochStats`. This is what a DDP wrapper calls;
* :func:`evaluate` — validation metrics (never the test set: the loop only ever sees what it is given
  as ``validation``);
* :func:`fit` — epochs, validation, callbacks (:class:`EarlyStopping`, :class:`ProgressLogger`), a
  checkpoint after every epoch and resume from it. The optimizer is built once and kept for the run
  (its state is checkpointed too).

Variants differ only in :class:`TrainConfig` values; nothing here branches on a variant name.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hdfsad import metrics
from hdfsad.models import unwrap
from hdfsad.reader import ArrayBatches, Batch

CLASS_WEIGHTS = ("balanced", "none")
CLIP_NORM_SCOPES = ("global", "per_parameter")
#: Validation metrics :func:`evaluate` reports (each logged as ``val_<name>``).
VAL_METRICS = ("loss", "accuracy", "precision", "recall", "f1", "macro_precision", "macro_recall",
               "macro_f1", "roc_auc", "pr_auc")
#: What early stopping may watch: the training loss or a validation metric.
MONITORS = ("loss",) + tuple(f"val_{m}" for m in VAL_METRICS)
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. The single place the defaults are documented.

    Attributes:
        batch_size: rows per optimizer step (the study's best: 32).
        epochs: maximum number of epochs (the study's best: 15).
        learning_rate: Adam step size (Keras default 0.001).
        adam_epsilon: Adam epsilon (Keras default 1e-7; PyTorch's is 1e-8).
        class_weight: ``"balanced"`` (class c weighs ``n / (2 * n_c)``, counted on the training data,
            as the study) or ``"none"``.
        clip_value: clip every gradient element to ``[-clip_value, clip_value]`` (GC), or null.
        clip_norm: clip the gradient L2 norm to ``clip_norm`` (GN), or null.
        clip_norm_scope: ``"global"`` (one norm over all parameters, ``clip_grad_norm_``) or
            ``"per_parameter"`` (each weight tensor separately, as Keras ``clipnorm``).
        monitor: what early stopping watches: ``"loss"`` (training loss, as the study) or
            ``"val_<metric>"`` (see :data:`MONITORS`); losses are minimized, other metrics maximized.
        patience: epochs without improvement before stopping; null disables early stopping.
        min_delta: smallest change that counts as an improvement.
        restore_best: at the end of training, load the weights of the best monitored epoch.
        extra_windows: the windowing augmentation (variants 7 and 8: 3); 0 = none.
        dedup: train on distinct (window, label) pairs weighted by their count: the same objective
            (see :func:`weighted_loss`), but a pass over the pairs takes far fewer optimizer steps
            than a pass over the rows (HDFS_v1: 7,052 pairs for 260,069 rows).
        dedup_passes: with ``dedup``, shuffled passes over the distinct pairs per epoch. One pass
            weighs as much as a pass over every row but makes ~1/37 of its optimizer steps, too few
            for the study's short schedules; several passes per epoch buy back steps at a fraction
            of the cost (measured in docs/results.md).
        seed: seeds the data order (with the epoch) and the dropout RNG; use it for the model
            initialisation too (:func:`hdfsad.models.build_model`).
    """

    batch_size: int = 32
    epochs: int = 15
    learning_rate: float = 1e-3
    adam_epsilon: float = 1e-7
    class_weight: str = "balanced"
    clip_value: float | None = None
    clip_norm: float | None = None
    clip_norm_scope: str = "global"
    monitor: str = "loss"
    patience: int | None = 5
    min_delta: float = 0.0
    restore_best: bool = True
    extra_windows: int = 0
    dedup: bool = False
    dedup_passes: int = 1
    seed: int = 24

    def __post_init__(self) -> None:
        _int("train.batch_size", self.batch_size, 1)
        _int("train.epochs", self.epochs, 1)
        _int("train.extra_windows", self.extra_windows, 0)
        _int("train.seed", self.seed, 0)
        _int("train.dedup_passes", self.dedup_passes, 1)
        if self.patience is not None:
            _int("train.patience", self.patience, 1)
        _positive("train.learning_rate", self.learning_rate)
        _positive("train.adam_epsilon", self.adam_epsilon)
        for key in ("clip_value", "clip_norm"):
            if getattr(self, key) is not None:
                _positive(f"train.{key}", getattr(self, key))
        if not isinstance(self.min_delta, (int, float)) or isinstance(self.min_delta, bool) or self.min_delta < 0:
            raise ValueError(f"train.min_delta: expected a number >= 0, got {self.min_delta!r}")
        _choice("train.class_weight", self.class_weight, CLASS_WEIGHTS)
        _choice("train.clip_norm_scope", self.clip_norm_scope, CLIP_NORM_SCOPES)
        _choice("train.monitor", self.monitor, MONITORS)
        for key in ("restore_best", "dedup"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"train.{key}: expected true or false, got {getattr(self, key)!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a mapping (a YAML ``train:`` section); unknown keys are an error."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"train: unknown key(s) {unknown}; allowed keys: {allowed}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int(key: str, value: Any, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key}: expected an integer >= {minimum}, got {value!r}")


def _positive(key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{key}: expected a number > 0 (or null where allowed), got {value!r}")


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}: expected one of {list(allowed)}, got {value!r}")


# loss and gradients ------------------------------------------------------------------------------

def class_weights(counts: np.ndarray, mode: str) -> torch.Tensor | None:
    """Per-class loss weights from ``(normal, anomaly)`` counts: ``balanced`` → ``n / (2 * n_c)``."""
    _choice("train.class_weight", mode, CLASS_WEIGHTS)
    if mode == "none":
        return None
    counts = np.asarray(counts, dtype=np.float64)
    if (counts <= 0).any():
        missing = "normal" if counts[0] <= 0 else "anomaly"
        raise ValueError(f"class_weight 'balanced': the training data holds no {missing} row; "
                         f"use class_weight 'none' or training data with both classes")
    return torch.tensor(counts.sum() / (2 * counts), dtype=torch.float32)


def weighted_loss(logits: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor | None = None,
                  class_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, rows)``: ``sum_i s_i * c_{y_i} * CE_i / B`` over a batch of ``B`` rows.

    ``s`` are sample weights with mean 1 over the training set (1 when absent; after
    :func:`~hdfsad.preprocessing.dedup_weighted`, each distinct row's count divided by the mean count,
    which :class:`~hdfsad.reader.ArrayBatches` does), ``c`` class weights. Dividing by the batch size
    (as Keras does with sample weights) makes every step an unbiased estimate of the gradient of the
    mean loss over all rows: a distinct row with count k weighs exactly as k identical rows, and
    training on distinct rows optimizes the same objective as training on every row. (Dividing by the
    batch's weight sum instead would give a batch of rare rows the same pull as the batch holding the
    commonest HDFS window, 42,737 rows' worth; measured on HDFS_v1, the loss then jumps ×10 between
    late epochs.)
    """
    ce = F.cross_entropy(logits, y, reduction="none")
    if class_weight is not None:
        ce = ce * class_weight.to(ce.device)[y]
    if sample_weight is not None:
        ce = ce * sample_weight.to(ce.dtype)
    return ce.mean(), torch.tensor(float(len(y)), device=ce.device)


@dataclass(frozen=True)
class GradientClipper:
    """Clip gradients in place: first the L2 norm (GN), then each value (GC); either may be off."""

    value: float | None = None
    norm: float | None = None
    norm_scope: str = "global"

    @classmethod
    def from_config(cls, config: TrainConfig) -> "GradientClipper | None":
        if config.clip_value is None and config.clip_norm is None:
            return None
        return cls(config.clip_value, config.clip_norm, config.clip_norm_scope)

    def __call__(self, parameters: Iterable[nn.Parameter]) -> None:
        params = [p for p in parameters if p.grad is not None]
        if self.norm is not None:
            if self.norm_scope == "global":
                nn.utils.clip_grad_norm_(params, self.norm)
            else:
                for p in params:
                    nn.utils.clip_grad_norm_([p], self.norm)
        if self.value is not None:
            nn.utils.clip_grad_value_(params, self.value)


# one epoch ---------------------------------------------------------------------------------------

@dataclass
class EpochStats:
    """Sums over one epoch on one rank; add them up across ranks (see :meth:`to_tensor`)."""

    loss_sum: float = 0.0    # sum over batches of loss * rows
    weight_sum: float = 0.0  # rows (sample weights have mean 1, see weighted_loss)
    samples: int = 0         # rows seen
    steps: int = 0           # optimizer steps
    seconds: float = 0.0     # wall time (the slowest rank's after a reduction)

    @property
    def loss(self) -> float:
        return self.loss_sum / self.weight_sum if self.weight_sum else float("nan")

    def to_tensor(self) -> torch.Tensor:
        """``[loss_sum, weight_sum, samples, steps]`` (float64) for ``all_reduce(SUM)``."""
        return torch.tensor([self.loss_sum, self.weight_sum, self.samples, self.steps],
                            dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor, seconds: float) -> "EpochStats":
        a = t.tolist()
        return cls(a[0], a[1], int(a[2]), int(a[3]), seconds)


def train_epoch(model: nn.Module, batches: Iterable[Batch], optimizer: torch.optim.Optimizer, *,
                class_weight: torch.Tensor | None = None,
                clipper: Callable[[Iterable[nn.Parameter]], None] | None = None,
                on_step: Callable[[nn.Module], None] | None = None) -> EpochStats:
    """One pass over ``batches``: forward, :func:`weighted_loss`, backward, clip, step.

    ``model`` may be a DDP wrapper (gradients are averaged across ranks during ``backward``, before
    clipping); batches are moved to the device of its parameters. ``on_step(model)`` runs after
    clipping and before the optimizer step (for inspection). The returned stats are this rank's.
    """
    device = next(model.parameters()).device
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    weight_sum = torch.zeros((), dtype=torch.float64, device=device)
    samples = steps = 0
    start = time.perf_counter()
    for batch in batches:
        x = batch.x.to(device, non_blocking=True)
        y = batch.y.to(device, non_blocking=True)
        w = None if batch.w is None else batch.w.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss, total = weighted_loss(model(x), y, w, class_weight)
        loss.backward()
        if clipper is not None:
            clipper(model.parameters())
        if on_step is not None:
            on_step(model)
        optimizer.step()
        loss_sum += loss.detach().double() * total.double()
        weight_sum += total.double()
        samples += len(y)
        steps += 1
    return EpochStats(float(loss_sum), float(weight_sum), samples, steps, time.perf_counter() - start)


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, threshold: float = 0.5,
             batch_size: int = 8192) -> dict[str, float]:
    """Validation metrics: unweighted mean cross-entropy (``loss``, as Keras' ``val_loss``) and
    :func:`hdfsad.metrics.score_metrics` at ``threshold``. Eval mode; the previous mode is restored.

    The model runs once per distinct row of ``x`` (HDFS windows repeat: ~29k validation rows are ~2k
    distinct ones); in eval mode a row's output does not depend on the other rows of its batch."""
    from hdfsad.preprocessing import distinct_rows

    module = unwrap(model)
    device = next(module.parameters()).device
    uniq, inverse = distinct_rows(np.asarray(x))
    xt = torch.as_tensor(uniq, dtype=torch.int64)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    was_training = module.training
    module.eval()
    try:
        chunks = [module(xt[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(xt), batch_size)]
    finally:
        module.train(was_training)
    logits = torch.cat(chunks)[torch.from_numpy(inverse)] if chunks else torch.zeros((0, 2))
    loss = F.cross_entropy(logits.double(), yt, reduction="sum") if len(yt) else torch.zeros(())
    s = torch.softmax(logits.double(), dim=1)[:, 1].numpy()
    out = {"loss": float(loss) / max(len(yt), 1)}
    out.update(metrics.score_metrics(np.asarray(y), s, threshold))
    return out


# callbacks ---------------------------------------------------------------------------------------

@dataclass
class TrainState:
    """What callbacks see: the model (maybe wrapped), the optimizer, completed epochs, the history."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stop: bool = False
    resumed_from: int | None = None


class Callback(Protocol):
    """A loop feature. ``key`` names its state in the checkpoint (None: stateless)."""

    key: str | None

    def on_train_begin(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState, log: dict[str, float]) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class BaseCallback:
    """No-op defaults for :class:`Callback`."""

    key: str | None = None

    def on_train_begin(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState, log: dict[str, float]) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EarlyStopping(BaseCallback):
    """Stop after ``patience`` epochs without improvement of ``monitor``; optionally restore the best
    weights at the end (also when all epochs ran, unlike older Keras)."""

    key = "early_stopping"

    def __init__(self, monitor: str = "loss", patience: int = 5, min_delta: float = 0.0,
                 restore_best: bool = True):
        _choice("monitor", monitor, MONITORS)
        self.monitor, self.patience, self.min_delta, self.restore_best = monitor, patience, min_delta, restore_best
        self.sign = 1.0 if monitor.endswith("loss") else -1.0  # minimize sign * value
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, state: TrainState, log: dict[str, float]) -> None:
        value = log[self.monitor]
        improved = not math.isnan(value) and (
            self.best is None or self.sign * (value - self.best) < -self.min_delta)
        if improved:
            self.best, self.best_epoch, self.wait = float(value), state.epoch, 0
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in unwrap(state.model).state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                state.stop = True

    def on_train_end(self, state: TrainState) -> None:
        if self.restore_best and self.best_weights is not None:
            unwrap(state.model).load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.best_weights = state["wait"], state["best_weights"]


class ProgressLogger(BaseCallback):
    """One line per epoch through ``log`` (``print``, ``logger.info``, …)."""

    def __init__(self, log: Callable[[str], None] = print, total_epochs: int | None = None):
        self.log, self.total = log, total_epochs

    def on_train_begin(self, state: TrainState) -> None:
        if state.resumed_from is not None:
            self.log(f"resumed from checkpoint after epoch {state.resumed_from}")

    def on_epoch_end(self, state: TrainState, log: dict[str, float]) -> None:
        of = f"/{self.total}" if self.total else ""
        parts = [f"epoch {state.epoch}{of}", f"loss {log['loss']:.5f}"]
        parts += [f"{k} {v:.5f}" for k, v in log.items() if k.startswith("val_")]
        parts += [f"{log['samples_per_s']:,.0f} samples/s", f"{log['seconds']:.1f}s"]
        self.log("  ".join(parts))


# checkpoints -------------------------------------------------------------------------------------

def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: TrainState, config: TrainConfig,
                    callbacks: Iterable[Callback]) -> None:
    """Write model, optimizer, completed epochs, RNG state, history and callback states, atomically."""
    module = unwrap(state.model)
    model_config = getattr(module, "config", None)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": state.epoch,
        "stopped": state.stop,
        "model": module.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "rng": _rng_state(),
        "history": state.history,
        "callbacks": {cb.key: cb.state_dict() for cb in callbacks if cb.key},
        "train_config": config.to_dict(),
        "model_config": model_config.to_dict() if hasattr(model_config, "to_dict") else None,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, state: TrainState, config: TrainConfig,
                    callbacks: Iterable[Callback]) -> None:
    """Restore what :func:`save_checkpoint` wrote into ``state`` and ``callbacks``.

    Refuses a checkpoint of another training or model configuration (``epochs`` may differ, to
    extend a run), naming the keys that differ.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"cannot read checkpoint {path}: {exc}. Delete it to start the run afresh, "
                         f"or pass resume=False") from exc
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} has format {payload.get('format')!r}, this hdfsad "
                         f"writes {CHECKPOINT_FORMAT}; delete it or pass resume=False")
    saved = {k: v for k, v in payload["train_config"].items() if k != "epochs"}
    current = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    module = unwrap(state.model)
    model_config = getattr(module, "config", None)
    if payload["model_config"] is not None and hasattr(model_config, "to_dict"):
        saved.update({f"model.{k}": v for k, v in payload["model_config"].items()})
        current.update({f"model.{k}": v for k, v in model_config.to_dict().items()})
    diff = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(saved) | set(current))
            if saved.get(k) != current.get(k)]
    if diff:
        raise ValueError(f"checkpoint {path} was written with another configuration "
                         f"({'; '.join(diff)}); resume with the same configuration, or start a new "
                         f"run (delete the checkpoint or pass resume=False)")
    module.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    _set_rng_state(payload["rng"])
    state.epoch, state.stop, state.history = payload["epoch"], payload["stopped"], list(payload["history"])
    state.resumed_from = payload["epoch"]
    for cb in callbacks:
        if cb.key and cb.key in payload["callbacks"]:
            cb.load_state_dict(payload["callbacks"][cb.key])


# the loop ----------------------------------------------------------------------------------------

class BatchSource(Protocol):
    """Where training rows come from (:class:`~hdfsad.reader.ArrayBatches`,
    :class:`~hdfsad.reader.ShardedParquetReader`)."""

    def batches(self, epoch: int) -> Iterable[Batch]: ...
    def label_counts(self) -> np.ndarray: ...


@dataclass
class FitResult:
    history: list[dict[str, float]]
    epochs_done: int
    stopped_early: bool
    best_epoch: int | None
    resumed_from: int | None


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the model's parameters, built once per run."""
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate, eps=config.adam_epsilon)


def array_source(sequences: Any, labels: Any, max_len: int, config: TrainConfig, *, rank: int = 0,
                 world_size: int = 1) -> ArrayBatches:
    """In-memory training source with the configured augmentation and dedup applied."""
    from hdfsad.preprocessing import training_arrays

    x, y, w = training_arrays(sequences, labels, max_len, config.extra_windows, config.dedup)
    return ArrayBatches(x, y, w, batch_size=config.batch_size, seed=config.seed, rank=rank,
                        world_size=world_size, passes=config.dedup_passes if config.dedup else 1)


def fit(model: nn.Module, train: BatchSource, config: TrainConfig, *,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        callbacks: Iterable[Callback] = (), log: Callable[[str], None] | None = None,
        checkpoint_path: str | os.PathLike | None = None, resume: bool = True,
        optimizer: torch.optim.Optimizer | None = None, class_counts: np.ndarray | None = None,
        reduce_stats: Callable[[EpochStats], EpochStats] | None = None,
        is_main: bool = True) -> FitResult:
    """Train ``model`` for ``config.epochs`` epochs (fewer if early stopping fires).

    Args:
        model: on its device already; may be DDP-wrapped.
        train: a :class:`BatchSource`; its ``label_counts()`` (over all ranks) set the class weights
            unless ``class_counts`` is given.
        validation: encoded ``(x, y)``; logged as ``val_*`` each epoch. The test set never goes here.
        callbacks: extra callbacks; early stopping (from ``config``) and, with ``log``, a
            :class:`ProgressLogger` are added first.
        checkpoint_path: write a checkpoint there after every epoch (main rank only) and, with
            ``resume``, continue from it when it exists (every rank reads it).
        reduce_stats: sums a rank's :class:`EpochStats` over ranks (DDP); identity by default.
        is_main: whether this process logs and writes checkpoints.

    Seeds torch's global RNG with ``config.seed`` first (a resumed run then restores the saved RNG
    state). Under DDP every rank evaluates the whole validation set, so every rank logs the same
    history and early stopping decides the same way everywhere.
    """
    torch.manual_seed(config.seed)  # dropout RNG of a fresh run; a resume restores its own state
    optimizer = optimizer or make_optimizer(model, config)
    cbs: list[Callback] = []
    if config.patience is not None:
        cbs.append(EarlyStopping(config.monitor, config.patience, config.min_delta, config.restore_best))
    if log is not None and is_main:
        cbs.append(ProgressLogger(log, config.epochs))
    cbs += list(callbacks)
    if config.monitor != "loss" and validation is None and config.patience is not None:
        raise ValueError(f"train.monitor {config.monitor!r} needs validation data: pass "
                         f"validation=(x, y) or monitor 'loss'")
    counts = class_counts if class_counts is not None else train.label_counts()
    weights = class_weights(counts, config.class_weight)
    if weights is not None:
        weights = weights.to(next(model.parameters()).device)
    clipper = GradientClipper.from_config(config)
    state = TrainState(model, optimizer)
    if checkpoint_path is not None and resume and Path(checkpoint_path).exists():
        load_checkpoint(checkpoint_path, state, config, cbs)
    for cb in cbs:
        cb.on_train_begin(state)
    while not state.stop and state.epoch < config.epochs:
        stats = train_epoch(model, train.batches(state.epoch), optimizer, class_weight=weights,
                            clipper=clipper)
        if reduce_stats is not None:
            stats = reduce_stats(stats)
        state.epoch += 1
        row = {"epoch": float(state.epoch), "loss": stats.loss, "samples": float(stats.samples),
               "seconds": stats.seconds, "samples_per_s": stats.samples / max(stats.seconds, 1e-9)}
        if validation is not None:
            row.update({f"val_{k}": v for k, v in evaluate(model, *validation).items()
                        if k in VAL_METRICS})
        state.history.append(row)
        for cb in cbs:
            cb.on_epoch_end(state, row)
        if checkpoint_path is not None and is_main:
            save_checkpoint(checkpoint_path, state, config, cbs)
    for cb in cbs:
        cb.on_train_end(state)
    stopper = next((cb for cb in cbs if isinstance(cb, EarlyStopping)), None)
    return FitResult(state.history, state.epoch, state.stop,
                     stopper.best_epoch if stopper else None, state.resumed_from)
