"""A small tracked sweep scored on the built-in tasks: the scores reach MLflow and the run
table, the copy task improves with size, and the forecast for the largest run is reported
beside its actual value by `scaling capability`, `scaling compare` and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scaling import tracking
from scaling.cli import main
from scaling.sweep import run_sweep

pytestmark = pytest.mark.slow

SWEEP = {
    "name": "tasks",
    "data": {"eval_tokens": 2048},
    "model": {"n_layer": 2, "n_head": 2, "context": 32},
    "train": {"batch_tokens": 256, "lr": 0.01, "eval_every": 1000},
    "evals": {"tasks": ["copy", "next_line", "closing"], "n_items": 48, "samples": 10},
    "ladder": {"tokens_per_param": [20], "shapes": [{"d_model": d} for d in (8, 10, 12, 16, 20)]},
    "target": {"shape": {"d_model": 32}, "tokens_per_param": 20},
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    path = folder / "tasks.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    summary = run_sweep(path, tracking_uri=uri, storage=str(folder / "optuna.journal"), threads=1)
    assert summary["failed"] == 0
    return uri, tracking.runs_frame("tasks", tracking_uri=uri).sort_values("params")


def test_every_run_logs_each_task_metric_to_mlflow(sweep):
    uri, runs = sweep
    names = [f"task/{t}/{m}" for t in ("copy", "next_line", "closing")
             for m in ("accuracy", "accuracy_se", "pass_rate", "neg_log_pass_rate", "nll", "items")]
    for run in tracking.find_runs("tasks", tracking_uri=uri):
        assert set(names) <= set(run["metrics"]), run["name"]
        assert run["params"]["evals.tasks"] == "['copy', 'next_line', 'closing']"
    assert (runs["task_copy_items"] == 48).all()
    assert ((runs["task_next_line_accuracy"] >= 0) & (runs["task_next_line_accuracy"] <= 1)).all()
    assert (runs["perf_evals_s"] < 0.2 * runs["perf_wall_s"]).all()


def test_the_copy_task_improves_with_size(sweep):
    _, runs = sweep
    smallest, largest = runs.iloc[0], runs.iloc[-1]
    assert largest["task_copy_nll"] < smallest["task_copy_nll"]
    assert largest["task_copy_neg_log_pass_rate"] <= smallest["task_copy_neg_log_pass_rate"]


def test_the_largest_run_is_forecast_and_compared(sweep, capsys, tmp_path):
    uri, runs = sweep
    target = runs[runs["role"] == "target"].iloc[0]
    args = ["capability", "--experiment", "tasks", "--target", target["run_id"],
            "--tracking-uri", uri, "--bootstrap", "200", "--output", "json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    forecast = {f["column"]: f for f in out["forecasts"]}
    compared = {row["metric"]: row for row in out["compared"]}
    column = "task_copy_neg_log_pass_rate"
    assert forecast[column]["target_x"] == pytest.approx(target["flops_exact"])
    assert compared[column]["actual"] == pytest.approx(target[column])
    assert compared[column]["predicted"] == pytest.approx(forecast[column]["predicted"])
    with capsys.disabled():  # the figures the test is about, shown with pytest -s
        print(f"\ncopy -E[log pass_rate] of the largest run: forecast "
              f"{compared[column]['predicted']:.3f} [{compared[column]['lo']:.3f}, "
              f"{compared[column]['hi']:.3f}], actual {compared[column]['actual']:.3f}")
    assert main(["compare", "--experiment", "tasks", "--target", target["run_id"],
                 "--tracking-uri", uri, "--n-bootstrap", "200", "--output", "json"]) == 0
    metrics = [m["metric"] for m in json.loads(capsys.readouterr().out)["metrics"]]
    assert metrics[0] == "loss" and column in metrics
    report = tmp_path / "report"
    assert main(["report", "--experiment", "tasks", "--tracking-uri", uri, "-o", str(report),
                 "--n-bootstrap", "200"]) == 0
    text = Path(report / "report.md").read_text()
    assert "## 8. Capability forecasts" in text and "| copy | neg_log_pass_rate | capability |" in text
