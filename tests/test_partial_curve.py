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
    seen = t <= 0.3 * T
    curve = project_final(t[seen], loss[seen], T)
    blended = project_final(t[seen], loss[seen], T, prior=2.0)
    assert blended == pytest.approx(0.3 * curve + 0.7 * 2.0)


def test_before_five_evaluations_past_ten_percent_there_is_no_projection():
    t, loss = power(2.3)
    early = t <= 0.25 * T  # 5% to 25%: four past 10%, one more than the power law's parameters
    assert math.isnan(project_final(t[early], loss[early], T))
    assert project_final(t[early], loss[early], T, prior=2.4) == 2.4
    assert project_final(t[t <= 0.3 * T], loss[t <= 0.3 * T], T) == pytest.approx(2.3, rel=1e-4)
    assert fit_partial_curve([1.0, 2.0], [3.0, 2.0]) is None


def test_the_annealing_law_projects_from_six_evaluations_past_ten_percent_not_from_its_four_parameters():
    from scaling.laws.partial_curve import MIN_EVALS, schedule_areas

    t, loss = power(2.3, noise=0.003)
    schedule = schedule_areas(t, np.ones_like(t), T)  # a constant rate: the power law's shape
    past = np.cumsum(t >= 0.1 * T)
    for count in (4, 5):  # as many evaluations as parameters, and one more: no projection
        seen = past <= count
        assert project_final(t[seen], loss[seen], T, prior=2.4, schedule=schedule) == 2.4
    seen = past <= MIN_EVALS["annealing"]
    assert MIN_EVALS["annealing"] == 6 and project_final(t[seen], loss[seen], T, prior=2.4, schedule=schedule) != 2.4
