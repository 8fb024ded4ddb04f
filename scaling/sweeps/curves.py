"""The logged learning curves of a sweep as the rows a curve law is fitted to, and the rows of a
planned run it predicts (:mod:`scaling.training.curves`).

Each finished run contributes its ``eval/loss`` evaluations with the forward and annealing
areas of its learning-rate schedule at each of them, recomputed exactly from its logged train
settings (:func:`scaling.training.loop.lr_schedule`), not integrated from the sampled
``train/lr`` metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from scaling.config.run import TrainConfig
from scaling.errors import TrackingError
from scaling.training.curves import annealing_areas, curve_points, run_momentum
from scaling.sweeps import tracking
from scaling.sweeps.planning import run_size

if TYPE_CHECKING:
    from scaling.config.run import RunSpec

__all__ = ["CURVE_LAWS", "curve_table", "planned_curve", "train_settings"]

#: The laws fitted to learning curves rather than to one final loss per run (scaling/laws/forms.py).
CURVE_LAWS = ("tissue", "tissue_n")

# The train settings a schedule depends on, with the defaults of runs logged before they existed.
_SCHEDULE_FIELDS = {"tokens": None, "batch_tokens": None, "warmup": "0.05", "min_lr_ratio": "0.1",
                    "schedule": "cosine", "decay_fraction": "0.2", "decay_shape": "1-sqrt"}


def train_settings(params: dict[str, str], run_id: str = "?") -> TrainConfig:
    """The schedule-shaping part of a run's ``train`` section, from its MLflow params.

    Raises
    ------
    TrackingError
        If the run did not log its budget or batch, or logged a value that is not a valid
        setting (not a run of this package).
    """
    values: dict[str, Any] = {}
    for name, default in _SCHEDULE_FIELDS.items():
        value = params.get(f"train.{name}", default)
        if value is None:
            raise TrackingError(
                f"run {run_id} has no param train.{name}; a curve law needs the run's schedule, "
                "so use runs trained by this package (or a CSV with s1 and s2 columns)"
            )
        values[name] = value
    warmup_steps = params.get("train.warmup_steps")
    if warmup_steps not in (None, "None"):  # a WSD ladder's shared warmup, in steps
        values["warmup_steps"] = warmup_steps
    try:
        return TrainConfig.model_validate(values)
    except ValueError as error:  # pydantic's ValidationError: params edited by hand, or not ours
        problem = error.errors()[0] if hasattr(error, "errors") else {"loc": ("?",), "msg": str(error)}
        raise TrackingError(
            f"run {run_id}: param train.{problem['loc'][0]} = "
            f"{values.get(problem['loc'][0])!r} is not a valid train setting ({problem['msg']}); "
            "a curve law needs the run's schedule as this package logs it"
        ) from None


def curve_table(
    experiment: str, *, tracking_uri: str = tracking.DEFAULT_TRACKING_URI,
    min_fraction: float = 0.1, momentum: float | None = None,
) -> pd.DataFrame:  # fmt: skip
    """One row per evaluation of every finished run of ``experiment`` past ``min_fraction``
    of its steps: the run table's labels and size (``run_id``, ``name``, ``role``, ``status``,
    ``params``, ``batch_tokens``, ``lr``), then ``step``, ``tokens``, ``s1``, ``s2``, ``loss``.

    Raises
    ------
    TrackingError
        If the experiment is missing or has no finished run with an eval curve.
    """
    from scaling.training.loop import lr_schedule

    runs = tracking.runs_frame(experiment, tracking_uri=tracking_uri)
    frames = []
    for row in runs.itertuples(index=False):
        params = tracking.run_params(row.run_id, tracking_uri=tracking_uri)
        schedule = lr_schedule(train_settings(params, row.run_id))
        curve = tracking.learning_curve(row.run_id, tracking_uri=tracking_uri)
        labels = {"run_id": row.run_id, "name": row.name, "role": row.role, "status": row.status,
                  "params": float(row.params), "batch_tokens": float(row.batch_tokens),
                  "lr": float(row.lr)}
        frames.append(curve_points(labels, curve["step"], curve["value"], schedule,
                                   min_fraction=min_fraction, momentum=momentum))
    if not frames or all(frame.empty for frame in frames):
        raise TrackingError(
            f"experiment {experiment!r} has no finished run with eval/loss evaluations past "
            f"{min_fraction:.0%} of its steps; train the sweep first"
        )
    return pd.concat(frames, ignore_index=True)


def planned_curve(spec: RunSpec, momentum: float | None = None) -> pd.DataFrame:
    """The rows of a planned run at every optimizer step (``step``, ``tokens``, ``params``,
    ``s1``, ``s2``): what a curve law predicts the whole curve of, for any schedule. The
    annealing momentum is the curve laws' default memory of the run unless ``momentum`` is
    given (:func:`scaling.training.curves.curve_points`)."""
    from scaling.training.loop import lr_schedule

    schedule = lr_schedule(spec.train)
    if momentum is None:
        momentum = run_momentum(len(schedule))
    s1, s2 = annealing_areas(schedule, spec.train.batch_tokens, momentum)
    steps = range(1, len(schedule) + 1)
    return pd.DataFrame({
        "step": list(steps), "tokens": [step * spec.train.batch_tokens for step in steps],
        "params": float(run_size(spec)["params"]), "s1": s1[1:], "s2": s2[1:],
    })  # fmt: skip
