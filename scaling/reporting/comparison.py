"""Check the proxies' forecast against the large run once it exists.

:func:`compare` fits a law on the proxies of a sweep, predicts the target run's final loss
at the target's compute, and sets the prediction beside what the target actually reached:
the relative error, whether the actual value lies inside the prediction interval, and the
first evaluation at which the target's learning curve went below the prediction.

With a registered forecast (:mod:`scaling.reporting.forecast`) the loss is scored against it
instead of a refit, and :attr:`Comparison.basis` says which was used. The target may be a run
of the proxies' experiment, a run tracked elsewhere (:func:`compare_experiment` with
``target_uri``) or a run known by its curve and size (:func:`compare_table`,
:mod:`scaling.reporting.external`).

This module holds the logic only: it never draws and never prints. Reading the runs from
MLflow goes through :mod:`scaling.sweeps.tracking` (:func:`compare_experiment`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import DataError, FitError
from scaling.formatting import is_finite
from scaling.laws.capability import floored_accuracy, task_column
from scaling.laws.selection import run_label, split_runs

__all__ = [
    "Crossing",
    "MetricComparison",
    "Comparison",
    "first_crossing",
    "fill_tokens",
    "compare",
    "capability_columns",
    "compare_experiment",
    "compare_table",
    "mlflow_target",
    "compare_forecasts",
    "read_run_table",
]


@dataclass(frozen=True)
class Crossing:
    """The first evaluation of the target's learning curve at or below the prediction.

    Attributes
    ----------
    step, tokens : float
        Optimiser step and tokens seen at that evaluation.
    value : float
        The evaluation loss there.
    fraction : float
        ``tokens`` over the tokens of the curve's last evaluation: how far into training the
        run reached the loss the proxies predicted for its end.
    """

    step: float
    tokens: float
    value: float
    fraction: float


@dataclass(frozen=True, kw_only=True)
class MetricComparison:
    """Predicted against actual for one run-table column (the loss, or a capability metric).

    Attributes
    ----------
    metric : str
        Run-table column compared (``loss``, or a logged metric).
    law : str
        Name of the law fitted on the proxies.
    x : str
        Run-table column the law extrapolates along (``flops`` for GPT-4's law).
    target_x : float
        The target's value of ``x``.
    predicted, lo, hi : float
        Point prediction and the bounds of the ``interval`` prediction interval for one run
        (``FitResult.predict(..., band="run")``).
    interval : float
        Coverage of ``[lo, hi]`` (0.9 is the 90% interval).
    actual : float
        The target's value of ``metric``.
    crossing : Crossing or None
        Where the target's learning curve first reached the prediction; None without a
        curve or when the curve never reached it.
    has_curve : bool
        Whether a learning curve was given for this metric.
    unpredictable : str
        For a capability forecast the proxies cannot make, why
        (:attr:`scaling.laws.capability.TaskForecast.unpredictable`); empty otherwise.
    """

    metric: str
    law: str
    x: str
    target_x: float
    predicted: float
    lo: float
    hi: float
    interval: float
    actual: float
    crossing: Crossing | None = None
    has_curve: bool = False
    unpredictable: str = ""

    def predicted_text(self) -> str:
        """The prediction as printed: the value with its interval, or why there is none."""
        from scaling.laws.capability import forecast_text

        return forecast_text(self.predicted, self.lo, self.hi, self.unpredictable)

    @property
    def relative_error(self) -> float:
        """``(predicted - actual) / actual``: positive when the proxies were pessimistic."""
        return (self.predicted - self.actual) / self.actual

    @property
    def inside(self) -> bool:
        """Whether the actual value lies inside the prediction interval."""
        return bool(self.lo <= self.actual <= self.hi)

    def summary(self) -> dict[str, Any]:
        """Plain JSON-safe values of the comparison."""
        out: dict[str, Any] = {
            "metric": self.metric,
            "law": self.law,
            "x": self.x,
            "target_x": float(self.target_x),
            "predicted": float(self.predicted),
            "interval": float(self.interval),
            "lo": float(self.lo),
            "hi": float(self.hi),
            "actual": float(self.actual),
            "relative_error": float(self.relative_error),
            "inside": self.inside,
            "crossing": None,
            "predictable": not self.unpredictable,
            "unpredictable": self.unpredictable or None,
        }
        if self.crossing is not None:
            out["crossing"] = {
                "step": float(self.crossing.step),
                "tokens": float(self.crossing.tokens),
                "value": float(self.crossing.value),
                "fraction": float(self.crossing.fraction),
            }
        return out


@dataclass(frozen=True)
class Comparison:
    """The proxies' forecasts for one target run beside what it reached.

    Attributes
    ----------
    run_id : str
        The target run (its ``run_id``, else its ``run_key``, else ``"target"``).
    name : str
        What the headline calls it: the run's ``name`` when the table has one, else
        ``run_id``.
    metrics : tuple of MetricComparison
        The loss first, then any capability metric compared.
    n_proxies : int
        Proxy runs the laws were fitted on.
    fits : dict
        The fitted law for each metric, by metric name (:class:`scaling.laws.fitting.FitResult`).
    basis : str
        What the loss was scored against: ``"a refit of N proxies"`` or the registered
        forecast (:func:`scaling.reporting.forecast.forecast_label`).
    """

    run_id: str
    name: str
    metrics: tuple[MetricComparison, ...]
    n_proxies: int
    fits: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    basis: str = ""

    @property
    def loss(self) -> MetricComparison:
        """The comparison of the final loss (the first metric)."""
        return self.metrics[0]

    def error_above(self, percent: float) -> bool:
        """Whether the loss's absolute relative error exceeds ``percent`` percent."""
        return abs(self.loss.relative_error) * 100.0 > percent

    def headline(self) -> str:
        """One line: predicted against actual loss, the error and the interval verdict."""
        from scaling.formatting import format_count, format_flops, format_interval

        row = self.loss
        verdict = "inside" if row.inside else "outside"
        line = (
            f"{self.name}: predicted {row.metric} "
            f"{format_interval(row.predicted, row.lo, row.hi)} at {row.x} = "
            f"{format_flops(row.target_x)}, actual {row.actual:.4g}: error "
            f"{row.relative_error * 100:+.1f}%, {verdict} the {row.interval:.0%} interval"
        )
        if row.crossing is not None:
            line += (
                "; the learning curve reached the prediction at "
                f"{format_count(row.crossing.tokens)} tokens "
                f"({row.crossing.fraction:.0%} of training)"
            )
        elif row.has_curve:
            line += "; the learning curve never reached the prediction"
        basis = self.basis or f"a refit of {self.n_proxies} proxies"
        return line + f"; scored against {basis}"

    def summary(self) -> dict[str, Any]:
        """Plain JSON-safe values: the target, the proxies used and every metric compared."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "n_proxies": int(self.n_proxies),
            "basis": self.basis or f"a refit of {self.n_proxies} proxies",
            "headline": self.headline(),
            "metrics": [m.summary() for m in self.metrics],
        }


def first_crossing(curve: pd.DataFrame, threshold: float) -> Crossing | None:
    """Find the first evaluation of a learning curve at or below ``threshold``.

    Parameters
    ----------
    curve : DataFrame
        Columns ``step``, ``tokens`` and ``value`` (as :func:`scaling.sweeps.tracking.learning_curve`
        returns), one row per evaluation.
    threshold : float
        The predicted final loss.

    Returns
    -------
    Crossing or None
        None when no evaluation reached the threshold or the curve is empty.

    Examples
    --------
    >>> import pandas as pd
    >>> curve = pd.DataFrame({"step": [1, 2, 3, 4], "tokens": [100, 200, 300, 400],
    ...                       "value": [4.0, 3.0, 2.5, 2.4]})
    >>> first_crossing(curve, 2.6)
    Crossing(step=3.0, tokens=300.0, value=2.5, fraction=0.75)
    >>> first_crossing(curve, 2.0) is None
    True
    """
    points = curve.dropna(subset=["value"]).sort_values("step")
    if points.empty:
        return None
    last_tokens = float(points["tokens"].iloc[-1])
    reached = points[points["value"] <= threshold]
    if reached.empty:
        return None
    first = reached.iloc[0]
    fraction = float(first["tokens"]) / last_tokens if last_tokens > 0 else math.nan
    return Crossing(float(first["step"]), float(first["tokens"]), float(first["value"]), fraction)


def fill_tokens(curve: pd.DataFrame, total_tokens: float | None = None) -> pd.DataFrame:
    """Give every evaluation of a learning curve its tokens seen.

    Tokens are logged with the training metrics, which need not share steps with the
    evaluations, so some rows come without them. A run's batch is fixed, so tokens are
    ``step`` times the tokens per step seen where both are known; with none known, the run's
    total tokens over its last step.

    Parameters
    ----------
    curve : DataFrame
        Columns ``step``, ``tokens`` (NaN where unknown) and ``value``.
    total_tokens : float, optional
        Tokens of the whole run (the run table's ``tokens``), used when no row has tokens.

    Returns
    -------
    DataFrame
        A copy with ``tokens`` filled where it can be.

    Examples
    --------
    >>> import pandas as pd
    >>> curve = pd.DataFrame({"step": [10, 20, 30], "tokens": [None, 4000.0, None],
    ...                       "value": [4.0, 3.0, 2.5]})
    >>> fill_tokens(curve)["tokens"].tolist()
    [2000.0, 4000.0, 6000.0]
    >>> fill_tokens(curve.assign(tokens=None), total_tokens=9000)["tokens"].tolist()
    [3000.0, 6000.0, 9000.0]
    """
    out = curve.copy()
    steps = out["step"].to_numpy(float)
    tokens = pd.to_numeric(out["tokens"], errors="coerce").to_numpy(float)
    known = np.isfinite(tokens) & (steps > 0)
    if known.any():
        per_step = float(np.median(tokens[known] / steps[known]))
    elif is_finite(total_tokens) and len(steps) and steps.max() > 0:
        per_step = float(total_tokens) / float(steps.max())
    else:
        return out
    out["tokens"] = np.where(np.isfinite(tokens), tokens, steps * per_step)
    return out


def _target_name(target_row: Mapping[str, Any]) -> str:
    for key in ("run_id", "run_key"):
        value = target_row.get(key)
        if isinstance(value, str) and value:
            return value
    return "target"


def _target_value(target_row: Mapping[str, Any], column: str, name: str, fix: str) -> float:
    value = target_row.get(column)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        shown = f"{float(value)}" if isinstance(value, (float, np.floating)) else repr(value)
        raise DataError(f"target run {name}: {column} = {shown} is missing; {fix}")
    return number


def _predict_one(result: Any, at: float, interval: float) -> tuple[float, float, float]:
    # The band for one new run (the law's uncertainty and the proxies' scatter around it):
    # the target is one run, so that is the band its value should fall in.
    point, (lo, hi) = result.predict(np.array([at]), interval=interval, band="run")
    return float(np.ravel(point)[0]), float(np.ravel(lo)[0]), float(np.ravel(hi)[0])


def compare(
    proxies_frame: pd.DataFrame,
    target_row: Mapping[str, Any] | pd.Series,
    *,
    law: str = "gpt4",
    x: str | None = None,
    curve: pd.DataFrame | None = None,
    metrics: Mapping[str, str] | None = None,
    interval: float = 0.9,
    n_bootstrap: int = 1000,
    seed: int = 0,
    forecast: Mapping[str, Any] | None = None,
) -> Comparison:
    """Fit a law on the proxies and compare its forecast with the target run.

    Parameters
    ----------
    proxies_frame : DataFrame
        The run table of the proxies (finished runs only), with the law's columns.
    target_row : mapping or Series
        One row of the run table for the large run: it needs the law's ``x`` column and a
        final ``loss``.
    law : str, default "gpt4"
        Name of the law fitted to the loss (see :func:`scaling.laws.forms.get_law`).
    x : str, optional
        Run-table column to extrapolate along; the law's own default when None.
    curve : DataFrame, optional
        The target's learning curve (``step``, ``tokens``, ``value``); gives the point
        where the run reached the prediction.
    metrics : mapping of str to str, optional
        Capability metrics to compare as well: run-table column to law name.
    interval : float, default 0.9
        Coverage of the prediction interval.
    n_bootstrap : int, default 1000
        Bootstrap resamples for the intervals.
    seed : int, default 0
        Seed of the bootstrap.
    forecast : mapping, optional
        A registered forecast (:mod:`scaling.reporting.forecast`): the loss is scored against
        its prediction and interval, and no law is refitted for the loss.

    Returns
    -------
    Comparison

    Raises
    ------
    DataError
        If the proxies lack a column, or the target lacks the ``x`` value or the final value
        of a compared metric.
    FitError
        If a law cannot be fitted to the proxies (too few runs, bad values).

    Examples
    --------
    >>> comparison = compare(proxies, runs.loc[runs.role == "target"].iloc[0])  # doctest: +SKIP
    >>> print(comparison.headline())  # doctest: +SKIP
    """
    from scaling.laws.fitting import fit
    from scaling.laws.forms import get_law
    from scaling.table import require_columns

    row = dict(target_row)
    name = _target_name(row)
    wanted = {"loss": law, **dict(metrics or {})}
    rows: list[MetricComparison] = []
    fits: dict[str, Any] = {}
    basis = ""
    for metric, law_name in wanted.items():
        if metric == "loss" and forecast is not None:
            rows.append(_forecast_row(forecast, row, name, curve))
            basis = _forecast_basis(forecast, rows[-1].target_x)
            continue
        law_object = get_law(law_name)
        if len(law_object.x) != 1 and x is None:
            raise FitError(
                f"law {law_name!r} reads {', '.join(law_object.x)}; compare a law of one "
                "column, such as gpt4 (compute), or pass x"
            )
        x_column = x or law_object.x[0]
        require_columns(proxies_frame, [x_column, metric], "proxies")
        actual = _target_value(
            row, metric, name, "wait for the run to finish, or pick a run that has finished"
        )
        target_x = _target_value(
            row, x_column, name, f"the run table needs the target's {x_column} to predict it"
        )
        result = fit(
            law_object, proxies_frame, x=(x_column,), y=metric, n_bootstrap=n_bootstrap,
            seed=seed, interval=interval, source="proxies",
        )
        predicted, lo, hi = _predict_one(result, target_x, interval)
        crossing = None
        has_curve = metric == "loss" and curve is not None and not curve.empty
        if has_curve:
            crossing = first_crossing(curve, predicted)
        rows.append(
            MetricComparison(
                metric=metric, law=law_name, x=x_column, target_x=target_x, predicted=predicted,
                lo=lo, hi=hi, interval=interval, actual=actual, crossing=crossing,
                has_curve=has_curve,
            )
        )
        fits[metric] = result
    return Comparison(name, run_label(row) if row.get("name") else name, tuple(rows),
                      len(proxies_frame), fits, basis)


def _forecast_row(
    forecast: Mapping[str, Any], row: Mapping[str, Any], name: str, curve: pd.DataFrame | None
) -> MetricComparison:
    """The loss of the target against a registered forecast's prediction and interval."""
    actual = _target_value(
        row, "loss", name, "wait for the run to finish, or pick a run that has finished"
    )
    x_column = str(forecast["x"])
    target_x = float(row[x_column]) if is_finite(row.get(x_column)) else float(forecast["target_x"])
    predicted = float(forecast["predicted"])
    has_curve = curve is not None and not curve.empty
    return MetricComparison(
        metric="loss", law=str(forecast["law"]), x=x_column, target_x=target_x,
        predicted=predicted, lo=float(forecast["lo"]), hi=float(forecast["hi"]),
        interval=float(forecast["interval"]), actual=actual,
        crossing=first_crossing(curve, predicted) if has_curve else None, has_curve=has_curve,
    )


def _forecast_basis(forecast: Mapping[str, Any], target_x: float) -> str:
    from scaling.reporting.forecast import check_target_x, forecast_label

    note = check_target_x(dict(forecast), target_x)
    return forecast_label(dict(forecast)) + (f" ({note})" if note else "")


def capability_columns(frame: pd.DataFrame) -> list[str]:
    """Run-table columns that hold a capability metric the ``capability`` law predicts.

    These are the columns named like the law's ``y`` (``neg_log_pass_rate``), bare or with a
    prefix (``final_neg_log_pass_rate``, ``humaneval_neg_log_pass_rate``), with a value for
    at least one run.

    Examples
    --------
    >>> import pandas as pd
    >>> capability_columns(pd.DataFrame({"loss": [3.0], "humaneval_neg_log_pass_rate": [2.1]}))
    ['humaneval_neg_log_pass_rate']
    """
    from scaling.laws.forms import get_law

    suffix = get_law("capability").y
    return [
        str(column)
        for column in frame.columns
        if (column == suffix or str(column).endswith("_" + suffix)) and frame[column].notna().any()
    ]


def compare_experiment(
    experiment: str,
    target: str,
    *,
    tracking_uri: str,
    law: str = "gpt4",
    metrics: Sequence[str] | None = None,
    interval: float = 0.9,
    n_bootstrap: int = 1000,
    seed: int = 0,
    fit_range: str = "all",
    target_uri: str | None = None,
    target_experiment: str | None = None,
    forecast: Mapping[str, Any] | None = None,
) -> Comparison:
    """Read a sweep's proxies and one target run from MLflow and :func:`compare` them.

    Parameters
    ----------
    experiment : str
        MLflow experiment (the sweep name).
    target : str
        MLflow run id of the large run.
    tracking_uri : str
        MLflow tracking URI.
    law : str, default "gpt4"
        Law fitted to the loss.
    metrics : sequence of str, optional
        Capability-metric columns compared with the ``capability`` law as well; by default
        every column :func:`capability_columns` finds outside the tasks the runs were scored
        on, whose forecasts (:mod:`scaling.laws.capability`: GPT-4's form and the two-step
        accuracy, fitted on every finished proxy) are always compared.
    interval, n_bootstrap, seed, forecast
        As for :func:`compare`.
    fit_range : {"all", "auto"}
        As for :func:`split_runs`.
    target_uri, target_experiment : str, optional
        Where the target run is tracked, when not beside the proxies (another tracking
        server or database, another experiment); each defaults to the proxies' own.

    Returns
    -------
    Comparison

    Raises
    ------
    TrackingError
        If the experiment does not exist.
    DataError
        If the experiment has no run ``target``, or the target has no final loss.
    """
    from scaling.sweeps.tracking import runs_frame

    runs = runs_frame(experiment, tracking_uri=tracking_uri, status=None)
    uri, where = target_uri or tracking_uri, target_experiment or experiment
    target_runs = runs if (uri, where) == (tracking_uri, experiment) else runs_frame(
        where, tracking_uri=uri, status=None)
    target_row, curve = mlflow_target(target_runs, target, experiment=where, tracking_uri=uri)
    return compare_table(
        runs[runs["run_id"] != target], target_row, curve=curve, law=law, metrics=metrics,
        interval=interval, n_bootstrap=n_bootstrap, seed=seed, fit_range=fit_range,
        forecast=forecast,
    )


def mlflow_target(
    runs: pd.DataFrame, target: str, *, experiment: str, tracking_uri: str
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The run-table row of run ``target`` of ``runs`` and its eval curve (None without one).

    Raises
    ------
    DataError
        If ``runs`` has no run ``target``.
    """
    from scaling.errors import TrackingError
    from scaling.sweeps.tracking import learning_curve

    match = runs[runs["run_id"] == target]
    if match.empty:
        raise DataError(
            f"experiment {experiment!r} has no run {target!r}; pass the MLflow run id of the "
            "large run (see the MLflow UI)"
        )
    row = match.iloc[0].to_dict()
    try:
        curve = fill_tokens(learning_curve(target, tracking_uri=tracking_uri), row.get("tokens"))
    except TrackingError:  # the run never logged an eval curve: compare final values only
        curve = None
    return row, curve


def compare_table(
    runs: pd.DataFrame, target_row: Mapping[str, Any], *, curve: pd.DataFrame | None = None,
    law: str = "gpt4", metrics: Sequence[str] | None = None, interval: float = 0.9,
    n_bootstrap: int = 1000, seed: int = 0, fit_range: str = "all",
    forecast: Mapping[str, Any] | None = None,
) -> Comparison:  # fmt: skip
    """Compare a target run (from anywhere) with the proxies of a run table.

    ``runs`` is the proxies' run table without the target (its runs with role ``target`` are
    left out); the target's value of the law's column is worked out from its size when
    missing (:func:`scaling.reporting.forecast.law_x_value`). Other arguments as for
    :func:`compare_experiment`.
    """
    from scaling.laws.forms import get_law
    from scaling.reporting.forecast import law_x_value

    x = get_law(str(forecast["law"]) if forecast is not None else law).x[0]
    pool = runs[runs["role"] != "target"] if "role" in runs.columns else runs
    proxies = split_runs(pool, x=x, y="loss", fit_range=fit_range, law=law).proxies
    row = dict(target_row)
    if not is_finite(row.get(x)) and is_finite(row.get("loss")):  # else compare() says what lacks
        row[x], _ = law_x_value(x, row, proxies)
    if metrics is None:  # the tasks' own columns are forecast below, both ways
        metrics = [c for c in capability_columns(proxies)
                   if is_finite(row.get(c)) and not c.startswith("task_")]
    comparison = compare(
        proxies, row, law=law, curve=curve, metrics={m: "capability" for m in metrics},
        interval=interval, n_bootstrap=n_bootstrap, seed=seed, forecast=forecast,
    )
    return _with_tasks(comparison, pool, row, x=x, interval=interval, n_bootstrap=n_bootstrap,
                       seed=seed)


def _with_tasks(comparison: Comparison, proxies: pd.DataFrame, target_row: Any, **settings: Any) -> Comparison:
    """The comparison with each capability task's forecasts (every finished proxy scored on
    it, :func:`scaling.laws.capability.forecast_tasks`) against the target's scores appended."""
    from dataclasses import replace

    from scaling.laws.capability import forecast_tasks
    from scaling.reporting.comparison import compare_forecasts

    x = settings.pop("x")
    if not is_finite(target_row.get(x)):
        return comparison
    forecasts, _ = forecast_tasks(proxies, float(target_row[x]), x=x, **settings)
    rows = tuple(compare_forecasts(forecasts, target_row))
    return replace(comparison, metrics=comparison.metrics + rows)


def compare_forecasts(forecasts: Sequence[Any], target_row: Mapping[str, Any]) -> list:
    """Each capability forecast (:class:`~scaling.laws.capability.TaskForecast`) beside the
    target run's value, as :class:`MetricComparison` rows (accuracy floored as it was fitted). Forecasts whose metric the target lacks, or
    holds as 0, are left out (a relative error needs a positive value).
    """
    rows = []
    for forecast in forecasts:
        actual = target_row.get(forecast.column)
        if not is_finite(actual):
            continue
        actual = float(actual)
        if forecast.metric == "accuracy":
            items = target_row.get(task_column(forecast.task, "items"))
            actual = float(floored_accuracy(actual, items)) if is_finite(items) else actual
        if actual <= 0:
            continue
        rows.append(MetricComparison(
            metric=forecast.column, law=forecast.method, x=forecast.x, target_x=forecast.target_x,
            predicted=forecast.predicted, lo=forecast.lo, hi=forecast.hi,
            interval=forecast.interval, actual=actual, unpredictable=forecast.unpredictable,
        ))  # fmt: skip
    return rows


def read_run_table(
    csv: str | None, experiment: str | None, *, tracking_uri: str
) -> tuple[pd.DataFrame, str]:
    """The run table and a name for it (for messages), from a CSV file or an MLflow experiment.

    Exactly one of ``csv`` and ``experiment`` is given; ``tracking_uri`` is read with
    ``experiment`` only.

    Raises
    ------
    ConfigError
        If neither or both are given.
    DataError, TrackingError
        If the file is not a run table, or the experiment cannot be read.
    """
    from scaling.errors import ConfigError

    if (csv is None) == (experiment is None):
        raise ConfigError("give exactly one of --csv FILE or --experiment NAME")
    if csv is not None:
        from scaling.table import load_csv

        return load_csv(csv), str(csv)
    from scaling.sweeps.tracking import runs_frame

    return runs_frame(experiment, tracking_uri=tracking_uri), f"experiment {experiment!r}"
