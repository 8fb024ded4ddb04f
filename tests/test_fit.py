"""Fitting: recovery of known truths for every law, the published Chinchilla fit, backtests,
diagnostics and every user-facing error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import besiroglu_points

import scaling.laws.fitting as fit_module
from scaling.errors import FitError, NotFittedError
from scaling.laws.backtesting import backtest
from scaling.laws.fitting import FitResult, fit, fit_report
from scaling.laws.forms import get_law
from scaling.table import load_csv

DATA = Path(__file__).parent / "data" / "chinchilla_points.csv"

# Truth (natural space) and the x range of the synthetic runs, per law.
TRUTH = {
    "gpt4": ({"a": 40.0, "b": -0.1, "c": 1.5}, [(15, 19)]),
    "power": ({"a": 3.0, "b": -0.05}, [(15, 19)]),
    "kaplan_n": ({"Nc": 8.8e13, "alpha_N": 0.076}, [(6, 9)]),
    "kaplan_d": ({"Dc": 5.4e13, "alpha_D": 0.095}, [(8, 11)]),
    "kaplan_nd": ({"Nc": 8.8e13, "Dc": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}, [(6, 9), (8, 11)]),
    "chinchilla": ({"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.35, "beta": 0.37}, [(7, 10), (9, 12)]),
    "capability": ({"alpha": 2.0, "k": 0.1}, [(18, 22)]),
    "sigmoid": ({"a": 0.7, "k": -4.0, "loss_mid": 3.0, "b": 0.05}, None),
    "lr": ({"a": 0.3118, "b": -0.125}, [(17, 21)]),
    "batch": ({"a": 0.2920, "b": 0.3271}, [(17, 21)]),
}


def synthetic(name: str, noise: float = 0.003, seed: int = 0) -> pd.DataFrame:
    """25 (one x) or 36 (two x, a 6 x 6 grid) runs from the truth, lognormal noise."""
    law = get_law(name)
    params, ranges = TRUTH[name]
    if ranges is None:
        xs = [np.linspace(1.5, 4.5, 25)]  # sigmoid: x is the loss itself
    elif len(ranges) == 1:
        xs = [np.logspace(*ranges[0], 25)]
    else:
        grid = np.meshgrid(*[np.logspace(*r, 6) for r in ranges])
        xs = [g.ravel() for g in grid]
    rng = np.random.default_rng(seed)
    y = law.predict(params, *xs) * np.exp(rng.normal(0.0, noise, xs[0].size))
    return pd.DataFrame({**dict(zip(law.x, xs)), law.y: y})


@pytest.mark.parametrize("name", sorted(TRUTH))
def test_recovers_known_truth_within_its_intervals(name):
    params, _ = TRUTH[name]
    # The estimator itself (symmetric loss): the default's lean is chosen on top of it, below.
    result = fit(name, synthetic(name), n_bootstrap=400, interval=0.999, seed=1, overestimate=1.0)
    assert result.is_valid, result.reasons_
    for key, truth in params.items():
        lower, upper = result.intervals_[key]
        assert lower <= truth <= upper, (key, truth, lower, upper)
        assert lower <= result.params_[key] <= upper
    # Noise of 0.3% leaves the fitted curve within 0.5% of the noiseless one.
    law = get_law(name)
    frame = synthetic(name, noise=0.0)
    xs = [frame[c].to_numpy() for c in law.x]
    np.testing.assert_allclose(result.predict(tuple(xs) if len(xs) > 1 else xs[0])[0],
                               law.predict(params, *xs), rtol=5e-3)


def test_noiseless_gpt4_is_exact():
    result = fit("gpt4", synthetic("gpt4", noise=0.0), n_bootstrap=0)
    assert result.params_["b"] == pytest.approx(-0.1, abs=1e-6)
    assert result.params_["c"] == pytest.approx(1.5, rel=1e-5)
    assert result.objective_ < 1e-12
    assert np.isnan(result.intervals_["a"]).all()
    point, (lower, upper) = result.predict([1e20])
    assert point[0] == pytest.approx(40 * 1e20**-0.1 + 1.5, rel=1e-6)
    assert np.isnan(lower).all() and np.isnan(upper).all()


@pytest.fixture(scope="module")
def chinchilla_points():
    return besiroglu_points(load_csv(DATA))  # Besiroglu et al. drop the 5 highest losses


@pytest.fixture(scope="module")
def chinchilla_fit(chinchilla_points):
    return fit("chinchilla", chinchilla_points, n_bootstrap=1000, seed=0)


# Besiroglu et al. 2024, 95% bootstrap intervals on these 240 points.
BESIROGLU_95 = {
    "E": (1.769, 1.871),
    "A": (285.0, 744.0),
    "B": (1042.0, 5810.0),
    "alpha": (0.317, 0.373),
    "beta": (0.331, 0.415),
}


def test_chinchilla_fit_lands_inside_besiroglu_intervals(chinchilla_fit):
    assert chinchilla_fit.n_points_ == 240
    assert chinchilla_fit.n_starts_ == 4500
    assert chinchilla_fit.is_valid, chinchilla_fit.reasons_
    for name, (lower, upper) in BESIROGLU_95.items():
        assert lower <= chinchilla_fit.params_[name] <= upper, name
    # Their point estimates: alpha 0.3478, beta 0.3658; ours agrees to 0.002.
    assert chinchilla_fit.params_["alpha"] == pytest.approx(0.3478, abs=2e-3)
    assert chinchilla_fit.params_["beta"] == pytest.approx(0.3658, abs=2e-3)


def test_chinchilla_bootstrap_intervals_match_published_ones(chinchilla_fit):
    # 1,000 resamples here vs their 4,000: each 95% bound within 15% of theirs.
    for name, (lower, upper) in BESIROGLU_95.items():
        ours = chinchilla_fit.intervals_[name]
        assert ours[0] == pytest.approx(lower, rel=0.15), name
        assert ours[1] == pytest.approx(upper, rel=0.15), name
    assert chinchilla_fit.n_bootstrap_failed_ == 0


def test_chinchilla_backtest_below_1e20(chinchilla_points):
    result = backtest("chinchilla", chinchilla_points, cuts=[1e20], n_bootstrap=100)
    summary = result.summary()
    fold = summary["folds"][0]
    assert (fold["n_train"], fold["n_test"]) == (136, 104)
    # Reference with the plain method: mean 0.89%, max 4.09%.
    assert summary["mean_abs_relative_error"] == pytest.approx(0.0089, abs=5e-4)
    assert summary["max_abs_relative_error"] == pytest.approx(0.0409, abs=2e-3)
    frame = result.frame()
    assert len(frame) == 104
    assert set(frame.columns) >= {"cut", "run", "params", "tokens", "observed", "predicted", "lower",
                                  "upper", "relative_error", "inside"}
    np.testing.assert_allclose(frame["relative_error"],
                               (frame["predicted"] - frame["observed"]) / frame["observed"])
    assert summary["coverage"] == pytest.approx(frame["inside"].mean())
    assert summary["band"] == "run"
    # The fit below 1e20 is biased at larger compute: the 90% run band holds only about half.
    assert 0.3 < summary["coverage"] < 0.8


def test_expanding_window_backtest_on_gpt4():
    frame = synthetic("gpt4")
    result = backtest("gpt4", frame, n_bootstrap=100)
    assert len(result.cuts_) == 3 and result.cuts_ == sorted(result.cuts_)
    n_train = [fold["n_train"] for fold in result.folds_]
    assert n_train == sorted(n_train) and n_train[0] < n_train[-1]
    # The law is right and the noise 0.3%: more runs extrapolate better (measured 2.1%, 0.63%,
    # 0.32% mean error), and the widest window stays within 1%.
    errors = [fold["mean_abs_relative_error"] for fold in result.folds_]
    assert errors[-1] < errors[0]
    assert result.folds_[-1]["max_abs_relative_error"] < 0.01
    assert len(result.fits_) == 3


def test_backtest_errors():
    frame = synthetic("gpt4")
    with pytest.raises(FitError, match=r"cut 1e\+30 on 'flops_exact' leaves no run to predict"):
        backtest("gpt4", frame, cuts=[1e30], n_bootstrap=0)
    with pytest.raises(FitError, match=r"cut 1e\+15 on 'flops_exact' leaves 0 run\(s\) to fit"):
        backtest("gpt4", frame, cuts=[1e15], n_bootstrap=0)
    with pytest.raises(FitError, match=r"backtest cut column 'flops' is missing"):
        backtest("gpt4", frame, cut_column="flops", n_bootstrap=0)


@pytest.mark.slow
def test_screening_finds_the_same_optimum_as_running_every_start(chinchilla_points):
    screened = fit("chinchilla", chinchilla_points, n_bootstrap=0)
    full = fit("chinchilla", chinchilla_points, n_bootstrap=0, screen=False)
    assert full.n_starts_screened_ == 0 and screened.n_starts_screened_ > 4000
    for name in ("alpha", "beta"):
        assert screened.params_[name] == pytest.approx(full.params_[name], abs=1e-6)
    assert screened.objective_ == pytest.approx(full.objective_, rel=1e-9)


def test_summary_is_json_safe_and_complete():
    import json

    result = fit("gpt4", synthetic("gpt4"), n_bootstrap=50)
    summary = json.loads(json.dumps(result.summary(), allow_nan=False))
    assert summary["law"] == "gpt4" and summary["n_points"] == 25
    assert set(summary["params"]) == {"a", "b", "c"}
    for entry in summary["params"].values():
        assert set(entry) >= {"value", "lower", "upper", "bound_lower", "bound_upper", "start", "at_bound"}
    assert summary["is_valid"] is True and summary["reasons"] == []


def test_round_trip_through_dict_predicts_the_same():
    result = fit("chinchilla", synthetic("chinchilla"), n_bootstrap=100)
    again = FitResult.from_dict(result.to_dict())
    x = ([1e11], [2e12])
    np.testing.assert_allclose(again.predict(x)[0], result.predict(x)[0])
    np.testing.assert_allclose(again.predict(x)[1], result.predict(x)[1])
    assert again.summary()["params"] == result.summary()["params"]
    np.testing.assert_array_equal(again.log_residuals_, result.log_residuals_)
    assert list(again.run_ids_) == [str(i) for i in range(36)]


def test_damaged_dict():
    with pytest.raises(FitError, match=r"fit: not a saved fit \(expected format 'scaling.fit/1'\)"):
        FitResult.from_dict({"law": "gpt4"})
    data = fit("power", synthetic("power"), n_bootstrap=0).to_dict()
    del data["theta"]
    with pytest.raises(FitError, match=r"fit: saved fit is incomplete or damaged"):
        FitResult.from_dict(data)


def test_predict_inputs():
    result = fit("chinchilla", synthetic("chinchilla"), n_bootstrap=50)
    by_tuple = result.predict(([1e9, 1e10], [1e11, 1e12]))[0]
    by_dict = result.predict({"params": [1e9, 1e10], "tokens": [1e11, 1e12]})[0]
    by_frame = result.predict(pd.DataFrame({"params": [1e9, 1e10], "tokens": [1e11, 1e12]}))[0]
    np.testing.assert_allclose(by_tuple, by_dict)
    np.testing.assert_allclose(by_tuple, by_frame)
    point, (lower, upper) = result.predict(([1e9], [1e11]), interval=0.9)
    assert lower[0] < point[0] < upper[0]
    with pytest.raises(FitError, match=r"law 'chinchilla' needs 2 x values \(params, tokens\)"):
        result.predict([1e9])
    with pytest.raises(FitError, match=r"prediction input lacks tokens"):
        result.predict({"params": [1e9]})
    with pytest.raises(FitError, match=r"prediction input 'params' must be finite and positive"):
        result.predict(([-1.0], [1e11]))
    with pytest.raises(FitError, match=r"interval = 1.5 must lie strictly between 0 and 1"):
        result.predict(([1e9], [1e11]), interval=1.5)


def test_run_band_adds_scatter_to_the_curve_band():
    result = fit("gpt4", synthetic("gpt4", noise=0.01), n_bootstrap=200)
    point, (fit_lo, fit_hi) = result.predict([1e17], band="fit")
    _, (run_lo, run_hi) = result.predict([1e17], band="run")
    assert run_lo[0] < fit_lo[0] < point[0] < fit_hi[0] < run_hi[0]
    # With 1% scatter, the 90% band for one run spans roughly +-1.6% around the curve.
    assert 0.02 < (run_hi[0] - run_lo[0]) / point[0] < 0.06
    np.testing.assert_array_equal(result.predict([1e17], band="run")[1], (run_lo, run_hi))  # seeded
    with pytest.raises(FitError, match=r"band = 'new'; choose 'fit' \(the curve\) or 'run' \(one new run\)"):
        result.predict([1e17], band="new")


def test_not_fitted():
    with pytest.raises(NotFittedError, match=r"not fitted yet; call fit\(frame\) first"):
        FitResult("gpt4").predict([1e20])
    with pytest.raises(NotFittedError, match=r"call fit"):
        FitResult("gpt4").summary()


def test_constructor_only_stores():
    estimator = FitResult("no-such-law", n_bootstrap=-3)
    assert estimator.law == "no-such-law" and estimator.n_bootstrap == -3
    with pytest.raises(FitError, match=r"unknown law 'no-such-law'"):
        estimator.fit(synthetic("gpt4"))


def test_targets_and_unfinished_runs_are_left_out():
    frame = synthetic("gpt4")
    frame["role"] = "proxy"
    frame["status"] = "FINISHED"
    frame.loc[24, "role"] = "target"
    frame.loc[0, "status"] = "FAILED"
    frame.loc[0, "loss"] = np.nan  # a failed run's missing loss does not break the fit
    result = fit("gpt4", frame, n_bootstrap=0)
    assert result.n_points_ == 23


def test_mlflow_strings_are_coerced():
    frame = synthetic("power").astype(str)
    result = fit("power", frame, n_bootstrap=0)
    assert result.params_["b"] == pytest.approx(-0.05, abs=1e-3)


# --- bad input: one clear error each -----------------------------------------------------------


def test_too_few_runs():
    frame = synthetic("gpt4").iloc[:3]
    with pytest.raises(FitError, match=r"run table: 3 usable run\(s\) but law 'gpt4' has 3 parameters"):
        fit("gpt4", frame)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 0.0, -1.0])
def test_bad_values(bad):
    frame = synthetic("gpt4")
    frame.loc[3, "loss"] = bad
    with pytest.raises(FitError, match=r"column 'loss' has 1 non-finite or non-positive value\(s\) .*row 3"):
        fit("gpt4", frame, source="runs.csv")


def test_constant_x():
    frame = synthetic("gpt4")
    frame["flops_exact"] = 1e18
    with pytest.raises(FitError, match=r"column 'flops_exact' is constant \(1e\+18\)"):
        fit("gpt4", frame)


def test_missing_column():
    frame = synthetic("gpt4").rename(columns={"flops_exact": "flops"})
    with pytest.raises(FitError, match=r"runs.csv: missing column\(s\) flops_exact"):
        fit("gpt4", frame, source="runs.csv")
    assert fit("gpt4", frame, x=["flops"], n_bootstrap=0).x_ == ("flops",)


def test_not_a_number():
    frame = synthetic("power").astype(object)
    frame.loc[2, "loss"] = "n/a"
    with pytest.raises(FitError, match=r"column 'loss' row 2 holds 'n/a', not a number"):
        fit("power", frame)


def test_not_a_frame():
    with pytest.raises(FitError, match=r"expected a pandas DataFrame run table, got dict"):
        fit("power", {"loss": [1.0]})


def test_wrong_number_of_x_columns():
    with pytest.raises(FitError, match=r"law 'chinchilla' reads 2 x column\(s\) \(params, tokens\); got 1"):
        fit("chinchilla", synthetic("chinchilla"), x=["params"])


def test_bad_settings():
    with pytest.raises(FitError, match=r"interval = 0 must lie strictly between 0 and 1"):
        fit("power", synthetic("power"), interval=0)
    with pytest.raises(FitError, match=r"n_bootstrap = -1 must be 0 or more"):
        fit("power", synthetic("power"), n_bootstrap=-1)


def test_parameter_at_bound_is_flagged_invalid():
    # A pure power law has no irreducible loss: c runs to its lower bound.
    C = np.logspace(15, 19, 20)
    frame = pd.DataFrame({"flops_exact": C, "loss": 50.0 * C**-0.1})
    result = fit("gpt4", frame, n_bootstrap=0)
    assert result.at_bound and result.bound_flags_["c"]
    assert not result.is_valid
    assert "parameter(s) at a bound: c" in result.reasons_


def test_non_convergence_is_flagged_invalid(monkeypatch):
    monkeypatch.setitem(fit_module._POLISH, "max_iter", 1)
    monkeypatch.setitem(fit_module._SCREEN, "max_iter", 1)
    result = fit("chinchilla", synthetic("chinchilla"), n_bootstrap=0)
    assert not result.converged_ and not result.is_valid
    assert any("did not converge" in reason for reason in result.reasons_)


def test_non_finite_everywhere():
    import dataclasses

    law = dataclasses.replace(get_law("power"), start_grid=lambda xs, y: np.full((2, 2), np.nan))
    with pytest.raises(FitError, match=r"law 'power' gives non-finite values from every start"):
        fit(law, synthetic("power"))


# --- the batched optimiser ----------------------------------------------------------------------


def test_batched_lbfgs_matches_scipy_per_problem_with_bounds():
    from scipy.optimize import minimize

    from scaling.laws.optimizer import minimize_batched

    # Rosenbrock problems with different centres; the box cuts some optima off (x <= 1.5).
    centres = np.array([[1.0, 1.0], [2.0, 4.0], [-1.0, 1.0], [0.5, 0.25]])
    lower, upper = np.array([-3.0, -3.0]), np.array([1.5, 5.0])

    def batched(theta, rows):
        a, b = centres[rows, 0], theta[:, 1] - theta[:, 0] ** 2
        value = (a - theta[:, 0]) ** 2 + 100 * b**2
        gradient = np.column_stack([-2 * (a - theta[:, 0]) - 400 * theta[:, 0] * b, 200 * b])
        return value, gradient

    starts = np.array([[-1.2, 1.0], [0.0, 0.0], [1.0, -2.0], [-2.0, 2.0]])
    out = minimize_batched(batched, starts, lower, upper)
    assert out.converged.all()
    assert (out.x >= lower).all() and (out.x <= upper).all()
    for k in range(len(starts)):
        reference = minimize(
            lambda t: tuple(v[0] for v in batched(t[None, :], np.array([k]))),
            starts[k], jac=True, method="L-BFGS-B", bounds=list(zip(lower, upper)), tol=1e-14,
        )
        np.testing.assert_allclose(out.x[k], reference.x, atol=1e-5)
    # The second problem's optimum (2, 4) lies outside the box: x stops at its bound 1.5.
    assert out.x[1, 0] == pytest.approx(1.5)


def test_screening_keeps_the_best_problems():
    from scaling.laws.optimizer import minimize_batched

    targets = np.linspace(0, 10, 100)[:, None]

    def shifted(theta, rows):
        diff = theta - targets[rows]
        return (diff**2).sum(axis=1) + targets[rows, 0], 2 * diff

    out = minimize_batched(shifted, np.full((100, 1), -5.0), np.array([-np.inf]), np.array([np.inf]),
                           screen_at=(0,), keep_fraction=0.2, min_keep=4)
    assert out.screened.sum() == 80
    assert not out.screened[:20].any()  # the 20 with the lowest objective at the start go on


def test_a_single_x_column_may_be_given_as_a_string():
    """``x="flops"`` means the column, not the characters of its name."""
    import numpy as np
    import pandas as pd

    from scaling.laws.fitting import fit
    from scaling.laws.forms import get_law

    flops = np.logspace(15, 19, 8)
    frame = pd.DataFrame({"flops": flops, "loss": 2.0 * flops**-0.05 + 1.5})
    as_string = fit(get_law("gpt4"), frame, x="flops", n_bootstrap=0)
    as_tuple = fit(get_law("gpt4"), frame, x=("flops",), n_bootstrap=0)
    assert as_string.params_ == as_tuple.params_
    assert abs(as_string.params_["b"] + 0.05) < 1e-3


def test_fit_range_leaves_out_plateau_runs_and_keeps_a_clean_law_whole():
    """Runs stuck on a plateau above the law are dropped; on a clean law nothing is."""
    import numpy as np
    import pandas as pd

    from scaling.laws.backtesting import select_fit_range

    flops = np.logspace(10, 12, 8)
    clean = 2.0 * (flops / 1e10) ** -0.2 + 1.0
    plateau = clean.copy()
    plateau[:3] = 3.1
    chosen = select_fit_range("gpt4", pd.DataFrame({"flops_exact": flops, "loss": plateau}))
    assert chosen.dropped == 3 and chosen.min_x == flops[3]
    assert abs(chosen.errors[3]) < 1e-3 < abs(chosen.errors[0])
    whole = select_fit_range("gpt4", pd.DataFrame({"flops_exact": flops, "loss": clean}))
    assert whole.dropped == 0 and whole.min_x == flops[0]
    assert whole.summary()["holdout_errors"][0] == pytest.approx(0.0, abs=1e-3)


def test_fit_range_needs_runs_to_hold_out():
    import pandas as pd

    from scaling.laws.backtesting import select_fit_range

    frame = pd.DataFrame({"flops_exact": [1e10, 1e11, 1e12, 1e13], "loss": [3.0, 2.5, 2.2, 2.0]})
    with pytest.raises(FitError, match=r"4 runs are too few to choose a fit range for law 'gpt4': it needs 4 to fit plus 1 to hold out"):
        select_fit_range("gpt4", frame)
    with pytest.raises(FitError, match=r"law 'chinchilla' reads 2 x columns; a fit range needs one"):
        select_fit_range("chinchilla", frame)


# --- the default loss's lean (overestimate="auto") ---------------------------------------------


def test_auto_leans_to_the_lower_envelope_where_the_fitted_runs_show_the_symmetric_fit_lands_high():
    # Porian et al.'s RefinedWeb cosine ladder, fitted up to 3.2e18 FLOPs (published runs): the
    # symmetric fit's E sits too high, and its own largest fitted scales show it. Measured:
    # held-out mean error 2.76% symmetric, 1.11% with the chosen weight 10.
    from scaling import datasets

    table = datasets.load("porian2024_rw_cosine")
    fitted, held = table[table.flops <= 3.2e18], table[table.flops > 3.2e18]
    auto = fit("chinchilla", fitted, n_bootstrap=0)
    symmetric = fit("chinchilla", fitted, n_bootstrap=0, overestimate=1.0)
    choice = auto.overestimate_choice_
    assert auto.overestimate_ == 10.0 and choice["z"][10.0] > 2.0 and choice["reason"] is None
    assert choice["errors"][10.0] < choice["errors"][1.0]
    assert auto.params_["E"] < symmetric.params_["E"]

    def error(result):
        return float(np.mean(np.abs(result.predict(held)[0] / held["loss"].to_numpy() - 1)))

    assert error(auto) < 0.5 * error(symmetric)
    assert "over-predicted runs weighted 10x, chosen by an inner backtest" in fit_report(auto)
    assert "loss: symmetric (given)" in fit_report(symmetric)


def test_auto_stays_symmetric_on_a_law_that_fits_its_runs_up_to_noise():
    # A lean on a well-specified law is a bias: the paired test must not take one on noise
    # (measured: chinchilla 0 of 4 seeds, gpt4 0 of 4, kaplan_nd 1 of 4).
    for seed in range(4):
        result = fit("chinchilla", synthetic("chinchilla", seed=seed), n_bootstrap=0)
        assert result.overestimate_ == 1.0, (seed, result.overestimate_choice_)
        assert result.overestimate_choice_["errors"], "the inner backtest ran"


def test_auto_is_symmetric_for_laws_that_are_not_of_loss_over_scale_and_for_short_tables():
    result = fit("sigmoid", synthetic("sigmoid"), n_bootstrap=0)
    assert result.overestimate_ == 1.0 and "not a law of loss over scale" in result.overestimate_choice_["reason"]
    C = np.logspace(15, 19, 6)
    short = fit("gpt4", pd.DataFrame({"flops_exact": C, "loss": 40.0 * C**-0.1 + 1.5}), n_bootstrap=0)
    assert short.overestimate_ == 1.0 and "runs above the inner cuts" in short.overestimate_choice_["reason"]
    assert short.overestimate_choice_["extrapolation"] is None  # no drift rate read off 3 runs


def test_the_one_run_band_widens_with_the_drift_the_inner_backtest_measured():
    from scaling import datasets

    table = datasets.load("porian2024_rw_cosine")
    result = fit("chinchilla", table[table.flops <= 3.2e18], n_bootstrap=200)
    spread, top = result.overestimate_choice_["extrapolation"], result.overestimate_choice_["scale_max"]
    assert spread > 0
    near = {"params": np.array([1e8]), "tokens": np.array([0.5 * top / 1e8])}  # inside the fitted scales
    far = {"params": np.array([1e9]), "tokens": np.array([100 * top / 1e9])}  # 100x beyond them
    bands = {}
    for drift in (spread, None):
        result.overestimate_choice_["extrapolation"] = drift
        bands[drift] = [np.subtract(*result.predict(x, band="run")[1][::-1])[0] for x in (near, far)]
    assert bands[spread][0] == pytest.approx(bands[None][0])  # nothing added inside the range
    assert bands[spread][1] > 1.5 * bands[None][1]  # and more the further it extrapolates


def test_a_given_weight_is_used_and_saved_with_the_fit():
    frame = synthetic("gpt4")
    leaning = fit("gpt4", frame, n_bootstrap=20, overestimate=10.0)
    symmetric = fit("gpt4", frame, n_bootstrap=20, overestimate=1.0)
    # a weight of 10 on over-predictions puts the curve below most runs
    assert (leaning.log_residuals_ < 0).mean() > 0.7 > (symmetric.log_residuals_ < 0).mean()
    again = FitResult.from_dict(json.loads(json.dumps(leaning.to_dict())))
    assert again.overestimate_ == 10.0 and again.overestimate_choice_ == {}
    np.testing.assert_allclose(again.predict(np.array([1e20]))[0], leaning.predict(np.array([1e20]))[0])
    with pytest.raises(FitError, match="overestimate = 0"):
        fit("gpt4", frame, overestimate=0)
