"""Predictions with intervals, compute-optimal N and D, hyperparameter laws, saved fits.

Chinchilla's three approaches to the compute-optimal allocation live here because they
answer the same question as :func:`compute_optimal` — how to split a budget C = 6·N·D:

1. the lower envelope of loss over compute: the run with the lowest loss in each compute
   bin is taken as compute-optimal, and N_opt(C) is a power-law fit through those runs;
2. IsoFLOP profiles: in each group of runs at (nearly) the same compute, a parabola of loss
   in log N gives N_opt for that C; a power law through those minima gives N_opt(C);
3. the parametric fit L(N, D) = E + A/N^α + B/D^β (:func:`scaling.laws.fitting.fit` with
   ``"chinchilla"``), whose constrained minimum is closed-form (Hoffmann et al. 2022, eq. 4):
   N_opt = G·(C/6)^a, D_opt = G^-1·(C/6)^b, G = (αA/(βB))^(1/(α+β)), a = β/(α+β),
   b = α/(α+β).

Intervals come from the bootstrap: over runs for approaches 1 and 2, over the fit's
bootstrap parameters for approach 3 and :func:`compute_optimal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import FitError
from scaling.formatting import json_safe
from scaling.laws.fitting import FitResult, fit
from scaling.laws.forms import get_law
from scaling.laws.intervals import quantile_interval
from scaling.table import coerce_numeric, require_columns

__all__ = [
    "Allocation",
    "AllocationLaw",
    "compute_optimal",
    "optional_chinchilla_fit",
    "approach1",
    "approach2",
    "approach3",
]


@dataclass
class Allocation:
    """The compute-optimal split of one budget, with bootstrap intervals.

    Attributes
    ----------
    flops : float
        The budget C (FLOPs, C = 6·N·D).
    params, tokens, loss : float
        N_opt, D_opt and the law's loss there.
    params_interval, tokens_interval, loss_interval : tuple of float
        Percentile intervals at level ``interval`` (NaN without a bootstrap).
    tokens_per_param : float
        D_opt / N_opt.
    interval : float
    """

    flops: float
    params: float
    tokens: float
    loss: float
    params_interval: tuple[float, float]
    tokens_interval: tuple[float, float]
    loss_interval: tuple[float, float]
    tokens_per_param: float
    interval: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe values (NaN becomes None)."""
        return json_safe(asdict(self))


@dataclass
class AllocationLaw:
    """N_opt(C) = k·C^a (and D_opt = C / (6·N_opt), so D_opt ∝ C^(1−a)) from one approach.

    Attributes
    ----------
    approach : int
        1, 2 or 3 (Hoffmann et al. 2022).
    a, b : float
        Exponents of N_opt and D_opt in C.
    coefficient : float
        k in N_opt = k·C^a.
    a_interval, b_interval : tuple of float
        Bootstrap percentile intervals at level ``interval``.
    points : dict of str -> ndarray
        What the power law was fitted through: ``flops`` and ``params_opt`` (empty for 3).
    n_bootstrap : int
        Bootstrap fits used for the intervals.
    interval : float
    """

    approach: int
    a: float
    b: float
    coefficient: float
    a_interval: tuple[float, float]
    b_interval: tuple[float, float]
    points: dict[str, np.ndarray] = field(default_factory=dict)
    n_bootstrap: int = 0
    interval: float = 0.9

    def params_opt(self, flops: float | np.ndarray) -> np.ndarray:
        """N_opt for budgets ``flops``."""
        return self.coefficient * np.asarray(flops, dtype=float) ** self.a

    def tokens_opt(self, flops: float | np.ndarray) -> np.ndarray:
        """D_opt = C / (6·N_opt) for budgets ``flops``."""
        return np.asarray(flops, dtype=float) / (6.0 * self.params_opt(flops))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe values (arrays become lists)."""
        out = asdict(self)
        out["points"] = {k: np.asarray(v).tolist() for k, v in self.points.items()}
        return json_safe(out)


def _require_chinchilla(result: FitResult, what: str) -> None:
    if not hasattr(result, "theta_"):
        raise FitError(f"{what} needs a fitted result; call fit('chinchilla', frame) first")
    if result.law_.name != "chinchilla":
        raise FitError(
            f"{what} needs a 'chinchilla' fit of L(N, D); got law {result.law_.name!r} "
            "(fit with --law chinchilla on runs with params and tokens)"
        )


def _closed_form(params: Mapping[str, np.ndarray], flops: float):
    """Hoffmann et al. eq. 4, vectorised over parameter samples."""
    E, A, B = params["E"], params["A"], params["B"]
    alpha, beta = params["alpha"], params["beta"]
    with np.errstate(all="ignore"):
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        a, b = beta / (alpha + beta), alpha / (alpha + beta)
        n_opt = G * (flops / 6.0) ** a
        d_opt = (flops / 6.0) ** b / G
        loss = E + A / n_opt**alpha + B / d_opt**beta
    return n_opt, d_opt, loss, G, a, b


def compute_optimal(flops: float, result: FitResult, interval: float = 0.9) -> Allocation:
    """Compute-optimal N and D for budget ``flops`` from a Chinchilla fit, with intervals.

    Parameters
    ----------
    flops : float
        Budget C in FLOPs (C = 6·N·D).
    result : FitResult
        A fitted ``chinchilla`` law.
    interval : float
        Level of the bootstrap intervals.

    Returns
    -------
    Allocation

    Raises
    ------
    FitError
        If ``result`` is not a Chinchilla fit or ``flops`` is not positive.

    Examples
    --------
    >>> from scaling.laws.fitting import FitResult
    >>> result = FitResult.from_dict(_reference_fit())
    >>> best = compute_optimal(5.76e23, result)
    >>> f"{best.params:.3g} {best.tokens:.3g}"  # Hoffmann et al.'s rounded fit at Gopher's budget
    '3.22e+10 2.98e+12'
    """
    _require_chinchilla(result, "compute_optimal")
    if not (np.isfinite(flops) and flops > 0):
        raise FitError(f"flops = {flops} must be a positive number of FLOPs")
    n_opt, d_opt, loss, *_ = _closed_form(result.params_, float(flops))
    samples = result.law_.to_natural(result.bootstrap_theta_)
    n_s, d_s, l_s, *_ = _closed_form(samples, float(flops))
    return Allocation(
        flops=float(flops),
        params=float(n_opt),
        tokens=float(d_opt),
        loss=float(loss),
        params_interval=quantile_interval(np.asarray(n_s), interval),
        tokens_interval=quantile_interval(np.asarray(d_s), interval),
        loss_interval=quantile_interval(np.asarray(l_s), interval),
        tokens_per_param=float(d_opt / n_opt),
        interval=interval,
    )


def _reference_fit() -> dict[str, Any]:
    """Hoffmann et al.'s published fit as a saved fit without bootstrap (for examples)."""
    law = get_law("chinchilla")
    params = law.reference
    theta = law.from_natural(params).tolist()
    return {
        "format": "scaling.fit/1", "law": "chinchilla", "x": ["params", "tokens"], "y": "loss",
        "theta": theta, "start_theta": theta, "bootstrap_theta": [], "log_residuals": [],
        "n_bootstrap_requested": 0, "seed": 0, "delta": 1e-3, "interval": 0.95, "screen": True,
        "params": {k: {"lower": None, "upper": None, "at_bound": False} for k in params},
        "objective": None, "converged": True, "n_points": 0, "n_starts": 0,
        "n_starts_converged": 0, "n_starts_screened": 0, "n_bootstrap_failed": 0,
        "starts_disagree": False, "reasons": [], "x_range": {}, "fit_seconds": 0.0,
    }


def approach3(result: FitResult, interval: float = 0.9) -> AllocationLaw:
    """Approach 3: the allocation law implied by a Chinchilla fit, with bootstrap intervals.

    Raises
    ------
    FitError
        If ``result`` is not a Chinchilla fit.
    """
    _require_chinchilla(result, "approach3")
    *_, G, a, b = _closed_form(result.params_, 6.0)
    *_, G_s, a_s, b_s = _closed_form(result.law_.to_natural(result.bootstrap_theta_), 6.0)
    return AllocationLaw(
        approach=3,
        a=float(a),
        b=float(b),
        coefficient=float(G * 6.0**-a),
        a_interval=quantile_interval(np.asarray(a_s), interval),
        b_interval=quantile_interval(np.asarray(b_s), interval),
        n_bootstrap=len(result.bootstrap_theta_),
        interval=interval,
    )


def _allocation_table(frame: pd.DataFrame, flops: str, source: str) -> pd.DataFrame:
    columns = ["params", flops, "loss"]
    require_columns(frame, columns, source)
    table = coerce_numeric(frame, columns, source)
    if "role" in table.columns:
        table = table[table["role"].astype(str) != "target"]
    values = table[columns].to_numpy(dtype=float)
    if not (np.isfinite(values) & (values > 0)).all():
        raise FitError(f"{source}: params, {flops} and loss must be finite and positive in every run")
    return table


def _power_fit(flops: np.ndarray, params_opt: np.ndarray) -> tuple[float, float]:
    a, log_k = np.polyfit(np.log(flops), np.log(params_opt), 1)
    return float(a), float(np.exp(log_k))


def _envelope(log_c: np.ndarray, log_n: np.ndarray, loss: np.ndarray, width: float):
    bins = np.floor(log_c / width)
    best_c, best_n, best_loss = [], [], []
    for key in np.unique(bins):
        members = np.flatnonzero(bins == key)
        i = members[np.argmin(loss[members])]
        if not best_loss or loss[i] < best_loss[-1]:  # keep the lower envelope only
            best_c.append(log_c[i]), best_n.append(log_n[i]), best_loss.append(loss[i])
    return np.array(best_c), np.array(best_n)


def _isoflop_minima(log_c: np.ndarray, log_n: np.ndarray, loss: np.ndarray, width: float, min_points: int):
    groups = np.round(log_c / width)
    centres, minima = [], []
    for key in np.unique(groups):
        members = np.flatnonzero(groups == key)
        if np.unique(log_n[members]).size < min_points:
            continue
        curvature, slope, _ = np.polyfit(log_n[members], loss[members], 2)
        if curvature <= 0:
            continue
        vertex = -slope / (2 * curvature)
        if log_n[members].min() <= vertex <= log_n[members].max():
            centres.append(log_c[members].mean())
            minima.append(vertex)
    return np.array(centres), np.array(minima)


def _approach_from_points(number, finder, frame, flops, n_bootstrap, seed, interval, source, need):
    table = _allocation_table(frame, flops, source)
    log_c = np.log10(table[flops].to_numpy(dtype=float))
    log_n = np.log10(table["params"].to_numpy(dtype=float))
    loss = table["loss"].to_numpy(dtype=float)
    centres, n_opt = finder(log_c, log_n, loss)
    if centres.size < need:
        raise FitError(
            f"{source}: approach {number} found {centres.size} compute-optimal point(s), needs "
            f"{need}; add runs at more compute budgets (or widen the bins)"
        )
    a, coefficient = _power_fit(10**centres, 10**n_opt)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_bootstrap):
        pick = rng.integers(0, len(loss), len(loss))
        c_b, n_b = finder(log_c[pick], log_n[pick], loss[pick])
        if c_b.size >= need and np.unique(c_b).size >= 2:
            draws.append(np.polyfit(c_b, n_b, 1)[0])
    draws = np.asarray(draws)
    return AllocationLaw(
        approach=number,
        a=a,
        b=1.0 - a,
        coefficient=coefficient,
        a_interval=quantile_interval(draws, interval),
        b_interval=tuple(1.0 - v for v in reversed(quantile_interval(draws, interval))),
        points={"flops": 10**centres, "params_opt": 10**n_opt},
        n_bootstrap=int(draws.size),
        interval=interval,
    )


def approach1(
    frame: pd.DataFrame,
    *,
    flops: str = "flops",
    bin_decades: float = 0.1,
    n_bootstrap: int = 200,
    seed: int = 0,
    interval: float = 0.9,
    source: str = "run table",
) -> AllocationLaw:
    """Approach 1: lower envelope of final loss over compute, then N_opt ∝ C^a.

    Runs are binned by ``log10 C`` (``bin_decades`` wide); the lowest-loss run of each bin
    that also beats every cheaper bin is taken as compute-optimal. Chinchilla took the
    envelope over training curves; with final losses only, each run gives one point.

    Raises
    ------
    FitError
        On missing/bad columns or fewer than 3 envelope points.
    """
    return _approach_from_points(
        1, lambda c, n, l: _envelope(c, n, l, bin_decades), frame, flops, n_bootstrap, seed,
        interval, source, need=3,
    )


def approach2(
    frame: pd.DataFrame,
    *,
    flops: str = "flops",
    bin_decades: float = 0.1,
    min_points: int = 4,
    n_bootstrap: int = 200,
    seed: int = 0,
    interval: float = 0.9,
    source: str = "run table",
) -> AllocationLaw:
    """Approach 2: IsoFLOP parabolas in log N, then N_opt ∝ C^a through their minima.

    Runs are grouped by ``log10 C`` rounded to ``bin_decades``; a group with at least
    ``min_points`` distinct sizes whose parabola opens upward with its vertex inside the
    sizes tried gives one (C, N_opt) point.

    Raises
    ------
    FitError
        On missing/bad columns or fewer than 3 IsoFLOP minima.
    """
    return _approach_from_points(
        2, lambda c, n, l: _isoflop_minima(c, n, l, bin_decades, min_points), frame, flops,
        n_bootstrap, seed, interval, source, need=3,
    )




def optional_chinchilla_fit(
    frame: pd.DataFrame, n_bootstrap: int = 1000, source: str = "run table"
) -> FitResult | None:
    """The Chinchilla fit behind the compute-optimal N and D, or None where the runs cannot
    carry it (e.g. three tuned shapes for five parameters): a loss prediction then stands alone."""
    try:
        return fit("chinchilla", frame, n_bootstrap=n_bootstrap, source=source)
    except FitError:
        return None
