"""scaling.sweeps.tracking: one MLflow run per RunSpec, the run table, curves and report runs.

The same assertions run against a sqlite file and (marked slow) a real ``mlflow server``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
from importlib import metadata

import pytest

from scaling.config.run import RunSpec
from scaling.errors import TrackingError
from scaling.sweeps import tracking

SUMMARY = {
    "final/eval_loss": 2.5,
    "final/bpb": 2.5 / math.log(2),
    "size/params": 1000.0,
    "size/params_total": 1500.0,
    "size/tokens": 20000.0,
    "size/flops": 6 * 1000.0 * 20000.0,
    "size/flops_exact": 1.5e8,
}


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    """One database for the module (creating one costs seconds); tests use their own
    experiments in it."""
    return "sqlite:///" + str(tmp_path_factory.mktemp("tracking") / "mlflow.db")


@pytest.fixture(params=["sqlite", pytest.param("server", marks=pytest.mark.slow)])
def uri(request, sqlite_uri):
    if request.param == "sqlite":
        return sqlite_uri
    return request.getfixturevalue("mlflow_server")


def _spec(name="d32-L2-20xN", sweep="track", **train):
    return RunSpec(sweep=sweep, name=name, model={"n_layer": 2, "d_model": 32, "context": 64}, train=train)


def _finished_run(uri, spec, steps=250, summary=SUMMARY, flush_every=100):
    with tracking.RunLogger(spec, tracking_uri=uri, flush_every=flush_every) as run:
        for step in range(1, steps + 1):
            run.log(step, {"train/loss": 3.0 - step / 1000, "train/tokens": step * 512.0})
            if step % 50 == 0:
                run.log(step, {"eval/loss": 3.0 - step / 500})
        run.finish(summary)
    return run.run_id


def test_run_table_has_every_design_column_with_numbers(uri):
    experiment = "track-table" if uri.startswith("sqlite") else "track-table-server"
    tracking.setup_experiment(experiment, tracking_uri=uri)
    spec = _spec(sweep=experiment, lr=2e-3, batch_tokens=512, seed=3)
    run_id = _finished_run(uri, spec)
    frame = tracking.runs_frame(experiment, tracking_uri=uri)
    assert list(frame.columns[: len(tracking.RUN_COLUMNS)]) == tracking.RUN_COLUMNS
    row = frame.iloc[0]
    assert (row.run_id, row.run_key, row.sweep, row.role, row.status) == (
        run_id, spec.run_key, experiment, "proxy", "FINISHED",
    )  # fmt: skip
    assert (row.n_layer, row.d_model, row.n_head, row.context) == (2, 32, 4, 64)
    assert (row.lr, row.batch_tokens, row.seed) == (2e-3, 512, 3)
    assert (row.params, row.params_total, row.tokens) == (1000, 1500, 20000)
    assert row.flops == 1.2e8 and row.flops_exact == 1.5e8
    assert row.loss == 2.5 and row.bpb == pytest.approx(2.5 / math.log(2))
    for column in ("n_layer", "params", "tokens", "flops", "lr", "loss", "bpb"):
        assert frame[column].dtype.kind in "if", column


def test_metrics_are_buffered_and_all_arrive(uri):
    experiment = "track-curve" if uri.startswith("sqlite") else "track-curve-server"
    tracking.setup_experiment(experiment, tracking_uri=uri)
    run_id = _finished_run(uri, _spec(sweep=experiment), steps=250, flush_every=100)
    curve = tracking.learning_curve(run_id, tracking_uri=uri, metric="train/loss")
    assert list(curve.step) == list(range(1, 251))
    assert curve.value.iloc[-1] == pytest.approx(3.0 - 0.25)
    assert curve.tokens.iloc[9] == 10 * 512.0
    evals = tracking.learning_curve(run_id, tracking_uri=uri)
    assert list(evals.step) == [50, 100, 150, 200, 250]
    assert evals.value.iloc[0] == pytest.approx(2.9)


def test_failures_are_marked_with_their_reason(sqlite_uri):
    uri = sqlite_uri
    tracking.setup_experiment("track", tracking_uri=uri)
    with pytest.raises(RuntimeError, match="out of memory"):  # the logger re-raises it
        with tracking.RunLogger(_spec("boom"), tracking_uri=uri) as failed:
            failed.log(1, {"train/loss": 3.0})
            raise RuntimeError("out of memory")
    with pytest.raises(KeyboardInterrupt):
        with tracking.RunLogger(_spec("stopped", lr=1e-3), tracking_uri=uri) as killed:
            raise KeyboardInterrupt
    with tracking.RunLogger(_spec("diverged", lr=1e-1), tracking_uri=uri) as diverged:
        diverged.fail("diverged: loss nan at step 7")
    runs = {run["name"]: run for run in tracking.find_runs("track", tracking_uri=uri)}
    assert runs["boom"]["status"] == "FAILED"
    assert runs["boom"]["tags"][tracking.TAG_FAILURE] == "RuntimeError: out of memory"
    assert runs["boom"]["metrics"]["train/loss"] == 3.0  # buffered metrics flushed on failure
    assert runs["stopped"]["status"] == "KILLED"
    assert runs["diverged"]["status"] == "FAILED"
    assert runs["diverged"]["tags"][tracking.TAG_FAILURE].startswith("diverged")
    assert tracking.runs_frame("track", tracking_uri=uri).empty  # FINISHED only by default
    everything = tracking.runs_frame("track", tracking_uri=uri, status=None)
    assert sorted(everything.status) == ["FAILED", "FAILED", "KILLED"]


def test_resume_reopens_the_same_run(sqlite_uri):
    uri = sqlite_uri
    tracking.setup_experiment("track-resume", tracking_uri=uri)
    spec = _spec(sweep="track-resume")
    with pytest.raises(SystemExit) as stopped:
        with tracking.RunLogger(spec, tracking_uri=uri) as first:
            first.log(1, {"train/loss": 3.0})
            raise SystemExit(143)
    assert stopped.value.code == 143  # re-raised as it was
    assert tracking.run_status(first.run_id, tracking_uri=uri) == "KILLED"
    with tracking.RunLogger(spec, tracking_uri=uri, run_id=first.run_id) as second:
        second.log(2, {"train/loss": 2.0})
        second.finish(SUMMARY)
    runs = tracking.find_runs("track-resume", tracking_uri=uri, run_key=spec.run_key)
    assert [(run["run_id"], run["status"]) for run in runs] == [(first.run_id, "FINISHED")]
    assert list(tracking.learning_curve(first.run_id, tracking_uri=uri, metric="train/loss").step) == [1, 2]


def test_roles_filter_and_report_runs(tmp_path, sqlite_uri):
    uri = sqlite_uri
    tracking.setup_experiment("roles", tracking_uri=uri)
    _finished_run(uri, _spec("proxy-run", sweep="roles"), steps=2)
    _finished_run(uri, _spec("target-run", sweep="roles", lr=1e-3).model_copy(update={"role": "target"}), steps=2)
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# forecast\n")
    report_id = tracking.log_report("roles", report, tracking_uri=uri, tags={"scaling.law": "gpt4"})
    assert list(tracking.runs_frame("roles", tracking_uri=uri).name) == ["proxy-run", "target-run"]
    assert list(tracking.runs_frame("roles", tracking_uri=uri, role="target").name) == ["target-run"]
    reports = tracking.runs_frame("roles", tracking_uri=uri, role="report")
    assert list(reports.run_id) == [report_id]
    from mlflow import MlflowClient

    files = [item.path for item in MlflowClient(uri).list_artifacts(report_id, "report")]
    assert files == ["report/report.md"]


def test_errors_name_what_is_missing(tmp_path, sqlite_uri):
    uri = sqlite_uri
    tracking.setup_experiment("errors", tracking_uri=uri)
    with pytest.raises(TrackingError, match=r"no MLflow experiment 'nope' at sqlite:///.*mlflow.db; run 'scaling sweep run FILE' first"):
        tracking.runs_frame("nope", tracking_uri=uri)
    with pytest.raises(TrackingError, match=r"no MLflow run 'abc' at sqlite:///.*; take run ids from runs_frame"):
        tracking.learning_curve("abc", tracking_uri=uri)
    run_id = _finished_run(uri, _spec(sweep="errors"), steps=1)
    with pytest.raises(TrackingError, match=r"has no metric 'eval/bpb'; use e.g. 'eval/loss'"):
        tracking.learning_curve(run_id, tracking_uri=uri, metric="eval/bpb")
    with pytest.raises(TrackingError, match=r"report directory .*missing does not exist; write the report first"):
        tracking.log_report("errors", tmp_path / "missing", tracking_uri=uri)
    with pytest.raises(TrackingError, match=r"folder .*no/such does not exist; create it"):
        tracking.check_tracking("sqlite:///no/such/mlflow.db")


def test_unreachable_server_is_a_clear_error():
    from services import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match=rf"cannot reach the MLflow tracking server at {url} .*; start it"):
        tracking.check_tracking(url, timeout=2)


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_runs_carry_their_provenance(tmp_path, sqlite_uri, monkeypatch):
    """Git commit and dirty flag of the working directory, package versions, device, host,
    sweep config hash and corpus hash, as scaling.* tags and run-table columns."""
    uri = sqlite_uri
    repo = tmp_path / "repo"  # a throwaway repository: the project's own is never touched
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("a\n")
    _git(repo, "add", "train.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD")
    tracking.setup_experiment("provenance", tracking_uri=uri)
    spec = _spec("clean", sweep="provenance")
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"content_hash": "c0ffee" * 4})})
    monkeypatch.chdir(repo)
    with tracking.RunLogger(spec, tracking_uri=uri, tags={tracking.TAG_CONFIG_HASH: "cfg123"}) as run:
        run.finish(SUMMARY)
    (repo / "train.py").write_text("b\n")  # an uncommitted change
    _finished_run(uri, _spec("dirty", sweep="provenance", lr=1e-3), steps=1)
    monkeypatch.chdir(tmp_path)  # not a repository
    _finished_run(uri, _spec("outside", sweep="provenance", lr=2e-3), steps=1)

    runs = {run["name"]: run["tags"] for run in tracking.find_runs("provenance", tracking_uri=uri)}
    clean, dirty, outside = runs["clean"], runs["dirty"], runs["outside"]
    assert clean["scaling.git_commit"] == head and clean["scaling.git_dirty"] == "false"
    assert clean["mlflow.source.git.commit"] == head  # the MLflow UI's "Version" column
    assert dirty["scaling.git_commit"] == head and dirty["scaling.git_dirty"] == "true"
    assert "scaling.git_commit" not in outside and "scaling.git_dirty" not in outside
    for package in ("scaling", "torch", "mlflow", "optuna"):
        assert clean[f"scaling.version_{package}"] == metadata.version(package)
    import torch

    assert clean.get("scaling.version_cuda") == (torch.version.cuda or None)
    if torch.cuda.is_available():
        assert clean["scaling.device"] == torch.cuda.get_device_name(0)
        assert clean["scaling.device_count"] == str(torch.cuda.device_count())
    else:
        assert clean["scaling.device"].startswith("cpu: ")
        assert clean["scaling.device_count"] == str(os.cpu_count())
    assert clean["scaling.host"] == socket.gethostname()
    assert clean[tracking.TAG_CONFIG_HASH] == "cfg123"
    assert clean[tracking.TAG_CORPUS_HASH] == "c0ffee" * 4
    assert tracking.TAG_CORPUS_HASH not in dirty  # no content hash in its data config

    frame = tracking.runs_frame("provenance", tracking_uri=uri).set_index("name")
    assert frame.loc["clean", "git_commit"] == head and frame.loc["dirty", "git_dirty"] == "true"
    assert frame.loc["clean", "version_torch"] == metadata.version("torch")
    assert frame.loc["clean", "corpus_hash"] == "c0ffee" * 4
    assert frame.loc["clean", "host"] == socket.gethostname()
    assert frame["git_commit"].isna().sum() == 1  # outside the repository


def test_the_experiment_opens_as_model_training_with_the_sweep_view(sqlite_uri):
    from mlflow import MlflowClient

    tracking.setup_experiment("ui-kind", tracking_uri=sqlite_uri)
    tags = MlflowClient(sqlite_uri).get_experiment_by_name("ui-kind").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(tags[f"mlflow.sharedViewState.{tracking.SWEEP_VIEW_KEY}"])
    assert view["searchFilter"] == "tags.`scaling.role` != 'report'"
    assert view["selectedColumns"] == [
        "metrics.`final/eval_loss`", "metrics.`size/params`", "metrics.`size/tokens`", "metrics.`size/flops`"
    ]
    assert tracking.sweep_view_url("ui-kind", tracking_uri=sqlite_uri) is None  # no UI address known
    url = tracking.sweep_view_url("ui-kind", tracking_uri=sqlite_uri, ui="http://127.0.0.1:5000/")
    assert url.startswith("http://127.0.0.1:5000/#/experiments/") and url.endswith(
        f"/runs?workflowType=machine_learning&viewStateShareKey={tracking.SWEEP_VIEW_KEY}"
    )
