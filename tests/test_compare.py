"""Predicted against actual: compare() on run tables whose law is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import synthetic_curve, synthetic_runs, true_loss

from scaling.errors import DataError, FitError
from scaling.formatting import format_count
from scaling.reporting.comparison import Crossing, compare, first_crossing

N_BOOTSTRAP = 100  # enough for a 90% interval to be stable to a few percent


@pytest.fixture(scope="module")
def table():
    runs = synthetic_runs(isoflop=False, extras=False)
    return runs[runs["role"] == "proxy"], runs[runs["role"] == "target"].iloc[0]


def test_first_crossing_is_the_first_evaluation_at_or_below_the_prediction():
    curve = synthetic_curve(2.0, 1000.0, start_loss=4.0, n_points=10)
    # value(t) = 2 + 2 (1 - t/1000)^2: 2.08 at t = 800 is the first value <= 2.1.
    crossing = first_crossing(curve, 2.1)
    assert crossing == Crossing(step=8.0, tokens=800.0, value=pytest.approx(2.08), fraction=0.8)
    assert first_crossing(curve, 2.0).tokens == 1000.0  # the final value equals the threshold
    assert first_crossing(curve, 1.99) is None
    assert first_crossing(curve.iloc[:0], 2.0) is None


def test_without_noise_the_prediction_is_the_law_and_the_error_is_exact():
    runs = synthetic_runs(isoflop=False, extras=False, noise=0.0)
    target = runs[runs["role"] == "target"].iloc[0]
    result = compare(runs[runs["role"] == "proxy"], target, n_bootstrap=N_BOOTSTRAP)
    row = result.loss
    assert row.x == "flops_exact" and row.target_x == target["flops_exact"]
    assert row.predicted == pytest.approx(float(true_loss(target["flops_exact"])), rel=1e-6)
    # The synthetic target sits 0.5% above the law.
    assert row.relative_error == pytest.approx(1 / 1.005 - 1, rel=1e-5)


def test_prediction_of_a_noisy_sweep_brackets_the_truth_and_the_target(table):
    proxies, target = table
    curve = synthetic_curve(target["loss"], target["tokens"])
    result = compare(proxies, target, curve=curve, n_bootstrap=N_BOOTSTRAP, seed=0)
    row = result.loss
    truth = float(true_loss(target["flops_exact"]))
    # 0.3% noise on 10 proxies, extrapolated 100x in compute: a few percent at most.
    assert row.predicted == pytest.approx(truth, rel=0.03)
    assert row.lo < truth < row.hi
    assert row.lo < row.predicted < row.hi
    assert row.inside
    assert row.actual == target["loss"]
    assert row.relative_error == pytest.approx((row.predicted - row.actual) / row.actual)
    # The curve ends at the actual loss, above this prediction: it never reached it.
    assert row.predicted < row.actual and row.crossing is None and row.has_curve
    assert result.n_proxies == 10 and result.run_id == "run10"
    assert not result.error_above(5.0)


def test_a_target_far_off_the_law_is_outside_and_fails_the_check(table):
    proxies, target = table
    worse = target.copy()
    worse["loss"] = target["loss"] * 1.2
    result = compare(proxies, worse, n_bootstrap=N_BOOTSTRAP, seed=0)
    assert not result.loss.inside
    assert result.loss.relative_error == pytest.approx(1 / 1.2 - 1, abs=0.03)
    assert result.error_above(10.0) and not result.error_above(20.0)
    assert result.loss.crossing is None and not result.loss.has_curve


def test_headline_and_summary_say_the_same(table):
    proxies, target = table
    target = target.copy()
    target["loss"] = 0.98 * float(true_loss(target["flops_exact"]))  # beat the law by 2%
    curve = synthetic_curve(target["loss"], target["tokens"])
    result = compare(proxies, target, curve=curve, n_bootstrap=N_BOOTSTRAP, seed=0)
    row = result.loss
    line = result.headline()
    assert line.startswith("N5e7-target: predicted loss ")
    assert result.run_id == "run10" and result.name == "N5e7-target"
    assert f"actual {row.actual:.4g}" in line
    assert f"error {row.relative_error * 100:+.1f}%, inside the 90% interval" in line
    assert row.crossing == first_crossing(curve, row.predicted)
    assert 0.5 < row.crossing.fraction < 1
    assert f"{format_count(row.crossing.tokens)} tokens ({row.crossing.fraction:.0%} of training)" in line
    summary = json.loads(json.dumps(result.summary()))
    assert summary["metrics"][0]["predicted"] == pytest.approx(row.predicted)
    assert summary["metrics"][0]["inside"] is True
    assert summary["metrics"][0]["crossing"]["tokens"] == row.crossing.tokens
    assert summary["n_proxies"] == 10


def test_a_capability_metric_is_compared_with_its_own_law(table):
    proxies, target = table
    # -E[log pass_rate] = alpha * C^(-k) with alpha = 40, k = 0.1 (GPT-4's capability law).
    def capability(flops):
        return 40.0 * np.asarray(flops, float) ** -0.1

    proxies = proxies.assign(humaneval_neg_log_pass_rate=capability(proxies["flops_exact"]))
    target = target.copy()
    # The target sits 10% above the law: the prediction is the law's value, not the target's.
    target["humaneval_neg_log_pass_rate"] = 1.1 * float(capability(target["flops_exact"]))
    result = compare(
        proxies, target, metrics={"humaneval_neg_log_pass_rate": "capability"},
        n_bootstrap=N_BOOTSTRAP, seed=0,
    )
    assert [m.metric for m in result.metrics] == ["loss", "humaneval_neg_log_pass_rate"]
    metric = result.metrics[1]
    assert metric.law == "capability"
    assert metric.target_x == target["flops_exact"]
    assert metric.predicted == pytest.approx(40.0 * target["flops_exact"] ** -0.1, rel=1e-3)
    assert metric.actual == target["humaneval_neg_log_pass_rate"]
    assert metric.relative_error == pytest.approx(1 / 1.1 - 1, rel=1e-2)
    fitted = result.fits["humaneval_neg_log_pass_rate"].params_
    assert (fitted["alpha"], fitted["k"]) == (pytest.approx(40.0, rel=1e-3), pytest.approx(0.1, rel=1e-3))


def test_a_target_without_a_final_loss_is_one_clear_error(table):
    proxies, target = table
    running = target.copy()
    running["loss"] = np.nan
    with pytest.raises(DataError, match=r"target run run10: loss = nan is missing; wait for the run to finish"):
        compare(proxies, running, n_bootstrap=N_BOOTSTRAP)


def test_a_target_without_compute_is_one_clear_error(table):
    proxies, target = table
    bare = target.drop(labels=["flops_exact"])
    with pytest.raises(DataError, match=r"target run run10: flops_exact = None is missing; the run table needs"):
        compare(proxies, bare, n_bootstrap=N_BOOTSTRAP)


def test_an_unknown_metric_column_is_named(table):
    proxies, target = table
    with pytest.raises(DataError, match=r"proxies: missing column\(s\) pass_rate \(columns present: run_id"):
        compare(proxies, target, metrics={"pass_rate": "capability"})


def test_a_law_of_two_columns_is_refused_with_the_fix(table):
    proxies, target = table
    with pytest.raises(FitError, match=r"law 'chinchilla' reads params, tokens; compare a law of one column"):
        compare(proxies, target, law="chinchilla")


def test_too_few_proxies_for_the_law_is_a_fit_error(table):
    proxies, target = table
    with pytest.raises(FitError, match=r"proxies: 2 usable run\(s\) but law 'gpt4' has 3 parameters"):
        compare(proxies.iloc[:2], target, n_bootstrap=N_BOOTSTRAP)



def test_auto_fit_range_leaves_out_plateau_proxies_with_the_reason():
    import pandas as pd

    from scaling.errors import ConfigError
    from scaling.laws.selection import split_runs

    flops = np.logspace(10, 12, 8)
    loss = 2.0 * (flops / 1e10) ** -0.2 + 1.0
    loss[:2] = 3.1  # stuck on a plateau above the law
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(8)], "status": "FINISHED", "role": "proxy",
                         "flops_exact": flops, "loss": loss})
    auto = split_runs(runs, x="flops_exact", fit_range="auto")
    assert list(auto.proxies["run_id"]) == [f"r{i}" for i in range(2, 8)]
    assert len(auto.excluded) == 2
    assert auto.excluded["reason"].str.startswith("below the fit range: leaving out the 2 smallest").all()
    assert len(split_runs(runs, x="flops_exact").proxies) == 8
    with pytest.raises(ConfigError, match=r"fit_range = 'some': use 'all' or 'auto'"):
        split_runs(runs, x="flops_exact", fit_range="some")
    # Too few to hold one out (the law's 3 parameters + 1 to fit, 1 to predict): all are kept,
    # so the default fit range (auto) never refuses a table that 'all' could fit.
    few = split_runs(runs.iloc[:4], x="flops_exact", fit_range="auto")
    assert len(few.proxies) == 4 and few.excluded.empty


def test_the_comparison_table_warns_when_the_loss_fit_is_not_valid(table):
    from scaling.reporting.render import comparison_text

    proxies, target = table
    power = proxies.assign(loss=50.0 * proxies["flops_exact"] ** -0.1)  # c lands on its bound 0
    lines = comparison_text(compare(power, target, n_bootstrap=20)).splitlines()
    assert lines[1] == "WARNING, fit invalid: parameter(s) at a bound: c"
    clean = comparison_text(compare(proxies, target, n_bootstrap=20)).splitlines()
    assert not any("WARNING" in line for line in clean)
