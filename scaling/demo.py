"""The whole job on one machine: train proxies, predict a larger run, train it, compare.

:func:`run_demo` is what ``scaling demo`` calls. It runs the sweep file's proxies through
the ordinary sweep machinery (Optuna queue, MLflow runs, exactly once), fits a law on them,
registers the forecast of record for the target *before* the target is trained (the record
``scaling forecast`` registers, :mod:`scaling.reporting.forecast`, with the target's planned
learning-rate schedule), trains the target, scores it against that registered forecast and
writes the report. Nothing here prints: progress and results go to the ``say`` callback, and
the result object carries every figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scaling.errors import ConfigError
from scaling.formatting import format_flops, format_interval, json_safe
from scaling.laws.capability import TaskForecast, forecast_tasks
from scaling.laws.forms import get_law
from scaling.laws.selection import filter_rows, split_runs
from scaling.reporting.comparison import Comparison, compare, compare_forecasts
from scaling.reporting.forecast import make_forecast, register_forecast
from scaling.reporting.publish import make_report
from scaling.sweeps import tracking
from scaling.sweeps.planning import load_sweep, plan, run_size, target_spec
from scaling.sweeps.workers import run_sweep

__all__ = ["DemoResult", "default_sweep_path", "run_demo", "forecast_line", "check_line", "validity_line",
           "planned_schedule"]

DEMO_SWEEP = Path("sweeps") / "demo.yaml"


def default_sweep_path() -> Path:
    """``sweeps/demo.yaml`` in the working directory, else the one shipped beside the package.

    Raises
    ------
    ConfigError
        If neither exists (an installed package without its source tree).
    """
    here = DEMO_SWEEP
    if here.is_file():
        return here
    shipped = Path(__file__).resolve().parents[1] / DEMO_SWEEP
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"{DEMO_SWEEP}: not found in {Path.cwd()} nor beside the package; "
        "run from the repository root or pass --sweep FILE"
    )


@dataclass
class DemoResult:
    """What the demo measured.

    Attributes
    ----------
    forecast : dict
        The forecast of record, registered before the target was trained (format
        ``scaling.forecast/1``: law, x column, target x, predicted loss with ``lo`` and ``hi``,
        the fit, the target's planned schedule, ``run_id`` of its MLflow run and ``path``),
        with the demo's own keys: ``sweep``, ``n_trained``, ``left_out``, ``extrapolation``
        and under ``capabilities`` each task's forecast
        (:func:`scaling.laws.capability.forecast_tasks`).
    comparison : scaling.reporting.comparison.Comparison
        Predicted against actual for the target: the loss (scored against the registered
        forecast), then each task's forecasts.
    report_dir : Path
        Where ``index.html`` and ``report.md`` were written.
    wall_s : float
        Wall time of the whole demo.
    timings : dict
        Wall time of each stage (proxies, fit, target, compare, report).
    """

    forecast: dict[str, Any]
    comparison: Any
    report_dir: Path
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-safe figures of the run: the headline, the forecast and the timings."""
        loss = self.comparison.loss
        return {
            "headline": self.comparison.headline(),
            "predicted": loss.predicted,
            "interval": [loss.lo, loss.hi],
            "actual": loss.actual,
            "relative_error": loss.relative_error,
            "inside_interval": bool(loss.inside),
            "capabilities": [row.summary() for row in self.comparison.metrics[1:]],
            "forecast": _printable(self.forecast),
            "report_dir": str(self.report_dir),
            "wall_s": self.wall_s,
            "timings": self.timings,
        }


def _printable(record: dict[str, Any]) -> dict[str, Any]:
    """The forecast record without its bulk (the bootstrap draws, the schedule's samples)."""
    bulk = ("theta", "start_theta", "bootstrap_theta", "log_residuals", "run_ids")
    fit = {k: v for k, v in (record.get("fit") or {}).items() if k not in bulk}
    return {**{k: v for k, v in record.items() if k != "schedule"}, "fit": fit}


def planned_schedule(spec: Any) -> tuple[list[float], list[float]]:
    """The learning rate a run will follow: (tokens seen after each optimizer step, the rate of
    that step), from its ``train`` section by the trainer's own schedule
    (:func:`scaling.training.loop.lr_schedule`, what ``train/lr`` logs). Recorded with the
    forecast, so that ``watch`` knows the schedule of a run still training.

    Examples
    --------
    >>> from scaling.config.run import RunSpec
    >>> spec = RunSpec.model_validate({"train": {"tokens": 1000, "batch_tokens": 100, "lr": 1.0,
    ...                                          "warmup": 0.2, "min_lr_ratio": 0.1}})
    >>> tokens, lr = planned_schedule(spec)
    >>> tokens[:3], [round(v, 3) for v in lr[:3]], round(lr[-1], 3)
    ([100.0, 200.0, 300.0], [0.5, 1.0, 1.0], 0.1)
    """
    from scaling.training.loop import lr_schedule

    train = spec.train
    factors = lr_schedule(train)
    tokens = [float((step + 1) * train.batch_tokens) for step in range(len(factors))]
    return tokens, [float(train.lr) * float(factor) for factor in factors]


def _headline_task(forecasts: list[Any]) -> Any:
    """The forecast the demo prints: the copy task's accuracy, else the first accuracy."""
    accuracies = [f for f in forecasts if f.metric == "accuracy"]
    preferred = [f for f in accuracies if f.task == "copy"]
    return (preferred or accuracies or [None])[0]


def forecast_line(forecast: Any) -> str:
    """The capability line the demo prints beside the loss forecast: the task's accuracy
    with its interval, or why the proxies cannot predict it
    (:meth:`scaling.laws.capability.TaskForecast.text`)."""
    if not forecast.predictable:
        return (f"{forecast.task} accuracy {forecast.text()}; {forecast.method} on "
                f"{forecast.n_proxies} proxies")
    return (
        f"{forecast.task} accuracy {forecast.text()} "
        f"({forecast.interval:.0%} interval; {forecast.method} on {forecast.n_proxies} proxies)"
    )


def validity_line(fit_summary: dict[str, Any]) -> str | None:
    """The line the demo prints under its forecast when the loss fit is not valid (a
    parameter at its bound, starts that disagree: :attr:`scaling.laws.fitting.FitResult.reasons_`),
    else None."""
    if fit_summary["is_valid"]:
        return None
    return ("    the fit is NOT valid (" + "; ".join(fit_summary["reasons"]) + "): the forecast "
            "and its interval cannot be relied on as they stand")


def check_line(row: Any) -> str:
    """The demo's capability check once the target exists: the forecast (or why there is
    none) beside the target's actual score."""
    return f"{row.metric} predicted {row.predicted_text()}, actual {row.actual:.3g}"


def _target_x(config: Any, x: str) -> float:
    """The target's position on the law's axis, from the sweep plan (no training needed)."""
    columns = {"flops_exact": "C_exact", "flops": "C", "params": "N", "tokens": "D"}
    if x not in columns:
        raise ConfigError(
            f"x = {x!r}: the demo extrapolates along one of {', '.join(columns)}; pick one"
        )
    targets = [row for row in plan(config) if row["role"] == "target"]
    if len(targets) != 1:
        raise ConfigError(
            f"sweep {config.name}: the demo needs exactly one target run, found {len(targets)}; "
            "give the sweep file one target: section"
        )
    return float(targets[0][columns[x]])


def run_demo(
    sweep: str | Path | None = None,
    *,
    quick: bool = False,
    tracking_uri: str = "sqlite:///mlflow.db",
    storage: str | None = None,
    workers: int | None = None,
    law: str | None = None,
    x: str = "flops_exact",
    fit_range: str | None = None,
    interval: float = 0.9,
    n_bootstrap: int = 1000,
    report_dir: str | Path | None = None,
    say: Callable[[str], None] = lambda line: None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> DemoResult:
    """Train the proxies, forecast the target, train it, compare, and write the report.

    Parameters
    ----------
    sweep : path, optional
        The sweep file; :func:`default_sweep_path` when None.
    quick : bool
        Use the sweep file's ``quick:`` toy sizes (for tests; accuracy is not the point).
    tracking_uri, storage, workers
        As for :func:`scaling.sweeps.workers.run_sweep` (``workers`` None: one per core for
        the tiny proxies, one with every core for a larger target).
    law, x : str
        The law fitted to the proxies and the run-table column it extrapolates along; the
        law is the sweep file's ``forecast.law`` when None.
    fit_range : {"auto", "all"}, optional
        ``"auto"`` leaves out the smallest proxies when the proxies' own backtest predicts
        the largest better without them (:func:`scaling.reporting.comparison.split_runs`); the sweep
        file's ``forecast.fit_range`` when None.
    interval : float
        Coverage of the forecast interval.
    n_bootstrap : int
        Bootstrap resamples for the intervals.
    report_dir : path, optional
        Where to write the report; ``reports/<sweep name>/`` when None.
    say : callable
        Receives each line worth showing a person (stages, the forecast, the headline).
    progress : callable, optional
        Passed to :func:`scaling.sweeps.queue.run_sweep` for live progress.

    Returns
    -------
    DemoResult

    Raises
    ------
    ConfigError, DataError, TrackingError, StorageError, FitError
        From the stages, before anything is trained where the problem is in the inputs.
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    path = Path(sweep) if sweep is not None else default_sweep_path()
    config = load_sweep(path, quick=quick)
    law = law or config.forecast.law
    fit_range = fit_range or config.forecast.fit_range
    get_law(law)  # an unknown law fails here, before anything trains
    target_x = _target_x(config, x)
    directory = Path(report_dir) if report_dir is not None else Path("reports") / config.name

    say(f"1/4 training the proxies of {path} (sweep {config.name})")
    stage = time.perf_counter()
    proxies_run = run_sweep(
        config, workers=workers, storage=storage, tracking_uri=tracking_uri,
        roles=("proxy",), progress=progress,
    )  # fmt: skip
    timings["proxies_s"] = time.perf_counter() - stage
    if proxies_run.get("failed"):
        say(f"   {proxies_run['failed']} proxy run(s) failed; they are left out of the fit")

    stage = time.perf_counter()
    forecast, proxies, capabilities = _forecast(
        config, law=law, x=x, fit_range=fit_range, target_x=target_x, interval=interval,
        n_bootstrap=n_bootstrap, tracking_uri=tracking_uri, directory=directory,
        where=config.forecast.where(),
    )  # fmt: skip
    timings["fit_s"] = time.perf_counter() - stage
    say(
        f"2/4 forecast before training the target: {law} on {forecast['n_proxies']} of "
        f"{forecast['n_trained']} proxies -> loss "
        f"{format_interval(forecast['predicted'], forecast['lo'], forecast['hi'])} ({interval:.0%} "
        f"interval) at {x} = {format_flops(target_x)}, {forecast['extrapolation']:.0f}x the "
        "largest proxy"
    )
    wrote = f"; wrote {forecast['path']}" if forecast.get("path") else ""
    say(f"    forecast of record {forecast['registration']}: run {forecast['run_id']} (role "
        f"'forecast') in experiment {config.name}, {forecast['created_utc']}{wrote}")
    warning = validity_line(forecast["fit"])
    if warning is not None:
        say(warning)
    headline_task = _headline_task(capabilities)
    if headline_task is not None:
        say(f"    capability forecast: {forecast_line(headline_task)}")

    say("3/4 training the target")
    stage = time.perf_counter()
    run_sweep(
        config, workers=workers, storage=storage, tracking_uri=tracking_uri,
        roles=("target",), progress=progress,
    )  # fmt: skip
    timings["target_s"] = time.perf_counter() - stage

    stage = time.perf_counter()
    target_row, comparison = _compare(
        config, path, proxies, capabilities, forecast, law=law, x=x, interval=interval,
        n_bootstrap=n_bootstrap, tracking_uri=tracking_uri,
    )  # fmt: skip
    for row in comparison.metrics[1:]:
        if headline_task is not None and row.metric == headline_task.column:
            say(f"    capability check: {check_line(row)}")
    timings["compare_s"] = time.perf_counter() - stage

    say(f"4/4 writing the report to {directory}")
    stage = time.perf_counter()
    report_path = make_report(
        experiment=config.name, target=str(target_row["run_id"]), law=law,
        directory=directory, n_bootstrap=n_bootstrap, seed=0, tracking_uri=tracking_uri,
        fit_range=fit_range, interval=interval, where=config.forecast.where(),
    )  # fmt: skip
    timings["report_s"] = time.perf_counter() - stage
    wall = time.perf_counter() - started
    return DemoResult(forecast, comparison, Path(report_path), wall, timings)


def _forecast(
    config: Any, *, law: str, x: str, fit_range: str, target_x: float, interval: float,
    n_bootstrap: int, tracking_uri: str, directory: Path, where: str | None = None,
) -> tuple[dict[str, Any], Any, list[TaskForecast]]:  # fmt: skip
    """Fit the law on the trained proxies (those ``where`` keeps: ``forecast.tokens_per_param``)
    and register the forecast of record (loss and capabilities) beside the report directory
    and in the experiment, before the target trains; a forecast registered before from the
    same proxies and settings is reused (a second demo trains nothing and registers nothing)."""
    fitted_law = get_law(law)
    trained = tracking.runs_frame(config.name, tracking_uri=tracking_uri, role="proxy")
    if where is not None:
        trained, _ = filter_rows(trained, where=where, source=f"sweep {config.name}")
    split = split_runs(trained, x=x, y=fitted_law.y, fit_range=fit_range, law=law)
    proxies = split.proxies
    spec = target_spec(config)
    # The band for one new run, as the comparison uses: the law's uncertainty and the scatter.
    record = make_forecast(proxies, run_size(spec), law=law, x=x, interval=interval,
                           n_bootstrap=n_bootstrap, seed=0, experiment=config.name,
                           schedule=planned_schedule(spec))
    capabilities, skipped = forecast_tasks(
        trained, target_x, x=x, interval=interval, n_bootstrap=n_bootstrap, seed=0
    )
    record.update(json_safe({
        "sweep": config.name,
        "fit_range": fit_range,
        "n_trained": int(len(trained)),
        "left_out": split.excluded.to_dict(orient="records"),
        "extrapolation": target_x / float(proxies[x].max()),
        "capabilities": [f.summary() for f in capabilities],
        "capabilities_skipped": skipped,
    }))  # fmt: skip
    earlier = tracking.latest_forecast(config.name, tracking_uri=tracking_uri)
    if earlier is not None and _same_forecast(earlier, record):
        return {**earlier, "registration": "registered before, reused"}, proxies, capabilities
    directory.parent.mkdir(parents=True, exist_ok=True)
    forecast_path = directory.parent / f"{config.name}-forecast.json"
    registered = register_forecast(record, config.name, forecast_path, tracking_uri=tracking_uri)
    return {**registered, "registration": "registered"}, proxies, capabilities


def _same_forecast(earlier: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether a registered forecast says what ``record`` says: the same law, axis, size and
    proxies, and the same prediction and interval (the fit is seeded)."""
    import math

    def close(key: str) -> bool:
        a, b = earlier.get(key), record.get(key)
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)

    return (all(earlier.get(k) == record.get(k) for k in ("law", "x", "interval"))
            and all(close(k) for k in ("target_x", "predicted", "lo", "hi"))
            and sorted(earlier.get("proxy_run_ids") or []) == sorted(record["proxy_run_ids"]))


def _compare(
    config: Any, path: Path, proxies: Any, capabilities: list[TaskForecast],
    forecast: dict[str, Any], *, law: str, x: str, interval: float, n_bootstrap: int,
    tracking_uri: str,
) -> tuple[Any, Comparison]:  # fmt: skip
    """The trained target beside the forecast of record: loss (against the registered
    forecast, as ``scaling compare`` scores it), curve crossing, capabilities."""
    targets = tracking.runs_frame(config.name, tracking_uri=tracking_uri, role="target")
    if targets.empty:
        raise ConfigError(
            f"sweep {config.name}: the target run did not finish; see `scaling sweep status {path}`"
        )
    target_row = targets.iloc[0]
    curve = tracking.learning_curve(target_row["run_id"], tracking_uri=tracking_uri)
    comparison = compare(
        proxies, target_row, law=law, x=x, curve=curve, interval=interval,
        n_bootstrap=n_bootstrap, seed=0, forecast=forecast,
    )  # fmt: skip
    capability_rows = tuple(compare_forecasts(capabilities, target_row))
    return target_row, replace(comparison, metrics=comparison.metrics + capability_rows)

