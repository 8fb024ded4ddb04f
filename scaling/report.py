"""The prediction report: "the big run will reach loss X ± Y, and here is why".

Three layers, kept apart so each can be tested on its own:

1. **Inputs** — :func:`inputs_from_csv` and :func:`inputs_from_experiment` give a
   :class:`ReportInputs` (the run table, learning curves when tracked, provenance).
2. **Content** — :func:`build_report` fits the law on the proxies and returns a
   :class:`Report`: the prediction, tables, and the *data* of every figure as plain
   DataFrames (tests check those, not pixels).
3. **Rendering** — ``draw_*`` turn figure data into matplotlib figures (imported inside
   the functions); :func:`render_markdown` and :func:`render_html` turn the report into
   text; :func:`write_report` writes ``index.html`` (figures embedded as data URIs, opens
   offline) and ``report.md`` with the PNG figures beside it, atomically.

Every "value ± error" goes through :func:`scaling.formatting.format_value_error`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.compare import RunSplit, _run_label, split_runs
from scaling.errors import DataError

__all__ = [
    "ReportInputs",
    "RunSplit",
    "Report",
    "inputs_from_csv",
    "inputs_from_experiment",
    "split_runs",
    "build_report",
    "loss_vs_compute_data",
    "learning_curves_data",
    "isoflop_data",
    "residuals_data",
    "render_markdown",
    "render_html",
    "write_report",
    "make_report",
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
    """

    runs: pd.DataFrame
    name: str
    source: str
    sweep: str | None = None
    config_hash: str | None = None
    tracking_uri: str | None = None
    curves: Mapping[str, pd.DataFrame] | None = None


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
    from scaling.table import load_csv

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
    from scaling.tracking import TAG_FAILURE, learning_curve, run_tags, runs_frame

    runs = runs_frame(experiment, tracking_uri=tracking_uri, status=None).reset_index(drop=True)
    # The run table has no failure column: the reason is the run's scaling.failure tag.
    runs["failure"] = [
        None if status == "FINISHED" else run_tags(run_id, tracking_uri=tracking_uri).get(TAG_FAILURE)
        for run_id, status in zip(runs["run_id"], runs["status"])
    ]
    curves = {}
    for run_id in runs.loc[runs["status"] == "FINISHED", "run_id"]:
        try:
            curves[run_id] = learning_curve(run_id, tracking_uri=tracking_uri)
        except TrackingError:  # a run that never logged eval/loss has no curve to draw
            continue
    return ReportInputs(
        runs=runs,
        name=experiment,
        source=f"MLflow experiment {experiment}",
        sweep=experiment,
        config_hash=_single_value(runs, "config_hash"),
        tracking_uri=tracking_uri,
        curves=curves,
    )


# --------------------------------------------------------------------------- figure data


def _predict(result: Any, at: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    point, (lo, hi) = result.predict(np.asarray(at, dtype=float), interval=interval)
    return (np.asarray(point, float), np.asarray(lo, float), np.asarray(hi, float))


def loss_vs_compute_data(
    result: Any,
    proxies: pd.DataFrame,
    *,
    x: str,
    y: str,
    target_x: float,
    target_y: float | None = None,
    interval: float = 0.9,
    n_points: int = 200,
) -> dict[str, Any]:
    """Data of figure 1: the proxies, the fitted law and its band out to the target.

    Parameters
    ----------
    result : FitResult
        The law fitted on ``proxies``.
    proxies : DataFrame
        The runs the law was fitted on.
    x, y : str
        Run-table columns on the axes.
    target_x : float
        Compute of the target: the curve and band run from the smallest proxy to here.
    target_y : float, optional
        The target's actual final value, when the run exists.
    interval : float
        Coverage of the band.
    n_points : int
        Points of the curve, evenly spaced in log ``x``.

    Returns
    -------
    dict
        ``proxies`` (DataFrame: run, x, y), ``curve`` (DataFrame: x, predicted, lo, hi),
        ``target`` (dict: x, predicted, lo, hi, actual or None), ``x``, ``y``, ``interval``.
    """
    xs = proxies[x].to_numpy(float)
    grid = np.geomspace(xs.min(), max(xs.max(), target_x), n_points)
    point, lo, hi = _predict(result, grid, interval)
    at_point, at_lo, at_hi = _predict(result, np.array([target_x]), interval)
    return {
        "proxies": pd.DataFrame(
            {"run": [_run_label(r) for _, r in proxies.iterrows()], "x": xs, "y": proxies[y].to_numpy(float)}
        ),
        "curve": pd.DataFrame({"x": grid, "predicted": point, "lo": lo, "hi": hi}),
        "target": {
            "x": float(target_x),
            "predicted": float(at_point[0]),
            "lo": float(at_lo[0]),
            "hi": float(at_hi[0]),
            "actual": None if target_y is None else float(target_y),
        },
        "x": x,
        "y": y,
        "interval": interval,
    }


def learning_curves_data(
    curves: Mapping[str, pd.DataFrame], runs: pd.DataFrame, *, target_id: str | None = None
) -> pd.DataFrame:
    """Data of figure 2: eval loss against tokens for every run, the target's last.

    Parameters
    ----------
    curves : dict of str to DataFrame
        Learning curves by ``run_id`` (``step``, ``tokens``, ``value``).
    runs : DataFrame
        The run table (gives each run's label and role).
    target_id : str, optional
        ``run_id`` of the target, drawn last (on top).

    Returns
    -------
    DataFrame
        Columns ``run``, ``run_id``, ``role``, ``flops``, ``tokens``, ``value``; proxies in
        increasing compute, then the target.
    """
    info = runs.set_index("run_id") if "run_id" in runs.columns else pd.DataFrame()
    parts = []
    for run_id, curve in curves.items():
        if curve is None or curve.empty or run_id not in info.index:
            continue
        row = info.loc[run_id]
        role = "target" if run_id == target_id else str(row.get("role", "proxy"))
        parts.append(
            pd.DataFrame(
                {
                    "run": _run_label({**row.to_dict(), "run_id": run_id}),
                    "run_id": run_id,
                    "role": role,
                    "flops": float(row.get("flops", math.nan)),
                    "tokens": curve["tokens"].to_numpy(float),
                    "value": curve["value"].to_numpy(float),
                }
            )
        )
    columns = ["run", "run_id", "role", "flops", "tokens", "value"]
    if not parts:
        return pd.DataFrame(columns=columns)
    data = pd.concat(parts, ignore_index=True)
    data["_last"] = data["role"] == "target"
    data = data.sort_values(["_last", "flops", "run_id", "tokens"], kind="stable")
    return data.drop(columns="_last").reset_index(drop=True)[columns]


def isoflop_data(proxies: pd.DataFrame, *, tolerance: float = 0.05, min_sizes: int = 3) -> pd.DataFrame:
    """Data of figure 3: proxies grouped into IsoFLOP profiles (same compute, several sizes).

    Parameters
    ----------
    proxies : DataFrame
        Runs with ``params``, ``tokens``, ``flops`` and ``loss``.
    tolerance : float
        Runs whose compute differs by less than this fraction share a budget.
    min_sizes : int
        A budget is an IsoFLOP profile when it has at least this many model sizes.

    Returns
    -------
    DataFrame
        Columns ``budget`` (the profile's median compute), ``params``, ``tokens``, ``loss``;
        empty when the sweep has no IsoFLOP profile.

    Examples
    --------
    >>> import pandas as pd
    >>> runs = pd.DataFrame({"params": [1, 2, 4, 8], "tokens": [8, 4, 2, 5],
    ...                      "flops": [48.0, 48.0, 48.0, 240.0], "loss": [3.1, 3.0, 3.2, 2.9]})
    >>> isoflop_data(runs)["budget"].tolist()
    [48.0, 48.0, 48.0]
    """
    columns = ["budget", "params", "tokens", "loss"]
    needed = {"params", "tokens", "flops", "loss"}
    if not needed.issubset(proxies.columns) or proxies.empty:
        return pd.DataFrame(columns=columns)
    runs = proxies.sort_values("flops").reset_index(drop=True)
    log_flops = np.log(runs["flops"].to_numpy(float))
    group, start = np.zeros(len(runs), dtype=int), log_flops[0]
    for i in range(1, len(runs)):
        if log_flops[i] - start > math.log1p(tolerance):
            group[i], start = group[i - 1] + 1, log_flops[i]
        else:
            group[i] = group[i - 1]
    runs["_group"] = group
    profiles = []
    for _, members in runs.groupby("_group"):
        if members["params"].nunique() >= min_sizes:
            members = members.sort_values("params")
            budget = float(members["flops"].median())
            profiles.append(members.assign(budget=budget)[columns])
    if not profiles:
        return pd.DataFrame(columns=columns)
    return pd.concat(profiles, ignore_index=True)


def residuals_data(result: Any, proxies: pd.DataFrame, *, x: str, y: str) -> pd.DataFrame:
    """Data of figure 4: the fit's residuals, ``log(observed / predicted)``, per proxy.

    Returns
    -------
    DataFrame
        Columns ``run``, ``x``, ``observed``, ``predicted``, ``residual``, in increasing ``x``.
    """
    xs = proxies[x].to_numpy(float)
    observed = proxies[y].to_numpy(float)
    predicted = np.asarray(result.predict(xs)[0], float)
    frame = pd.DataFrame(
        {
            "run": [_run_label(r) for _, r in proxies.iterrows()],
            "x": xs,
            "observed": observed,
            "predicted": predicted,
            "residual": np.log(observed / predicted),
        }
    )
    return frame.sort_values("x", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- content


@dataclass(frozen=True)
class Report:
    """The content of a prediction report, ready to render.

    Attributes
    ----------
    inputs : ReportInputs
        Where the runs came from.
    law : Law
        The law fitted (:func:`scaling.laws.get_law`).
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
        Fit below a cut, error above (None with ``backtest_note`` saying why).
    optimal : DataFrame or None
        Compute-optimal N and D for the target budget (None with ``optimal_note``).
    figures : dict
        Figure name to its plot data (see the ``*_data`` functions).
    notes : dict
        Figure or section name to a sentence shown instead of it (e.g. no curves in a CSV).
    date : str
        ISO date printed in the footer.
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
) -> Report:
    """Fit the law on the proxies and gather every section of the report.

    Parameters
    ----------
    inputs : ReportInputs
        The run table and provenance (:func:`inputs_from_csv`, :func:`inputs_from_experiment`).
    law : str, default "gpt4"
        Law of one compute column to fit (see :func:`scaling.laws.get_law`).
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
    from scaling.compare import MetricComparison, first_crossing
    from scaling.errors import ConfigError, FitError
    from scaling.fit import fit
    from scaling.laws import get_law

    if target is not None and target_flops is not None:
        raise ConfigError("--target and --target-flops both given; pass one of them")
    if target_flops is not None and not target_flops > 0:
        raise ConfigError(f"--target-flops = {target_flops:g} is not positive; pass a compute in FLOPs, e.g. 1e18")
    law_object = get_law(law)
    if len(law_object.x) != 1:
        raise FitError(
            f"law {law_object.name!r} reads {', '.join(law_object.x)}; the report extrapolates "
            "a law of compute, such as gpt4"
        )
    x, y = law_object.x[0], law_object.y
    if x not in inputs.runs.columns and "flops" in inputs.runs.columns:
        x = "flops"  # a CSV of someone else's runs may carry 6ND only
    split = split_runs(inputs.runs, x=x, y=y, target=target)
    result = fit(
        law_object, split.proxies, x=(x,), y=y, n_bootstrap=n_bootstrap, seed=seed,
        interval=interval, source=f"{inputs.source} (proxies)",
    )

    target_row = split.target
    notes: dict[str, str] = {}
    actual = None
    if target_flops is not None:
        target_x, target_note = float(target_flops), f"the requested budget ({x} = {target_flops:.3g})"
    elif target_row is not None and _finite(target_row.get(x)):
        target_x, target_note = float(target_row[x]), f"the target run {_run_label(target_row)}"
        actual = float(target_row[y]) if _finite(target_row.get(y)) else None
    else:
        target_x = DEFAULT_EXTRAPOLATION * float(split.proxies[x].max())
        target_note = f"{DEFAULT_EXTRAPOLATION:g}x the largest proxy (no target was given)"
    (predicted,), (lo,), (hi,) = _predict(result, np.array([target_x]), interval)

    figures: dict[str, Any] = {
        "loss_vs_compute": loss_vs_compute_data(
            result, split.proxies, x=x, y=y, target_x=target_x, target_y=actual, interval=interval
        )
    }
    curves_available = inputs.curves is not None
    target_id = None if target_row is None else target_row.get("run_id")
    if curves_available:
        curves = learning_curves_data(inputs.curves, inputs.runs, target_id=target_id)
        if curves.empty:
            notes["learning_curves"] = "No run logged an eval-loss curve."
        else:
            figures["learning_curves"] = curves
    else:
        notes["learning_curves"] = (
            f"Learning curves are not shown: this report was built from {inputs.source}, "
            "which holds final values only. Build it from the MLflow experiment to see them."
        )
    isoflop = isoflop_data(split.proxies)
    budget = _budget_6nd(split.proxies, target_row, x, target_x)
    if isoflop.empty:
        notes["isoflop"] = (
            "The sweep has no IsoFLOP runs (three or more model sizes at one compute budget)."
        )
    else:
        figures["isoflop"], notes["isoflop_law"] = _isoflop_figure(
            isoflop, split.proxies, budget, interval, n_bootstrap, seed
        )
    figures["residuals"] = residuals_data(result, split.proxies, x=x, y=y)

    prediction = None
    if actual is not None:
        curve = None if inputs.curves is None else inputs.curves.get(target_id)
        has_curve = curve is not None and not curve.empty
        prediction = MetricComparison(
            y, law_object.name, x, target_x, float(predicted), float(lo), float(hi), interval,
            actual, first_crossing(curve, float(predicted)) if has_curve else None, has_curve,
        )
    backtest, backtest_note = _backtest(law_object, split.proxies, x, y, n_bootstrap, seed)
    if backtest_note:
        notes["backtest"] = backtest_note
    optimal, notes["optimal"] = _optimal(split.proxies, budget, interval, n_bootstrap, seed)
    return Report(
        inputs, law_object, x, y, split, result, interval, target_x, target_note,
        float(predicted), float(lo), float(hi), prediction, backtest, optimal, figures, notes,
        _date(date),
    )


def _backtest(law: Any, proxies: pd.DataFrame, x: str, y: str, n_bootstrap: int, seed: int) -> tuple[pd.DataFrame | None, str]:
    """Per-cut backtest table, or None and the reason it could not be run."""
    from scaling.errors import FitError
    from scaling.fit import backtest

    try:
        result = backtest(
            law, proxies, x=(x,), y=y, n_bootstrap=n_bootstrap, seed=seed, source="backtest"
        )
    except FitError as error:
        return None, f"No backtest: {error}."
    from scaling.formatting import format_flops

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


def _budget_6nd(proxies: pd.DataFrame, target_row: pd.Series | None, x: str, target_x: float) -> float:
    """The target budget as C = 6ND, the compute Chinchilla's allocation is written in."""
    if x == "flops":
        return target_x
    if target_row is not None and _finite(target_row.get("flops")):
        return float(target_row["flops"])
    if "flops" in proxies.columns:  # convert with the proxies' ratio of 6ND to x
        return target_x * float(np.median(proxies["flops"] / proxies[x]))
    return target_x


def _isoflop_figure(
    profiles: pd.DataFrame, proxies: pd.DataFrame, budget: float, interval: float,
    n_bootstrap: int, seed: int,
) -> tuple[dict[str, Any], str]:
    """Data of figure 3 (profiles; approach 2's N_opt(C), D_opt(C)) and its sentence."""
    from scaling.errors import FitError
    from scaling.predict import approach2

    data: dict[str, Any] = {"profiles": profiles, "optima": None, "law": None}
    try:
        law = approach2(
            proxies, flops="flops", n_bootstrap=n_bootstrap, seed=seed, interval=interval,
            source="IsoFLOP runs",
        )
    except FitError as error:
        return data, f"No N_opt(C) law: {error}."
    points = law.points
    data["optima"] = pd.DataFrame(
        {
            "flops": points["flops"],
            "params_opt": points["params_opt"],
            "tokens_opt": points["flops"] / (6.0 * points["params_opt"]),
        }
    )
    grid = np.geomspace(min(points["flops"].min(), budget), max(points["flops"].max(), budget), 50)
    data["law"] = pd.DataFrame(
        {"flops": grid, "params_opt": law.params_opt(grid), "tokens_opt": law.tokens_opt(grid)}
    )
    text = (
        f"Approach 2 (IsoFLOP parabolas, {len(points['flops'])} budgets): N_opt ∝ C^a with "
        f"a = {_pm(law.a, *law.a_interval)}, D_opt ∝ C^b with b = {_pm(law.b, *law.b_interval)}; "
        f"at C = {_flops(budget)} (6ND) it gives N_opt = {_count(float(law.params_opt(budget)))} "
        f"and D_opt = {_count(float(law.tokens_opt(budget)))} tokens."
    )
    return data, text


def _optimal(
    proxies: pd.DataFrame, budget: float, interval: float, n_bootstrap: int, seed: int
) -> tuple[pd.DataFrame | None, str]:
    """Chinchilla (approach 3) allocation of the target budget: table and a sentence."""
    from scaling.errors import FitError
    from scaling.fit import fit
    from scaling.predict import compute_optimal

    try:
        result = fit(
            "chinchilla", proxies, n_bootstrap=n_bootstrap, seed=seed, interval=interval,
            source="proxies (Chinchilla fit)",
        )
    except FitError as error:
        return None, f"No allocation: {error}."
    best = compute_optimal(budget, result, interval=interval)
    table = pd.DataFrame(
        {
            "quantity": ["parameters N_opt", "tokens D_opt", "tokens per parameter", "loss at the optimum"],
            "value": [
                _count(best.params), _count(best.tokens), f"{best.tokens_per_param:.3g}",
                _pm(best.loss, *best.loss_interval),
            ],
            f"{interval:.0%} interval": [
                _range(best.params_interval, _count), _range(best.tokens_interval, _count),
                _range((best.tokens_interval[0] / best.params_interval[1],
                        best.tokens_interval[1] / best.params_interval[0]), lambda v: f"{v:.3g}"),
                _range(best.loss_interval, lambda v: f"{v:.4g}"),
            ],
        }
    )
    p = result.params_
    text = (
        f"From L(N, D) = E + A/N^alpha + B/D^beta fitted on the proxies (approach 3): "
        f"E = {p['E']:.3g}, alpha = {p['alpha']:.3g}, beta = {p['beta']:.3g}, at "
        f"C = {_flops(budget)} (6ND)."
    )
    if not result.is_valid:
        text += (
            " The fit is not valid (" + "; ".join(result.reasons_) + "): the proxies do not pin "
            "down N and D separately, so read this allocation as indicative only."
        )
    return table, text


def _range(bounds: tuple[float, float], show: Any) -> str:
    lo, hi = bounds
    return "none" if not (_finite(lo) and _finite(hi)) else f"{show(lo)} to {show(hi)}"


def _parameter_table(report: Report) -> Block:
    from scaling.formatting import format_interval

    summary = report.fit.summary()
    rows = []
    for name, p in summary["params"].items():
        lo, hi = p["lower"], p["upper"]
        shown = format_interval(p["value"], lo, hi) if lo is not None and hi is not None else f"{p['value']:.4g}"
        interval = f"{lo:.4g} to {hi:.4g}" if lo is not None and hi is not None else "none"
        bounds = f"{_bound(p['bound_lower'])} to {_bound(p['bound_upper'])}"
        rows.append([name, shown, interval, bounds, "yes" if p["at_bound"] else "no"])
    header = ["parameter", "value", f"{summary['interval']:.0%} interval", "bounds", "at bound"]
    return ("table", header, rows)


def _bound(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


def _diagnostics(report: Report) -> list[str]:
    s = report.fit.summary()
    items = [
        f"Law: {s['law']}, {s['formula']}, fitted to {s['y']} against {', '.join(s['x'])}.",
        f"Runs fitted: {s['n_points']}; starts: {s['n_starts']} ({s['n_starts_converged']} converged, "
        f"{s['n_starts_screened']} screened out); bootstrap resamples: {s['n_bootstrap']} "
        f"({s['n_bootstrap_failed']} failed).",
        f"Huber objective {s['objective']:.3g}; log residuals: root mean square "
        f"{s['rms_log_residual']:.2%}, largest {s['max_abs_log_residual']:.2%}.",
    ]
    if s["is_valid"]:
        items.append("The fit is valid: converged, no parameter at a bound, every start agrees.")
    else:
        items.append("The fit is NOT valid: " + "; ".join(s["reasons"]) + ".")
    return items


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- drawing


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    # The object-oriented API without pyplot: no global state, no GUI backend.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _plain_log_y(ax: Any) -> None:
    """Loss ticks as plain numbers (2.5, 3) rather than 2.5x10^0 on a log axis."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def draw_loss_vs_compute(data: Mapping[str, Any]) -> Any:
    """Figure 1 from :func:`loss_vs_compute_data`: log-log, proxies, law, band, target."""
    fig = _figure()
    ax = fig.add_subplot()
    curve, target = data["curve"], data["target"]
    ax.fill_between(curve["x"], curve["lo"], curve["hi"], color="C0", alpha=0.2,
                    label=f"{data['interval']:.0%} interval")
    ax.plot(curve["x"], curve["predicted"], color="C0", label="fitted law")
    ax.scatter(data["proxies"]["x"], data["proxies"]["y"], color="k", s=18, zorder=3, label="proxies")
    ax.errorbar([target["x"]], [target["predicted"]],
                yerr=[[target["predicted"] - target["lo"]], [target["hi"] - target["predicted"]]],
                fmt="o", color="C0", capsize=4, label="prediction")
    if target["actual"] is not None:
        ax.scatter([target["x"]], [target["actual"]], marker="*", s=160, color="C3", zorder=4,
                   label="target (actual)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xlabel(f"compute, {data['x']} (FLOPs)")
    ax.set_ylabel(f"final {data['y']}")
    ax.legend(fontsize="small")
    return fig


def draw_learning_curves(data: pd.DataFrame) -> Any:
    """Figure 2 from :func:`learning_curves_data`: eval loss against tokens, target on top."""
    from matplotlib import colormaps

    fig = _figure()
    ax = fig.add_subplot()
    proxies = [run for run in dict.fromkeys(data["run_id"]) if (data.loc[data["run_id"] == run, "role"] != "target").all()]
    colors = colormaps["viridis"](np.linspace(0.1, 0.9, max(len(proxies), 1)))
    for color, run_id in zip(colors, proxies):
        run = data[data["run_id"] == run_id]
        ax.plot(run["tokens"], run["value"], color=color, lw=1, label=run["run"].iloc[0])
    for run_id in data.loc[data["role"] == "target", "run_id"].unique():
        run = data[data["run_id"] == run_id]
        ax.plot(run["tokens"], run["value"], color="C3", lw=2.5, label=f"{run['run'].iloc[0]} (target)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xlabel("tokens")
    ax.set_ylabel("eval loss")
    if len(proxies) <= 12:
        ax.legend(fontsize="x-small")
    return fig


def draw_isoflop(data: Mapping[str, Any]) -> Any:
    """Figure 3: IsoFLOP profiles (loss against N per budget) and N_opt(C), D_opt(C)."""
    fig = _figure(9.6, 4.0)
    left, right = fig.subplots(1, 2)
    for i, (budget, profile) in enumerate(data["profiles"].groupby("budget")):
        color = f"C{i % 10}"
        left.plot(profile["params"], profile["loss"], "o-", color=color, label=f"C = {budget:.2g}")
        best = profile.loc[profile["loss"].idxmin()]
        left.scatter([best["params"]], [best["loss"]], marker="*", s=120, color=color, zorder=3)
    left.set_xscale("log")
    left.set_xlabel("non-embedding parameters N")
    left.set_ylabel("final loss")
    left.legend(fontsize="small")
    if data["optima"] is None:
        right.set_axis_off()
        return fig
    optima, law = data["optima"], data["law"]
    right.plot(law["flops"], law["params_opt"], color="C0", label="N_opt(C)")
    right.plot(law["flops"], law["tokens_opt"], color="C1", label="D_opt(C)")
    right.scatter(optima["flops"], optima["params_opt"], color="C0", zorder=3)
    right.scatter(optima["flops"], optima["tokens_opt"], color="C1", zorder=3)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("compute C = 6ND (FLOPs)")
    right.set_ylabel("parameters, tokens")
    right.legend(fontsize="small")
    return fig


def draw_residuals(data: pd.DataFrame) -> Any:
    """Figure 4 from :func:`residuals_data`: log(observed / predicted) against compute."""
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.5", lw=1)
    ax.scatter(data["x"], data["residual"], color="k", s=18)
    ax.set_xscale("log")
    ax.set_xlabel("compute (FLOPs)")
    ax.set_ylabel("log(observed / predicted)")
    return fig


FIGURES: dict[str, tuple[str, Any]] = {
    "loss_vs_compute": ("Loss against compute", draw_loss_vs_compute),
    "learning_curves": ("Learning curves", draw_learning_curves),
    "isoflop": ("IsoFLOP curves", draw_isoflop),
    "residuals": ("Residuals of the fit", draw_residuals),
}


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def draw_figures(report: Report) -> dict[str, bytes]:
    """PNG bytes of every figure the report has data for, by figure name."""
    return {name: figure_png(FIGURES[name][1](data)) for name, data in report.figures.items()}


# --------------------------------------------------------------------------- rendering

# A report is rendered from a list of blocks, so Markdown and HTML say exactly the same:
# ("h1"|"h2"|"p"|"footer", text), ("list", [text]), ("table", header, rows), ("img", name, alt).
Block = tuple


def _g(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _flops(value: float) -> str:
    from scaling.formatting import format_flops

    return format_flops(value, digits=3)


def _count(value: float) -> str:
    from scaling.formatting import format_count

    # Round to 3 digits first so 999,999,999.9 prints as 1B rather than 1e+03M.
    return format_count(float(f"{value:.3g}"))


def _pm(value: float, lo: float, hi: float) -> str:
    from scaling.formatting import format_interval, format_value_error

    spread = max(abs(value - lo), abs(hi - value)) if _finite(lo) and _finite(hi) else math.nan
    if not spread > 1e-9 * abs(value):  # no bootstrap, or a band of zero width
        return f"{value:.4g}"
    if not lo <= value <= hi:  # a percentile band can miss the best fit: show its reach
        return format_value_error(value, spread)
    return format_interval(value, lo, hi)


def _headline(report: Report) -> list[Block]:
    law = report.law
    blocks: list[Block] = [
        (
            "p",
            f"At {report.x} = {_flops(report.target_x)} ({report.target_note}), the law "
            f"{law.formula} fitted on {len(report.split.proxies)} proxy runs predicts a final "
            f"{report.y} of {_pm(report.predicted, report.lo, report.hi)} "
            f"({report.interval:.0%} interval {_g(report.lo, 4)} to {_g(report.hi, 4)}).",
        )
    ]
    row = report.prediction
    if row is not None:
        verdict = "inside" if row.inside else "outside"
        text = (
            f"The target run reached {_g(row.actual, 4)}: the prediction is off by "
            f"{row.relative_error * 100:+.1f}%, {verdict} the interval."
        )
        if row.crossing is not None:
            text += (
                f" Its learning curve first reached the predicted loss at {_count(row.crossing.tokens)} "
                f"tokens (step {row.crossing.step:.0f}, {row.crossing.fraction:.0%} of training)."
            )
        elif row.has_curve:
            text += " Its learning curve never reached the predicted loss."
        blocks.append(("p", text))
    return blocks


def _figure_blocks(report: Report, name: str, number: int, text: str | None = None) -> list[Block]:
    title = FIGURES[name][0]
    blocks: list[Block] = [("h2", f"{number}. {title}")]
    if name in report.figures:
        blocks.append(("img", name, title))
        if text:
            blocks.append(("p", text))
    else:
        blocks.append(("p", report.notes.get(name, "Not available.")))
    return blocks


def _frame_table(frame: pd.DataFrame) -> Block:
    def cell(value: Any) -> str:
        if isinstance(value, (bool, np.bool_)):
            return "yes" if value else "no"
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        if isinstance(value, (float, np.floating)):
            return "" if math.isnan(value) else _g(float(value), 4)
        return str(value)

    return ("table", [str(c) for c in frame.columns], [[cell(v) for v in row] for row in frame.itertuples(index=False)])


def blocks(report: Report) -> list[Block]:
    """The report as a list of blocks, rendered by :func:`render_markdown` and :func:`render_html`."""
    import scaling

    out: list[Block] = [("h1", f"Scaling report: {report.inputs.name}")]
    out += _headline(report)

    span = report.figures["loss_vs_compute"]["proxies"]["x"]
    ratio = report.target_x / float(span.max())
    out += _figure_blocks(
        report, "loss_vs_compute", 1,
        f"Proxies span {report.x} = {_flops(span.min())} to {_flops(span.max())}; the prediction is "
        f"{_g(ratio)}x the largest proxy's compute. The band is the {report.interval:.0%} "
        "bootstrap interval of the law.",
    )
    out += _figure_blocks(report, "learning_curves", 2, "Eval loss of every run; the target's curve is drawn last, in red.")
    out += _figure_blocks(report, "isoflop", 3, "Loss against model size at fixed compute; stars mark each budget's best run.")
    if "isoflop_law" in report.notes:
        out.append(("p", report.notes["isoflop_law"]))

    residuals = report.figures["residuals"]
    worst = residuals.loc[residuals["residual"].abs().idxmax()]
    out += _figure_blocks(
        report, "residuals", 4,
        f"Largest residual: {worst['residual'] * 100:+.2f}% ({worst['run']}); "
        f"root mean square {float(np.sqrt(np.mean(residuals['residual'] ** 2))) * 100:.2f}%.",
    )

    out.append(("h2", "5. Fitted parameters"))
    out.append(_parameter_table(report))
    out.append(("list", _diagnostics(report)))

    out.append(("h2", "6. Backtest"))
    if report.backtest is None:
        out.append(("p", report.notes.get("backtest", "Not available.")))
    else:
        out.append(("p", "The law fitted on the runs below each compute cut, scored on the runs above it."))
        out.append(_frame_table(report.backtest))

    out.append(("h2", "7. Compute-optimal allocation"))
    out.append(("p", report.notes["optimal"]))
    if report.optimal is not None:
        out.append(("table", list(report.optimal.columns), report.optimal.astype(str).values.tolist()))

    out.append(("h2", "8. What went in"))
    out += _inputs_blocks(report)

    inputs = report.inputs
    out.append(
        (
            "footer",
            f"scaling {scaling.__version__} · sweep {inputs.sweep or 'unknown'} · config hash "
            f"{inputs.config_hash or 'unknown'} · tracking {inputs.tracking_uri or 'none (' + inputs.source + ')'}"
            f" · {report.date}",
        )
    )
    return out


def _inputs_blocks(report: Report) -> list[Block]:
    split, x = report.split, report.x
    proxies = split.proxies
    items = [
        f"Source: {report.inputs.source}.",
        f"Proxy runs fitted: {len(proxies)}, compute spent {_flops(float(proxies[x].sum()))} FLOPs "
        f"({x}), from {_flops(float(proxies[x].min()))} to {_flops(float(proxies[x].max()))} each.",
    ]
    if split.target is not None:
        target = split.target
        spent = f", compute {_flops(float(target[x]))} FLOPs" if _finite(target.get(x)) else ""
        items.append(f"Target run: {_run_label(target)} (status {target.get('status', 'FINISHED')}{spent}).")
    else:
        items.append("Target run: none in the run table.")
    items.append(f"Runs left out: {len(split.excluded)}.")
    out: list[Block] = [("list", items)]
    if len(split.excluded):
        out.append(("table", ["run", "status", "reason"], split.excluded.astype(str).values.tolist()))
    return out


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report, *, images: Mapping[str, str] | None = None) -> str:
    """The report as Markdown; figures are linked as ``NAME.png`` beside ``report.md``.

    Parameters
    ----------
    report : Report
    images : dict of str to str, optional
        Figure name to the link written; ``NAME.png`` by default.

    Returns
    -------
    str
    """
    lines: list[str] = []
    for block in blocks(report):
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "img":
            link = (images or {}).get(block[1], f"{block[1]}.png")
            lines += [f"![{block[2]}]({link})", ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
            lines.append("|" + "|".join(" --- " for _ in header) + "|")
            lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "footer":
            lines += ["---", "", block[1], ""]
    return "\n".join(lines).rstrip("\n") + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 52rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.5; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
footer { margin-top: 2rem; border-top: 1px solid #ddd; color: #666; font-size: 0.85rem; }
"""


def render_html(report: Report, images: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page: figures as base64 data URIs, inline CSS.

    Parameters
    ----------
    report : Report
    images : dict of str to bytes
        PNG bytes by figure name (:func:`draw_figures`).

    Returns
    -------
    str
        A page that opens offline: no external stylesheet, script, font or image.
    """
    esc = html.escape
    body: list[str] = []
    title = f"Scaling report: {report.inputs.name}"
    for block in blocks(report):
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "img":
            data = base64.b64encode(images[block[1]]).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(block[2])}"></figure>')
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "footer":
            body.append(f"<footer><p>{esc(block[1])}</p></footer>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


_REPORT_FILES = ("index.html", "report.md")


def write_report(report: Report, directory: str | os.PathLike[str]) -> Path:
    """Write ``index.html``, ``report.md`` and the figures' PNGs into ``directory``.

    Everything is written into a temporary directory beside ``directory`` and renamed at
    the end, so a failure leaves no half-written report. An earlier report in ``directory``
    is replaced; any other non-empty directory is refused.

    Parameters
    ----------
    report : Report
    directory : str or path

    Returns
    -------
    Path
        ``directory``.

    Raises
    ------
    DataError
        If ``directory`` exists, is not empty and does not hold a report.
    """
    directory = Path(directory)
    if directory.exists() and (
        not directory.is_dir()
        or (any(directory.iterdir()) and not any((directory / f).exists() for f in _REPORT_FILES))
    ):
        raise DataError(
            f"{directory} exists and is not a report directory; pass another -o or remove it"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        images = draw_figures(report)
        for name, png in images.items():
            (staging / f"{name}.png").write_bytes(png)
        (staging / "report.md").write_text(render_markdown(report), encoding="utf-8")
        (staging / "index.html").write_text(render_html(report, images), encoding="utf-8")
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a report is for sharing
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, old / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def comparison_text(comparison: Any) -> str:
    """A :class:`scaling.compare.Comparison` as terminal text: the headline, then a table.

    One row per metric: predicted ± half interval, the interval, actual, relative error,
    inside or not, and where the learning curve reached the prediction.
    """
    header = ["metric", "law", "predicted", "interval", "actual", "error", "inside", "curve reached it"]
    rows = []
    for row in comparison.metrics:
        if row.crossing is not None:
            reached = f"{_count(row.crossing.tokens)} tokens ({row.crossing.fraction:.0%})"
        else:
            reached = "never" if row.has_curve else "no curve"
        rows.append([
            row.metric, row.law, _pm(row.predicted, row.lo, row.hi),
            f"{_g(row.lo, 4)} to {_g(row.hi, 4)}", _g(row.actual, 4),
            f"{row.relative_error * 100:+.1f}%", "yes" if row.inside else "no", reached,
        ])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [comparison.headline(), ""]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def make_report(
    *,
    experiment: str | None = None,
    csv: str | os.PathLike[str] | None = None,
    target: str | None = None,
    target_flops: float | None = None,
    law: str = "gpt4",
    directory: str | os.PathLike[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    tracking_uri: str | None = None,
    date: _dt.date | str | None = None,
) -> Path:
    """Build and write a report from an MLflow experiment or a CSV; log it to the experiment.

    Parameters
    ----------
    experiment : str, optional
        Sweep (MLflow experiment) to read; the report is then also logged to it as a run
        with role ``report``.
    csv : str or path, optional
        Run table as a CSV file (exactly one of ``experiment`` and ``csv``).
    target, target_flops, law, n_bootstrap, seed, date
        As for :func:`build_report`.
    directory : str or path, optional
        Where to write; ``reports/NAME/`` by default.
    tracking_uri : str, optional
        MLflow tracking URI (needed with ``experiment``).

    Returns
    -------
    Path
        The report directory.

    Raises
    ------
    ConfigError
        If neither or both of ``experiment`` and ``csv`` are given.

    Examples
    --------
    >>> make_report(csv="runs.csv", target_flops=1e21)  # doctest: +SKIP
    PosixPath('reports/runs')
    """
    from scaling.errors import ConfigError

    if (experiment is None) == (csv is None):
        raise ConfigError("give exactly one of --experiment NAME and --csv FILE")
    if experiment is not None:
        if tracking_uri is None:
            raise ConfigError("--experiment needs a tracking URI; pass --tracking-uri")
        inputs = inputs_from_experiment(experiment, tracking_uri=tracking_uri)
    else:
        inputs = inputs_from_csv(csv)
    report = build_report(
        inputs, law=law, target=target, target_flops=target_flops, n_bootstrap=n_bootstrap,
        seed=seed, date=date,
    )
    path = write_report(report, directory if directory is not None else Path("reports") / inputs.name)
    if experiment is not None:
        from scaling.tracking import log_report

        log_report(experiment, path, tracking_uri=tracking_uri, tags={"scaling.law": report.law.name})
    return path

