"""Scaling-law forms as small declarative objects.

A :class:`Law` says what it is (name, formula, parameter names), what it reads from the run
table (x columns, y column) and how to start fitting it (bounds, a grid of starts). It does
not optimise: :mod:`scaling.laws.fitting` does.

Every law is written as ``log y = f(theta, x)`` so that the fitting objective (Huber loss of
log residuals) and its gradient are the same for all of them. Positive parameters are fitted
in log space: the optimiser sees ``log E``, never ``E``. ``theta`` is always a 2-D array of
shape ``(S, P)`` — S problems (starts or bootstrap resamples) optimised together — whose
columns follow ``law.param_names``; packing and unpacking by name happens only in
:meth:`Law.to_natural` and :meth:`Law.from_natural`.

Sources: GPT-4 technical report (L(C) = a·C^b + c; −E[log pass_rate] = α·C^(−k)); Kaplan
et al. 2020 (L(N), L(D), L(N, D)); Hoffmann et al. 2022 and Besiroglu et al. 2024 (the
Chinchilla form and its start grid); DeepSeek LLM 2024 (learning-rate and batch-size laws);
Llama 3 and the OLMo ladder (a sigmoid from loss to a downstream metric); Muennighoff et al.
2023 (the data-constrained law with repeated tokens); Gadre et al. 2024 (L(C, M) over-training);
Tissue et al. 2024, "Scaling Law with Learning Rate Annealing" (the loss at every step of a run
from the areas under its learning-rate schedule, :mod:`scaling.training.curves`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import FitError

__all__ = ["Law", "LAWS", "get_law", "vector_jacobian"]

# A model returns log predictions (S, n) and, per parameter, a factored Jacobian column.
JacobianTerms = list[tuple[np.ndarray | float, np.ndarray | None]]
LogModel = Callable[[np.ndarray, Sequence[np.ndarray]], tuple[np.ndarray, JacobianTerms]]
StartGrid = Callable[[Sequence[np.ndarray], np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Law:
    """One scaling-law form.

    Parameters
    ----------
    name : str
        Short name used on the command line (``--law chinchilla``).
    formula : str
        The law as text, in the paper's symbols.
    param_names : tuple of str
        Parameter names in the order of the optimiser's columns.
    log_params : frozenset of str
        Parameters that must be positive and are fitted as their natural logarithm.
    x : tuple of str
        Default run-table columns the law reads (overridable at fit time).
    y : str
        Default run-table column the law predicts.
    bounds : dict
        ``name -> (lower, upper)`` in fitting space (i.e. on ``log E`` for a log parameter).
    log_model : callable
        ``log_model(theta, xs) -> (log_pred, terms)`` with ``theta`` of shape (S, P), ``xs``
        the x columns as 1-D arrays of length n and ``log_pred`` of shape (S, n). ``terms``
        holds, per parameter, a factored Jacobian column ``(weight, column)``:
        d log_pred / d theta_p = weight * column, with ``weight`` broadcastable to (S, n)
        and ``column`` an (n,) array or None (meaning 1). Factoring lets
        :func:`vector_jacobian` contract with a BLAS product instead of building an
        (S, n, P) array.
    start_grid : callable
        ``start_grid(xs, y) -> (S, P)`` starts in fitting space; may use the data to place
        scale parameters.
    reference : dict
        Published values (natural space) for comparison, e.g. DeepSeek's lr law.
    description : str
        One sentence on where the law comes from.
    scale_x : tuple of str
        For a law of loss over scale, the x columns whose product orders the runs by scale
        (compute, or N·D ∝ compute): the fit's ``overestimate="auto"`` backtests the fitted
        runs along it. Empty for every other law (a metric, a curve, a hyperparameter), where
        ``"auto"`` means a symmetric loss.
    """

    name: str
    formula: str
    param_names: tuple[str, ...]
    log_params: frozenset[str]
    x: tuple[str, ...]
    y: str
    bounds: Mapping[str, tuple[float, float]]
    log_model: LogModel = field(repr=False)
    start_grid: StartGrid = field(repr=False)
    reference: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    zero_x: frozenset[str] = frozenset()  # x columns the law reads linearly: 0 is allowed
    scale_x: tuple[str, ...] = ()

    @property
    def n_params(self) -> int:
        """Number of fitted parameters."""
        return len(self.param_names)

    def scale(self, xs: Sequence[np.ndarray]) -> np.ndarray:
        """The runs' scale: the product of the ``scale_x`` columns of ``xs`` (in ``x`` order)."""
        return np.prod([np.ravel(xs[self.x.index(column)]) for column in self.scale_x], axis=0)

    def bound_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds in fitting space, in parameter order."""
        lower = np.array([self.bounds[name][0] for name in self.param_names], dtype=float)
        upper = np.array([self.bounds[name][1] for name in self.param_names], dtype=float)
        return lower, upper

    def to_natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Fitting-space rows ``(..., P)`` to natural values by name (``exp`` of log params)."""
        theta = np.asarray(theta, dtype=float)
        return {
            name: np.exp(theta[..., i]) if name in self.log_params else theta[..., i]
            for i, name in enumerate(self.param_names)
        }

    def from_natural(self, params: Mapping[str, float]) -> np.ndarray:
        """Natural values by name to one fitting-space row of shape (P,)."""
        missing = [name for name in self.param_names if name not in params]
        if missing:
            raise FitError(
                f"law {self.name!r}: parameters {missing} missing; give all of {list(self.param_names)}"
            )
        row = []
        for name in self.param_names:
            value = float(params[name])
            if name in self.log_params:
                if value <= 0:
                    raise FitError(
                        f"law {self.name!r}: parameter {name} = {value} must be positive"
                    )
                value = np.log(value)
            row.append(value)
        return np.array(row)

    def predict(self, params: Mapping[str, float], *xs: np.ndarray) -> np.ndarray:
        """Evaluate the law at ``xs`` (natural parameter values by name).

        Examples
        --------
        >>> law = get_law("chinchilla")
        >>> p = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
        >>> round(float(law.predict(p, 70e9, 1.4e12)[0]), 3)
        1.937
        """
        arrays = [np.atleast_1d(np.asarray(x, dtype=float)) for x in xs]
        if len(arrays) != len(self.x):
            raise FitError(
                f"law {self.name!r} reads {len(self.x)} x value(s) ({', '.join(self.x)}), "
                f"got {len(arrays)}"
            )
        arrays = list(np.broadcast_arrays(*arrays))
        log_pred, _ = self.log_model(self.from_natural(params)[None, :], arrays)
        return np.exp(log_pred[0])


def vector_jacobian(vector: np.ndarray, terms: JacobianTerms) -> np.ndarray:
    """Contract ``vector`` (S, n) with a law's factored Jacobian: returns (S, P).

    Row s, column p is ``sum_i vector[s, i] * d log_pred[s, i] / d theta[s, p]``.
    """
    columns = []
    for weight, column in terms:
        weighted = vector * weight if not (np.isscalar(weight) and weight == 1.0) else vector
        weighted = np.broadcast_to(weighted, vector.shape)
        columns.append(weighted.sum(axis=1) if column is None else weighted @ column)
    return np.column_stack(columns)


def _product(**values: Sequence[float]) -> np.ndarray:
    """Cartesian product of per-parameter start values, columns in keyword order."""
    return np.array(list(itertools.product(*values.values())), dtype=float)


def _logsumexp_terms(terms: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """log(sum(exp(t))) over a list of (S, n) arrays and the softmax weight of each term."""
    top = np.maximum.reduce(terms)
    exps = [np.exp(t - top) for t in terms]
    total = sum(exps)
    return top + np.log(total), [e / total for e in exps]


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(x, dtype=float))


# --- power laws: log y = log a + b log x ---------------------------------------------------------


def _power_model(theta, xs):
    log_x = _log(xs[0])
    log_a, b = theta[:, 0:1], theta[:, 1:2]
    return log_a + b * log_x, [(1.0, None), (1.0, log_x)]


def _power_starts(xs, y):
    log_x, log_y = _log(xs[0]), _log(y)
    b = np.array([-1.0, -0.5, -0.1, 0.1, 0.5, 1.0])
    log_a = np.median(log_y[None, :] - b[:, None] * log_x[None, :], axis=1)
    return np.column_stack([log_a, b])


# --- GPT-4: L(C) = a C^b + c ----------------------------------------------------------------------


def _gpt4_model(theta, xs):
    log_c_x = _log(xs[0])
    log_a, b, log_c = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
    power = log_a + b * log_c_x
    log_pred, (w_power, w_floor) = _logsumexp_terms([power, np.broadcast_to(log_c, power.shape)])
    return log_pred, [(w_power, None), (w_power, log_c_x), (w_floor, None)]


def _gpt4_starts(xs, y):
    log_c_x = _log(xs[0])
    rows = []
    for b, floor_share in itertools.product(
        (-0.5, -0.3, -0.2, -0.1, -0.05, -0.02), (1e-3, 0.3, 0.6, 0.8, 0.9, 0.95)
    ):
        c = floor_share * float(np.min(y))
        log_a = float(np.median(np.log(y - c) - b * log_c_x))
        rows.append((log_a, b, np.log(c)))
    return np.array(rows)


# --- Kaplan et al. 2020 ---------------------------------------------------------------------------


def _kaplan_single_model(theta, xs):
    log_x = _log(xs[0])
    log_xc, alpha = theta[:, 0:1], theta[:, 1:2]
    gap = log_xc - log_x
    return alpha * gap, [(alpha, None), (gap, None)]


def _kaplan_single_starts(xs, y):
    log_x, log_y = _log(xs[0]), _log(y)
    alpha = np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.8])
    log_xc = np.median(log_y[None, :] / alpha[:, None] + log_x[None, :], axis=1)
    return np.column_stack([log_xc, alpha])


def _kaplan_nd_model(theta, xs):
    log_n, log_d = _log(xs[0]), _log(xs[1])
    log_nc, log_dc, alpha_n, alpha_d = (theta[:, i : i + 1] for i in range(4))
    ratio = alpha_n / alpha_d
    u_n = ratio * (log_nc - log_n)
    u_d = np.broadcast_to(log_dc - log_d, u_n.shape)
    inner, (w_n, w_d) = _logsumexp_terms([u_n, u_d])
    return alpha_d * inner, [
        (alpha_n * w_n, None),
        (alpha_d * w_d, None),
        (w_n * (log_nc - log_n), None),
        (inner - w_n * u_n, None),
    ]


def _kaplan_nd_starts(xs, y):
    log_n, log_d, log_y = _log(xs[0]), _log(xs[1]), _log(y)
    rows = []
    for alpha_n, alpha_d, n_scale, d_scale in itertools.product(
        (0.05, 0.1, 0.3), (0.05, 0.1, 0.3), (0.5, 1.0, 2.0), (0.5, 1.0, 2.0)
    ):
        log_nc = float(np.median(log_n + n_scale * log_y / alpha_n))
        log_dc = float(np.median(log_d + d_scale * log_y / alpha_d))
        rows.append((log_nc, log_dc, alpha_n, alpha_d))
    return np.array(rows)


# --- Chinchilla: L(N, D) = E + A/N^alpha + B/D^beta, fitted as a log-sum-exp ---------------------


def _chinchilla_model(theta, xs):
    log_n, log_d = _log(xs[0]), _log(xs[1])
    log_e, log_a, log_b, alpha, beta = (theta[:, i : i + 1] for i in range(5))
    term_n = log_a - alpha * log_n
    term_d = log_b - beta * log_d
    log_pred, (w_n, w_d, w_e) = _logsumexp_terms(
        [term_n, term_d, np.broadcast_to(log_e, term_n.shape)]
    )
    return log_pred, [(w_e, None), (w_n, None), (w_d, None), (w_n, -log_n), (w_d, -log_d)]


def _chinchilla_starts(xs, y):
    # Besiroglu et al. 2024: 5 x 6 x 6 x 5 x 5 = 4,500 starts.
    return _product(
        E=np.arange(-1.0, 1.01, 0.5),
        A=np.arange(0.0, 25.1, 5.0),
        B=np.arange(0.0, 25.1, 5.0),
        alpha=np.arange(0.0, 2.01, 0.5),
        beta=np.arange(0.0, 2.01, 0.5),
    )


# --- Muennighoff et al. 2023: data-constrained L(N, D, U_D) -------------------------------------


def _repetition_gain(log_r_star: np.ndarray, repeats: np.ndarray):
    """``log(1 + R*·(1 − exp(−R/R*)))`` and its derivatives in ``log R*`` and in ``R``.

    The effective count of a repeated resource is ``U·(1 + R*·(1 − exp(−R/R*)))``: each
    repetition is worth less, and at most ``R*`` repetitions' worth is ever gained.
    """
    r_star = np.exp(log_r_star)
    x = repeats / r_star
    decay = np.exp(-x)
    saturation = -np.expm1(-x)
    inner = 1.0 + r_star * saturation
    return np.log(inner), r_star * (saturation - x * decay) / inner, decay / inner


def _muennighoff_model(theta, xs):
    log_n, log_d, log_u = _log(xs[0]), _log(xs[1]), _log(xs[2])
    log_e, log_a, log_b, alpha, beta, log_rd, log_rn = (theta[:, i : i + 1] for i in range(7))
    repeats_d = np.maximum(np.expm1(log_d - log_u), 0.0)
    gain_d, d_rd, _ = _repetition_gain(log_rd, repeats_d)
    log_d_eff = log_u + gain_d
    # U_N = min(N, N_opt(U_D)): the compute-optimal size for U_D tokens under the law itself,
    # log N_opt = (log(alpha·A / (beta·B)) + beta·log U_D) / alpha.
    k = np.log(alpha) + log_a - np.log(beta) - log_b + beta * log_u
    log_n_opt = k / alpha
    capped = log_n_opt < log_n
    log_u_n = np.where(capped, log_n_opt, log_n)
    repeats_n = np.expm1(np.minimum(log_n - log_u_n, 50.0))
    gain_n, d_rn, d_repeats_n = _repetition_gain(log_rn, repeats_n)
    log_n_eff = log_u_n + gain_n
    # d log N' / d log N_opt where U_N = N_opt (0 where U_N = N).
    through = np.where(capped, 1.0 - d_repeats_n * (repeats_n + 1.0), 0.0)
    term_n = log_a - alpha * log_n_eff
    term_d = log_b - beta * log_d_eff
    log_pred, (w_n, w_d, w_e) = _logsumexp_terms(
        [term_n, term_d, np.broadcast_to(log_e, term_n.shape)]
    )
    via = w_n * through
    return log_pred, [
        (w_e, None),
        (w_n - via, None),
        (w_d + via, None),
        (-w_n * log_n_eff - via * (1.0 - k) / alpha, None),
        (-w_d * log_d_eff - via * (log_u - 1.0 / beta), None),
        (-beta * w_d * d_rd, None),
        (-alpha * w_n * d_rn, None),
    ]


def _muennighoff_starts(xs, y):
    # Besiroglu et al.'s ranges for E, A, B (coarser in alpha, beta), times R*_D and R*_N.
    return _product(
        E=np.arange(-1.0, 1.01, 0.5),
        A=np.arange(0.0, 25.1, 5.0),
        B=np.arange(0.0, 25.1, 5.0),
        alpha=(0.25, 0.5, 1.0),
        beta=(0.25, 0.5, 1.0),
        RD_star=np.log([5.0, 20.0]),
        RN_star=np.log([2.0, 10.0]),
    )


# --- Gadre et al. 2024: over-training, L(C, M) with M = D/N -------------------------------------


def _gadre_model(theta, xs):
    log_n, log_d = _log(xs[0]), _log(xs[1])
    log_c, log_m = np.log(6.0) + log_n + log_d, log_d - log_n
    log_e, log_a, log_b, eta = (theta[:, i : i + 1] for i in range(4))
    slope_a, slope_b = log_m - log_c, -(log_m + log_c)
    term_a = log_a + eta * slope_a
    term_b = log_b + eta * slope_b
    log_pred, (w_a, w_b, w_e) = _logsumexp_terms(
        [term_a, term_b, np.broadcast_to(log_e, term_a.shape)]
    )
    return log_pred, [(w_e, None), (w_a, None), (w_b, None), (w_a * slope_a + w_b * slope_b, None)]


def _gadre_starts(xs, y):
    return _product(
        E=np.arange(-1.0, 1.01, 0.5),
        a=np.arange(0.0, 25.1, 5.0),
        b=np.arange(0.0, 25.1, 5.0),
        eta=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5),
    )


# --- Capabilities -------------------------------------------------------------------------------


def _capability_model(theta, xs):
    log_c_x = _log(xs[0])
    log_alpha, k = theta[:, 0:1], theta[:, 1:2]
    return log_alpha - k * log_c_x, [(1.0, None), (1.0, -log_c_x)]


def _capability_starts(xs, y):
    log_c_x, log_y = _log(xs[0]), _log(y)
    k = np.array([-0.5, -0.1, 0.01, 0.05, 0.1, 0.3, 1.0])
    log_alpha = np.median(log_y[None, :] + k[:, None] * log_c_x[None, :], axis=1)
    return np.column_stack([log_alpha, k])


def _sigmoid_model(theta, xs):
    loss = np.asarray(xs[0], dtype=float)
    log_a, k, loss_mid, log_b = (theta[:, i : i + 1] for i in range(4))
    z = k * (loss - loss_mid)
    s = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
    a, b = np.exp(log_a), np.exp(log_b)
    pred = a * s + b
    slope = a * s * (1.0 - s) / pred
    return np.log(pred), [
        (a * s / pred, None),
        (slope * (loss - loss_mid), None),
        (-slope * k, None),
        (b / pred, None),
    ]


def _sigmoid_starts(xs, y):
    loss = np.asarray(xs[0], dtype=float)
    span = max(float(np.max(y) - np.min(y)), 1e-3)
    return _product(
        a=np.log([span, 2 * span, 1.0]),
        k=(-10.0, -3.0, -1.0),
        loss_mid=tuple(np.quantile(loss, [0.1, 0.5, 0.9])),
        b=np.log(np.array([1e-3, 0.5, 0.9]) * max(float(np.min(y)), 1e-6)),
    )


# --- Tissue et al. 2024: the loss along a run, L(s) = L0 + A·S1^(−alpha) − C·S2 --------------------


def _tissue_terms(theta, xs, with_size: bool):
    """The law's positive terms (log values and Jacobian columns), the annealing term and x."""
    if with_size:
        log_n, log_s1, s2 = _log(xs[0]), _log(xs[1]), np.asarray(xs[2], dtype=float)
        log_e, log_a, alpha, log_b, beta, log_c = (theta[:, i : i + 1] for i in range(6))
        positive = [
            (np.broadcast_to(log_e, (len(theta), len(log_n))), None),
            (log_a - alpha * log_n, -log_n),
            (log_b - beta * log_s1, -log_s1),
        ]
    else:
        log_s1, s2 = _log(xs[0]), np.asarray(xs[1], dtype=float)
        log_e, log_b, beta, log_c = (theta[:, i : i + 1] for i in range(4))
        positive = [
            (np.broadcast_to(log_e, (len(theta), len(log_s1))), None),
            (log_b - beta * log_s1, -log_s1),
        ]
    return positive, np.exp(log_c) * s2[None, :]


def _tissue_model(theta, xs, with_size: bool = False):
    # pred = E [+ A·N^-alpha] + B·S1^-beta − C·S2; the annealing term may not take the loss to 0
    # or below (a start far out), so the prediction is floored at a millionth of its positive part.
    positive, annealing = _tissue_terms(theta, xs, with_size)
    values = [np.exp(log_value) for log_value, _ in positive]
    total = sum(values)
    pred = np.maximum(total - annealing, 1e-6 * total)
    terms: JacobianTerms = []
    for value, (_, column) in zip(values, positive):
        share = value / pred
        terms.append((share, None))  # d/d log(coefficient)
        if column is not None:
            terms.append((share, column))  # d/d exponent: share · (−log x)
    terms.append((-annealing / pred, None))  # d/d log C
    return np.log(pred), terms


def _tissue_size_model(theta, xs):
    return _tissue_model(theta, xs, with_size=True)


def _tissue_start_rows(xs, y, with_size: bool):
    s1, s2 = (xs[1], xs[2]) if with_size else (xs[0], xs[1])
    floor = float(np.min(y))
    s2_top = float(np.max(s2)) if np.max(s2) > 0 else 1.0
    rows = []
    for e_share, beta, c_share in itertools.product((0.3, 0.7, 0.9), (0.2, 0.5, 1.0), (1e-3, 0.05, 0.3)):
        gap = max(float(np.median(y)) - e_share * floor, 1e-3 * floor)
        log_b = np.log(gap * (0.5 if with_size else 1.0)) + beta * float(np.median(np.log(s1)))
        log_c = np.log(c_share * floor / s2_top)
        if not with_size:
            rows.append((np.log(e_share * floor), log_b, beta, log_c))
            continue
        for alpha in (0.2, 0.5):
            log_a = np.log(0.5 * gap) + alpha * float(np.median(np.log(xs[0])))
            rows.append((np.log(e_share * floor), log_a, alpha, log_b, beta, log_c))
    return np.array(rows)


def _tissue_starts(xs, y):
    return _tissue_start_rows(xs, y, with_size=False)


def _tissue_size_starts(xs, y):
    return _tissue_start_rows(xs, y, with_size=True)


LAWS: dict[str, Law] = {
    law.name: law
    for law in [
        Law(
            name="gpt4",
            formula="L(C) = a·C^b + c",
            param_names=("a", "b", "c"),
            log_params=frozenset({"a", "c"}),
            x=("flops_exact",),
            scale_x=("flops_exact",),
            y="loss",
            bounds={"a": (-200.0, 200.0), "b": (-3.0, 0.0), "c": (-20.0, 10.0)},
            log_model=_gpt4_model,
            start_grid=_gpt4_starts,
            description="GPT-4 technical report: power law in compute with an irreducible loss c.",
        ),
        Law(
            name="power",
            formula="L(C) = a·C^b",
            param_names=("a", "b"),
            log_params=frozenset({"a"}),
            x=("flops_exact",),
            scale_x=("flops_exact",),
            y="loss",
            bounds={"a": (-300.0, 300.0), "b": (-10.0, 10.0)},
            log_model=_power_model,
            start_grid=_power_starts,
            description="Plain power law in compute, no irreducible term (Kaplan et al. 2020's "
                        "L(C)): a straight line in log-log axes.",
        ),
        Law(
            name="kaplan_n",
            formula="L(N) = (Nc/N)^alpha_N",
            param_names=("Nc", "alpha_N"),
            log_params=frozenset({"Nc"}),
            x=("params",),
            scale_x=("params",),
            y="loss",
            bounds={"Nc": (-100.0, 500.0), "alpha_N": (1e-4, 5.0)},
            log_model=_kaplan_single_model,
            start_grid=_kaplan_single_starts,
            description="Kaplan et al. 2020, loss of models trained to convergence vs size N.",
        ),
        Law(
            name="kaplan_d",
            formula="L(D) = (Dc/D)^alpha_D",
            param_names=("Dc", "alpha_D"),
            log_params=frozenset({"Dc"}),
            x=("tokens",),
            scale_x=("tokens",),
            y="loss",
            bounds={"Dc": (-100.0, 500.0), "alpha_D": (1e-4, 5.0)},
            log_model=_kaplan_single_model,
            start_grid=_kaplan_single_starts,
            description="Kaplan et al. 2020, loss of large models vs tokens D (early stopped).",
        ),
        Law(
            name="kaplan_nd",
            formula="L(N, D) = [(Nc/N)^(alpha_N/alpha_D) + Dc/D]^alpha_D",
            param_names=("Nc", "Dc", "alpha_N", "alpha_D"),
            log_params=frozenset({"Nc", "Dc"}),
            x=("params", "tokens"),
            scale_x=("params", "tokens"),
            y="loss",
            bounds={
                "Nc": (-100.0, 500.0),
                "Dc": (-100.0, 500.0),
                "alpha_N": (1e-4, 5.0),
                "alpha_D": (1e-4, 5.0),
            },
            log_model=_kaplan_nd_model,
            start_grid=_kaplan_nd_starts,
            description="Kaplan et al. 2020, joint dependence on size N and tokens D.",
        ),
        Law(
            name="chinchilla",
            formula="L(N, D) = E + A/N^alpha + B/D^beta",
            param_names=("E", "A", "B", "alpha", "beta"),
            log_params=frozenset({"E", "A", "B"}),
            x=("params", "tokens"),
            scale_x=("params", "tokens"),
            y="loss",
            bounds={
                "E": (-10.0, 10.0),
                "A": (-20.0, 100.0),
                "B": (-20.0, 100.0),
                "alpha": (0.0, 10.0),
                "beta": (0.0, 10.0),
            },
            log_model=_chinchilla_model,
            start_grid=_chinchilla_starts,
            reference={"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
            description="Hoffmann et al. 2022 (approach 3), fitted as Besiroglu et al. 2024 do.",
        ),
        Law(
            name="muennighoff",
            formula="L(N, D, U_D) = E + A/N'^alpha + B/D'^beta, D' = U_D + U_D·R*_D·(1 - exp(-R_D/R*_D)), "
                    "R_D = D/U_D - 1, N' likewise with U_N = min(N, N_opt(U_D)), R*_N",
            param_names=("E", "A", "B", "alpha", "beta", "RD_star", "RN_star"),
            log_params=frozenset({"E", "A", "B", "RD_star", "RN_star"}),
            x=("params", "tokens", "unique_tokens"),
            scale_x=("params", "tokens"),
            y="loss",
            bounds={
                "E": (-10.0, 10.0),
                "A": (-20.0, 100.0),
                "B": (-20.0, 100.0),
                "alpha": (1e-2, 10.0),
                "beta": (1e-2, 10.0),
                "RD_star": (-5.0, 12.0),
                "RN_star": (-5.0, 12.0),
            },
            log_model=_muennighoff_model,
            start_grid=_muennighoff_starts,
            reference={"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.353, "beta": 0.353,
                       "RD_star": 15.4, "RN_star": 5.31},
            description="Muennighoff et al. 2023, data-constrained scaling: repeated tokens (and "
                        "parameters beyond the compute-optimal size for the unique tokens) are "
                        "worth less, up to R* repetitions' worth.",
        ),
        Law(
            name="gadre",
            formula="L(C, M) = E + (a·M^eta + b·M^(-eta))·C^(-eta), C = 6·N·D, M = D/N",
            param_names=("E", "a", "b", "eta"),
            log_params=frozenset({"E", "a", "b"}),
            x=("params", "tokens"),
            scale_x=("params", "tokens"),
            y="loss",
            bounds={"E": (-10.0, 10.0), "a": (-20.0, 100.0), "b": (-20.0, 100.0), "eta": (0.0, 5.0)},
            log_model=_gadre_model,
            start_grid=_gadre_starts,
            description="Gadre et al. 2024, over-training: loss in compute C = 6ND and the token "
                        "multiplier M = D/N (the Chinchilla form with alpha = beta = 2·eta).",
        ),
        Law(
            name="capability",
            formula="-E[log pass_rate](C) = alpha·C^(-k)",
            param_names=("alpha", "k"),
            log_params=frozenset({"alpha"}),
            x=("flops_exact",),
            y="neg_log_pass_rate",
            bounds={"alpha": (-300.0, 300.0), "k": (-5.0, 5.0)},
            log_model=_capability_model,
            start_grid=_capability_starts,
            description="GPT-4 technical report: HumanEval pass rate predicted from compute.",
        ),
        Law(
            name="sigmoid",
            formula="metric(L) = a / (1 + exp(-k·(L - loss_mid))) + b",
            param_names=("a", "k", "loss_mid", "b"),
            log_params=frozenset({"a", "b"}),
            x=("loss",),
            y="accuracy",
            bounds={
                "a": (-20.0, 5.0),
                "k": (-200.0, 200.0),
                "loss_mid": (-50.0, 50.0),
                "b": (-30.0, 5.0),
            },
            log_model=_sigmoid_model,
            start_grid=_sigmoid_starts,
            description="Second step of compute -> loss -> metric (Llama 3, OLMo ladder).",
        ),
        Law(
            name="lr",
            formula="lr_opt(C) = a·C^b",
            param_names=("a", "b"),
            log_params=frozenset({"a"}),
            x=("flops",),
            y="lr",
            bounds={"a": (-300.0, 300.0), "b": (-10.0, 10.0)},
            log_model=_power_model,
            start_grid=_power_starts,
            reference={"a": 0.3118, "b": -0.125},
            description="DeepSeek LLM 2024: optimal learning rate vs compute.",
        ),
        Law(
            name="batch",
            formula="batch_opt(C) = a·C^b",
            param_names=("a", "b"),
            log_params=frozenset({"a"}),
            x=("flops",),
            y="batch_tokens",
            bounds={"a": (-300.0, 300.0), "b": (-10.0, 10.0)},
            log_model=_power_model,
            start_grid=_power_starts,
            reference={"a": 0.2920, "b": 0.3271},
            description="DeepSeek LLM 2024: optimal batch size (tokens) vs compute.",
        ),
        Law(
            name="tissue",
            formula="L(s) = E + B·S1^(−beta) − C·S2",
            param_names=("E", "B", "beta", "C"),
            log_params=frozenset({"E", "B", "C"}),
            x=("s1", "s2"),
            y="loss",
            bounds={"E": (-20.0, 10.0), "B": (-200.0, 200.0), "beta": (0.0, 3.0),
                    "C": (-80.0, 10.0)},
            log_model=_tissue_model,
            start_grid=_tissue_starts,
            zero_x=frozenset({"s2"}),
            description="Tissue et al. 2024: the loss at every step of one model's runs from the "
                        "area under the learning-rate schedule S1 and the annealing area S2 "
                        "(scaling/training/curves.py), fitted to whole curves.",
        ),
        Law(
            name="tissue_n",
            formula="L(N, s) = E + A·N^(−alpha) + B·S1^(−beta) − C·S2",
            param_names=("E", "A", "alpha", "B", "beta", "C"),
            log_params=frozenset({"E", "A", "B", "C"}),
            x=("params", "s1", "s2"),
            y="loss",
            bounds={"E": (-20.0, 10.0), "A": (-200.0, 200.0), "alpha": (0.0, 3.0),
                    "B": (-200.0, 200.0), "beta": (0.0, 3.0), "C": (-80.0, 10.0)},
            log_model=_tissue_size_model,
            start_grid=_tissue_size_starts,
            zero_x=frozenset({"s2"}),
            description="Tissue et al. 2024's curve law with Chinchilla's model-size term: with "
                        "a constant learning rate S1 is the tokens D and it is L(N, D); fitted to "
                        "the curves of a ladder, it predicts any schedule at any size.",
        ),
    ]
}


def get_law(name: str | Law) -> Law:
    """The law called ``name`` (a :class:`Law` passes through).

    Raises
    ------
    FitError
        If no law has that name; the message lists the known ones.

    Examples
    --------
    >>> get_law("gpt4").formula
    'L(C) = a·C^b + c'
    """
    if isinstance(name, Law):
        return name
    if name not in LAWS:
        raise FitError(f"unknown law {name!r}; choose one of {', '.join(LAWS)}")
    return LAWS[name]
