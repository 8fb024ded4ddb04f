"""Capability forecasts against synthetic laws of known parameters, and their command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.laws.capability import (
    floored_accuracy,
    forecast_task,
    forecast_tasks,
    task_column,
    task_names,
)
from scaling.reporting.comparison import compare_forecasts

# Truth: GPT-4's form for the pass rate, a·C^b + c for the task's NLL, a sigmoid from NLL to
# accuracy (falling with the NLL), 200 items.
ALPHA, K = 40.0, 0.08
NLL = dict(a=300.0, b=-0.2, c=0.4)
SIGMOID = dict(a=0.7, k=-6.0, loss_mid=1.2, b=0.25)


def true_values(flops: np.ndarray) -> dict[str, np.ndarray]:
    nll = NLL["a"] * flops ** NLL["b"] + NLL["c"]
    accuracy = SIGMOID["a"] / (1 + np.exp(-SIGMOID["k"] * (nll - SIGMOID["loss_mid"]))) + SIGMOID["b"]
    return {"neg_log_pass_rate": ALPHA * flops**-K, "nll": nll, "accuracy": accuracy}


def task_runs(task: str = "copy", noise: float = 0.0, count: int = 10) -> pd.DataFrame:
    flops = np.logspace(12, 15, count)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(count)], "role": "proxy",
                          "status": "FINISHED", "flops_exact": flops})
    for metric, values in true_values(flops).items():
        frame[task_column(task, metric)] = values * np.exp(noise * rng.standard_normal(count))
    frame[task_column(task, "items")] = 200.0
    return frame


def test_both_forecasts_recover_the_known_laws_beyond_the_proxies():
    target = 1e16  # 10x the largest proxy
    gpt4_form, two_step = forecast_task(task_runs(), "copy", target, n_bootstrap=100)
    truth = true_values(np.array([target]))
    assert (gpt4_form.metric, gpt4_form.method) == ("neg_log_pass_rate", "capability")
    assert gpt4_form.predicted == pytest.approx(truth["neg_log_pass_rate"][0], rel=1e-4)
    assert gpt4_form.fits["capability"].params_["k"] == pytest.approx(K, rel=1e-4)
    assert (two_step.metric, two_step.method) == ("accuracy", "gpt4->sigmoid")
    assert two_step.predicted == pytest.approx(truth["accuracy"][0], rel=1e-3)
    assert two_step.fits["nll"].params_["b"] == pytest.approx(NLL["b"], rel=1e-3)
    assert two_step.column == "task_copy_accuracy" and two_step.n_proxies == 10


def test_bands_carry_the_scatter_of_noisy_proxies():
    target = 1e16
    forecasts, skipped = forecast_tasks(task_runs(noise=0.02), target, n_bootstrap=200)
    assert not skipped and [f.metric for f in forecasts] == ["neg_log_pass_rate", "accuracy"]
    truth = true_values(np.array([target]))
    for forecast in forecasts:
        assert forecast.lo < truth[forecast.metric][0] < forecast.hi
        assert forecast.lo < forecast.predicted < forecast.hi


def test_an_accuracy_of_zero_is_fitted_as_half_an_item():
    runs = task_runs()
    runs.loc[:2, "task_copy_accuracy"] = 0.0
    assert floored_accuracy(runs["task_copy_accuracy"], runs["task_copy_items"])[0] == 0.0025
    forecasts = forecast_task(runs, "copy", 1e16, n_bootstrap=20)
    assert np.isfinite(forecasts[1].predicted) and forecasts[1].predicted <= 1.0


def test_tasks_are_found_by_their_columns_and_unfittable_ones_are_reported():
    runs = task_runs("copy").merge(task_runs("closing", count=10), on=["run_id", "role", "status", "flops_exact"])
    runs.loc[2:, "task_closing_nll"] = np.nan  # only two runs scored: too few to fit
    assert task_names(runs) == ["copy", "closing"]
    forecasts, skipped = forecast_tasks(runs, 1e16, n_bootstrap=20)
    assert {f.task for f in forecasts} == {"copy"}
    assert "closing" in skipped and "usable run(s)" in skipped["closing"]


def test_forecasts_are_compared_with_the_target_run():
    forecasts = forecast_task(task_runs(), "copy", 1e16, n_bootstrap=50)
    truth = true_values(np.array([1e16]))
    target = {"task_copy_neg_log_pass_rate": truth["neg_log_pass_rate"][0] * 1.1,
              "task_copy_accuracy": 0.0, "task_copy_items": 100.0}
    rows = {row.metric: row for row in compare_forecasts(forecasts, target)}
    assert rows["task_copy_neg_log_pass_rate"].relative_error == pytest.approx(1 / 1.1 - 1, rel=1e-3)
    assert rows["task_copy_accuracy"].actual == 0.005  # no item right: half an item
    assert compare_forecasts(forecasts, {}) == []


def test_capability_command_forecasts_and_fit_takes_metric_names(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    task_runs(noise=0.01).to_csv(path, index=False)
    assert main(["capability", "--csv", str(path), "--flops", "1e16", "--bootstrap", "50",
                 "--output", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["column"] for f in out["forecasts"]] == ["task_copy_neg_log_pass_rate", "task_copy_accuracy"]
    assert main(["fit", "--csv", str(path), "--law", "capability", "--y",
                 "task/copy/neg_log_pass_rate", "--bootstrap", "50", "--output", "json"]) == 0
    fitted = json.loads(capsys.readouterr().out)["fit"]
    assert fitted["y"] == "task_copy_neg_log_pass_rate"
    assert fitted["params"]["k"]["value"] == pytest.approx(K, rel=0.05)


def test_capability_command_needs_one_budget(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    task_runs().to_csv(path, index=False)
    assert main(["capability", "--csv", str(path)]) == 2
    assert capsys.readouterr().err == "error: give exactly one of --flops C or --target RUN_ID\n"
