"""Configuration: ``conf/default.yaml`` (shipped with the package) + user files + ``--set`` overrides.

Loading validates every key against :data:`SCHEMA`; a bad key or value raises :class:`ConfigError`
with the dotted key, what was given and what is allowed.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Mapping, Sequence

import yaml


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message says which and what is allowed."""


@dataclass(frozen=True)
class Rule:
    """How one leaf value is checked: a description for messages and a predicate."""

    expect: str
    check: Callable[[Any], bool]


def _one_of(*allowed: str) -> Rule:
    return Rule("one of " + ", ".join(allowed), lambda v: v in allowed)


def _int_at_least(low: int) -> Rule:
    return Rule(f"an integer >= {low}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low)


STR = Rule("a non-empty string", lambda v: isinstance(v, str) and v != "")
BOOL = Rule("true or false", lambda v: isinstance(v, bool))
NAME = Rule("a name of letters, digits and underscores, starting with a letter",
            lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", v) is not None)
PROBABILITY_OR_NULL = Rule("null (use the model's stored threshold) or a number in [0, 1]",
                           lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   and 0.0 <= v <= 1.0))
SPARK_CONF = Rule("a mapping of Spark property names to scalar values",
                  lambda v: isinstance(v, dict) and all(
                      isinstance(k, str) and isinstance(x, (str, int, float, bool)) for k, x in v.items()))

#: The allowed keys; a leaf is a :class:`Rule`, a dict is a section.
SCHEMA: dict[str, Any] = {
    "spark": {"app_name": STR, "master": STR, "conf": SPARK_CONF},
    "paths": {"tables": STR, "work_dir": STR, "reference_data": STR},
    "ingest": {
        "max_line_chars": _int_at_least(64),
        "reject_raw_chars": _int_at_least(16),
        "keep_events": BOOL,
        "verify_compressed": BOOL,
        "max_events_per_block": _int_at_least(1),
    },
    "catalog": {
        "metastore": _one_of("embedded", "hive", "session"),
        "database": NAME,
    },
    "distributed": {
        "num_processes": _int_at_least(0),
        "use_gpu": BOOL,
        "batch_scaling": _one_of("per_process", "global"),
        "lr_scaling": _one_of("none", "linear", "sqrt"),
        "max_attempts": _int_at_least(1),
    },
    "tracking": {
        "enabled": BOOL,
        "uri": Rule("null (a local store under paths.work_dir) or a tracking URI",
                    lambda v: v is None or (isinstance(v, str) and v != "")),
        "experiment": STR,
    },
    "score": {
        "threshold": PROBABILITY_OR_NULL,
        "dedup": BOOL,
        "batch_size": _int_at_least(1),
        "lookback_days": _int_at_least(0),
        "report": BOOL,
        "report_top": _int_at_least(1),
    },
}


def _validate(node: Any, schema: Mapping[str, Any], prefix: str = "") -> None:
    if not isinstance(node, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'configuration'}: expected a mapping with keys "
                          f"{', '.join(sorted(schema))}; got {node!r}")
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(f"unknown configuration key '{dotted}'; allowed keys"
                              f"{' under ' + repr(prefix.rstrip('.')) if prefix else ''}: "
                              f"{', '.join(sorted(schema))}")
        rule = schema[key]
        if isinstance(rule, dict):
            _validate(value, rule, dotted + ".")
        elif not rule.check(value):
            raise ConfigError(f"configuration key '{dotted}': expected {rule.expect}, got {value!r}")
    missing = [k for k in schema if k not in node]
    if missing:
        raise ConfigError(f"configuration section '{prefix.rstrip('.') or '<root>'}' is missing "
                          f"key(s): {', '.join(missing)}")


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "conf":
            out[key] = _merge(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict:
    """``'ingest.keep_events=true'`` → ``{'ingest': {'keep_events': True}}`` (value read as YAML).

    Spark properties contain dots themselves: ``spark.conf.spark.sql.shuffle.partitions=4``
    sets ``spark.conf['spark.sql.shuffle.partitions']``.
    """
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if parts[:2] == ["spark", "conf"] and len(parts) > 2:
        parts = ["spark", "conf", ".".join(parts[2:])]
    if any(p == "" for p in parts) or len(parts) < 2:
        raise ConfigError(f"override '{text}': key must be dotted, like ingest.keep_events")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(parts):
        value = {part: value}
    return value


def default_config() -> dict:
    text = resources.files("hdfsad.resources").joinpath("default.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def load_config(files: Sequence[str] = (), overrides: Sequence[str] = ()) -> dict:
    """The validated configuration: defaults, then each file, then each ``key=value`` override."""
    cfg = default_config()
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"configuration file {path} must hold a mapping, got {type(data).__name__}")
        cfg = _merge(cfg, data)
    for text in overrides:
        cfg = _merge(cfg, parse_override(text))
    _validate(cfg, SCHEMA)
    return cfg


def reference_data_dir(cfg: Mapping) -> str:
    """Where the labelled reference data lives (``HDFSAD_REFERENCE_DATA`` wins over the config)."""
    return os.environ.get("HDFSAD_REFERENCE_DATA") or cfg["paths"]["reference_data"]
