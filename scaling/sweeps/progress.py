"""How long a sweep has left, from the throughput its runs measured.

Small proxies are overhead-bound: their tokens per second barely depend on their size, so an
ETA from FLOPs alone (compute left / compute rate so far) is off by orders of magnitude after
the first small run (348,634 s after the first of 8 runs that took minutes in all). Here each
finished run gives a measured point (N, tokens/s); a run still to train gets the throughput of
runs of its size, interpolated in log-log between the measured sizes, the smallest run's below
them and, above them, the largest run's FLOP rate (tokens/s falling as 1/N, as compute-bound
runs do). A run that is training and has logged its progress (``tokens_done``, its latest
``train/tokens``, and ``tokens_per_s``, its latest ``perf/tokens_per_s``, which the sweep's
launcher reads from MLflow) takes the rest of its own tokens at its own rate instead: the
demo's target, the only run of its stage and 6x the largest proxy, has no measured size
to read its speed from. Pure functions on the rows of :func:`scaling.sweeps.workers.status`;
no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["timing_fields", "throughput_points", "predicted_seconds", "eta_seconds"]


def timing_fields(trial: Any, size: dict[str, float] | None) -> dict[str, float | None]:
    """What a status row needs for the ETA: N and D of the run, its measured wall time when it
    finished here (a reused run measured nothing), and how long it has been running.

    Parameters
    ----------
    trial : optuna.trial.FrozenTrial
        The run's latest attempt.
    size : dict or None
        :func:`scaling.sweeps.planning.run_size` of its RunSpec (None for a tune trial that
        has not sampled its RunSpec yet).
    """
    import datetime as _dt

    start, end = trial.datetime_start, trial.datetime_complete
    state = trial.state.name
    measured = state == "COMPLETE" and start and end and not trial.user_attrs.get("reused")
    running = state == "RUNNING" and start
    now = _dt.datetime.now(start.tzinfo) if start else None
    return {
        "params": size["params"] if size else None,
        "tokens": size["tokens"] if size else None,
        "run_tokens": size.get("run_tokens", size["tokens"]) if size else None,
        "wall_s": (end - start).total_seconds() if measured else None,
        "running_s": (now - start).total_seconds() if running else None,
    }


def throughput_points(rows: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """(N, tokens per second) of every run that finished with a measured wall time, by N."""
    points = [
        (float(row["params"]), float(row["tokens"]) / float(row["wall_s"]))
        for row in rows
        if row.get("wall_s") and row.get("tokens") and row.get("params")
    ]
    return sorted(points)


def predicted_seconds(params: float, tokens: float, points: Sequence[tuple[float, float]]) -> float | None:
    """Seconds to train ``tokens`` tokens on a model of ``params`` parameters, or None
    without any measured point.

    Examples
    --------
    >>> points = [(1e4, 2000.0), (1e6, 1000.0)]
    >>> round(predicted_seconds(1e5, 1e6, points), 1)  # between the two: log-log interpolation
    707.1
    >>> predicted_seconds(1e7, 1e6, points)  # above: the largest run's FLOP rate
    10000.0
    """
    if not points:
        return None
    (low_n, low_rate), (high_n, high_rate) = points[0], points[-1]
    if params <= low_n:
        rate = low_rate
    elif params >= high_n:
        rate = high_rate * high_n / params
    else:
        upper = next(i for i, (n, _) in enumerate(points) if n >= params)
        (n0, r0), (n1, r1) = points[upper - 1], points[upper]
        share = (math.log(params) - math.log(n0)) / (math.log(n1) - math.log(n0)) if n1 > n0 else 0.0
        rate = math.exp(math.log(r0) + share * (math.log(r1) - math.log(r0)))
    return tokens / rate


def eta_seconds(rows: Sequence[dict[str, Any]]) -> float | None:
    """Seconds until every WAITING and RUNNING run is done, or None while a run's time cannot
    be estimated (nothing measured yet).

    A running run that logged its progress takes its tokens left at its own logged rate;
    otherwise each run takes :func:`predicted_seconds` (a running one the rest of it). The sum
    is shared among the runs training now (at least one), which is how many workers there
    are. A run whose size is not known yet (an unsampled tune trial) takes the mean measured
    time.

    Examples
    --------
    >>> eta_seconds([{"state": "RUNNING", "params": 1e5, "tokens": 1e6, "run_tokens": 1e6,
    ...               "tokens_done": 4e5, "tokens_per_s": 1e3}])  # 6e5 tokens left at 1e3/s
    600.0
    """
    points = throughput_points(rows)
    measured = [row["wall_s"] for row in rows if row.get("wall_s")]
    typical = sum(measured) / len(measured) if measured else None
    left, running = 0.0, 0
    for row in rows:
        if row["state"] not in ("WAITING", "RUNNING"):
            continue
        seconds = _seconds_left_by_its_rate(row) if row["state"] == "RUNNING" else None
        if seconds is None:
            seconds = typical
            if row.get("params") and row.get("tokens") and points:
                seconds = predicted_seconds(float(row["params"]), float(row["tokens"]), points)
            if seconds is None:
                return None
            if row["state"] == "RUNNING":
                seconds = max(0.0, seconds - (row.get("running_s") or 0.0))
        running += row["state"] == "RUNNING"
        left += seconds
    return left / max(1, running)


def _seconds_left_by_its_rate(row: dict[str, Any]) -> float | None:
    """A running run's tokens left over its own logged tokens/s, or None before it logged."""
    total, done, rate = row.get("run_tokens"), row.get("tokens_done"), row.get("tokens_per_s")
    if not (total and done is not None and rate and rate > 0):
        return None
    return max(0.0, float(total) - float(done)) / float(rate)
