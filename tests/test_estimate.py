"""``sweep run --dry-run``: the wall-time estimate, from a probe or from earlier runs, and the
runs that cannot train as planned, found before the sweep starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import write_sweep

from scaling.cli import main
from scaling.sweeps import tracking
from scaling.sweeps.estimate import EVAL_SPEEDUP, makespan, run_seconds
from scaling.sweeps.planning import expand, load_sweep, run_size
from scaling.sweeps.workers import run_sweep

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sweep(name: str, **shape) -> dict:
    return {
        "name": name,
        "data": {"eval_tokens": 256},
        "model": {"n_layer": 1, "n_head": 2, "context": 16},
        "train": {"batch_tokens": 64, "eval_every": 10},
        "ladder": {"tokens": [64 * 40], "shapes": [{"d_model": 8}, {"d_model": 12, **shape}]},
    }


def _dry_run(path, capsys, *extra):
    code = main(["sweep", "run", str(path), "--dry-run", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_run_takes_its_tokens_and_its_evaluations_at_the_measured_rate():
    (spec,) = [s for s in expand(load_sweep(write_sweep(_sweep("hand")))) if s.model.d_model == 8]
    # 40 steps, an eval every 10 and one at the end: 5 passes over 256 eval tokens
    assert run_seconds(spec, 100.0) == pytest.approx(2560 / 100 + 5 * 256 / (EVAL_SPEEDUP * 100))
    # a WSD branch's cooldown of 640 tokens (10 steps: 2 passes), on 4 GPUs: a quarter of it
    assert run_seconds(spec, 100.0, tokens=640) == pytest.approx(640 / 100 + 2 * 256 / (EVAL_SPEEDUP * 100))
    assert run_seconds(spec, 100.0, gpus=4) == pytest.approx(run_seconds(spec, 100.0) / 4)
    # longest first, each on the worker free soonest: 10 | 7, then 5 -> 12, then 4 -> 14
    assert makespan([10.0, 7.0, 5.0, 4.0], 2) == 14.0
    assert makespan([10.0, 7.0, 5.0, 4.0], 1) == 26.0


def test_the_dry_run_probes_each_shape_and_lays_the_runs_out_on_the_workers(capsys):
    path = write_sweep(_sweep("probe"))
    code, out, _ = _dry_run(path, capsys, "--workers", "2", "--output", "json")
    assert code == 0
    estimate = json.loads(out)["estimate"]
    assert estimate["source"] == "a 32-step probe of each shape on this machine"
    assert estimate["workers"] == 2 and [row["name"] for row in estimate["per_run"]] == [
        row["name"] for row in json.loads(out)["runs"]]
    assert all(row["seconds"] > 0 for row in estimate["per_run"])
    assert estimate["seconds"] == pytest.approx(makespan([row["seconds"] for row in estimate["per_run"]], 2))
    assert not Path("mlflow.db").exists()  # a dry run creates no tracking store
    code, out, _ = _dry_run(path, capsys)
    assert out.splitlines()[-1].startswith("estimated wall time: ")
    assert "on 2 worker(s), from a 32-step probe of each shape on this machine" in out  # tiny: a worker per core


def test_after_a_sweep_ran_the_estimate_reads_its_measured_throughput(capsys):
    path = write_sweep(_sweep("measured"))
    run_sweep(path, workers=1, threads=1)
    code, out, _ = _dry_run(path, capsys, "--workers", "1", "--output", "json")
    assert code == 0
    estimate = json.loads(out)["estimate"]
    assert estimate["source"] == "2 earlier runs' measured tokens/s"
    runs = {run["name"]: run["metrics"] for run in tracking.find_runs("measured", status="FINISHED")}
    for spec in expand(load_sweep(path)):  # each run at its own measured rate
        row = next(row for row in estimate["per_run"] if row["name"] == spec.name)
        rate = runs[spec.name]["perf/mean_tokens_per_s"]
        assert run_size(spec)["params"] == runs[spec.name]["size/params"]
        assert row["seconds"] == pytest.approx(run_seconds(spec, rate), rel=1e-9)
    assert estimate["seconds"] == pytest.approx(sum(row["seconds"] for row in estimate["per_run"]))  # one worker


def test_a_run_that_cannot_train_as_planned_fails_the_dry_run_naming_it(capsys):
    path = write_sweep(_sweep("bad", batch_tokens=72))  # 4.5 sequences of 16 tokens
    code, out, err = _dry_run(path, capsys)
    assert code == 2  # a configuration error, as everywhere
    assert err.strip().splitlines() == [
        "error: run d12-L1-2.56e3tok: train.batch_tokens = 72 is not a multiple of model.context = 16; use 64"]
    code, out, err = _dry_run(path, capsys, "--no-estimate")  # the plan alone does not train
    assert code == 0 and "estimated" not in out


def test_runs_for_a_gpu_this_machine_lacks_get_no_estimate_and_no_probe(capsys):
    config = _sweep("gpu")
    config["train"]["device"] = "cuda"
    code, out, err = _dry_run(write_sweep(config), capsys)
    assert code == 0, err
    assert out.splitlines()[-1] == ("estimated wall time: none (the runs train on cuda and this machine "
                                    "has no CUDA GPU to probe them on)")


def test_an_unreachable_tracking_server_falls_back_to_the_probe_at_once(capsys):
    import socket
    import time

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.time()
    code, out, _ = _dry_run(write_sweep(_sweep("down")), capsys, "--tracking-uri", f"http://127.0.0.1:{port}",
                            "--output", "json")
    assert code == 0 and json.loads(out)["estimate"]["source"] == "a 32-step probe of each shape on this machine"
    assert time.time() - started < 30  # the probe's seconds, no wait on MLflow's retries
