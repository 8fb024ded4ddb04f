"""Rollouts: fit a law on the runs up to a compute cut, score it on every run above.

A rollout asks what a forecast made at each point of a ladder's history would have said about
the runs that came after it: for each cut it fits the law on the runs with ``x_cut <= cut``
and scores the prediction of every run with ``x_cut > cut`` — relative errors, their sign,
and how many held-out runs fall inside the one-run band (:meth:`FitResult.predict` with
``band="run"``). :func:`leave_largest_out_cuts` picks the cuts that hold out the largest
compute levels of a table, :func:`rollout_cuts` those of the runs a law's fit uses, and
:func:`leave_largest_out` rolls a law out at them.
:func:`fold_records` turns a rollout into one plain record per cut and :func:`summarise_folds`
sums records up; ``scaling validate`` (``scaling/cli/validate_commands.py``) and
``benchmarks/extrapolation.py`` print both. Unlike :func:`scaling.laws.backtesting.backtest`, a
cut that cannot be fitted is reported in its row (``error``) instead of stopping the others.

Layer: laws (numpy and pandas, base and ``scaling.laws`` only); it reads no files.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import FitError
from scaling.laws.fitting import fit, run_arrays, x_columns
from scaling.laws.forms import Law, get_law
from scaling.table import coerce_numeric, require_columns

__all__ = [
    "ROLLOUT_COLUMNS",
    "REPORTED_PARAMS",
    "rollout",
    "held_out_scores",
    "leave_largest_out_cuts",
    "rollout_cuts",
    "leave_largest_out",
    "fold_records",
    "summarise_folds",
]

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
    "overestimate",
    "error",
)

#: Fitted parameters that :func:`fold_records` copies into each record, where the law has them.
REPORTED_PARAMS: tuple[str, ...] = ("alpha", "beta", "E", "eta", "RD_star", "RN_star")


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
    level_tops = _level_tops(values, tolerance)[:-1]  # the top of every level but the highest
    cuts = [cut for cut in level_tops[::-1][:n_cuts] if int((values <= cut).sum()) >= min_fit]
    return sorted(cuts)


def _level_tops(values: np.ndarray, tolerance: float) -> list[float]:
    """The largest value of each compute level of sorted ``values``, ascending."""
    tops = [float(previous) for previous, value in itertools.pairwise(values)
            if value > previous * tolerance]
    return tops + [float(values[-1])] if values.size else []


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
        prediction), the fit's ``is_valid``, ``reasons``, ``params`` and ``overestimate`` (the
        weight of over-predicted runs it used). A cut that leaves
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
    source = fit_kwargs.pop("source", "run table")
    xs, observed, used, compute = _rollout_arrays(law, frame, x_cut, fit_kwargs, source)

    rows = []
    for cut in cuts:
        train, held = compute <= cut, compute > cut
        row: dict[str, Any] = {
            "law": law.name, "cut": cut, "n_fit": int(train.sum()), "n_held": int(held.sum()),
            **held_out_scores(np.array([]), np.array([])), "wall_s": float("nan"),
            "is_valid": False, "reasons": "", "params": {}, "overestimate": float("nan"), "error": None,
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
                   reasons="; ".join(result.reasons_), params=dict(result.params_),
                   overestimate=result.overestimate_)
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(ROLLOUT_COLUMNS))
    # Object dtype keeps None as None (pandas 3 would infer a string column with NaN).
    table["error"] = pd.Series([row["error"] for row in rows], index=table.index, dtype=object)
    return table


def _rollout_arrays(
    law: Law, frame: pd.DataFrame, x_cut: str, fit_kwargs: dict[str, Any], source: str
) -> tuple[list[np.ndarray], np.ndarray, pd.DataFrame, np.ndarray]:
    """The x arrays, y and rows a fit of ``law`` uses (:func:`run_arrays`), and their ``x_cut``."""
    if x_cut not in frame.columns:
        raise FitError(f"{source}: rollout cut column {x_cut!r} is missing; give x_cut= one of "
                       f"{', '.join(map(str, frame.columns))}")
    x_cols = x_columns(law, fit_kwargs.get("x"))
    y_col = fit_kwargs.get("y") or law.y
    xs, observed, used = run_arrays(law, frame, x_cols, y_col, source)
    try:
        compute = coerce_numeric(used, [x_cut], source)[x_cut].to_numpy(dtype=float)
    except Exception as error:  # DataError -> FitError, as run_arrays does
        raise FitError(str(error)) from None
    if not np.isfinite(compute).all():
        raise FitError(f"{source}: column {x_cut!r} has missing values; fill them or drop those runs")
    return xs, observed, used, compute


def rollout_cuts(
    frame: pd.DataFrame,
    law: str | Law,
    *,
    x_cut: str = "flops",
    n_cuts: int = 3,
    min_fit: int | None = None,
    tolerance: float = 1.25,
    **fit_kwargs: Any,
) -> list[float]:
    """The cuts :func:`leave_largest_out` rolls ``law`` out at, or one error saying why none.

    They are :func:`leave_largest_out_cuts` of the runs a fit would use (the ones
    :func:`rollout` fits and scores: no ``role == 'target'``, no unfinished run).

    Parameters
    ----------
    frame : DataFrame
        The run table.
    law : str or Law
    x_cut : str
        Column the cuts apply to (default ``flops``).
    n_cuts, tolerance
        As :func:`leave_largest_out_cuts`.
    min_fit : int, optional
        Fewest runs a cut leaves to fit; default the larger of 5 and the law's parameter
        count plus one (a fit needs more runs than parameters).
    **fit_kwargs
        The fit's ``x``, ``y`` and ``source``, as :func:`rollout` takes them.

    Returns
    -------
    list of float
        Ascending, at least one.

    Raises
    ------
    FitError
        As :func:`rollout` for the table, and when no cut leaves ``min_fit`` runs to fit
        below it and a compute level above it.

    Examples
    --------
    >>> C = np.logspace(15, 20, 11)
    >>> table = pd.DataFrame({"flops": C, "flops_exact": C, "loss": 30.0 * C**-0.1 + 1.5})
    >>> len(rollout_cuts(table, "gpt4")), rollout_cuts(table, "gpt4", n_cuts=1) == [C[-2]]
    (3, True)
    >>> rollout_cuts(table.head(5), "gpt4")
    Traceback (most recent call last):
    ...
    scaling.errors.FitError: run table: no cut on 'flops' leaves 5 runs to fit and a compute level above them (5 runs on 5 compute levels); add runs, or lower min_fit (law 'gpt4' needs more runs than its 3 parameters)
    """
    law = get_law(law)
    min_fit = max(5, law.n_params + 1) if min_fit is None else int(min_fit)
    source = fit_kwargs.get("source", "run table")
    _, _, _, compute = _rollout_arrays(law, frame, x_cut, fit_kwargs, source)
    cuts = leave_largest_out_cuts(pd.DataFrame({x_cut: compute}), x_cut, n_cuts=n_cuts,
                                  min_fit=min_fit, tolerance=tolerance)
    if not cuts:
        levels = len(_level_tops(np.sort(compute), tolerance))
        raise FitError(f"{source}: no cut on {x_cut!r} leaves {min_fit} runs to fit and a compute "
                       f"level above them ({compute.size} runs on {levels} compute levels); add "
                       f"runs, or lower min_fit (law {law.name!r} needs more runs than its "
                       f"{law.n_params} parameters)")
    return cuts


def leave_largest_out(
    frame: pd.DataFrame,
    law: str | Law,
    *,
    x_cut: str = "flops",
    n_cuts: int = 3,
    min_fit: int | None = None,
    tolerance: float = 1.25,
    interval: float = 0.9,
    n_bootstrap: int = 200,
    seed: int = 0,
    **fit_kwargs: Any,
) -> pd.DataFrame:
    """Roll ``law`` out at the cuts that hold out the 1 to ``n_cuts`` largest compute levels.

    :func:`rollout` at :func:`rollout_cuts` (which the arguments are passed to as they fit).
    ``scaling validate`` and ``benchmarks/extrapolation.py`` run it on every table.

    Returns
    -------
    DataFrame
        :func:`rollout`'s result, one row per cut, ascending.

    Raises
    ------
    FitError
        As :func:`rollout` and :func:`rollout_cuts`.

    Examples
    --------
    >>> C = np.logspace(15, 20, 11)
    >>> table = pd.DataFrame({"flops": C, "flops_exact": C, "loss": 30.0 * C**-0.1 + 1.5})
    >>> result = leave_largest_out(table, "gpt4", n_cuts=2, n_bootstrap=20)
    >>> result[["n_fit", "n_held"]].values.tolist()
    [[9, 2], [10, 1]]
    """
    cuts = rollout_cuts(frame, law, x_cut=x_cut, n_cuts=n_cuts, min_fit=min_fit,
                        tolerance=tolerance, **fit_kwargs)
    return rollout(frame, law, cuts=cuts, x_cut=x_cut, interval=interval,
                   n_bootstrap=n_bootstrap, seed=seed, **fit_kwargs)


def fold_records(result: pd.DataFrame, dataset: str) -> list[dict[str, Any]]:
    """One plain record per row of a :func:`rollout` result, for JSON lines.

    Keys, in order: ``dataset`` (the table's name), ``law``, ``method`` (``"scaling"``: this
    package's fit, as against a reference method in ``benchmarks/extrapolation.py``),
    ``cut``, ``n_fit``, ``n_held``, ``mean_abs_error``, ``max_abs_error``, ``bias``,
    ``coverage``, ``wall_s``, ``is_valid``, ``overestimate``; then ``error`` for a cut that could not be
    fitted, and the fitted :data:`REPORTED_PARAMS` the law has. Scores stay floats (NaN
    where missing).

    >>> C = np.logspace(15, 20, 11)
    >>> table = pd.DataFrame({"flops": C, "flops_exact": C, "loss": 30.0 * C**-0.1 + 1.5})
    >>> record = fold_records(rollout(table, "gpt4", cuts=[1e19], n_bootstrap=0), "toy")[0]
    >>> list(record)[:6], record["n_held"], "error" in record
    (['dataset', 'law', 'method', 'cut', 'n_fit', 'n_held'], 2, False)
    """
    records = []
    for row in result.to_dict("records"):
        record: dict[str, Any] = {
            "dataset": dataset, "law": row["law"], "method": "scaling", "cut": row["cut"],
            "n_fit": int(row["n_fit"]), "n_held": int(row["n_held"]),
            **{key: row[key] for key in ("mean_abs_error", "max_abs_error", "bias", "coverage",
                                         "wall_s", "is_valid", "overestimate")},
        }  # fmt: skip
        if row["error"]:
            record["error"] = row["error"]
        record.update({k: v for k, v in row["params"].items() if k in REPORTED_PARAMS})
        records.append(record)
    return records


def summarise_folds(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The summary of fold records (:func:`fold_records`, or any with the same score keys).

    A fold counts as scored when it has no ``error`` and a finite ``mean_abs_error``. Returns
    ``folds`` (all), ``failed`` (not scored), ``mean_of_mean_abs_error``,
    ``worst_max_abs_error``, ``mean_bias`` and ``mean_coverage`` over the scored folds (None
    when no fold has the value; a NaN coverage, from a fit without bootstrap, is left out),
    and ``total_wall_s`` over all folds.

    >>> summarise_folds([
    ...     {"mean_abs_error": 0.25, "max_abs_error": 0.5, "bias": 0.25, "coverage": 1.0, "wall_s": 0.5},
    ...     {"mean_abs_error": 0.75, "max_abs_error": 1.0, "bias": -0.75, "coverage": 0.5, "wall_s": 1.0},
    ...     {"mean_abs_error": float("nan"), "error": "too few runs", "wall_s": 0.25}])
    {'folds': 3, 'failed': 1, 'mean_of_mean_abs_error': 0.5, 'worst_max_abs_error': 1.0, 'mean_bias': -0.25, 'mean_coverage': 0.75, 'total_wall_s': 1.75}
    """

    def finite(value: Any) -> bool:
        return isinstance(value, (int, float, np.number)) and bool(np.isfinite(value))

    scored = [r for r in records if not r.get("error") and finite(r.get("mean_abs_error"))]

    def mean(key: str) -> float | None:
        values = [float(r[key]) for r in scored if finite(r.get(key))]
        return float(np.mean(values)) if values else None

    worst = [float(r["max_abs_error"]) for r in scored if finite(r.get("max_abs_error"))]
    return {
        "folds": len(records), "failed": len(records) - len(scored),
        "mean_of_mean_abs_error": mean("mean_abs_error"), "worst_max_abs_error": max(worst, default=None),
        "mean_bias": mean("bias"), "mean_coverage": mean("coverage"),
        "total_wall_s": float(sum(float(r["wall_s"]) for r in records if finite(r.get("wall_s")))),
    }  # fmt: skip
