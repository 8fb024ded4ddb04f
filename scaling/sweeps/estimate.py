"""How long a planned sweep will take, before it starts (``scaling sweep run --dry-run``).

Each run's seconds come from a measured throughput, never from FLOPs alone (small proxies are
overhead-bound, see :mod:`scaling.sweeps.progress`):

1. **earlier runs** of the same sweep in the tracking store: their ``perf/mean_tokens_per_s``
   by model size, interpolated as the sweep's own ETA does
   (:func:`scaling.sweeps.progress.predicted_seconds`);
2. otherwise **a probe**: each distinct model shape is trained for ``probe_steps`` steps on
   this machine, with the threads the sweep would give it
   (:func:`scaling.training.hardware.limit_threads`), through the real trainer, so a run that
   cannot train here (a batch that does not fit the context, a missing GPU) fails the dry run
   now, with its one-line reason, instead of an hour into the sweep.

A run's time is its tokens over that throughput, plus its evaluations (``eval_tokens`` every
``eval_every`` steps and at the end, at three times the training throughput: a forward pass
without backward). The runs are then laid out on the sweep's workers longest first, each on
the worker free soonest; the estimate is when the last one ends.
"""

from __future__ import annotations

import heapq
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from scaling.config.run import RunSpec
from scaling.errors import ScalingError
from scaling.sweeps.planning import run_size

__all__ = ["PROBE_STEPS", "earlier_throughput", "probe_throughput", "run_seconds", "makespan", "estimate_wall_time"]

PROBE_STEPS = 32  # a few seconds even for the demo's target (0.2 s a step on one core)
PROBE_LOG_EVERY = 4  # tokens/s measured over every 4 steps ...
PROBE_WARMUP_LOGS = 2  # ... of which the first 8 are left out: the first steps of a run are
# several times slower (allocation, first-touch of the data), 2,200 tokens/s over the first 8
# steps of the demo's target against 9,500 in its steady state
EVAL_SPEEDUP = 3.0  # an eval token costs a forward pass: about a third of a training token


def earlier_throughput(sweep: str, tracking_uri: str) -> list[tuple[float, float]]:
    """(N, tokens/s) of the sweep's finished runs in the tracking store; empty when there are
    none, the store does not exist yet (a read creates nothing), or its server does not answer
    (checked in seconds first: a dry run must not wait minutes on MLflow's retries)."""
    from scaling.sweeps import tracking

    path = tracking.sqlite_path(tracking_uri)
    if path is not None and not path.exists():
        return []
    try:
        tracking.check_tracking(tracking_uri, timeout=3.0)
        runs = tracking.find_runs(sweep, tracking_uri=tracking_uri, status="FINISHED")
    except Exception:  # noqa: BLE001 - no experiment yet, or a store that cannot be read now
        return []
    points = []
    for run in runs:
        rate = run["metrics"].get("perf/mean_tokens_per_s")
        params = run["metrics"].get("size/params")
        if rate and params:
            points.append((float(params), float(rate)))
    return sorted(points)


def _missing_device(specs: Sequence[RunSpec]) -> str | None:
    """Why the runs cannot be probed here (a GPU device and none visible), or None."""
    from scaling.training.hardware import visible_gpus

    gpus = visible_gpus()
    wanted = sorted({s.train.device for s in specs if s.train.device.startswith("cuda")})
    if wanted and not gpus:
        return f"the runs train on {', '.join(wanted)} and this machine has no CUDA GPU to probe them on"
    return None


def _probe_spec(spec: RunSpec, steps: int) -> RunSpec:
    train = spec.train.model_copy(update={
        "tokens": spec.train.batch_tokens * steps, "eval_every": 10**9, "checkpoint_every": 0,
        "log_every": PROBE_LOG_EVERY})  # fmt: skip
    return spec.model_copy(update={"train": train, "evals": spec.evals.model_copy(update={"tasks": []})})


def probe_throughput(specs: Sequence[RunSpec], *, threads: int | None, steps: int = PROBE_STEPS) -> dict[str, float]:
    """Steady training tokens per second of each spec's shape (model and batch), measured by
    training ``steps`` steps here (the median over every ``PROBE_LOG_EVERY`` steps after the
    first ``PROBE_WARMUP_LOGS`` intervals); keyed by run key. Raises what training would raise
    (``ConfigError``, ``DataError``): the run cannot train as planned."""
    from scaling.training.hardware import limit_threads
    from scaling.training.loop import train

    measured: dict[tuple, float] = {}
    rates = {}
    for spec in specs:
        shape = (spec.model.model_dump_json(), spec.train.batch_tokens, spec.train.device,
                 spec.train.precision, spec.train.micro_batch_tokens)  # fmt: skip
        if shape not in measured:
            limit_threads(threads, params=run_size(spec)["params"])
            rates_logged: list[float] = []
            try:
                train(_probe_spec(spec, steps),
                      lambda step, metrics: rates_logged.append(metrics.get("perf/tokens_per_s", 0.0)))
            except ScalingError as error:  # the same error, naming the run it would have failed
                raise type(error)(f"run {spec.name}: {error}") from None
            steady = [rate for rate in rates_logged[PROBE_WARMUP_LOGS:] if rate > 0]  # fmt: skip
            measured[shape] = statistics.median(steady or [rate for rate in rates_logged if rate > 0])
        rates[spec.run_key] = measured[shape]
    return rates


def run_seconds(spec: RunSpec, tokens_per_s: float, *, tokens: int | None = None, gpus: int = 1) -> float:
    """Seconds to train and evaluate ``spec`` at ``tokens_per_s`` training tokens per second
    of one process: ``tokens`` of it (a WSD branch trains only its cooldown; default all), on
    ``gpus`` data-parallel GPUs, counted as ideal scaling (on CPU a run's processes share the
    same cores and ``gpus`` is 1)."""
    tokens = run_size(spec)["tokens"] if tokens is None else tokens
    steps = max(1, tokens // spec.train.batch_tokens)
    evals = steps // spec.train.eval_every + 1 if spec.train.eval_every else 1
    return (tokens / tokens_per_s + evals * spec.data.eval_tokens / (EVAL_SPEEDUP * tokens_per_s)) / max(1, gpus)


def makespan(seconds: Sequence[float], workers: int) -> float:
    """When the last run ends with ``workers`` workers taking runs longest first.

    Examples
    --------
    >>> makespan([3.0, 3.0, 2.0, 2.0, 2.0], 2)
    7.0
    >>> makespan([5.0, 1.0], 4)
    5.0
    """
    free = [0.0] * max(1, workers)
    for duration in sorted(seconds, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free)


def estimate_wall_time(specs: Sequence[RunSpec], *, sweep: str, workers: int, threads: int | None,
             tracking_uri: str, probe_steps: int = PROBE_STEPS, trained: Mapping[str, int] | None = None,
             processes: Mapping[str, int] | None = None) -> dict[str, Any]:  # fmt: skip
    """The dry run's estimate: ``seconds`` (wall time on ``workers`` workers), ``source``
    (earlier runs or the probe), ``per_run`` (name, role, seconds), ``probe_s`` and the
    ``workers``; without earlier runs, a sweep whose runs need a GPU this machine lacks gets
    ``seconds`` None and ``skipped`` (why): a probe here would say nothing about its nodes.

    ``trained`` maps a run key to the tokens the run trains itself (a WSD branch: its
    cooldown, :func:`scaling.sweeps.planning.trained_tokens`); ``processes`` to the processes
    that train it (the target's ``nproc_per_node``), which divide a GPU run's time (ideal
    data-parallel scaling) and leave a CPU run's, whose processes share the cores. Runs are
    laid out as if independent: a branch cannot start before its stable run reaches it."""
    from scaling.sweeps.progress import predicted_seconds

    started = time.perf_counter()
    points = earlier_throughput(sweep, tracking_uri)
    missing = _missing_device(specs)
    if not points and missing:
        return {"seconds": None, "source": None, "workers": workers, "per_run": [],
                "probe_s": 0.0, "skipped": missing}  # fmt: skip
    if points:
        source = f"{len(points)} earlier runs' measured tokens/s"
        per_run = [predicted_seconds(float(run_size(s)["params"]), float(run_size(s)["tokens"]), points) for s in specs]
        rates = {s.run_key: run_size(s)["tokens"] / seconds for s, seconds in zip(specs, per_run)}
    else:
        source = f"a {probe_steps}-step probe of each shape on this machine"
        rates = probe_throughput(specs, threads=threads, steps=probe_steps)
    trained, processes = trained or {}, processes or {}

    def gpus(spec: RunSpec) -> int:
        return processes.get(spec.run_key, 1) if spec.train.device.startswith("cuda") else 1

    rows = [{"name": s.name, "role": s.role,
             "seconds": run_seconds(s, rates[s.run_key], tokens=trained.get(s.run_key), gpus=gpus(s))}
            for s in specs]  # fmt: skip
    return {
        "seconds": makespan([row["seconds"] for row in rows], workers),
        "source": source,
        "workers": workers,
        "per_run": rows,
        "probe_s": time.perf_counter() - started,
    }
