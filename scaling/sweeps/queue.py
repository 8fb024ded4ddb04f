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
    ladder_branches,
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
    "give_up",
    "retry_failed",
    "reap",
    "superseded",
    "latest_attempts",
    "retry_history",
    "diverged",
    "normalise_storage_url",
    "stored_config",
    "all_studies",
    "enqueue_branch",
    "branch_attrs",
    "tune_pruner",
    "seed_sampler",
    "pruned",
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
    path = tracking.sqlite_path(tracking_uri)
    folder = path.resolve().parent if path is not None else Path.cwd()
    return str(folder / "optuna.journal")


_STORAGES: dict[str, Any] = {}  # one open storage per resolved URL and process

# SQLAlchemy's module of each PostgreSQL driver, in the order they are preferred.
POSTGRES_DRIVERS = {"psycopg2": "psycopg2", "psycopg": "psycopg"}


def installed_postgres_drivers() -> tuple[str, ...]:
    """The PostgreSQL drivers SQLAlchemy could use here, preferred first."""
    import importlib.util

    return tuple(name for name, module in POSTGRES_DRIVERS.items() if importlib.util.find_spec(module))


def normalise_storage_url(url: str, drivers: Sequence[str] | None = None) -> str:
    """``url`` with a bare ``postgresql://`` (or ``postgres://``) bound to an installed driver.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, while the project installs
    psycopg2 (``scaling[postgres]``): the URL as README and ``--help`` write it would fail with
    a message blaming the URL. An explicit ``postgresql+DRIVER://`` is left as it is.

    Parameters
    ----------
    url : str
        An Optuna storage URL or journal path.
    drivers : sequence of str, optional
        The installed drivers, preferred first (default: :func:`installed_postgres_drivers`).

    Raises
    ------
    StorageError
        For a PostgreSQL URL when neither psycopg2 nor psycopg is installed.

    Examples
    --------
    >>> normalise_storage_url("postgresql://user@db/optuna", drivers=("psycopg2",))
    'postgresql+psycopg2://user@db/optuna'
    >>> normalise_storage_url("postgresql+psycopg://user@db/optuna", drivers=("psycopg2",))
    'postgresql+psycopg://user@db/optuna'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    drivers = installed_postgres_drivers() if drivers is None else tuple(drivers)
    if not drivers:
        raise StorageError(
            f"cannot open the Optuna storage {url}: no PostgreSQL driver is installed; "
            "pip install 'scaling[postgres]' (psycopg2-binary) or psycopg"
        )
    return f"postgresql+{drivers[0]}://{rest}"


def open_storage(url: str):
    """The Optuna storage at ``url`` (a journal file path or an RDB URL), opened once per
    process: the launcher polls it every second. A bare ``postgresql://`` takes the installed
    driver (:func:`normalise_storage_url`)."""
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
            normalised = normalise_storage_url(url)
            engine = {"pool_pre_ping": True}
            if normalised.startswith("postgresql+"):  # an unreachable host fails, never hangs
                engine["connect_args"] = {"connect_timeout": 10}
            store = optuna.storages.RDBStorage(normalised, engine_kwargs=engine)
        except StorageError:
            raise
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


def load_study(storage, name: str, *, create: bool = False, seed: int | None = None, pruner=None):
    """The Optuna study ``name`` (created with ``create``), sampled by TPE and pruned by
    ``pruner`` (a study's pruner lives in the process, not in the storage: every worker passes
    the sweep's, :func:`tune_pruner`)."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=3)
    if create:
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                   pruner=pruner, load_if_exists=True)  # fmt: skip
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def seed_sampler(study, seed: int) -> None:
    """Give ``study`` a TPE sampler seeded with ``seed`` (as :func:`load_study` builds it): a
    worker seeds it with ``tune.seed`` + the trial's number before sampling that trial, so a
    sweep's trials are reproducible and two workers never share a random stream."""
    import optuna

    study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=3)


def tune_pruner(config: SweepConfig, steps: int):
    """The Optuna pruner of the sweep's tune studies (``tune.pruner``) for trials of about
    ``steps`` optimizer steps, or None.

    - ``median``: ``MedianPruner(n_startup_trials=tune.prune_startup,
      n_warmup_steps=prune_after·steps)``: a trial whose eval loss is worse than the median of
      the earlier trials at the same step stops there.
    - ``halving``: ``SuccessiveHalvingPruner(min_resource=prune_after·steps,
      reduction_factor=3)``: at rungs of min_resource·3^k steps, only the best third go on.
    """
    import optuna

    tune = config.tune
    if tune is None or tune.pruner == "none":
        return None
    first = max(1, int(tune.prune_after * steps))
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tune.prune_startup, n_warmup_steps=first)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)


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


def branch_attrs(branch) -> dict[str, Any]:
    """The user attrs of a WSD branch's trial (a :class:`~scaling.sweeps.planning.PlannedBranch`):
    its RunSpec, the stable run it resumes from and the step."""
    spec = branch.spec
    return {"run_key": spec.run_key, "name": spec.name, "spec": spec.model_dump_json(),
            "branch_of": branch.parent.name, "branch_step": branch.step}


def enqueue_branch(study, attrs: dict[str, Any]) -> bool:
    """Enqueue a branch trial (:func:`branch_attrs`) unless its run key is in the study
    already; True when it was enqueued. The worker training the stable run calls it as the
    run passes each branch point; the launcher, for a stable run that is done."""
    if any(t.user_attrs.get("run_key") == attrs["run_key"] for t in study.get_trials(deepcopy=False)):
        return False
    study.enqueue_trial({}, user_attrs=attrs)
    return True


def enqueue(config: SweepConfig, storage, roles: Sequence[str]) -> int:
    """Create the studies and enqueue what is not there yet; return how many were enqueued.

    A WSD ladder's branches (:func:`scaling.sweeps.planning.ladder_branches`) wait for their
    stable run: its trial carries them (user attr ``branches``) and its worker enqueues each
    one once its checkpoint exists. Here a branch is enqueued only when its stable run's
    latest attempt is already complete (a budget added to a finished ladder)."""
    from optuna.trial import TrialState

    config_json = config.model_dump_json()
    count = 0
    planned = expand(config)
    branches = ladder_branches(config, planned)
    children: dict[str, list[dict[str, Any]]] = {}
    for branch in branches.values():
        children.setdefault(branch.parent.run_key, []).append(branch_attrs(branch))
    specs = {role: [s for s in planned if s.role == role] for role in ROLES}
    for name in study_names(config, roles):
        study = load_study(storage, name, create=True)
        if study.user_attrs.get("config") != config_json:
            study.set_user_attr("config", config_json)
        trials = study.get_trials(deepcopy=False)
        if "/tune/" in name:
            live = [t for t in latest_attempts(trials) if t.user_attrs.get("tune")]
            for _ in range(config.tune.trials - len(live)):
                study.enqueue_trial({}, user_attrs={"tune": name})
                count += 1
            continue
        known = {t.user_attrs.get("run_key") for t in trials}
        done = {t.user_attrs.get("run_key") for t in latest_attempts(trials)
                if t.state == TrialState.COMPLETE}  # fmt: skip
        role = name.rsplit("/", 1)[1]
        for spec in specs[role]:
            if spec.run_key in branches:
                parent = branches[spec.run_key].parent.run_key
                if spec.run_key not in known and parent in done:
                    study.enqueue_trial({}, user_attrs=branch_attrs(branches[spec.run_key]))
                    count += 1
                continue
            if spec.run_key not in known:
                attrs = {"run_key": spec.run_key, "name": spec.name, "spec": spec.model_dump_json()}
                if spec.run_key in children:
                    attrs["branches"] = children[spec.run_key]
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
    """A trial that only records an empty claim, a duplicate claim or a reaped attempt (its
    work was requeued).

    A reaper marks a trial ``requeued`` before failing it; when the owner completes the trial
    in between, the failing is refused and the completed trial stands, mark or not.
    """
    from optuna.trial import TrialState

    if trial.state == TrialState.COMPLETE:
        return False
    return bool(trial.user_attrs.get("empty") or trial.user_attrs.get("requeued")
                or trial.user_attrs.get("duplicate"))  # fmt: skip


def retry_history(trial) -> list[int]:
    """The numbers of the earlier attempts this trial retries, oldest first (Optuna's
    ``RetryHeartbeatStaleTrialCallback.retry_history``)."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return list(RetryHeartbeatStaleTrialCallback.retry_history(trial))


def latest_attempts(trials: Sequence[Any]) -> list[Any]:
    """The trials that stand for their runs now: superseded claims (:func:`superseded`) and
    attempts that a later trial retries are left out, unless still RUNNING."""
    from optuna.trial import TrialState

    retried = {number for trial in trials for number in retry_history(trial)}
    return [
        trial for trial in trials
        if trial.state == TrialState.RUNNING or not (superseded(trial) or trial.number in retried)
    ]  # fmt: skip


def pruned(trial) -> bool:
    """A tune trial its pruner stopped early: a result, never retried."""
    from optuna.trial import TrialState

    return trial.state == TrialState.PRUNED


def diverged(trial) -> bool:
    """A trial that failed because its run diverged: a result, never retried."""
    return str(trial.user_attrs.get("failure", "")).startswith("diverged")


def reap(config: SweepConfig, *, storage: str | None = None, tracking_uri: str = tracking.DEFAULT_TRACKING_URI,
         roles: Iterable[str] | None = None) -> list[str]:  # fmt: skip
    """Fail the RUNNING trials whose worker is dead and re-enqueue their RunSpecs, marking
    their MLflow runs KILLED, while they have retries left (``execution.max_retries``); past
    that, fail them for good with the reason. Then end any RUNNING MLflow run of this sweep
    whose owner process on this host is gone. Return the names of the requeued runs."""
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
            if _retry_dead(store, study, trial, config.execution.max_retries, tracking_uri):
                requeued.append(attrs.get("name", f"{name}#{trial.number}"))
    _end_orphaned_runs(config, tracking_uri)
    return requeued


def _retry_dead(store, study, trial, max_retries: int, tracking_uri: str) -> bool:
    """Requeue the trial of a dead worker (True), or fail it for good once its retries are
    spent (False, as when another process ended it first)."""
    attrs = trial.user_attrs
    run_id = attrs.get("mlflow_run_id")
    retries = int(attrs.get("retries", 0))
    owner = f"{attrs.get('host', '?')}:{attrs.get('pid', '?')}"
    if retries < max_retries:
        reason = f"worker {owner} died (reaped); retry {retries + 1} of {max_retries}"
        kill = (lambda: kill_run(run_id, tracking_uri, reason)) if run_id else None
        return requeue(store, study, trial, before_enqueue=kill, retries=retries + 1)
    reason = (f"worker {owner} died (reaped) after {retries} retries (max_retries = {max_retries}); "
              "check the worker logs, then 'scaling sweep retry FILE'")  # fmt: skip
    if give_up(store, study, trial, reason) and run_id:
        kill_run(run_id, tracking_uri, reason, status="FAILED")
    return False


def _end_orphaned_runs(config: SweepConfig, tracking_uri: str) -> None:
    """End KILLED every RUNNING MLflow run of the sweep whose owner on this host is gone."""
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


# What a re-queued trial carries over: the run it is, the MLflow run it resumes into, and how
# many times it was retried automatically since the last ``sweep retry``.
_REQUEUE_ATTRS = ("run_key", "name", "spec", "tune", "mlflow_run_id", "retries", "branches",
                  "branch_of", "branch_step")


def _recreate(study, frozen, retries: int, **attrs: Any) -> None:
    """Enqueue the run of a finished attempt again through Optuna's
    ``RetryHeartbeatStaleTrialCallback``, which records the attempt in the new trial's retry
    history (that is how :func:`latest_attempts` knows it is superseded). ``attrs`` replace
    the user attrs carried over (a fixed sweep's RunSpec)."""
    import copy
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    attempt = copy.deepcopy(frozen)
    kept = {k: v for k, v in frozen.user_attrs.items() if k in _REQUEUE_ATTRS}
    attempt.user_attrs = {**kept, **attrs, "retries": retries}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback()(study, attempt)


def requeue(store, study, trial, *, before_enqueue=None, retries: int | None = None) -> bool:
    """The one requeue path: fail a RUNNING trial and enqueue its run again, to resume into
    the same MLflow run from its checkpoint. ``before_enqueue`` runs once the trial is failed
    and before anyone can claim the new one (the reaper ends the dead owner's MLflow run
    there). ``retries`` is the retry count the new attempt carries (default: this one's, for
    a worker stopped by SIGTERM, which is no failure). False when another process ended the
    trial first, or it carries no run."""
    import optuna
    from optuna.trial import TrialState

    try:  # every worker reaps too: another one may have ended this trial a moment ago
        store.set_trial_user_attr(trial._trial_id, "requeued", True)
        study.tell(trial.number, state=TrialState.FAIL)
    except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False  # another reaper (or the owner) got there first
    if before_enqueue is not None:
        before_enqueue()
    frozen = store.get_trial(trial._trial_id)
    if "spec" not in frozen.user_attrs and "tune" not in frozen.user_attrs:
        return False
    _recreate(study, frozen, int(frozen.user_attrs.get("retries", 0)) if retries is None else retries)
    return True


def give_up(store, study, trial, reason: str) -> bool:
    """Fail a RUNNING trial for good, with ``failure`` = reason (shown by ``sweep status``).
    False when another process ended it first."""
    import optuna
    from optuna.trial import TrialState

    try:
        store.set_trial_user_attr(trial._trial_id, "failure", reason[:1000])
        study.tell(trial.number, state=TrialState.FAIL)
    except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False  # another reaper (or the owner) got there first
    return True


def retry_failed(config: SweepConfig, store, roles: Sequence[str]) -> list[str]:
    """Enqueue again every run of the plan whose latest attempt failed (not diverged: a
    diverged run is a result), with its retries reset and the RunSpec as the sweep file now
    says it (a fix that keeps the run key, such as ``train.device``, takes effect): what
    ``sweep run`` and ``sweep retry`` do after the cause was fixed. Returns the names of the
    re-queued runs."""
    from optuna.trial import TrialState

    specs = expand(config)
    planned = {spec.run_key: spec for spec in specs}
    children: dict[str, list[dict[str, Any]]] = {}
    for branch in ladder_branches(config, specs).values():
        children.setdefault(branch.parent.run_key, []).append(branch_attrs(branch))
    config_json = config.model_dump_json()
    names = []
    for name in study_names(config, roles):
        try:
            study = load_study(store, name)
        except KeyError:
            continue
        failed = [t for t in latest_attempts(study.get_trials(deepcopy=False))
                  if t.state == TrialState.FAIL and not diverged(t)]  # fmt: skip
        for trial in failed:
            attrs = trial.user_attrs
            if "tune" in attrs:
                _recreate(study, trial, 0)
            elif attrs.get("run_key") in planned:
                fixed = {"spec": planned[attrs["run_key"]].model_dump_json()}
                if attrs["run_key"] in children:  # a stable run: its branches as planned now
                    fixed["branches"] = children[attrs["run_key"]]
                _recreate(study, trial, 0, **fixed)
            else:
                continue  # no longer in the sweep file
            names.append(attrs.get("name", f"{name}#{trial.number}"))
        if failed and study.user_attrs.get("config") != config_json:
            study.set_user_attr("config", config_json)  # workers read the fixed sweep
    return names


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_run(run_id: str, tracking_uri: str, reason: str, status: str = "KILLED") -> None:
    """End a RUNNING MLflow run as ``status`` with ``scaling.failure`` = reason; a run found
    KILLED becomes FAILED when ``status`` is FAILED (its retries are spent)."""
    current = tracking.run_status(run_id, tracking_uri=tracking_uri)
    if current == "RUNNING" or (status == "FAILED" and current == "KILLED"):
        tracking.terminate_run(run_id, status, tracking_uri=tracking_uri, reason=reason)


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
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # the GPU a node worker was pinned to
        owner["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
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

