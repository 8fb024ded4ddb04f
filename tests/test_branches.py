"""WSD ladders with cooldown branches: one stable run per shape, every shorter budget branched
from its checkpoint, trained exactly as a fresh run of that budget would be, exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import subprocess_env, write_sweep

from scaling.cli import main
from scaling.config.run import RunSpec
from scaling.errors import ConfigError
from scaling.sweeps import tracking
from scaling.sweeps.planning import expand, ladder_branches, load_sweep, plan, target_spec
from scaling.sweeps.workers import run_sweep, status
from scaling.training.data import prepare_data
from scaling.training.loop import Branch, lr_schedule, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WSD = {
    "name": "wsd",
    "data": {"eval_tokens": 512},
    "model": {"n_layer": 1, "n_head": 2, "context": 16},
    "train": {"batch_tokens": 64, "eval_every": 20, "schedule": "wsd", "decay_fraction": 0.2,
              "warmup": 0.1, "checkpoint_every": 10, "precision": "fp32", "device": "cpu"},
    "ladder": {"tokens_per_param": [2, 4, 8], "branches": True,
               "shapes": [{"d_model": 8}, {"d_model": 12}]},
}


def _steps(spec: RunSpec) -> int:
    return spec.train.tokens // spec.train.batch_tokens


# ------------------------------------------------------------------------------ the plan --


def test_each_shorter_budget_branches_where_its_own_decay_starts():
    config = load_sweep(write_sweep(WSD))
    specs = expand(config)
    branches = ladder_branches(config, specs)
    assert len(specs) == 6 and len(branches) == 4  # 2 shapes x 3 budgets, 2 stable runs
    for spec in specs:
        shortest = min(_steps(s) for s in specs if s.model == spec.model)
        assert spec.train.warmup_steps == round(0.1 * shortest)  # one warmup for the shape
    for key, branch in branches.items():
        steps = _steps(branch.spec)
        assert branch.step == steps - round(0.2 * steps)  # hand-computed: T - round(f·T)
        assert branch.parent.train.tokens == max(s.train.tokens for s in specs if s.model == branch.spec.model)
        # up to the branch point the two schedules are the same, step for step; then they part
        ours, theirs = lr_schedule(branch.spec.train), lr_schedule(branch.parent.train)
        assert (ours[: branch.step] == theirs[: branch.step]).all()
        assert ours[branch.step] < theirs[branch.step] == 1.0
        assert branch.cooldown_tokens == (steps - branch.step) * 64
    rows = {row["name"]: row for row in plan(config)}
    for branch in branches.values():
        row = rows[branch.spec.name]
        assert row["branch_of"] == branch.parent.name
        assert row["C_trained"] == 6 * row["N"] * branch.cooldown_tokens
        assert row["C_trained"] < 0.25 * row["C"]
    for spec in specs:
        if spec.run_key not in branches:
            assert rows[spec.name]["C_trained"] == rows[spec.name]["C"] and not rows[spec.name]["branch_of"]
    # the ladder's compute against separate runs of the same (N, D) points
    ratio = sum(r["C_trained"] for r in rows.values()) / sum(r["C"] for r in rows.values())
    assert 0.6 < ratio < 0.75  # (8·0.8 + 0.2·(2 + 4 + 8)) / 14 = 0.657 of the rounded steps


def test_the_wsd_demo_ladder_costs_under_six_tenths_of_separate_runs():
    sweeps = Path(__file__).resolve().parent.parent / "sweeps"
    config = load_sweep(sweeps / "demo-wsd.yaml")
    # its target is the cosine demo's own run: both forecasts are scored on one target
    assert target_spec(config).run_key == target_spec(load_sweep(sweeps / "demo.yaml")).run_key
    assert target_spec(config).train.schedule == "cosine"
    rows = [row for row in plan(config) if row["role"] == "proxy"]
    ratio = sum(r["C_trained"] for r in rows) / sum(r["C"] for r in rows)
    assert ratio <= 0.6
    assert sum(1 for r in rows if r["branch_of"]) == 3 * sum(1 for r in rows if not r["branch_of"])


def test_a_branched_ladder_without_a_stable_phase_is_one_line():
    cosine = {**WSD, "train": {**WSD["train"], "schedule": "cosine"}}
    with pytest.raises(ConfigError, match=r"ladder.branches needs train.schedule = 'wsd', not 'cosine'"):
        load_sweep(write_sweep(cosine))
    single = {**WSD, "ladder": {**WSD["ladder"], "tokens_per_param": [8]}}
    with pytest.raises(ConfigError, match=r"at least two budgets per shape"):
        load_sweep(write_sweep(single))
    bad_target = {**WSD, "target": {"shape": {"d_model": 16}, "train": {"schedule": "linear"}}}
    with pytest.raises(ConfigError, match=r"sweep.yaml: target.train.schedule: Input should be 'cosine', 'wsd' or 'constant'"):
        load_sweep(write_sweep(bad_target))
    late = {**WSD, "train": {**WSD["train"], "warmup_steps": 40}}
    with pytest.raises(ConfigError, match=r"cannot branch from d8-L1-8xN: its decay starts at step \d+, "
                                          r"inside the warmup of \d+ steps; drop the budget"):
        load_sweep(write_sweep(late))


def test_without_branches_the_ladder_and_its_run_keys_are_unchanged():
    plain = {**WSD, "ladder": {**WSD["ladder"], "branches": False}}
    config = load_sweep(write_sweep(plain))
    assert ladder_branches(config) == {}
    assert all(spec.train.warmup_steps is None for spec in expand(config))
    assert RunSpec(train={"warmup_steps": None}).run_key == RunSpec().run_key
    # a warmup in steps makes the warmup share irrelevant to the run, and so to its key
    assert (RunSpec(train={"warmup_steps": 3, "warmup": 0.2}).run_key
            == RunSpec(train={"warmup_steps": 3, "warmup": 0.1}).run_key != RunSpec().run_key)


# ----------------------------------------------------------------------- one branch, by hand --


def test_a_branch_resumed_from_its_stable_run_is_the_fresh_run_bit_for_bit(tmp_path):
    data = {"source": "synthetic", "eval_fraction": 0.2, "eval_tokens": 2048,
            "synthetic": {"tokens": 30_000, "alphabet": 8, "order": 1}}
    data["content_hash"] = prepare_data(RunSpec(data=data).data).corpus_hash

    def spec(steps: int) -> RunSpec:
        return RunSpec.model_validate({
            "name": f"s{steps}", "data": data,
            "model": {"n_layer": 1, "d_model": 16, "n_head": 2, "context": 16},
            "train": {"tokens": 64 * steps, "batch_tokens": 64, "lr": 1e-2, "schedule": "wsd",
                      "decay_fraction": 0.25, "warmup_steps": 3, "precision": "fp32",
                      "device": "cpu", "eval_every": 1000, "log_every": 1},
        })  # fmt: skip

    stable, short = spec(48), spec(24)
    told: list[Branch] = []
    branch = Branch(step=18, run_key=short.run_key, checkpoint_dir=tmp_path / "short")
    train(stable, checkpoint_dir=tmp_path / "stable", branches=[branch], on_branch=told.append)
    assert told == [branch] and (tmp_path / "short" / "last.pt").is_file()

    logged: list[tuple[int, dict]] = []
    resumed = train(short, lambda step, metrics: logged.append((step, metrics)),
                    checkpoint_dir=tmp_path / "short")
    fresh = train(short)
    assert resumed.resumed_from_step == 18 and min(step for step, _ in logged) == 18
    assert resumed.final_eval_loss == fresh.final_eval_loss  # bit for bit
    # the cooldown ran at its own rates from the branch point on, not the stable run's
    rates = {step: m["train/lr"] for step, m in logged if "train/lr" in m}
    assert rates[19] == pytest.approx(1e-2 * lr_schedule(short.train)[18])
    assert rates[19] < 1e-2


# ------------------------------------------------------------------------- a whole sweep --


def _branch_losses_match_fresh_runs(config) -> None:
    frame = tracking.runs_frame(config.name)
    by_key = frame.set_index("run_key")
    for key, branch in ladder_branches(config).items():
        row = by_key.loc[key]
        assert row.branch_of == branch.parent.name and float(row.branch_step) == branch.step
        fresh = train(branch.spec)
        assert row.loss == pytest.approx(fresh.final_eval_loss, abs=1e-6), branch.spec.name


@pytest.mark.slow
def test_a_wsd_ladder_trains_each_branch_once_from_its_stable_run(capsys):
    path = write_sweep(WSD)
    config = load_sweep(path)
    summary = run_sweep(path, workers=2, threads=1)
    assert (summary["done"], summary["failed"], summary["enqueued"]) == (6, 0, 2)  # the stable runs
    frame = tracking.runs_frame("wsd")
    assert len(frame) == 6 and set(frame.status) == {"FINISHED"}
    branches = ladder_branches(config)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{Path('mlflow.db').resolve()}")  # this test's own database
    parents = frame[frame.branch_of.isna()].set_index("name")
    for _, row in frame[frame.branch_of.notna()].iterrows():
        run = client.get_run(row.run_id)
        assert run.data.tags[tracking.TAG_PARENT_RUN] == parents.loc[row.branch_of, "run_id"]
        assert run.data.metrics["perf/resumed_from_step"] == branches[row.run_key].step
    _branch_losses_match_fresh_runs(config)
    from scaling.sweeps.curves import curve_table

    curves = curve_table("wsd")  # the curve laws read each branch's schedule, shared warmup included
    assert set(curves.run_id) == set(frame.run_id)
    for _, row in frame[frame.branch_of.notna()].iterrows():
        assert (curves[curves.run_id == row.run_id].step > branches[row.run_key].step).all()
    # the report states what the ladder cost against separate runs of the same budgets
    from scaling.reporting.publish import make_report

    report = make_report(experiment="wsd", tracking_uri=tracking.DEFAULT_TRACKING_URI, n_bootstrap=20,
                         law="gpt4", fit_range="all")  # fmt: skip
    text = (report / "report.md").read_text()
    rows = plan(config)
    exact = sum(r["C_exact"] * r["C_trained"] / r["C"] for r in rows) / sum(r["C_exact"] for r in rows)
    line = next(line for line in text.splitlines() if "WSD ladder:" in line)
    assert "2 stable runs and 4 cooldown branches" in line and "(flops_exact)" in line
    assert f"{exact:.2f}x" in line  # the plan's share of each budget, on the report's exact axis
    again = run_sweep(path)
    assert (again["enqueued"], again["workers_started"], again["done"]) == (0, 0, 6)
    assert main(["sweep", "run", str(path), "--dry-run", "--no-estimate", "--output", "json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["total_flops_trained"] == pytest.approx(sum(r["C_trained"] for r in plan(config)))
    assert dry["total_flops_trained"] < 0.7 * dry["total_flops"]


@pytest.mark.slow
def test_branches_wait_for_their_stable_run_and_survive_its_kill():
    path = write_sweep(WSD)
    config = load_sweep(path)
    queued = run_sweep(path, workers=0)  # enqueue only: the branches wait on their stable runs
    assert queued["enqueued"] == 2
    rows = status(path)
    assert sorted(row["state"] for row in rows) == ["PENDING"] * 4 + ["WAITING"] * 2
    assert {row["branch_of"] for row in rows if row["state"] == "PENDING"} == {"d8-L1-8xN", "d12-L1-8xN"}
    first = next(b for b in ladder_branches(config).values() if b.parent.model.d_model == 8)
    marker = Path(config.checkpoint_root) / "wsd" / first.spec.run_key / "last.pt"
    child = subprocess.Popen([sys.executable, "-m", "scaling", "sweep", "worker", str(path), "--threads", "1"],
                             env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 240
    while not marker.exists():  # the stable run has passed its first branch point
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    summary = run_sweep(path, workers=2, threads=1)  # reaps the dead worker's run, resumes it
    assert (summary["done"], summary["failed"]) == (6, 0)
    frame = tracking.runs_frame("wsd", status=None)
    assert len(frame) == 6 and set(frame.status) == {"FINISHED"}  # each run once, none doubled
    _branch_losses_match_fresh_runs(config)


# ------------------------------------------------------------------- pruning tune trials --

TUNE = {
    "name": "prune",
    "data": {"eval_tokens": 512},
    "model": {"n_layer": 1, "n_head": 2, "context": 16},
    "train": {"batch_tokens": 64, "eval_every": 8, "precision": "fp32", "device": "cpu"},
    "tune": {"shapes": [{"d_model": 8}], "trials": 8, "tokens_per_param": 4, "lr": [1e-4, 0.3],
             "pruner": "median", "prune_startup": 2, "prune_after": 0.2},
    "ladder": {"tokens_per_param": [4], "shapes": [{"d_model": 12}, {"d_model": 16}]},  # for a fit
}


@pytest.mark.slow
def test_the_median_pruner_stops_trials_worse_than_the_median_and_the_report_counts_the_saving():
    import statistics

    from mlflow import MlflowClient

    from scaling.reporting.publish import make_report
    from scaling.sweeps.queue import load_study, open_storage, storage_url

    path = write_sweep(TUNE)
    summary = run_sweep(path, workers=1, threads=1)  # one worker: each trial sees every earlier one
    assert summary["failed"] == 0 and summary["done"] + summary["pruned"] == 8 + 2
    assert summary["pruned"] >= 1
    store = open_storage(storage_url(None, tracking.DEFAULT_TRACKING_URI))
    trials = sorted(load_study(store, "prune/tune/d8-L1").get_trials(deepcopy=False), key=lambda t: t.number)
    steps = None
    for trial in trials:
        if trial.state.name != "PRUNED":
            continue
        step = max(trial.intermediate_values)
        earlier = [t for t in trials if t.number < trial.number and t.state.name == "COMPLETE"]
        assert len(earlier) >= 2 and step >= 0.2 * max(max(t.intermediate_values) for t in earlier)
        # Optuna's median rule, by hand: worse than the median of the completed trials there
        median = statistics.median(t.intermediate_values[step] for t in earlier if step in t.intermediate_values)
        assert trial.intermediate_values[step] > median
        steps = max(max(t.intermediate_values) for t in earlier)
    frame = tracking.runs_frame("prune", status=None)
    pruned = frame[frame.pruned_step.notna()]
    assert len(pruned) == summary["pruned"] and set(pruned.status) == {"FAILED"}
    assert (pruned.pruned_step < steps).all()
    client = MlflowClient(f"sqlite:///{Path('mlflow.db').resolve()}")  # this test's own database
    for run_id in pruned.run_id:
        assert client.get_run(run_id).data.tags[tracking.TAG_FAILURE].startswith("pruned by the median pruner")
    assert len(tracking.runs_frame("prune")) == summary["done"]  # the fits see finished trials only
    # the saving, hand-computed: each pruned trial's steps after it stopped, in 6·N·D
    tuned = frame[frame.tune.notna()]
    saved = (6 * pruned.params * (pruned.tokens - pruned.pruned_step * pruned.batch_tokens)).sum()
    share = saved / (6 * tuned.params * tuned.tokens).sum()
    report = make_report(experiment="prune", tracking_uri=tracking.DEFAULT_TRACKING_URI, n_bootstrap=20,
                         target_flops=1e12, law="power", fit_range="all")  # fmt: skip
    text = (report / "report.md").read_text()
    line = next(line for line in text.splitlines() if "Tuning:" in line)
    assert f"{summary['pruned']} of 8 trials pruned" in line and f"{share:.0%} of what" in line
    assert run_sweep(path)["enqueued"] == 0  # a pruned trial is a result: nothing is topped up
