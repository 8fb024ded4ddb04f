"""How well does `scaling watch` project a run's final loss from its partial curve?

Synthetic large runs (seeded): 20 evaluations each, final loss known. Two curve shapes:
``power`` (L = E + B (t/T)^-alpha, alpha 0.3/0.5/0.8, 0.3% multiplicative noise) and
``schedule`` (tests/helpers.py's synthetic_curve: a decay schedule's quadratic approach to the
final loss, which no power law in t follows). The prior is a proxies' forecast 2% below the
final loss (what the synthetic proxies of tests/helpers.py forecast for their target) or 2%
above it, half the runs each.
Prints the mean absolute error of the projected final loss at 10/25/50/75% of training,
from the curve alone and blended with the forecast (scaling.laws.partial_curve).

    python3 benchmarks/partial_curve.py
"""

from __future__ import annotations

import numpy as np

from scaling.laws.partial_curve import project_final

FRACTIONS = (0.10, 0.25, 0.50, 0.75)
N_EVALS, TOTAL, FINAL, PRIOR_ERRORS = 20, 1e9, 2.283, (-0.02, 0.02)


def power(rng, alpha):
    t = np.linspace(TOTAL / N_EVALS, TOTAL, N_EVALS)
    scale = (6.0 - FINAL) / (N_EVALS**alpha - 1)
    loss = FINAL - scale + scale * (t / TOTAL) ** -alpha
    return t, loss * np.exp(0.003 * rng.standard_normal(N_EVALS))


def schedule(rng, _):
    t = np.linspace(TOTAL / N_EVALS, TOTAL, N_EVALS)
    loss = FINAL + (6.0 - FINAL) * (1 - t / TOTAL) ** 2
    return t, loss * np.exp(0.003 * rng.standard_normal(N_EVALS))


def errors(shape, alphas=(0.3, 0.5, 0.8), seeds=range(10)):
    table = {f: {"curve": [], "blend": []} for f in FRACTIONS}
    for alpha in alphas:
        for seed in seeds:
            t, loss = shape(np.random.default_rng(seed), alpha)
            prior = FINAL * (1 + PRIOR_ERRORS[seed % 2])
            for f in FRACTIONS:
                seen = t <= f * TOTAL + 1e-6
                for name, p in (("curve", None), ("blend", prior)):
                    projected = project_final(t[seen], loss[seen], TOTAL, prior=p)
                    table[f][name].append(abs(projected / FINAL - 1) * 100)
    return table


def main() -> None:
    print("forecast alone (proxies only): 2.00% at every fraction")
    for label, shape in (("power", power), ("schedule", schedule)):
        table = errors(shape)
        for f in FRACTIONS:
            curve, blend = np.mean(table[f]["curve"]), np.mean(table[f]["blend"])
            shown = "  n/a " if np.isnan(curve) else f"{curve:6.2f}"  # < 3 evaluations past 10%
            print(f"{label:>8} {f:4.0%}: curve alone {shown}%   blended with the forecast {blend:6.2f}%")


if __name__ == "__main__":
    main()
