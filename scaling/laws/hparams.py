"""Hyperparameters that transfer from proxies: tuned optima and their laws.

Two remedies for proxies that are not trained as well as the target (Porian et al. 2024):

1. **Tune per scale and fit a law.** A ``tune`` sweep searches the learning rate (and batch
   size) of each shape; :func:`tune_optima` turns its trials into one optimum per shape, with
   a bootstrap interval, and ``fit("lr", optima)`` fits lr_opt(C) = a·C^b through them as
   DeepSeek LLM (2024) did. :func:`recommend` reads the laws at a target budget.
2. **Parametrise so the optimum does not move.** Under ``model.parametrization: mup`` the
   best learning rate of the base shape holds at every width and depth
   (:class:`scaling.training.model.MupScales`); :mod:`scaling.training.coordinates` tests an
   implementation.

Also here: the lowest-loss run per budget (:func:`best_runs`) and DeepSeek LLM's learning-rate
and batch laws read at a budget (:func:`hyperparameters`). This module computes; it neither
prints nor draws (:mod:`scaling.reporting.figures` draws).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import FitError
from scaling.laws.forms import get_law
from scaling.laws.intervals import quantile_interval
from scaling.table import coerce_numeric, finished, require_columns

__all__ = [
    "HYPERPARAMETER_LAWS",
    "tune_trials",
    "tune_optima",
    "law_table",
    "best_of_tuned",
    "recommend",
    "best_runs",
    "hyperparameters",
]

#: Laws fitted to the per-shape optima of tune sweeps rather than to every run.
HYPERPARAMETER_LAWS = ("lr", "batch")

_TUNE_COLUMNS = ["lr", "loss", "flops", "batch_tokens"]


# ------------------------------------------------------------------------ tuned optima


def tune_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` that are finished tune trials (a non-empty ``tune`` column)."""
    return frame[_trial_mask(frame)]


def _trial_mask(frame: pd.DataFrame) -> np.ndarray:
    if "tune" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    mask = (frame["tune"].notna() & (frame["tune"].astype(str) != "")).to_numpy(copy=True)
    mask &= finished(frame).to_numpy()
    return mask


def _vertex(log_lr: np.ndarray, loss: np.ndarray) -> tuple[float, str]:
    """log lr of the optimum: the minimum of a parabola through the better half of the
    trials (at least three), or the best trial when the parabola does not open upward or
    its minimum lies outside the learning rates it was fitted to."""
    best = float(log_lr[np.argmin(loss)])
    keep = np.argsort(loss)[: max(3, math.ceil(loss.size / 2))]
    u, y = log_lr[keep], loss[keep]
    if np.unique(u).size < 3:
        return best, "best trial"
    curvature, slope, _ = np.polyfit(u, y, 2)
    if curvature <= 0:
        return best, "best trial"
    vertex = -slope / (2 * curvature)
    if not u.min() <= vertex <= u.max():
        return best, "best trial"
    return float(vertex), "parabola"


def _shape_optimum(trials: pd.DataFrame, rng: np.random.Generator, n_bootstrap: int,
                   interval: float) -> dict[str, Any]:
    batch = trials["batch_tokens"].to_numpy(dtype=float)
    loss = trials["loss"].to_numpy(dtype=float)
    log_lr = np.log(trials["lr"].to_numpy(dtype=float))

    def optimum(rows: np.ndarray) -> tuple[float, str, float]:
        # The lr curve is read at the best batch size: loss against lr mixes batches otherwise.
        best_batch = batch[rows][np.argmin(loss[rows])]
        at_batch = rows[batch[rows] == best_batch]
        return *_vertex(log_lr[at_batch], loss[at_batch]), best_batch

    vertex, method, best_batch = optimum(np.arange(len(loss)))
    draws = [optimum(rng.integers(0, len(loss), len(loss))) for _ in range(n_bootstrap)]
    nan = (math.nan, math.nan)
    lr_low, lr_high = quantile_interval(np.array([d[0] for d in draws]), interval) if draws else nan
    b_low, b_high = quantile_interval(np.array([d[2] for d in draws]), interval) if draws else nan
    return {
        "lr": math.exp(vertex), "lr_lower": math.exp(lr_low), "lr_upper": math.exp(lr_high),
        "method": method, "best_trial_lr": float(np.exp(log_lr[np.argmin(loss)])),
        "loss": float(loss.min()), "batch_tokens": float(best_batch),
        "batch_lower": b_low, "batch_upper": b_high,
        "batch_choices": int(np.unique(batch).size),
    }  # fmt: skip


def tune_optima(
    frame: pd.DataFrame,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    interval: float = 0.9,
    source: str = "run table",
) -> pd.DataFrame:
    """The optimal learning rate (and batch size) of every tuned shape, with intervals.

    The optimum is the minimum of a parabola of loss in log lr through the better half of
    the shape's trials (at least three) at its best batch size; where no such minimum lies
    inside the learning rates tried, the best trial's lr. The interval is a bootstrap over the
    shape's trials. A tuned batch size is the best trial's, its interval from the same draws.

    Parameters
    ----------
    frame : DataFrame
        A run table with tune trials: columns ``tune`` (the shape), ``lr``, ``loss``,
        ``flops``, ``batch_tokens``, and ``params``, ``tokens``, ``flops_exact`` when present.
    n_bootstrap : int
        Resamples of each shape's trials.
    seed : int
    interval : float
        Level of the intervals.
    source : str
        Named in error messages.

    Returns
    -------
    DataFrame
        One row per shape, by increasing compute: ``tune``, ``trials``, the shape's
        ``params``, ``tokens``, ``flops``, ``flops_exact`` (when present), ``lr``,
        ``lr_lower``, ``lr_upper``, ``method`` ('parabola' or 'best trial'),
        ``best_trial_lr``, ``loss`` (the best trial's), ``batch_tokens``, ``batch_lower``,
        ``batch_upper`` and ``batch_choices`` (batch sizes tried; 1 = not tuned).
        :func:`scaling.laws.fitting.fit` fits the ``lr`` and ``batch`` laws to it.

    Raises
    ------
    FitError
        If the table holds no finished tune trials, or a needed column is missing.

    Examples
    --------
    >>> lr = np.geomspace(1e-3, 1e-1, 7)
    >>> frame = pd.DataFrame({"tune": "d64-L2", "lr": lr, "flops": 1e12, "batch_tokens": 4096,
    ...                       "loss": 2.0 + 0.1 * np.log(lr / 1e-2) ** 2})
    >>> optima = tune_optima(frame, n_bootstrap=0)
    >>> round(float(optima["lr"].iloc[0]), 6), optima["method"].iloc[0]
    (0.01, 'parabola')
    """
    trials = tune_trials(frame)
    if trials.empty:
        raise FitError(
            f"{source}: no finished tune trials (the 'tune' column is empty); the lr and batch "
            "laws are fitted to a tune sweep's optima: run one first (scaling sweep run "
            "sweeps/tune-lr-cpu.yaml) or give a CSV of optima without a 'tune' column"
        )
    try:
        require_columns(trials, _TUNE_COLUMNS, source)
        extra = [c for c in ("params", "tokens", "flops_exact") if c in trials.columns]
        trials = coerce_numeric(trials, _TUNE_COLUMNS + extra, source)
    except Exception as error:  # DataError -> FitError: the same message at fit time
        raise FitError(str(error)) from None
    trials = trials[np.isfinite(trials["loss"]) & (trials["lr"] > 0)]
    rng = np.random.default_rng(seed)
    rows = []
    for shape, group in trials.groupby("tune", sort=False):
        row = {"tune": shape, "trials": len(group)}
        row.update({c: float(group[c].median()) for c in ["flops", *extra]})
        row.update(_shape_optimum(group, rng, n_bootstrap, interval))
        rows.append(row)
    return pd.DataFrame(rows).sort_values("flops", kind="stable").reset_index(drop=True)


def law_table(law: str, frame: pd.DataFrame, *, seed: int = 0, source: str = "run table") -> pd.DataFrame:
    """The table a law is fitted to. For the ``lr`` and ``batch`` laws, a tune sweep's
    per-shape optima when ``frame`` has a ``tune`` column (a run table from MLflow always
    does), else ``frame`` itself (e.g. a CSV of optima). For any other law, ``frame`` with
    each tuned shape reduced to its best trial (:func:`best_of_tuned`).

    Raises
    ------
    FitError
        If the tune column is empty, or the batch law is asked of a sweep that did not tune
        the batch size.
    """
    if law not in HYPERPARAMETER_LAWS:
        return best_of_tuned(frame)
    if "tune" not in frame.columns:
        return frame
    optima = tune_optima(frame, seed=seed, source=source)
    if law == "batch" and (optima["batch_choices"] < 2).all():
        raise FitError(
            f"{source}: the batch size was not tuned (one size per shape); add choices such "
            "as 'batch_tokens: [2048, 4096, 8192]' to the sweep's tune section"
        )
    return optima


def best_of_tuned(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each tuned shape reduced to its lowest-loss trial: the runs a loss law
    is fitted to, since mistuned proxies bend the curve (Porian et al. 2024).

    Examples
    --------
    >>> frame = pd.DataFrame({"tune": [None, "d8", "d8"], "loss": [3.0, 2.5, 2.4]})
    >>> best_of_tuned(frame)["loss"].tolist()
    [3.0, 2.4]
    """
    mask = _trial_mask(frame)
    if not mask.any():
        return frame
    keep = ~mask
    losses = pd.to_numeric(frame["loss"], errors="coerce").to_numpy(dtype=float)
    shapes = frame["tune"].astype(str).to_numpy()
    for shape in np.unique(shapes[mask]):
        members = np.flatnonzero(mask & (shapes == shape) & np.isfinite(losses))
        if members.size:
            keep[members[np.argmin(losses[members])]] = True
    return frame[keep]


def recommend(
    frame: pd.DataFrame | None,
    flops: float,
    *,
    interval: float = 0.9,
    n_bootstrap: int = 1000,
    seed: int = 0,
    source: str = "run table",
) -> dict[str, Any]:
    """Learning rate (and batch size, if tuned) for a budget, from laws fitted to the optima
    of the tune trials in ``frame``; DeepSeek LLM's published laws, labelled as such, when
    there are none (or ``frame`` is None).

    Returns
    -------
    dict
        ``source``: 'tuned', 'deepseek', or 'unavailable' (with ``reason``, e.g. fewer than
        three tuned shapes); ``shapes`` (tuned shapes fitted); ``lr`` and ``batch_tokens``,
        each ``{"value", "lower", "upper"}`` at level ``interval`` (bounds None for the
        reference laws; ``batch_tokens`` None when the tuned runs did not vary it).
    """
    from scaling.laws.fitting import fit

    if frame is None or tune_trials(frame).empty:
        reference = hyperparameters(flops)
        return {
            "source": "deepseek", "shapes": 0,
            "lr": {"value": reference["lr"], "lower": None, "upper": None},
            "batch_tokens": {"value": reference["batch_tokens"], "lower": None, "upper": None},
        }  # fmt: skip
    optima = tune_optima(frame, seed=seed, source=source)
    out: dict[str, Any] = {"source": "tuned", "shapes": len(optima), "batch_tokens": None}
    laws = ["lr"] + (["batch"] if (optima["batch_choices"] > 1).any() else [])
    for name in laws:
        try:
            result = fit(name, optima, n_bootstrap=n_bootstrap, seed=seed, interval=interval,
                         source=f"{source} (tuned optima)")
        except FitError as error:
            return {"source": "unavailable", "shapes": len(optima), "reason": str(error)}
        value, (lower, upper) = result.predict(np.array([flops]), interval=interval)
        out[result.y_] = {"value": float(value[0]), "lower": float(lower[0]), "upper": float(upper[0])}
    return out



def best_runs(
    frame: pd.DataFrame, *, flops: str = "flops", bin_decades: float = 0.1, source: str = "run table"
) -> pd.DataFrame:
    """The lowest-loss run in each compute bin: the points a hyperparameter law is fitted to.

    A sweep over learning rates (or batch sizes) at several budgets gives many runs per
    budget; the ``lr`` and ``batch`` laws describe the best one, as DeepSeek LLM did.
    ``fit("lr", best_runs(frame))`` fits lr_opt(C) = a·C^b.

    Raises
    ------
    DataError
        If ``flops`` or ``loss`` is missing or not numeric.

    Examples
    --------
    >>> frame = pd.DataFrame({"flops": [1e18, 1e18, 1e19, 1e19], "lr": [1e-3, 3e-3, 1e-3, 3e-3],
    ...                       "loss": [3.0, 2.9, 2.5, 2.6]})
    >>> best_runs(frame)["lr"].tolist()
    [0.003, 0.001]
    """
    require_columns(frame, [flops, "loss"], source)
    table = coerce_numeric(frame, [flops, "loss"], source)
    table = table[np.isfinite(table["loss"]) & (table[flops] > 0)]
    bins = np.round(np.log10(table[flops].to_numpy(dtype=float)) / bin_decades)
    best = table.groupby(bins, sort=True)["loss"].idxmin()
    return table.loc[best.to_numpy()].reset_index(drop=True)


def hyperparameters(
    flops: float, lr: Mapping[str, float] | None = None, batch: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Learning rate and batch size (tokens) for budget ``flops`` from power laws a·C^b.

    Defaults are DeepSeek LLM's published laws (their units: C in FLOPs, batch in tokens);
    pass ``params_`` of fitted ``lr``/``batch`` laws to use your own.

    Examples
    --------
    >>> hp = hyperparameters(1e20)
    >>> round(hp["lr"], 5), f"{hp['batch_tokens']:.3g}"
    (0.00099, '1.02e+06')
    """
    lr = lr or get_law("lr").reference
    batch = batch or get_law("batch").reference
    return {
        "lr": float(lr["a"] * flops ** lr["b"]),
        "batch_tokens": float(batch["a"] * flops ** batch["b"]),
    }
