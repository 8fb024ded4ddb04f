"""Batched bound-constrained L-BFGS: many independent small problems optimised together.

A scaling-law fit is thousands of tiny problems (one per start, or one per bootstrap
resample) of 2-5 parameters each. A Python loop of ``scipy.optimize.minimize`` calls spends
its time in per-call overhead; here every iteration evaluates all still-active problems in
one vectorised call, and each problem keeps its own L-BFGS memory, its own line search and
its own convergence test, so the result of each problem is what a separate run would give.

Bounds are handled by projection (a projected L-BFGS step with the variables held at a
bound removed from the quasi-Newton direction), which is enough for the box bounds of
scaling laws. Convergence follows scipy's L-BFGS-B tests: projected gradient ``<= gtol`` or
relative reduction of the objective ``<= ftol``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["BatchResult", "minimize_batched"]

# fun(theta (k, P), rows (k,)) -> (objective (k,), gradient (k, P)) for the problems `rows`.
BatchedObjective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class BatchResult:
    """Outcome of :func:`minimize_batched`, one entry per problem.

    Attributes
    ----------
    x : ndarray, shape (S, P)
        Final points.
    fun : ndarray, shape (S,)
        Objective at ``x``.
    converged : ndarray of bool, shape (S,)
        Whether a convergence test was met before ``max_iter`` / line-search failure.
    n_iter : ndarray of int, shape (S,)
        Iterations taken.
    n_evaluations : int
        Number of batched objective calls (each over the problems active at the time).
    screened : ndarray of bool, shape (S,)
        Problems stopped early by the ``screen_at`` rule (not converged, not failed).
    """

    x: np.ndarray
    fun: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    n_evaluations: int
    screened: np.ndarray


def _projected_gradient(x, g, lower, upper):
    """Gradient with the components that would push a bound variable outward set to 0."""
    pg = g.copy()
    pg[(x <= lower) & (g > 0)] = 0.0
    pg[(x >= upper) & (g < 0)] = 0.0
    return pg


def minimize_batched(
    fun: BatchedObjective,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    max_iter: int = 1000,
    memory: int = 10,
    gtol: float = 1e-8,
    ftol: float = 1e-12,
    max_backtracks: int = 40,
    screen_at: tuple[int, ...] = (),
    keep_fraction: float = 0.25,
    min_keep: int = 16,
) -> BatchResult:
    """Minimise S independent problems with projected L-BFGS, vectorised over problems.

    Parameters
    ----------
    fun : callable
        ``fun(theta, rows) -> (f, g)`` for the problems ``rows`` at points ``theta`` of shape
        (len(rows), P); ``f`` has shape (len(rows),) and ``g`` (len(rows), P).
    x0 : ndarray, shape (S, P)
        Starting points (clipped into the bounds).
    lower, upper : ndarray, shape (P,)
        Box bounds shared by all problems (``-inf``/``inf`` allowed).
    max_iter : int
        Iteration cap per problem.
    memory : int
        Number of L-BFGS correction pairs kept per problem.
    gtol : float
        Stop a problem when its largest projected-gradient component is below this.
    ftol : float
        Stop a problem when ``(f_old - f_new) / max(|f_old|, |f_new|, 1) <= ftol``.
    max_backtracks : int
        Step halvings allowed in one line search before a problem is stopped.
    screen_at : tuple of int
        Successive halving for multi-start fits: at each of these iteration counts, only
        the ``keep_fraction`` best still-running problems (by current objective, at least
        ``min_keep``) go on; the others are stopped and marked ``screened``. Empty (the
        default) runs every problem to convergence.
    keep_fraction, min_keep : float, int
        See ``screen_at``.

    Returns
    -------
    BatchResult

    Examples
    --------
    >>> import numpy as np
    >>> targets = np.array([[1.0, -2.0], [3.0, 0.5]])
    >>> def quadratic(theta, rows):
    ...     diff = theta - targets[rows]
    ...     return (diff**2).sum(axis=1), 2 * diff
    >>> out = minimize_batched(quadratic, np.zeros((2, 2)), np.full(2, -np.inf), np.full(2, np.inf))
    >>> np.round(out.x, 6).tolist(), bool(out.converged.all())
    ([[1.0, -2.0], [3.0, 0.5]], True)
    """
    lower = np.asarray(lower, dtype=float)
    upper = np.asarray(upper, dtype=float)
    state = _start(fun, x0, lower, upper, memory, gtol)
    for iteration in range(max_iter):
        rows = np.flatnonzero(~state.finished)
        if rows.size == 0:
            break
        if iteration in screen_at and rows.size > min_keep:
            rows = _screen(state, rows, keep_fraction, min_keep)
        _iterate(state, fun, rows, lower, upper, gtol, ftol, max_backtracks)
    return BatchResult(
        x=state.x,
        fun=state.f,
        converged=state.converged,
        n_iter=state.n_iter,
        n_evaluations=state.n_evaluations,
        screened=state.screened,
    )


@dataclass
class _State:
    """Every problem's point, objective, gradient, L-BFGS memory and flags; updated in place."""

    x: np.ndarray  # (S, P)
    f: np.ndarray  # (S,)
    g: np.ndarray  # (S, P)
    s_hist: np.ndarray  # (S, memory, P)
    y_hist: np.ndarray  # (S, memory, P)
    rho: np.ndarray  # (S, memory): 0 marks an empty slot; newest pair in slot 0
    converged: np.ndarray
    finished: np.ndarray
    n_iter: np.ndarray
    screened: np.ndarray
    n_evaluations: int


def _start(fun: BatchedObjective, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
           memory: int, gtol: float) -> _State:
    """The clipped starting points, evaluated, with empty memories; problems whose start is
    not finite are finished, those already stationary are converged."""
    x = np.clip(np.array(x0, dtype=float), lower, upper)
    n_problems, n_params = x.shape
    f, g = fun(x, np.arange(n_problems))
    state = _State(
        x=x,
        f=f,
        g=g,
        s_hist=np.zeros((n_problems, memory, n_params)),
        y_hist=np.zeros((n_problems, memory, n_params)),
        rho=np.zeros((n_problems, memory)),
        converged=np.zeros(n_problems, dtype=bool),
        finished=~np.isfinite(f),
        n_iter=np.zeros(n_problems, dtype=int),
        screened=np.zeros(n_problems, dtype=bool),
        n_evaluations=1,
    )
    pg = _projected_gradient(x, g, lower, upper)
    state.converged |= np.abs(pg).max(axis=1) <= gtol
    state.finished |= state.converged
    return state


def _screen(state: _State, rows: np.ndarray, keep_fraction: float, min_keep: int) -> np.ndarray:
    """Successive halving: stop all but the best ``keep_fraction`` of the running ``rows``
    (at least ``min_keep``), marking them screened; returns the rows that go on, sorted."""
    n_keep = max(min_keep, int(np.ceil(keep_fraction * rows.size)))
    order = np.argsort(state.f[rows], kind="stable")
    dropped = rows[order[n_keep:]]
    state.screened[dropped] = True
    state.finished[dropped] = True
    return np.sort(rows[order[:n_keep]])


def _iterate(state: _State, fun: BatchedObjective, rows: np.ndarray, lower: np.ndarray,
             upper: np.ndarray, gtol: float, ftol: float, max_backtracks: int) -> None:
    """One projected L-BFGS iteration of the problems ``rows``: direction, line search,
    memory update and convergence tests."""
    xa, ga, fa = state.x[rows], state.g[rows], state.f[rows]
    free = ~(((xa <= lower) & (ga > 0)) | ((xa >= upper) & (ga < 0)))
    q = np.where(free, ga, 0.0)
    direction = _two_loop_direction(q, free, state.s_hist[rows], state.y_hist[rows],
                                    state.rho[rows])
    _restart_non_descent(direction, ga, free, state.rho, rows)

    new_x, new_f, new_g, failed, calls = _projected_line_search(
        fun, xa, ga, fa, direction, rows, lower, upper, max_backtracks
    )
    state.n_evaluations += calls
    # A problem whose line search fails has reached the precision the objective allows.
    state.finished[rows[failed]] = True
    state.converged[rows[failed]] = np.abs(
        _projected_gradient(xa[failed], ga[failed], lower, upper)
    ).max(axis=1) <= np.sqrt(gtol)

    moved = ~failed
    rows_m = rows[moved]
    _update_memory(state, rows_m, new_x[moved] - xa[moved], new_g[moved] - ga[moved])

    f_old = state.f[rows_m]
    state.x[rows_m], state.f[rows_m], state.g[rows_m] = new_x[moved], new_f[moved], new_g[moved]
    state.n_iter[rows_m] += 1
    stop = _converged(state.x[rows_m], state.g[rows_m], f_old, state.f[rows_m], lower, upper,
                      gtol, ftol)
    state.converged[rows_m[stop]] = True
    state.finished[rows_m[stop]] = True


def _two_loop_direction(q: np.ndarray, free: np.ndarray, s_a: np.ndarray, y_a: np.ndarray,
                        rho_a: np.ndarray) -> np.ndarray:
    """L-BFGS two-loop recursion, every problem at once, on the free components ``q`` of the
    gradient; returns the quasi-Newton direction with the bound variables held at 0."""
    memory = rho_a.shape[1]
    # Empty slots have rho = 0: no effect.
    alphas = np.zeros((q.shape[0], memory))
    for j in range(memory):
        alphas[:, j] = rho_a[:, j] * np.einsum("kp,kp->k", s_a[:, j], q)
        q = q - alphas[:, j, None] * y_a[:, j]
    yy = np.einsum("kp,kp->k", y_a[:, 0], y_a[:, 0])
    has_pair = rho_a[:, 0] > 0
    gamma = np.where(
        has_pair,
        1.0 / np.maximum(rho_a[:, 0] * yy, 1e-300),
        1.0 / np.maximum(np.abs(q).max(axis=1), 1.0),
    )
    r = gamma[:, None] * q
    for j in reversed(range(memory)):
        beta = rho_a[:, j] * np.einsum("kp,kp->k", y_a[:, j], r)
        r = r + s_a[:, j] * (alphas[:, j] - beta)[:, None]
    return np.where(free, -r, 0.0)


def _restart_non_descent(direction: np.ndarray, ga: np.ndarray, free: np.ndarray,
                         rho: np.ndarray, rows: np.ndarray) -> None:
    """Where ``direction`` is not a descent direction (can happen after projection), restart
    from scaled steepest descent and empty that problem's memory; both in place."""
    slope = np.einsum("kp,kp->k", ga, direction)
    bad = ~(slope < 0)
    if bad.any():
        direction[bad] = -np.where(free[bad], ga[bad], 0.0) / np.maximum(
            np.abs(ga[bad]).max(axis=1, keepdims=True), 1.0
        )
        rho[rows[bad]] = 0.0


def _projected_line_search(
    fun: BatchedObjective, xa: np.ndarray, ga: np.ndarray, fa: np.ndarray,
    direction: np.ndarray, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray,
    max_backtracks: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Backtracking (Armijo) line search on the projected path, per problem, halving the
    step of the problems not yet accepted. Returns (new x, new f, new g, failed, objective
    calls); ``failed`` marks the problems without an accepted step."""
    step = np.ones(rows.size)
    new_x = np.empty_like(xa)
    new_f = np.full(rows.size, np.inf)
    new_g = np.empty_like(ga)
    searching = np.arange(rows.size)
    calls = 0
    for _ in range(max_backtracks):
        trial = np.clip(xa[searching] + step[searching, None] * direction[searching], lower, upper)
        f_trial, g_trial = fun(trial, rows[searching])
        calls += 1
        decrease = np.einsum("kp,kp->k", ga[searching], trial - xa[searching])
        ok = np.isfinite(f_trial) & (f_trial <= fa[searching] + 1e-4 * decrease)
        done = searching[ok]
        new_x[done], new_f[done], new_g[done] = trial[ok], f_trial[ok], g_trial[ok]
        searching = searching[~ok]
        if searching.size == 0:
            break
        step[searching] *= 0.5
    failed = np.zeros(rows.size, dtype=bool)
    failed[searching] = True
    return new_x, new_f, new_g, failed, calls


def _update_memory(state: _State, rows_m: np.ndarray, s_new: np.ndarray,
                   y_new: np.ndarray) -> None:
    """Push the correction pair (s, y) of each moved problem into slot 0 of its memory,
    dropping the oldest; pairs with too little curvature (s·y) are skipped."""
    sy = np.einsum("kp,kp->k", s_new, y_new)
    keep = sy > 1e-10 * np.einsum("kp,kp->k", y_new, y_new)
    upd = rows_m[keep]
    s_hist, y_hist, rho = state.s_hist, state.y_hist, state.rho
    s_hist[upd] = np.concatenate([s_new[keep][:, None], s_hist[upd, :-1]], axis=1)
    y_hist[upd] = np.concatenate([y_new[keep][:, None], y_hist[upd, :-1]], axis=1)
    rho[upd] = np.concatenate([(1.0 / sy[keep])[:, None], rho[upd, :-1]], axis=1)


def _converged(x: np.ndarray, g: np.ndarray, f_old: np.ndarray, f_new: np.ndarray,
               lower: np.ndarray, upper: np.ndarray, gtol: float, ftol: float) -> np.ndarray:
    """scipy's L-BFGS-B tests after a step: projected gradient ``<= gtol`` or relative
    reduction of the objective ``<= ftol``."""
    pg = _projected_gradient(x, g, lower, upper)
    small_gradient = np.abs(pg).max(axis=1) <= gtol
    small_change = (f_old - f_new) <= ftol * np.maximum.reduce(
        [np.abs(f_old), np.abs(f_new), np.ones(f_new.size)]
    )
    return small_gradient | small_change
