"""Capability forecasts against synthetic laws of known parameters, and their command."""

from __future__ import annotations

import json
import re

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
    unpredictable_reason,
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


# --- forecasts that say nothing are said to say nothing --------------------------------------


def flat_accuracy_runs() -> pd.DataFrame:
    """The task's NLL falls with compute as before, but its accuracy does not move (0.04, a
    few tenths of a point of scatter): a sigmoid fitted there says nothing."""
    runs = task_runs()
    runs["task_copy_accuracy"] = 0.04 + 0.005 * np.random.default_rng(1).standard_normal(len(runs))
    return runs


def test_a_flat_accuracy_is_not_predictable_and_says_why():
    forecasts, skipped = forecast_tasks(flat_accuracy_runs(), 1e16, n_bootstrap=100)
    accuracy = next(f for f in forecasts if f.metric == "accuracy")
    assert not skipped and not accuracy.predictable
    assert accuracy.unpredictable.startswith("the proxies' accuracy hardly moves: 0.03")
    assert accuracy.text() == f"not predictable from these proxies ({accuracy.unpredictable})"
    assert accuracy.summary()["predictable"] is False
    # GPT-4's form is fitted to the pass rate, which still falls smoothly: still a number.
    assert next(f for f in forecasts if f.metric == "neg_log_pass_rate").predictable


def test_a_clean_sigmoid_still_gives_a_number():
    forecasts, _ = forecast_tasks(task_runs(noise=0.02), 1e16, n_bootstrap=200)
    for forecast in forecasts:
        assert forecast.predictable and forecast.unpredictable == ""
        assert re.fullmatch(r"[\d.]+ (± [\d.]+|\+[\d.]+/-[\d.]+)", forecast.text()), forecast.text()


def test_accuracy_that_does_not_rise_with_compute_is_not_predictable():
    runs = task_runs()
    runs["task_copy_accuracy"] = np.tile([0.2, 0.6], 5)  # a spread of 0.4, but no trend
    accuracy = forecast_task(runs, "copy", 1e16, n_bootstrap=50)[1]
    assert accuracy.unpredictable.startswith("the proxies' accuracy does not move one way with compute")


@pytest.mark.parametrize(
    ("metric", "lo", "hi", "expected"),
    [
        ("accuracy", 0.3, 0.79, ""),  # 49% of the range: still a forecast
        ("accuracy", 0.3, 0.81, "its 90% interval, 0.3 to 0.81, spans 51% of the range of accuracy"),
        # -E[log pass_rate] is judged on the pass rate exp(-value): 0.951 to 0.135 is 82% of [0, 1].
        ("neg_log_pass_rate", 0.05, 2.0, "its 90% interval, 0.05 to 2, spans 82% of the range of the pass rate"),
        ("neg_log_pass_rate", 1.9, 2.1, ""),
    ],
)
def test_an_interval_over_half_the_metrics_range_is_not_predictable(metric, lo, hi, expected):
    compute = np.logspace(12, 15, 6)
    values = np.linspace(0.2, 0.7, 6) if metric == "accuracy" else np.linspace(3.0, 2.2, 6)
    assert unpredictable_reason(metric, compute, values, lo=lo, hi=hi, interval=0.9) == expected


def test_every_printer_of_a_capability_forecast_says_not_predictable(tmp_path, capsys):
    from scaling.demo import check_line, forecast_line
    from scaling.reporting.comparison import Comparison
    from scaling.reporting.render import comparison_text

    runs = flat_accuracy_runs()
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    message = "task_copy_accuracy at flops_exact = 1e+16: not predictable from these proxies (the proxies' accuracy hardly moves"
    # scaling capability: the message instead of a number, and no error scored against it.
    assert main(["capability", "--csv", str(path), "--flops", "1e16", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert message in out and "task_copy_neg_log_pass_rate at flops_exact = 1e+16: 2.099" in out
    # The demo's lines, before and after the target trains.
    forecasts, _ = forecast_tasks(runs, 1e16, n_bootstrap=50)
    accuracy = forecasts[1]
    assert forecast_line(accuracy) == (
        f"copy accuracy not predictable from these proxies ({accuracy.unpredictable}); "
        "gpt4->sigmoid on 10 proxies")
    target = {"task_copy_neg_log_pass_rate": 2.0, "task_copy_accuracy": 0.05, "task_copy_items": 200.0}
    rows = compare_forecasts(forecasts, target)
    assert check_line(rows[1]) == (
        f"task_copy_accuracy predicted not predictable from these proxies ({accuracy.unpredictable}), "
        "actual 0.05")
    assert re.fullmatch(r"task_copy_neg_log_pass_rate predicted [\d.]+, actual 2", check_line(rows[0]))
    # scaling compare's table: the message, and no error or verdict for that row.
    loss = rows[0]  # stands in for the loss row, which a comparison always has first
    text = comparison_text(Comparison("t", "t", (loss, rows[1]), 10))
    line = next(line for line in text.splitlines() if line.startswith("task_copy_accuracy"))
    cells = re.split(r"\s{2,}", line)  # metric, law, predicted, interval, actual, error, inside, curve
    assert cells[2].startswith("not predictable from these proxies (the proxies' accuracy hardly moves")
    assert (cells[3], cells[4], cells[5], cells[6]) == ("-", "0.05", "-", "-")


def test_the_report_says_not_predictable_in_its_capability_table():
    from helpers import synthetic_runs

    from scaling.reporting.render import render_markdown
    from scaling.reporting.report import ReportInputs, build_report

    runs = synthetic_runs(isoflop=False, extras=False, target=False)
    proxies = runs[runs["role"] == "proxy"].reset_index(drop=True)
    scores = flat_accuracy_runs().drop(columns=["run_id", "role", "status", "flops_exact"])
    runs = pd.concat([proxies, scores], axis=1)
    report = build_report(ReportInputs(runs, "flat", "runs.csv"), n_bootstrap=50, date="2026-01-01")
    row = report.capabilities.set_index("metric").loc["accuracy"]
    assert row["forecast"].startswith("not predictable from these proxies (the proxies' accuracy hardly moves")
    assert row["90% interval"] == "" and row["error"] == ""
    assert "| copy | accuracy | gpt4->sigmoid | not predictable from these proxies (" in render_markdown(report)
