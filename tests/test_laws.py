"""Law forms: names, evaluation against published numbers, analytic gradients."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.errors import FitError
from scaling.laws.forms import LAWS, get_law, vector_jacobian

EXPECTED = {
    "gpt4", "power", "kaplan_n", "kaplan_d", "kaplan_nd", "chinchilla", "muennighoff", "gadre",
    "capability", "sigmoid", "lr", "batch", "tissue", "tissue_n",
}

# One plausible parameter point per law (natural space) and x values to test it at.
POINTS = {
    "gpt4": ({"a": 40.0, "b": -0.1, "c": 1.5}, [np.logspace(15, 19, 7)]),
    "power": ({"a": 3.0, "b": -0.05}, [np.logspace(15, 19, 7)]),
    "kaplan_n": ({"Nc": 8.8e13, "alpha_N": 0.076}, [np.logspace(6, 9, 7)]),
    "kaplan_d": ({"Dc": 5.4e13, "alpha_D": 0.095}, [np.logspace(8, 11, 7)]),
    "kaplan_nd": (
        {"Nc": 8.8e13, "Dc": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095},
        [np.logspace(6, 9, 7), np.logspace(8, 11, 7)],
    ),
    "chinchilla": (
        {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37},
        [np.logspace(7, 10, 7), np.logspace(9, 12, 7)],
    ),
    # Sizes on both sides of N_opt(U_D), 1 to 100 epochs: both repetition terms are exercised.
    "muennighoff": (
        {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.353, "beta": 0.353, "RD_star": 15.4,
         "RN_star": 5.31},
        [np.logspace(7, 10, 7), np.logspace(9, 12, 7), np.array([1e9, 1e8, 1e10, 1e9, 2e10, 1e11, 1e12])],
    ),
    "gadre": (
        {"E": 1.9, "a": 60.0, "b": 900.0, "eta": 0.16},
        [np.logspace(7, 10, 7), np.logspace(9, 12, 7)[::-1]],
    ),
    "capability": ({"alpha": 2.0, "k": 0.1}, [np.logspace(18, 22, 7)]),
    "sigmoid": ({"a": 0.7, "k": -4.0, "loss_mid": 3.0, "b": 0.05}, [np.linspace(1.5, 4.5, 7)]),
    "lr": ({"a": 0.3118, "b": -0.125}, [np.logspace(17, 21, 7)]),
    "batch": ({"a": 0.2920, "b": 0.3271}, [np.logspace(17, 21, 7)]),
    # S2 from 0 (before any annealing) to a cooldown's ~800 steps of annealing area
    "tissue": ({"E": 1.8, "B": 300.0, "beta": 0.35, "C": 2e-4},
               [np.logspace(6, 9, 7), np.array([0.0, 0.0, 10.0, 50.0, 200.0, 500.0, 800.0])]),
    "tissue_n": ({"E": 1.8, "A": 40.0, "alpha": 0.3, "B": 300.0, "beta": 0.35, "C": 2e-4},
                 [np.logspace(5, 8, 7), np.logspace(6, 9, 7),
                  np.array([0.0, 0.0, 10.0, 50.0, 200.0, 500.0, 800.0])]),
}


def test_every_law_is_registered():
    assert set(LAWS) == EXPECTED
    for name, law in LAWS.items():
        assert law.name == name
        assert set(law.bounds) == set(law.param_names)
        assert law.log_params <= set(law.param_names)


def test_unknown_law():
    with pytest.raises(FitError, match=r"unknown law 'gpt5'; choose one of gpt4, power"):
        get_law("gpt5")


def test_law_object_passes_through():
    law = get_law("power")
    assert get_law(law) is law


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_analytic_gradient_matches_finite_differences(name):
    law = get_law(name)
    params, xs = POINTS[name]
    theta = law.from_natural(params)[None, :]
    log_pred, terms = law.log_model(theta, xs)
    rng = np.random.default_rng(0)
    vector = rng.normal(size=log_pred.shape)
    analytic = vector_jacobian(vector, terms)[0]
    step = 1e-6
    numeric = []
    for p in range(law.n_params):
        shifted = theta.copy()
        shifted[0, p] += step
        up = law.log_model(shifted, xs)[0]
        shifted[0, p] -= 2 * step
        down = law.log_model(shifted, xs)[0]
        numeric.append(float((vector * (up - down) / (2 * step)).sum()))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_start_grid_has_the_right_shape_and_is_finite(name):
    law = get_law(name)
    params, xs = POINTS[name]
    y = law.predict(params, *xs)
    starts = law.start_grid(xs, y)
    assert starts.ndim == 2 and starts.shape[1] == law.n_params
    assert np.isfinite(starts).all()


def test_chinchilla_grid_is_besiroglu_4500():
    law = get_law("chinchilla")
    starts = law.start_grid([np.ones(3), np.ones(3)], np.ones(3))
    assert starts.shape == (4500, 5)
    assert sorted(set(starts[:, law.param_names.index("A")])) == [0, 5, 10, 15, 20, 25]


def test_chinchilla_paper_values():
    # Hoffmann et al.'s fit at Chinchilla's own size: 1.69 + 406.4/70e9^0.34 + 410.7/1.4e12^0.28.
    law = get_law("chinchilla")
    expected = 1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28
    assert law.predict(law.reference, 70e9, 1.4e12)[0] == pytest.approx(expected, rel=1e-12)


def test_gpt4_and_kaplan_forms():
    C = np.array([1e18, 1e20])
    np.testing.assert_allclose(get_law("gpt4").predict({"a": 40, "b": -0.1, "c": 1.5}, C), 40 * C**-0.1 + 1.5)
    N = np.array([1e6, 1e8])
    D = np.array([1e9, 1e10])
    nd = {"Nc": 8.8e13, "Dc": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}
    expected = ((8.8e13 / N) ** (0.076 / 0.095) + 5.4e13 / D) ** 0.095
    np.testing.assert_allclose(get_law("kaplan_nd").predict(nd, N, D), expected)


def test_deepseek_references():
    assert get_law("lr").reference == {"a": 0.3118, "b": -0.125}
    assert get_law("batch").reference == {"a": 0.2920, "b": 0.3271}


def test_predict_needs_every_x():
    with pytest.raises(FitError, match=r"law 'chinchilla' reads 2 x value\(s\) \(params, tokens\), got 1"):
        get_law("chinchilla").predict(get_law("chinchilla").reference, 1e9)


def test_missing_and_non_positive_parameters():
    law = get_law("gpt4")
    with pytest.raises(FitError, match=r"law 'gpt4': parameters \['c'\] missing"):
        law.from_natural({"a": 1.0, "b": -0.1})
    with pytest.raises(FitError, match=r"law 'gpt4': parameter a = -1.0 must be positive"):
        law.from_natural({"a": -1.0, "b": -0.1, "c": 1.0})
