"""Is the large run on track? Its final loss re-forecast at every evaluation, against the band.

At each new evaluation, :func:`watch_points` projects the run's final loss from its curve so
far (:func:`scaling.laws.partial_curve.project_final`: ``E + A t^-alpha`` fitted beyond the
first 10% of the planned tokens, blended with the registered forecast by the observed
fraction) and checks it against the registered forecast's interval. The logic only: reading
the curve and printing live in ``scaling watch`` (:mod:`scaling.cli.forecast_commands`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["WatchPoint", "watch_points"]


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
    prior: bool = True, skip: float = 0.1,
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
    skip : float, default 0.1
        Evaluations before this fraction of the tokens are left out of the curve fit.

    Returns
    -------
    list of WatchPoint
    """
    from scaling.laws.partial_curve import project_final

    points = curve.dropna(subset=["tokens", "value"]).sort_values("tokens").reset_index(drop=True)
    tokens, values = points["tokens"].to_numpy(float), points["value"].to_numpy(float)
    prediction = float(forecast["predicted"]) if prior else None
    out = []
    for i in range(start, len(points)):
        projected = project_final(tokens[: i + 1], values[: i + 1], total_tokens,
                                  prior=prediction, skip=skip)
        out.append(WatchPoint(
            step=float(points["step"].iloc[i]), tokens=float(tokens[i]), loss=float(values[i]),
            fraction=float(tokens[i]) / total_tokens, projected=projected,
            lo=float(forecast["lo"]), hi=float(forecast["hi"]),
        ))  # fmt: skip
    return out
