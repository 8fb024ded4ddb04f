"""MLflow, and only here: one experiment per sweep, one run per RunSpec, the run table.

Every MLflow call of the toolkit lives in this module (docs/architecture.md, "MLflow keys"):

- experiment = sweep name; tags ``scaling.sweep``, ``scaling.run_key``, ``scaling.role`` and,
  when a run failed or diverged, ``scaling.failure``;
- params are the dotted config paths of the RunSpec (``model.d_model``, ``train.lr``);
- step metrics (``train/loss``, ``eval/loss``...) are buffered in memory and flushed with
  ``MlflowClient.log_batch`` (0.2 ms/step instead of 3-5 ms for one call per step);
- summary metrics (``final/eval_loss``, ``size/flops``...) are logged once at the end;
- each run's provenance (git commit, versions, device, host, corpus hash) is tagged ``scaling.*``;
- the experiment is tagged for the MLflow UI (training kind, a shared runs-table view);
- a client checks its URI once (``/health`` within 3 s; a missing sqlite file is refused
  unless the database is being set up), and reads can use MLflow's fail-fast HTTP settings,
  with which a client's check also asks the server's REST API for an answer within 3 s.

:func:`runs_frame` turns an experiment into the run table, a pandas DataFrame, so that fitting
never needs MLflow. mlflow is imported inside functions: ``import scaling.sweeps.tracking`` is cheap.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaling.errors import TrackingError
from scaling.table import RUN_TABLE_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from scaling.config.run import RunSpec

__all__ = [
    "DEFAULT_TRACKING_URI",
    "TAG_SWEEP",
    "TAG_RUN_KEY",
    "TAG_ROLE",
    "TAG_FAILURE",
    "TAG_CONFIG_HASH",
    "TAG_CORPUS_HASH",
    "PROVENANCE_COLUMNS",
    "provenance_tags",
    "RUN_COLUMNS",
    "READ_SETTINGS",
    "fail_fast_reads",
    "check_tracking",
    "SWEEP_VIEW_KEY",
    "sweep_view_url",
    "setup_experiment",
    "find_runs",
    "RunLogger",
    "terminate_run",
    "runs_frame",
    "learning_curve",
    "run_params",
    "log_report",
    "log_forecast",
    "latest_forecast",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TAG_SWEEP = "scaling.sweep"
TAG_RUN_KEY = "scaling.run_key"
TAG_ROLE = "scaling.role"
TAG_FAILURE = "scaling.failure"
TAG_HOST = "scaling.host"
TAG_PID = "scaling.pid"
TAG_TUNE = "scaling.tune"
TAG_TUNE_BEST = "scaling.tune_best"
TAG_CONFIG_HASH = "scaling.config_hash"
TAG_WORLD_SIZE = "scaling.world_size"  # processes that trained the run (its latest attempt)
TAG_BRANCH_OF = "scaling.branch_of"  # a WSD branch: the name of the stable run it resumed from
TAG_BRANCH_STEP = "scaling.branch_step"  # ... and the step it branched at
TAG_PRUNED_STEP = "scaling.pruned_step"  # a pruned tune trial: the last step it trained
TAG_PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: the UI nests a branch under its stable run
# MLflow 3's experiment type (training, not GenAI). MLflow 3.17.2's UI does not read it to
# choose the page it opens (the browser's workflow switch does; docs/architecture.md, "MLflow
# keys"), so sweep_view_url names the workflow.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# A view of the runs table stored in the experiment (MLflow's shared views: the experiment tag
# mlflow.sharedViewState.<key>, opened with ?viewStateShareKey=<key>): training runs only (no
# report run), sorted by compute, with columns final loss, N, D and C.
SWEEP_VIEW_KEY = "scaling-sweep"
_SWEEP_VIEW_METRICS = ("final/eval_loss", "size/params", "size/tokens", "size/flops")

# MLflow's own HTTP settings for commands that only read (docs/architecture.md, "Defaults"):
# one retry, no back-off, 4 s per request, so an unreachable server fails in seconds instead
# of MLflow's default 7 retries with back-off (about 4 minutes).
READ_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "4",
}
_HEALTH_TIMEOUT_S = 3.0
# With READ_SETTINGS, a client's first check also calls the REST API once (any HTTP answer will
# do) within _HEALTH_TIMEOUT_S: a server that answers /health but hangs on API calls then fails
# 3 s later, before mlflow is even imported, instead of after the import (2-6 s) and two 4 s
# tries (13-16 s measured for `scaling fit`).
_API_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
_fail_fast = False  # set by fail_fast_reads()
_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file", "databricks")
_checked: set[str] = set()  # tracking URIs this process has already found usable

# Provenance (scaling.training.provenance.run_provenance): run-table column -> tag. The host is
# TAG_HOST, which also names the run's owner; the config hash is TAG_CONFIG_HASH.
PROVENANCE_COLUMNS = {
    key: f"scaling.{key}"
    for key in (
        "git_commit", "git_dirty", "version_scaling", "version_torch", "version_cuda",
        "version_mlflow", "version_optuna", "device", "device_count", "corpus_hash",
    )
}  # fmt: skip
TAG_CORPUS_HASH = PROVENANCE_COLUMNS["corpus_hash"]
_TAG_GIT_COMMIT_UI = "mlflow.source.git.commit"  # the MLflow UI shows this one as the run's version

# The run table of docs/architecture.md, in order; after them come name, tune, tune_best, wall_s and any
# other metric as its own column.
RUN_COLUMNS = list(RUN_TABLE_COLUMNS)  # the run-table contract, in its documented order
_TEXT_COLUMNS = {
    "run_id", "run_key", "sweep", "role", "status", "name", "tune", "config_hash", "host",
    "branch_of", *PROVENANCE_COLUMNS,
}  # fmt: skip
_PARAM_COLUMNS = {
    "n_layer": "model.n_layer",
    "d_model": "model.d_model",
    "n_head": "model.n_head",
    "context": "model.context",
    "vocab_size": "model.vocab_size",
    "lr": "train.lr",
    "batch_tokens": "train.batch_tokens",
    "seed": "train.seed",
}
_METRIC_COLUMNS = {
    "params": "size/params",
    "params_total": "size/params_total",
    "tokens": "size/tokens",
    "flops": "size/flops",
    "flops_exact": "size/flops_exact",
    "loss": "final/eval_loss",
    "bpb": "final/bpb",
}
_MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call


def fail_fast_reads() -> None:
    """Apply :data:`READ_SETTINGS` to this process (a setting the user made is kept).

    The CLI calls it for the commands that only read MLflow (``fit``, ``report``...); training
    keeps MLflow's patient defaults, which ride out a server restart. From now on the first
    client of a tracking server also checks that its REST API answers one request within 3 s
    (as ``/health`` must), so a server that is up but hangs fails in seconds too.
    """
    global _fail_fast
    for key, value in READ_SETTINGS.items():
        os.environ.setdefault(key, value)
    _fail_fast = True


def _client(tracking_uri: str, *, create: bool = False):
    """An ``MlflowClient`` for ``tracking_uri``, once the URI was found usable.

    Unless ``create``, a sqlite URI whose file is missing is refused, so that no read ever
    creates an empty database as a side effect (only :func:`setup_experiment` creates one).
    """
    _check_usable(tracking_uri, create)  # before importing mlflow, which takes seconds
    from mlflow import MlflowClient

    path = sqlite_path(tracking_uri)
    if path is not None:
        # MLflow caches one store per URI string: a relative path would stay bound to the
        # working directory of its first use, so pass the absolute one.
        tracking_uri = "sqlite:///" + str(path.resolve())
    return MlflowClient(tracking_uri=tracking_uri)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def _check_usable(tracking_uri: str, create: bool) -> None:
    """:func:`check_tracking` once per URI and process, and refuse a missing sqlite file.

    Raises
    ------
    TrackingError
        If the server does not answer, the URI is malformed, or (unless ``create``) the
        sqlite database does not exist.
    """
    path = sqlite_path(tracking_uri)
    key = tracking_uri if path is None else str(path.resolve())  # a relative file moves with the cwd
    if key in _checked:
        return
    check_tracking(tracking_uri, timeout=_HEALTH_TIMEOUT_S)
    if _fail_fast and tracking_uri.startswith(("http://", "https://")):
        _check_api(tracking_uri)
    if path is not None and not create and not path.is_file():
        raise TrackingError(
            f"no tracking database at {path.resolve()}; run a sweep first or pass --tracking-uri"
        )
    _checked.add(key)


@contextlib.contextmanager
def _reading(tracking_uri: str):
    """Turn an MLflow failure during a read (a server gone mid-way) into one-line TrackingError."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as error:
        from mlflow.exceptions import MlflowException  # only now: a failed check imports no mlflow

        if not isinstance(error, MlflowException):
            raise
        reason = " ".join(str(error.message if hasattr(error, "message") else error).split())
        raise TrackingError(
            f"cannot read MLflow at {tracking_uri} ({reason[:200]}); check that the server is "
            "up and --tracking-uri"
        ) from None


def _check_api(tracking_uri: str, timeout: float = _HEALTH_TIMEOUT_S) -> None:
    """Raise a one-line TrackingError unless the server's REST API answers one request (a
    one-row experiment search) within ``timeout`` seconds.

    Any HTTP answer counts (an error status too: MLflow's own client reports it); no answer,
    a timeout or a dropped connection does not.
    """
    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + _API_PROBE, timeout=timeout):  # noqa: S310
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"its REST API did not answer within {timeout:g} s, though /health did"
        raise TrackingError(
            f"cannot read MLflow at {tracking_uri} ({reason}); check that the server is up "
            "and --tracking-uri"
        ) from None


def check_tracking(tracking_uri: str, timeout: float = 10.0) -> None:
    """Fail fast, before any training, when the tracking URI cannot work.

    Raises
    ------
    TrackingError
        If the URI has no scheme MLflow reads, a tracking server does not answer
        ``/health`` or a sqlite file's folder is missing.
    """
    scheme = tracking_uri.partition(":")[0].split("+")[0].lower()
    if (scheme not in _SCHEMES or "://" not in tracking_uri) and tracking_uri != "databricks":
        raise TrackingError(
            f"tracking URI {tracking_uri!r} is not one MLflow reads; use sqlite:///mlflow.db "
            "or http://HOST:PORT"
        )
    if scheme == "sqlite" and not tracking_uri.startswith("sqlite:///"):
        raise TrackingError(
            f"tracking URI {tracking_uri!r}: a sqlite URI has three slashes; use "
            "sqlite:///mlflow.db (relative) or sqlite:////abs/path/mlflow.db"
        )
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                ok = response.status == 200
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingError(
                f"cannot reach the MLflow tracking server at {tracking_uri} ({reason}); "
                "start it (mlflow server --host 127.0.0.1) or fix --tracking-uri"
            ) from None
        if not ok:
            raise TrackingError(
                f"the MLflow tracking server at {tracking_uri} is not healthy; check its logs"
            )
        return
    path = sqlite_path(tracking_uri)
    if path is not None and not path.resolve().parent.is_dir():
        raise TrackingError(
            f"tracking URI {tracking_uri}: folder {path.resolve().parent} does not exist; "
            "create it or use sqlite:///mlflow.db"
        )


def setup_experiment(name: str, *, tracking_uri: str = DEFAULT_TRACKING_URI) -> str:
    """Create the tracking database (if new) and the experiment ``name``; return its id.

    Only the launcher calls this: a fresh sqlite database initialised by several processes
    at once gets corrupted (docs/architecture.md, "Measured MLflow and Optuna facts").
    """
    check_tracking(tracking_uri)
    client = _client(tracking_uri, create=True)
    tags = {TAG_SWEEP: name, TAG_EXPERIMENT_KIND: EXPERIMENT_KIND, _view_tag(): _sweep_view_state()}
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        for key, value in tags.items():  # an experiment made by an older version gets them too
            if experiment.tags.get(key) != value:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id
    path = sqlite_path(tracking_uri)
    location = None
    if path is not None:  # artifacts beside the database, wherever the worker's cwd is
        location = (path.resolve().parent / "mlartifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=location, tags=tags)


def _view_tag() -> str:
    return f"mlflow.sharedViewState.{SWEEP_VIEW_KEY}"


def _sweep_view_state() -> str:
    """The runs-table view of a sweep, as the JSON the MLflow UI reads from a shared view."""
    import json

    return json.dumps({
        "searchFilter": f"tags.`{TAG_ROLE}` != 'report'",
        "orderByKey": "metrics.`size/flops`", "orderByAsc": True,
        "startTime": "ALL", "lifecycleFilter": "Active", "modelVersionFilter": "All Runs",
        "datasetsFilter": [], "runsPinned": [], "runsHidden": [], "runsExpanded": {},
        "selectedColumns": [f"metrics.`{key}`" for key in _SWEEP_VIEW_METRICS],
    })  # fmt: skip


def sweep_view_url(experiment: str, *, tracking_uri: str, ui: str | None = None) -> str | None:
    """Where the MLflow UI shows a sweep as a sweep: its training runs, with final loss, N, D and C.

    Parameters
    ----------
    experiment : str
        The sweep name.
    tracking_uri : str
        The tracking URI; a server's URL is also its UI.
    ui : str, optional
        The UI's URL when the tracking URI is a database (``mlflow ui`` serves
        ``http://127.0.0.1:5000`` by default).

    Returns
    -------
    str or None
        The runs page in MLflow's "Model training" workflow with the sweep's shared view, or
        None when there is no UI URL to give or the experiment does not exist.
    """
    base = ui or (tracking_uri if tracking_uri.startswith(("http://", "https://")) else None)
    if base is None:
        return None
    with _reading(tracking_uri):
        found = _client(tracking_uri).get_experiment_by_name(experiment)
    if found is None:
        return None
    return (
        f"{base.rstrip('/')}/#/experiments/{found.experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={SWEEP_VIEW_KEY}"
    )


def _experiment_id(client, experiment: str, tracking_uri: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TrackingError(
            f"no MLflow experiment {experiment!r} at {tracking_uri}; run "
            "'scaling sweep run FILE' first or check --tracking-uri"
        )
    return found.experiment_id


def _search(client, experiment_id: str, filter_string: str = "") -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_runs(
    experiment: str, *, tracking_uri: str = DEFAULT_TRACKING_URI, run_key: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Runs of an experiment as plain dicts (``run_id``, ``status``, ``tags``, ``metrics``),
    newest first, optionally only those with one run key and/or status."""
    clauses = []
    if run_key is not None:
        clauses.append(f"tags.`{TAG_RUN_KEY}` = '{run_key}'")
    if status is not None:
        clauses.append(f"attributes.status = '{status}'")
    with _reading(tracking_uri):
        client = _client(tracking_uri)
        experiment_id = _experiment_id(client, experiment, tracking_uri)
        runs = _search(client, experiment_id, " and ".join(clauses))
    return [
        {
            "run_id": run.info.run_id,
            "status": run.info.status,
            "name": run.info.run_name,
            "start_time": run.info.start_time,
            "tags": dict(run.data.tags),
            "metrics": dict(run.data.metrics),
            "params": dict(run.data.params),
        }
        for run in sorted(runs, key=lambda run: run.info.start_time or 0, reverse=True)
    ]


def terminate_run(run_id: str, status: str, *, tracking_uri: str, reason: str | None = None) -> None:
    """End a run as ``status`` (KILLED, FAILED...), with ``scaling.failure`` = reason if given."""
    client = _client(tracking_uri)
    if reason:
        client.set_tag(run_id, TAG_FAILURE, reason[:5000])
    client.set_terminated(run_id, status=status)


def provenance_tags(spec: RunSpec) -> dict[str, str]:
    """The provenance of a run about to be trained, as MLflow tags.

    Git commit and dirty flag of the working directory (when it is a repository), versions
    of scaling, torch, CUDA, mlflow and optuna, device name and count, host and corpus hash
    (:func:`scaling.training.provenance.run_provenance`), under :data:`PROVENANCE_COLUMNS`.
    """
    from scaling.training.provenance import run_provenance

    found = run_provenance(spec)
    tags = {tag: found[key] for key, tag in PROVENANCE_COLUMNS.items() if key in found}
    tags[TAG_HOST] = found["host"]
    if "git_commit" in found:
        tags[_TAG_GIT_COMMIT_UI] = found["git_commit"]
    return tags


class RunLogger:
    """One MLflow run of one RunSpec, as a context manager.

    Opens a new run (tags, params, the resolved config as ``run_spec.json``) or reopens
    ``run_id`` to resume into it, tagged with its provenance (:func:`provenance_tags`; a
    resumed run gets the new machine's). Step metrics are buffered and flushed in batches. On leaving
    the block the run is FINISHED if :meth:`finish` was called, FAILED (with
    ``scaling.failure``) on an exception, and KILLED on KeyboardInterrupt/SystemExit (the
    worker's SIGTERM handler raises SystemExit), so no run is left RUNNING by a live process.

    Parameters
    ----------
    spec : RunSpec
        The run being trained.
    tracking_uri : str
        Where the experiment ``spec.sweep`` already exists.
    run_id : str, optional
        Reopen this run instead of creating one.
    params : mapping, optional
        Params to log instead of ``spec.flat_params()`` (e.g. with a resolved vocab size).
    tags : mapping, optional
        Extra tags, set on a new run and on a reopened one alike.
    flush_every : int
        Steps buffered before a flush (also flushed every ``flush_seconds``).

    Examples
    --------
    >>> with RunLogger(spec, tracking_uri="sqlite:///mlflow.db") as run:  # doctest: +SKIP
    ...     result = train(spec, log=run.log)
    ...     run.finish(result.summary())
    """

    def __init__(
        self, spec: RunSpec, *, tracking_uri: str = DEFAULT_TRACKING_URI,
        run_id: str | None = None, params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None, flush_every: int = 100,
        flush_seconds: float = 10.0,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.params = dict(params) if params is not None else None
        self.tags = dict(tags or {})
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.resumed = run_id is not None
        self._buffer: list = []
        self._steps_buffered = 0
        self._last_flush = time.monotonic()
        self._ended = False
        self._client = None

    def __enter__(self) -> RunLogger:
        from mlflow.entities import Param, RunTag

        client = self._client = _client(self.tracking_uri)
        spec = self.spec
        owner = {**provenance_tags(spec), TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid())}
        if self.run_id is not None:  # the extra tags describe this attempt too (world size)
            client.update_run(self.run_id, status="RUNNING")
            client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in {**owner, **self.tags}.items()])
            if TAG_FAILURE in client.get_run(self.run_id).data.tags:
                client.delete_tag(self.run_id, TAG_FAILURE)  # a retry: the old reason is past
            return self
        experiment_id = _experiment_id(client, spec.sweep, self.tracking_uri)
        tags = {
            TAG_SWEEP: spec.sweep,
            TAG_RUN_KEY: spec.run_key,
            TAG_ROLE: spec.role,
            **owner,
            **self.tags,
        }
        run = client.create_run(experiment_id, run_name=spec.name, tags=tags)
        self.run_id = run.info.run_id
        params = self.params if self.params is not None else spec.flat_params()
        items = [Param(key, str(value)) for key, value in sorted(params.items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            client.log_batch(self.run_id, params=items[start : start + 100])
        client.log_dict(self.run_id, spec.model_dump(mode="json"), "run_spec.json")
        return self

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Buffer one step's metrics (the ``log`` callback of ``scaling.training.loop.train``)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer.extend(Metric(key, float(value), now, int(step)) for key, value in metrics.items())
        self._steps_buffered += 1
        if (
            "perf/resume_step" in metrics  # an event: on record at once, even if killed again
            or self._steps_buffered >= self.flush_every
            or time.monotonic() - self._last_flush > self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Send the buffered step metrics in as few ``log_batch`` calls as MLflow allows."""
        buffer, self._buffer = self._buffer, []
        for start in range(0, len(buffer), _MAX_METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=buffer[start : start + _MAX_METRICS_PER_BATCH])
        self._steps_buffered = 0
        self._last_flush = time.monotonic()

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set tags on the run now."""
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def hand_over(self) -> None:
        """Flush and leave the run RUNNING to another process that reopens it by id and ends
        it (a sweep worker's torchrun child, ``scaling train --run-id``): leaving the block
        then ends nothing, while :meth:`end` still has the last word."""
        self.flush()
        self._ended = True

    def finish(self, summary: Mapping[str, float]) -> None:
        """Flush, log the summary metrics once, and end the run FINISHED."""
        self._end("FINISHED", summary=summary)

    def fail(self, reason: str, summary: Mapping[str, float] | None = None) -> None:
        """Flush, tag ``scaling.failure`` = reason, and end the run FAILED."""
        self._end("FAILED", summary=summary, reason=reason)

    def end(self, status: str, reason: str) -> None:
        """End the run as ``status`` (KILLED, FAILED) with ``scaling.failure`` = reason, even
        when the block already ended it (a worker's failure policy has the last word)."""
        if not self._ended:
            self._end(status, reason=reason)
            return
        self._client.set_tag(self.run_id, TAG_FAILURE, reason[:5000])
        self._client.set_terminated(self.run_id, status=status)

    def _end(self, status: str, summary=None, reason: str | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        if self._ended:
            return
        self.flush()
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, 0)
            for key, value in (summary or {}).items()
            if value is not None
        ]
        tags = [RunTag(TAG_FAILURE, reason[:5000])] if reason else []
        self._client.log_batch(self.run_id, metrics=metrics, tags=tags)
        self._client.set_terminated(self.run_id, status=status)
        self._ended = True

    def __exit__(self, kind, error, traceback) -> bool:
        if self._ended or self.run_id is None:
            return False
        if kind is None:
            self._end("KILLED", reason="the run ended without a result")
        elif issubclass(kind, (KeyboardInterrupt, SystemExit)):
            self._end("KILLED", reason=f"stopped by {kind.__name__}")
        else:
            self._end("FAILED", reason=f"{kind.__name__}: {error}")
        return False


def _to_frame(rows: list[dict[str, Any]], extra: list[str]):
    import pandas as pd

    labels = ["name", "tune", "tune_best", "config_hash", "wall_s", "host", "branch_of", "branch_step",
              "pruned_step", *PROVENANCE_COLUMNS]
    columns = RUN_COLUMNS + labels + sorted(extra)
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column not in _TEXT_COLUMNS:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("n_layer", "d_model", "n_head", "context", "vocab_size", "batch_tokens", "seed"):
        if frame[column].notna().all():
            frame[column] = frame[column].astype("int64")
    return frame


def runs_frame(
    experiment: str, *, tracking_uri: str = DEFAULT_TRACKING_URI,
    status: str | None = "FINISHED", role: str | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The run table of one sweep (the columns of docs/architecture.md), one row per MLflow run.

    Parameters
    ----------
    experiment : str
        The sweep name (= MLflow experiment).
    tracking_uri : str
        Any URI MLflow accepts.
    status : str or None
        Keep runs in this state (``"FINISHED"`` by default); None keeps all.
    role : str or None
        ``"proxy"`` or ``"target"`` (or ``"report"``); None keeps proxies and targets.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RUN_COLUMNS` (numbers as numeric dtypes), then ``name``, ``tune`` (the
        tuned shape, for tune trials), ``tune_best`` (1.0 for each shape's best trial),
        ``config_hash`` (of the sweep file that launched the run), ``wall_s``, the provenance
        (``host`` and :data:`PROVENANCE_COLUMNS`: ``git_commit``, ``version_torch``, ``device``,
        ``corpus_hash``...; text, None when not logged), and every other metric as its own
        column (``/`` written as ``_``).

    Raises
    ------
    TrackingError
        If the experiment does not exist.

    Examples
    --------
    >>> frame = runs_frame("demo", role="proxy")  # doctest: +SKIP
    >>> frame[["params", "tokens", "flops", "loss"]]  # doctest: +SKIP
    """
    clauses = [f"attributes.status = '{status}'"] if status else []
    if role is not None:
        clauses.append(f"tags.`{TAG_ROLE}` = '{role}'")
    with _reading(tracking_uri):
        client = _client(tracking_uri)
        experiment_id = _experiment_id(client, experiment, tracking_uri)
        runs = _search(client, experiment_id, " and ".join(clauses))
    rows, extra = [], set()
    for run in sorted(runs, key=lambda run: run.info.start_time or 0):
        if role is None and run.data.tags.get(TAG_ROLE) not in ("proxy", "target"):
            continue
        row, others = _run_row(run, experiment)
        rows.append(row)
        extra |= others
    return _to_frame(rows, [name for name in extra if name not in RUN_COLUMNS])


def _run_row(run, experiment: str) -> tuple[dict[str, Any], set[str]]:
    """One run-table row (labels and provenance from tags, shape from params, numbers from
    metrics, any other metric under its own name with ``/`` as ``_``) and those other names."""
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "run_key": tags.get(TAG_RUN_KEY),
        "sweep": tags.get(TAG_SWEEP, experiment),
        "role": tags.get(TAG_ROLE),
        "status": run.info.status,
        "name": run.info.run_name,
        "tune": tags.get(TAG_TUNE),
        "tune_best": {"true": 1.0, "false": 0.0}.get(tags.get(TAG_TUNE_BEST, "")),
        "config_hash": tags.get(TAG_CONFIG_HASH),
        "host": tags.get(TAG_HOST),
        "branch_of": tags.get(TAG_BRANCH_OF),
        "branch_step": tags.get(TAG_BRANCH_STEP),
        "pruned_step": tags.get(TAG_PRUNED_STEP),
        **{column: tags.get(tag) for column, tag in PROVENANCE_COLUMNS.items()},
    }
    if run.info.end_time and run.info.start_time:
        row["wall_s"] = (run.info.end_time - run.info.start_time) / 1000
    row.update({column: params.get(key) for column, key in _PARAM_COLUMNS.items()})
    row.update({column: metrics.get(key) for column, key in _METRIC_COLUMNS.items()})
    taken = set(_METRIC_COLUMNS.values())
    others = {key.replace("/", "_"): value for key, value in metrics.items() if key not in taken}
    row.update(others)
    return row, set(others)


def learning_curve(
    run_id: str, *, tracking_uri: str = DEFAULT_TRACKING_URI, metric: str = "eval/loss"
) -> pd.DataFrame:
    """One metric of one run over training: columns ``step``, ``tokens``, ``value``.

    ``tokens`` comes from the ``train/tokens`` metric at the same step (NaN where absent).

    Raises
    ------
    TrackingError
        If the run does not exist or never logged ``metric``.
    """
    import pandas as pd
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            with _reading(tracking_uri):
                raise
        raise TrackingError(
            f"no MLflow run {run_id!r} at {tracking_uri}; take run ids from runs_frame()"
        ) from None
    with _reading(tracking_uri):
        history = client.get_metric_history(run_id, metric)
        tokens = {point.step: point.value for point in client.get_metric_history(run_id, "train/tokens")}
    if not history:
        raise TrackingError(
            f"run {run_id} has no metric {metric!r}; use e.g. 'eval/loss' or 'train/loss'"
        )
    latest = {point.step: point.value for point in history}  # a resumed step keeps its last value
    steps = sorted(latest)
    return pd.DataFrame(
        {
            "step": pd.array(steps, dtype="int64"),
            "tokens": [float(tokens.get(step, float("nan"))) for step in steps],
            "value": [float(latest[step]) for step in steps],
        }
    )


def log_report(
    experiment: str, directory: str | Path, *, tracking_uri: str = DEFAULT_TRACKING_URI,
    tags: Mapping[str, str] | None = None, name: str = "report",
) -> str:  # fmt: skip
    """Log a report directory as the artifacts of a new FINISHED run with role ``report``.

    Returns
    -------
    str
        The new run's id.

    Raises
    ------
    TrackingError
        If the directory or the experiment does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TrackingError(f"report directory {directory} does not exist; write the report first")
    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, experiment, tracking_uri)
    all_tags = {TAG_SWEEP: experiment, TAG_ROLE: "report", **dict(tags or {})}
    run = client.create_run(experiment_id, run_name=name, tags=all_tags)
    try:
        client.log_artifacts(run.info.run_id, str(directory), artifact_path="report")
    except Exception:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def log_forecast(
    experiment: str, path: str | Path, *, tracking_uri: str = DEFAULT_TRACKING_URI,
    tags: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """Register a forecast file as the artifact ``forecast.json`` of a new FINISHED run with
    role ``forecast`` in ``experiment`` (which must exist: nothing is created otherwise).

    Returns
    -------
    str
        The new run's id.
    """
    path = Path(path)
    with _reading(tracking_uri):
        client = _client(tracking_uri)
        experiment_id = _experiment_id(client, experiment, tracking_uri)
        all_tags = {TAG_SWEEP: experiment, TAG_ROLE: "forecast", **dict(tags or {})}
        run = client.create_run(experiment_id, run_name="forecast", tags=all_tags)
        try:
            client.log_artifact(run.info.run_id, str(path))
            if path.name != "forecast.json":
                client.log_text(run.info.run_id, path.read_text(), "forecast.json")
        except Exception:
            client.set_terminated(run.info.run_id, status="FAILED")
            raise
        client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def latest_forecast(experiment: str, *, tracking_uri: str = DEFAULT_TRACKING_URI) -> dict[str, Any] | None:
    """The newest registered forecast of ``experiment`` (its ``forecast.json`` as a dict, with
    ``run_id`` added), or None when none was registered."""
    import json
    import tempfile

    with _reading(tracking_uri):
        client = _client(tracking_uri)
        experiment_id = _experiment_id(client, experiment, tracking_uri)
        runs = _search(client, experiment_id,
                       f"tags.`{TAG_ROLE}` = 'forecast' and attributes.status = 'FINISHED'")
        if not runs:
            return None
        newest = max(runs, key=lambda run: run.info.start_time or 0)
        bar = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no bar on stderr
        try:
            with tempfile.TemporaryDirectory() as folder:
                local = client.download_artifacts(newest.info.run_id, "forecast.json", folder)
                record = json.loads(Path(local).read_text())
        finally:
            if bar is None:
                os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
            else:
                os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar
    return {**record, "run_id": newest.info.run_id}


def live_progress(run_ids: list[str], *, tracking_uri: str) -> dict[str, dict[str, float]]:
    """The logged progress of running runs, by run id: ``tokens_done`` (the latest
    ``train/tokens``) and ``tokens_per_s`` (the latest ``perf/tokens_per_s``). Best effort,
    for an ETA: a run that logged neither yet, or that cannot be read now, is left out."""
    from mlflow.exceptions import MlflowException

    out = {}
    try:
        client = _client(tracking_uri)
    except (MlflowException, OSError, TrackingError):  # unreachable now: no ETA from it
        return out
    for run_id in run_ids:
        try:
            metrics = client.get_run(run_id).data.metrics
        except (MlflowException, OSError):  # a run that cannot be read now: no ETA from it
            continue
        if "train/tokens" in metrics and "perf/tokens_per_s" in metrics:
            out[run_id] = {"tokens_done": metrics["train/tokens"], "tokens_per_s": metrics["perf/tokens_per_s"]}
    return out


def run_status(run_id: str, *, tracking_uri: str) -> str:
    """The status of one run (RUNNING, FINISHED, FAILED, KILLED)."""
    return _client(tracking_uri).get_run(run_id).info.status


def run_tags(run_id: str, *, tracking_uri: str) -> dict[str, str]:
    """The tags of one run (used by the reaper to find a run's owner)."""
    with _reading(tracking_uri):
        return dict(_client(tracking_uri).get_run(run_id).data.tags)


def run_params(run_id: str, *, tracking_uri: str) -> dict[str, str]:
    """The params of one run (its RunSpec as dotted keys, :meth:`RunSpec.flat_params`)."""
    with _reading(tracking_uri):
        return dict(_client(tracking_uri).get_run(run_id).data.params)


def set_run_tags(run_ids: list[str], tags: Mapping[str, str], *, tracking_uri: str) -> None:
    """Set the same tags on several runs (e.g. the best trial of a tuned shape)."""
    from mlflow.entities import RunTag

    client = _client(tracking_uri)
    for run_id in run_ids:
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
