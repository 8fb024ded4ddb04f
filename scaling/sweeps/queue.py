"""The run queue: a sweep's RunSpecs as Optuna trials, claimed, heartbeated, reaped, re-queued.

The plan is pure (:func:`scaling.sweeps.planning.expand`); the queue is an Optuna study per
role family; the launcher and the workers that drain it are :mod:`scaling.sweeps.workers`;
every run is an MLflow run (through :mod:`scaling.sweeps.tracking`). The exactly-once pattern of
docs/architecture.md ("Exactly once: the queue protocol"), measured to hold under SIGKILL:

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
(PostgreSQL) for many machines. Optuna is imported here and, for trial states, in
:mod:`scaling.sweeps.workers`; nowhere else.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from scaling.config.sweep import SweepConfig
from scaling.errors import ConfigError, StorageError
from scaling.sweeps import tracking
from scaling.sweeps.planning import (
    expand,
    tune_studies,
)

__all__ = [
    "ROLES",
    "storage_url",
    "open_storage",
    "study_names",
    "load_study",
    "check_roles",
    "enqueue",
    "mark_ready",
    "wait_ready",
    "claim",
    "Heartbeat",
    "requeue",
    "reap",
    "superseded",
    "stored_config",
    "all_studies",
]

ROLES = ("proxy", "target")
HEARTBEAT_S = 10.0  # how often a worker refreshes its trial's heartbeat
STALE_S = 120.0  # a trial owned by another host is dead after this long without a heartbeat
READY_TIMEOUT_S = 600.0  # how long a worker waits for its launcher to set up MLflow
DEAD_STATES = ("KILLED", "FAILED")


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


def open_storage(url: str):
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


def study_names(config: SweepConfig, roles: Sequence[str]) -> list[str]:
    names = []
    if "proxy" in roles:
        if config.ladder is not None or config.isoflop is not None:
            names.append(f"{config.name}/proxy")
        names += list(tune_studies(config))
    if "target" in roles and config.target is not None:
        names.append(f"{config.name}/target")
    return names


def load_study(storage, name: str, *, create: bool = False, seed: int | None = None):
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=3)
    if create:
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler, load_if_exists=True)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


def check_roles(roles: Iterable[str] | None) -> tuple[str, ...]:
    roles = tuple(roles) if roles is not None else ROLES
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ConfigError(f"roles = {unknown}: unknown role; use 'proxy' and/or 'target'")
    return roles


def owner_live(attrs: dict[str, Any]) -> bool:
    """Whether the worker that owns a trial (by its user attrs) is still alive."""
    import psutil

    if attrs.get("host") == socket.gethostname() and "pid" in attrs:
        try:
            started = psutil.Process(int(attrs["pid"])).create_time()
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return False
        return abs(started - float(attrs.get("pid_start", started))) < 1.0
    return time.time() - float(attrs.get("heartbeat", 0)) < STALE_S


def enqueue(config: SweepConfig, storage, roles: Sequence[str]) -> int:
    """Create the studies and enqueue what is not there yet; return how many were enqueued."""
    config_json = config.model_dump_json()
    count = 0
    specs = {role: [s for s in expand(config) if s.role == role] for role in ROLES}
    for name in study_names(config, roles):
        study = load_study(storage, name, create=True)
        if study.user_attrs.get("config") != config_json:
            study.set_user_attr("config", config_json)
        trials = study.get_trials(deepcopy=False)
        if "/tune/" in name:
            live = [t for t in trials if t.user_attrs.get("tune") and not superseded(t)]
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


def mark_ready(config: SweepConfig, storage, roles: Sequence[str]) -> None:
    """Tell workers that the MLflow database and experiment exist (the launcher made them)."""
    for name in study_names(config, roles):
        study = load_study(storage, name)
        if not study.user_attrs.get("mlflow_ready"):
            study.set_user_attr("mlflow_ready", True)


def wait_ready(study, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until the launcher has set up MLflow: a fresh sqlite database initialised by
    several processes at once gets corrupted (docs/architecture.md, "Measured MLflow and Optuna facts")."""
    deadline = time.time() + timeout
    while not study.user_attrs.get("mlflow_ready"):
        if time.time() > deadline:
            raise StorageError(
                f"study {study.study_name}: the launcher has not set up MLflow after "
                f"{timeout:.0f} s; start the sweep with 'scaling sweep run FILE'"
            )
        time.sleep(0.2)


def superseded(trial) -> bool:
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
    from optuna.trial import TrialState

    store = open_storage(storage_url(storage, tracking_uri))
    requeued = []
    for name in study_names(config, check_roles(roles)):
        try:
            study = load_study(store, name)
        except KeyError:
            continue
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = trial.user_attrs
            if "pid" not in attrs and time.time() - trial.datetime_start.timestamp() < STALE_S:
                continue  # just claimed: owner attrs are on their way
            if "pid" in attrs and owner_live(attrs):
                continue
            run_id = attrs.get("mlflow_run_id")
            kill = (lambda run_id=run_id: kill_run(run_id, tracking_uri, "worker died (reaped)")) if run_id else None
            if requeue(store, study, trial, before_enqueue=kill):
                requeued.append(attrs.get("name", f"{name}#{trial.number}"))
    host = socket.gethostname()
    try:
        runs = tracking.find_runs(config.name, tracking_uri=tracking_uri, status="RUNNING")
    except tracking.TrackingError:
        runs = []
    for run in runs:
        tags = run["tags"]
        owner = {"host": tags.get(tracking.TAG_HOST), "pid": tags.get(tracking.TAG_PID)}
        if owner["host"] == host and owner["pid"] and not pid_alive(int(owner["pid"])):
            kill_run(run["run_id"], tracking_uri, "worker died (reaped)")
    return requeued


# What a re-queued trial carries over: the run it is, and the MLflow run it resumes into.
_REQUEUE_ATTRS = ("run_key", "name", "spec", "tune", "mlflow_run_id")


def requeue(store, study, trial, *, before_enqueue=None) -> bool:
    """The one requeue path: fail a RUNNING trial and enqueue its run again, to resume into
    the same MLflow run from its checkpoint. ``before_enqueue`` runs once the trial is failed
    and before anyone can claim the new one (the reaper ends the dead owner's MLflow run
    there). False when another process ended the trial first, or it carries no run."""
    import optuna
    from optuna.trial import TrialState

    store.set_trial_user_attr(trial._trial_id, "requeued", True)
    try:
        study.tell(trial.number, state=TrialState.FAIL)
    except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False  # another reaper (or the owner) got there first
    if before_enqueue is not None:
        before_enqueue()
    keep = {k: v for k, v in trial.user_attrs.items() if k in _REQUEUE_ATTRS}
    if "spec" not in keep and "tune" not in keep:
        return False
    study.enqueue_trial(dict(trial.params), user_attrs=keep)
    return True


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_run(run_id: str, tracking_uri: str, reason: str) -> None:
    runs_status = tracking.run_status(run_id, tracking_uri=tracking_uri)
    if runs_status == "RUNNING":
        tracking.terminate_run(run_id, "KILLED", tracking_uri=tracking_uri, reason=reason)


# --------------------------------------------------------------------------------- worker --


class Heartbeat(threading.Thread):
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


def claim(study):
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


def stored_config(store, names: list[str]) -> SweepConfig | None:
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


# ------------------------------------------------------------------------- status/launcher --


def all_studies(store):
    import optuna

    return optuna.get_all_study_summaries(store, include_best_trial=False)

