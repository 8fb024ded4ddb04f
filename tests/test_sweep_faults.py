"""Exactly once under faults: a SIGKILLed worker, and three workers on PostgreSQL + mlflow server.

These tests fail if any run is lost, trained twice, or left RUNNING.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import write_sweep

from scaling.sweeps import tracking
from scaling.sweeps.planning import expand, load_sweep
from scaling.sweeps.workers import run_sweep, status, worker


def _one_finished_run_per_key(path: Path, **where) -> dict[str, dict]:
    """Assert every RunSpec of the sweep has exactly one MLflow run, FINISHED; return them."""
    config = load_sweep(path)
    runs = tracking.find_runs(config.name, **where)
    keys = Counter(run["tags"][tracking.TAG_RUN_KEY] for run in runs)
    expected = {spec.run_key for spec in expand(config)}
    assert set(keys) == expected, "a RunSpec has no MLflow run"
    assert set(keys.values()) == {1}, f"duplicated runs: {keys}"
    assert {run["status"] for run in runs} == {"FINISHED"}, [run["status"] for run in runs]
    return {run["tags"][tracking.TAG_RUN_KEY]: run for run in runs}


def _running_with_checkpoint(path: Path, launcher: subprocess.Popen) -> dict:
    """Wait until the running trial has written a checkpoint and not finished; return its row."""
    deadline = time.time() + 240
    while True:
        assert time.time() < deadline and launcher.poll() is None, "no checkpointed run appeared"
        for row in status(path):
            folder = Path("checkpoints") / load_sweep(path).name / str(row["run_key"])
            if row["state"] == "RUNNING" and (folder / "last.pt").exists() and not (folder / "final.pt").exists():
                return row
        time.sleep(0.02)


@pytest.mark.slow
def test_sigkilled_worker_resumes_into_the_same_run_and_nothing_is_duplicated():
    sweep = {
        "name": "faults",
        "data": {"eval_tokens": 512},
        "model": {"n_layer": 1, "n_head": 2, "context": 16},
        "train": {"batch_tokens": 64, "checkpoint_every": 10, "eval_every": 100, "log_every": 10},
        "ladder": {"tokens": [64 * 1000], "shapes": [{"d_model": 8}, {"d_model": 12}]},
    }
    path = write_sweep(sweep)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "scaling", "sweep", "run", str(path), "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        running = _running_with_checkpoint(path, launcher)
        pid = int(running["worker"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)  # the worker dies mid-run, then its launcher
        os.kill(launcher.pid, signal.SIGKILL)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()
    assert not (Path("checkpoints/faults") / running["run_key"] / "final.pt").exists()
    left = tracking.find_runs("faults", run_key=running["run_key"])
    assert [run["status"] for run in left] == ["RUNNING"]  # what a SIGKILL leaves behind

    summary = run_sweep(path, threads=1)  # start again

    assert running["name"] in summary["requeued"]
    assert (summary["done"], summary["failed"]) == (2, 0)
    runs = _one_finished_run_per_key(path)
    resumed = runs[running["run_key"]]
    assert resumed["run_id"] == left[0]["run_id"]  # resumed into the same MLflow run
    assert resumed["metrics"]["perf/resumed_from_step"] >= 10
    assert resumed["metrics"]["size/tokens"] == 64 * 1000
    assert worker(path) == {"trained": 0, "reused": 0, "failed": 0, "retried": 0, "duplicate": 0, "pruned": 0}


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_on_postgres_and_mlflow_server_train_each_run_exactly_once(postgres_server, mlflow_server):
    storage = postgres_server("optuna")
    sweep = {
        "name": "three-workers",
        "data": {"eval_tokens": 512},
        "model": {"n_layer": 1, "n_head": 2, "context": 16},
        "train": {"batch_tokens": 64, "eval_every": 20},
        "ladder": {"tokens_per_param": [1, 2], "shapes": [{"d_model": 8}, {"d_model": 12}, {"d_model": 16}]},
    }
    path = write_sweep(sweep)
    summary = run_sweep(path, workers=3, storage=storage, tracking_uri=mlflow_server, threads=1)
    assert (summary["done"], summary["failed"], summary["workers_started"]) == (6, 0, 3)
    runs = _one_finished_run_per_key(path, tracking_uri=mlflow_server)
    rows = status(path, storage=storage, tracking_uri=mlflow_server)
    assert len(rows) == 6 and {row["state"] for row in rows} == {"COMPLETE"}
    assert not any(row["reused"] for row in rows)  # each was trained, none found done already
    assert {row["mlflow_run_id"] for row in rows} == {run["run_id"] for run in runs.values()}
    assert len({row["worker"] for row in rows}) <= 3
    again = run_sweep(path, workers=3, storage=storage, tracking_uri=mlflow_server)
    assert (again["enqueued"], again["workers_started"]) == (0, 0)
    frame = tracking.runs_frame("three-workers", tracking_uri=mlflow_server)
    assert len(frame) == 6 and frame.loss.notna().all()


def _one_checkpointed_run(name: str) -> dict:
    """A sweep of one tiny run that checkpoints every 10 steps and lasts long enough to signal."""
    return {
        "name": name,
        "data": {"eval_tokens": 512},
        "model": {"n_layer": 1, "n_head": 2, "context": 16},
        "train": {"batch_tokens": 64, "checkpoint_every": 10, "eval_every": 100, "log_every": 10},
        "ladder": {"tokens": [64 * 1000], "shapes": [{"d_model": 8}]},
    }


@pytest.mark.slow
def test_sigterm_ends_the_run_killed_and_the_launcher_resumes_it():
    sweep = _one_checkpointed_run("sigterm")
    path = write_sweep(sweep)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "scaling", "sweep", "run", str(path), "--threads", "1", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        running = _running_with_checkpoint(path, launcher)
        os.kill(int(running["worker"].rsplit(":", 1)[1]), signal.SIGTERM)
        out, _ = launcher.communicate(timeout=240)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 0
    assert json.loads(out)["done"] == 1
    (run,) = _one_finished_run_per_key(path).values()
    assert run["run_id"] == running["mlflow_run_id"]
    assert run["metrics"]["perf/resumed_from_step"] >= 10


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_its_workers_and_leaves_nothing_running():
    sweep = _one_checkpointed_run("stop-launcher")
    path = write_sweep(sweep)
    err = Path("launcher.err").open("w+")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "scaling", "sweep", "run", str(path), "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=err,
    )  # fmt: skip
    try:
        running = _running_with_checkpoint(path, launcher)
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(timeout=120)
        err.seek(0)
        assert code == 143, f"launcher exited {code}; its stderr ended:\n{err.read()[-3000:]}"
    finally:
        err.close()
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    worker_pid = int(running["worker"].rsplit(":", 1)[1])
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)  # the launcher stopped the worker it started
    (left,) = tracking.find_runs("stop-launcher")
    assert left["status"] == "KILLED" and left["tags"][tracking.TAG_FAILURE] == "stopped by SystemExit"
    assert [row["state"] for row in status(path)] == ["WAITING"]  # put back in the queue
    assert run_sweep(path, threads=1)["done"] == 1
    (run,) = _one_finished_run_per_key(path).values()
    assert run["run_id"] == left["run_id"] and run["metrics"]["perf/resumed_from_step"] >= 10


def test_a_trial_its_owner_completed_before_the_reaper_failed_it_still_counts():
    from optuna.trial import TrialState, create_trial

    from scaling.sweeps.queue import superseded

    # The reaper marks 'requeued' first, then its tell(FAIL) is refused: the owner finished.
    completed = create_trial(state=TrialState.COMPLETE, value=2.5, user_attrs={"requeued": True})
    reaped = create_trial(state=TrialState.FAIL, user_attrs={"requeued": True})
    empty = create_trial(state=TrialState.FAIL, user_attrs={"empty": True})
    assert [superseded(t) for t in (completed, reaped, empty)] == [False, True, True]


def test_a_cleanup_step_that_fails_while_the_launcher_stops_keeps_the_stop_and_says_why(capsys):
    from scaling.sweeps.workers import _cleanup_after_stop

    def stop_then_fail(stop: BaseException) -> None:
        try:
            raise stop
        finally:
            with _cleanup_after_stop("reaping"):
                raise RuntimeError("database is locked")

    with pytest.raises(SystemExit) as stopped:
        stop_then_fail(SystemExit(143))
    assert stopped.value.code == 143  # the stop's exit code, not the cleanup's exception
    assert "while stopping, reaping failed: RuntimeError: database is locked" in capsys.readouterr().err
    with pytest.raises(RuntimeError):  # outside a stop, a failing step still raises
        stop_then_fail(ValueError("not a stop"))
