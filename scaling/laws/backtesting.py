"""Backtests: fit below a compute cut, predict the runs above it, measure the error.

An expanding window over several cuts shows how the extrapolation error shrinks as the
fitted runs reach closer to the predicted ones. Re-exported as ``scaling.laws.fitting.backtest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import FitError
from scaling.laws.forms import Law, get_law
from scaling.table import coerce_numeric

__all__ = ["BacktestResult", "FitRange", "backtest", "select_fit_range"]


class BacktestResult:
    """Held-out accuracy of a law: fit below a compute cut, predict the runs above it.

    Attributes
    ----------
    law_ : Law
    cut_column_ : str
        Column the cuts apply to (compute).
    cuts_ : list of float
        The cuts, ascending (an expanding window: each fold trains on more runs).
    interval_ : float
        Level of the prediction bands whose coverage is measured.
    band_ : str
        ``"run"`` or ``"fit"`` (see :meth:`scaling.laws.fitting.FitResult.predict`).
    rows_ : dict of str -> ndarray
        One entry per (cut, held-out run): ``cut``, ``run``, the x columns, ``observed``,
        ``predicted``, ``lower``, ``upper``, ``relative_error`` ((predicted − observed) /
        observed) and ``inside`` (observed within the band).
    folds_ : list of dict
        Per cut: ``cut``, ``n_train``, ``n_test``, ``mean_abs_relative_error``,
        ``max_abs_relative_error``, ``coverage``, ``is_valid``, ``reasons``, ``params``.
    fits_ : list of FitResult
        The fit of each fold.
    """

    def __init__(self, law, cut_column, cuts, interval, rows, folds, fits, band="run") -> None:
        self.band_ = band
        self.law_ = law
        self.cut_column_ = cut_column
        self.cuts_ = cuts
        self.interval_ = interval
        self.rows_ = rows
        self.folds_ = folds
        self.fits_ = fits

    def frame(self) -> pd.DataFrame:
        """The per-run rows as a DataFrame."""
        return pd.DataFrame(self.rows_)

    def summary(self) -> dict[str, Any]:
        """JSON-safe: per-fold figures and the totals over all held-out predictions."""
        errors = np.abs(self.rows_["relative_error"])
        return {
            "law": self.law_.name,
            "cut_column": self.cut_column_,
            "interval": self.interval_,
            "band": self.band_,
            "folds": [dict(fold) for fold in self.folds_],
            "n_predictions": int(errors.size),
            "mean_abs_relative_error": float(errors.mean()),
            "max_abs_relative_error": float(errors.max()),
            "coverage": float(np.mean(self.rows_["inside"])),
        }


def backtest(
    law: str | Law,
    frame: pd.DataFrame,
    cuts: Sequence[float] | None = None,
    *,
    x: Sequence[str] | None = None,
    y: str | None = None,
    cut_column: str | None = None,
    n_bootstrap: int = 200,
    interval: float = 0.9,
    seed: int = 0,
    delta: float = 1e-3,
    band: str = "run",
    source: str = "run table",
) -> BacktestResult:
    """Fit on the runs below each compute cut and predict the runs at or above it.

    Parameters
    ----------
    law : str or Law
    frame : DataFrame
        The run table.
    cuts : sequence of float, optional
        Compute cuts. Default: three cuts at the 50%, 62.5% and 75% quantiles of log compute
        (an expanding window).
    x, y : optional
        Columns, as in :func:`fit`.
    cut_column : str, optional
        Compute column the cuts apply to. Default: the law's x column for a one-x law,
        otherwise ``flops_exact`` or, if absent, ``flops``.
    n_bootstrap, interval, seed, delta
        Passed to each fold's fit; ``interval`` is the band whose coverage is measured.
    band : {"run", "fit"}
        Which band (see :meth:`scaling.laws.fitting.FitResult.predict`) the coverage is measured
        against: ``"run"`` includes the run-to-run scatter seen in the fitted runs.

    Returns
    -------
    BacktestResult

    Raises
    ------
    FitError
        If the cut column is missing, or a cut leaves no held-out run or too few runs to fit.
    """
    from scaling.laws.fitting import (  # scaling.laws.fitting re-exports this module
        fit,
        run_arrays,
        x_columns,
    )

    law = get_law(law)
    x_cols = x_columns(law, x)
    y_col = y if y is not None else law.y
    if cut_column is None:
        if len(x_cols) == 1:
            cut_column = x_cols[0]
        else:
            cut_column = "flops_exact" if "flops_exact" in frame.columns else "flops"
    if cut_column not in frame.columns:
        raise FitError(
            f"{source}: backtest cut column {cut_column!r} is missing; give cut_column= one "
            f"of {', '.join(map(str, frame.columns))}"
        )
    xs, values, used = run_arrays(law, frame, x_cols, y_col, source)
    used = coerce_numeric(used, [cut_column], source)
    compute = used[cut_column].to_numpy(dtype=float)
    if cuts is None:
        cuts = [float(np.exp(q)) for q in np.quantile(np.log(compute), [0.5, 0.625, 0.75])]
    cuts = sorted(float(c) for c in cuts)
    run_names = used["run_id"].astype(str).to_numpy() if "run_id" in used.columns else used.index.to_numpy()

    rows: dict[str, list] = {key: [] for key in ["cut", "run", *x_cols, "observed", "predicted",
                                                   "lower", "upper", "relative_error", "inside"]}
    folds, fits = [], []
    for cut in cuts:
        train, test = compute < cut, compute >= cut
        if not test.any():
            raise FitError(f"{source}: cut {cut:.3g} on {cut_column!r} leaves no run to predict; "
                           "choose a smaller cut")
        if train.sum() <= law.n_params:
            raise FitError(
                f"{source}: cut {cut:.3g} on {cut_column!r} leaves {int(train.sum())} run(s) to fit "
                f"law {law.name!r} with {law.n_params} parameters; choose a larger cut"
            )
        result = fit(law, used[train], x=x_cols, y=y_col, n_bootstrap=n_bootstrap, seed=seed,
                     delta=delta, interval=0.95, source=f"{source} (runs below {cut:.3g})")
        test_x = tuple(a[test] for a in xs)
        point, (lower, upper) = result.predict(test_x, interval=interval, band=band)
        observed = values[test]
        relative = (point - observed) / observed
        inside = (lower <= observed) & (observed <= upper)
        for key, column in zip(x_cols, test_x):
            rows[key].extend(column.tolist())
        rows["cut"].extend([cut] * int(test.sum()))
        rows["run"].extend(run_names[test].tolist())
        rows["observed"].extend(observed.tolist())
        rows["predicted"].extend(point.tolist())
        rows["lower"].extend(lower.tolist())
        rows["upper"].extend(upper.tolist())
        rows["relative_error"].extend(relative.tolist())
        rows["inside"].extend(inside.tolist())
        folds.append({
            "cut": cut,
            "n_train": int(train.sum()),
            "n_test": int(test.sum()),
            "mean_abs_relative_error": float(np.abs(relative).mean()),
            "max_abs_relative_error": float(np.abs(relative).max()),
            "coverage": float(inside.mean()),
            "is_valid": result.is_valid,
            "reasons": list(result.reasons_),
            "params": dict(result.params_),
        })
        fits.append(result)
    arrays = {key: np.asarray(value) for key, value in rows.items()}
    return BacktestResult(law, cut_column, cuts, interval, arrays, folds, fits, band)


class FitRange:
    """The smallest runs left out of a fit, chosen by how well each choice predicts the largest.

    Attributes
    ----------
    x : str
        Column the range applies to.
    min_x : float
        Smallest ``x`` kept; runs below it are left out.
    dropped : int
        How many of the smallest runs were left out.
    errors : list of float
        Relative error on the held-out largest run for 0, 1, 2... dropped runs.
    """

    def __init__(self, x: str, min_x: float, dropped: int, errors: list[float]) -> None:
        self.x = x
        self.min_x = min_x
        self.dropped = dropped
        self.errors = errors

    def summary(self) -> dict[str, Any]:
        """Plain JSON-safe values."""
        return {
            "x": self.x,
            "min_x": float(self.min_x),
            "dropped": int(self.dropped),
            "holdout_errors": [float(e) for e in self.errors],
        }


def select_fit_range(
    law: Law | str,
    frame: pd.DataFrame,
    *,
    x: str | None = None,
    y: str | None = None,
    min_points: int | None = None,
    max_dropped: int | None = None,
    delta: float = 1e-3,
) -> FitRange:
    """Choose how many of the smallest runs to leave out, by a backtest on the runs alone.

    Small proxies can sit in a regime the law does not describe (at byte level, before a
    model learns more than local statistics its loss stays on a plateau, and a power law
    fitted through that plateau bends the wrong way). For ``k = 0, 1, 2...`` this fits the
    law on the runs between the ``k``-th smallest and the second largest, predicts the
    largest, and keeps the ``k`` with the smallest error (the fewest dropped on a tie within
    0.1%). Only the runs themselves are used: nothing about the run to be predicted.

    Parameters
    ----------
    law : Law or str
    frame : DataFrame
        The runs (finished proxies), with the law's columns.
    x, y : str, optional
        Columns; the law's own when None. Only one-x laws are supported.
    min_points : int, optional
        Fewest runs a fit may use; the law's parameter count + 1 when None.
    max_dropped : int, optional
        Most runs that may be left out; as many as ``min_points`` allows when None.
    delta : float
        Huber delta of the fits.

    Returns
    -------
    FitRange

    Raises
    ------
    FitError
        If the law reads several x columns, or there are too few runs to hold one out.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> flops = np.logspace(10, 12, 8)
    >>> loss = 2.0 * (flops / 1e10) ** -0.2 + 1.0
    >>> loss[:2] = 3.1                      # two runs stuck on a plateau
    >>> choice = select_fit_range("gpt4", pd.DataFrame({"flops_exact": flops, "loss": loss}))
    >>> choice.dropped, bool(choice.min_x == flops[2])
    (2, True)
    """
    from scaling.laws.fitting import fit, x_columns

    law = get_law(law) if isinstance(law, str) else law
    columns = x_columns(law, x)
    if len(columns) != 1:
        raise FitError(f"law {law.name!r} reads {len(columns)} x columns; a fit range needs one")
    column, target = columns[0], y if y is not None else law.y
    runs = frame.sort_values(column).reset_index(drop=True)
    needed = min_points if min_points is not None else law.n_params + 1
    most = len(runs) - 1 - needed
    if most < 0:
        raise FitError(
            f"{len(runs)} runs are too few to choose a fit range for law {law.name!r}: "
            f"it needs {needed} to fit plus 1 to hold out"
        )
    if max_dropped is not None:
        most = min(most, max_dropped)
    held_x, held_y = float(runs[column].iloc[-1]), float(runs[target].iloc[-1])
    errors = []
    for dropped in range(most + 1):
        result = fit(law, runs.iloc[dropped:-1], x=column, y=target, n_bootstrap=0, delta=delta)
        point, _ = result.predict(held_x)
        errors.append(float(point[0]) / held_y - 1.0)
    magnitude = np.abs(errors)
    best = int(np.flatnonzero(magnitude <= magnitude.min() + 1e-3)[0])
    return FitRange(column, float(runs[column].iloc[best]), best, errors)
