"""Where a run that is still training will land: its final loss from its partial curve.

The method (docs/architecture.md, "The large run"): fit ``L(t) = E + A * t^(-alpha)`` by least
squares to the evaluations at or beyond ``skip`` (10%) of the run's planned tokens ``T``
(for each ``alpha`` on a grid the fit is linear in ``E`` and ``A``; the best ``alpha`` wins),
and evaluate it at ``T``. With a registered forecast as prior, the projection is the blend
``f * curve + (1 - f) * forecast`` where ``f`` is the fraction of ``T`` observed: early on the
proxies' forecast dominates, near the end the run's own curve does.

Pure numpy: no files, no MLflow.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ALPHAS", "fit_partial_curve", "project_final"]

ALPHAS = np.geomspace(0.05, 2.0, 80)  # exponents tried by fit_partial_curve


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
    grid = np.asarray(alphas, float)
    errors = [_linear_fit(t / scale, y, alpha)[0] for alpha in grid]
    i = int(np.argmin(errors))
    from scipy.optimize import minimize_scalar

    low, high = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    alpha = grid[i]
    if high > low:  # refine between the grid's neighbours
        found = minimize_scalar(lambda a: _linear_fit(t / scale, y, a)[0], bounds=(low, high),
                                method="bounded", options={"xatol": 1e-6})
        if found.fun <= errors[i]:
            alpha = float(found.x)
    _, e, a = _linear_fit(t / scale, y, alpha)
    return e, a * scale**alpha, float(alpha)


def _linear_fit(u: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """Sum of squared errors, E and A of ``y = E + A u^(-alpha)`` (A >= 0) at one alpha."""
    basis = u**-alpha
    design = np.column_stack([np.ones_like(basis), basis])
    (e, a), *_ = np.linalg.lstsq(design, y, rcond=None)
    if a < 0:  # a rising curve: the flat fit
        e, a = float(y.mean()), 0.0
    return float(np.sum((e + a * basis - y) ** 2)), float(e), float(a)


def project_final(
    tokens, loss, total_tokens: float, *, prior: float | None = None, skip: float = 0.1
) -> float:
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

    Returns
    -------
    float
        The projection; while fewer than three evaluations lie beyond ``skip * T``, the
        prior, or NaN without one (no projection yet).

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
    late = t >= skip * total_tokens
    fitted = fit_partial_curve(t[late], y[late])
    if fitted is None:
        return float(prior) if prior is not None else math.nan
    e, a, alpha = fitted
    curve = e + a * float(total_tokens) ** -alpha
    if prior is None:
        return float(curve)
    return float(fraction * curve + (1.0 - fraction) * prior)
