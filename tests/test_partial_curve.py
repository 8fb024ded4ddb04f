"""The partial-curve projection `scaling watch` uses, on curves whose final loss is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling.laws.partial_curve import fit_partial_curve, project_final

T = 1e9


def power(final, *, alpha=0.5, n=20, noise=0.0, seed=0):
    t = np.linspace(T / n, T, n)
    scale = (6.0 - final) / (n**alpha - 1)
    loss = final - scale + scale * (t / T) ** -alpha
    return t, loss * np.exp(noise * np.random.default_rng(seed).standard_normal(n))


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.8])
def test_a_noise_free_power_law_is_recovered_from_half_its_curve(alpha):
    t, loss = power(2.3, alpha=alpha)
    half = t <= T / 2
    _, _, fitted_alpha = fit_partial_curve(t[half], loss[half])
    assert fitted_alpha == pytest.approx(alpha, rel=1e-3)
    assert project_final(t[half], loss[half], T) == pytest.approx(2.3, rel=1e-4)


def test_with_noise_the_projection_at_half_way_is_within_one_percent():
    errors = []
    for seed in range(10):
        t, loss = power(2.3, noise=0.003, seed=seed)
        half = t <= T / 2
        errors.append(abs(project_final(t[half], loss[half], T) / 2.3 - 1))
    assert np.mean(errors) < 0.01


def test_the_blend_weighs_the_forecast_by_the_unobserved_fraction():
    t, loss = power(2.3)
    quarter = t <= T / 4
    curve = project_final(t[quarter], loss[quarter], T)
    blended = project_final(t[quarter], loss[quarter], T, prior=2.0)
    assert blended == pytest.approx(0.25 * curve + 0.75 * 2.0)


def test_before_three_evaluations_past_ten_percent_there_is_no_projection():
    t, loss = power(2.3)
    early = t <= 0.15 * T  # 5%, 10%, 15%: two past 10%
    assert math.isnan(project_final(t[early], loss[early], T))
    assert project_final(t[early], loss[early], T, prior=2.4) == 2.4
    assert fit_partial_curve([1.0, 2.0], [3.0, 2.0]) is None
