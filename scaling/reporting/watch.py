"""Is the large run on track? Its final loss re-forecast at every evaluation, against the band.

At each new evaluation, :func:`watch_points` projects the run's final loss from its curve so
far (:func:`scaling.laws.partial_curve.project_final`: ``E + A t^-alpha`` fitted beyond the
first 10% of the planned tokens, or the learning-rate annealing law when the run's schedule is
known, blended with the registered forecast by the observed fraction) and checks it against the
registered forecast's interval. :func:`watch_schedule` says which schedule is known. The logic
only: reading the curve and printing live in ``scaling watch``
(:mod:`scaling.cli.forecast_commands`); the report's large-run section
(:mod:`scaling.reporting.report`) replays it over a run's evaluations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["WatchPoint", "watch_points", "watch_schedule"]


@dataclass(frozen=True)
class WatchPoint:
    """One evaluation of the large run and where it projects the run to land.

    Attributes
    ----------
    step, tokens, loss : float
        The evaluation.
    fraction : float
        ``tokens`` over the run's planned tokens.
    projected : float
        Projected final loss.
    lo, hi : float
        The registered forecast's interval.
    """

    step: float
    tokens: float
    loss: float
    fraction: float
    projected: float
    lo: float
    hi: float

    @property
    def on_track(self) -> bool:
        """Whether the projected final loss lies inside the registered band (True while
        there is no projection yet)."""
        return bool(self.projected != self.projected or self.lo <= self.projected <= self.hi)

    def line(self) -> str:
        """One plain line: the evaluation, the projection, the band and the verdict."""
        from scaling.formatting import format_count

        verdict = "on track" if self.on_track else "OFF TRACK"
        projected = "-" if self.projected != self.projected else f"{self.projected:.4f}"
        return (
            f"step {self.step:.0f}, {format_count(self.tokens)} tokens ({self.fraction:.0%}): "
            f"eval loss {self.loss:.4f}, projected final {projected}, band "
            f"{self.lo:.4f} to {self.hi:.4f}: {verdict}"
        )


def watch_points(
    curve: pd.DataFrame, forecast: Mapping[str, Any], total_tokens: float, *, start: int = 0,
    prior: bool = True, skip: float | None = None, schedule: Any = None,
) -> list[WatchPoint]:  # fmt: skip
    """A :class:`WatchPoint` for each evaluation of ``curve`` from index ``start`` on.

    Parameters
    ----------
    curve : DataFrame
        ``step``, ``tokens``, ``value``, sorted by tokens.
    forecast : mapping
        The registered forecast (``predicted``, ``lo``, ``hi``).
    total_tokens : float
        The run's planned tokens.
    start : int
        Evaluations before it were seen already.
    prior : bool, default True
        Blend with the forecast (see :func:`scaling.laws.partial_curve.project_final`).
    skip : float, optional
        Evaluations before this fraction of the tokens are left out of the curve fit
        (:data:`scaling.laws.partial_curve.SKIP`, 10%, by default).
    schedule : scaling.laws.partial_curve.Schedule, optional
        The run's learning rate over its planned tokens (:func:`watch_schedule`): the curve is
        fitted with the annealing law, else with the power law in tokens.

    Returns
    -------
    list of WatchPoint
    """
    from scaling.laws.partial_curve import SKIP, project_final

    skip = SKIP if skip is None else skip
    points = curve.dropna(subset=["tokens", "value"]).sort_values("tokens").reset_index(drop=True)
    tokens, values = points["tokens"].to_numpy(float), points["value"].to_numpy(float)
    prediction = float(forecast["predicted"]) if prior else None
    out = []
    for i in range(start, len(points)):
        projected = project_final(tokens[: i + 1], values[: i + 1], total_tokens,
                                  prior=prediction, skip=skip, schedule=schedule)
        out.append(WatchPoint(
            step=float(points["step"].iloc[i]), tokens=float(tokens[i]), loss=float(values[i]),
            fraction=float(tokens[i]) / total_tokens, projected=projected,
            lo=float(forecast["lo"]), hi=float(forecast["hi"]),
        ))  # fmt: skip
    return out


def watch_schedule(forecast: Mapping[str, Any], total_tokens: float,
                   lr: pd.DataFrame | None = None) -> tuple[Any, str]:
    """The learning-rate schedule a projection knows, and where it comes from.

    The schedule the forecast recorded (``scaling forecast --target-spec`` and the demo record
    the run's planned one), else the run's logged ``train/lr`` when it reaches the planned
    tokens (a finished run), else none: the power law in tokens is fitted then.

    Parameters
    ----------
    forecast : mapping
        The registered forecast.
    total_tokens : float
        The run's planned tokens.
    lr : DataFrame, optional
        The run's logged learning rate (``step``, ``tokens``, ``value``).

    Returns
    -------
    (Schedule or None, str)
        The areas (:func:`scaling.laws.partial_curve.schedule_areas`) and a phrase naming
        their source: ``"the schedule recorded with the forecast"``, ``"the run's logged
        train/lr"`` or ``"no learning-rate schedule"``.
    """
    from scaling.laws.partial_curve import schedule_areas
    from scaling.reporting.forecast import record_schedule

    recorded = record_schedule(dict(forecast), total_tokens)
    if recorded is not None:
        return recorded, "the schedule recorded with the forecast"
    if lr is not None and len(lr):
        points = lr.dropna(subset=["tokens", "value"])
        try:
            return schedule_areas(points["tokens"], points["value"], total_tokens), "the run's logged train/lr"
        except ValueError:  # a running run: its log does not reach the end yet
            pass
    return None, "no learning-rate schedule"
