"""Launcher and workers: drain a sweep's queue (:mod:`scaling.sweeps.queue`) into training runs.

:func:`run_sweep` is the launcher (``scaling sweep run``): it sets up MLflow and the queue,
starts worker processes (``python -m scaling.sweeps.workers``), reaps dead ones and reports
progress. :func:`worker` is one worker (``scaling sweep worker`` on any machine): it claims
trials, trains each RunSpec into its MLflow run (resuming a dead attempt from its checkpoint)
and tells the queue. :func:`status` reads the queue and the runs without changing either.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from scaling.config.run import RunSpec, TrainConfig
from scaling.config.sweep import SweepConfig
from scaling.errors import StorageError
from scaling.sweeps import tracking
from scaling.sweeps.planning import load_sweep, model_vocab_size, run_size, tune_studies
from scaling.sweeps.queue import (
    DEAD_STATES,
    Heartbeat,
    all_studies,
    check_roles,
    claim,
    enqueue,
    load_study,
    mark_ready,
    open_storage,
    pid_alive,
    reap,
    requeue,
    storage_url,
    stored_config,
    study_names,
    superseded,
    wait_ready,
)

__all__ = ["run_sweep", "worker", "status"]


def _tune_spec(trial, config: SweepConfig, base: RunSpec) -> RunSpec:
    tune = config.tune
    train: dict[str, Any] = {"lr": trial.suggest_float("lr", *tune.lr, log=True)}
    if tune.warmup is not None:
        train["warmup"] = trial.suggest_float("warmup", *tune.warmup)
    if tune.batch_tokens is not None:
        train["batch_tokens"] = trial.suggest_categorical("batch_tokens", tune.batch_tokens)
    name = f"{base.name}-lr{train['lr']:.2e}".replace("e-0", "e-")
    merged = TrainConfig.model_validate({**base.train.model_dump(), **train})
    return base.model_copy(update={"train": merged, "name": name})


def _train(spec: RunSpec, *, log, checkpoint_dir: Path):
    from scaling.training.loop import train

    return train(spec, log=log, checkpoint_dir=checkpoint_dir)


def _work_one(study, trial, config: SweepConfig, tracking_uri: str, storage) -> str:
    """Train (or reuse) one claimed trial; return what happened."""
    spec = _claimed_spec(trial, config)
    runs = tracking.find_runs(spec.sweep, tracking_uri=tracking_uri, run_key=spec.run_key)
    settled = _settled_by_earlier_runs(study, trial, runs)
    if settled is not None:
        return settled
    resume = next((run["run_id"] for run in runs if run["status"] in (*DEAD_STATES, "RUNNING")), None)
    params = spec.flat_params()
    params["model.vocab_size"] = model_vocab_size(spec.model, spec.data)
    tags = {tracking.TAG_CONFIG_HASH: config.config_hash}
    if "tune" in trial.user_attrs:
        tags[tracking.TAG_TUNE] = trial.user_attrs["tune"].rsplit("/", 1)[1]
    heartbeat = Heartbeat(storage, trial._trial_id)
    heartbeat.start()
    try:
        with tracking.RunLogger(spec, tracking_uri=tracking_uri, run_id=resume, params=params, tags=tags) as run:
            trial.set_user_attr("mlflow_run_id", run.run_id)
            return _train_into(run, spec, study, trial, storage)
    finally:
        heartbeat.stop.set()


def _claimed_spec(trial, config: SweepConfig) -> RunSpec:
    """The RunSpec a trial carries; a tuning trial's is sampled now and recorded on it."""
    attrs = trial.user_attrs
    if "tune" not in attrs:
        return RunSpec.model_validate_json(attrs["spec"])
    spec = _tune_spec(trial, config, tune_studies(config)[attrs["tune"]])
    for key, value in {"spec": spec.model_dump_json(), "run_key": spec.run_key, "name": spec.name}.items():
        trial.set_user_attr(key, value)
    return spec


def _settled_by_earlier_runs(study, trial, runs: list[dict[str, Any]]) -> str | None:
    """Tell the trial from the MLflow runs of its key when they already decide it: a finished
    run is reused, a diverged one stands, one being trained now makes this a duplicate."""
    from optuna.trial import TrialState

    finished = [run for run in runs if run["status"] == "FINISHED"]
    if finished:
        trial.set_user_attr("mlflow_run_id", finished[0]["run_id"])
        trial.set_user_attr("reused", True)
        study.tell(trial, finished[0]["metrics"].get("final/eval_loss"))
        return "reused"
    diverged = [r for r in runs if r["status"] == "FAILED" and r["tags"].get(tracking.TAG_FAILURE, "").startswith("diverged")]
    if diverged:  # a diverged run is a result: training it again would diverge again
        trial.set_user_attr("mlflow_run_id", diverged[0]["run_id"])
        trial.set_user_attr("failure", diverged[0]["tags"][tracking.TAG_FAILURE])
        study.tell(trial, state=TrialState.FAIL)
        return "failed"
    if any(run["status"] == "RUNNING" and _owner_alive(run["tags"]) for run in runs):
        trial.set_user_attr("duplicate", True)  # the same key is being trained right now
        study.tell(trial, state=TrialState.FAIL)
        return "duplicate"
    return None


def _train_into(run: tracking.RunLogger, spec: RunSpec, study, trial, storage) -> str:
    """Train ``spec`` into the open MLflow run and tell the trial how it ended; an interrupted
    worker puts its trial back in the queue, to resume from the checkpoint."""
    from optuna.trial import TrialState

    checkpoint_dir = Path("checkpoints") / spec.sweep / spec.run_key
    try:
        result = _train(spec, log=run.log, checkpoint_dir=checkpoint_dir)
    except (KeyboardInterrupt, SystemExit):
        requeue(storage, study, trial)
        raise
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        run.fail(reason)
        trial.set_user_attr("failure", reason[:1000])
        study.tell(trial, state=TrialState.FAIL)
        return "failed"
    timing = {
        "perf/wall_s": result.wall_s,
        "perf/mean_tokens_per_s": result.tokens_per_s,
        "perf/resumed_from_step": result.resumed_from_step,
    }
    if result.status == "finished":
        run.finish({**result.summary(), **timing})
        study.tell(trial, result.final_eval_loss)
        return "trained"
    reason = f"diverged: {result.failure}"
    run.fail(reason, timing)
    trial.set_user_attr("failure", reason[:1000])
    study.tell(trial, state=TrialState.FAIL)
    return "failed"


def _owner_alive(tags: dict[str, str]) -> bool:
    if tags.get(tracking.TAG_HOST) != socket.gethostname() or not tags.get(tracking.TAG_PID):
        return False  # a remote owner's liveness is the reaper's business (heartbeats)
    return int(tags[tracking.TAG_PID]) != os.getpid() and pid_alive(int(tags[tracking.TAG_PID]))


def worker(
    sweep: str | Path | SweepConfig, *, storage: str | None = None,
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI, roles: Iterable[str] | None = None,
    threads: int | None = None, max_trials: int | None = None, quick: bool = False,
) -> dict[str, int]:  # fmt: skip
    """Drain the sweep's queue in this process until no trial is WAITING.

    Joins a sweep a launcher (``run_sweep``) has set up, on this machine or another one: the
    RunSpecs come from the storage, so ``sweep`` only names the sweep (a file or a config).
    SIGTERM ends the current MLflow run KILLED and puts its RunSpec back in the queue.

    Returns
    -------
    dict
        Counts of ``trained``, ``reused``, ``failed`` and ``duplicate`` trials.

    Raises
    ------
    StorageError
        If the storage cannot be opened or holds no study of this sweep.
    """
    config = sweep if isinstance(sweep, SweepConfig) else load_sweep(sweep, quick=quick)
    roles = check_roles(roles)
    tracking.check_tracking(tracking_uri)
    store = open_storage(storage_url(storage, tracking_uri))
    names = study_names(config, roles)
    config = stored_config(store, names) or config
    if threads:
        from scaling.training.hardware import limit_threads

        limit_threads(threads)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    counts = {"trained": 0, "reused": 0, "failed": 0, "duplicate": 0}
    studies = []
    for name in names:
        try:
            studies.append(load_study(store, name, seed=None))
        except KeyError:
            raise StorageError(
                f"no study {name} in {storage_url(storage, tracking_uri)}; start the sweep "
                "with 'scaling sweep run FILE' first"
            ) from None
    if studies:
        wait_ready(studies[0])
    done = 0
    while max_trials is None or done < max_trials:
        for study in studies:
            trial = claim(study)
            if trial is not None:
                counts[_work_one(study, trial, config, tracking_uri, store)] += 1
                done += 1
                break
        else:
            return counts
    return counts


def status(
    sweep: str | Path | SweepConfig, *, storage: str | None = None,
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI, roles: Iterable[str] | None = None,
    quick: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per run of the sweep (the latest attempt of each): name, role, state, loss,
    flops_exact, mlflow_run_id, worker. States: WAITING, RUNNING, COMPLETE, FAIL."""
    from optuna.trial import TrialState

    config = sweep if isinstance(sweep, SweepConfig) else load_sweep(sweep, quick=quick)
    store = open_storage(storage_url(storage, tracking_uri))
    rows = []
    for name in study_names(config, check_roles(roles)):
        try:
            study = load_study(store, name)
        except KeyError:
            continue
        for trial in study.get_trials(deepcopy=False):
            attrs = trial.user_attrs
            if superseded(trial) and trial.state != TrialState.RUNNING:
                continue
            spec = RunSpec.model_validate_json(attrs["spec"]) if "spec" in attrs else None
            rows.append(
                {
                    "name": attrs.get("name") or f"{name.rsplit('/', 1)[1]} (tune, not started)",
                    "role": spec.role if spec else "proxy",
                    "state": trial.state.name,
                    "loss": trial.value,
                    "flops_exact": run_size(spec)["flops_exact"] if spec else None,
                    "run_key": attrs.get("run_key"),
                    "mlflow_run_id": attrs.get("mlflow_run_id"),
                    "worker": f"{attrs['host']}:{attrs['pid']}" if "pid" in attrs else None,
                    "reused": bool(attrs.get("reused")),
                    "failure": attrs.get("failure"),
                    "study": name,
                }
            )
    return rows


def _summarise(rows: list[dict[str, Any]], started: float, spent0: float) -> dict[str, Any]:
    states = [row["state"] for row in rows]
    spent = sum(row["flops_exact"] or 0 for row in rows if row["state"] == "COMPLETE")
    total = sum(row["flops_exact"] or 0 for row in rows)
    elapsed = time.time() - started
    rate = (spent - spent0) / elapsed if elapsed > 0 else 0.0
    left = total - spent
    return {
        "runs": len(rows),
        "done": states.count("COMPLETE"),
        "running": states.count("RUNNING"),
        "waiting": states.count("WAITING"),
        "failed": states.count("FAIL"),
        "flops_spent": spent,
        "flops_total": total,
        "elapsed_s": elapsed,
        "eta_s": left / rate if rate > 0 and left > 0 else None,
    }


def _tag_best(config: SweepConfig, store, tracking_uri: str) -> None:
    """Tag each tuned shape's best trial ``scaling.tune_best = true``, the others false."""
    from optuna.trial import TrialState

    for name in tune_studies(config):
        try:
            study = load_study(store, name)
        except KeyError:
            continue
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("mlflow_run_id")]
        if not done:
            continue
        best = min(done, key=lambda t: t.value)
        runs = [t.user_attrs["mlflow_run_id"] for t in done]
        tracking.set_run_tags([r for r in runs if r != best.user_attrs["mlflow_run_id"]], {tracking.TAG_TUNE_BEST: "false"}, tracking_uri=tracking_uri)
        tracking.set_run_tags([best.user_attrs["mlflow_run_id"]], {tracking.TAG_TUNE_BEST: "true"}, tracking_uri=tracking_uri)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_sweep(
    sweep: str | Path | SweepConfig, *, workers: int = 1, devices: Sequence[str] | None = None,
    storage: str | None = None, tracking_uri: str = tracking.DEFAULT_TRACKING_URI,
    roles: Iterable[str] | None = None, quick: bool = False, threads: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None, poll_s: float = 1.0,
) -> dict[str, Any]:  # fmt: skip
    """Set up, enqueue once, and drain a sweep with worker processes until it is done.

    Parameters
    ----------
    sweep : path or SweepConfig
        The sweep file (or an already loaded config).
    workers : int
        Worker processes on CPU; the cores are split between them (``torch.set_num_threads``).
    devices : sequence of str, optional
        GPU indices: one worker per device (``CUDA_VISIBLE_DEVICES``); overrides ``workers``.
    storage : str, optional
        Optuna storage: a journal file path or an RDB URL; default ``optuna.journal`` beside
        the MLflow database.
    tracking_uri : str
        MLflow tracking URI.
    roles : iterable of str, optional
        Run only these roles (``"proxy"``, ``"target"``); default both.
    quick : bool
        Use the file's ``quick:`` overrides (a toy sweep).
    threads : int, optional
        torch threads per CPU worker; default the cores split evenly between the workers
        (tiny models on a busy machine run several times faster with 1).
    progress : callable, optional
        Called about every ``poll_s`` seconds with a snapshot dict (runs, done, running,
        waiting, failed, flops_spent, flops_total, elapsed_s, eta_s).

    Returns
    -------
    dict
        The final snapshot plus ``enqueued``, ``requeued``, ``rows`` (see :func:`status`)
        and ``wall_s``.

    Raises
    ------
    ConfigError, StorageError, TrackingError
        Before anything is enqueued or trained.

    Examples
    --------
    >>> summary = run_sweep("sweeps/demo.yaml", roles=("proxy",))  # doctest: +SKIP
    >>> summary["done"], summary["failed"]  # doctest: +SKIP
    (6, 0)
    """
    started = time.time()
    config = sweep if isinstance(sweep, SweepConfig) else load_sweep(sweep, quick=quick)
    roles = check_roles(roles)
    url = storage_url(storage, tracking_uri)
    tracking.check_tracking(tracking_uri)
    store = open_storage(url)
    enqueued = enqueue(config, store, roles)
    rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    slots = [{"CUDA_VISIBLE_DEVICES": str(d)} for d in devices] if devices else [{} for _ in range(max(1, workers))]
    if threads is None and not devices:
        threads = max(1, _cores() // len(slots))
    pool = _WorkerPool(config, url, tracking_uri, roles, threads, slots)
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # SIGTERM must run the cleanup below, which stops the workers it started
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if any(row["state"] == "WAITING" for row in rows):
            pool.top_up()  # workers import torch while MLflow is set up; they wait for the flag
        tracking.setup_experiment(config.name, tracking_uri=tracking_uri)
        mark_ready(config, store, roles)
        requeued = reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
        rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
        spent0 = _summarise(rows, started, 0)["flops_spent"]
        last_reap = time.time()
        while any(row["state"] in ("WAITING", "RUNNING") for row in rows):
            alive = pool.alive()
            waiting = any(row["state"] == "WAITING" for row in rows)
            if waiting and len(alive) < len(slots):
                if pool.exhausted:
                    break  # workers keep dying: leave the rest queued for a later run
                pool.top_up()
            if progress is not None:
                progress(_summarise(rows, started, spent0))
            time.sleep(poll_s)
            if not alive or time.time() - last_reap > 5 * poll_s:
                requeued += reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
                last_reap = time.time()
            rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    finally:
        pool.stop()
        reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    _tag_best(config, store, tracking_uri)
    rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    summary = _summarise(rows, started, spent0)
    if progress is not None:
        progress(summary)
    return {**summary, "enqueued": enqueued, "requeued": requeued, "rows": rows, "wall_s": time.time() - started, "workers_started": pool.starts}


class _WorkerPool:
    """The launcher's worker processes: one per slot (a GPU, or a share of the cores), started
    again when they die, at most four starts per slot in all; logs under
    ``checkpoints/<sweep>/logs/``."""

    def __init__(self, config, url, tracking_uri, roles, threads, slots) -> None:
        self.config, self.url, self.tracking_uri = config, url, tracking_uri
        self.roles, self.threads, self.slots = roles, threads, slots
        self.log_dir = Path("checkpoints") / config.name / "logs"
        self.processes: list[subprocess.Popen] = []
        self.starts = 0
        self.max_starts = 4 * len(slots)  # first wave plus restarts after worker deaths

    @property
    def exhausted(self) -> bool:
        return self.starts >= self.max_starts

    def alive(self) -> list[subprocess.Popen]:
        return [process for process in self.processes if process.poll() is None]

    def top_up(self) -> None:
        """Start a worker in every slot that has none alive."""
        alive = self.alive()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for env in self.slots[len(alive) :]:
            log_path = self.log_dir / f"worker-{self.starts}.log"
            self.processes.append(_spawn(self.config, self.url, self.tracking_uri, self.roles,
                                         self.threads, env, log_path))  # fmt: skip
            self.starts += 1

    def stop(self) -> None:
        """SIGTERM every worker still running (each ends its run KILLED), then wait; kill
        those that do not stop within a minute."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _exit_on_sigterm(signum, frame) -> None:
    sys.exit(143)


def _spawn(config, url, tracking_uri, roles, threads, env, log_path) -> subprocess.Popen:
    command = [sys.executable, "-m", "scaling.sweeps.workers", config.name, "--storage", url,
               "--tracking-uri", tracking_uri, "--roles", ",".join(roles)]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    finally:
        log.close()


def _main(argv: list[str] | None = None) -> int:
    """Worker process entry (``python -m scaling.sweeps.workers NAME --storage URL ...``) used by
    :func:`run_sweep`: the sweep's config is read from the storage."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scaling.sweeps.workers")
    parser.add_argument("name")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--roles", default="proxy,target")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    store = open_storage(args.storage)
    roles = tuple(args.roles.split(","))
    names = [s.study_name for s in all_studies(store) if s.study_name.startswith(f"{args.name}/")]
    config = stored_config(store, names)
    if config is None:
        raise StorageError(f"no sweep {args.name} in {args.storage}; start it with 'scaling sweep run'")
    worker(config, storage=args.storage, tracking_uri=args.tracking_uri, roles=roles, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
