"""Experiment tracking with MLflow, and models addressed by path or MLflow URI.

* :class:`Tracker` — one MLflow run per training (params, per-epoch metrics, the model directory and
  the report as artifacts), and a parent run with nested child runs for a grid search. Everything
  is logged from the driver through :class:`mlflow.MlflowClient` with explicit run ids (safe from
  the grid search's driver threads); executors never talk to the tracking server.
* :func:`tracking_uri` — ``MLFLOW_TRACKING_URI`` when set, else ``tracking.uri``, else a local file
  store under ``<paths.work_dir>/mlruns`` (the embedded default).
* :func:`resolve_model` — a model directory from a local path, or from a ``runs:/``, ``models:/``
  or any other MLflow artifact URI (downloaded to a local directory). The scoring job calls it.

mlflow is imported inside the functions, so importing this module costs nothing.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

ENV_URI = "MLFLOW_TRACKING_URI"
#: Where a training run's model directory goes among the run's artifacts.
MODEL_ARTIFACT_PATH = "model"
REPORT_ARTIFACT_PATH = "report"
#: What :func:`resolve_model` accepts besides a local path.
URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/", "file:", "s3://", "gs://", "wasbs://",
               "hdfs://", "dbfs:/", "http://", "https://")


def _quiet_mlflow() -> None:
    """mlflow-skinny < 2.13 imports pkg_resources, whose import warns; nothing for us to act on."""
    import warnings

    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


def tracking_uri(cfg: Mapping) -> str:
    """The tracking URI: ``$MLFLOW_TRACKING_URI``, else ``tracking.uri``, else ``<work_dir>/mlruns``."""
    env = os.environ.get(ENV_URI)
    if env:
        return env
    if cfg["tracking"]["uri"]:
        return cfg["tracking"]["uri"]
    return Path(cfg["paths"]["work_dir"], "mlruns").resolve().as_uri()


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping → ``{"train.batch_size": "32", ...}`` (MLflow params are strings, <= 6000 chars)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, name + "."))
        else:
            out[name] = str(value)[:6000]
    return out


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numeric, finite values only (MLflow rejects NaN from some stores; counts become floats)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


class Tracker:
    """Logs runs to one MLflow experiment. ``Tracker(None)`` (tracking disabled) logs nothing and
    returns ``None`` run ids, so callers need no branch."""

    def __init__(self, uri: str | None, experiment: str = "hdfsad"):
        self.uri, self.experiment = uri, experiment
        self._client: Any = None
        self._experiment_id: str | None = None

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Tracker":
        if not cfg["tracking"]["enabled"]:
            return cls(None)
        return cls(tracking_uri(cfg), cfg["tracking"]["experiment"])

    @property
    def enabled(self) -> bool:
        return self.uri is not None

    def _setup(self) -> Any:
        if self._client is None:
            _quiet_mlflow()
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
            self._client = client
        return self._client

    def start_run(self, name: str, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, str] | None = None, parent: str | None = None) -> str | None:
        """A new run (nested under ``parent`` when given); returns its id."""
        if not self.enabled:
            return None
        client = self._setup()
        all_tags = {"mlflow.runName": name, **(tags or {})}
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        run = client.create_run(self._experiment_id, run_name=name, tags=all_tags)
        run_id = run.info.run_id
        if params:
            self.log_params(run_id, params)
        return run_id

    def log_params(self, run_id: str | None, params: Mapping[str, Any]) -> None:
        if run_id is None:
            return
        from mlflow.entities import Param

        flat = [Param(k, v) for k, v in sorted(_flat(params).items())]
        for i in range(0, len(flat), 100):
            self._setup().log_batch(run_id, params=flat[i:i + 100])

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, Any], step: int = 0) -> None:
        if run_id is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = [Metric(k, v, now, step) for k, v in sorted(_finite(metrics).items())]
        if values:
            self._setup().log_batch(run_id, metrics=values)

    def log_history(self, run_id: str | None, history: Iterable[Mapping[str, float]]) -> None:
        """Per-epoch rows (``epoch``, ``loss``, ``val_*``, ``samples_per_s``…), step = epoch."""
        for i, row in enumerate(history):
            step = int(row.get("epoch", i + 1))
            self.log_metrics(run_id, {k: v for k, v in row.items() if k != "epoch"}, step=step)

    def log_artifacts(self, run_id: str | None, directory: str | os.PathLike,
                      artifact_path: str | None = None) -> None:
        if run_id is not None and Path(directory).is_dir():
            self._setup().log_artifacts(run_id, str(directory), artifact_path)

    def log_artifact(self, run_id: str | None, path: str | os.PathLike,
                     artifact_path: str | None = None) -> None:
        if run_id is not None and Path(path).is_file():
            self._setup().log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        if run_id is not None:
            self._setup().set_terminated(run_id, status)

    def run_url(self, run_id: str | None) -> str:
        return f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}" if run_id else "(tracking disabled)"


REPORT_FILES = ("report.md", "report.html", "history.png", "confusion.png", "pr_curve.png")


def log_training(tracker: Tracker, name: str, params: Mapping[str, Any], result: Any, out_dir: str | os.PathLike,
                 *, tags: Mapping[str, str] | None = None, parent: str | None = None) -> str | None:
    """One finished training as one run: params, per-epoch history, test metrics, model and report.

    ``result`` is a :class:`hdfsad.experiment.RunResult` (or anything with ``history``, ``metrics``,
    ``threshold``, ``train_seconds``).
    """
    run_id = tracker.start_run(name, params, tags, parent)
    if run_id is None:
        return None
    try:
        tracker.log_history(run_id, result.history)
        tracker.log_metrics(run_id, {**{f"test_{k}": v for k, v in result.metrics.items()},
                                     "threshold": result.threshold, "validation_f1": result.validation_f1,
                                     "train_seconds": result.train_seconds,
                                     "epochs_done": result.epochs_done}, step=result.epochs_done)
        out = Path(out_dir)
        tracker.log_artifacts(run_id, out / "model", MODEL_ARTIFACT_PATH)
        for name_ in REPORT_FILES:
            tracker.log_artifact(run_id, out / name_, REPORT_ARTIFACT_PATH)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id)
    return run_id


def is_uri(text: str) -> bool:
    return str(text).startswith(URI_SCHEMES)


def resolve_model(uri_or_path: str | os.PathLike, dst: str | os.PathLike | None = None,
                  tracking: str | None = None) -> str:
    """A local model directory (holding ``model.json``) for a path or an MLflow URI.

    Accepts a model directory (returned as it is), ``runs:/<run_id>/model``, ``runs:/<run_id>`` (the
    ``model`` artifact of that run), ``models:/<name>/<version>`` and other MLflow artifact URIs; a URI
    is downloaded into ``dst`` (default: a new temporary directory) from ``tracking`` (default:
    ``$MLFLOW_TRACKING_URI``, else MLflow's own default). Raises :class:`FileNotFoundError` /
    :class:`ValueError` saying what was looked for.
    """
    from hdfsad.artifacts import META_FILE

    text = os.fspath(uri_or_path)
    if not is_uri(text) or text.startswith("file:"):
        local = Path(text[len("file://"):] if text.startswith("file://") else
                     text[len("file:"):] if text.startswith("file:") else text)
        if not local.exists():
            raise FileNotFoundError(f"model {text}: no such directory; give the model directory written "
                                    f"by `hdfsad train` (<out>/model) or an MLflow URI such as "
                                    f"runs:/<run_id>/model or models:/<name>/<version>")
        return str(_model_dir(local, text, META_FILE))
    _quiet_mlflow()
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    if text.startswith("runs:/") and len(text.rstrip("/").split("/")) == 2:
        text = text.rstrip("/") + "/" + MODEL_ARTIFACT_PATH
    if dst is None:
        import tempfile

        dst = tempfile.mkdtemp(prefix="hdfsad-model-")
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=_artifact_uri(text, tracking), dst_path=str(dst))
    except (MlflowException, OSError) as exc:
        raise ValueError(f"model {uri_or_path}: MLflow could not fetch it ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else exc}); check the run id / model "
                         f"name and version and MLFLOW_TRACKING_URI "
                         f"(now {tracking or os.environ.get(ENV_URI) or 'unset'})") from exc
    return str(_model_dir(Path(local), os.fspath(uri_or_path), META_FILE))


def _artifact_uri(uri: str, tracking: str | None) -> str:
    """``runs:/`` and ``models:/`` URIs → the artifact store URI behind them, looked up with a client
    bound to ``tracking`` (MLflow's own resolution reads only the process-wide tracking URI)."""
    from mlflow import MlflowClient

    tracking = tracking or os.environ.get(ENV_URI)
    if not uri.startswith(("runs:/", "models:/")) or not tracking:
        return uri
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    if uri.startswith("models:/"):
        name, _, ref = uri[len("models:/"):].strip("/").partition("/")
        if ref.isdigit():
            version = ref
        elif ref.startswith("@"):
            version = client.get_model_version_by_alias(name, ref[1:]).version
        else:
            found = client.get_latest_versions(name, None if ref.lower() in ("", "latest") else [ref])
            if not found:
                raise ValueError(f"model {uri}: registered model {name!r} has no version in {ref or 'latest'!r}")
            version = max(found, key=lambda v: int(v.version)).version
        return _artifact_uri(client.get_model_version_download_uri(name, version), tracking)
    run_id, _, path = uri[len("runs:/"):].partition("/")
    return client.get_run(run_id).info.artifact_uri.rstrip("/") + (f"/{path.strip('/')}" if path.strip("/") else "")


def _model_dir(local: Path, given: str, meta_file: str) -> Path:
    if (local / meta_file).is_file():
        return local
    if (local / MODEL_ARTIFACT_PATH / meta_file).is_file():
        return local / MODEL_ARTIFACT_PATH
    raise ValueError(f"model {given}: {local} holds no {meta_file} (nor {MODEL_ARTIFACT_PATH}/{meta_file}); "
                     f"point to the model directory of a training run (<out>/model, or the run's "
                     f"'{MODEL_ARTIFACT_PATH}' artifact)")
