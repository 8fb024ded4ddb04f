"""Launcher and workers: drain a sweep's queue (:mod:`scaling.sweeps.queue`) into training runs.

:func:`run_sweep` is the launcher (``scaling sweep run``): it sets up MLflow and the queue,
starts worker processes (``python -m scaling.sweeps.workers``), reaps dead ones and reports
progress. :func:`worker` is one worker (``scaling sweep worker`` on any machine): it claims
trials, trains each RunSpec into its MLflow run (resuming a dead attempt from its checkpoint)
and tells the queue; a target with ``nproc_per_node`` above 1 it trains on that many DDP
processes of its node, a ``torchrun`` child (:func:`_train_processes`). :func:`status` reads
the queue and the runs without changing either.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from scaling import errors
from scaling.config.run import RunSpec, TrainConfig
from scaling.config.sweep import SweepConfig
from scaling.errors import ConfigError, ScalingError, StorageError, TrackingError
from scaling.sweeps import tracking
from scaling.sweeps.planning import (
    PlannedBranch,
    expand,
    ladder_branches,
    load_sweep,
    model_vocab_size,
    run_file,
    run_size,
    trained_tokens,
    tune_studies,
)
from scaling.sweeps.progress import eta_seconds, timing_fields
from scaling.sweeps.queue import (
    DEAD_STATES,
    Heartbeat,
    all_studies,
    check_roles,
    claim,
    enqueue,
    enqueue_branch,
    give_up,
    latest_attempts,
    load_study,
    mark_ready,
    open_storage,
    pid_alive,
    reap,
    requeue,
    retry_failed,
    storage_url,
    stored_config,
    seed_sampler,
    tune_pruner,
    study_names,
    wait_ready,
)

__all__ = ["run_sweep", "worker", "node_workers", "status", "failures", "configured", "with_execution",
           "default_workers", "is_user_error", "available_cores", "check_launchable", "TorchrunError",
           "TORCHRUN_GRACE_S"]

# How long a stopped worker waits for its torchrun child to stop its ranks (torchrun itself
# gives them 30 s before it kills them) before it kills every process of the child.
TORCHRUN_GRACE_S = 40.0


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


def _train(spec: RunSpec, *, log, checkpoint_dir: Path, threads: int | None = None,
           branches=(), on_branch=None):  # fmt: skip
    from scaling.training.hardware import limit_threads
    from scaling.training.loop import train

    limit_threads(threads, params=run_size(spec)["params"])  # tiny runs: one thread
    return train(spec, log=log, checkpoint_dir=checkpoint_dir, branches=branches, on_branch=on_branch)


def _enqueue_branches(study, trial, parent_run_id: str | None, keys: set[str] | None = None) -> None:
    """Enqueue the WSD branches a stable run's trial carries (those of ``keys``, or all),
    each tagged with the stable run's MLflow run; a branch already queued is left alone."""
    for attrs in trial.user_attrs.get("branches", ()):
        if keys is None or attrs["run_key"] in keys:
            extra = {"parent_run_id": parent_run_id} if parent_run_id else {}
            enqueue_branch(study, {**attrs, **extra})


def is_user_error(error: BaseException) -> bool:
    """Whether a run failed for its user's reason (bad config, missing data: a
    :class:`~scaling.errors.ScalingError`), which fails the run at once; anything else (a
    lost database or tracking connection, an OOM, a full disk) is transient and retried."""
    return isinstance(error, ScalingError) and not isinstance(error, (TrackingError, StorageError))


class _Attempt:
    """What one worker needs to train a claimed trial: the queue, the sweep and its settings."""

    def __init__(self, study, trial, config: SweepConfig, tracking_uri: str, storage,
                 threads: int | None) -> None:  # fmt: skip
        self.study, self.trial, self.config, self.storage = study, trial, config, storage
        self.tracking_uri, self.threads = tracking_uri, threads
        self.run: tracking.RunLogger | None = None


def _work_one(study, trial, config: SweepConfig, tracking_uri: str, storage,
              threads: int | None = None) -> str:  # fmt: skip
    """Train (or reuse) one claimed trial; return what happened: ``trained``, ``reused``,
    ``failed``, ``retried`` (a transient failure, enqueued again), ``duplicate`` or ``pruned``
    (a tune trial its pruner stopped). A SIGTERM
    puts the trial back in the queue without spending a retry."""
    attempt = _Attempt(study, trial, config, tracking_uri, storage, threads)
    heartbeat = Heartbeat(storage, trial._trial_id)
    heartbeat.start()
    try:
        return _train_attempt(attempt)
    except (KeyboardInterrupt, SystemExit):
        requeue(storage, study, trial)
        raise
    except Exception as error:  # noqa: BLE001 - the failure policy sorts every error
        return _settle_failure(attempt, error)
    finally:
        heartbeat.stop.set()


def _train_attempt(attempt: _Attempt) -> str:
    spec = _claimed_spec(attempt.trial, attempt.config)
    runs = tracking.find_runs(spec.sweep, tracking_uri=attempt.tracking_uri, run_key=spec.run_key)
    settled = _settled_by_earlier_runs(attempt.study, attempt.trial, runs)
    if settled is not None:
        return settled
    resume = next((run["run_id"] for run in runs if run["status"] in (*DEAD_STATES, "RUNNING")), None)
    params = spec.flat_params()
    params["model.vocab_size"] = model_vocab_size(spec.model, spec.data)
    tags = {tracking.TAG_CONFIG_HASH: attempt.config.config_hash,
            tracking.TAG_WORLD_SIZE: str(_processes(attempt.config, spec))}  # fmt: skip
    attrs = attempt.trial.user_attrs
    if "tune" in attrs:
        tags[tracking.TAG_TUNE] = attrs["tune"].rsplit("/", 1)[1]
    if "branch_of" in attrs:  # a WSD branch: the stable run it resumes from
        tags[tracking.TAG_BRANCH_OF] = attrs["branch_of"]
        tags[tracking.TAG_BRANCH_STEP] = str(attrs["branch_step"])
        if attrs.get("parent_run_id"):
            tags[tracking.TAG_PARENT_RUN] = attrs["parent_run_id"]
    with tracking.RunLogger(spec, tracking_uri=attempt.tracking_uri, run_id=resume, params=params, tags=tags) as run:
        attempt.run = run
        attempt.trial.set_user_attr("mlflow_run_id", run.run_id)
        return _train_into(attempt, spec)


def _claimed_spec(trial, config: SweepConfig) -> RunSpec:
    """The RunSpec a trial carries; a tuning trial's is sampled now and recorded on it."""
    attrs = trial.user_attrs
    if "tune" not in attrs:
        return RunSpec.model_validate_json(attrs["spec"])
    # tune.seed: reproducible trials, a stream of their own for each trial and tuned shape
    study_seed = zlib.crc32(attrs["tune"].encode())
    seed_sampler(trial.study, (config.tune.seed * 1_000_003 + study_seed + trial.number) % 2**32)
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
        _enqueue_branches(study, trial, finished[0]["run_id"])  # before the stable run is done
        study.tell(trial, finished[0]["metrics"].get("final/eval_loss"))
        return "reused"
    diverged = [r for r in runs if r["status"] == "FAILED"
                and r["tags"].get(tracking.TAG_FAILURE, "").startswith(("diverged", "pruned"))]  # fmt: skip
    if diverged:  # a diverged (or pruned) run is a result: training it again would end the same
        trial.set_user_attr("mlflow_run_id", diverged[0]["run_id"])
        trial.set_user_attr("failure", diverged[0]["tags"][tracking.TAG_FAILURE])
        study.tell(trial, state=TrialState.FAIL)
        return "failed"
    if any(run["status"] == "RUNNING" and _owner_alive(run["tags"]) for run in runs):
        trial.set_user_attr("duplicate", True)  # the same key is being trained right now
        study.tell(trial, state=TrialState.FAIL)
        return "duplicate"
    return None


def _processes(config: SweepConfig, spec: RunSpec) -> int:
    """Processes that train ``spec``: the target's ``nproc_per_node``, else 1."""
    return config.target.nproc_per_node if spec.role == "target" and config.target else 1


def _train_into(attempt: _Attempt, spec: RunSpec) -> str:
    """Train ``spec`` into the open MLflow run and tell the trial how it ended: in this
    process, or on the target's ``nproc_per_node`` processes (:func:`_train_processes`)."""
    from optuna.trial import TrialState

    root = Path(attempt.config.checkpoint_root)
    checkpoint_dir = root / spec.sweep / spec.run_key
    if _processes(attempt.config, spec) > 1:
        return _train_processes(attempt, spec, checkpoint_dir.resolve())
    from scaling.training.loop import Branch

    branches = [Branch(step=int(attrs["branch_step"]), run_key=attrs["run_key"],
                       checkpoint_dir=root / spec.sweep / attrs["run_key"])
                for attrs in attempt.trial.user_attrs.get("branches", ())]  # fmt: skip
    run_id = attempt.run.run_id

    def on_branch(branch: Branch) -> None:  # its checkpoint exists: the queue may hand it out
        _enqueue_branches(attempt.study, attempt.trial, run_id, {branch.run_key})

    log = attempt.run.log
    if "tune" in attempt.trial.user_attrs and attempt.study.pruner is not None:
        log = _pruning_log(attempt, spec)
    try:
        result = _train(spec, log=log, checkpoint_dir=checkpoint_dir, threads=attempt.threads,
                        branches=branches, on_branch=on_branch)  # fmt: skip
    except _Pruned as stop:
        return _settle_pruned(attempt, spec, stop.step)
    timing = result.timing()
    if result.status == "finished":
        attempt.run.finish({**result.summary(), **timing})
        _enqueue_branches(attempt.study, attempt.trial, run_id)  # any passed before a resume
        attempt.study.tell(attempt.trial, result.final_eval_loss)
        return "trained"
    reason = f"diverged: {result.failure}"
    attempt.run.fail(reason, timing)
    attempt.trial.set_user_attr("failure", reason[:1000])
    attempt.study.tell(attempt.trial, state=TrialState.FAIL)
    return "failed"


class _Pruned(Exception):
    """Raised from a tune trial's log callback when its pruner stops it after ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"pruned after step {step}")
        self.step = step


def _pruning_log(attempt: _Attempt, spec: RunSpec):
    """The run's log callback that also reports each intermediate eval loss to the trial and
    stops the run (:class:`_Pruned`) when the study's pruner says so; the last evaluation is
    the result, never pruned."""
    steps = spec.train.tokens // spec.train.batch_tokens

    def log(step: int, metrics) -> None:
        attempt.run.log(step, metrics)
        if "eval/loss" in metrics and step < steps:
            attempt.trial.report(float(metrics["eval/loss"]), step)
            if attempt.trial.should_prune():
                raise _Pruned(step)

    return log


def _settle_pruned(attempt: _Attempt, spec: RunSpec, step: int) -> str:
    """End a pruned tune trial: its MLflow run FAILED with ``scaling.failure`` = "pruned ..."
    and ``scaling.pruned_step`` (what the report counts as compute saved), the trial PRUNED."""
    from optuna.trial import TrialState

    steps = spec.train.tokens // spec.train.batch_tokens
    reason = f"pruned by the {attempt.config.tune.pruner} pruner after step {step} of {steps}"
    attempt.run.set_tags({tracking.TAG_PRUNED_STEP: str(step)})
    attempt.run.fail(reason)
    attempt.trial.set_user_attr("failure", reason)
    attempt.study.tell(attempt.trial, state=TrialState.PRUNED)
    return "pruned"


class TorchrunError(RuntimeError):
    """A target's torchrun child failed for a reason that is not a user's error (a rank
    killed or out of memory, a lost connection): transient, so the run is retried."""


# Run before torchrun, then replaced by it (exec): with PR_SET_PDEATHSIG the kernel sends
# torchrun SIGTERM when the worker dies, even by SIGKILL, and torchrun stops its ranks.
_PARENT_DEATH_SIGNAL = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(143)  # the worker died before the line above\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def _train_processes(attempt: _Attempt, spec: RunSpec, checkpoint_dir: Path) -> str:
    """Train the target on ``target.nproc_per_node`` DDP processes of this node.

    The worker launches ``torchrun --standalone --nproc_per_node K -m scaling train`` on the
    RunSpec's run file, into the MLflow run it opened (``--run-id``; rank 0 logs as this
    process would, :mod:`scaling.cli.run_commands`) and with the run's checkpoint folder, so
    a killed target resumes from its checkpoint. The trial's heartbeat goes on meanwhile
    (:func:`_work_one`). The child sees this worker's ``CUDA_VISIBLE_DEVICES``; on CPU its
    ranks share the worker's threads (one each below ``CPU_THREADS_MIN_PARAMS``). A SIGTERM
    stops the child and all its processes before the trial is put back in the queue; a
    SIGKILLed worker's child gets SIGTERM from the kernel (``_PARENT_DEATH_SIGNAL``).
    """
    from scaling.training.hardware import threads_for

    nproc = attempt.config.target.nproc_per_node
    _check_gpus(spec, nproc)
    run = attempt.run
    run.hand_over()  # rank 0 of the child reopens the run and ends it
    threads = threads_for(attempt.threads, run_size(spec)["params"], default=available_cores())
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // nproc))}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # the child's ranks are torchrun's, not an outer job's
    uri = attempt.tracking_uri
    if tracking.sqlite_path(uri) is not None:
        uri = "sqlite:///" + str(tracking.sqlite_path(uri).resolve())
    with tempfile.TemporaryDirectory(prefix="scaling-target-") as folder:
        path, failure_file = Path(folder) / "run.yaml", Path(folder) / "failures.jsonl"
        path.write_text(run_file(spec), encoding="utf-8")
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(nproc), "-m", "scaling", "train", str(path),
                   "--experiment", spec.sweep, "--tracking-uri", uri, "--run-id", run.run_id,
                   "--role", spec.role, "--checkpoint-dir", str(checkpoint_dir),
                   "--failure-file", str(failure_file), "--output", "json"]  # fmt: skip
        try:
            code = _run_child(command, env)
        except (KeyboardInterrupt, SystemExit) as stop:  # the child is stopped: end its run
            _end_if_running(run, attempt.tracking_uri, f"stopped by {type(stop).__name__}")
            raise
        failures = [json.loads(line) for line in failure_file.read_text(encoding="utf-8").splitlines()
                    if line.strip()] if failure_file.exists() else []  # fmt: skip
    return _settle_child(attempt, spec, nproc, code, failures)


def _end_if_running(run: tracking.RunLogger, tracking_uri: str, reason: str) -> None:
    """End the run KILLED unless the child ended it first (KILLED, or FINISHED just then)."""
    try:
        if tracking.run_status(run.run_id, tracking_uri=tracking_uri) == "RUNNING":
            run.end("KILLED", reason)
    except Exception:  # noqa: BLE001, S110 - the reaper ends it later if it stays RUNNING
        pass


def _check_gpus(spec: RunSpec, nproc: int) -> None:
    """Refuse a GPU target with more processes than this worker sees GPUs."""
    from scaling.training.hardware import visible_gpus

    gpus = visible_gpus()
    if spec.train.device in ("auto", "cuda") and 0 < gpus < nproc:
        pinned = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise ConfigError(
            f"target.nproc_per_node = {nproc} needs {nproc} GPUs, but this worker sees {gpus} "
            f"(CUDA_VISIBLE_DEVICES={pinned}); train the target with a worker that sees them "
            "all: 'scaling sweep worker FILE --roles target' without --devices"
        )


def _run_child(command: list[str], env: dict[str, str]) -> int:
    """Run the torchrun ``command`` in a session of its own, its output in this process's
    (the worker log, which outlives the worker); return its exit code.

    Every process of the child is noted while it runs (torchrun starts each rank in a session
    of its own): on a stop (SIGTERM, which raises ``SystemExit`` here) torchrun gets SIGTERM
    and :data:`TORCHRUN_GRACE_S` to stop its ranks, then whatever is left is killed, and no
    process of the child outlives it either way.
    """
    import psutil

    child = subprocess.Popen([sys.executable, "-c", _PARENT_DEATH_SIGNAL, str(os.getpid()), *command],
                             env=env, start_new_session=True)  # fmt: skip
    seen: dict[int, psutil.Process] = {}
    try:
        while True:
            _note_processes(child.pid, seen)
            try:
                return child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
    except BaseException:
        _note_processes(child.pid, seen)
        child.terminate()  # torchrun passes it on to its ranks
        try:
            child.wait(timeout=TORCHRUN_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    finally:
        for process in seen.values():  # ranks whose torchrun died before them
            try:
                process.kill()  # psutil checks the start time: never a reused pid
            except psutil.Error:
                pass


def _note_processes(pid: int, seen: dict) -> None:
    """Add the live descendants of ``pid`` to ``seen`` (pid -> ``psutil.Process``)."""
    import psutil

    try:
        for process in psutil.Process(pid).children(recursive=True):
            seen.setdefault(process.pid, process)
    except psutil.Error:
        pass


def _settle_child(attempt: _Attempt, spec: RunSpec, nproc: int, code: int,
                  failures: list[dict[str, Any]]) -> str:  # fmt: skip
    """Tell the trial how the torchrun child ended, from the MLflow run its rank 0 ended: a
    finished run is the result and a diverged one stands, as in :func:`_train_into`; any
    other end raises the child's error for :func:`_settle_failure` (its first failure, as
    the class it was when it is one of :mod:`scaling.errors`, else :class:`TorchrunError`)."""
    from optuna.trial import TrialState

    runs = tracking.find_runs(spec.sweep, tracking_uri=attempt.tracking_uri, run_key=spec.run_key)
    (run,) = [found for found in runs if found["run_id"] == attempt.run.run_id]
    if run["status"] == "FINISHED":
        attempt.study.tell(attempt.trial, run["metrics"]["final/eval_loss"])
        return "trained"
    reason = run["tags"].get(tracking.TAG_FAILURE, "")
    if run["status"] == "FAILED" and reason.startswith("diverged"):
        attempt.trial.set_user_attr("failure", reason[:1000])
        attempt.study.tell(attempt.trial, state=TrialState.FAIL)
        return "failed"
    if failures:
        first = failures[0]
        kind = getattr(errors, first["error"], None)
        if isinstance(kind, type) and issubclass(kind, ScalingError):
            raise kind(first["message"])
        raise TorchrunError(f"rank {first['rank']} of {nproc}: {first['error']}: {first['message']}")
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    raise TorchrunError(f"torchrun of {nproc} processes {how} (its output is in the worker's log)")


def _settle_failure(attempt: _Attempt, error: Exception) -> str:
    """The failure policy: a user's error fails the run at once with its reason; a transient
    one puts the run back in the queue (to resume from its checkpoint) while it has retries
    left (``execution.max_retries``), and fails it with the reason after that."""
    reason = f"{type(error).__name__}: {error}".strip()
    retries = int(attempt.trial.user_attrs.get("retries", 0))
    limit = attempt.config.execution.max_retries
    if not is_user_error(error) and retries < limit:
        _end_run(attempt.run, "KILLED", f"{reason} (transient; retry {retries + 1} of {limit})")
        requeue(attempt.storage, attempt.study, attempt.trial, retries=retries + 1)
        return "retried"
    if not is_user_error(error):
        reason = f"{reason} (after {retries} retries; max_retries = {limit})"
    _end_run(attempt.run, "FAILED", reason)
    give_up(attempt.storage, attempt.study, attempt.trial, reason)
    return "failed"


def _end_run(run: tracking.RunLogger | None, status: str, reason: str) -> None:
    """End the attempt's MLflow run, if it got one, as ``status`` with the reason; a lost
    tracking connection must not hide the failure being handled."""
    if run is None:
        return
    try:
        run.end(status, reason)
    except Exception:  # noqa: BLE001, S110 - the reaper ends it later if it stays RUNNING
        pass


def _owner_alive(tags: dict[str, str]) -> bool:
    if tags.get(tracking.TAG_HOST) != socket.gethostname() or not tags.get(tracking.TAG_PID):
        return False  # a remote owner's liveness is the reaper's business (heartbeats)
    return int(tags[tracking.TAG_PID]) != os.getpid() and pid_alive(int(tags[tracking.TAG_PID]))


def configured(sweep: str | Path | SweepConfig, *, quick: bool = False, max_retries: int | None = None,
               checkpoint_root: str | Path | None = None) -> SweepConfig:  # fmt: skip
    """The sweep's config with the command line's ``--max-retries`` and ``--checkpoint-root``
    over its ``execution`` section (a given root is made absolute: every machine that shares
    it reads the same path)."""
    config = sweep if isinstance(sweep, SweepConfig) else load_sweep(sweep, quick=quick)
    return with_execution(config, max_retries=max_retries, checkpoint_root=checkpoint_root)


def with_execution(config: SweepConfig, *, max_retries: int | None = None,
                   checkpoint_root: str | Path | None = None) -> SweepConfig:  # fmt: skip
    """``config`` with these ``execution`` settings where given."""
    update: dict[str, Any] = {}
    if max_retries is not None:
        if max_retries < 0:
            raise ConfigError(f"--max-retries = {max_retries}: use 0 or more (default 2)")
        update["max_retries"] = max_retries
    if checkpoint_root is not None:
        update["checkpoint_root"] = str(Path(checkpoint_root).resolve())
    if not update:
        return config
    execution = config.execution.model_copy(update=update)
    return config.model_copy(update={"execution": execution}).with_source(config.source)


def check_launchable(config: SweepConfig, roles: Iterable[str], devices: Sequence[str] | None = None) -> None:
    """Refuse, before anything is enqueued or trained, a target these workers cannot launch:
    one worker starts the target's processes on its own node only, on the GPUs it sees.

    Raises
    ------
    ConfigError
        If ``roles`` include the target and ``target.nnodes`` is above 1, or the target has
        several processes and ``devices`` pins one GPU per worker.
    """
    target = config.target
    if "target" not in roles or target is None:
        return
    if target.nnodes > 1:
        raise ConfigError(
            f"{config.source}: target.nnodes = {target.nnodes}: a sweep worker launches the "
            "target on its own node only; write its run file with 'scaling sweep export-target "
            f"{config.source} -o target.yaml', launch that with torchrun --nnodes {target.nnodes} "
            "(its header says how), and run the sweep with --roles proxy"
        )
    if devices and target.nproc_per_node > 1:
        raise ConfigError(
            f"{config.source}: target.nproc_per_node = {target.nproc_per_node} needs a worker that "
            f"sees {target.nproc_per_node} GPUs, but --devices pins one GPU per worker; run the "
            "proxies with --roles proxy --devices ..., and the target with 'scaling sweep worker "
            "FILE --roles target' without --devices"
        )


def _join_sweep(sweep: str | Path | SweepConfig, storage: str | None, tracking_uri: str,
                roles: Iterable[str] | None, quick: bool, max_retries: int | None,
                checkpoint_root: str | Path | None) -> tuple[SweepConfig, Any, str, Any, list]:
    """What a worker needs to join a sweep set up elsewhere: the config as the launcher stored
    it (with these execution overrides), the roles, the storage URL, the storage and the studies.

    Raises
    ------
    StorageError
        If the storage cannot be opened or holds no study of this sweep.
    """
    config = sweep if isinstance(sweep, SweepConfig) else load_sweep(sweep, quick=quick)
    roles = check_roles(roles)
    url = storage_url(storage, tracking_uri)
    tracking.check_tracking(tracking_uri)
    store = open_storage(url)
    names = study_names(config, roles)
    _load_studies(store, names, url)  # a sweep nobody launched fails here, naming the study
    config = with_execution(stored_config(store, names) or config, max_retries=max_retries,
                            checkpoint_root=checkpoint_root)  # fmt: skip
    check_launchable(config, roles)
    return config, roles, url, store, _load_studies(store, names, url, config)


def worker(
    sweep: str | Path | SweepConfig, *, storage: str | None = None,
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI, roles: Iterable[str] | None = None,
    threads: int | None = None, max_trials: int | None = None, quick: bool = False,
    max_retries: int | None = None, checkpoint_root: str | Path | None = None,
    poll_s: float = 2.0,
) -> dict[str, int]:  # fmt: skip
    """Drain the sweep's queue in this process until no trial is WAITING or RUNNING.

    Joins a sweep a launcher (``run_sweep``) has set up, on this machine or another one: the
    RunSpecs come from the storage, so ``sweep`` only names the sweep (a file or a config).
    Between runs, and while it waits for others' runs to end, it reaps the trials of dead
    workers (:func:`scaling.sweeps.queue.reap`), so no launcher has to stay alive. SIGTERM
    ends the current MLflow run KILLED and puts its RunSpec back in the queue.

    Parameters
    ----------
    max_retries, checkpoint_root : optional
        Over the ``execution`` settings the launcher stored (``--max-retries``,
        ``--checkpoint-root``).

    Returns
    -------
    dict
        Counts of ``trained``, ``reused``, ``failed``, ``retried``, ``duplicate`` and ``pruned`` trials.

    Raises
    ------
    StorageError
        If the storage cannot be opened or holds no study of this sweep.
    ConfigError
        If its roles include a target on several nodes (:func:`check_launchable`).
    """
    config, roles, url, store, studies = _join_sweep(sweep, storage, tracking_uri, roles, quick,
                                              max_retries, checkpoint_root)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if studies:
        wait_ready(studies[0])
    counts = {"trained": 0, "reused": 0, "failed": 0, "retried": 0, "duplicate": 0, "pruned": 0}
    done = 0
    while max_trials is None or done < max_trials:
        reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
        for study in studies:
            trial = claim(study)
            if trial is not None:
                counts[_work_one(study, trial, config, tracking_uri, store, threads)] += 1
                done += 1
                break
        else:
            if not any(_unfinished(study) for study in studies):
                return counts
            time.sleep(poll_s)  # others' runs are still going: one may need reaping
    return counts


def _load_studies(store, names: list[str], url: str, config: SweepConfig | None = None) -> list:
    """The studies ``names``; with ``config``, each tune study with the sweep's pruner."""
    bases = tune_studies(config) if config is not None and config.tune is not None else {}
    studies = []
    for name in names:
        pruner = None
        if name in bases:
            base = bases[name].train
            pruner = tune_pruner(config, base.tokens // base.batch_tokens)
        try:
            studies.append(load_study(store, name, seed=None, pruner=pruner))
        except KeyError:
            raise StorageError(
                f"no study {name} in {url}; start the sweep with 'scaling sweep run FILE' first"
            ) from None
    return studies


def _unfinished(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)))


def status(
    sweep: str | Path | SweepConfig, *, storage: str | None = None,
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI, roles: Iterable[str] | None = None,
    quick: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per run of the sweep (the latest attempt of each): name, role, state, loss,
    flops_exact, run_key, mlflow_run_id, worker, reused, retries, failure (why it failed),
    planned (False for a run the sweep file no longer lists), study, branch_of (the stable run
    of a WSD branch). States: WAITING, RUNNING, COMPLETE, FAIL, and PENDING for a WSD branch
    its stable run has not enqueued yet. A branch's tokens and FLOPs are its cooldown's, what
    it trains itself."""
    config = sweep if isinstance(sweep, SweepConfig) else load_sweep(sweep, quick=quick)
    store = open_storage(storage_url(storage, tracking_uri))
    specs = expand(config)
    planned = {spec.run_key for spec in specs}
    branches = ladder_branches(config, specs)
    rows = []
    for name in study_names(config, check_roles(roles)):
        try:
            study = load_study(store, name)
        except KeyError:
            continue
        for trial in latest_attempts(study.get_trials(deepcopy=False)):
            rows.append(_status_row(name, trial, planned, branches))
        if name == f"{config.name}/proxy":
            seen = {row["run_key"] for row in rows}
            rows += [_pending_row(name, branch) for key, branch in branches.items() if key not in seen]
    return rows


def _trained_size(spec: RunSpec, branches: dict[str, PlannedBranch]) -> dict[str, float]:
    """:func:`run_size` of what ``spec`` trains itself (a branch: its cooldown)."""
    size = run_size(spec)
    tokens = trained_tokens(spec, branches)
    share = tokens / size["tokens"]
    return {**size, "tokens": tokens, "run_tokens": size["tokens"], "flops": size["flops"] * share,
            "flops_exact": size["flops_exact"] * share}  # fmt: skip


def _pending_row(study: str, branch: PlannedBranch) -> dict[str, Any]:
    """The status row of a WSD branch that waits for its stable run's checkpoint."""
    spec = branch.spec
    size = _trained_size(spec, {spec.run_key: branch})
    return {
        "name": spec.name, "role": spec.role, "state": "PENDING", "loss": None,
        "flops_exact": size["flops_exact"], "run_key": spec.run_key, "mlflow_run_id": None,
        "worker": None, "reused": False, "retries": 0, "failure": None, "planned": True,
        "study": study, "branch_of": branch.parent.name,
        "params": size["params"], "tokens": size["tokens"], "wall_s": None, "running_s": None,
    }  # fmt: skip


def _status_row(study: str, trial, planned: set[str], branches: dict[str, PlannedBranch]) -> dict[str, Any]:
    attrs = trial.user_attrs
    spec = RunSpec.model_validate_json(attrs["spec"]) if "spec" in attrs else None
    size = _trained_size(spec, branches) if spec else None
    return {
        "name": attrs.get("name") or f"{study.rsplit('/', 1)[1]} (tune, not started)",
        "role": spec.role if spec else "proxy",
        "state": trial.state.name,
        "loss": trial.value,
        "flops_exact": size["flops_exact"] if spec else None,
        "run_key": attrs.get("run_key"),
        "mlflow_run_id": attrs.get("mlflow_run_id"),
        "worker": f"{attrs['host']}:{attrs['pid']}" if "pid" in attrs else None,
        "reused": bool(attrs.get("reused")),
        "retries": int(attrs.get("retries", 0)),
        "failure": attrs.get("failure") if trial.state.name in ("FAIL", "PRUNED") else None,
        "planned": "tune" in attrs or attrs.get("run_key") in planned,
        "study": study,
        "branch_of": attrs.get("branch_of"),
        **timing_fields(trial, size),  # params, tokens, wall_s, running_s
    }


def failures(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The runs of the plan whose latest attempt failed, each with why (``name``, ``reason``)."""
    return [
        {"name": row["name"], "reason": row["failure"] or "failed without a recorded reason"}
        for row in rows if row["state"] == "FAIL" and row["planned"]
    ]  # fmt: skip


def _summarise(rows: list[dict[str, Any]], started: float, spent0: float) -> dict[str, Any]:
    states = [row["state"] for row in rows]
    spent = sum(row["flops_exact"] or 0 for row in rows if row["state"] == "COMPLETE")
    total = sum(row["flops_exact"] or 0 for row in rows)
    elapsed = time.time() - started
    return {
        "runs": len(rows),
        "done": states.count("COMPLETE"),
        "running": states.count("RUNNING"),
        "waiting": states.count("WAITING") + states.count("PENDING"),
        "failed": states.count("FAIL"),
        "pruned": states.count("PRUNED"),
        "flops_spent": spent,
        "flops_total": total,
        "elapsed_s": elapsed,
        "eta_s": eta_seconds(rows),  # from measured tokens/s per run size (scaling.sweeps.progress)
        "rows": rows,  # for plain progress lines: which run started, finished, failed
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


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, as a container or SLURM grants)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers(config: SweepConfig, roles: Sequence[str]) -> int:
    """Worker processes when ``--workers`` is not given: one per core when every run of the
    sweep (these roles) is small enough to train with one thread
    (:data:`scaling.training.hardware.CPU_THREADS_MIN_PARAMS`), else one worker using every
    core. Parallelism for tiny runs comes from workers, not intra-op threads."""
    from scaling.training.hardware import CPU_THREADS_MIN_PARAMS

    specs = [spec for spec in expand(config) if spec.role in roles]
    if "proxy" in roles:
        specs += list(tune_studies(config).values())
    if specs and all(run_size(spec)["params"] < CPU_THREADS_MIN_PARAMS for spec in specs):
        return available_cores()
    return 1


def run_sweep(
    sweep: str | Path | SweepConfig, *, workers: int | None = None, devices: Sequence[str] | None = None,
    storage: str | None = None, tracking_uri: str = tracking.DEFAULT_TRACKING_URI,
    roles: Iterable[str] | None = None, quick: bool = False, threads: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None, poll_s: float = 1.0,
    max_retries: int | None = None, checkpoint_root: str | Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Set up, enqueue once, and drain a sweep with worker processes until it is done.

    Parameters
    ----------
    sweep : path or SweepConfig
        The sweep file (or an already loaded config).
    workers : int, optional
        Worker processes on CPU; the cores are split between them (``torch.set_num_threads``).
        Default :func:`default_workers`: one per core when every run is tiny, else one. ``0``
        sets the sweep up and enqueues it, then returns: workers join it elsewhere with
        :func:`worker` (``scaling sweep worker``), as on a cluster whose login node trains nothing.
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
        torch threads per CPU worker; default the cores split evenly between the workers.
        Runs below ``CPU_THREADS_MIN_PARAMS`` train with one thread whatever this says.
    progress : callable, optional
        Called about every ``poll_s`` seconds with a snapshot dict (runs, done, running,
        waiting, failed, flops_spent, flops_total, elapsed_s, eta_s).
    max_retries, checkpoint_root : optional
        Over the sweep file's ``execution`` section; stored with the sweep for every worker.

    Returns
    -------
    dict
        The final snapshot plus ``enqueued``, ``retried`` (failed runs enqueued again),
        ``requeued``, ``failures`` (name and reason of each failed run), ``rows`` (see
        :func:`status`), ``wall_s`` and ``workers_started``.

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
    config = configured(sweep, quick=quick, max_retries=max_retries, checkpoint_root=checkpoint_root)
    roles = check_roles(roles)
    check_launchable(config, roles, devices)
    url = storage_url(storage, tracking_uri)
    tracking.check_tracking(tracking_uri)
    store = open_storage(url)
    enqueued = enqueue(config, store, roles)
    retried = retry_failed(config, store, roles)
    rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    if workers is None:
        workers = default_workers(config, roles)
    if workers == 0 and not devices:  # enqueue only: workers join from elsewhere
        tracking.setup_experiment(config.name, tracking_uri=tracking_uri)
        mark_ready(config, store, roles)
        summary = _summarise(rows, started, 0)
        return {**summary, "enqueued": enqueued, "retried": retried, "requeued": [], "failures": failures(rows),
                "rows": rows, "wall_s": time.time() - started, "workers_started": 0}  # fmt: skip
    slots = [{"CUDA_VISIBLE_DEVICES": str(d)} for d in devices] if devices else [{} for _ in range(max(1, workers))]
    if threads is None and not devices:
        threads = max(1, available_cores() // len(slots))
    pool = _WorkerPool(config, url, tracking_uri, roles, threads, slots)
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # SIGTERM must run the cleanup below, which stops the workers it started
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if any(row["state"] == "WAITING" for row in rows):
            pool.top_up()  # workers import torch while MLflow is set up; they wait for the flag
        tracking.setup_experiment(config.name, tracking_uri=tracking_uri)
        mark_ready(config, store, roles)
        requeued, spent0 = _drain(config, url, tracking_uri, roles, pool, progress, poll_s, started)
    finally:
        with _cleanup_after_stop("stopping the workers"):
            pool.stop()
        with _cleanup_after_stop("reaping the stopped workers' trials"):
            reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    _tag_best(config, store, tracking_uri)
    rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    summary = _summarise(rows, started, spent0)
    if progress is not None:
        progress(summary)
    left = [{"name": row["name"], "reason": f"left {row['state']}: {pool.starts} worker starts all "
             f"ended; see the logs in {pool.log_dir}"} for row in rows
            if row["state"] in ("WAITING", "RUNNING") and row["planned"]]  # fmt: skip
    return {**summary, "enqueued": enqueued, "retried": retried, "requeued": requeued,
            "failures": failures(rows) + left, "rows": rows, "wall_s": time.time() - started,
            "workers_started": pool.starts}  # fmt: skip


class _LiveProgress:
    """The running runs' logged progress for the ETA (:func:`tracking.live_progress`), read
    in a background thread at most every ``every_s`` seconds: the launcher's loop, which
    reaps dead workers, never waits on a slow or restarting tracking server for it."""

    def __init__(self, tracking_uri: str, every_s: float = 10.0):
        self.tracking_uri, self.every_s = tracking_uri, every_s
        self.values: dict[str, dict[str, float]] = {}
        self._thread: threading.Thread | None = None
        self._last = -math.inf

    def refresh(self, run_ids: list[str]) -> None:
        busy = self._thread is not None and self._thread.is_alive()
        if busy or not run_ids or time.monotonic() - self._last < self.every_s:
            return
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._read, args=(list(run_ids),), daemon=True)
        self._thread.start()

    def _read(self, run_ids: list[str]) -> None:
        try:
            self.values = tracking.live_progress(run_ids, tracking_uri=self.tracking_uri)
        except Exception:  # noqa: BLE001 - an ETA's read must never print a thread's traceback
            pass  # the last values stand; the next refresh tries again


def _with_live(rows: list[dict[str, Any]], live: dict[str, Any]) -> list[dict[str, Any]]:
    """The status rows, each running run with its logged progress (``tokens_done``,
    ``tokens_per_s``) where ``live`` has it."""
    return [{**row, **live[row["mlflow_run_id"]]} if row["state"] == "RUNNING" and row["mlflow_run_id"] in live
            else row for row in rows]  # fmt: skip


def _drain(config, url, tracking_uri, roles, pool, progress, poll_s, started) -> tuple[list[str], float]:
    """Poll until no run is WAITING or RUNNING: replace dead workers, reap their trials, report
    progress. Returns (names of the requeued runs, FLOPs already spent at the start)."""
    requeued = reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    spent0 = _summarise(rows, started, 0)["flops_spent"]
    last_reap, live = time.time(), _LiveProgress(tracking_uri)
    while any(row["state"] in ("WAITING", "RUNNING") for row in rows):
        alive = pool.alive()
        waiting = any(row["state"] == "WAITING" for row in rows)
        if waiting and len(alive) < len(pool.slots):
            if pool.exhausted:
                break  # workers keep dying: leave the rest queued for a later run
            pool.top_up()
        if progress is not None:
            live.refresh([row["mlflow_run_id"] for row in rows if row["state"] == "RUNNING" and row["mlflow_run_id"]])
            progress(_summarise(_with_live(rows, live.values), started, spent0))
        time.sleep(poll_s)
        if not alive or time.time() - last_reap > 5 * poll_s:
            requeued += reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
            last_reap = time.time()
        rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    return requeued, spent0


def node_workers(
    sweep: str | Path | SweepConfig, *, devices: Sequence[str], storage: str | None = None,
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI, roles: Iterable[str] | None = None,
    threads: int | None = None, quick: bool = False, max_retries: int | None = None,
    checkpoint_root: str | Path | None = None, poll_s: float = 1.0,
) -> list[int]:  # fmt: skip
    """One worker process per listed GPU of this node (``CUDA_VISIBLE_DEVICES`` pinned per
    process, as the launcher pins its own), each draining the queue and reaping dead workers'
    trials; a worker that dies while runs wait is started again (at most four starts per GPU).
    Returns when they have all ended: their exit codes, in start order.

    Raises
    ------
    StorageError
        If the storage cannot be opened or holds no study of this sweep.
    """
    config, roles, url, store, studies = _join_sweep(sweep, storage, tracking_uri, roles, quick,
                                              max_retries, checkpoint_root)
    check_launchable(config, roles, devices)
    pool = _WorkerPool(config, url, tracking_uri, roles, threads, [{"CUDA_VISIBLE_DEVICES": str(d)} for d in devices])
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        pool.top_up()
        while pool.alive():
            time.sleep(poll_s)
            if len(pool.alive()) < len(pool.slots) and not pool.exhausted and any(_waiting(s) for s in studies):
                pool.top_up()
    finally:
        with _cleanup_after_stop("stopping the workers"):
            pool.stop()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return [process.returncode for _, process in pool.processes]


def _waiting(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


class _WorkerPool:
    """Worker processes: one per slot (a GPU, or a share of the cores), started again when
    they die, at most four starts per slot in all; logs under ``<checkpoint root>/<sweep>/logs/``
    (``worker-<host>-<n>.log``: a shared root holds every machine's)."""

    def __init__(self, config, url, tracking_uri, roles, threads, slots) -> None:
        self.config, self.url, self.tracking_uri = config, url, tracking_uri
        self.roles, self.threads, self.slots = roles, threads, slots
        self.log_dir = Path(config.checkpoint_root) / config.name / "logs"
        self.processes: list[tuple[int, subprocess.Popen]] = []  # (slot, process)
        self.starts = 0
        self.max_starts = 4 * len(slots)  # first wave plus restarts after worker deaths

    @property
    def exhausted(self) -> bool:
        return self.starts >= self.max_starts

    def alive(self) -> list[subprocess.Popen]:
        return [process for _, process in self.processes if process.poll() is None]

    def top_up(self) -> None:
        """Start a worker in every slot that has none alive."""
        busy = {slot for slot, process in self.processes if process.poll() is None}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for slot, env in enumerate(self.slots):
            if slot in busy or self.exhausted:
                continue
            log_path = self.log_dir / f"worker-{socket.gethostname()}-{self.starts}.log"
            self.processes.append((slot, _spawn(self.config, self.url, self.tracking_uri, self.roles,
                                                self.threads, env, log_path)))  # fmt: skip
            self.starts += 1

    def stop(self) -> None:
        """SIGTERM every worker still running (each ends its run KILLED), then wait; kill
        those that do not stop within a minute."""
        for process in self.alive():
            process.terminate()
        for _, process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _exit_on_sigterm(signum, frame) -> None:
    """Stop with exit code 143 (128 + SIGTERM); a second SIGTERM while the cleanup that
    follows runs is ignored, so the cleanup finishes and the exit code stays 143."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


@contextlib.contextmanager
def _cleanup_after_stop(what: str):
    """Run one cleanup step of a launcher; while it stops on SIGTERM (a ``SystemExit`` in
    flight), a failure of the step is one line on stderr instead of an exception that would
    replace the stop's exit code 143. Outside a stop, failures propagate."""
    stopping = isinstance(sys.exc_info()[1], SystemExit)
    try:
        yield
    except Exception as error:
        if not stopping:
            raise
        print(f"scaling: while stopping, {what} failed: {type(error).__name__}: {error}", file=sys.stderr)


def _spawn(config, url, tracking_uri, roles, threads, env, log_path) -> subprocess.Popen:
    command = [sys.executable, "-m", "scaling.sweeps.workers", config.name, "--storage", url,
               "--tracking-uri", tracking_uri, "--roles", ",".join(roles),
               "--max-retries", str(config.execution.max_retries),
               "--checkpoint-root", str(Path(config.checkpoint_root).resolve())]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    finally:
        log.close()


def _main(argv: list[str] | None = None) -> int:
    """Worker process entry (``python -m scaling.sweeps.workers NAME --storage URL ...``) used by
    :func:`run_sweep` and :func:`node_workers`: the sweep's config is read from the storage.
    Its first line in the log names the process and its pinned device."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m scaling.sweeps.workers")
    parser.add_argument("name")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--roles", default="proxy,target")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-retries", type=int, default=None)
    parser.add_argument("--checkpoint-root", default=None)
    args = parser.parse_args(argv)
    device = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    print(f"worker {socket.gethostname()}:{os.getpid()} sweep {args.name} CUDA_VISIBLE_DEVICES={device} "
          f"threads={args.threads or 'default'}", flush=True)  # fmt: skip
    store = open_storage(args.storage)
    roles = tuple(args.roles.split(","))
    names = [s.study_name for s in all_studies(store) if s.study_name.startswith(f"{args.name}/")]
    config = stored_config(store, names)
    if config is None:
        raise StorageError(f"no sweep {args.name} in {args.storage}; start it with 'scaling sweep run'")
    counts = worker(config, storage=args.storage, tracking_uri=args.tracking_uri, roles=roles,
                    threads=args.threads, max_retries=args.max_retries,
                    checkpoint_root=args.checkpoint_root)  # fmt: skip
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
