"""Sweeps: queue a sweep's RunSpecs in Optuna and drain the queue with workers.

The plan is pure (:func:`expand`, in :mod:`scaling.sweeps.planning`, re-exported here); the queue is an Optuna study per role family; every run is
an MLflow run (through :mod:`scaling.sweeps.tracking`). The exactly-once pattern of
notes/mlflow-optuna.md, measured to hold under SIGKILL:

1. the launcher alone creates the MLflow database and experiment, the studies, and enqueues
   each RunSpec whose run key is not in the study yet (a second ``sweep run`` enqueues nothing);
2. a worker claims a WAITING trial (``study.ask``), records pid/host/heartbeat as user attrs,
   reuses a FINISHED MLflow run with the same key if there is one, else trains into an MLflow
   run (reopening the run of a dead attempt and resuming from its checkpoint), then tells;
3. a reaper fails the RUNNING trials of dead workers (pid gone on this host, or a stale
   heartbeat elsewhere), marks their MLflow runs KILLED and re-enqueues their RunSpecs.

Studies: ``<sweep>/proxy`` (ladder + isoflop), ``<sweep>/tune/<shape>`` (one per tuned shape,
sampled by TPE) and ``<sweep>/target``. Storage: an Optuna journal file beside the MLflow
database by default (sqlite storage was seen handing one trial to two workers), or an RDB URL
(PostgreSQL) for many machines. This is the only module that imports optuna.
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
from scaling.errors import ConfigError, StorageError
from scaling.sweeps import tracking
from scaling.sweeps.planning import (
    expand,
    load_sweep,
    model_vocab_size,
    plan,
    run_size,
    tune_studies,
)

__all__ = [
    "load_sweep",
    "expand",
    "plan",
    "run_sweep",
    "worker",
    "status",
    "reap",
    "storage_url",
]

ROLES = ("proxy", "target")
HEARTBEAT_S = 10.0  # how often a worker refreshes its trial's heartbeat
STALE_S = 120.0  # a trial owned by another host is dead after this long without a heartbeat
READY_TIMEOUT_S = 600.0  # how long a worker waits for its launcher to set up MLflow
_DEAD_STATES = ("KILLED", "FAILED")


# --------------------------------------------------------------------------- storage/queue --


def storage_url(storage: str | None, tracking_uri: str) -> str:
    """The storage to use: the given URL/path, or ``optuna.journal`` beside a sqlite database
    (in the working directory otherwise)."""
    if storage:
        return storage
    path = tracking._sqlite_path(tracking_uri)
    folder = path.resolve().parent if path is not None else Path.cwd()
    return str(folder / "optuna.journal")


_STORAGES: dict[str, Any] = {}  # one open storage per resolved URL and process


def _open_storage(url: str):
    """The Optuna storage at ``url`` (a journal file path or an RDB URL), opened once per
    process: the launcher polls it every second."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the library reports, never prints
    key = url if "://" in url else str(Path(url).resolve())
    if key in _STORAGES:
        return _STORAGES[key]
    if "://" not in url:
        path = Path(url)
        if not path.resolve().parent.is_dir():
            raise StorageError(
                f"Optuna journal {url}: folder {path.resolve().parent} does not exist; create it"
            )
        store = JournalStorage(JournalFileBackend(key))
    else:
        try:
            store = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as error:  # sqlalchemy errors carry many lines: keep the first
            text = str(error).strip()
            first = text.splitlines()[0] if text else type(error).__name__
            raise StorageError(
                f"cannot open the Optuna storage {url} ({first}); check the URL and that the "
                "database server is running"
            ) from None
    _STORAGES[key] = store
    return store


def _study_names(config: SweepConfig, roles: Sequence[str]) -> list[str]:
    names = []
    if "proxy" in roles:
        if config.ladder is not None or config.isoflop is not None:
            names.append(f"{config.name}/proxy")
        names += list(tune_studies(config))
    if "target" in roles and config.target is not None:
        names.append(f"{config.name}/target")
    return names


def _load_study(storage, name: str, *, create: bool = False, seed: int | None = None):
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=3)
    if create:
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler, load_if_exists=True)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def _roles(roles: Iterable[str] | None) -> tuple[str, ...]:
    roles = tuple(roles) if roles is not None else ROLES
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ConfigError(f"roles = {unknown}: unknown role; use 'proxy' and/or 'target'")
    return roles


def _live(attrs: dict[str, Any]) -> bool:
    """Whether the worker that owns a trial (by its user attrs) is still alive."""
    import psutil

    if attrs.get("host") == socket.gethostname() and "pid" in attrs:
        try:
            started = psutil.Process(int(attrs["pid"])).create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return False
        return abs(started - float(attrs.get("pid_start", started))) < 1.0
    return time.time() - float(attrs.get("heartbeat", 0)) < STALE_S


def _enqueue(config: SweepConfig, storage, roles: Sequence[str]) -> int:
    """Create the studies and enqueue what is not there yet; return how many were enqueued."""
    config_json = config.model_dump_json()
    count = 0
    specs = {role: [s for s in expand(config) if s.role == role] for role in ROLES}
    for name in _study_names(config, roles):
        study = _load_study(storage, name, create=True)
        if study.user_attrs.get("config") != config_json:
            study.set_user_attr("config", config_json)
        trials = study.get_trials(deepcopy=False)
        if "/tune/" in name:
            live = [t for t in trials if t.user_attrs.get("tune") and not _superseded(t)]
            for _ in range(config.tune.trials - len(live)):
                study.enqueue_trial({}, user_attrs={"tune": name})
                count += 1
            continue
        known = {t.user_attrs.get("run_key") for t in trials}
        role = name.rsplit("/", 1)[1]
        for spec in specs[role]:
            if spec.run_key not in known:
                attrs = {"run_key": spec.run_key, "name": spec.name, "spec": spec.model_dump_json()}
                study.enqueue_trial({}, user_attrs=attrs)
                count += 1
    return count


def _mark_ready(config: SweepConfig, storage, roles: Sequence[str]) -> None:
    """Tell workers that the MLflow database and experiment exist (the launcher made them)."""
    for name in _study_names(config, roles):
        study = _load_study(storage, name)
        if not study.user_attrs.get("mlflow_ready"):
            study.set_user_attr("mlflow_ready", True)


def _wait_ready(study, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until the launcher has set up MLflow: a fresh sqlite database initialised by
    several processes at once gets corrupted (notes/mlflow-optuna.md)."""
    deadline = time.time() + timeout
    while not study.user_attrs.get("mlflow_ready"):
        if time.time() > deadline:
            raise StorageError(
                f"study {study.study_name}: the launcher has not set up MLflow after "
                f"{timeout:.0f} s; start the sweep with 'scaling sweep run FILE'"
            )
        time.sleep(0.2)


def _superseded(trial) -> bool:
    """A trial that only records an empty claim or a reaped attempt (its work was requeued).

    A reaper marks a trial ``requeued`` before failing it; when the owner completes the trial
    in between, the failing is refused and the completed trial stands, mark or not.
    """
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return False
    return bool(trial.user_attrs.get("empty") or trial.user_attrs.get("requeued"))


def reap(config: SweepConfig, *, storage: str | None = None, tracking_uri: str = tracking.DEFAULT_TRACKING_URI,
         roles: Iterable[str] | None = None) -> list[str]:  # fmt: skip
    """Fail the RUNNING trials whose worker is dead, mark their MLflow runs KILLED and
    re-enqueue their RunSpecs; then end any RUNNING MLflow run of this sweep whose owner
    process on this host is gone. Return the names of the requeued runs."""
    import optuna
    from optuna.trial import TrialState

    store = _open_storage(storage_url(storage, tracking_uri))
    requeued = []
    for name in _study_names(config, _roles(roles)):
        try:
            study = _load_study(store, name)
        except KeyError:
            continue
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = trial.user_attrs
            if "pid" not in attrs and time.time() - trial.datetime_start.timestamp() < STALE_S:
                continue  # just claimed: owner attrs are on their way
            if "pid" in attrs and _live(attrs):
                continue
            store.set_trial_user_attr(trial._trial_id, "requeued", True)
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # another reaper (or the owner) got there first
            run_id = attrs.get("mlflow_run_id")
            if run_id:
                _kill_run(run_id, tracking_uri, "worker died (reaped)")
            keep = {k: v for k, v in attrs.items() if k in ("run_key", "name", "spec", "tune", "mlflow_run_id")}
            if "spec" in keep or "tune" in keep:
                study.enqueue_trial(dict(trial.params), user_attrs=keep)
                requeued.append(attrs.get("name", f"{name}#{trial.number}"))
    host = socket.gethostname()
    try:
        runs = tracking.find_runs(config.name, tracking_uri=tracking_uri, status="RUNNING")
    except tracking.TrackingError:
        runs = []
    for run in runs:
        tags = run["tags"]
        owner = {"host": tags.get(tracking.TAG_HOST), "pid": tags.get(tracking.TAG_PID)}
        if owner["host"] == host and owner["pid"] and not _pid_alive(int(owner["pid"])):
            _kill_run(run["run_id"], tracking_uri, "worker died (reaped)")
    return requeued


def _pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_run(run_id: str, tracking_uri: str, reason: str) -> None:
    runs_status = tracking.run_status(run_id, tracking_uri=tracking_uri)
    if runs_status == "RUNNING":
        tracking.terminate_run(run_id, "KILLED", tracking_uri=tracking_uri, reason=reason)


# --------------------------------------------------------------------------------- worker --


class _Heartbeat(threading.Thread):
    """Refreshes the ``heartbeat`` user attr of the trial being trained."""

    def __init__(self, storage, trial_id: int) -> None:
        super().__init__(daemon=True)
        self.storage, self.trial_id, self.stop = storage, trial_id, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # the trial may have been told meanwhile; the next claim beats
                return


def _claim(study):
    """Pop one WAITING trial, or None when the queue is empty."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return None
    trial = study.ask()
    attrs = trial.user_attrs
    import psutil

    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "pid_start": psutil.Process().create_time(), "heartbeat": time.time()}  # fmt: skip
    for key, value in owner.items():
        trial.set_user_attr(key, value)
    if "spec" not in attrs and "tune" not in attrs:  # another worker emptied the queue first
        trial.set_user_attr("empty", True)
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


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
    from optuna.trial import TrialState

    attrs = trial.user_attrs
    if "tune" in attrs:
        spec = _tune_spec(trial, config, tune_studies(config)[attrs["tune"]])
        for key, value in {"spec": spec.model_dump_json(), "run_key": spec.run_key, "name": spec.name}.items():
            trial.set_user_attr(key, value)
    else:
        spec = RunSpec.model_validate_json(attrs["spec"])
    runs = tracking.find_runs(spec.sweep, tracking_uri=tracking_uri, run_key=spec.run_key)
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
    resume = next((run["run_id"] for run in runs if run["status"] in (*_DEAD_STATES, "RUNNING")), None)
    params = spec.flat_params()
    params["model.vocab_size"] = model_vocab_size(spec.model, spec.data)
    tags = {tracking.TAG_CONFIG_HASH: config.config_hash}
    if "tune" in attrs:
        tags[tracking.TAG_TUNE] = attrs["tune"].rsplit("/", 1)[1]
    heartbeat = _Heartbeat(storage, trial._trial_id)
    heartbeat.start()
    try:
        with tracking.RunLogger(spec, tracking_uri=tracking_uri, run_id=resume, params=params, tags=tags) as run:
            trial.set_user_attr("mlflow_run_id", run.run_id)
            checkpoint_dir = Path("checkpoints") / spec.sweep / spec.run_key
            try:
                result = _train(spec, log=run.log, checkpoint_dir=checkpoint_dir)
            except (KeyboardInterrupt, SystemExit):
                trial.set_user_attr("requeued", True)
                study.tell(trial, state=TrialState.FAIL)
                keep = {k: v for k, v in trial.user_attrs.items() if k in ("run_key", "name", "spec", "tune", "mlflow_run_id")}
                study.enqueue_trial(dict(trial.params), user_attrs=keep)
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
    finally:
        heartbeat.stop.set()


def _owner_alive(tags: dict[str, str]) -> bool:
    if tags.get(tracking.TAG_HOST) != socket.gethostname() or not tags.get(tracking.TAG_PID):
        return False  # a remote owner's liveness is the reaper's business (heartbeats)
    return int(tags[tracking.TAG_PID]) != os.getpid() and _pid_alive(int(tags[tracking.TAG_PID]))


def _stored_config(store, names: list[str]) -> SweepConfig | None:
    import optuna

    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=store)
        except KeyError:
            continue
        text = study.user_attrs.get("config")
        if text:
            return SweepConfig.model_validate_json(text)
    return None


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
    roles = _roles(roles)
    tracking.check_tracking(tracking_uri)
    store = _open_storage(storage_url(storage, tracking_uri))
    names = _study_names(config, roles)
    config = _stored_config(store, names) or config
    if threads:
        from scaling.training.hardware import limit_threads

        limit_threads(threads)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    counts = {"trained": 0, "reused": 0, "failed": 0, "duplicate": 0}
    studies = []
    for name in names:
        try:
            studies.append(_load_study(store, name, seed=None))
        except KeyError:
            raise StorageError(
                f"no study {name} in {storage_url(storage, tracking_uri)}; start the sweep "
                "with 'scaling sweep run FILE' first"
            ) from None
    if studies:
        _wait_ready(studies[0])
    done = 0
    while max_trials is None or done < max_trials:
        for study in studies:
            trial = _claim(study)
            if trial is not None:
                counts[_work_one(study, trial, config, tracking_uri, store)] += 1
                done += 1
                break
        else:
            return counts
    return counts


# ------------------------------------------------------------------------- status/launcher --


def status(
    sweep: str | Path | SweepConfig, *, storage: str | None = None,
    tracking_uri: str = tracking.DEFAULT_TRACKING_URI, roles: Iterable[str] | None = None,
    quick: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per run of the sweep (the latest attempt of each): name, role, state, loss,
    flops_exact, mlflow_run_id, worker. States: WAITING, RUNNING, COMPLETE, FAIL."""
    from optuna.trial import TrialState

    config = sweep if isinstance(sweep, SweepConfig) else load_sweep(sweep, quick=quick)
    store = _open_storage(storage_url(storage, tracking_uri))
    rows = []
    for name in _study_names(config, _roles(roles)):
        try:
            study = _load_study(store, name)
        except KeyError:
            continue
        for trial in study.get_trials(deepcopy=False):
            attrs = trial.user_attrs
            if _superseded(trial) and trial.state != TrialState.RUNNING:
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
            study = _load_study(store, name)
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
    roles = _roles(roles)
    url = storage_url(storage, tracking_uri)
    tracking.check_tracking(tracking_uri)
    store = _open_storage(url)
    enqueued = _enqueue(config, store, roles)
    rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    slots = [{"CUDA_VISIBLE_DEVICES": str(d)} for d in devices] if devices else [{} for _ in range(max(1, workers))]
    if threads is None and not devices:
        threads = max(1, _cores() // len(slots))
    log_dir = Path("checkpoints") / config.name / "logs"
    processes: list[subprocess.Popen] = []
    starts = 0
    max_starts = 4 * len(slots)  # first wave plus restarts after worker deaths

    def top_up() -> None:
        nonlocal starts
        alive = [process for process in processes if process.poll() is None]
        log_dir.mkdir(parents=True, exist_ok=True)
        for env in slots[len(alive) :]:
            log_path = log_dir / f"worker-{starts}.log"
            processes.append(_spawn(config, url, tracking_uri, roles, threads, env, log_path))
            starts += 1

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # SIGTERM must run the cleanup below, which stops the workers it started
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if any(row["state"] == "WAITING" for row in rows):
            top_up()  # workers import torch while MLflow is set up; they wait for the flag
        tracking.setup_experiment(config.name, tracking_uri=tracking_uri)
        _mark_ready(config, store, roles)
        requeued = reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
        rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
        spent0 = _summarise(rows, started, 0)["flops_spent"]
        last_reap = time.time()
        while any(row["state"] in ("WAITING", "RUNNING") for row in rows):
            alive = [process for process in processes if process.poll() is None]
            waiting = any(row["state"] == "WAITING" for row in rows)
            if waiting and len(alive) < len(slots):
                if starts >= max_starts:
                    break  # workers keep dying: leave the rest queued for a later run
                top_up()
            if progress is not None:
                progress(_summarise(rows, started, spent0))
            time.sleep(poll_s)
            if not alive or time.time() - last_reap > 5 * poll_s:
                requeued += reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
                last_reap = time.time()
            rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reap(config, storage=url, tracking_uri=tracking_uri, roles=roles)
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    _tag_best(config, store, tracking_uri)
    rows = status(config, storage=url, tracking_uri=tracking_uri, roles=roles)
    summary = _summarise(rows, started, spent0)
    if progress is not None:
        progress(summary)
    return {**summary, "enqueued": enqueued, "requeued": requeued, "rows": rows, "wall_s": time.time() - started, "workers_started": starts}


def _exit_on_sigterm(signum, frame) -> None:
    sys.exit(143)


def _spawn(config, url, tracking_uri, roles, threads, env, log_path) -> subprocess.Popen:
    command = [sys.executable, "-m", "scaling.sweeps.queue", config.name, "--storage", url,
               "--tracking-uri", tracking_uri, "--roles", ",".join(roles)]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    finally:
        log.close()


def _main(argv: list[str] | None = None) -> int:
    """Worker process entry (``python -m scaling.sweeps.queue NAME --storage URL ...``) used by
    :func:`run_sweep`: the sweep's config is read from the storage."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scaling.sweeps.queue")
    parser.add_argument("name")
    parser.add_argument("--storage", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--roles", default="proxy,target")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    store = _open_storage(args.storage)
    roles = tuple(args.roles.split(","))
    names = [s.study_name for s in _all_studies(store) if s.study_name.startswith(f"{args.name}/")]
    config = _stored_config(store, names)
    if config is None:
        raise StorageError(f"no sweep {args.name} in {args.storage}; start it with 'scaling sweep run'")
    worker(config, storage=args.storage, tracking_uri=args.tracking_uri, roles=roles, threads=args.threads)
    return 0


def _all_studies(store):
    import optuna

    return optuna.get_all_study_summaries(store, include_best_trial=False)


if __name__ == "__main__":
    sys.exit(_main())
