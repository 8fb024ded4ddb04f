"""The prediction report: "the big run will reach loss X ± Y, and here is why".

Three layers, kept apart so each can be tested on its own:

1. **Inputs** (here) — :func:`inputs_from_csv` and :func:`inputs_from_experiment` give a
   :class:`ReportInputs`: the run table, learning curves when tracked, provenance.
2. **Content** (here) — :func:`build_report` fits the law on the proxies and returns a
   :class:`Report`: the prediction, tables, and the data of every figure
   (:mod:`scaling.reporting.figures`) as plain DataFrames; with a target run, the large-run
   section (:func:`large_run_section`: the forecast of record, the re-forecasts ``watch``
   would have made at each evaluation).
3. **Rendering** (:mod:`scaling.reporting.render`) — Markdown, self-contained HTML and the atomic
   writer; :mod:`scaling.reporting.figures` draws the figures.

:func:`scaling.reporting.publish.make_report` does all three and logs the report to the sweep's MLflow experiment.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ConfigError, FitError
from scaling.formatting import (
    format_band,
    format_count,
    format_flops,
    format_range,
    is_finite,
)
from scaling.laws.fitting import fit
from scaling.laws.forms import get_law
from scaling.laws.hparams import best_of_tuned, tune_trials
from scaling.laws.selection import RunSplit, run_label, split_runs
from scaling.reporting.comparison import MetricComparison, fill_tokens, first_crossing
from scaling.reporting.figures import (
    isoflop_data,
    learning_curves_data,
    loss_vs_compute_data,
    lr_tuning_data,
    predict_arrays,
    residuals_data,
)
from scaling.table import finished, load_csv

__all__ = [
    "ReportInputs",
    "Report",
    "DEFAULT_EXTRAPOLATION",
    "inputs_from_csv",
    "inputs_from_experiment",
    "target_schedule",
    "large_run_section",
    "build_report",
    "backtest_cuts",
]


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is built from.

    Attributes
    ----------
    runs : DataFrame
        The run table: every run of the sweep, failed ones included (``status`` column).
    name : str
        What the report is about (the sweep or the CSV file's stem).
    source : str
        Where the runs came from, for the reader (``runs.csv``, ``experiment demo``).
    sweep, config_hash, tracking_uri : str or None
        Provenance for the footer; None when unknown (a CSV has no tracking URI).
    curves : dict of str to DataFrame, or None
        Learning curves by ``run_id`` (``step``, ``tokens``, ``value``); None when the
        source holds final values only (a CSV).
    forecast : dict or None
        The forecast of record of the large run (:mod:`scaling.reporting.forecast`): the
        latest registered in the experiment, or a file given; None when none was registered.
    schedules : dict of str to DataFrame, or None
        The logged learning rate (``train/lr``: ``step``, ``tokens``, ``value``) of the target
        runs, by ``run_id``: the large-run section's projections use it when the forecast
        recorded no schedule.
    all_runs : DataFrame or None
        Every run before a user's row filter (:func:`scaling.reporting.publish.filtered_inputs`),
        for what the sweep cost; None when nothing was filtered.
    """

    runs: pd.DataFrame
    name: str
    source: str
    sweep: str | None = None
    config_hash: str | None = None
    tracking_uri: str | None = None
    curves: Mapping[str, pd.DataFrame] | None = None
    forecast: Mapping[str, Any] | None = None
    schedules: Mapping[str, pd.DataFrame] | None = None
    all_runs: pd.DataFrame | None = None

    @property
    def from_sweep(self) -> bool:
        """Whether the runs are a sweep's proxies, read from MLflow (a tracking URI), rather
        than rows of a CSV of anyone's runs: the report calls the first "proxies" and the
        second "runs"."""
        return self.tracking_uri is not None

    @property
    def proxies(self) -> str:
        """What the report calls the runs it fits: "proxies" or "fitted runs"."""
        return "proxies" if self.from_sweep else "fitted runs"


def _single_value(runs: pd.DataFrame, column: str) -> str | None:
    if column not in runs.columns:
        return None
    values = runs[column].dropna().astype(str)
    values = values[values != ""].unique()
    return str(values[0]) if len(values) == 1 else None


def inputs_from_csv(path: str | os.PathLike[str]) -> ReportInputs:
    """Read a run table from a CSV file (no learning curves, no tracking URI).

    Parameters
    ----------
    path : str or path
        CSV with one row per run and the run-table columns the law reads.

    Returns
    -------
    ReportInputs

    Raises
    ------
    DataError
        If the file is missing or is not a run table (see :func:`scaling.table.load_csv`).
    """

    runs = load_csv(path)
    path = Path(path)
    return ReportInputs(
        runs=runs,
        name=_single_value(runs, "sweep") or path.stem,
        source=path.name,
        sweep=_single_value(runs, "sweep"),
        config_hash=_single_value(runs, "config_hash"),
    )


def inputs_from_experiment(experiment: str, *, tracking_uri: str) -> ReportInputs:
    """Read every run of a sweep, and the eval-loss curve of each, from MLflow.

    Parameters
    ----------
    experiment : str
        MLflow experiment (the sweep name).
    tracking_uri : str
        MLflow tracking URI.

    Returns
    -------
    ReportInputs

    Raises
    ------
    TrackingError
        If the experiment does not exist or cannot be read.
    """
    from scaling.errors import TrackingError
    from scaling.sweeps.tracking import (
        TAG_FAILURE,
        latest_forecast,
        learning_curve,
        run_tags,
        runs_frame,
    )

    runs = runs_frame(experiment, tracking_uri=tracking_uri, status=None).reset_index(drop=True)
    # The run table has no failure column: the reason is the run's scaling.failure tag.
    runs["failure"] = [
        None
        if status == "FINISHED"
        else run_tags(run_id, tracking_uri=tracking_uri).get(TAG_FAILURE)
        for run_id, status in zip(runs["run_id"], runs["status"])
    ]
    curves = {}
    ended = runs[finished(runs)]
    for run_id, tokens in zip(ended["run_id"], ended["tokens"]):
        try:
            curves[run_id] = fill_tokens(learning_curve(run_id, tracking_uri=tracking_uri), tokens)
        except TrackingError:  # a run that never logged eval/loss has no curve to draw
            continue
    schedules = {}
    for run_id, tokens in zip(runs.loc[runs["role"] == "target", "run_id"],
                              runs.loc[runs["role"] == "target", "tokens"]):
        lr = target_schedule(run_id, tracking_uri=tracking_uri, tokens=tokens)
        if lr is not None:
            schedules[run_id] = lr
    return ReportInputs(
        runs=runs,
        name=experiment,
        source=f"MLflow experiment {experiment}",
        sweep=experiment,
        config_hash=_single_value(runs, "config_hash"),
        tracking_uri=tracking_uri,
        curves=curves,
        forecast=latest_forecast(experiment, tracking_uri=tracking_uri),
        schedules=schedules,
    )


def target_schedule(run_id: str, *, tracking_uri: str, tokens: float | None = None) -> pd.DataFrame | None:
    """The logged learning rate of a run (``train/lr``, tokens filled in as for its eval
    curve), or None when it logged none."""
    from scaling.errors import TrackingError
    from scaling.sweeps.tracking import learning_curve

    try:
        return fill_tokens(learning_curve(run_id, tracking_uri=tracking_uri, metric="train/lr"), tokens)
    except TrackingError:
        return None


# --------------------------------------------------------------------------- content


@dataclass(frozen=True, kw_only=True)
class Report:
    """The content of a prediction report, ready to render.

    Attributes
    ----------
    inputs : ReportInputs
        Where the runs came from.
    law : Law
        The law fitted (:func:`scaling.laws.forms.get_law`).
    x, y : str
        Run-table columns the law reads and predicts.
    split : RunSplit
        Proxies fitted, target, runs left out and why.
    fit : FitResult
        The law fitted on the proxies.
    interval : float
        Coverage of every interval in the report.
    target_x : float
        Compute the prediction is made for.
    target_note : str
        Where ``target_x`` comes from, for the reader.
    prediction : MetricComparison or None
        Predicted against actual for the target, when the target run has a final loss.
    predicted, lo, hi : float
        The prediction at ``target_x`` and its interval.
    backtest : DataFrame or None
        Fit below a cut, error above, one row per cut (None: ``notes["backtest"]`` says why).
    optimal : DataFrame or None
        Compute-optimal N and D for the target budget (None: ``notes["optimal"]`` says why).
    figures : dict
        Figure name to its plot data (see :mod:`scaling.reporting.figures`).
    notes : dict
        Sentences by section: ``learning_curves``/``isoflop`` (why a figure is missing),
        ``isoflop_law`` (approach 2's N_opt(C)), ``optimal`` (the allocation's source or
        why there is none), ``allocations`` (the approaches side by side, and those that could
        not be fitted), ``allocation_agreement`` (how they compare and which to trust),
        ``backtest``, ``target`` (a target without loss or compute), ``capabilities`` (tasks
        that could not be forecast).
    date : str
        ISO date printed in the footer.
    capabilities : DataFrame or None
        Each task's forecasts at ``target_x`` beside the target's scores, one row per metric
        (:mod:`scaling.laws.capability`); None when no run was scored on a task.
    allocations : DataFrame or None
        Chinchilla's approaches 1-3 at the target budget side by side, one row per approach
        that could be fitted (None when none could); ``notes["allocation_agreement"]``
        reconciles them (:func:`scaling.laws.allocation.reconcile_allocations`).
    large_run : dict or None
        The large-run section when there is a target run (:func:`large_run_section`): the
        registered forecast, the re-forecasts ``watch`` would have made at each of its
        evaluations, and why a part is missing; None without a target.
    """

    inputs: ReportInputs
    law: Any
    x: str
    y: str
    split: RunSplit
    fit: Any
    interval: float
    target_x: float
    target_note: str
    predicted: float
    lo: float
    hi: float
    prediction: Any
    backtest: pd.DataFrame | None
    optimal: pd.DataFrame | None
    figures: Mapping[str, Any]
    notes: Mapping[str, str] = field(default_factory=dict)
    date: str = ""
    capabilities: pd.DataFrame | None = None
    allocations: pd.DataFrame | None = None
    large_run: Mapping[str, Any] | None = None


# When no target is named, the report extrapolates this far beyond the largest proxy:
# GPT-4 predicted from 1,000x to 10,000x less compute; 100x keeps the band readable.
DEFAULT_EXTRAPOLATION = 100.0


def _date(date: _dt.date | str | None) -> str:
    if date is None:
        return _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    return date if isinstance(date, str) else date.isoformat()


def build_report(
    inputs: ReportInputs,
    *,
    law: str = "gpt4",
    target: str | None = None,
    target_flops: float | None = None,
    interval: float = 0.9,
    n_bootstrap: int = 1000,
    seed: int = 0,
    date: _dt.date | str | None = None,
    fit_range: str = "all",
) -> Report:
    """Fit the law on the proxies and gather every section of the report.

    Parameters
    ----------
    inputs : ReportInputs
        The run table and provenance (:func:`inputs_from_csv`, :func:`inputs_from_experiment`).
    law : str, default "gpt4"
        Law of one compute column to fit (see :func:`scaling.laws.forms.get_law`).
    target : str, optional
        ``run_id`` of the large run; by default the table's one run with role ``target``.
    target_flops : float, optional
        Compute to predict for when the large run does not exist yet.
    interval : float, default 0.9
        Coverage of the intervals.
    n_bootstrap : int, default 1000
        Bootstrap resamples of the fit.
    seed : int, default 0
        Seed of the bootstrap and the backtest.
    date : date or str, optional
        Date printed in the footer; today (UTC) when None. Fixed in golden tests.
    fit_range : {"all", "auto"}
        ``"auto"`` leaves out the smallest proxies when the proxies' own backtest predicts
        the largest better without them (see :func:`scaling.reporting.comparison.split_runs`).

    Returns
    -------
    Report

    Raises
    ------
    ConfigError
        If both ``target`` and ``target_flops`` are given, or ``target_flops`` is not positive.
    DataError
        If ``target`` is not in the run table.
    FitError
        If the law is unknown, reads more than one column, or cannot be fitted to the
        proxies (too few runs).
    """
    if target is not None and target_flops is not None:
        raise ConfigError("--target and --target-flops both given; pass one of them")
    if target_flops is not None and not target_flops > 0:
        raise ConfigError(
            f"--target-flops = {target_flops:g} is not positive; pass a compute in FLOPs, e.g. 1e18"
        )
    law_object, x, y = _law_of_compute(law, inputs.runs)
    # A tuned shape enters the loss law through its best trial: mistuned proxies bend it.
    split = split_runs(best_of_tuned(inputs.runs), x=x, y=y, target=target, fit_range=fit_range, law=law)
    result = fit(
        law_object, split.proxies, x=(x,), y=y, n_bootstrap=n_bootstrap, seed=seed,
        interval=interval, source=f"{inputs.source} (proxies)" if inputs.from_sweep else inputs.source,
    )
    notes: dict[str, str] = {}
    largest = "the largest proxy" if inputs.from_sweep else "the largest fitted run"
    target_x, target_note, actual = _target_budget(split, x, y, target_flops, notes, largest)
    # One run's band (law and run-to-run scatter): the target is one run.
    (predicted,), (lo,), (hi,) = predict_arrays(result, np.array([target_x]), interval, band="run")
    settings = dict(interval=interval, n_bootstrap=n_bootstrap, seed=seed)
    figures = _figures(inputs, result, split, x, y, target_x, actual, notes, **settings)
    prediction = None
    if actual is not None:
        curve = None if inputs.curves is None else inputs.curves.get(_target_id(split))
        has_curve = curve is not None and not curve.empty
        prediction = MetricComparison(
            metric=y, law=law_object.name, x=x, target_x=target_x, predicted=float(predicted),
            lo=float(lo), hi=float(hi), interval=interval, actual=actual,
            crossing=first_crossing(curve, float(predicted)) if has_curve else None,
            has_curve=has_curve,
        )
    # Backtest bands only score coverage: 200 resamples per fold are plenty and halve the time.
    backtest, backtest_note = _backtest(
        law_object, split.proxies, x, y, min(n_bootstrap, 200), seed, inputs.proxies
    )
    if backtest_note:
        notes["backtest"] = backtest_note
    budget = _budget_on("flops", split.proxies, split.target, x, target_x)
    chinchilla, optimal, notes["optimal"] = _optimal(
        split.proxies, budget, interval, n_bootstrap, seed, inputs.proxies
    )
    allocations = _allocations(split.proxies, budget, chinchilla, figures.get("isoflop"),
                               interval, n_bootstrap, seed, notes)
    capabilities = _capabilities(inputs.runs, split.target, x, target_x, interval, n_bootstrap, seed, notes)
    large_run = None
    if split.target is not None:
        large_run = large_run_section(inputs, split.target, x=x, target_x=target_x)
        for name in ("large_run_reforecasts", "large_run_curve"):
            if large_run.get(name) is not None:
                figures[name] = large_run[name]
    return Report(
        inputs=inputs, law=law_object, x=x, y=y, split=split, fit=result, interval=interval,
        target_x=target_x, target_note=target_note, predicted=float(predicted), lo=float(lo),
        hi=float(hi), prediction=prediction, backtest=backtest, optimal=optimal,
        figures=figures, notes=notes, date=_date(date), capabilities=capabilities,
        allocations=allocations, large_run=large_run,
    )


def large_run_section(inputs: ReportInputs, target: Mapping[str, Any], *, x: str,
                      target_x: float) -> dict[str, Any]:
    """The large run against its forecast of record: the data of the report's section.

    The re-forecasts are what ``scaling watch`` would have printed at each evaluation of the
    run's curve (:func:`scaling.reporting.watch.watch_points`, blended with the forecast, and
    with ``prior=False``: the curve alone), from the first evaluation at or past
    :data:`scaling.laws.partial_curve.SKIP` of the planned tokens to the end, with the
    schedule ``watch`` would have known (:func:`scaling.reporting.watch.watch_schedule`).

    Parameters
    ----------
    inputs : ReportInputs
        Its ``forecast``, ``curves`` and ``schedules`` are read.
    target : mapping
        The target's run-table row.
    x, target_x : str, float
        The report's compute column and the target's value of it (for the size check).

    Returns
    -------
    dict
        ``forecast`` (the record, or None), ``label`` (how the report names it), ``note`` (a
        sentence: the size check, or why there are no re-forecasts), ``actual`` (the run's
        final loss or None), ``total_tokens``, ``schedule_source``, ``reforecasts`` (DataFrame:
        ``step``, ``tokens``, ``fraction``, ``loss``, ``projected``, ``curve_alone``,
        ``inside``; None without a forecast or a curve), and the data of the figures
        ``large_run_reforecasts`` and ``large_run_curve``
        (:func:`scaling.reporting.figures.large_run_data`).
    """
    from scaling.laws.partial_curve import SKIP
    from scaling.reporting.figures import large_run_data
    from scaling.reporting.forecast import check_target_x, forecast_label
    from scaling.reporting.watch import watch_points, watch_schedule

    forecast = None if inputs.forecast is None else dict(inputs.forecast)
    actual = float(target["loss"]) if is_finite(target.get("loss")) else None
    out: dict[str, Any] = {"forecast": forecast, "actual": actual, "label": "", "note": "",
                           "total_tokens": None, "schedule_source": "", "reforecasts": None,
                           "large_run_reforecasts": None, "large_run_curve": None}
    if forecast is None:
        return out
    out["label"] = forecast_label(forecast)
    if str(forecast.get("x")) == x:
        out["note"] = check_target_x(forecast, target_x) or ""
    run_id = target.get("run_id")
    curve = None if inputs.curves is None else inputs.curves.get(run_id)
    total = forecast.get("tokens") or (float(target["tokens"]) if is_finite(target.get("tokens")) else None)
    out["total_tokens"] = float(total) if total else None
    if curve is None or curve.empty or not total:
        out["note"] = " ".join(filter(None, [out["note"], (
            "The large run has no eval-loss curve here, so there are no re-forecasts."
            if total else "Neither the forecast nor the run says the planned tokens, so there "
            "are no re-forecasts.")]))
        return out
    total = float(total)
    lr = None if inputs.schedules is None else inputs.schedules.get(run_id)
    schedule, out["schedule_source"] = watch_schedule(forecast, total, lr)
    blended = watch_points(curve, forecast, total, schedule=schedule)
    alone = watch_points(curve, forecast, total, prior=False, schedule=schedule)
    rows = [(b, a) for b, a in zip(blended, alone) if b.fraction >= SKIP - 1e-9]
    table = pd.DataFrame({
        "step": [b.step for b, _ in rows], "tokens": [b.tokens for b, _ in rows],
        "fraction": [b.fraction for b, _ in rows], "loss": [b.loss for b, _ in rows],
        "projected": [b.projected for b, _ in rows], "curve_alone": [a.projected for _, a in rows],
        "inside": [b.on_track for b, _ in rows],
    })  # fmt: skip
    out["reforecasts"] = table
    measured = curve.dropna(subset=["tokens", "value"]).sort_values("tokens")
    data = large_run_data(measured, table, forecast, total_tokens=total, actual=actual)
    out["large_run_reforecasts"] = data
    out["large_run_curve"] = data
    return out


def _law_of_compute(law: str, runs: pd.DataFrame) -> tuple[Any, str, str]:
    """The law, and the columns it reads from this run table: a law of one compute column."""
    law_object = get_law(law)
    if len(law_object.x) != 1:
        raise FitError(
            f"law {law_object.name!r} reads {', '.join(law_object.x)}; the report extrapolates "
            "a law of compute, such as gpt4"
        )
    x, y = law_object.x[0], law_object.y
    if x not in runs.columns and "flops" in runs.columns:
        x = "flops"  # a CSV of someone else's runs may carry 6ND only
    return law_object, x, y


def _target_id(split: RunSplit) -> str | None:
    return None if split.target is None else split.target.get("run_id")


def _target_budget(
    split: RunSplit, x: str, y: str, target_flops: float | None, notes: dict[str, str],
    largest: str = "the largest proxy",
) -> tuple[float, str, float | None]:
    """The compute to predict for, how the report names it (``largest``: what the largest
    fitted run is called), and the target's actual value (None until it exists); why the
    target could not be used goes to ``notes``."""
    target_row = split.target
    if target_flops is not None:
        target_x = float(target_flops)
        return target_x, f"the requested budget ({x} = {format_flops(target_x, digits=3)})", None
    if target_row is not None and is_finite(target_row.get(x)):
        label = run_label(target_row)
        actual = float(target_row[y]) if is_finite(target_row.get(y)) else None
        if actual is None:
            notes["target"] = (
                f"The target run {label} has no final {y} yet (status "
                f"{target_row.get('status', 'unknown')}); build the report again once it finishes."
            )
        return float(target_row[x]), f"the target run {label}", actual
    target_x = DEFAULT_EXTRAPOLATION * float(split.proxies[x].max())
    target_note = f"{DEFAULT_EXTRAPOLATION:g}x {largest} (no target was given)"
    if target_row is not None:
        target_note = f"{DEFAULT_EXTRAPOLATION:g}x {largest}"
        notes["target"] = (
            f"The target run {run_label(target_row)} has no {x}, so the report predicts "
            f"for {DEFAULT_EXTRAPOLATION:g}x {largest} instead; pass --target-flops."
        )
    return target_x, target_note, None


def _figures(
    inputs: ReportInputs, result: Any, split: RunSplit, x: str, y: str, target_x: float,
    actual: float | None, notes: dict[str, str], *, interval: float, n_bootstrap: int, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """The data of every figure the run table allows; why one is missing goes to ``notes``."""
    figures: dict[str, Any] = {
        "loss_vs_compute": loss_vs_compute_data(
            result, split.proxies, x=x, y=y, target_x=target_x, target_y=actual,
            interval=interval, left_out=_unfitted_proxies(inputs.runs, split.proxies, x, y),
        )
    }
    figures["loss_vs_compute"]["points_label"] = "proxies" if inputs.from_sweep else "runs"
    if inputs.curves is not None:
        curves = learning_curves_data(inputs.curves, inputs.runs, target_id=_target_id(split))
        if curves.empty:
            notes["learning_curves"] = "No run logged an eval-loss curve."
        else:
            figures["learning_curves"] = curves
    else:
        notes["learning_curves"] = (
            f"Learning curves are not shown: this report was built from {inputs.source}, "
            "which holds final values only. Build it from the MLflow experiment to see them."
        )
    axis, isoflop = _isoflop_profiles(split.proxies)
    if isoflop.empty:
        notes["isoflop"] = (
            "The sweep has no IsoFLOP runs (three or more model sizes at one compute budget)."
        )
    else:
        figures["isoflop"], notes["isoflop_law"] = _isoflop_figure(
            isoflop, split.proxies, _budget_on(axis, split.proxies, split.target, x, target_x),
            interval, n_bootstrap, seed, flops=axis,
        )
    figures["residuals"] = residuals_data(result, split.proxies, x=x, y=y)
    if not tune_trials(inputs.runs).empty:
        figures["lr_tuning"] = lr_tuning_data(
            inputs.runs, interval=interval, n_bootstrap=n_bootstrap, seed=seed, source=inputs.source
        )
    return figures


def _capabilities(
    runs: pd.DataFrame, target_row: pd.Series | None, x: str, target_x: float, interval: float,
    n_bootstrap: int, seed: int, notes: dict[str, str],
) -> pd.DataFrame | None:  # fmt: skip
    """Each task's forecasts at the target's compute (fitted on every finished proxy scored
    on it) and the target's scores, as a table; tasks that cannot be fitted go to ``notes``."""
    from scaling.laws.capability import forecast_tasks, task_names
    from scaling.reporting.comparison import compare_forecasts

    if not task_names(runs):
        return None
    proxies = runs if target_row is None else runs[runs.index != target_row.name]
    forecasts, skipped = forecast_tasks(
        proxies, target_x, x=x, interval=interval, n_bootstrap=n_bootstrap, seed=seed
    )
    if skipped:
        notes["capabilities"] = " ".join(f"{task}: not forecast ({why})." for task, why in skipped.items())
    actual = {} if target_row is None else {r.metric: r for r in compare_forecasts(forecasts, target_row)}

    def scored(f: Any) -> bool:  # a forecast the proxies cannot make has no error to score
        return f.column in actual and f.predictable

    return pd.DataFrame({
        "task": [f.task for f in forecasts],
        "metric": [f.metric for f in forecasts],
        "law": [f.method for f in forecasts],
        "forecast": [f.text() for f in forecasts],
        f"{interval:.0%} interval": [format_range((f.lo, f.hi), lambda v: f"{v:.4g}")
                                     if f.predictable else "" for f in forecasts],
        "actual": [f"{actual[f.column].actual:.4g}" if f.column in actual else "" for f in forecasts],
        "error": [f"{actual[f.column].relative_error:+.1%}" if scored(f) else "" for f in forecasts],
    })  # fmt: skip


def _backtest(
    law: Any, proxies: pd.DataFrame, x: str, y: str, n_bootstrap: int, seed: int,
    called: str = "proxies",
) -> tuple[pd.DataFrame | None, str]:
    """Per-cut backtest table, or None and the reason it could not be run (``called``: what
    the report calls the fitted runs)."""
    from scaling.errors import FitError
    from scaling.formatting import format_flops
    from scaling.laws.backtesting import backtest

    cuts = backtest_cuts(proxies[x].to_numpy(float), law.n_params)
    if not cuts:
        noun = "proxies" if called == "proxies" else "runs"
        where = "this sweep" if called == "proxies" else "the table"
        return None, (
            f"No backtest: it needs more than {law.n_params} {noun} below a compute cut and "
            f"one above it, at different {x}; {where} has {len(proxies)}."
        )
    try:
        result = backtest(
            law, proxies, cuts, x=(x,), y=y, n_bootstrap=n_bootstrap, seed=seed,
            source=called,
        )
    except FitError as error:
        return None, f"No backtest: {error}."

    folds = result.summary()["folds"]
    table = pd.DataFrame(
        {
            f"cut ({x})": [format_flops(f["cut"]) for f in folds],
            "runs fitted": [f["n_train"] for f in folds],
            "runs predicted": [f["n_test"] for f in folds],
            "mean abs. error": [f"{f['mean_abs_relative_error']:.2%}" for f in folds],
            "max abs. error": [f"{f['max_abs_relative_error']:.2%}" for f in folds],
            f"inside {result.interval_:.0%} band": [f"{f['coverage']:.0%}" for f in folds],
            "fit valid": ["yes" if f["is_valid"] else "no" for f in folds],
        }
    )
    return table, ""


def backtest_cuts(compute: np.ndarray, n_params: int) -> list[float]:
    """Compute cuts for the backtest: fit the runs below a cut, predict those at or above.

    The cuts of :func:`scaling.laws.fitting.backtest` (50%, 62.5% and 75% quantiles of log compute,
    an expanding window), each moved up to the next run's compute so that cuts splitting
    the runs alike merge, and kept when more runs than the law has parameters lie below and
    one lies above. A sweep too small for those gets the smallest cuts that work.

    Examples
    --------
    >>> backtest_cuts(np.array([1e15, 2e15, 4e15, 8e15, 16e15, 32e15, 64e15, 128e15]), 3)
    [1.6e+16, 3.2e+16, 6.4e+16]
    >>> backtest_cuts(np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]), 3)
    [16.0]
    >>> backtest_cuts(np.array([1.0, 2.0, 4.0, 8.0, 16.0]), 3)  # quantile cuts leave 2-3 below
    [16.0]
    >>> backtest_cuts(np.array([1.0, 2.0, 4.0]), 3)
    []
    >>> backtest_cuts(np.array([1.0] * 3 + [4.0] * 3 + [16.0] * 3), 3)  # three seeds each
    [16.0]
    """
    values = np.sort(np.asarray(compute, dtype=float))
    if values.size == 0:
        return []

    def usable(cut: float) -> bool:
        return int((values < cut).sum()) > n_params and bool((values >= cut).any())

    # exp(log(x)) can land a hair above x: clip, or repeated runs at the top compute (seeds)
    # would leave a quantile with no run at or above it
    quantiles = np.minimum(np.exp(np.quantile(np.log(values), [0.5, 0.625, 0.75])), values[-1])
    snapped = sorted({float(values[values >= q].min()) for q in quantiles})
    cuts = [cut for cut in snapped if usable(cut)]
    if not cuts:
        cuts = [float(v) for v in np.unique(values) if usable(v)][:3]
    return cuts


def _isoflop_profiles(proxies: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """(compute column, profiles): 6ND, Chinchilla's axis, unless more runs form IsoFLOP
    profiles on exact FLOPs (an ``isoflop`` sweep fixes exact budgets, whose 6ND differ with
    the shape)."""
    on_6nd = isoflop_data(proxies, flops="flops")
    on_exact = isoflop_data(proxies, flops="flops_exact")
    if len(on_exact) > len(on_6nd):
        return "flops_exact", on_exact
    return "flops", on_6nd


def _budget_on(
    axis: str, proxies: pd.DataFrame, target_row: pd.Series | None, x: str, target_x: float
) -> float:
    """The target budget ``target_x`` (on the law's axis ``x``) in the compute column ``axis``:
    the target's own value, else converted with the proxies' median ratio of ``axis`` to
    ``x``; unchanged when the proxies lack ``axis``. ``flops`` (6ND) is the compute
    Chinchilla's allocation is written in."""
    if x == axis:
        return target_x
    if target_row is not None and is_finite(target_row.get(axis)):
        return float(target_row[axis])
    if axis in proxies.columns:
        return target_x * float(np.median(proxies[axis] / proxies[x]))
    return target_x


def _isoflop_figure(
    profiles: pd.DataFrame, proxies: pd.DataFrame, budget: float, interval: float,
    n_bootstrap: int, seed: int, *, flops: str = "flops",
) -> tuple[dict[str, Any], str]:
    """Data of figure 3 (profiles; approach 2's N_opt(C), D_opt(C)) and its sentence.

    On exact FLOPs, D = C / (exact FLOPs per token) is not C / 6N: each optimum's D_opt is
    read off its own profile (log D against log N is smooth there), and D_opt(C) is the power
    law through those points.
    """
    from scaling.errors import FitError
    from scaling.laws.allocation import approach2

    axis = "6ND" if flops == "flops" else "exact FLOPs"
    data: dict[str, Any] = {"profiles": profiles, "optima": None, "law": None, "axis": axis}
    try:
        law = approach2(
            proxies, flops=flops, n_bootstrap=n_bootstrap, seed=seed, interval=interval,
            source="IsoFLOP runs",
        )
    except FitError as error:
        return data, f"No N_opt(C) law: {error}."
    data.update(allocation=law, budget=budget)
    points = law.points
    grid = np.geomspace(min(points["flops"].min(), budget), max(points["flops"].max(), budget), 50)
    # A bootstrap that kept the profiles in too few resamples has no interval to show.
    from scaling.laws.allocation import MIN_DRAWS

    def band(value: float, bounds: tuple[float, float]) -> str:
        return format_band(value, *bounds) if law.n_bootstrap >= MIN_DRAWS else f"{value:.3g}"

    if flops == "flops":
        tokens_opt, tokens_law = points["flops"] / (6.0 * points["params_opt"]), law.tokens_opt
        b_text = band(law.b, law.b_interval)
    else:
        tokens_opt = _tokens_on_profiles(profiles, points["flops"], points["params_opt"])
        b, log_k = np.polyfit(np.log(points["flops"]), np.log(tokens_opt), 1)

        def tokens_law(compute: Any) -> np.ndarray:  # D_opt = k·C^b through the optima
            return np.exp(log_k) * np.asarray(compute, dtype=float) ** b

        b_text = f"{b:.2f}"
    data["optima"] = pd.DataFrame(
        {"flops": points["flops"], "params_opt": points["params_opt"], "tokens_opt": tokens_opt}
    )
    data["law"] = pd.DataFrame(
        {"flops": grid, "params_opt": law.params_opt(grid), "tokens_opt": tokens_law(grid)}
    )
    ratio = float(tokens_law(budget) / law.params_opt(budget))
    no_interval = "" if law.n_bootstrap >= MIN_DRAWS else (
        f" (no interval: {law.n_bootstrap} of {n_bootstrap} bootstrap resamples kept enough "
        "profiles to fit)")
    text = (
        f"Approach 2 (IsoFLOP parabolas on {axis}, {len(points['flops'])} budgets): N_opt ∝ C^a "
        f"with a = {band(law.a, law.a_interval)}, D_opt ∝ C^b with b = {b_text}{no_interval}; at C = "
        f"{format_flops(budget, digits=3)} ({axis}) it gives N_opt = {format_count(float(law.params_opt(budget)))} and "
        f"D_opt = {format_count(float(tokens_law(budget)))} tokens ({ratio:.0f} tokens per parameter)."
    )
    return data, text


def _tokens_on_profiles(profiles: pd.DataFrame, flops: np.ndarray, params_opt: np.ndarray) -> np.ndarray:
    """D at each optimum N_opt, interpolated in log-log along the profile nearest its budget."""
    budgets = profiles["budget"].unique()
    tokens = []
    for c, n in zip(flops, params_opt):
        budget = budgets[np.argmin(np.abs(np.log(budgets) - np.log(c)))]
        members = profiles[profiles["budget"] == budget].sort_values("params")
        log_d = np.interp(np.log(n), np.log(members["params"]), np.log(members["tokens"]))
        tokens.append(float(np.exp(log_d)))
    return np.array(tokens)


def _optimal(
    proxies: pd.DataFrame, budget: float, interval: float, n_bootstrap: int, seed: int,
    called: str = "proxies",
) -> tuple[Any, pd.DataFrame | None, str]:
    """Chinchilla (approach 3) allocation of the target budget: the fit, a table and a
    sentence (``called``: what the report calls the fitted runs)."""
    from scaling.errors import DataError, FitError
    from scaling.laws.allocation import compute_optimal
    from scaling.laws.fitting import fit

    try:
        result = fit(
            "chinchilla", proxies, n_bootstrap=n_bootstrap, seed=seed, interval=interval,
            source=f"{called} (Chinchilla fit)",
        )
    except (FitError, DataError) as error:  # too few runs, or no params and tokens
        return None, None, f"No allocation: {error}."
    try:
        best = compute_optimal(budget, result, interval=interval)
    except FitError as error:  # an exponent at its bound: no interior optimum
        return result, None, f"No allocation: {error}."
    table = pd.DataFrame(
        {
            "quantity": [
                "parameters N_opt", "tokens D_opt", "tokens per parameter", "loss at the optimum"
            ],
            "value": [
                format_count(best.params), format_count(best.tokens), f"{best.tokens_per_param:.3g}",
                format_band(best.loss, *best.loss_interval),
            ],
            f"{interval:.0%} interval": [
                format_range(best.params_interval, format_count), format_range(best.tokens_interval, format_count),
                format_range((best.tokens_interval[0] / best.params_interval[1],
                        best.tokens_interval[1] / best.params_interval[0]), lambda v: f"{v:.3g}"),
                format_range(best.loss_interval, lambda v: f"{v:.4g}"),
            ],
        }
    )
    p = result.params_
    on = "the proxies" if called == "proxies" else "the runs"
    text = (
        f"From L(N, D) = E + A/N^alpha + B/D^beta fitted on {on} (approach 3): "
        f"E = {p['E']:.3g}, alpha = {p['alpha']:.3g}, beta = {p['beta']:.3g}, at "
        f"C = {format_flops(budget, digits=3)} (6ND)."
    )
    if not result.is_valid:
        text += (
            " The fit is not valid (" + "; ".join(result.reasons_) + f"): {on} do not pin "
            "down N and D separately, so read this allocation as indicative only."
        )
    return result, table, text


_APPROACHES = {
    1: "lower envelope of loss over compute",
    2: "minima of IsoFLOP parabolas",
    3: "closed form of the fitted L(N, D)",
}


def _allocations(
    proxies: pd.DataFrame, budget: float, chinchilla: Any, isoflop: Mapping[str, Any] | None,
    interval: float, n_bootstrap: int, seed: int, notes: dict[str, str],
) -> pd.DataFrame | None:  # fmt: skip
    """Chinchilla's approaches 1-3 at the 6ND budget ``budget``, side by side, and in
    ``notes["allocations"]`` what could not be fitted and how the approaches compare."""
    from scaling.errors import DataError, FitError
    from scaling.laws.allocation import (
        AllocationEstimate,
        approach1,
        compute_optimal,
        reconcile_allocations,
    )

    estimates, rows, missing, where = [], [], [], {}
    try:
        law1 = approach1(proxies, n_bootstrap=min(n_bootstrap, 200), seed=seed,
                         interval=interval, source="runs")
    except (FitError, DataError) as error:
        missing.append(f"No approach 1: {error}.")
    else:
        estimates.append(AllocationEstimate(
            1, float(law1.params_opt(budget)), law1.params_interval(budget), law1.n_bootstrap,
            interval=interval))  # fmt: skip
        where[1] = (f"{len(law1.points['flops'])} envelope points up to "
                    f"C = {format_flops(float(law1.points['flops'].max()))}")
    law2 = None if isoflop is None else isoflop.get("allocation")
    if law2 is not None:
        at = isoflop["budget"]
        estimates.append(AllocationEstimate(
            2, float(law2.params_opt(at)), law2.params_interval(at), law2.n_bootstrap,
            interval=interval))  # fmt: skip
        where[2] = (f"{len(law2.points['flops'])} budgets on {isoflop['axis']} up to "
                    f"C = {format_flops(float(law2.points['flops'].max()))}")
    try:
        best = None if chinchilla is None else compute_optimal(budget, chinchilla, interval=interval)
    except FitError as error:
        missing.append(f"No approach 3: {error}.")
        best = None
    if best is not None:
        estimates.append(AllocationEstimate(
            3, best.params, best.params_interval, len(chinchilla.bootstrap_theta_),
            invalid="; ".join(chinchilla.reasons_), interval=interval))  # fmt: skip
        where[3] = f"{chinchilla.n_points_} runs" + ("" if chinchilla.is_valid else ", fit not valid")
    if not estimates:
        if missing:
            notes["allocations"] = " ".join(missing)
        return None
    for e in estimates:
        lo, hi = e.params_interval
        rows.append({
            "approach": str(e.approach), "method": f"{_APPROACHES[e.approach]} ({where[e.approach]})",
            "N_opt": format_count(e.params),
            f"{interval:.0%} interval": format_range((lo, hi), format_count) if np.isfinite(e.width) else "none",
            "D_opt (C/6N)": format_count(budget / (6.0 * e.params)),
            "tokens per parameter": f"{budget / (6.0 * e.params ** 2):.3g}",
        })  # fmt: skip
    notes["allocations"] = " ".join(
        [f"Chinchilla's three approaches at the same budget, C = {format_flops(budget, digits=3)} "
         "(6ND); D_opt is C / (6 N_opt)."] + missing)
    if len(estimates) >= 2:
        notes["allocation_agreement"] = _agreement_text(estimates, reconcile_allocations(estimates))
    return pd.DataFrame(rows)


def _agreement_text(estimates: list[Any], verdict: Any) -> str:
    """The approaches' agreement in words: by how much they differ, how each reaches its
    N_opt, and which to trust and why."""
    names = ", ".join(str(e.approach) for e in estimates[:-1]) + f" and {estimates[-1].approach}"
    if verdict.agree:
        return (f"Approaches {names} agree: their N_opt lie within {verdict.ratio - 1:.0%} of "
                "each other, so the allocation does not hang on the method.")
    how = {
        1: "approach 1 takes the lowest-loss run in each compute bin and extrapolates a power "
           "law through them",
        2: "approach 2 reads N_opt off the loss minima of the IsoFLOP profiles measured and "
           "extrapolates a power law through them",
        3: "approach 3 extrapolates the fitted L(N, D), whose split of a budget rests on the "
           "fitted alpha and beta alone",
    }
    high = max(estimates, key=lambda e: e.params)
    low = min(estimates, key=lambda e: e.params)
    methods = "; ".join(how[e.approach] for e in estimates)
    text = (f"Approaches {names} disagree: their N_opt differ by {verdict.ratio:.2g}x (approach "
            f"{high.approach} {format_count(high.params)}, approach {low.approach} "
            f"{format_count(low.params)}). {methods[0].upper()}{methods[1:]}. ")
    if verdict.trusted is None:
        return text + f"None of them can be trusted here: {verdict.reason}."
    return text + f"Trust approach {verdict.trusted}: {verdict.reason}."


def _unfitted_proxies(runs: pd.DataFrame, fitted: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Finished proxies with usable values that the fit did not use (below its fit range)."""
    usable = runs[finished(runs)]
    if "role" in runs.columns:
        usable = usable[usable["role"].astype(str) == "proxy"]
    usable = usable[(pd.to_numeric(usable[x], errors="coerce") > 0)
                    & (pd.to_numeric(usable[y], errors="coerce") > 0)]
    key = "run_id" if "run_id" in runs.columns and "run_id" in fitted.columns else None
    if key is None:
        return usable.iloc[:0]
    return usable[~usable[key].isin(fitted[key])]


