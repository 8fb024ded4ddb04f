"""`scaling demo --quick`: the whole pipeline end to end at toy sizes, and exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO, ladder_proxy_count

from scaling.cli import main

pytestmark = pytest.mark.slow


def test_quick_demo_runs_the_whole_job_then_reuses_every_run(tmp_path, capsys):
    from scaling.sweeps import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["demo", "--quick", "--tracking-uri", uri, "--output", "json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)

    # The forecast was written before the target trained, from the proxies alone.
    forecast = json.loads((tmp_path / "reports" / "demo-quick-forecast.json").read_text())
    runs = tracking.runs_frame("demo-quick", tracking_uri=uri, status=None)
    runs = runs[runs["role"].isin(["proxy", "target"])]
    n_proxies = ladder_proxy_count(REPO / "sweeps" / "demo.yaml", quick=True)  # the quick ladder's
    assert sorted(runs["role"].value_counts().items()) == [("proxy", n_proxies), ("target", 1)]
    target = runs[runs["role"] == "target"].iloc[0]
    assert forecast["predicted"] == pytest.approx(first["predicted"])
    assert forecast["target_x"] == pytest.approx(target["flops_exact"])
    assert forecast["n_trained"] == n_proxies and 4 <= forecast["n_proxies"] <= n_proxies
    assert forecast["law"] == "gpt4"  # the sweep file's forecast.law
    assert first["actual"] == pytest.approx(target["loss"])
    assert first["relative_error"] == pytest.approx(first["predicted"] / first["actual"] - 1)
    assert first["headline"].startswith("target-d32-L2-4xN: predicted loss")
    # Every built-in task is forecast before the target trains, then checked against it.
    forecast_columns = {f["column"] for f in forecast["capabilities"]}
    assert forecast_columns == {f"task_{t}_{m}" for t in ("copy", "next_line", "closing")
                                for m in ("neg_log_pass_rate", "accuracy")}
    checked = {row["metric"]: row for row in first["capabilities"]}
    assert set(checked) <= forecast_columns and "task_copy_neg_log_pass_rate" in checked
    assert checked["task_copy_neg_log_pass_rate"]["actual"] == pytest.approx(
        target["task_copy_neg_log_pass_rate"])
    report = Path(first["report_dir"])
    assert (report / "index.html").is_file() and (report / "report.md").is_file()

    # The forecast of record was registered before the target trained, as `scaling forecast`
    # registers one: a FINISHED run with role 'forecast' holding forecast.json, whose value is
    # the printed forecast, and the comparison was scored against it.
    registered = [r for r in tracking.find_runs("demo-quick", tracking_uri=uri)
                  if r["tags"].get("scaling.role") == "forecast"]
    assert len(registered) == 1 and registered[0]["status"] == "FINISHED"
    record = tracking.latest_forecast("demo-quick", tracking_uri=uri)
    assert record["run_id"] == registered[0]["run_id"] and record["format"] == "scaling.forecast/1"
    assert record["predicted"] == first["predicted"] == forecast["predicted"]
    assert [record["lo"], record["hi"]] == first["interval"]
    assert _start_ms(uri, target["run_id"]) > registered[0]["start_time"]  # before the target ran
    assert record["schedule"]["tokens"][-1] == target["tokens"]  # its planned learning rate
    assert first["headline"].endswith(
        f"; scored against the registered forecast (run {record['run_id']}, {record['created_utc']})")
    assert first["forecast"]["run_id"] == record["run_id"]
    text = (report / "report.md").read_text()
    assert f"Forecast of record: final loss {record['predicted']:.4f}" in text
    assert "![Re-forecasts of the large run](large_run_reforecasts.png)" in text

    # Second call: every run is reused (none trained again), same figures.
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    again = tracking.runs_frame("demo-quick", tracking_uri=uri, status=None)
    again = again[again["role"].isin(["proxy", "target"])]
    assert len(again) == len(runs) and set(again["run_id"]) == set(runs["run_id"])
    forecasts = [r for r in tracking.find_runs("demo-quick", tracking_uri=uri)
                 if r["tags"].get("scaling.role") == "forecast"]
    assert [r["run_id"] for r in forecasts] == [record["run_id"]]  # reused, not registered again
    assert second["headline"] == first["headline"]
    assert second["actual"] == first["actual"] and second["predicted"] == first["predicted"]
    assert second["timings"]["proxies_s"] + second["timings"]["target_s"] < 0.5 * (
        first["timings"]["proxies_s"] + first["timings"]["target_s"]
    )


def _start_ms(uri: str, run_id: str) -> int:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(run_id).info.start_time


def test_demo_with_a_missing_sweep_file_is_one_line(tmp_path, capsys):
    assert main(["demo", "--sweep", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.yaml: no such file" in err and err.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_the_wsd_demo_forecasts_from_the_branches_at_the_targets_budget(tmp_path, capsys):
    from scaling.sweeps import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = str(REPO / "sweeps" / "demo-wsd.yaml")
    assert main(["demo", "--sweep", sweep, "--quick", "--tracking-uri", uri, "--output", "json"]) == 0
    json.loads(capsys.readouterr().out)
    runs = tracking.runs_frame("demo-wsd-quick", tracking_uri=uri)
    proxies = runs[runs.role == "proxy"]
    assert len(proxies) == 12 and proxies.branch_of.notna().sum() == 6  # 6 stable runs, 6 branches
    forecast = json.loads((tmp_path / "reports" / "demo-wsd-quick-forecast.json").read_text())
    assert forecast["n_trained"] == 6  # only the runs at the target's 4 tokens per parameter
    at_target_budget = set(proxies[proxies.branch_of.isna()].run_id)
    assert set(forecast["proxy_run_ids"]) <= at_target_budget
    target = runs[runs.role == "target"].iloc[0]
    assert tracking.run_params(target.run_id, tracking_uri=uri)["train.schedule"] == "cosine"
    text = (tmp_path / "reports" / "demo-wsd-quick" / "report.md").read_text()
    assert "WSD ladder: 6 stable runs and 6 cooldown branches" in text
    assert "where 'tokens >= 3.96 * params and tokens <= 4.04 * params' (12 -> 6)" in text
