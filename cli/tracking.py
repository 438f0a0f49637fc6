"""``train-sequence --log-to tensorboard|mlflow``: send every epoch record to an experiment tracker too.

The JSONL logs (``RUN_DIR/logs/NN-TASK.jsonl``) stay the record of truth; a tracker receives the same
records (:func:`querylearn.continual.run.train_sequence`'s ``tracker``) and logs their numbers:
``NN-TASK/train_loss``, ``NN-TASK/valid/mrr@5`` (``/valid/TASK/...`` when several tasks train together),
``NN-TASK/selection``, at the record's cumulative ``step``. Both packages are optional extras
(``pip install 'querylearn[tensorboard]'`` or ``'querylearn[mlflow]'``). TensorBoard writes
``RUN_DIR/tensorboard``; MLflow logs to ``MLFLOW_TRACKING_URI`` when set (a server or database),
otherwise to its local file store ``RUN_DIR/mlruns``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from querylearn.errors import ConfigError, QuerylearnError


class LogTo(StrEnum):
    tensorboard = "tensorboard"
    mlflow = "mlflow"


def scalars(record: dict, prefix: str) -> dict[str, float]:
    """The numbers of one JSONL record as ``prefix/name`` -> value (nested dicts joined with '/';
    bookkeeping fields and non-numbers left out)."""
    out: dict[str, float] = {}

    def walk(obj, key: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{key}/{k}")
        elif isinstance(obj, bool):
            return
        elif isinstance(obj, int | float):
            out[key] = float(obj)

    for k, v in record.items():
        if k not in ("timestamp", "step", "epoch", "phase", "task"):
            walk(v, f"{prefix}/{k}")
    return out


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"--log-to {extra}: the package is not installed; pip install 'querylearn[{extra}]'"
        )


def make_tracker(kind: LogTo | str, run_dir: Path) -> tuple[Callable[[str, dict], None], Callable[[], None]]:
    """(tracker(log_name, record), close()) writing to ``RUN_DIR/tensorboard`` or an MLflow run
    (``MLFLOW_TRACKING_URI``, default ``RUN_DIR/mlruns``)."""
    kind = LogTo(kind)
    _require("tensorboard" if kind is LogTo.tensorboard else "mlflow", kind.value)
    state: dict = {}  # the writer / MLflow run, opened on the first record (after the run checks)
    if kind is LogTo.tensorboard:

        def track(name: str, record: dict) -> None:
            if "writer" not in state:
                from torch.utils.tensorboard import SummaryWriter

                state["writer"] = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            for key, value in scalars(record, name).items():
                state["writer"].add_scalar(key, value, global_step=int(record.get("step", 0)))

        def close() -> None:
            if "writer" in state:
                state.pop("writer").close()

        return track, close

    def track(name: str, record: dict) -> None:  # noqa: F811  (the MLflow variant)
        import mlflow

        try:
            if "run" not in state:
                import os

                if not os.environ.get("MLFLOW_TRACKING_URI"):
                    # no server or database given: MLflow's local file store in RUN_DIR/mlruns, which
                    # MLflow 3 only opens when asked explicitly
                    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                    mlflow.set_tracking_uri((Path(run_dir).resolve() / "mlruns").as_uri())
                state["run"] = mlflow.start_run(run_name=Path(run_dir).name)
            # MLflow metric names allow letters, digits, _-./ and space: '@' becomes '_at_'
            metrics = {k.replace("@", "_at_"): v for k, v in scalars(record, name).items()}
            mlflow.log_metrics(metrics, step=int(record.get("step", 0)))
        except mlflow.exceptions.MlflowException as exc:
            raise QuerylearnError(f"--log-to mlflow: {str(exc).splitlines()[0][:300]}") from None

    def close() -> None:  # noqa: F811
        if "run" in state:
            import mlflow

            state.pop("run")
            mlflow.end_run()

    return track, close
