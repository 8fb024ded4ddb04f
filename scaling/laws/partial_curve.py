"""Where a run that is still training will land: its final loss from its partial curve.

The method (README, "The large run"): the evaluations at or beyond ``skip`` (10%) of the run's
planned tokens ``T`` are fitted by least squares and the fit is evaluated at ``T``.

- **Without the learning-rate schedule**, the law is ``L(t) = E + A * t^(-alpha)``: for each
  ``alpha`` on a grid the fit is linear in ``E`` and ``A`` (``A >= 0``); the best ``alpha``
  wins, refined between grid points (:func:`fit_partial_curve`; a projection needs five
  evaluations, :data:`MIN_EVALS`).
- **With the schedule** (the learning rate over the whole planned run, known before it
  starts), the law is the learning-rate annealing law of Tissue et al. (2024, "Scaling Law
  with Learning Rate Annealing"): ``L(t) = E + A * S1(t)^(-alpha) - C * S2(t)``, where ``S1`` is
  the area under the learning-rate curve up to ``t`` (the distance the run has travelled) and
  ``S2`` the annealing area, the learning rate's drops accumulated with a memory that fades
  over :data:`MEMORY` of the run (their momentum form; the drops only: warmup's rise is not
  annealing). For each ``alpha`` the fit is linear in ``E``, ``A`` and ``C`` (``A, C >= 0``,
  :func:`fit_annealing_curve`; six for a projection). With a constant learning rate
  ``S2`` is 0 and ``S1`` grows with ``t``: the law is the power law again. A cosine or WSD
  run's curve bends with its schedule, which the power law in tokens cannot follow.

With a registered forecast as prior, the projection is the blend ``f * curve + (1 - f) *
forecast`` where ``f`` is the fraction of ``T`` observed: early on the proxies' forecast
dominates, near the end the run's own curve does.

Pure numpy: no files, no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ALPHAS", "MEMORY", "MIN_EVALS", "SKIP", "Schedule", "schedule_areas", "fit_partial_curve",
           "fit_annealing_curve", "project_final"]

ALPHAS = np.geomspace(0.05, 2.0, 80)  # exponents tried by fit_partial_curve and fit_annealing_curve
# How long the annealing law remembers a drop of the learning rate, as a fraction of the run:
# a drop's effect on the loss builds up over about this much of training. Measured on the
# demo's 8 proxies (benchmarks/partial_curve.py --experiment demo --calibrate): fitting the
# law to every proxy's whole curve but one, 0.1 fitted best of 0, 0.02, 0.05, 0.1, 0.2 and 0.3
# for each proxy left out.
MEMORY = 0.1
SKIP = 0.1  # evaluations before this fraction of the planned tokens are left out of the fits
# Evaluations past SKIP a projection needs: two more than the law's parameters (3 for the power
# law, 4 for the annealing law). With only as many, the fit passes through every point for
# almost any exponent and the projection is noise: on a real run trained at a sixteenth of
# the demo's learning rate, which landed 7% above the band, the annealing law through its
# first 4 evaluations past 10% projected 51% below where the run ended, and the blend left the
# band on the low side (README, "How watch projects").
MIN_EVALS = {"power": 5, "annealing": 6}
_GRID = 2000  # points of the uniform token grid the areas are computed on


@dataclass(frozen=True)
class Schedule:
    """The learning rate of a run over its planned tokens, on a uniform grid of tokens.

    Attributes
    ----------
    tokens : ndarray
        The grid, ``T / n`` to ``T``.
    lr : ndarray
        Learning rate at each grid point, over its peak (1 at the peak).
    s1, s2 : ndarray
        The area under ``lr`` up to each grid point (in units of peak x ``T``) and the
        annealing area (see :func:`schedule_areas`).
    """

    tokens: np.ndarray
    lr: np.ndarray
    s1: np.ndarray
    s2: np.ndarray

    def at(self, tokens) -> tuple[np.ndarray, np.ndarray]:
        """``S1`` and ``S2`` at ``tokens`` (interpolated on the grid)."""
        t = np.asarray(tokens, float)
        return np.interp(t, self.tokens, self.s1), np.interp(t, self.tokens, self.s2)


def schedule_areas(tokens, lr, total_tokens: float, *, memory: float = MEMORY,
                   n: int = _GRID) -> Schedule:
    """The areas of the annealing law from a run's learning rate over its planned tokens.

    Parameters
    ----------
    tokens, lr : array-like
        The learning rate (any units: it is divided by its peak) at tokens seen, covering the
        run up to ``total_tokens``: the schedule planned (``scaling forecast --target-spec``
        records it) or the ``train/lr`` a finished run logged.
    total_tokens : float
        Tokens at the end of the run (``T``).
    memory : float, default MEMORY
        Fraction of the run over which a drop of the learning rate is remembered: the
        momentum of Tissue et al. is ``lambda = exp(-1 / (memory * n))`` per grid step.
    n : int
        Points of the uniform token grid.

    Returns
    -------
    Schedule
        ``S1(t)``: the area under ``lr / peak`` up to ``t`` over ``T`` (0.55 at the end of a
        cosine schedule to 10% of the peak); ``S2(t)``: the sum of ``m`` over the grid, ``m``
        the drops of the learning rate with momentum ``lambda``, over ``memory * n`` (so that
        with no memory ``S2`` is the drop from the peak to the current rate).

    Raises
    ------
    ValueError
        If the schedule has no positive learning rate or does not reach ``total_tokens``.

    Examples
    --------
    >>> constant = schedule_areas([0.0, 1e9], [1e-3, 1e-3], 1e9)
    >>> float(constant.s1[-1]), float(constant.s2[-1])
    (1.0, 0.0)
    """
    t = np.asarray(tokens, float)
    rate = np.asarray(lr, float)
    keep = np.isfinite(t) & np.isfinite(rate)
    t, rate = t[keep], rate[keep]
    order = np.argsort(t, kind="stable")
    t, rate = t[order], rate[order]
    if not len(rate) or rate.max() <= 0:
        raise ValueError("the learning-rate schedule has no positive value")
    if t.max() < total_tokens * (1 - 0.02):  # a log every 1% of the steps may end short of T
        raise ValueError(f"the learning-rate schedule ends at {t.max():.4g} tokens, before the "
                         f"run's {total_tokens:.4g}")
    grid = np.linspace(total_tokens / n, total_tokens, n)
    eta = np.interp(grid, t, rate) / rate.max()
    s1 = np.cumsum(eta) / n
    drops = np.maximum(np.concatenate([[0.0], eta[:-1] - eta[1:]]), 0.0)
    steps = memory * n
    if steps <= 0:
        s2 = np.cumsum(drops)
    else:
        decay = math.exp(-1.0 / steps)
        momentum = np.empty(n)
        m = 0.0
        for i in range(n):  # m_i = lambda m_(i-1) + drop_i (Tissue et al., eq. 4)
            m = decay * m + drops[i]
            momentum[i] = m
        s2 = np.cumsum(momentum) / steps
    return Schedule(tokens=grid, lr=eta, s1=s1, s2=s2)


def fit_partial_curve(tokens, loss, *, alphas=ALPHAS) -> tuple[float, float, float] | None:
    """Least-squares fit of ``L(t) = E + A * t^(-alpha)`` with ``A >= 0``.

    Parameters
    ----------
    tokens, loss : array-like
        Tokens seen and loss at each evaluation used.
    alphas : array-like
        Exponents tried; for each the fit is linear in ``E`` and ``A``.

    Returns
    -------
    (E, A, alpha) or None
        None with fewer than three points.

    Examples
    --------
    >>> t = np.array([1e6, 2e6, 4e6, 8e6])
    >>> E, A, alpha = fit_partial_curve(t, 2.0 + 50.0 * t ** -0.3)
    >>> round(E, 3)
    2.0
    """
    t = np.asarray(tokens, float)
    y = np.asarray(loss, float)
    keep = np.isfinite(t) & np.isfinite(y) & (t > 0)
    t, y = t[keep], y[keep]
    if len(t) < 3:
        return None
    scale = t.max()  # t / scale in (0, 1]: well conditioned for every alpha
    alpha = _best_alpha(lambda a: _linear_fit(t / scale, y, a)[0], alphas)
    _, e, a = _linear_fit(t / scale, y, alpha)
    return e, a * scale**alpha, float(alpha)


def fit_annealing_curve(s1, s2, loss, *, alphas=ALPHAS) -> tuple[float, float, float, float] | None:
    """Least-squares fit of ``L = E + A * S1^(-alpha) - C * S2`` with ``A, C >= 0``.

    Parameters
    ----------
    s1, s2 : array-like
        The areas of the schedule at each evaluation used (:meth:`Schedule.at`).
    loss : array-like
        The loss there.
    alphas : array-like
        Exponents tried; for each the fit is linear in ``E``, ``A`` and ``C``.

    Returns
    -------
    (E, A, C, alpha) or None
        None with fewer than four points.

    Examples
    --------
    >>> s1, s2 = np.linspace(0.1, 0.5, 6), np.linspace(0.0, 0.4, 6) ** 2
    >>> E, A, C, alpha = fit_annealing_curve(s1, s2, 1.5 + 0.2 * s1 ** -0.5 - 0.3 * s2)
    >>> round(E, 4), round(A, 4), round(C, 4), round(alpha, 3)
    (1.5, 0.2, 0.3, 0.5)
    """
    u = np.asarray(s1, float)
    v = np.asarray(s2, float)
    y = np.asarray(loss, float)
    keep = np.isfinite(u) & np.isfinite(v) & np.isfinite(y) & (u > 0)
    u, v, y = u[keep], v[keep], y[keep]
    if len(y) < 4:
        return None
    alpha = _best_alpha(lambda a: _annealing_fit(u, v, y, a)[0], alphas)
    _, e, a, c = _annealing_fit(u, v, y, alpha)
    return e, a, c, float(alpha)


def _best_alpha(error, alphas) -> float:
    """The exponent of least ``error`` on the grid, refined between its neighbours."""
    from scipy.optimize import minimize_scalar

    grid = np.asarray(alphas, float)
    errors = [error(alpha) for alpha in grid]
    i = int(np.argmin(errors))
    low, high = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    alpha = float(grid[i])
    if high > low:
        found = minimize_scalar(error, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
        if found.fun <= errors[i]:
            alpha = float(found.x)
    return alpha


def _linear_fit(u: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Sum of squared errors, E and A of ``y = E + A u^(-alpha)`` (A >= 0) at one alpha."""
    basis = u**-alpha
    design = np.column_stack([np.ones_like(basis), basis])
    (e, a), *_ = np.linalg.lstsq(design, y, rcond=None)
    if a < 0:  # a rising curve: the flat fit
        e, a = float(y.mean()), 0.0
    return float(np.sum((e + a * basis - y) ** 2)), float(e), float(a)


def _annealing_fit(u: np.ndarray, v: np.ndarray, y: np.ndarray,
                   alpha: float) -> tuple[float, float, float, float]:
    """Sum of squared errors, E, A and C of ``y = E + A u^(-alpha) - C v`` (A, C >= 0)."""
    from scipy.optimize import nnls

    design = np.column_stack([u**-alpha, -v])
    mean = design.mean(axis=0)
    scale = np.abs(design - mean).max(axis=0)
    scale[scale == 0] = 1.0  # a constant column (no annealing yet): its coefficient is 0
    (a, c), _ = nnls((design - mean) / scale, y - y.mean())  # E is the free intercept
    a, c = a / scale[0], c / scale[1]
    e = float(y.mean() - mean @ np.array([a, c]))
    return float(np.sum((e + design @ np.array([a, c]) - y) ** 2)), e, float(a), float(c)


def project_final(
    tokens, loss, total_tokens: float, *, prior: float | None = None, skip: float = SKIP,
    schedule: Schedule | None = None,
) -> float:  # fmt: skip
    """Projected final loss of a run at ``total_tokens`` from its partial curve.

    Parameters
    ----------
    tokens, loss : array-like
        The evaluations so far.
    total_tokens : float
        Tokens the run will have seen at its end (``T``).
    prior : float, optional
        The registered forecast of the final loss; when given, the projection is
        ``f * curve + (1 - f) * prior`` with ``f`` the observed fraction of ``T``.
    skip : float, default 0.1
        Evaluations before ``skip * T`` are left out of the fit (the early transient).
    schedule : Schedule, optional
        The run's learning rate over its planned tokens (:func:`schedule_areas`): the curve
        is then the annealing law's, else the power law's in tokens.

    Returns
    -------
    float
        The projection; while fewer evaluations than the law needs (:data:`MIN_EVALS`: five,
        six with a schedule) lie beyond ``skip * T``, the prior, or NaN without one (no
        projection yet).

    Examples
    --------
    >>> t = np.linspace(1e8, 5e8, 20)
    >>> round(project_final(t, 2.0 + 400.0 * t ** -0.3, 1e9), 4) == round(2.0 + 400.0 * 1e9 ** -0.3, 4)
    True
    """
    t = np.asarray(tokens, float)
    y = np.asarray(loss, float)
    seen = float(np.nanmax(t)) if len(t) else 0.0
    fraction = min(1.0, seen / total_tokens) if total_tokens > 0 else 0.0
    late = (t >= skip * total_tokens) & np.isfinite(y)
    if late.sum() < MIN_EVALS["power" if schedule is None else "annealing"]:
        return float(prior) if prior is not None else math.nan
    if schedule is None:
        fitted = fit_partial_curve(t[late], y[late])
        curve = None if fitted is None else fitted[0] + fitted[1] * float(total_tokens) ** -fitted[2]
    else:
        s1, s2 = schedule.at(t[late])
        fitted = fit_annealing_curve(s1, s2, y[late])
        if fitted is None:
            curve = None
        else:
            e, a, c, alpha = fitted
            end1, end2 = schedule.at([float(total_tokens)])
            curve = e + a * float(end1[0]) ** -alpha - c * float(end2[0])
    if curve is None:
        return float(prior) if prior is not None else math.nan
    if prior is None:
        return float(curve)
    return float(fraction * curve + (1.0 - fraction) * prior)
