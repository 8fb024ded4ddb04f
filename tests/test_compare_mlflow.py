"""`scaling compare` and `scaling report --experiment` against a real MLflow sqlite store.

The runs are logged through :class:`scaling.sweeps.tracking.RunLogger`, exactly as training logs
them (size and final metrics, an eval-loss curve, failures with ``scaling.failure``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import synthetic_curve, synthetic_runs

from scaling.cli import main
from scaling.config.run import RunSpec

pytestmark = pytest.mark.slow
EXPERIMENT = "synthetic"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A sweep in MLflow: 10 proxies, a diverged, a killed and a loss-less run, two targets."""
    from scaling.sweeps.tracking import RunLogger, setup_experiment

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    setup_experiment(EXPERIMENT, tracking_uri=uri)
    runs = synthetic_runs(isoflop=False)
    ids = {}
    for row in runs.itertuples():
        spec = RunSpec(sweep=EXPERIMENT, name=row.name, role=row.role)
        with RunLogger(spec, tracking_uri=uri) as run:
            if np.isfinite(row.loss):
                # As in training, tokens are logged with the training metrics, at other steps
                # than some evaluations.
                for point in synthetic_curve(row.loss, row.tokens, n_points=10).itertuples():
                    metrics = {"eval/loss": point.value}
                    if point.step % 3 == 0:
                        metrics["train/tokens"] = point.tokens
                    run.log(int(point.step), metrics)
            summary = {
                "size/params": row.params, "size/tokens": row.tokens, "size/flops": row.flops,
                "size/flops_exact": row.flops_exact,
            }
            if np.isfinite(row.loss):
                summary["final/eval_loss"] = row.loss
                # A capability metric on GPT-4's law -E[log pass_rate] = alpha C^-k: exactly for
                # the proxies, 10% above it for the target (the forecast must not be its value).
                above = 1.1 if row.role == "target" else 1.0
                summary["final/humaneval_neg_log_pass_rate"] = above * 40.0 * row.flops_exact**-0.1
            if row.status == "FINISHED":
                run.finish(summary)
            elif row.status == "FAILED":
                run.fail(row.failure, summary)
            # A RUNNING row leaves the block unfinished: the logger ends it KILLED.
        ids[row.name] = run.run_id
    # A second large run, stopped before its end: no final loss.
    spec = RunSpec(sweep=EXPERIMENT, name="N5e7-stopped", role="target")
    with RunLogger(spec, tracking_uri=uri) as run:
        run.log(1, {"eval/loss": 5.0, "train/tokens": 1e8})
    ids["N5e7-stopped"] = run.run_id
    return uri, ids, runs


def test_compare_prints_prediction_actual_error_and_interval(tracked, capsys):
    uri, ids, runs = tracked
    target = ids["N5e7-target"]
    code = main(["compare", "--experiment", EXPERIMENT, "--target", target, "--tracking-uri", uri,
                 "--n-bootstrap", "100"])
    out = capsys.readouterr().out
    assert code == 0
    headline, _, header, row, capability = out.strip().splitlines()
    actual = runs.loc[runs["name"] == "N5e7-target", "loss"].iloc[0]
    assert headline.startswith("N5e7-target: predicted loss ")
    assert f"actual {actual:.4g}" in headline and "inside the 90% interval" in headline
    assert header.split() == ["metric", "law", "predicted", "interval", "actual", "error", "inside",
                              "curve", "reached", "it"]
    assert row.split()[:2] == ["loss", "gpt4"] and " yes " in row
    assert capability.split()[:2] == ["final_humaneval_neg_log_pass_rate", "capability"]


def test_curves_read_from_mlflow_have_tokens_at_every_evaluation(tracked):
    from scaling.reporting.report import inputs_from_experiment

    uri, ids, runs = tracked
    inputs = inputs_from_experiment(EXPERIMENT, tracking_uri=uri)
    with_loss = runs[np.isfinite(runs["loss"])]
    assert set(inputs.curves) == {ids[name] for name in with_loss["name"]}
    for row in with_loss.itertuples():
        expected = synthetic_curve(row.loss, row.tokens, n_points=10)
        curve = inputs.curves[ids[row.name]]
        assert curve["step"].tolist() == expected["step"].tolist()
        # Two thirds of the evaluations had no train/tokens logged at their step.
        assert curve["tokens"].to_numpy() == pytest.approx(expected["tokens"].to_numpy())
        assert curve["value"].to_numpy() == pytest.approx(expected["value"].to_numpy())
    failure = inputs.runs.set_index("name").loc["N3e6-diverged", "failure"]
    assert failure == "diverged: loss nan at step 120"


def test_compare_json_is_the_summary(tracked, capsys):
    uri, ids, runs = tracked
    target = ids["N5e7-target"]
    # Every proxy fitted (the default --fit-range auto, as in the demo, may leave out the smallest).
    assert main(["compare", "--experiment", EXPERIMENT, "--target", target, "--tracking-uri", uri,
                 "--n-bootstrap", "100", "--output", "json", "--fit-range", "all"]) == 0
    summary = json.loads(capsys.readouterr().out)
    loss = summary["metrics"][0]
    actual = runs.loc[runs["name"] == "N5e7-target", "loss"].iloc[0]
    assert summary["run_id"] == target and summary["name"] == "N5e7-target"
    assert summary["n_proxies"] == 10
    assert loss["actual"] == pytest.approx(actual)
    assert loss["relative_error"] == pytest.approx((loss["predicted"] - actual) / actual)
    assert loss["lo"] <= actual <= loss["hi"] and loss["inside"] is True
    capability = summary["metrics"][1]
    assert capability["metric"] == "final_humaneval_neg_log_pass_rate"
    assert capability["law"] == "capability"
    flops_exact = runs.loc[runs["name"] == "N5e7-target", "flops_exact"].iloc[0]
    law = 40.0 * flops_exact**-0.1  # the law the proxies were logged on, at the target's compute
    assert capability["target_x"] == pytest.approx(flops_exact)
    assert capability["predicted"] == pytest.approx(law, rel=1e-3)
    assert capability["actual"] == pytest.approx(1.1 * law)  # as logged for the target
    assert capability["relative_error"] == pytest.approx(1 / 1.1 - 1, rel=1e-2)
    assert len(summary["metrics"]) == 2


def test_fail_above_exits_1_when_the_error_is_larger(tracked, capsys):
    uri, ids, _ = tracked
    args = ["compare", "--experiment", EXPERIMENT, "--target", ids["N5e7-target"],
            "--tracking-uri", uri, "--n-bootstrap", "100", "--output", "json"]
    assert main([*args, "--fail-above", "50"]) == 0
    error = json.loads(capsys.readouterr().out)["metrics"][0]["relative_error"] * 100
    assert main([*args, "--fail-above", "0.01"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: loss error {error:+.1f}% is above --fail-above 0.01%\n"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--experiment", "nope", "--target", "x"], 1, "error: no MLflow experiment 'nope' at "),
        (["--experiment", EXPERIMENT, "--target", "0123abc"], 2,
         "error: experiment 'synthetic' has no run '0123abc'; pass the MLflow run id"),
    ],
)
def test_compare_bad_experiment_or_run_is_one_line(tracked, capsys, args, code, message):
    uri, _, _ = tracked
    assert main(["compare", *args, "--tracking-uri", uri]) == code
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_compare_target_without_final_loss_is_one_line(tracked, capsys):
    uri, ids, _ = tracked
    stopped = ids["N5e7-stopped"]
    assert main(["compare", "--experiment", EXPERIMENT, "--target", stopped, "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err == (
        f"error: target run {stopped}: loss = nan is missing; wait for the run to finish, or "
        "pick a run that has finished\n"
    )


def test_report_from_the_experiment_has_curves_reasons_and_is_logged(tracked, capsys):
    from scaling.sweeps.tracking import runs_frame

    uri, ids, _ = tracked
    target = ids["N5e7-target"]
    code = main(["report", "--experiment", EXPERIMENT, "--target", target, "--tracking-uri", uri,
                 "--n-bootstrap", "50", "-o", "out"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines() == [
        "wrote out/index.html and out/report.md",
        "logged to MLflow experiment synthetic as a run with role 'report'",
    ]
    text = Path("out/report.md").read_text()
    assert "![Learning curves](learning_curves.png)" in text
    assert "| N3e6-diverged | FAILED | failed: diverged: loss nan at step 120 |" in text
    assert "| N4e6-running | KILLED | killed: the run ended without a result |" in text
    assert "| N5e7-stopped | KILLED | killed: the run ended without a result |" in text
    assert f"tracking {uri}" in text and "sweep synthetic" in text
    assert "Its learning curve" in text
    logged = runs_frame(EXPERIMENT, tracking_uri=uri, role="report")
    assert len(logged) == 1


def test_report_refuses_to_guess_between_two_targets(tracked, capsys):
    uri, _, _ = tracked
    assert main(["report", "--experiment", EXPERIMENT, "--tracking-uri", uri, "-o", "out"]) == 2
    assert capsys.readouterr().err == (
        "error: run table marks 2 runs as role 'target'; pick one with --target RUN_ID\n"
    )
    assert not Path("out").exists()
