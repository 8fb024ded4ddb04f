"""Predictions from a fit: one run by its budget or its size, rows of a table, and two-step forecasts.

:func:`predict_run` reads a fitted law at a budget C (or at N and D) and, for an L(N, D) fit,
adds the compute-optimal allocation; :func:`predict_rows` predicts every row of a table (the
columns the law reads) and, where the table has the fitted column, scores the prediction;
:func:`two_step` composes two fits (compute -> loss or task NLL -> a metric), pairing their
bootstrap draws so the band carries both steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import DataError, FitError
from scaling.formatting import json_safe
from scaling.laws.allocation import compute_optimal
from scaling.laws.fitting import FitResult

__all__ = ["predict_run", "predict_rows", "two_step"]


def predict_run(
    result: FitResult,
    *,
    flops: float | None = None,
    params: float | None = None,
    tokens: float | None = None,
    interval: float = 0.9,
) -> dict[str, Any]:
    """Predict one run from a fit: by its budget C, or by its size N and tokens D.

    A one-x law of compute reads C (or 6·N·D when N and D are given). A law of (N, D) reads
    N and D, or, given only C, is evaluated at the compute-optimal N and D.

    Returns
    -------
    dict
        ``law``, ``y``, ``flops``, ``params``, ``tokens`` (None when unknown), ``value``,
        ``lower``, ``upper``, ``interval`` and ``extrapolation`` (how many times beyond the
        largest fitted x the prediction lies).

    Raises
    ------
    FitError
        If neither C nor both N and D are given, or the law needs inputs not given.
    """
    if flops is None and (params is None or tokens is None):
        raise FitError("give --flops C, or both --params N and --tokens D")
    if flops is None:
        flops = 6.0 * params * tokens
    x_cols = result.x_
    if len(x_cols) == 1:
        value, (lower, upper) = result.predict(np.array([flops]), interval=interval)
    elif set(x_cols) == {"params", "tokens"} or result.law_.name in ("chinchilla", "kaplan_nd"):
        if params is None or tokens is None:
            if result.law_.name != "chinchilla":
                raise FitError(f"law {result.law_.name!r} needs --params N and --tokens D")
            best = compute_optimal(flops, result, interval)
            params, tokens = best.params, best.tokens
        value, (lower, upper) = result.predict(([params], [tokens]), interval=interval)
    else:
        raise FitError(f"law {result.law_.name!r} with x {x_cols} cannot be predicted from C, N, D")
    largest = {"flops": flops, "flops_exact": flops, "params": params, "tokens": tokens}
    stretch = [largest[c] / result.x_range_[c][1] for c in x_cols
               if c in largest and largest[c] is not None and c in result.x_range_]
    return json_safe({
        "law": result.law_.name,
        "y": result.y_,
        "flops": float(flops),
        "params": None if params is None else float(params),
        "tokens": None if tokens is None else float(tokens),
        "value": float(value[0]),
        "lower": float(lower[0]),
        "upper": float(upper[0]),
        "interval": interval,
        "extrapolation": float(max(stretch)) if stretch else None,
    })


def predict_rows(
    result: FitResult,
    frame: pd.DataFrame,
    *,
    interval: float = 0.9,
    band: str = "run",
    source: str = "rows",
) -> dict[str, Any]:
    """Predict every row of ``frame`` from a fit, with its interval; score rows that have ``y``.

    Parameters
    ----------
    result : FitResult
        A fitted (or loaded) law; the table needs the columns it reads (``result.x_``).
    frame : DataFrame
        One row per run to predict. Rows that also have the fitted column (``result.y_``)
        are scored: ``observed``, ``error`` = (predicted − observed) / observed, ``inside``.
    interval : float
        Level of each row's interval.
    band : {"run", "fit"}
        ``"run"`` (default): where one run's value lies (the fit's scatter included);
        ``"fit"``: where the fitted curve lies (see :meth:`FitResult.predict`).
    source : str
        The table's name (a file), named in errors.

    Returns
    -------
    dict
        ``law``, ``x``, ``y``, ``interval``, ``band``, ``rows`` (one dict per row: the x
        values, ``value``, ``lower``, ``upper`` and, when scored, ``observed``, ``error``,
        ``inside``) and ``scores`` (:func:`scaling.laws.rollouts.held_out_scores` over the
        scored rows, or None when no row has ``y``).

    Raises
    ------
    DataError
        If the table lacks a column the law reads, or a value is not a positive number.

    Examples
    --------
    >>> import numpy as np
    >>> from scaling.laws.fitting import fit
    >>> C = np.logspace(15, 19, 12)
    >>> result = fit("gpt4", pd.DataFrame({"flops_exact": C, "loss": 40.0 * C**-0.1 + 1.5}),
    ...              n_bootstrap=20)
    >>> out = predict_rows(result, pd.DataFrame({"flops_exact": [1e20], "loss": [2.0]}))
    >>> round(out["rows"][0]["value"], 4), round(out["rows"][0]["error"], 4)
    (1.9, -0.05)
    """
    from scaling.laws.rollouts import held_out_scores

    columns = list(result.x_)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"{source}: no column {missing[0]!r}, which law {result.law_.name!r} reads "
                        f"({', '.join(columns)}); add it to the file (one value per row)")
    values = {}
    for column in columns:
        numbers = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(numbers) | (numbers <= 0)
        if bad.any():
            row = int(bad.nonzero()[0][0])
            raise DataError(f"{source}: column {column!r} row {row + 1} is {frame[column].iloc[row]!r}, "
                            "not a positive number; fix or drop that row")
        values[column] = numbers
    point, (lower, upper) = result.predict(values, interval=interval, band=band)
    observed = None
    if result.y_ in frame.columns:
        observed = pd.to_numeric(frame[result.y_], errors="coerce").to_numpy(dtype=float)
    rows = []
    for i in range(len(frame)):
        row = {column: float(values[column][i]) for column in columns}
        row.update(value=float(point[i]), lower=float(lower[i]), upper=float(upper[i]))
        if observed is not None and np.isfinite(observed[i]):
            row.update(observed=float(observed[i]), error=float((point[i] - observed[i]) / observed[i]),
                       inside=bool(lower[i] <= observed[i] <= upper[i]))
        rows.append(row)
    scored = [] if observed is None else np.isfinite(observed).nonzero()[0]
    scores = (held_out_scores(observed[scored], point[scored], lower[scored], upper[scored])
              if len(scored) else None)
    return json_safe({"law": result.law_.name, "x": columns, "y": result.y_, "interval": interval,
                      "band": band, "rows": rows, "scores": scores})


def two_step(
    loss_fit: FitResult, metric_fit: FitResult, x, interval: float = 0.9, band: str = "fit"
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Two-step prediction, compute -> loss -> metric (Llama 3, the OLMo ladder).

    ``loss_fit`` maps the x of a run (e.g. C) to its loss; ``metric_fit`` (usually the
    ``sigmoid`` law, x = loss) maps the loss to a downstream metric. The band pairs the
    i-th bootstrap draw of each fit, so both uncertainties carry through. With
    ``band="run"`` each step's draw also takes a log residual of its own fit (seeded), as
    :meth:`FitResult.predict` does: the band where one new run's metric lies.

    Returns
    -------
    point : ndarray
    (lower, upper) : tuple of ndarray

    Raises
    ------
    FitError
        If ``metric_fit`` does not read a single x column (the loss).
    """
    if len(metric_fit.x_) != 1:
        raise FitError(
            f"two_step: the metric law must read one column (the loss), got {', '.join(metric_fit.x_)}"
        )
    loss, _ = loss_fit.predict(x, interval=interval)
    point = metric_fit.predict(loss, interval=interval)[0]
    n = min(len(loss_fit.bootstrap_theta_), len(metric_fit.bootstrap_theta_))
    if n == 0:
        nan = np.full_like(point, np.nan)
        return point, (nan, nan.copy())
    if band not in ("fit", "run"):
        raise FitError(f"band = {band!r}; choose 'fit' (the curve) or 'run' (one new run)")
    rng = np.random.default_rng(metric_fit.seed)

    def scatter(fit: FitResult, log_draws: np.ndarray) -> np.ndarray:
        if band == "fit" or not fit.log_residuals_.size:
            return np.exp(log_draws)
        return np.exp(log_draws - rng.choice(fit.log_residuals_, size=log_draws.shape))

    arrays = loss_fit._x_arrays(x)
    loss_draws = scatter(loss_fit, loss_fit.law_.log_model(loss_fit.bootstrap_theta_[:n], arrays)[0])  # (n, m)
    metric_draws = scatter(metric_fit, np.stack(
        [metric_fit.law_.log_model(metric_fit.bootstrap_theta_[i : i + 1], [loss_draws[i]])[0][0]
         for i in range(n)]
    ))
    tail = (1 - interval) / 2
    return point, (np.quantile(metric_draws, tail, axis=0), np.quantile(metric_draws, 1 - tail, axis=0))
