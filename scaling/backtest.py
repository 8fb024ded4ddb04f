"""Backtests: fit below a compute cut, predict the runs above it, measure the error.

An expanding window over several cuts shows how the extrapolation error shrinks as the
fitted runs reach closer to the predicted ones. Re-exported as ``scaling.fit.backtest``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import FitError
from scaling.laws import Law, get_law
from scaling.table import coerce_numeric

__all__ = ["BacktestResult", "backtest"]


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
        ``"run"`` or ``"fit"`` (see :meth:`scaling.fit.FitResult.predict`).
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
        Which band (see :meth:`scaling.fit.FitResult.predict`) the coverage is measured
        against: ``"run"`` includes the run-to-run scatter seen in the fitted runs.

    Returns
    -------
    BacktestResult

    Raises
    ------
    FitError
        If the cut column is missing, or a cut leaves no held-out run or too few runs to fit.
    """
    from scaling.fit import fit, run_arrays  # scaling.fit re-exports this module

    law = get_law(law)
    x_cols = tuple(x) if x is not None else law.x
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
