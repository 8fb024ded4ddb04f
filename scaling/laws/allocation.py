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

When the approaches disagree at a budget, :func:`reconcile_allocations` says by how much and
which to trust: a valid estimate whose own bootstrap pins N_opt down most tightly there.
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
    "allocation_laws",
    "AllocationEstimate",
    "Reconciliation",
    "reconcile_allocations",
    "AGREEMENT",
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
    draws : ndarray
        The bootstrap fits of approaches 1 and 2, one row (slope, intercept) of
        log10 N_opt = slope·log10 C + intercept each (empty for 3).
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
    draws: np.ndarray = field(default_factory=lambda: np.empty((0, 2)), repr=False)

    def params_opt(self, flops: float | np.ndarray) -> np.ndarray:
        """N_opt for budgets ``flops``."""
        return self.coefficient * np.asarray(flops, dtype=float) ** self.a

    def params_interval(self, flops: float, interval: float | None = None) -> tuple[float, float]:
        """Bootstrap percentile interval of N_opt at budget ``flops`` (NaN without draws)."""
        draws = np.asarray(self.draws, dtype=float).reshape(-1, 2)
        values = 10.0 ** (draws[:, 0] * np.log10(float(flops)) + draws[:, 1])
        return quantile_interval(values, self.interval if interval is None else interval)

    def tokens_opt(self, flops: float | np.ndarray) -> np.ndarray:
        """D_opt = C / (6·N_opt) for budgets ``flops``."""
        return np.asarray(flops, dtype=float) / (6.0 * self.params_opt(flops))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe values (arrays become lists)."""
        out = asdict(self)
        out.pop("draws")
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
    alpha, beta = float(result.params_["alpha"]), float(result.params_["beta"])
    if not (alpha > 0 and beta > 0):  # Hoffmann et al.'s eq. 4 divides by both exponents
        raise FitError(
            f"{what}: the Chinchilla fit has alpha = {alpha:.3g} and beta = {beta:.3g}; with an "
            "exponent at 0 the loss does not fall along that axis, so no finite compute-optimal "
            "N and D exist (fit on runs that vary N and D apart, over a wider range)"
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
            draws.append(np.polyfit(c_b, n_b, 1))
    draws = np.asarray(draws, dtype=float).reshape(-1, 2)
    slopes = draws[:, 0]
    return AllocationLaw(
        approach=number,
        a=a,
        b=1.0 - a,
        coefficient=coefficient,
        a_interval=quantile_interval(slopes, interval),
        b_interval=tuple(1.0 - v for v in reversed(quantile_interval(slopes, interval))),
        points={"flops": 10**centres, "params_opt": 10**n_opt},
        n_bootstrap=int(len(draws)),
        interval=interval,
        draws=draws,
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




def allocation_laws(
    frame: pd.DataFrame, chinchilla: FitResult | None = None, *, n_bootstrap: int = 200,
    seed: int = 0, interval: float = 0.9, source: str = "run table",
) -> dict[int, AllocationLaw | str]:  # fmt: skip
    """Chinchilla's three approaches on one run table, each law or the reason it has none.

    Approaches 1 and 2 read ``params``, ``flops`` (6ND) and ``loss``; approach 3 is the
    closed form of ``chinchilla`` when given (a ``chinchilla`` fit of the same runs), else of
    a ``chinchilla`` fit made here with ``n_bootstrap`` resamples.

    Returns
    -------
    dict of int to AllocationLaw or str
        By approach (1, 2, 3): the law, or why it could not be fitted.
    """
    from scaling.errors import DataError

    out: dict[int, AllocationLaw | str] = {}
    for number, finder in ((1, approach1), (2, approach2)):
        try:
            out[number] = finder(frame, n_bootstrap=n_bootstrap, seed=seed, interval=interval,
                                 source=source)
        except (FitError, DataError) as error:
            out[number] = str(error)
    try:
        if chinchilla is None:
            chinchilla = fit("chinchilla", frame, n_bootstrap=n_bootstrap, seed=seed,
                             interval=interval, source=source)
        out[3] = approach3(chinchilla, interval=interval)
    except (FitError, DataError) as error:
        out[3] = str(error)
    return out


# Approaches whose N_opt at a budget differ by at most this factor agree.
AGREEMENT = 1.25
# Fewer bootstrap fits than this give no interval worth comparing.
MIN_DRAWS = 20


@dataclass(frozen=True)
class AllocationEstimate:
    """One approach's compute-optimal N at one budget, as :func:`reconcile_allocations` reads it.

    Attributes
    ----------
    approach : int
        1, 2 or 3.
    params : float
        N_opt at the budget.
    params_interval : tuple of float
        Its bootstrap interval (NaN where there is none).
    n_bootstrap : int
        Bootstrap fits behind the interval.
    invalid : str
        Why the estimate cannot be trusted (approach 3: its fit's reasons); empty when it can.
    interval : float
        Level of ``params_interval``.
    """

    approach: int
    params: float
    params_interval: tuple[float, float]
    n_bootstrap: int
    invalid: str = ""
    interval: float = 0.9

    @property
    def width(self) -> float:
        """Upper over lower bound of the interval: how many times N_opt may vary (NaN when
        the interval is unknown or rests on fewer than :data:`MIN_DRAWS` bootstrap fits)."""
        lo, hi = self.params_interval
        if self.n_bootstrap < MIN_DRAWS or not (np.isfinite(lo) and np.isfinite(hi) and lo > 0):
            return float("nan")
        return float(hi / lo)


@dataclass(frozen=True)
class Reconciliation:
    """How the approaches' N_opt at one budget compare, and which to trust.

    Attributes
    ----------
    ratio : float
        Largest N_opt over the smallest.
    agree : bool
        ``ratio`` at most :data:`AGREEMENT`.
    trusted : int or None
        The approach to trust (None when no estimate can be trusted).
    reason : str
        Why, as a phrase.
    """

    ratio: float
    agree: bool
    trusted: int | None
    reason: str


def reconcile_allocations(estimates: list[AllocationEstimate]) -> Reconciliation:
    """Compare the approaches' N_opt at one budget and say which to trust.

    An estimate is trusted when it is valid and its own bootstrap interval (at least
    :data:`MIN_DRAWS` fits) is the narrowest at this budget: each approach's interval carries
    what limits it (approach 2: the scatter of the few IsoFLOP minima; approach 3: how well
    the runs separate N from D in L(N, D)). Without a usable interval, approach 2 (N_opt read
    off measured profiles) comes before approach 3 (a fitted law's closed form) and 1.

    Raises
    ------
    FitError
        If fewer than two estimates are given.

    Examples
    --------
    >>> two = AllocationEstimate(2, 4.8e7, (3.9e7, 5.9e7), 200)
    >>> three = AllocationEstimate(3, 1.6e7, (2.7e6, 7.7e7), 200)
    >>> result = reconcile_allocations([two, three])
    >>> round(result.ratio, 1), result.agree, result.trusted
    (3.0, False, 2)
    >>> result.reason
    'its 90% interval is the narrowest (N_opt within 1.5x, against 29x for approach 3)'
    """
    if len(estimates) < 2:
        raise FitError("reconcile_allocations needs the estimates of two approaches or more")
    values = [e.params for e in estimates]
    ratio = float(max(values) / min(values))
    valid = [e for e in estimates if not e.invalid]
    usable = sorted((e for e in valid if np.isfinite(e.width)), key=lambda e: e.width)
    if usable:
        best = usable[0]
        others = [
            f"{e.width:.2g}x for approach {e.approach}" if np.isfinite(e.width)
            else f"none for approach {e.approach}"
            for e in estimates if e is not best
        ]
        against = others[0] if len(others) == 1 else ", ".join(others[:-1]) + f" and {others[-1]}"
        reason = (f"its {best.interval:.0%} interval is the narrowest (N_opt within "
                  f"{best.width:.2g}x, against {against})")
    elif valid:
        best = min(valid, key=lambda e: {2: 0, 3: 1, 1: 2}[e.approach])
        reason = ("no approach has a bootstrap interval to compare; approach 2 reads N_opt off "
                  "the measured profiles") if best.approach == 2 else (
                  "no approach has a bootstrap interval to compare")
    else:
        return Reconciliation(ratio, ratio <= AGREEMENT, None, "no estimate is valid")
    invalid = [f"approach {e.approach} is not valid ({e.invalid})" for e in estimates if e.invalid]
    if invalid:
        reason += "; " + "; ".join(invalid)
    return Reconciliation(ratio, ratio <= AGREEMENT, best.approach, reason)


def optional_chinchilla_fit(
    frame: pd.DataFrame, n_bootstrap: int = 1000, source: str = "run table"
) -> FitResult | None:
    """The Chinchilla fit behind the compute-optimal N and D, or None where the runs cannot
    carry it (e.g. three tuned shapes for five parameters, or a ladder at one tokens-per-parameter
    ratio, where N and D move together and the fit is not valid): a loss prediction then stands
    alone, rather than next to an allocation such as N = 508B at 0.0 tokens per parameter."""
    try:
        result = fit("chinchilla", frame, n_bootstrap=n_bootstrap, source=source)
    except FitError:
        return None
    return result if result.is_valid else None
