"""The failure policy, the shared checkpoint root, node workers and PostgreSQL URLs.

Runs are real (the trainer, sqlite MLflow, the Optuna journal; PostgreSQL where marked). The
faults are real too: a run configured for a GPU this machine lacks (the user's error), a
directory where the final checkpoint must go (a transient OSError), a dead process's pid as a
trial's owner.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_sweep

from scaling.cli import main
from scaling.errors import StorageError
from scaling.sweeps import tracking
from scaling.sweeps.planning import expand, load_sweep
from scaling.sweeps.queue import (
    claim,
    enqueue,
    load_study,
    mark_ready,
    normalise_storage_url,
    open_storage,
    reap,
    storage_url,
)
from scaling.sweeps.workers import status, worker

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sweep(name: str, **train) -> dict:
    """Two tiny ladder runs that checkpoint every 10 steps (20 steps each)."""
    return {
        "name": name,
        "data": {"eval_tokens": 256},
        "model": {"n_layer": 1, "n_head": 2, "context": 16},
        "train": {"batch_tokens": 64, "eval_every": 100, "checkpoint_every": 10, **train},
        "ladder": {"tokens": [64 * 20], "shapes": [{"d_model": 8}, {"d_model": 12}]},
    }


def _launch(path: Path, **execution):
    """What the launcher does before it starts workers: studies, queue, MLflow, the flag."""
    config = load_sweep(path)
    if execution:
        config = config.model_copy(update={"execution": config.execution.model_copy(update=execution)})
    store = open_storage(storage_url(None, tracking.DEFAULT_TRACKING_URI))
    enqueue(config, store, ("proxy", "target"))
    tracking.setup_experiment(config.name)
    mark_ready(config, store, ("proxy", "target"))
    return config, store


# --------------------------------------------------------------------- the user's errors --


@pytest.mark.slow
def test_a_users_error_fails_at_once_with_its_reason_and_a_fixed_rerun_trains_it(capsys):
    path = write_sweep(_sweep("user-error", device="cuda"))  # no GPU here: a ConfigError
    _launch(path)
    capsys.readouterr()  # MLflow's notes on creating its database
    assert main(["sweep", "worker", str(path)]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"trained": 0, "reused": 0, "failed": 2, "retried": 0, "duplicate": 0, "pruned": 0}
    reason = "ConfigError: train.device = 'cuda' but no CUDA GPU is visible; use 'cpu'"
    lines = err.splitlines()
    assert sorted(lines[:2]) == [f"failed: d12-L1-1.28e3tok: {reason}", f"failed: d8-L1-1.28e3tok: {reason}"]
    assert lines[2].startswith("error: 2 run(s) failed; fix the cause") and len(lines) == 3
    rows = status(path)
    assert {(row["state"], row["failure"], row["retries"]) for row in rows} == {("FAIL", reason, 0)}
    failed = tracking.find_runs("user-error")
    assert {(run["status"], run["tags"][tracking.TAG_FAILURE]) for run in failed} == {("FAILED", reason)}
    assert main(["sweep", "status", str(path)]) == 0
    assert "no CUDA GPU is visible" in capsys.readouterr().out

    fixed = write_sweep(_sweep("user-error", device="cpu"))  # the same runs: device is no part of a key
    assert [s.run_key for s in expand(load_sweep(fixed))] == [s.run_key for s in expand(load_sweep(path))]
    assert main(["sweep", "retry", str(fixed)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 failed run(s) re-queued"
    assert [row["state"] for row in status(fixed)] == ["WAITING", "WAITING"]
    assert main(["sweep", "retry", str(fixed)]) == 0  # nothing failed any more: nothing re-queued
    assert capsys.readouterr().out.splitlines()[-1] == "0 failed run(s) re-queued"
    assert main(["sweep", "worker", str(fixed)]) == 0
    assert json.loads(capsys.readouterr().out)["trained"] == 2
    runs = tracking.find_runs("user-error")
    assert {run["run_id"] for run in runs} == {run["run_id"] for run in failed}  # the same runs, reopened
    assert {run["status"] for run in runs} == {"FINISHED"}
    assert not any(tracking.TAG_FAILURE in run["tags"] for run in runs)  # the old reason is gone
    assert {row["state"] for row in status(fixed)} == {"COMPLETE"}


@pytest.mark.slow
def test_sweep_run_exits_1_naming_each_failed_run_and_a_rerun_after_the_fix_trains_them(capsys):
    path = write_sweep(_sweep("run-fails", device="cuda"))
    assert main(["sweep", "run", str(path), "--threads", "1", "--output", "json"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["failed"], summary["workers_started"]) == (2, 2)  # tiny runs: a worker per core
    assert [line for line in err.splitlines() if line.startswith("failed: ")] == [
        f"failed: {f['name']}: {f['reason']}" for f in summary["failures"]]
    assert all("no CUDA GPU is visible" in f["reason"] for f in summary["failures"])
    fixed = write_sweep(_sweep("run-fails", device="cpu"))
    assert main(["sweep", "run", str(fixed), "--threads", "1", "--output", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(summary["retried"]) == ["d12-L1-1.28e3tok", "d8-L1-1.28e3tok"]
    assert (summary["done"], summary["failed"], summary["failures"]) == (2, 0, [])


# --------------------------------------------------------------------- transient failures --


def _block_final_checkpoint(root: Path, config) -> list[Path]:
    """A directory where each run's final.pt must go: os.replace fails (IsADirectoryError)
    after the last step's last.pt was written."""
    blockers = []
    for spec in expand(config):
        blocker = root / config.name / spec.run_key / "final.pt"
        blocker.mkdir(parents=True)
        blockers.append(blocker)
    return blockers


@pytest.mark.slow
def test_a_transient_failure_is_retried_from_its_checkpoint_on_another_machine(tmp_path):
    shared = tmp_path / "shared-checkpoints"
    node_a, node_b = tmp_path / "node-a", tmp_path / "node-b"
    node_a.mkdir()
    node_b.mkdir()
    os.chdir(node_a)
    path = write_sweep(_sweep("transient"))
    config, _ = _launch(path)
    blockers = _block_final_checkpoint(shared, config)
    counts = worker(path, checkpoint_root=shared, max_trials=2)
    assert counts["retried"] == 2 and counts["trained"] == 0
    assert {(row["state"], row["retries"]) for row in status(path)} == {("WAITING", 1)}
    killed = tracking.find_runs("transient")
    assert {run["status"] for run in killed} == {"KILLED"}
    assert all("IsADirectoryError" in run["tags"][tracking.TAG_FAILURE] and "retry 1 of 2" in run["tags"][tracking.TAG_FAILURE] for run in killed)
    for blocker in blockers:
        blocker.rmdir()  # the fault goes away

    os.chdir(node_b)  # another machine, the same database, queue and checkpoint root
    uri = f"sqlite:///{node_a / 'mlflow.db'}"
    counts = worker(node_a / path, tracking_uri=uri, checkpoint_root=shared)
    assert counts["trained"] == 2
    runs = tracking.find_runs("transient", tracking_uri=uri)
    assert {run["run_id"] for run in runs} == {run["run_id"] for run in killed}
    assert {run["status"] for run in runs} == {"FINISHED"}
    assert {run["metrics"]["perf/resumed_from_step"] for run in runs} == {20.0}  # from last.pt
    assert not Path("checkpoints").exists() and not (node_a / "checkpoints").exists()
    assert all((shared / "transient" / s.run_key / "final.pt").is_file() for s in expand(config))


@pytest.mark.slow
def test_a_transient_failure_that_persists_fails_after_max_retries(capsys):
    path = write_sweep(_sweep("persistent"))
    config, _ = _launch(path)
    _block_final_checkpoint(Path("checkpoints"), config)
    capsys.readouterr()
    assert main(["sweep", "worker", str(path), "--max-retries", "1"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == {"trained": 0, "reused": 0, "failed": 2, "retried": 2, "duplicate": 0, "pruned": 0}
    rows = status(path)
    assert {(row["state"], row["retries"]) for row in rows} == {("FAIL", 1)}
    assert all(row["failure"].startswith("IsADirectoryError: ") for row in rows)
    assert all(row["failure"].endswith("(after 1 retries; max_retries = 1)") for row in rows)
    assert err.count("failed: ") == 2 and "IsADirectoryError" in err
    runs = tracking.find_runs("persistent")
    assert {run["status"] for run in runs} == {"FAILED"} and len(runs) == 2


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_workers_run_is_retried_up_to_max_retries_then_failed_with_the_reason():
    path = write_sweep({**_sweep("dead"), "ladder": {"tokens": [64 * 20], "shapes": [{"d_model": 8}]}})
    config, store = _launch(path, max_retries=1)
    study = load_study(store, "dead/proxy")
    for expected in ("WAITING", "FAIL"):
        trial = claim(study)
        trial.set_user_attr("pid", _dead_pid())  # its worker died mid-run
        requeued = reap(config)
        (row,) = status(path)
        assert row["state"] == expected
    assert requeued == [] and row["retries"] == 1
    assert row["failure"].startswith("worker ") and "died (reaped) after 1 retries (max_retries = 1)" in row["failure"]
    assert len(study.get_trials()) == 2  # one retry, through Optuna's retry callback
    assert study.get_trials()[1].system_attrs["retry_history"] == [0]


# ------------------------------------------------------------------------- checkpoint root --


@pytest.mark.slow
def test_checkpoints_go_under_the_sweep_files_checkpoint_root():
    path = write_sweep({**_sweep("rooted"), "execution": {"checkpoint_root": "elsewhere"}})
    config, _ = _launch(path)
    assert worker(path)["trained"] == 2
    for spec in expand(config):
        assert (Path("elsewhere/rooted") / spec.run_key / "last.pt").is_file()
    assert not Path("checkpoints").exists()


def test_a_failed_checkpoint_write_leaves_the_previous_one_whole_and_no_temporary(tmp_path):
    import torch

    from scaling.training.loop import _save_atomically

    path = tmp_path / "last.pt"
    _save_atomically({"step": 10, "weights": torch.arange(4.0)}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):  # torch.save fails mid-file
        _save_atomically({"step": 20, "weights": torch.arange(4.0), "bad": lambda: None}, path)
    assert torch.load(path, weights_only=True)["step"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# ---------------------------------------------------------------------------- node workers --


@pytest.mark.slow
def test_node_workers_pin_one_gpu_each_and_reap_a_dead_workers_run(capsys):
    path = write_sweep(_sweep("node"))
    _, store = _launch(path)
    orphan = claim(load_study(store, "node/proxy"))
    orphan.set_user_attr("pid", _dead_pid())  # a worker on this node died; no launcher runs
    assert main(["sweep", "worker", str(path), "--devices", "0,1", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"workers": 2, "exit_codes": [0, 0]}
    logs = sorted(Path("checkpoints/node/logs").glob("worker-*.log"))
    pinned = sorted(line.split("CUDA_VISIBLE_DEVICES=")[1].split()[0]
                    for log in logs for line in log.read_text().splitlines() if "CUDA_VISIBLE_DEVICES=" in line)
    assert pinned == ["0", "1"]  # one process per listed GPU, each pinned to its own
    rows = status(path)
    assert {row["state"] for row in rows} == {"COMPLETE"} and len(rows) == 2
    trials = load_study(store, "node/proxy").get_trials()
    assert {t.user_attrs.get("cuda_visible_devices") for t in trials if t.state.name == "COMPLETE"} <= {"0", "1"}
    runs = tracking.find_runs("node")
    assert len(runs) == 2 and {run["status"] for run in runs} == {"FINISHED"}


# ------------------------------------------------------------------------- PostgreSQL URLs --


def test_a_bare_postgresql_url_takes_the_installed_driver_and_none_is_one_line():
    assert normalise_storage_url("postgresql://u@db/optuna", ("psycopg2", "psycopg")) == "postgresql+psycopg2://u@db/optuna"
    assert normalise_storage_url("postgres://u@db/optuna", ("psycopg",)) == "postgresql+psycopg://u@db/optuna"
    assert normalise_storage_url("postgresql+psycopg://u@db/x", ("psycopg2",)) == "postgresql+psycopg://u@db/x"
    assert normalise_storage_url("optuna.journal", ()) == "optuna.journal"
    with pytest.raises(StorageError) as error:
        normalise_storage_url("postgresql://u@db/optuna", ())
    assert str(error.value) == (
        "cannot open the Optuna storage postgresql://u@db/optuna: no PostgreSQL driver is installed; "
        "pip install 'scaling[postgres]' (psycopg2-binary) or psycopg"
    )


def test_an_unreachable_bare_postgresql_url_is_one_line_naming_it(capsys):
    from services import free_port

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/optuna"
    assert main(["sweep", "run", str(write_sweep(_sweep("pg-down"))), "--storage", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot open the Optuna storage {url} (")
    assert "check the URL and that the database server is running" in err


@pytest.mark.postgres
def test_a_bare_postgresql_url_works_on_a_real_server(postgres_server):
    url = postgres_server("optuna_bare", driver="postgresql")
    assert url.startswith("postgresql://")
    path = write_sweep(_sweep("bare-url"))
    store = open_storage(url)
    config = load_sweep(path)
    assert enqueue(config, store, ("proxy",)) == 2
    assert enqueue(config, store, ("proxy",)) == 0  # the same database, read back
    assert [row["state"] for row in status(path, storage=url)] == ["WAITING", "WAITING"]
