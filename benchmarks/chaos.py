"""Benchmark: a sweep on two "nodes" under faults, on a real PostgreSQL queue and MLflow server.

Two nodes are two working directories, each with its own group of ``scaling sweep worker``
processes (``--workers-per-node``, one torch thread each), sharing the Optuna storage (a real
PostgreSQL server), the tracking server (a real ``mlflow server`` on the same PostgreSQL) and
the checkpoint root. Each node restarts a worker the benchmark killed, as a cluster scheduler
restarts a failed task. The sweep (``chaos``) holds ``--runs`` quick runs that checkpoint every
``--checkpoint-every`` steps, plus one run with its user's error (a shape whose
``batch_tokens`` is no multiple of the context), with ``execution.max_retries`` high enough for
the kills. What is done to it:

- ``--kills`` times, at a random moment (seeded), SIGKILL a random worker of those training a
  run; record the run it was training and the step of that run's ``last.pt`` at that moment;
- every run's first attempt raises a ``ConnectionError`` once, right after its first
  checkpoint (a lost connection: transient), injected in the worker process around
  ``scaling.sweeps.workers._train``, nowhere in the package;
- at the end, ``scaling sweep run`` (the same file and services) must reuse every finished run
  and exit 1 naming the user's error.

Checked from the run table (MLflow) and the queue (Optuna): every run FINISHED exactly once
(``lost``, ``duplicated``), the user's run failed at once (no retry) with its reason, and
after every kill of a checkpointed run and every injected failure, the run's next start
resumed from exactly that checkpoint (the ``perf/resume_step`` history of its MLflow run,
each event after the fault's time: ``resumed_from_checkpoint`` of ``faults_with_checkpoint``,
``resumes_missing`` empty; several faults before the next start share one resume). A kill
before a run's first checkpoint restarts it from step 0, as it must.

Then the overhead of all this without faults: the same runs as a fault-free sweep (two nodes,
one worker each: the queue, heartbeats, checkpoints, the tracking server; the default logging
cadence) against the same RunSpecs trained by ``scaling.training.loop.train`` in as many
processes without queue, heartbeats or checkpoints, logged to the same tracking server
(``overhead``) and bare (``overhead_vs_bare``), measured in the same run, on the runs' own
training time (``perf/wall_s``); the wall times of the three are given too. With
``--overhead-repeats R`` the three take turns R times in rotated orders: the sums are
medians over repeats, ``overhead_paired`` is the geometric mean of each run's sweep seconds
over its tracked seconds (with its standard error), and ``checkpoint_share`` the part of the
sweep's training time its runs spent writing checkpoints (``perf/checkpoint_s``).

One JSON line each (``chaos``, ``overhead``); exit 1 when a check fails.

    python benchmarks/chaos.py                      # 12 runs, 20 kills, PostgreSQL started here
    python benchmarks/chaos.py --kills 6 --steps 200 --no-overhead
    python benchmarks/chaos.py --no-chaos --overhead-steps 2000 --overhead-checkpoint-every 200 --overhead-repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests"):  # run from a checkout; tests/services.py starts the servers
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

FAULTS_ENV = "SCALING_CHAOS_FAULTS"  # the folder of injected-failure markers, one per run key
CONTEXT = 16


def sweep_config(name: str, runs: int, steps: int, checkpoint_every: int, user_error: bool) -> dict[str, Any]:
    """``runs`` quick runs (shapes x budgets) of ``steps`` steps or so, plus the user's error."""
    widths = [8, 12, 16, 20][: max(1, min(4, runs))]
    budgets = -(-runs // len(widths))
    batch = 64
    tokens = [batch * (steps + max(10, steps // 40) * i) for i in range(budgets)]
    shapes = [{"d_model": width} for width in widths]
    config = {
        "name": name,
        "data": {"eval_tokens": 512},
        "model": {"n_layer": 1, "n_head": 2, "context": CONTEXT},
        "train": {"batch_tokens": batch, "checkpoint_every": checkpoint_every, "eval_every": 10**6,
                  "log_every": 5, "device": "cpu"},
        "ladder": {"tokens": tokens, "shapes": shapes},
        "execution": {"max_retries": 50},
    }  # fmt: skip
    if user_error:  # the target: planned like any run; training refuses it (72 tokens are 4.5
        config["target"] = {"shape": {"d_model": 24, "batch_tokens": 72}, "tokens": batch * steps}  # sequences)
    return config


# ------------------------------------------------------------------ inside a worker process --


def _checkpoint_step(folder: Path) -> int:
    import torch

    path = folder / "last.pt"
    if not path.is_file():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


def _install_faults(markers: Path) -> None:
    """Make each run's first attempt raise ConnectionError once, after its first checkpoint."""
    from scaling.sweeps import workers

    original = workers._train

    def train_with_a_fault(spec, *, log, checkpoint_dir, threads=None, **settings):
        every = spec.train.checkpoint_every
        marker = markers / spec.run_key

        def log_or_fail(step, metrics):
            log(step, metrics)
            if every and step > every and "train/loss" in metrics:
                try:
                    handle = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                with os.fdopen(handle, "w") as out:
                    json.dump({"step": step, "checkpoint_step": _checkpoint_step(Path(checkpoint_dir)),
                               "at": time.time()}, out)  # fmt: skip
                raise ConnectionError("injected: connection to the tracking server reset")

        return original(spec, log=log_or_fail, checkpoint_dir=checkpoint_dir, threads=threads, **settings)

    workers._train = train_with_a_fault


def _worker_main(argv: list[str]) -> int:
    if os.environ.get(FAULTS_ENV):
        _install_faults(Path(os.environ[FAULTS_ENV]))
    from scaling.cli import main

    return main(argv)


# ------------------------------------------------------------------------------ the nodes --


class Node:
    """A working directory and its worker processes; a worker this benchmark killed is started
    again (a cluster restarting its task), one that ended by itself is not."""

    def __init__(self, name: str, folder: Path, command: list[str], workers: int, env: dict[str, str]):
        self.name, self.folder, self.command, self.env = name, folder, command, env
        self.slots: list[subprocess.Popen | None] = [None] * workers
        self.finished = [False] * workers
        self.killed: set[int] = set()
        self.starts = 0
        self.exit_codes: list[int] = []
        folder.mkdir(parents=True, exist_ok=True)

    def _start(self, slot: int) -> None:
        with open(self.folder / f"worker-{self.starts}.log", "wb") as log:
            self.slots[slot] = subprocess.Popen(self.command, cwd=self.folder, env=self.env,
                                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        self.starts += 1

    def tend(self) -> None:
        """Start the empty slots, restart the killed workers, record how the others ended."""
        for slot, process in enumerate(self.slots):
            if process is None:
                self._start(slot)
            elif process.poll() is not None and process.pid in self.killed:
                self.killed.discard(process.pid)
                self._start(slot)
            elif process.poll() is not None and not self.finished[slot]:
                self.finished[slot] = True
                self.exit_codes.append(process.returncode)

    def live(self) -> list[subprocess.Popen]:
        return [p for slot, p in enumerate(self.slots) if p is not None and p.poll() is None]

    def done(self) -> bool:
        return all(self.finished)

    def stop(self) -> None:
        for process in self.live():
            process.kill()
            process.wait()


def _running_trials(storage: str, sweep: str) -> dict[int, dict[str, Any]]:
    """pid -> {run_key, name} of every RUNNING trial of the sweep's studies."""
    import optuna
    from optuna.trial import TrialState

    found = {}
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if not summary.study_name.startswith(f"{sweep}/"):
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = trial.user_attrs
            if "pid" in attrs and "run_key" in attrs:
                found[int(attrs["pid"])] = {"run_key": attrs["run_key"], "name": attrs.get("name")}
    return found


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaling", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def run_chaos(folder: Path, storage: str, tracking_uri: str, *, runs: int = 12, kills: int = 20,
              steps: int = 400, checkpoint_every: int = 10, workers_per_node: int = 2,
              kill_gap: tuple[float, float] = (1.0, 4.0), seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The faulty sweep; returns the ``chaos`` line (``ok`` says whether every check held)."""
    import optuna
    import yaml
    from mlflow.tracking import MlflowClient

    from scaling.sweeps import tracking
    from scaling.sweeps.planning import expand, load_sweep

    rng = random.Random(seed)
    shared, markers = folder / "shared-checkpoints", folder / "faults"
    markers.mkdir(parents=True)
    sweep_file = folder / "chaos.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep_config("chaos", runs, steps, checkpoint_every, True)))
    config = load_sweep(sweep_file)
    specs = expand(config)
    bad_key, bad_name = next((s.run_key, s.name) for s in specs if s.train.batch_tokens % CONTEXT)
    good_keys = {s.run_key for s in specs} - {bad_key}
    services = ["--storage", storage, "--tracking-uri", tracking_uri, "--checkpoint-root", str(shared)]
    env = {**os.environ, FAULTS_ENV: str(markers), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.time()

    (folder / "node-a").mkdir()
    launched = _cli(["sweep", "run", str(sweep_file), "--workers", "0", *services], folder / "node-a", env)
    if launched.returncode != 0:
        raise RuntimeError(f"enqueueing failed: {launched.stderr.strip()[-2000:]}")
    command = [sys.executable, str(Path(__file__).resolve()), "--as-worker", "sweep", "worker",
               str(sweep_file), *services, "--threads", "1"]  # fmt: skip
    nodes = [Node(name, folder / f"node-{name}", command, workers_per_node, env) for name in ("a", "b")]
    kill_log: list[dict[str, Any]] = []
    next_kill = time.time() + rng.uniform(*kill_gap)
    try:
        while not all(node.done() for node in nodes):
            for node in nodes:
                node.tend()
            if len(kill_log) < kills and time.time() >= next_kill:
                owners = _running_trials(storage, "chaos")
                live = [(node, process) for node in nodes for process in node.live() if process.pid in owners]
                if live:  # a worker training a run, at a random moment of it
                    node, process = rng.choice(live)
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
                    killed_at = time.time()
                    node.killed.add(process.pid)
                    owned = owners[process.pid]
                    step = _checkpoint_step(shared / "chaos" / owned["run_key"])  # before anyone resumes it
                    # the run it held when it died: its trial stays RUNNING until reaped (it may
                    # have moved on to its next run since the query above)
                    now = _running_trials(storage, "chaos").get(process.pid)
                    if now and now["run_key"] != owned["run_key"]:
                        owned, step = now, _checkpoint_step(shared / "chaos" / now["run_key"])
                    kill_log.append({"node": node.name, "pid": process.pid, "at": killed_at,
                                     "at_s": round(killed_at - started, 2),
                                     "run_key": owned["run_key"], "checkpoint_step": step})  # fmt: skip
                    next_kill = time.time() + rng.uniform(*kill_gap)
            if time.time() - started > 1800:
                raise RuntimeError("the sweep did not end within 30 minutes")
            time.sleep(0.05)
    finally:
        for node in nodes:
            node.stop()
    sweep_wall = time.time() - started

    rerun = _cli(["sweep", "run", str(sweep_file), "--workers", "1", "--output", "json", *services],
                 folder / "node-a", {**env, FAULTS_ENV: ""})  # fmt: skip
    summary = json.loads(rerun.stdout) if rerun.stdout.strip().startswith("{") else {}

    runs_table = tracking.find_runs("chaos", tracking_uri=tracking_uri)
    per_key = Counter(run["tags"][tracking.TAG_RUN_KEY] for run in runs_table)
    finished = {run["tags"][tracking.TAG_RUN_KEY]: run for run in runs_table if run["status"] == "FINISHED"}
    complete = Counter()
    bad_trials = []
    for name in ("chaos/proxy", "chaos/target"):
        study = optuna.load_study(study_name=name, storage=storage)
        for trial in study.get_trials(deepcopy=False):
            key = trial.user_attrs.get("run_key")
            if trial.state.name == "COMPLETE":
                complete[key] += 1
            if key == bad_key:
                bad_trials.append(trial)
    bad_runs = [run for run in runs_table if run["tags"][tracking.TAG_RUN_KEY] == bad_key]
    client = MlflowClient(tracking_uri)
    events: dict[str, list[tuple[int, float]]] = {}  # run key -> [(resume step, epoch s)]
    ended: dict[str, float] = {}
    for key, run in finished.items():
        history = client.get_metric_history(run["run_id"], "perf/resume_step")
        events[key] = sorted((int(m.value), m.timestamp / 1000) for m in history)
        ended[key] = client.get_run(run["run_id"]).info.end_time / 1000
    injected = {marker.name: json.loads(marker.read_text()) for marker in markers.iterdir()}
    # what must have happened: after each kill of a checkpointed run, and after each injected
    # failure, the run's next start resumed from that checkpoint (several kills before the next
    # start share one resume); a kill after its run had finished leaves nothing to resume
    faults = [(k["run_key"], k["checkpoint_step"], k["at"]) for k in kill_log if k["checkpoint_step"] > 0]
    faults += [(key, f["checkpoint_step"], f["at"]) for key, f in injected.items() if f["checkpoint_step"] > 0]
    after_finish = [f for f in faults if f[0] in ended and f[2] > ended[f[0]] - 0.5]
    expected = [f for f in faults if f not in after_finish]
    missing = [{"run_key": key, "step": step, "events": events.get(key, [])} for key, step, at in expected
               if not any(s == step and t >= at for s, t in events.get(key, []))]  # fmt: skip
    first_bad = bad_trials[0] if bad_trials else None
    line = {
        "benchmark": "chaos",
        "runs": len(good_keys),
        "kills": len(kill_log),
        "kills_requested": kills,
        "kills_on_runs": sum(1 for k in kill_log if k["run_key"]),
        "kills_with_checkpoint": sum(1 for k in kill_log if k["run_key"] and k["checkpoint_step"] > 0),
        "finished": len(set(finished) & good_keys),
        "lost": len(good_keys - set(finished)),
        "duplicated": sum(1 for key in good_keys if per_key[key] > 1 or complete[key] > 1),
        "injected": len(set(injected) & good_keys),
        "injected_finished": len(set(injected) & set(finished)),
        "faults_with_checkpoint": len(faults),
        "faults_after_finish": len(after_finish),
        "resumed_from_checkpoint": len(expected) - len(missing),
        "resumes": sum(len(v) for v in events.values()),
        "resumes_missing": missing,
        "user_error_failed_at_once": bool(first_bad is not None and first_bad.state.name == "FAIL"
                                          and int(first_bad.user_attrs.get("retries", 0)) == 0),
        "user_error_reason": (first_bad.user_attrs.get("failure") if first_bad else None),
        "user_error_mlflow": sorted({run["status"] for run in bad_runs}),
        "sweep_run_exit": rerun.returncode,
        "sweep_run_enqueued": summary.get("enqueued"),
        "sweep_run_retried": summary.get("retried"),
        "sweep_run_failures": [f["name"] for f in summary.get("failures", [])],
        "worker_starts": sum(node.starts for node in nodes),
        "sweep_wall_s": round(sweep_wall, 1),
        "seed": seed,
        "kill_log": kill_log,
    }
    line["ok"] = bool(
        line["kills"] == kills and line["lost"] == 0 and line["duplicated"] == 0
        and line["finished"] == len(good_keys) and line["injected_finished"] == len(good_keys)
        and not missing and line["user_error_failed_at_once"]
        and "batch_tokens = 72" in (line["user_error_reason"] or "") and line["sweep_run_exit"] == 1
        and line["sweep_run_enqueued"] == 0 and line["sweep_run_retried"] == [bad_name]
        and line["user_error_mlflow"] == ["FAILED"]
    )  # fmt: skip
    return line


# ------------------------------------------------------------------------------ overhead --


def _plain_train(job: tuple[str, str | None]) -> tuple[str, float]:
    """One RunSpec trained without the queue, heartbeats or checkpoints: logged to the tracking
    server as a sweep's run is (``tracking_uri``), or bare (None). Its name and seconds."""
    from scaling.config.run import RunSpec
    from scaling.sweeps import tracking
    from scaling.training.hardware import limit_threads
    from scaling.training.loop import train

    spec_json, tracking_uri = job
    spec = RunSpec.model_validate_json(spec_json)
    limit_threads(1, params=0)
    if tracking_uri is None:
        return spec.name, train(spec).wall_s
    with tracking.RunLogger(spec, tracking_uri=tracking_uri, params=spec.flat_params()) as run:
        result = train(spec, log=run.log)
        run.finish(result.summary())
    return spec.name, result.wall_s


def _calm_plan(folder: Path, name: str, runs: int, steps: int, checkpoint_every: int) -> tuple[Path, list[Any]]:
    """The fault-free sweep's file in ``folder`` and its RunSpecs."""
    import yaml

    from scaling.sweeps.planning import expand, load_sweep

    folder.mkdir(parents=True)
    sweep_file = folder / f"{name}.yaml"
    calm = sweep_config(name, runs, steps, checkpoint_every, False)
    calm["train"].pop("log_every")  # the default cadence, about 100 logged steps a run
    sweep_file.write_text(yaml.safe_dump(calm))
    return sweep_file, expand(load_sweep(sweep_file))


def _calm_sweep(sweep_file: Path, storage: str, tracking_uri: str, workers_per_node: int) -> dict[str, Any]:
    """One fault-free sweep on the two nodes: each run's training seconds, the wall time."""
    from scaling.sweeps import tracking

    folder, name = sweep_file.parent, sweep_file.stem
    services = ["--storage", storage, "--tracking-uri", tracking_uri,
                "--checkpoint-root", str(folder / "shared-checkpoints")]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(FAULTS_ENV, None)
    env.pop("MLFLOW_TRACKING_URI", None)
    (folder / "node-a").mkdir(parents=True)
    launched = _cli(["sweep", "run", str(sweep_file), "--workers", "0", *services], folder / "node-a", env)
    if launched.returncode != 0:
        raise RuntimeError(f"enqueueing failed: {launched.stderr.strip()[-2000:]}")
    command = [sys.executable, "-m", "scaling", "sweep", "worker", str(sweep_file), *services, "--threads", "1"]
    started = time.time()
    processes = []
    for node_name in ("a", "b"):
        node = folder / f"node-{node_name}"
        node.mkdir(exist_ok=True)
        for index in range(workers_per_node):
            log = open(node / f"worker-{index}.log", "wb")  # noqa: SIM115
            with log:
                processes.append(subprocess.Popen(command, cwd=node, env=env, stdout=log, stderr=subprocess.STDOUT))
    codes = [process.wait() for process in processes]
    wall = time.time() - started
    table = tracking.find_runs(name, tracking_uri=tracking_uri)
    return {
        "codes": codes, "wall": wall, "processes": len(processes),
        "finished": sum(run["status"] == "FINISHED" for run in table),
        "train": {run["name"]: run["metrics"]["perf/wall_s"] for run in table if run["status"] == "FINISHED"},
        "checkpoint": sum(run["metrics"].get("perf/checkpoint_s", math.nan) for run in table
                          if run["status"] == "FINISHED"),
    }  # fmt: skip


def _calm_plain(specs: list[Any], name: str, tracking_uri: str | None, processes: int) -> dict[str, Any]:
    """The same RunSpecs trained by ``train`` in ``processes`` processes, tracked or bare."""
    from scaling.sweeps import tracking

    plain = [spec.model_copy(update={"sweep": name, "train": spec.train.model_copy(
        update={"checkpoint_every": 0})}).model_dump_json() for spec in specs]  # fmt: skip
    if tracking_uri is not None:
        tracking.setup_experiment(name, tracking_uri=tracking_uri)
    started = time.time()
    with ProcessPoolExecutor(processes) as pool:
        train = dict(pool.map(_plain_train, [(spec, tracking_uri) for spec in plain]))
    return {"train": train, "wall": time.time() - started}


def run_overhead(folder: Path, storage: str, tracking_uri: str, *, runs: int = 12, steps: int = 400,
                 checkpoint_every: int = 10, workers_per_node: int = 1, repeats: int = 1) -> dict[str, Any]:  # fmt: skip
    """The fault-free sweep against the plain training of the same RunSpecs, ``repeats`` times,
    the three kinds taking turns (each repeat rotates their order, so a machine that slows
    down or speeds up over the measurement weighs on all three alike). The overhead is the
    median over repeats of summed training seconds, and, paired run by run, the geometric
    mean of each run's sweep seconds over its tracked seconds."""
    kinds = ["sweep", "tracked", "bare"]
    rounds = []
    for r in range(repeats):
        sweep_file, specs = _calm_plan(folder / f"calm-{r}", f"calm-{r}", runs, steps, checkpoint_every)
        order = kinds[r % 3:] + kinds[: r % 3]
        measured: dict[str, Any] = {"order": order}
        for kind in order:
            if kind == "sweep":
                measured[kind] = _calm_sweep(sweep_file, storage, tracking_uri, workers_per_node)
            else:
                measured[kind] = _calm_plain(specs, f"calm-{kind}-{r}", tracking_uri if kind == "tracked" else None,
                                             2 * workers_per_node)  # fmt: skip
        rounds.append(measured)
    sums = {kind: [sum(m[kind]["train"].values()) for m in rounds] for kind in kinds}
    paired = [np.log(m["sweep"]["train"][run] / m["tracked"]["train"][run])
              for m in rounds for run in m["tracked"]["train"] if run in m["sweep"]["train"]]  # fmt: skip
    sweep, tracked, bare = (float(np.median(sums[kind])) for kind in kinds)
    last = rounds[-1]["sweep"]
    return {
        "benchmark": "overhead",
        "runs": len(specs),
        "repeats": repeats,
        "orders": [m["order"] for m in rounds],
        "finished": [m["sweep"]["finished"] for m in rounds],
        "worker_exit_codes": [m["sweep"]["codes"] for m in rounds],
        "sweep_train_s": [round(v, 2) for v in sums["sweep"]],
        "tracked_train_s": [round(v, 2) for v in sums["tracked"]],
        "bare_train_s": [round(v, 2) for v in sums["bare"]],
        "overhead": round(sweep / tracked - 1, 4),
        "overhead_vs_bare": round(sweep / bare - 1, 4),
        "tracking_vs_bare": round(tracked / bare - 1, 4),
        "overhead_paired": round(float(np.expm1(np.mean(paired))), 4),
        "checkpoint_share": [round(m["sweep"]["checkpoint"] / sums["sweep"][i], 4) for i, m in enumerate(rounds)],
        "overhead_paired_se": round(float(np.std(paired, ddof=1) / np.sqrt(len(paired))), 4),
        "paired_runs": len(paired),
        "sweep_wall_s": [round(m["sweep"]["wall"], 2) for m in rounds],
        "tracked_wall_s": [round(m["tracked"]["wall"], 2) for m in rounds],
        "bare_wall_s": [round(m["bare"]["wall"], 2) for m in rounds],
        "processes": last["processes"],
        "checkpoint_every": checkpoint_every,
        "log_every": specs[0].train.log_every,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=400, help="steps of the shortest run")
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--workers-per-node", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", help="an Optuna RDB URL (default: a PostgreSQL server started here)")
    parser.add_argument("--tracking-uri", help="an MLflow server (default: one started here)")
    parser.add_argument("--no-overhead", action="store_true", help="skip the fault-free comparison")
    parser.add_argument("--no-chaos", action="store_true", help="only the fault-free comparison")
    parser.add_argument("--overhead-steps", type=int, default=None,
                        help="steps of the shortest fault-free run (default: --steps)")
    parser.add_argument("--overhead-checkpoint-every", type=int, default=None,
                        help="its checkpoint interval (default: --checkpoint-every)")
    parser.add_argument("--overhead-repeats", type=int, default=1,
                        help="fault-free sweep, tracked and bare training taking turns this many times")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, checkpoints)")
    args = parser.parse_args()

    from services import start_mlflow_server, start_postgres

    with contextlib.ExitStack() as stack:
        if args.keep:
            folder = Path(tempfile.mkdtemp(prefix="scaling-chaos-"))
            print(f"working folder: {folder}", file=sys.stderr)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scaling-chaos-")))
        os.environ.setdefault("SCALING_CACHE_DIR", str(folder / "cache"))
        database = None if args.storage and args.tracking_uri else stack.enter_context(start_postgres())
        storage = args.storage or database("optuna")
        tracking_uri = args.tracking_uri or stack.enter_context(
            start_mlflow_server(database("mlflow"), folder / "mlflow-server"))
        print(json.dumps({"benchmark": "settings", **vars(args), "storage": storage.split("@")[-1],
                          "tracking_uri": tracking_uri, "cpus": os.cpu_count()}), flush=True)  # fmt: skip
        ok = True
        if not args.no_chaos:
            line = run_chaos(folder / "chaos", storage, tracking_uri, runs=args.runs, kills=args.kills,
                             steps=args.steps, checkpoint_every=args.checkpoint_every,
                             workers_per_node=args.workers_per_node, seed=args.seed)  # fmt: skip
            print(json.dumps(line), flush=True)
            ok = line["ok"]
        if not args.no_overhead:
            calm = run_overhead(folder / "calm", storage, tracking_uri, runs=args.runs,
                                steps=args.overhead_steps or args.steps,
                                checkpoint_every=args.overhead_checkpoint_every or args.checkpoint_every,
                                repeats=args.overhead_repeats)  # fmt: skip
            print(json.dumps(calm), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--as-worker":
        sys.exit(_worker_main(sys.argv[2:]))
    sys.exit(main())
