"""A trained model on disk: a directory with the weights and a ``model.json`` that describes them.

Layout::

    <dir>/weights.pt   torch.save(state_dict) — tensors only, read back with weights_only=True
    <dir>/model.json   artifact format, hdfsad version, EVENT_ENCODING_VERSION, model config,
                       max_len, decision threshold, metrics, training config, weights checksum

No pickled Python object is ever written or read. :func:`load_model` checks the artifact format, the
event encoding, the weights' checksum and every tensor's shape, and says what does not match and
what to do about it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hdfsad import __version__
from hdfsad.models import ModelConfig, SequenceClassifier, predict_proba_encoded, unwrap
from hdfsad.preprocessing import encode
from hdfsad.templates import EVENT_ENCODING_VERSION, NUM_EVENT_IDS

ARTIFACT_FORMAT = 1
WEIGHTS_FILE = "weights.pt"
META_FILE = "model.json"


class ArtifactError(ValueError):
    """A model directory that cannot be used; the message says why and what to do."""


@dataclass
class ModelArtifact:
    """A loaded model with what scoring needs to apply it the way it was trained."""

    model: SequenceClassifier
    config: ModelConfig
    threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_len(self) -> int:
        return self.config.max_len


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python, so model.json is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_model(directory: str | os.PathLike, model: nn.Module, *, threshold: float = 0.5,
               metrics: dict[str, Any] | None = None, train_config: Any = None,
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a :class:`SequenceClassifier`, maybe wrapped) to ``directory``; returns it.

    ``train_config`` may be a :class:`~hdfsad.training.TrainConfig` or a mapping; ``extra`` adds keys
    to ``model.json`` (variant name, data description, …).
    """
    module = unwrap(model)
    if not isinstance(module, SequenceClassifier):
        raise TypeError(f"save_model: expected a SequenceClassifier, got {type(module).__name__}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    tmp = out / (WEIGHTS_FILE + ".tmp")
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, tmp)
    os.replace(tmp, weights)
    meta = {
        "artifact_format": ARTIFACT_FORMAT,
        "hdfsad_version": __version__,
        "event_encoding_version": EVENT_ENCODING_VERSION,
        "num_event_ids": NUM_EVENT_IDS,
        "max_len": module.config.max_len,
        "threshold": float(threshold),
        "model_config": module.config.to_dict(),
        "train_config": train_config.to_dict() if hasattr(train_config, "to_dict") else train_config,
        "metrics": metrics or {},
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": _sha256(weights),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    (out / META_FILE).write_text(json.dumps(_jsonable(meta), indent=2, sort_keys=True) + "\n", "utf-8")
    return out


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / META_FILE
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a model directory: {META_FILE} is missing. Point to "
                            f"the directory written by training (it holds {META_FILE} and {WEIGHTS_FILE})")
    try:
        return json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); copy the model directory again "
                            f"or retrain") from exc


def _check_versions(directory: Path, meta: dict[str, Any]) -> None:
    fmt = meta.get("artifact_format")
    if fmt != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{directory}: artifact format {fmt!r} (written by hdfsad {meta.get('hdfsad_version')}), but "
            f"this hdfsad {__version__} reads format {ARTIFACT_FORMAT}; load it with the hdfsad "
            f"version that wrote it, or retrain with this one")
    enc = meta.get("event_encoding_version")
    if enc != EVENT_ENCODING_VERSION:
        raise ArtifactError(
            f"{directory}: the model was trained on event encoding version {enc!r}, but this hdfsad "
            f"{__version__} encodes events with version {EVENT_ENCODING_VERSION}, so its event ids "
            f"would mean other templates; retrain the model on sequences built by this version")


def _check_shapes(directory: Path, state: dict[str, torch.Tensor], model: nn.Module) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"{k} has shape {list(found[k])} in {WEIGHTS_FILE} but the model needs {list(expected[k])}"
                for k in sorted(expected.keys() & found.keys()) if expected[k] != found[k]]
    problems += [f"{k} is missing from {WEIGHTS_FILE}" for k in sorted(expected.keys() - found.keys())]
    problems += [f"{k} in {WEIGHTS_FILE} is not part of the model" for k in sorted(found.keys() - expected.keys())]
    if problems:
        raise ArtifactError(
            f"{directory}: the weights do not fit the model_config in {META_FILE}: "
            f"{'; '.join(problems)}. The two files come from different models: copy the directory "
            f"again as a whole, or retrain")


def load_model(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> ModelArtifact:
    """Read a model directory written by :func:`save_model` (the model is returned in eval mode)."""
    directory = Path(directory)
    meta = _read_meta(directory)
    _check_versions(directory, meta)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{directory}: bad model_config in {META_FILE}: {exc}; retrain or fix "
                            f"the file") from exc
    weights = directory / meta.get("weights_file", WEIGHTS_FILE)
    if not weights.is_file():
        raise ArtifactError(f"{directory}: {weights.name} is missing; copy the model directory again "
                            f"as a whole")
    recorded = meta.get("weights_sha256")
    if recorded is not None and _sha256(weights) != recorded:
        raise ArtifactError(f"{directory}: {weights.name} does not match the checksum recorded in "
                            f"{META_FILE}; the file is damaged or was replaced: copy the model "
                            f"directory again as a whole, or retrain")
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ArtifactError(f"{directory}: cannot read {weights.name} ({type(exc).__name__}: {exc}); "
                            f"the file is damaged or not written by hdfsad: copy the model directory "
                            f"again, or retrain") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{directory}: {weights.name} does not hold a state dict of tensors; "
                            f"it was not written by hdfsad.artifacts.save_model: retrain")
    model = SequenceClassifier(config)
    _check_shapes(directory, state, model)
    model.load_state_dict(state)
    model.to(map_location).eval()
    return ModelArtifact(model, config, float(meta.get("threshold", 0.5)), meta.get("metrics") or {}, meta)


def predict_proba(model: nn.Module | ModelArtifact, sequences: Any, *, max_len: int | None = None,
                  batch_size: int = 8192) -> np.ndarray:
    """P(anomaly) per raw event-id sequence (list of sequences or a pyarrow list array) → (n,) float64.

    Encodes with the artifact's (or the model config's) ``max_len`` unless ``max_len`` is given.
    """
    if isinstance(model, ModelArtifact):
        module, window = model.model, model.max_len
    else:
        module = unwrap(model)
        window = getattr(getattr(module, "config", None), "max_len", None)
    window = max_len or window
    if window is None:
        raise ValueError("predict_proba: pass max_len (the model carries no config with max_len)")
    return predict_proba_encoded(module, encode(sequences, window), batch_size=batch_size)


def predict(artifact: ModelArtifact, sequences: Any, batch_size: int = 8192) -> np.ndarray:
    """0/1 predictions at the artifact's threshold (``P(anomaly) >= threshold`` is 1)."""
    return (predict_proba(artifact, sequences, batch_size=batch_size) >= artifact.threshold).astype(np.int64)
