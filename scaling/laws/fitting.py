"""Robust scaling-law fits with bootstrap intervals, and backtests on held-out runs.

The method (Besiroglu et al. 2024's reading of Chinchilla's approach 3, used for every law):
Huber loss (delta 1e-3) of log(predicted) − log(observed), positive parameters in log
space, L-BFGS from every point of a grid of starts, keep the best; intervals from a
bootstrap over runs. All starts are optimised together (:mod:`scaling.laws.optimizer`), and the
bootstrap resamples are too: a resample is the same problem with integer weights per run.

This module reads no files and no MLflow: it takes a run table (a DataFrame).
Chinchilla's three approaches to the compute-optimal allocation, which build on these
fits, are in :mod:`scaling.laws.allocation`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import FitError, NotFittedError
from scaling.formatting import format_interval
from scaling.laws.forms import Law, get_law, vector_jacobian
from scaling.laws.optimizer import minimize_batched
from scaling.laws.selection import filter_rows, filter_text
from scaling.table import coerce_numeric, finished, require_columns

__all__ = [
    "FitResult",
    "fit",
    "run_arrays",
    "huber_objective",
    "parameter_rows",
    "fit_report",
    "overestimate_text",
    "OVERESTIMATE_CHOICES",
]

# Optimiser settings. The screening pass uses scipy's L-BFGS-B defaults (gtol 1e-5,
# ftol 2.2e-9); the best candidates are then polished far below that, so the optimum does
# not depend on where a loose stopping rule happened to stop.
_SCREEN = dict(gtol=1e-5, ftol=2.2e-9, max_iter=1000)
_POLISH = dict(gtol=1e-10, ftol=1e-15, max_iter=2000)
_BOOTSTRAP = dict(gtol=1e-8, ftol=1e-13, max_iter=1000)
# Successive halving over starts: at these iterations the best 20% of running starts go on.
_SCREEN_AT = (3, 6, 12, 24)
_N_POLISH = 8

#: The weights of over-predicted runs that ``overestimate="auto"`` chooses among.
OVERESTIMATE_CHOICES: tuple[float, ...] = (1.0, 3.0, 10.0)
# A weight above 1 is chosen only when it lowers the inner backtest's errors run by run, by more
# than this many standard errors of the mean paired difference: a gain inside the noise is
# chance, and a lean on a law that fits the runs is a bias.
_CHOICE_Z = 2.0
# The fewest held-out (run, cut) pairs of the inner backtest a lean may be chosen on, and the
# one-run band's drift rate measured on.
_CHOICE_MIN_HELD = 4


def huber_objective(law: Law, xs: Sequence[np.ndarray], y: np.ndarray, delta: float, weights=None,
                    overestimate: float = 1.0):
    """Batched objective for :func:`scaling.laws.optimizer.minimize_batched`.

    Returns ``fun(theta, rows) -> (f, g)``: for each problem, the (weighted) sum over runs of
    the Huber loss of ``log_pred - log y`` and its analytic gradient. ``weights``, when given,
    has one row of per-run weights per problem (bootstrap counts). ``overestimate`` multiplies
    the loss of runs the law predicts too high (``log_pred > log y``): above 1 the fit leans to
    the lower envelope of the runs.
    """
    log_y = np.log(y)

    def fun(theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_pred, terms = law.log_model(theta, xs)
        residual = log_pred - log_y
        size = np.abs(residual)
        loss = np.where(size <= delta, 0.5 * residual**2, delta * (size - 0.5 * delta))
        slope = np.clip(residual, -delta, delta)
        if overestimate != 1.0:
            side = np.where(residual > 0, overestimate, 1.0)
            loss, slope = loss * side, slope * side
        if weights is not None:
            loss = loss * weights[rows]
            slope = slope * weights[rows]
        value = loss.sum(axis=1)
        gradient = vector_jacobian(slope, terms)
        bad = ~np.isfinite(value) | ~np.isfinite(gradient).all(axis=1)
        value[bad] = np.inf
        return value, gradient

    return fun


# The fewest runs whose points are resampled run by run (a curve law's rows): with one or two
# curves every resample is nearly the same runs, and the interval would collapse to a point.
_MIN_BOOTSTRAP_RUNS = 5


def run_arrays(
    law: Law, frame: pd.DataFrame, x: Sequence[str], y: str, source: str = "run table"
) -> tuple[list[np.ndarray], np.ndarray, pd.DataFrame]:
    """Select the runs a law is fitted on and return its x arrays, y and the rows used.

    Runs marked ``role == 'target'`` are left out (they are what is predicted), and so are
    runs whose ``status`` is present and not ``FINISHED``.

    Raises
    ------
    FitError
        On missing columns, non-finite or non-positive values, a constant x column, or fewer
        runs than the law has parameters; the message names the column and the fix.
    """
    if not isinstance(frame, pd.DataFrame):
        raise FitError(f"{source}: expected a pandas DataFrame run table, got {type(frame).__name__}")
    columns = [*x, y]
    try:
        require_columns(frame, columns, source)
        frame = coerce_numeric(frame, columns, source)
    except Exception as error:  # DataError -> FitError: same message, fit-time exit code
        raise FitError(str(error)) from None
    keep = pd.Series(True, index=frame.index)
    if "role" in frame.columns:
        keep &= frame["role"].astype(str) != "target"
    keep &= finished(frame)
    used = frame[keep]
    for column in columns:
        values = used[column].to_numpy(dtype=float)
        linear = column in law.zero_x  # read linearly: 0 is a value, negatives are not
        bad = ~np.isfinite(values) | ((values < 0) if linear else (values <= 0))
        if bad.any():
            first = used.index[bad.nonzero()[0][0]]
            what = "negative" if linear else "non-positive"
            why = "the law needs it at 0 or above" if linear else "the law takes logs"
            raise FitError(
                f"{source}: column {column!r} has {int(bad.sum())} non-finite or {what} "
                f"value(s) (first: {values[bad][0]!r} at row {first}); {why}, so "
                "drop or fix those runs"
            )
    if len(used) <= law.n_params:
        raise FitError(
            f"{source}: {len(used)} usable run(s) but law {law.name!r} has {law.n_params} "
            f"parameters; fitting needs more runs than parameters"
        )
    for column in x:
        if used[column].nunique() < 2:
            raise FitError(
                f"{source}: column {column!r} is constant ({used[column].iloc[0]:g}); a law "
                "cannot be fitted without runs at different scales"
            )
    xs = [used[column].to_numpy(dtype=float) for column in x]
    return xs, used[y].to_numpy(dtype=float), used


def x_columns(law: Law, x: str | Sequence[str] | None) -> tuple[str, ...]:
    """The x columns to read: the law's own when None; a single name may be a plain string."""
    if x is None:
        return tuple(law.x)
    return (x,) if isinstance(x, str) else tuple(x)


class FitResult:
    """A scaling law fitted to a run table, in the scikit-learn estimator habit.

    The constructor only stores settings; :meth:`fit` learns the attributes with a trailing
    underscore and returns ``self``.

    Parameters
    ----------
    law : str or Law
        Law name (see :data:`scaling.laws.forms.LAWS`) or object.
    x : sequence of str, optional
        Run-table columns for the law's x values (default: the law's).
    y : str, optional
        Run-table column to fit (default: the law's).
    n_bootstrap : int
        Bootstrap resamples over runs for the intervals (0 for none).
    seed : int
        Seed of the bootstrap.
    delta : float
        Huber threshold on log residuals.
    interval : float
        Level of ``intervals_`` (two-sided, percentile bootstrap).
    screen : bool
        Successive halving over starts (fast); False runs every start to convergence.
    where : str, optional
        A pandas query over the run table; only the rows where it holds are fitted
        (:func:`scaling.laws.selection.filter_rows`).
    drop_top_loss : int
        Leave out the runs with the ``drop_top_loss`` highest values of ``y`` (after ``where``).
    overestimate : float or "auto"
        Weight of the loss of runs the law predicts too high, relative to those it predicts
        too low (1: symmetric, Besiroglu et al.'s method; above 1 the fit follows the lower
        envelope of the runs, the side a larger run lands on when the smaller ones are noisy
        or under-tuned). ``"auto"`` (the default) chooses it from :data:`OVERESTIMATE_CHOICES`
        by an inner backtest on the fitted runs only (:meth:`choose_overestimate`), for laws
        of loss over scale (``Law.scale_x``); other laws get 1.

    Attributes
    ----------
    law_ : Law
    x_, y_ : tuple of str, str
        Columns used.
    params_ : dict of str -> float
        Best-fit values (natural space).
    intervals_ : dict of str -> (float, float)
        Bootstrap percentile interval of each parameter at level ``interval``.
    theta_ : ndarray (P,)
        Best fit in fitting space (log of positive parameters).
    start_ : ndarray (P,)
        The start (fitting space) that led to the best fit.
    bootstrap_theta_ : ndarray (B, P)
        Bootstrap fits in fitting space (rows of failed resamples removed).
    objective_ : float
        Huber objective at the best fit.
    n_points_, n_starts_, n_starts_converged_, n_starts_screened_ : int
    n_bootstrap_failed_ : int
        Resamples whose fit did not converge (left out of the intervals).
    converged_ : bool
    bound_flags_ : dict of str -> bool
        Parameters within 1e-6 (relative to the bound span) of a bound, and positive
        parameters whose term adds less than 1% to every prediction (collapsed to 0).
    starts_disagree_ : bool
        Another start reached the same objective (relative 1e-6) at parameters more than 1%
        away: the optimum is not identified by the data.
    reasons_ : list of str
        Why the fit is not valid (empty when valid).
    log_residuals_ : ndarray (n,)
        log(predicted) − log(observed) at the best fit.
    x_range_ : dict of str -> (float, float)
        Range of each x column in the fitted runs.
    run_ids_ : ndarray (n,)
        ``run_id`` of each fitted run (the table's index when there is no such column).
    fit_seconds_ : float
    row_filter_ : dict
        The row filter applied before fitting: ``where``, ``drop_top_loss``, ``n_rows`` and
        ``n_kept`` (rows before and after it).
    overestimate_ : float
        The weight the fit used (the chosen one under ``"auto"``).
    overestimate_choice_ : dict
        How ``"auto"`` chose (:meth:`choose_overestimate`): ``errors`` (candidate -> mean
        held-out error of the inner backtest), ``z``, ``cuts``, ``scale_max``,
        ``extrapolation`` (the drift rate the one-run band adds beyond the fitted scales) and
        ``reason`` (why 1 was used without a choice); empty when the weight was given.
    """

    def __init__(
        self,
        law: str | Law = "gpt4",
        *,
        x: Sequence[str] | None = None,
        y: str | None = None,
        n_bootstrap: int = 1000,
        seed: int = 0,
        delta: float = 1e-3,
        interval: float = 0.95,
        screen: bool = True,
        where: str | None = None,
        drop_top_loss: int = 0,
        overestimate: float | str = "auto",
    ) -> None:
        self.law = law
        self.x = x
        self.y = y
        self.n_bootstrap = n_bootstrap
        self.seed = seed
        self.delta = delta
        self.interval = interval
        self.screen = screen
        self.where = where
        self.drop_top_loss = drop_top_loss
        self.overestimate = overestimate

    def __repr__(self) -> str:
        law = self.law.name if isinstance(self.law, Law) else self.law
        return (
            f"FitResult(law={law!r}, x={self.x!r}, y={self.y!r}, n_bootstrap={self.n_bootstrap}, "
            f"seed={self.seed}, delta={self.delta}, interval={self.interval}, screen={self.screen}, "
            f"where={self.where!r}, drop_top_loss={self.drop_top_loss}, overestimate={self.overestimate!r})"
        )

    # --- fitting ----------------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame, source: str = "run table") -> FitResult:
        """Fit the law to the runs of ``frame``; returns ``self``.

        Raises
        ------
        FitError
            On unusable input (see :func:`run_arrays`) or bad settings.
        """
        started = time.perf_counter()
        law = get_law(self.law)
        x = x_columns(law, self.x)
        y = self.y if self.y is not None else law.y
        if len(x) != len(law.x):
            raise FitError(
                f"law {law.name!r} reads {len(law.x)} x column(s) ({', '.join(law.x)}); "
                f"got {len(x)} ({', '.join(x)})"
            )
        if not 0 < self.interval < 1:
            raise FitError(f"interval = {self.interval} must lie strictly between 0 and 1")
        if self.n_bootstrap < 0:
            raise FitError(f"n_bootstrap = {self.n_bootstrap} must be 0 or more")
        if self.overestimate != "auto" and not (
            isinstance(self.overestimate, (int, float)) and np.isfinite(self.overestimate) and self.overestimate > 0
        ):
            raise FitError(f"overestimate = {self.overestimate!r} must be a positive number (1: symmetric) or 'auto'")
        if isinstance(frame, pd.DataFrame):
            frame, self.row_filter_ = filter_rows(
                frame, where=self.where, drop_top_loss=self.drop_top_loss, y=y, source=source
            )
        xs, values, used = run_arrays(law, frame, x, y, source)
        lower, upper = law.bound_arrays()
        if self.overestimate == "auto":
            self.overestimate_choice_ = self.choose_overestimate(law, xs, used, source)
            self.overestimate_ = self.overestimate_choice_["chosen"]
        else:
            self.overestimate_, self.overestimate_choice_ = float(self.overestimate), {}

        starts = law.start_grid(xs, values)
        objective = huber_objective(law, xs, values, self.delta, overestimate=self.overestimate_)
        screen_at = _SCREEN_AT if self.screen and len(starts) > 64 else ()
        first = minimize_batched(objective, starts, lower, upper, screen_at=screen_at, **_SCREEN)
        finite = np.isfinite(first.fun)
        if not finite.any():
            raise FitError(f"{source}: law {law.name!r} gives non-finite values from every start")
        best = np.argsort(np.where(finite, first.fun, np.inf), kind="stable")[:_N_POLISH]
        polished = minimize_batched(objective, first.x[best], lower, upper, **_POLISH)
        order = np.argsort(polished.fun, kind="stable")
        winner = order[0]

        self.law_ = law
        self.x_, self.y_ = x, y
        self.theta_ = polished.x[winner]
        self.start_ = starts[best[winner]]
        self.objective_ = float(polished.fun[winner])
        self.converged_ = bool(polished.converged[winner])
        self.n_points_ = len(values)
        self.n_starts_ = len(starts)
        self.n_starts_converged_ = int(first.converged.sum())
        self.n_starts_screened_ = int(first.screened.sum())
        self.params_ = {k: float(v) for k, v in law.to_natural(self.theta_).items()}
        self.log_residuals_ = law.log_model(self.theta_[None, :], xs)[0][0] - np.log(values)
        self.x_range_ = {c: (float(a.min()), float(a.max())) for c, a in zip(x, xs)}
        self.run_ids_ = (
            used["run_id"].astype(str).to_numpy() if "run_id" in used.columns else used.index.to_numpy()
        )
        span = np.maximum(upper - lower, 1.0)
        near_lower = np.abs(self.theta_ - lower) <= 1e-6 * span
        near_upper = np.abs(self.theta_ - upper) <= 1e-6 * span
        # A positive parameter whose term adds < 1% to every prediction has collapsed to its
        # natural bound, 0 (e.g. GPT-4's c on runs without visible irreducible loss), even if
        # the optimiser stopped before log(c) reached its numeric bound.
        log_pred, terms = law.log_model(self.theta_[None, :], xs)
        vanished = []
        for name, (weight, column) in zip(law.param_names, terms):
            effect = np.broadcast_to(weight * (1.0 if column is None else column), log_pred.shape)
            vanished.append(name in law.log_params and float(np.abs(effect).max()) < 1e-2)
        self.bound_flags_ = {
            name: bool(lo or hi or gone)
            for name, lo, hi, gone in zip(law.param_names, near_lower, near_upper, vanished)
        }
        same = polished.fun[order] <= self.objective_ + 1e-6 * max(abs(self.objective_), 1e-12)
        others = polished.x[order][same]
        scale = np.maximum(np.abs(self.theta_), 1e-3)
        self.starts_disagree_ = bool((np.abs(others - self.theta_) / scale > 1e-2).any())

        self._bootstrap(law, xs, values, lower, upper)
        self.reasons_ = self._reasons()
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _bootstrap(self, law, xs, values, lower, upper) -> None:
        n = len(values)
        if self.n_bootstrap == 0:
            self.bootstrap_theta_ = np.empty((0, law.n_params))
            self.n_bootstrap_failed_ = 0
        else:
            rng = np.random.default_rng(self.seed)
            # Rows of one run (the points of a learning curve) are resampled together: they
            # are not independent, and resampling points would make the intervals too narrow.
            # Below _MIN_BOOTSTRAP_RUNS runs there is too little to resample, and the points are.
            groups, member = np.unique(np.asarray(self.run_ids_).astype(str), return_inverse=True)
            k = len(groups) if _MIN_BOOTSTRAP_RUNS <= len(groups) < n else n
            counts = rng.multinomial(k, np.full(k, 1.0 / k), size=self.n_bootstrap).astype(float)
            counts = counts[:, member] if k < n else counts
            objective = huber_objective(law, xs, values, self.delta, weights=counts,
                                        overestimate=self.overestimate_)
            start = np.repeat(self.theta_[None, :], self.n_bootstrap, axis=0)
            out = minimize_batched(objective, start, lower, upper, **_BOOTSTRAP)
            ok = out.converged & np.isfinite(out.fun)
            self.bootstrap_theta_ = out.x[ok]
            self.n_bootstrap_failed_ = int((~ok).sum())
        tail = (1 - self.interval) / 2
        samples = law.to_natural(self.bootstrap_theta_)
        self.intervals_ = {
            name: (
                (float(np.quantile(samples[name], tail)), float(np.quantile(samples[name], 1 - tail)))
                if len(self.bootstrap_theta_)
                else (float("nan"), float("nan"))
            )
            for name in law.param_names
        }

    def choose_overestimate(self, law: Law, xs: Sequence[np.ndarray], used: pd.DataFrame,
                            source: str = "run table") -> dict[str, Any]:
        """The inner backtest behind ``overestimate="auto"``, on the fitted runs only.

        Along the law's scale (the product of its ``scale_x`` columns), the fitted runs are
        cut below their largest and their two largest scale levels
        (:func:`scaling.laws.rollouts.leave_largest_out_cuts`, each cut leaving more runs
        than the law has parameters and at least 5). Each candidate of
        :data:`OVERESTIMATE_CHOICES` is fitted below each cut (no bootstrap) and scored by the
        mean absolute relative error of the runs above it. A weight above 1 is chosen only
        when, paired run by run with the symmetric fit's errors (over both cuts), it lowers
        them by more than :data:`_CHOICE_Z` standard errors of the mean difference (``z``, per
        weight); of those, the lowest mean error wins. So a law that fits the runs up to noise
        stays symmetric, and the lean is taken only when the fitted runs' own largest scales
        show the symmetric fit landing off. Without a scale, a cut, or
        :data:`_CHOICE_MIN_HELD` runs above the cuts, the weight is 1 and ``reason`` says why.

        The chosen weight's inner log errors, each divided by its run's log distance beyond
        the cut, give ``extrapolation``, their RMS: the rate at which these runs' forecasts
        drift with extrapolation, which the one-run band of :meth:`predict` adds (None below
        :data:`_CHOICE_MIN_HELD` held-out runs: a rate read off one or two runs would set the
        band's width by chance).

        Returns ``{"chosen", "errors", "z", "cuts", "scale_max", "extrapolation", "reason"}``.
        """
        from scaling.laws.rollouts import leave_largest_out_cuts  # rollouts builds on this module

        choice: dict[str, Any] = {"chosen": 1.0, "errors": {}, "z": {}, "cuts": [], "extrapolation": None,
                                  "reason": None}
        if not law.scale_x:
            choice["reason"] = f"law {law.name!r} is not a law of loss over scale"
            return choice
        scale = law.scale(xs)
        min_fit = max(5, law.n_params + 1)
        cuts = leave_largest_out_cuts(pd.DataFrame({"scale": scale}), "scale", n_cuts=2, min_fit=min_fit)
        if not cuts:
            choice["reason"] = (f"{len(scale)} runs leave no inner backtest ({min_fit} runs below a "
                                "scale level and one above are needed)")
            return choice
        choice["cuts"], choice["scale_max"] = cuts, float(scale.max())
        held = int(sum((scale > cut).sum() for cut in cuts))
        if held < _CHOICE_MIN_HELD:  # neither a lean nor a drift rate is read off fewer runs
            choice["reason"] = (f"{held} runs above the inner cuts, too few to choose a lean on; "
                                f"{_CHOICE_MIN_HELD} needed")
            return choice
        distance = np.concatenate([np.log(scale[scale > cut] / cut) for cut in cuts])
        relative, signed = {}, {}
        for weight in OVERESTIMATE_CHOICES:
            relative[weight], signed[weight] = self._inner_errors(law, used, scale, cuts, weight, source)
            choice["errors"][weight] = float(np.mean(relative[weight]))
            if weight == 1.0 and not np.isfinite(choice["errors"][1.0]):
                choice["reason"] = "the symmetric fit failed below the inner cuts"
                return choice
        leaning = []
        for weight in OVERESTIMATE_CHOICES[1:]:
            gain = relative[1.0] - relative[weight]
            if not np.isfinite(gain).all():
                continue
            spread = float(np.std(gain, ddof=1)) / np.sqrt(gain.size)
            z = float(np.mean(gain)) / spread if spread > 0 else (np.inf if np.mean(gain) > 0 else 0.0)
            choice["z"][weight] = z
            if z > _CHOICE_Z:
                leaning.append(weight)
        if leaning:
            choice["chosen"] = min(leaning, key=lambda w: (choice["errors"][w], w))
        choice["extrapolation"] = _extrapolation_spread(signed[choice["chosen"]], distance)
        return choice

    def _inner_errors(self, law, used, scale, cuts, weight, source) -> tuple[np.ndarray, np.ndarray]:
        """Relative |error| and log error of each run above each cut, fitted below it with
        ``weight`` (inf and NaN for a cut whose fit fails)."""
        relative, signed = [], []
        for cut in cuts:
            below, above = scale <= cut, scale > cut
            try:
                inner = FitResult(law, x=x_columns(law, self.x), y=self.y, n_bootstrap=0, delta=self.delta,
                                  screen=self.screen, overestimate=weight).fit(used[below], source=source)
            except FitError:
                relative.append(np.full(int(above.sum()), np.inf))
                signed.append(np.full(int(above.sum()), np.nan))
                continue
            observed = used[above][inner.y_].to_numpy(dtype=float)
            point, _ = inner.predict(used[above], interval=0.9)
            relative.append(np.abs(point - observed) / observed)
            signed.append(np.log(point / observed))
        return np.concatenate(relative), np.concatenate(signed)

    def _reasons(self) -> list[str]:
        reasons = []
        if not np.isfinite(self.objective_):
            reasons.append("objective is not finite at the best fit")
        if not self.converged_:
            reasons.append("the best start did not converge (iteration cap or line search failed)")
        stuck = [name for name, flag in self.bound_flags_.items() if flag]
        if stuck:
            reasons.append(f"parameter(s) at a bound: {', '.join(stuck)}")
        if self.starts_disagree_:
            reasons.append("starts reach the same objective at different parameters (not identified)")
        if self.n_bootstrap and self.n_bootstrap_failed_ > 0.1 * self.n_bootstrap:
            reasons.append(
                f"{self.n_bootstrap_failed_} of {self.n_bootstrap} bootstrap fits did not converge"
            )
        return reasons

    # --- using the fit ----------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise NotFittedError("this FitResult is not fitted yet; call fit(frame) first")

    @property
    def is_valid(self) -> bool:
        """True when the fit converged, no parameter sits at a bound and starts agree."""
        self._check_fitted()
        return not self.reasons_

    @property
    def at_bound(self) -> bool:
        """True when any parameter sits at a bound (see ``bound_flags_``)."""
        self._check_fitted()
        return any(self.bound_flags_.values())

    def _x_arrays(self, x) -> list[np.ndarray]:
        if isinstance(x, pd.DataFrame):
            require_columns(x, self.x_, "prediction input")
            arrays = [x[c].to_numpy(dtype=float) for c in self.x_]
        elif isinstance(x, Mapping):
            missing = [c for c in self.x_ if c not in x]
            if missing:
                raise FitError(f"prediction input lacks {', '.join(missing)}; give {', '.join(self.x_)}")
            arrays = [np.atleast_1d(np.asarray(x[c], dtype=float)) for c in self.x_]
        elif len(self.x_) == 1:
            arrays = [np.atleast_1d(np.asarray(x, dtype=float))]
        else:
            if not isinstance(x, (tuple, list)) or len(x) != len(self.x_):
                raise FitError(
                    f"law {self.law_.name!r} needs {len(self.x_)} x values "
                    f"({', '.join(self.x_)}); pass a tuple, a dict or a DataFrame"
                )
            arrays = [np.atleast_1d(np.asarray(v, dtype=float)) for v in x]
        arrays = list(np.broadcast_arrays(*arrays))
        for column, values in zip(self.x_, arrays):
            if not (np.isfinite(values) & (values > 0)).all():
                raise FitError(f"prediction input {column!r} must be finite and positive")
        return arrays

    def predict(
        self, x, interval: float = 0.9, band: str = "fit"
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Predict y at ``x`` with a bootstrap band.

        Parameters
        ----------
        x : array-like, tuple, dict or DataFrame
            For a one-x law an array of x values; otherwise a tuple of arrays in the order of
            ``x_``, a dict or a DataFrame with those columns.
        interval : float
            Level of the two-sided percentile band.
        band : {"fit", "run"}
            ``"fit"``: where the fitted curve lies (bootstrap of the parameters).
            ``"run"``: where one new run's value lies — each bootstrap curve times the
            exponential of a log residual drawn from the fit (seeded), so the run-to-run
            scatter around the curve is included; and, where the fit chose its loss by an
            inner backtest (``overestimate_choice_["extrapolation"]``), a normal log error
            whose spread grows with the log distance beyond the largest fitted scale at the
            rate that backtest's forecasts drifted. Use ``"run"`` to judge held-out runs.

        Returns
        -------
        point : ndarray
        (lower, upper) : tuple of ndarray
            NaN when the fit has no bootstrap.
        """
        self._check_fitted()
        if not 0 < interval < 1:
            raise FitError(f"interval = {interval} must lie strictly between 0 and 1")
        if band not in ("fit", "run"):
            raise FitError(f"band = {band!r}; choose 'fit' (the curve) or 'run' (one new run)")
        arrays = self._x_arrays(x)
        point = np.exp(self.law_.log_model(self.theta_[None, :], arrays)[0][0])
        if len(self.bootstrap_theta_) == 0:
            nan = np.full_like(point, np.nan)
            return point, (nan, nan.copy())
        log_draws = self.law_.log_model(self.bootstrap_theta_, arrays)[0]
        if band == "run" and self.log_residuals_.size:
            rng = np.random.default_rng(self.seed)
            log_draws = log_draws - rng.choice(self.log_residuals_, size=log_draws.shape)
            spread = (self.overestimate_choice_ or {}).get("extrapolation")
            if spread:  # the drift the inner backtest measured, growing with the extrapolation
                beyond = np.log(np.maximum(self.law_.scale(arrays) / self.overestimate_choice_["scale_max"], 1.0))
                log_draws = log_draws + rng.normal(size=log_draws.shape) * spread * beyond.reshape(1, -1)
        draws = np.exp(log_draws)
        tail = (1 - interval) / 2
        return point, (np.quantile(draws, tail, axis=0), np.quantile(draws, 1 - tail, axis=0))

    def summary(self) -> dict[str, Any]:
        """Plain JSON-safe values: per-parameter value, interval, bounds and start; diagnostics."""
        self._check_fitted()
        lower, upper = self.law_.bound_arrays()
        start = self.law_.to_natural(self.start_)

        def natural_bound(name: str, value: float) -> float | None:
            if not np.isfinite(value):
                return None
            return float(np.exp(value)) if name in self.law_.log_params else float(value)

        params = {
            name: {
                "value": self.params_[name],
                "lower": _json_float(self.intervals_[name][0]),
                "upper": _json_float(self.intervals_[name][1]),
                "bound_lower": natural_bound(name, lower[i]),
                "bound_upper": natural_bound(name, upper[i]),
                "start": float(start[name]),
                "at_bound": self.bound_flags_[name],
                "log_space": name in self.law_.log_params,
            }
            for i, name in enumerate(self.law_.param_names)
        }
        return {
            "law": self.law_.name,
            "formula": self.law_.formula,
            "x": list(self.x_),
            "y": self.y_,
            "params": params,
            "interval": self.interval,
            "n_points": self.n_points_,
            "n_starts": self.n_starts_,
            "n_starts_converged": self.n_starts_converged_,
            "n_starts_screened": self.n_starts_screened_,
            "n_bootstrap": int(len(self.bootstrap_theta_)),
            "n_bootstrap_failed": self.n_bootstrap_failed_,
            "objective": _json_float(self.objective_),
            "rms_log_residual": float(np.sqrt(np.mean(self.log_residuals_**2))),
            "max_abs_log_residual": float(np.max(np.abs(self.log_residuals_))),
            "converged": self.converged_,
            "at_bound": self.at_bound,
            "starts_disagree": self.starts_disagree_,
            "is_valid": self.is_valid,
            "reasons": list(self.reasons_),
            "x_range": {k: list(v) for k, v in self.x_range_.items()},
            "delta": self.delta,
            "overestimate": self.overestimate_,
            "overestimate_choice": _choice_json(self.overestimate_choice_),
            "seed": self.seed,
            "fit_seconds": round(self.fit_seconds_, 3),
            "row_filter": dict(getattr(self, "row_filter_", None) or _NO_FILTER),
        }

    # --- saving -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to predict again later, as JSON-safe values."""
        out = self.summary()
        out["theta"] = self.theta_.tolist()
        out["start_theta"] = self.start_.tolist()
        out["bootstrap_theta"] = self.bootstrap_theta_.tolist()
        out["log_residuals"] = self.log_residuals_.tolist()
        out["run_ids"] = [str(run) for run in self.run_ids_]
        out["n_bootstrap_requested"] = self.n_bootstrap
        out["screen"] = self.screen
        out["format"] = "scaling.fit/1"
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "fit") -> FitResult:
        """Rebuild a fitted result from :meth:`to_dict` output (predicts; does not refit).

        Raises
        ------
        FitError
            If the dict is not a saved fit.
        """
        if data.get("format") != "scaling.fit/1":
            raise FitError(f"{source}: not a saved fit (expected format 'scaling.fit/1'); "
                           "write one with 'scaling fit --save FILE'")
        try:
            law = get_law(data["law"])
            result = cls(
                law,
                x=data["x"],
                y=data["y"],
                n_bootstrap=int(data["n_bootstrap_requested"]),
                seed=int(data["seed"]),
                delta=float(data["delta"]),
                overestimate=float(data.get("overestimate", 1.0)),  # saved before the choice: 1
                interval=float(data["interval"]),
                screen=bool(data["screen"]),
            )
            result.law_ = law
            result.x_, result.y_ = tuple(data["x"]), data["y"]
            result.theta_ = np.asarray(data["theta"], dtype=float)
            result.start_ = np.asarray(data["start_theta"], dtype=float)
            result.bootstrap_theta_ = np.asarray(data["bootstrap_theta"], dtype=float).reshape(
                -1, law.n_params
            )
            result.params_ = {k: float(v) for k, v in law.to_natural(result.theta_).items()}
            result.intervals_ = {
                k: (_from_json(v["lower"]), _from_json(v["upper"])) for k, v in data["params"].items()
            }
            result.objective_ = _from_json(data["objective"])
            result.converged_ = bool(data["converged"])
            result.n_points_ = int(data["n_points"])
            result.n_starts_ = int(data["n_starts"])
            result.n_starts_converged_ = int(data["n_starts_converged"])
            result.n_starts_screened_ = int(data["n_starts_screened"])
            result.n_bootstrap_failed_ = int(data["n_bootstrap_failed"])
            result.bound_flags_ = {k: bool(v["at_bound"]) for k, v in data["params"].items()}
            result.starts_disagree_ = bool(data["starts_disagree"])
            result.reasons_ = list(data["reasons"])
            result.x_range_ = {k: tuple(v) for k, v in data["x_range"].items()}
            result.log_residuals_ = np.asarray(data["log_residuals"], dtype=float)
            result.run_ids_ = np.asarray(data.get("run_ids", []), dtype=str)
            result.fit_seconds_ = float(data["fit_seconds"])
            result.row_filter_ = dict(data.get("row_filter") or _NO_FILTER)
            result.overestimate_ = float(data.get("overestimate", 1.0))
            result.overestimate_choice_ = _choice_from_json(data.get("overestimate_choice") or {})
            result.where = result.row_filter_.get("where")
            result.drop_top_loss = int(result.row_filter_.get("drop_top_loss") or 0)
        except (KeyError, TypeError, ValueError) as error:
            raise FitError(f"{source}: saved fit is incomplete or damaged ({error!r}); refit it") from None
        return result


_NO_FILTER = {"where": None, "drop_top_loss": 0, "n_rows": None, "n_kept": None}


def _extrapolation_spread(log_errors: np.ndarray, distance: np.ndarray) -> float | None:
    """RMS of an inner backtest's log errors per unit of log scale beyond its cut: how fast a
    forecast of these runs drifts as it extrapolates (None without a finite error)."""
    ok = np.isfinite(log_errors) & (distance > 0)
    return float(np.sqrt(np.mean((log_errors[ok] / distance[ok]) ** 2))) if ok.any() else None


def _choice_json(choice: Mapping[str, Any]) -> dict[str, Any]:
    if not choice:
        return {}
    return {**choice, "errors": {f"{w:g}": _json_float(e) for w, e in choice["errors"].items()},
            "z": {f"{w:g}": _json_float(z) for w, z in choice["z"].items()}}


def _choice_from_json(choice: Mapping[str, Any]) -> dict[str, Any]:
    if not choice:
        return {}
    return {**choice, "errors": {float(w): _from_json(e) for w, e in choice["errors"].items()},
            "z": {float(w): _from_json(z) for w, z in choice.get("z", {}).items()}}


def _json_float(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _from_json(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def fit(
    law: str | Law,
    frame: pd.DataFrame,
    *,
    x: Sequence[str] | None = None,
    y: str | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    delta: float = 1e-3,
    interval: float = 0.95,
    screen: bool = True,
    where: str | None = None,
    drop_top_loss: int = 0,
    overestimate: float | str = "auto",
    source: str = "run table",
) -> FitResult:
    """Fit ``law`` to the runs of ``frame`` (see :class:`FitResult` for the parameters).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> C = np.logspace(15, 19, 12)
    >>> frame = pd.DataFrame({"flops_exact": C, "loss": 40.0 * C**-0.1 + 1.5})
    >>> result = fit("gpt4", frame, n_bootstrap=50)
    >>> round(result.params_["b"], 4), round(result.params_["c"], 4), result.is_valid
    (-0.1, 1.5, True)
    """
    return FitResult(
        law, x=x, y=y, n_bootstrap=n_bootstrap, seed=seed, delta=delta, interval=interval,
        screen=screen, where=where, drop_top_loss=drop_top_loss, overestimate=overestimate,
    ).fit(frame, source=source)


# --- rendering a fit ---------------------------------------------------------------------------


def parameter_rows(result: FitResult) -> list[dict[str, Any]]:
    """One row per fitted parameter, in the law's order: what a table of the fit shows.

    Each row holds ``name``; ``value``; ``lower`` and ``upper``, the bootstrap interval at
    ``result.interval`` (NaN where the fit has no bootstrap); ``bound_lower`` and
    ``bound_upper``, the parameter's bounds in natural space (None where unbounded);
    ``at_bound``; and ``text``, the value with its interval as
    :func:`scaling.formatting.format_interval` writes it.
    """
    rows = []
    for name, p in result.summary()["params"].items():
        lower = float("nan") if p["lower"] is None else p["lower"]
        upper = float("nan") if p["upper"] is None else p["upper"]
        rows.append({
            "name": name, "value": p["value"], "lower": lower, "upper": upper,
            "bound_lower": p["bound_lower"], "bound_upper": p["bound_upper"],
            "at_bound": p["at_bound"], "text": format_interval(p["value"], lower, upper),
        })  # fmt: skip
    return rows


def overestimate_text(result: FitResult) -> str:
    """How the fit weighted runs it predicts too high, and how that weight was chosen."""
    weight = result.overestimate_
    what = "symmetric" if weight == 1 else f"over-predicted runs weighted {weight:g}x"
    choice = result.overestimate_choice_
    if not choice:
        return f"loss: {what} (given)"
    if choice.get("reason"):
        return f"loss: {what} ({choice['reason']})"
    errors = ", ".join(f"{w:g}x {100 * e:.2f}%" for w, e in choice["errors"].items())
    return f"loss: {what}, chosen by an inner backtest on the fitted runs (mean held-out error {errors})"


def fit_report(result: FitResult) -> str:
    """A fit as terminal text, as ``scaling fit`` prints it.

    The law, its formula and columns; each parameter with its interval (``AT BOUND`` where
    it sits at a bound); the runs, starts, bootstrap fits, RMS log residual and time; and
    the row filter, when one was given (``rows: where ...``); and ``valid`` or ``INVALID:``
    with the reasons. An invalid fit says so on its second line too (``NOT VALID:``), before
    any parameter.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> C = np.logspace(15, 19, 12)
    >>> frame = pd.DataFrame({"flops_exact": C, "loss": 40.0 * C**-0.1 + 1.5})
    >>> print(fit_report(fit("gpt4", frame, n_bootstrap=0)))  # doctest: +ELLIPSIS
    gpt4: L(C) = a·C^b + c   (flops_exact -> loss)
             a = 40 +nan/-nan  (95%)
             b = -0.1 +nan/-nan  (95%)
             c = 1.5 +nan/-nan  (95%)
      12 runs, ... starts (... screened out), 0 bootstrap fits, rms log residual ..., ... s
      loss: symmetric (3 runs above the inner cuts, too few to choose a lean on; 4 needed)
      valid
    """
    summary = result.summary()
    lines = [f"{summary['law']}: {summary['formula']}   ({', '.join(summary['x'])} -> {summary['y']})"]
    if not summary["is_valid"]:  # said first, before any number is read
        lines.append("  NOT VALID: " + "; ".join(summary["reasons"])
                     + " (the values and intervals below cannot be relied on)")
    level = round(100 * summary["interval"])
    for row in parameter_rows(result):
        flag = "  AT BOUND" if row["at_bound"] else ""
        lines.append(f"  {row['name']:>8} = {row['text']}  ({level}%){flag}")
    runs = len(set(map(str, result.run_ids_)))
    counted = (f"{summary['n_points']} runs" if runs == summary["n_points"]
               else f"{summary['n_points']} points of {runs} runs")  # a curve law's evaluations
    lines.append(
        f"  {counted}, {summary['n_starts']} starts "
        f"({summary['n_starts_screened']} screened out), {summary['n_bootstrap']} bootstrap fits, "
        f"rms log residual {summary['rms_log_residual']:.2g}, {summary['fit_seconds']:.2f} s"
    )
    rows = filter_text(summary["row_filter"])
    if rows:
        lines.append(f"  {rows}")
    lines.append(f"  {overestimate_text(result)}")
    lines.append("  valid" if summary["is_valid"] else "  INVALID: " + "; ".join(summary["reasons"]))
    return "\n".join(lines)
