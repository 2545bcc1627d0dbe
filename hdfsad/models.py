"""The sequence classifier: one configurable ``nn.Module`` for every LSTM variant of the study.

The module only computes: ``(batch, max_len)`` int64 event ids (shifted by +1, 0 = padding, see
:mod:`hdfsad.preprocessing`) → ``(batch, 2)`` logits (column 1 = anomaly). Training lives in
:mod:`hdfsad.training`, persistence in :mod:`hdfsad.artifacts`.

Architecture: ``Embedding(vocab_size, embedding_dim, padding_idx=0)`` → one ``nn.LSTM`` per entry of
``lstm_units`` (each fed the full output sequence of the previous one) → hidden state at the last
time step → optional ``BatchNorm1d`` → optional ``Dropout`` → ``Linear(units[-1], 2)``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from hdfsad.templates import NUM_EVENT_IDS

#: Input vocabulary: every event id shifted by +1, plus 0 for padding.
DEFAULT_VOCAB_SIZE = NUM_EVENT_IDS + 1
#: The study's window: the median sequence length.
DEFAULT_MAX_LEN = 19
#: Weight initialisations the model knows (see :meth:`SequenceClassifier.reset_parameters`).
INITS = ("keras", "torch")
#: Output classes: 0 = normal, 1 = anomaly.
NUM_CLASSES = 2


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`SequenceClassifier`. The single place its defaults are documented.

    Attributes:
        vocab_size: embedding rows; ``NUM_EVENT_IDS + 1`` (= 32: 31 event ids shifted by +1, and 0
            for padding).
        embedding_dim: embedding width; ``None`` resolves to ``ceil(vocab_size ** 0.25)`` (= 3, as
            the study).
        lstm_units: units of each stacked LSTM layer, first to last (the study: ``[64]``, ``[64, 64]``
            or ``[72, 72]``).
        batch_norm: ``BatchNorm1d`` between the last LSTM and the output layer (variants 3 and 6).
        dropout: dropout rate after each LSTM layer (0 = none; the study used none).
        max_len: input window; sequences are cut to their last ``max_len`` events and left-padded.
            The module accepts any length, but training and scoring must use the same window, so it
            is stored with the model.
        init: ``"keras"`` (Glorot-uniform inputs, orthogonal recurrent weights, forget-gate bias 1,
            embedding uniform(±0.05): what the study's Keras layers did) or ``"torch"`` (PyTorch
            defaults).
    """

    vocab_size: int = DEFAULT_VOCAB_SIZE
    embedding_dim: int | None = None
    lstm_units: tuple[int, ...] = (64,)
    batch_norm: bool = False
    dropout: float = 0.0
    max_len: int = DEFAULT_MAX_LEN
    init: str = "keras"

    def __post_init__(self) -> None:
        units = self.lstm_units
        if isinstance(units, int) and not isinstance(units, bool):
            units = (units,)
        if not isinstance(units, (list, tuple)) or not units or not all(
                _is_int(u) and u > 0 for u in units):
            raise ValueError(f"model.lstm_units: expected a non-empty list of positive integers "
                             f"(e.g. [64, 64]), got {self.lstm_units!r}")
        object.__setattr__(self, "lstm_units", tuple(int(u) for u in units))
        _check_int("model.vocab_size", self.vocab_size, minimum=2)
        if self.embedding_dim is None:
            object.__setattr__(self, "embedding_dim", math.ceil(self.vocab_size ** 0.25))
        _check_int("model.embedding_dim", self.embedding_dim, minimum=1)
        _check_int("model.max_len", self.max_len, minimum=1)
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"model.batch_norm: expected true or false, got {self.batch_norm!r}")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) or not (
                0.0 <= self.dropout < 1.0):
            raise ValueError(f"model.dropout: expected a number in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.init not in INITS:
            raise ValueError(f"model.init: expected one of {list(INITS)}, got {self.init!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a mapping (a YAML ``model:`` section); unknown keys are an error."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"model: unknown key(s) {unknown}; allowed keys: {allowed}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able mapping; ``from_dict(to_dict())`` gives an equal config."""
        d = asdict(self)
        d["lstm_units"] = list(self.lstm_units)
        return d


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_int(key: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{key}: expected an integer >= {minimum}, got {value!r}")


class SequenceClassifier(nn.Module):
    """Embedding → stacked LSTMs → [BatchNorm] → [Dropout] → Linear(2). Returns logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        sizes = (config.embedding_dim,) + config.lstm_units
        self.lstms = nn.ModuleList(
            nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(len(config.lstm_units)))
        last = config.lstm_units[-1]
        self.norm = nn.BatchNorm1d(last) if config.batch_norm else nn.Identity()
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.head = nn.Linear(last, NUM_CLASSES)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise weights as ``config.init`` says (draws from torch's global RNG)."""
        if self.config.init == "torch":
            return  # layers were just built with PyTorch's defaults
        with torch.no_grad():
            nn.init.uniform_(self.embedding.weight, -0.05, 0.05)
            self.embedding.weight[0].zero_()
            for lstm in self.lstms:
                h = lstm.hidden_size
                nn.init.xavier_uniform_(lstm.weight_ih_l0)  # Keras: glorot on the (in, 4h) kernel
                nn.init.orthogonal_(lstm.weight_hh_l0)
                lstm.bias_ih_l0.zero_()
                lstm.bias_hh_l0.zero_()
                lstm.bias_ih_l0[h:2 * h].fill_(1.0)  # gate order i, f, g, o: forget bias 1
            nn.init.xavier_uniform_(self.head.weight)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (batch, time) int64 shifted event ids → (batch, 2) logits."""
        h = self.embedding(x)
        for i, lstm in enumerate(self.lstms):
            h, _ = lstm(h)
            if i < len(self.lstms) - 1:
                h = self.dropout(h)
        last = h[:, -1, :]  # left padding: the last step has seen every real event
        return self.head(self.dropout(self.norm(last)))


def build_model(config: ModelConfig, seed: int | None = None) -> SequenceClassifier:
    """A fresh model; with ``seed`` its initial weights depend on nothing else."""
    if seed is None:
        return SequenceClassifier(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SequenceClassifier(config)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper."""
    return getattr(model, "module", model)


@torch.no_grad()
def predict_proba_encoded(model: nn.Module, x: np.ndarray | torch.Tensor,
                          batch_size: int = 8192) -> np.ndarray:
    """P(anomaly) for already encoded rows ``x`` (n, max_len) → float64 array (n,).

    Runs in eval mode (BatchNorm uses running statistics, no dropout) and restores the previous mode.
    """
    module = unwrap(model)
    device = next(module.parameters()).device
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.int64)
    was_training = module.training
    module.eval()
    try:
        out = [torch.softmax(module(xt[i:i + batch_size].to(device)), dim=1)[:, 1].cpu()
               for i in range(0, len(xt), batch_size)]
    finally:
        module.train(was_training)
    if not out:
        return np.zeros(0, dtype=np.float64)
    return torch.cat(out).double().numpy()
