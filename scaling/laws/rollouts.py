"""Rollouts: fit a law on the runs up to a compute cut, score it on every run above.

A rollout asks what a forecast made at each point of a ladder's history would have said about
the runs that came after it: for each cut it fits the law on the runs with ``x_cut <= cut``
and scores the prediction of every run with ``x_cut > cut`` — relative errors, their sign,
and how many held-out runs fall inside the one-run band (:meth:`FitResult.predict` with
``band="run"``). :func:`leave_largest_out_cuts` picks the cuts that hold out the largest
compute levels of a table. Unlike :func:`scaling.laws.backtesting.backtest`, a cut that cannot
be fitted is reported in its row (``error``) instead of stopping the others.

Layer: laws (numpy and pandas, base and ``scaling.laws`` only); it reads no files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import FitError
from scaling.laws.fitting import fit, run_arrays, x_columns
from scaling.laws.forms import Law, get_law
from scaling.table import coerce_numeric, require_columns

__all__ = ["ROLLOUT_COLUMNS", "rollout", "held_out_scores", "leave_largest_out_cuts"]

#: Columns of :func:`rollout`'s result, in order.
ROLLOUT_COLUMNS: tuple[str, ...] = (
    "law",
    "cut",
    "n_fit",
    "n_held",
    "mean_abs_error",
    "max_abs_error",
    "bias",
    "coverage",
    "wall_s",
    "is_valid",
    "reasons",
    "params",
    "error",
)


def held_out_scores(
    observed: np.ndarray,
    predicted: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, float]:
    """Relative errors of predictions of held-out runs, and the share inside a band.

    ``relative = (predicted − observed) / observed``. Returns ``mean_abs_error`` and
    ``max_abs_error`` (of ``|relative|``), ``bias`` (mean of ``relative``: positive when the
    law predicts too high a loss) and ``coverage`` (share of runs with
    ``lower <= observed <= upper``; NaN without a band or where the band is NaN).

    >>> scores = held_out_scores(np.array([2.0, 4.0]), np.array([2.2, 3.8]),
    ...                          np.array([2.1, 3.0]), np.array([2.3, 4.5]))
    >>> {k: round(v, 3) for k, v in scores.items()}
    {'mean_abs_error': 0.075, 'max_abs_error': 0.1, 'bias': 0.025, 'coverage': 0.5}
    """
    observed = np.asarray(observed, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if observed.size == 0:
        nan = float("nan")
        return {"mean_abs_error": nan, "max_abs_error": nan, "bias": nan, "coverage": nan}
    relative = (predicted - observed) / observed
    coverage = float("nan")
    if lower is not None and upper is not None:
        lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        if np.isfinite(lower).all() and np.isfinite(upper).all():
            coverage = float(np.mean((lower <= observed) & (observed <= upper)))
    return {
        "mean_abs_error": float(np.abs(relative).mean()),
        "max_abs_error": float(np.abs(relative).max()),
        "bias": float(relative.mean()),
        "coverage": coverage,
    }


def leave_largest_out_cuts(
    frame: pd.DataFrame,
    x_cut: str = "flops",
    *,
    n_cuts: int = 3,
    min_fit: int = 5,
    tolerance: float = 1.25,
) -> list[float]:
    """Cuts that hold out the 1, 2, ... ``n_cuts`` largest compute levels of a table.

    Values of ``x_cut`` within a factor ``tolerance`` of their sorted neighbour form one level
    (digitised or slightly uneven budgets of one IsoFLOP curve count once). Holding out the top
    ``k`` levels means fitting on every run up to the largest value of level ``k + 1`` from the
    top; that value is the cut. Cuts that leave fewer than ``min_fit`` runs to fit are dropped,
    so a short table gets fewer cuts (possibly none). Returned ascending.

    >>> frame = pd.DataFrame({"flops": [1, 1, 2, 2, 4, 4, 8, 16, 16.5]})
    >>> leave_largest_out_cuts(frame, n_cuts=3, min_fit=4)
    [2.0, 4.0, 8.0]
    >>> leave_largest_out_cuts(frame, n_cuts=3, min_fit=7)
    [8.0]
    """
    if n_cuts < 1 or min_fit < 1 or tolerance < 1:
        raise FitError(f"n_cuts = {n_cuts}, min_fit = {min_fit}, tolerance = {tolerance}: need "
                       "n_cuts >= 1, min_fit >= 1 and tolerance >= 1")
    require_columns(frame, [x_cut], "rollout")
    values = coerce_numeric(frame, [x_cut], "rollout")[x_cut].to_numpy(dtype=float)
    values = np.sort(values[np.isfinite(values)])
    if values.size == 0:
        return []
    level_tops = []
    for previous, value in zip(values[:-1], values[1:]):
        if value > previous * tolerance:
            level_tops.append(float(previous))
    # level_tops holds the top of every level but the highest, ascending.
    cuts = [cut for cut in level_tops[::-1][:n_cuts] if int((values <= cut).sum()) >= min_fit]
    return sorted(cuts)


def rollout(
    frame: pd.DataFrame,
    law: str | Law,
    *,
    cuts: Sequence[float],
    x_cut: str = "flops",
    interval: float = 0.9,
    n_bootstrap: int = 200,
    seed: int = 0,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Fit ``law`` on the runs with ``x_cut <= cut`` and score every run above, per cut.

    Parameters
    ----------
    frame : DataFrame
        The run table. Runs a fit would leave out (``role == 'target'``, unfinished) are left
        out of both sides.
    law : str or Law
    cuts : sequence of float
        Compute cuts on ``x_cut``, each its own fold (sorted ascending in the result).
    x_cut : str
        Column the cuts apply to (default ``flops``; it need not be a column the law reads).
    interval : float
        Level of the one-run band (``FitResult.predict(..., band="run")``) whose coverage of
        the held-out runs is measured.
    n_bootstrap, seed
        Passed to each fit; with ``n_bootstrap=0`` coverage is NaN.
    **fit_kwargs
        Further arguments of :func:`scaling.laws.fitting.fit` (``x``, ``y``, ``delta``,
        ``screen``, ``source``, ...); fit's own ``interval`` (of the parameters) keeps its
        default, since ``interval`` here is the band's.

    Returns
    -------
    DataFrame
        One row per cut with :data:`ROLLOUT_COLUMNS`: ``n_fit`` and ``n_held`` runs, the
        held-out ``mean_abs_error``, ``max_abs_error`` and ``bias`` (mean signed relative
        error; see :func:`held_out_scores`), ``coverage`` of the band, ``wall_s`` (fit and
        prediction), the fit's ``is_valid``, ``reasons`` and ``params``. A cut that leaves
        no run above it, or too few to fit, gets its reason in ``error`` and NaN scores;
        ``error`` is None otherwise.

    Raises
    ------
    FitError
        If the law is unknown, the table lacks the law's columns or ``x_cut``, holds unusable
        values, has too few runs for the law at all, or no cut is given.

    Examples
    --------
    >>> C = np.logspace(15, 20, 11)
    >>> table = pd.DataFrame({"flops": C, "flops_exact": C, "loss": 30.0 * C**-0.1 + 1.5})
    >>> result = rollout(table, "gpt4", cuts=[1e18, 1e19], n_bootstrap=20)
    >>> result[["cut", "n_fit", "n_held"]].values.tolist()
    [[1e+18, 7.0, 4.0], [1e+19, 9.0, 2.0]]
    >>> bool((result["max_abs_error"] < 1e-6).all())
    True
    """
    law = get_law(law)
    cuts = sorted(float(c) for c in cuts)
    if not cuts:
        raise FitError("rollout: no cuts given; pass cuts=[...] (see leave_largest_out_cuts)")
    x_cols = x_columns(law, fit_kwargs.get("x"))
    y_col = fit_kwargs.get("y") or law.y
    source = fit_kwargs.pop("source", "run table")
    if x_cut not in frame.columns:
        raise FitError(f"{source}: rollout cut column {x_cut!r} is missing; give x_cut= one of "
                       f"{', '.join(map(str, frame.columns))}")
    xs, observed, used = run_arrays(law, frame, x_cols, y_col, source)
    try:
        compute = coerce_numeric(used, [x_cut], source)[x_cut].to_numpy(dtype=float)
    except Exception as error:  # DataError -> FitError, as run_arrays does
        raise FitError(str(error)) from None
    if not np.isfinite(compute).all():
        raise FitError(f"{source}: column {x_cut!r} has missing values; fill them or drop those runs")

    rows = []
    for cut in cuts:
        train, held = compute <= cut, compute > cut
        row: dict[str, Any] = {
            "law": law.name, "cut": cut, "n_fit": int(train.sum()), "n_held": int(held.sum()),
            **held_out_scores(np.array([]), np.array([])), "wall_s": float("nan"),
            "is_valid": False, "reasons": "", "params": {}, "error": None,
        }  # fmt: skip
        started = time.perf_counter()
        if not held.any():
            row["error"] = f"cut {cut:.4g} on {x_cut!r} leaves no run above it to score"
            rows.append(row)
            continue
        try:
            result = fit(law, used[train], n_bootstrap=n_bootstrap, seed=seed,
                         source=f"{source} (runs with {x_cut} <= {cut:.4g})", **fit_kwargs)
        except FitError as error:
            row["error"] = str(error)
            row["wall_s"] = time.perf_counter() - started
            rows.append(row)
            continue
        held_x = {column: values[held] for column, values in zip(result.x_, xs)}
        point, (lower, upper) = result.predict(held_x, interval=interval, band="run")
        row.update(held_out_scores(observed[held], point, lower, upper))
        row.update(wall_s=time.perf_counter() - started, is_valid=bool(result.is_valid),
                   reasons="; ".join(result.reasons_), params=dict(result.params_))
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(ROLLOUT_COLUMNS))
    # Object dtype keeps None as None (pandas 3 would infer a string column with NaN).
    table["error"] = pd.Series([row["error"] for row in rows], index=table.index, dtype=object)
    return table
