"""The study's nine LSTM variants as data: ``conf/variants/<name>.yaml`` → :class:`Variant`.

A variant file has exactly these top-level keys: ``name`` (equal to the file name without
``.yaml``), ``description``, ``model`` (keys of :class:`~hdfsad.models.ModelConfig`) and ``train``
(keys of :class:`~hdfsad.training.TrainConfig`). Keys left out take the defaults documented on those
two dataclasses; an unknown key is an error naming it and the allowed keys.

The directory is ``$HDFSAD_VARIANTS_DIR`` when set, else ``conf/variants`` of the source checkout.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hdfsad.models import ModelConfig
from hdfsad.training import TrainConfig

#: The top-level keys of a variant file.
VARIANT_KEYS = ("name", "description", "model", "train")
ENV_DIR = "HDFSAD_VARIANTS_DIR"


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    model: ModelConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "model": self.model.to_dict(), "train": self.train.to_dict()}


def variants_dir() -> Path:
    """Where variant files are looked up by name."""
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "conf" / "variants"


def variant_names(directory: str | Path | None = None) -> list[str]:
    """Names of the variant files in ``directory`` (default :func:`variants_dir`), sorted."""
    return sorted(p.stem for p in Path(directory or variants_dir()).glob("*.yaml"))


def variant_from_dict(data: Any, source: str = "<dict>",
                      overrides: dict[str, dict[str, Any]] | None = None) -> Variant:
    """Validate a parsed variant mapping; ``overrides`` (``{"train": {"epochs": 1}}``) win over it."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a variant must be a mapping with keys {list(VARIANT_KEYS)}")
    unknown = sorted(set(data) - set(VARIANT_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; allowed keys: {list(VARIANT_KEYS)}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ValueError(f"{source}: 'name' is required (a non-empty string)")
    bad = sorted(set(overrides or {}) - {"model", "train"})
    if bad:
        raise ValueError(f"overrides: unknown section(s) {bad}; allowed: ['model', 'train']")
    sections = {}
    for key in ("model", "train"):
        section = data.get(key) or {}
        if not isinstance(section, dict):
            raise ValueError(f"{source}: '{key}' must be a mapping, got {type(section).__name__}")
        sections[key] = {**section, **((overrides or {}).get(key) or {})}
    try:
        model = ModelConfig.from_dict(sections["model"])
        train = TrainConfig.from_dict(sections["train"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from exc
    return Variant(data["name"], str(data.get("description", "")), model, train)


def load_variant(name_or_path: str | Path, directory: str | Path | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None) -> Variant:
    """Load a variant by name (``v7_da``) from ``directory``, or from a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(directory or variants_dir()) / f"{name_or_path}.yaml"
    if not path.is_file():
        known = variant_names(path.parent) if path.parent.is_dir() else []
        raise ValueError(f"variant {str(name_or_path)!r} not found ({path} does not exist); "
                         f"known variants: {known}")
    data = yaml.safe_load(path.read_text("utf-8"))
    variant = variant_from_dict(data, str(path), overrides)
    if variant.name != path.stem:
        raise ValueError(f"{path}: name {variant.name!r} differs from the file name {path.stem!r}; "
                         f"make them equal")
    return variant
