"""A sweep's target on several processes: ``target.nproc_per_node`` and ``sweep export-target``.

The worker that claims the target launches ``torchrun --standalone`` (2 gloo processes here,
on CPU), rank 0 logging into the sweep's MLflow run; a SIGKILLed worker takes its child with
it, and the next attempt resumes that run from its checkpoint. The exported run file trains the
run the plan names (its run key) with any launcher, and the sweep then reuses it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import write_sweep

from scaling.cli import main
from scaling.config.run import load_run_spec
from scaling.errors import ConfigError
from scaling.sweeps import tracking
from scaling.sweeps.planning import expand, load_sweep, plan, target_spec
from scaling.sweeps.queue import load_study, open_storage, storage_url
from scaling.sweeps.workers import check_launchable, run_sweep, status, worker
from scaling.training.loop import train

# tests/test_sweep.py's TINY sweep, its target on two processes.
TINY = {
    "name": "tiny",
    "data": {"eval_tokens": 512},
    "model": {"n_layer": 1, "n_head": 2, "context": 16},
    "train": {"batch_tokens": 64, "eval_every": 5, "device": "cpu"},  # gloo, also where GPUs are
    "ladder": {"tokens_per_param": [1], "shapes": [{"d_model": 8}, {"d_model": 12}]},
    "target": {"shape": {"d_model": 16}, "tokens_per_param": 1, "nproc_per_node": 2},
}


def _target_only(name: str, **target) -> dict:
    """TINY without its ladder: a sweep of the target alone (a ladder changes nothing here)."""
    return {**{k: v for k, v in TINY.items() if k != "ladder"}, "name": name,
            "target": {**TINY["target"], **target}}  # fmt: skip


def _complete_trials(path: Path, run_key: str) -> int:
    """COMPLETE trials of the sweep's target study that carry ``run_key``."""
    config = load_sweep(path)
    study = load_study(open_storage(storage_url(None, tracking.DEFAULT_TRACKING_URI)), f"{config.name}/target")
    return sum(t.state.name == "COMPLETE" and t.user_attrs.get("run_key") == run_key for t in study.get_trials())


# ------------------------------------------------------------------------ the sweep file --


@pytest.mark.parametrize("value", [0, -2, 1.5, "two", True])
def test_a_bad_nproc_per_node_is_one_line_naming_the_field_and_nothing_is_enqueued(value, capsys):
    path = write_sweep({**TINY, "target": {**TINY["target"], "nproc_per_node": value}})
    assert main(["sweep", "run", str(path)]) == 2
    assert capsys.readouterr().err == (f"error: sweep.yaml: target.nproc_per_node = {value!r}: use a whole "
                                       "number of at least 1, e.g. 8 (one process per GPU)\n")  # fmt: skip
    assert not Path("optuna.journal").exists() and not Path("mlflow.db").exists()


@pytest.mark.parametrize(("target", "train", "message"), [
    ({"nproc_per_node": 3}, {},
     ("error: sweep.yaml: target.nproc_per_node = 3: the target's train.batch_tokens = 64 is 4 sequences of "
      "model.context = 16, which do not split over 3 processes; use a batch_tokens multiple of 48 or fewer "
      "processes\n")),
    ({"nproc_per_node": 2}, {"device": "cuda:1"},
     ("error: sweep.yaml: target.nproc_per_node = 2: train.device = 'cuda:1' puts every process on one GPU; "
      "use 'cuda' or 'auto' (each process takes its local rank's GPU)\n")),
])  # fmt: skip
def test_a_target_its_processes_cannot_share_fails_at_load_in_one_line(target, train, message, capsys):
    sweep = {**TINY, "train": {**TINY["train"], **train}, "target": {**TINY["target"], **target}}
    assert main(["sweep", "run", str(write_sweep(sweep)), "--dry-run"]) == 2
    assert capsys.readouterr().err == message


def test_process_counts_change_no_run_key_nor_the_config_hash_and_the_plan_shows_them(capsys):
    one = load_sweep(write_sweep({**TINY, "target": {k: v for k, v in TINY["target"].items() if k != "nproc_per_node"}}))
    two = load_sweep(write_sweep(TINY))
    assert (one.target.nproc_per_node, two.target.nproc_per_node) == (1, 2)
    assert [s.run_key for s in expand(one)] == [s.run_key for s in expand(two)]
    assert one.config_hash == two.config_hash
    assert [row["processes"] for row in plan(two)] == [1, 1, 2]
    assert main(["sweep", "run", "sweep.yaml", "--dry-run", "--no-estimate", "--output", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(row["role"], row["processes"]) for row in runs] == [("proxy", 1), ("proxy", 1), ("target", 2)]


def test_a_target_on_several_nodes_is_exported_not_launched(capsys):
    nodes = {**TINY, "train": {**TINY["train"], "batch_tokens": 256},
             "target": {**TINY["target"], "nproc_per_node": 8, "nnodes": 2}}  # fmt: skip
    path = write_sweep(nodes)
    assert main(["sweep", "run", str(path)]) == 2
    assert capsys.readouterr().err == (
        "error: sweep.yaml: target.nnodes = 2: a sweep worker launches the target on its own node only; "
        "write its run file with 'scaling sweep export-target sweep.yaml -o target.yaml', launch that with "
        "torchrun --nnodes 2 (its header says how), and run the sweep with --roles proxy\n")
    assert not Path("optuna.journal").exists()
    check_launchable(load_sweep(path), ("proxy",))  # the proxies still run from the sweep
    with pytest.raises(ConfigError, match=r"target.nnodes = 2: a sweep worker launches"):
        check_launchable(load_sweep(path), ("proxy", "target"))
    assert [row["processes"] for row in plan(load_sweep(path))] == [1, 1, 16]
    assert main(["sweep", "export-target", str(path), "-o", "target.yaml"]) == 0
    assert "#   torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d" in Path("target.yaml").read_text()


def test_gpus_pinned_one_per_worker_cannot_take_a_target_on_several_processes(capsys):
    path = write_sweep(TINY)
    assert main(["sweep", "run", str(path), "--devices", "0,1"]) == 2
    assert capsys.readouterr().err == (
        "error: sweep.yaml: target.nproc_per_node = 2 needs a worker that sees 2 GPUs, but --devices pins "
        "one GPU per worker; run the proxies with --roles proxy --devices ..., and the target with "
        "'scaling sweep worker FILE --roles target' without --devices\n")
    assert not Path("optuna.journal").exists()
    check_launchable(load_sweep(path), ("proxy",), devices=("0", "1"))


# ----------------------------------------------------------------------- export-target --


def test_export_target_writes_the_plans_run_with_a_launch_header(capsys):
    path = write_sweep(TINY)
    assert main(["sweep", "export-target", str(path), "-o", "target.yaml", "--output", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    (planned,) = [spec for spec in expand(load_sweep(path)) if spec.role == "target"]  # what is enqueued
    exported = load_run_spec("target.yaml")
    assert exported.run_key == planned.run_key == printed["run_key"]
    assert exported == planned  # every field, the pinned corpus hash included
    assert exported.data.content_hash is not None and (exported.role, exported.sweep) == ("target", "tiny")
    text = Path("target.yaml").read_text()
    command = (f"torchrun --standalone --nproc_per_node 2 -m scaling train target.yaml --experiment tiny "
               f"--tracking-uri sqlite:///mlflow.db --checkpoint-dir checkpoints/tiny/{planned.run_key}")  # fmt: skip
    assert printed["command"] == command and f"#   {command}\n" in text
    assert all(line.startswith("#") for line in text.split("sweep: tiny\n")[0].splitlines())
    assert yaml.safe_load(text)["train"]["tokens"] == planned.train.tokens


def test_export_target_errors_are_one_line(capsys):
    assert main(["sweep", "export-target", str(write_sweep({k: v for k, v in TINY.items() if k != "target"}))]) == 2
    assert capsys.readouterr().err == (
        "error: sweep.yaml: no target section; add 'target:' with the shape and budget of the large run "
        "(e.g. target: {shape: {d_model: 512}, tokens_per_param: 20})\n")
    assert main(["sweep", "export-target", str(write_sweep(TINY)), "-o", "no/such/folder/target.yaml"]) == 2
    assert capsys.readouterr().err == (
        "error: -o no/such/folder/target.yaml: cannot write it (No such file or directory); give a file "
        "in an existing folder you can write to\n")
    assert main(["sweep", "export-target", "sweep.yaml", "--quick"]) == 2
    assert capsys.readouterr().err.startswith("error: sweep.yaml: no quick section")
    quick = {**TINY, "quick": {"name": "tiny-quick", "target": {"shape": {"d_model": 20}}}}
    assert main(["sweep", "export-target", str(write_sweep(quick)), "--quick", "-o", "q.yaml"]) == 0
    assert load_run_spec("q.yaml").run_key == target_spec(load_sweep("sweep.yaml", quick=True)).run_key
    assert load_run_spec("q.yaml").model.d_model == 20 and "export-target sweep.yaml --quick" in Path("q.yaml").read_text()


@pytest.mark.slow
def test_the_exported_target_trained_elsewhere_is_the_run_the_sweep_reuses(capsys, one_torch_thread):
    path = write_sweep(_target_only("elsewhere"))
    assert main(["sweep", "export-target", str(path), "-o", "target.yaml"]) == 0
    capsys.readouterr()
    uri = "sqlite:///" + str(Path("mlflow.db").resolve())
    # a launcher that is not ours: here one process (the file's nproc_per_node is advice)
    assert main(["train", "target.yaml", "--experiment", "elsewhere", "--tracking-uri", uri, "--output", "json"]) == 0
    loss = json.loads(capsys.readouterr().out)["final_eval_loss"]
    (run,) = tracking.find_runs("elsewhere", tracking_uri=uri)
    key = target_spec(load_sweep(path)).run_key
    assert run["status"] == "FINISHED" and run["tags"][tracking.TAG_RUN_KEY] == key
    assert (run["tags"][tracking.TAG_ROLE], run["tags"][tracking.TAG_WORLD_SIZE]) == ("target", "1")
    assert run["metrics"]["final/eval_loss"] == loss

    # --run-id reopens only a run of the same key, and only with --experiment
    assert main(["train", "target.yaml", "--set", "train.seed=1", "--experiment", "elsewhere",
                 "--tracking-uri", uri, "--run-id", run["run_id"]]) == 2  # fmt: skip
    assert capsys.readouterr().err.endswith(
        f"is the run of run key {key}, not of this run file's "
        f"{load_run_spec('target.yaml', {'train.seed': 1}).run_key}; give the run id of this run, or leave "
        "--run-id out to log a new run\n")
    assert main(["train", "target.yaml", "--run-id", run["run_id"]]) == 2
    assert capsys.readouterr().err == f"error: --run-id {run['run_id']} needs --experiment, the run's experiment (its sweep)\n"

    assert run_sweep(path, workers=0)["enqueued"] == 1
    assert worker(path) == {"trained": 0, "reused": 1, "failed": 0, "retried": 0, "duplicate": 0, "pruned": 0}
    (row,) = status(path)
    assert (row["state"], row["loss"], row["mlflow_run_id"]) == ("COMPLETE", loss, run["run_id"])


# ---------------------------------------------------------------- the target on torchrun --


def _checkpointed(folder: Path, child: subprocess.Popen, timeout: float = 240) -> None:
    """Wait until the run in ``folder`` has written a checkpoint and not finished."""
    deadline = time.monotonic() + timeout
    while not (folder / "last.pt").exists():
        assert child.poll() is None, "the worker ended before the target checkpointed"
        assert time.monotonic() < deadline, f"no checkpoint within {timeout:g} s"
        time.sleep(0.02)
    assert not (folder / "final.pt").exists(), "the target finished before the worker was killed"


@pytest.mark.slow
def test_a_two_process_target_survives_its_killed_worker_and_matches_one_process(one_torch_thread):
    sweep = _target_only("ddp", tokens=64 * 400, tokens_per_param=None)
    sweep["train"] = {**sweep["train"], "eval_every": 200, "checkpoint_every": 50, "log_every": 10}
    path = write_sweep(sweep)
    spec = target_spec(load_sweep(path))
    assert run_sweep(path, workers=0)["enqueued"] == 1  # a worker joins from elsewhere
    first = subprocess.Popen([sys.executable, "-m", "scaling", "sweep", "worker", str(path), "--threads", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _checkpointed(Path("checkpoints/ddp") / spec.run_key, first)
        child = psutil.Process(first.pid).children(recursive=True)  # its torchrun and the ranks
        ranks = [p for p in child if "WORLD_SIZE" in p.environ()]
        assert len(child) == 3 and len(ranks) == 2
        assert sorted(p.environ()["RANK"] for p in ranks) == ["0", "1"]
        assert {(p.environ()["WORLD_SIZE"], p.environ()["OMP_NUM_THREADS"]) for p in ranks} == {("2", "1")}
        first.kill()  # the worker dies mid-run, with no chance to clean up
        first.wait()
        _, alive = psutil.wait_procs(child, timeout=60)
        assert not alive, f"orphans of the killed worker: {alive}"  # the kernel told torchrun
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    (left,) = tracking.find_runs("ddp")
    assert left["status"] == "KILLED" and left["tags"][tracking.TAG_FAILURE] == "stopped by SIGTERM"  # rank 0

    summary = run_sweep(path, workers=1, threads=1)  # reaps the dead worker's trial, resumes its run

    assert (summary["done"], summary["failed"], summary["requeued"]) == (1, 0, [spec.name])
    (run,) = tracking.find_runs("ddp")  # exactly one MLflow run for the key: the same one, resumed
    assert run["run_id"] == left["run_id"] and run["status"] == "FINISHED"
    tags, metrics = run["tags"], run["metrics"]
    assert (tags[tracking.TAG_ROLE], tags[tracking.TAG_RUN_KEY], tags[tracking.TAG_WORLD_SIZE]) == ("target", spec.run_key, "2")
    assert 50 <= metrics["perf/resumed_from_step"] < 400 and metrics["size/tokens"] == 64 * 400
    assert _complete_trials(path, spec.run_key) == 1
    (row,) = summary["rows"]
    assert (row["state"], row["retries"], row["loss"]) == ("COMPLETE", 1, metrics["final/eval_loss"])
    # DDP over 2 ranks at the same global batch is one process's run up to the order of float sums
    single = train(spec)
    assert metrics["final/eval_loss"] == pytest.approx(single.final_eval_loss, abs=1e-4)
    assert single.final_eval_loss < 4.0  # a learning curve's end (it starts near ln 256 = 5.5)


@pytest.mark.slow
def test_a_user_error_in_a_rank_fails_the_target_at_once_with_its_one_line_reason(capsys):
    # 64 tokens per micro batch fit one process's 64-token share of the batch, not 2 x 32
    sweep = _target_only("child-error")
    sweep["train"] = {**sweep["train"], "micro_batch_tokens": 64}
    path = write_sweep(sweep)
    assert run_sweep(path, workers=0)["enqueued"] == 1
    capsys.readouterr()
    assert main(["sweep", "worker", str(path), "--threads", "1"]) == 1
    reason = ("ConfigError: train.micro_batch_tokens = 64 must be a multiple of model.context = 16 that "
              "divides the 32 tokens each process handles per step; use e.g. 16")  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert f"failed: {target_spec(load_sweep(path)).name}: {reason}" in err
    assert err[-1].startswith("error: 1 run(s) failed; fix the cause")
    (row,) = status(path)
    assert (row["state"], row["failure"], row["retries"]) == ("FAIL", reason, 0)  # not retried
    (run,) = tracking.find_runs("child-error")
    assert run["status"] == "FAILED" and run["tags"][tracking.TAG_FAILURE] == reason
