"""Capability forecasts: a task's score at a larger budget, from the proxies' scores.

Each task the proxies were scored on (:mod:`scaling.evals.scoring`, run-table columns
``task_<name>_<metric>``) is forecast two ways, side by side:

1. **GPT-4's form**: −E[log pass_rate] = α·C^(−k) (law ``capability``), fitted to the task's
   ``neg_log_pass_rate`` against compute;
2. **two steps** (Llama 3, the OLMo ladder): compute -> the task's NLL of the correct answer
   (law ``gpt4``, a·C^b + c), then NLL -> accuracy (law ``sigmoid``), composed by
   :func:`scaling.laws.allocation.two_step`, whose band pairs the bootstrap draws of both steps.

Bands are for one run's value (the law's bootstrap and the proxies' scatter around it), as
the loss forecast's are: the target is one run.

The sigmoid is fitted on log residuals, so it needs positive accuracies: an accuracy of 0
(no item right) is fitted, and compared, as half an item right, 0.5 / items.

A forecast can say nothing: a sigmoid fitted where the proxies' accuracy does not move puts
any value in its band. :func:`unpredictable_reason` decides, and
:attr:`TaskForecast.unpredictable` carries the reason; every place that prints a forecast
(:meth:`TaskForecast.text`) then says "not predictable from these proxies (REASON)" instead of
a number. A forecast is not predictable when

- the proxies show no trend: their values hardly move (accuracy spread below
  :data:`MIN_ACCURACY_SPREAD` or twice the binomial standard error of the items, whichever is
  larger; −E[log pass_rate] within :data:`MIN_LOG_SPREAD` in log), or do not move with compute
  one way (Spearman's rank correlation with compute below :data:`MIN_RANK_CORRELATION` in
  absolute value);
- or its interval spans more than :data:`MAX_INTERVAL_SHARE` of the metric's range, [0, 1]
  for accuracy and for the pass rate exp(−(−E[log pass_rate])).

This module reads no files and no MLflow: it takes a run table, as :mod:`scaling.laws.fitting` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import FitError

__all__ = [
    "TaskForecast",
    "task_column",
    "metric_column",
    "task_names",
    "floored_accuracy",
    "forecast_text",
    "unpredictable_reason",
    "forecast_task",
    "forecast_tasks",
    "forecast_tasks_for_fit",
]

NLL_LAW = "gpt4"  # step 1, compute -> task NLL: the loss's own law, with its irreducible term
METRIC_LAW = "sigmoid"  # step 2, task NLL -> accuracy
TWO_STEP = f"{NLL_LAW}->{METRIC_LAW}"

# When a forecast says nothing (see the module docstring).
MAX_INTERVAL_SHARE = 0.5  # of the metric's range [0, 1] (accuracy, pass rate)
MIN_ACCURACY_SPREAD = 0.05  # max - min of the proxies' accuracy
MIN_LOG_SPREAD = 0.05  # log(max / min) of the proxies' -E[log pass_rate]
MIN_RANK_CORRELATION = 0.5  # |Spearman| of the proxies' metric against compute


def task_column(task: str, metric: str) -> str:
    """The run-table column of a task's metric (MLflow's ``task/copy/nll`` -> ``task_copy_nll``).

    Examples
    --------
    >>> task_column("copy", "neg_log_pass_rate")
    'task_copy_neg_log_pass_rate'
    """
    return f"task_{task}_{metric}"


def metric_column(name: str | None) -> str | None:
    """A metric as logged (``task/copy/accuracy``) to its run-table column (``task_copy_accuracy``).

    Examples
    --------
    >>> metric_column("task/copy/neg_log_pass_rate")
    'task_copy_neg_log_pass_rate'
    >>> metric_column("loss"), metric_column(None)
    ('loss', None)
    """
    return None if name is None else name.replace("/", "_")


def task_names(frame: pd.DataFrame) -> list[str]:
    """Tasks with the columns a forecast needs (accuracy, items, nll, neg_log_pass_rate), in
    the order their columns come.

    Examples
    --------
    >>> columns = ["task_copy_" + m for m in ("accuracy", "items", "nll", "neg_log_pass_rate")]
    >>> task_names(pd.DataFrame(columns=["loss", *columns]))
    ['copy']
    """
    names = []
    for column in frame.columns:
        text = str(column)
        if text.startswith("task_") and text.endswith("_neg_log_pass_rate"):
            name = text[len("task_") : -len("_neg_log_pass_rate")]
            needed = [task_column(name, m) for m in ("accuracy", "items", "nll")]
            if all(c in frame.columns for c in needed):
                names.append(name)
    return names


@dataclass(frozen=True)
class TaskForecast:
    """One task metric predicted at one budget.

    Attributes
    ----------
    task : str
    metric : {"neg_log_pass_rate", "accuracy"}
    column : str
        Its run-table column.
    method : str
        ``capability`` (GPT-4's form) or ``gpt4->sigmoid`` (the two-step chain).
    x : str
        Run-table column of compute the forecast extrapolates along.
    target_x : float
    predicted, lo, hi : float
        Point forecast and the bounds of the ``interval`` band.
    interval : float
    n_proxies : int
        Runs the law(s) were fitted on.
    fits : dict
        The fitted laws by step (``capability``, or ``nll`` and ``accuracy``).
    unpredictable : str
        Why the proxies cannot predict this metric (:func:`unpredictable_reason`); empty when
        they can.
    """

    task: str
    metric: str
    column: str
    method: str
    x: str
    target_x: float
    predicted: float
    lo: float
    hi: float
    interval: float
    n_proxies: int
    fits: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    unpredictable: str = ""

    @property
    def predictable(self) -> bool:
        """Whether the forecast says something (see :func:`unpredictable_reason`)."""
        return not self.unpredictable

    def text(self) -> str:
        """The forecast as printed everywhere: the value with its interval, or
        ``not predictable from these proxies (REASON)``."""
        return forecast_text(self.predicted, self.lo, self.hi, self.unpredictable)

    def summary(self) -> dict[str, Any]:
        """Plain JSON-safe values (NaN bounds become None)."""
        def safe(value: float) -> float | None:
            return float(value) if np.isfinite(value) else None

        return {
            "task": self.task, "metric": self.metric, "column": self.column,
            "method": self.method, "x": self.x, "target_x": float(self.target_x),
            "predicted": float(self.predicted), "lo": safe(self.lo), "hi": safe(self.hi),
            "interval": self.interval, "n_proxies": int(self.n_proxies),
            "fits_valid": {step: bool(fit.is_valid) for step, fit in self.fits.items()},
            "predictable": self.predictable, "unpredictable": self.unpredictable or None,
        }  # fmt: skip


def forecast_text(predicted: float, lo: float, hi: float, unpredictable: str = "") -> str:
    """A capability forecast as text: ``value +up/-down``, or the reason it says nothing.

    Examples
    --------
    >>> forecast_text(0.62, 0.55, 0.7)
    '0.62 +0.08/-0.07'
    >>> forecast_text(1.0, 0.01, 1.0, "its 90% interval spans 0.01 to 1")
    'not predictable from these proxies (its 90% interval spans 0.01 to 1)'
    """
    from scaling.formatting import format_band

    if unpredictable:
        return f"not predictable from these proxies ({unpredictable})"
    return format_band(predicted, lo, hi)


def unpredictable_reason(
    metric: str, compute: Any, values: Any, *, lo: float, hi: float, interval: float,
    items: float | None = None,
) -> str:  # fmt: skip
    """Why the proxies' scores cannot predict ``metric``, or ``""`` when they can.

    Parameters
    ----------
    metric : {"accuracy", "neg_log_pass_rate"}
    compute, values : array-like
        The proxies' compute and their scores on the metric (accuracy as scored, 0 as 0).
    lo, hi : float
        The forecast's interval (NaN without a bootstrap: not judged).
    interval : float
        Its level, for the message.
    items : float, optional
        Items per score, for the binomial noise of an accuracy.

    Returns
    -------
    str
        The first rule that fails (see the module docstring), as a phrase.

    Examples
    --------
    >>> flops = [1e12, 1e13, 1e14, 1e15]
    >>> unpredictable_reason("accuracy", flops, [0.2, 0.35, 0.55, 0.7], lo=0.75, hi=0.85, interval=0.9)
    ''
    >>> unpredictable_reason("accuracy", flops, [0.04, 0.03, 0.05, 0.04], lo=0.01, hi=1.0,
    ...                      interval=0.9, items=100)
    "the proxies' accuracy hardly moves: 0.03 to 0.05"
    >>> unpredictable_reason("accuracy", flops, [0.1, 0.15, 0.2, 0.18], lo=0.1, hi=0.4,
    ...                      interval=0.9, items=32)
    "the proxies' accuracy hardly moves: 0.1 to 0.2, within the noise of 32 items"
    >>> unpredictable_reason("accuracy", flops, [0.2, 0.6, 0.3, 0.5], lo=0.3, hi=0.6, interval=0.9)
    "the proxies' accuracy does not move one way with compute (rank correlation 0.40)"
    >>> unpredictable_reason("accuracy", flops, [0.2, 0.35, 0.55, 0.7], lo=0.2, hi=1.0, interval=0.9)
    'its 90% interval, 0.2 to 1, spans 80% of the range of accuracy'
    """
    compute = np.asarray(compute, dtype=float)
    values = np.asarray(values, dtype=float)
    name = "accuracy" if metric == "accuracy" else "-E[log pass_rate]"
    if metric == "accuracy":
        spread = float(values.max() - values.min())
        mean = float(np.clip(values.mean(), 0.0, 1.0))
        noise = 2.0 * np.sqrt(mean * (1 - mean) / items) if items and items > 0 else 0.0
        if spread < max(MIN_ACCURACY_SPREAD, noise):
            within = f", within the noise of {items:.0f} items" if noise > MIN_ACCURACY_SPREAD else ""
            return (f"the proxies' accuracy hardly moves: {values.min():.2g} to "
                    f"{values.max():.2g}{within}")
    elif values.min() > 0 and np.log(values.max() / values.min()) < MIN_LOG_SPREAD:
        return (f"the proxies' {name} hardly moves: {values.min():.3g} to {values.max():.3g}")
    if len(values) > 2:
        rho = pd.Series(compute).corr(pd.Series(values), method="spearman")
        if not abs(rho) >= MIN_RANK_CORRELATION:  # NaN (constant values) fails too
            return (f"the proxies' {name} does not move one way with compute (rank "
                    f"correlation {rho:.2f})")
    if np.isfinite(lo) and np.isfinite(hi):
        # The share of the metric's range [0, 1] the interval covers: accuracy itself, and
        # the pass rate exp(-value) for -E[log pass_rate].
        share = hi - lo if metric == "accuracy" else float(np.exp(-lo) - np.exp(-hi))
        if share > MAX_INTERVAL_SHARE:
            where = "accuracy" if metric == "accuracy" else "the pass rate"
            return (f"its {interval:.0%} interval, {lo:.2g} to {hi:.2g}, spans {share:.0%} of "
                    f"the range of {where}")
    return ""


def _usable(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Proxies (not the target) with finite values in ``columns``, accuracy floored."""
    from scaling.table import coerce_numeric, finished, require_columns

    require_columns(frame, columns, "run table")
    table = coerce_numeric(frame, columns, "run table")
    if "role" in table.columns:
        table = table[table["role"].astype(str) != "target"]
    table = table[finished(table)]
    return table[np.isfinite(table[list(columns)].to_numpy(dtype=float)).all(axis=1)]


def floored_accuracy(accuracy: Any, items: Any) -> Any:
    """Accuracy with 0 read as half an item right (the sigmoid is fitted on log residuals).

    Examples
    --------
    >>> float(floored_accuracy(0.0, 100)), float(floored_accuracy(0.25, 100))
    (0.005, 0.25)
    """
    return np.maximum(accuracy, 0.5 / np.asarray(items, dtype=float))


def forecast_task(
    proxies: pd.DataFrame, task: str, target_x: float, *, x: str = "flops_exact",
    interval: float = 0.9, n_bootstrap: int = 1000, seed: int = 0,
) -> list[TaskForecast]:  # fmt: skip
    """Forecast one task at ``target_x``: GPT-4's form, then the two-step accuracy.

    Parameters
    ----------
    proxies : DataFrame
        Run table with ``x`` and the task's columns; runs with role ``target``, unfinished
        runs and runs without the task's scores are left out.
    task : str
    target_x : float
        Compute (in column ``x``) of the run to forecast.
    x : str
        Compute column, ``flops_exact`` or ``flops``.
    interval : float
        Coverage of the bands, for one run's value: the bootstrap of the fits (paired through
        both steps of the chain) and the proxies' scatter around each law.
    n_bootstrap, seed
        As for :func:`scaling.laws.fitting.fit`.

    Returns
    -------
    list of TaskForecast
        ``neg_log_pass_rate`` (law ``capability``) and ``accuracy`` (two steps), each with
        :attr:`TaskForecast.unpredictable` set where the proxies cannot predict it.

    Raises
    ------
    FitError
        If too few proxies have the task's scores, or a law cannot be fitted.
    """
    from scaling.laws.fitting import fit
    from scaling.laws.prediction import two_step

    columns = {m: task_column(task, m) for m in ("neg_log_pass_rate", "nll", "accuracy", "items")}
    table = _usable(proxies, [x, *columns.values()])
    source = f"proxies' '{task}' scores"
    settings = dict(n_bootstrap=n_bootstrap, seed=seed, interval=interval, source=source)
    capability = fit("capability", table, x=(x,), y=columns["neg_log_pass_rate"], **settings)
    point, (lo, hi) = capability.predict(np.array([target_x]), interval=interval, band="run")
    common = dict(x=x, target_x=float(target_x), interval=interval, n_proxies=len(table))
    compute, items = table[x].to_numpy(float), float(table[columns["items"]].median())
    forecasts = [TaskForecast(
        task, "neg_log_pass_rate", columns["neg_log_pass_rate"], "capability",
        predicted=float(point[0]), lo=float(lo[0]), hi=float(hi[0]),
        fits={"capability": capability}, **common,
        unpredictable=unpredictable_reason(
            "neg_log_pass_rate", compute, table[columns["neg_log_pass_rate"]], lo=float(lo[0]),
            hi=float(hi[0]), interval=interval),
    )]  # fmt: skip
    raw_accuracy = table[columns["accuracy"]].to_numpy(float)  # judged as scored, 0 as 0
    table = table.assign(**{columns["accuracy"]: floored_accuracy(
        table[columns["accuracy"]], table[columns["items"]])})  # fmt: skip
    nll = fit(NLL_LAW, table, x=(x,), y=columns["nll"], **settings)
    accuracy = fit(METRIC_LAW, table, x=(columns["nll"],), y=columns["accuracy"], **settings)
    point, (lo, hi) = two_step(nll, accuracy, np.array([target_x]), interval=interval, band="run")
    point, lo, hi = (np.minimum(v, 1.0) for v in (point, lo, hi))  # the sigmoid may pass 1
    forecasts.append(TaskForecast(
        task, "accuracy", columns["accuracy"], TWO_STEP, predicted=float(point[0]),
        lo=float(lo[0]), hi=float(hi[0]), fits={"nll": nll, "accuracy": accuracy}, **common,
        unpredictable=unpredictable_reason(
            "accuracy", compute, raw_accuracy, lo=float(lo[0]), hi=float(hi[0]),
            interval=interval, items=items),
    ))  # fmt: skip
    return forecasts


def forecast_tasks(
    proxies: pd.DataFrame, target_x: float, *, tasks: Sequence[str] | None = None,
    x: str = "flops_exact", interval: float = 0.9, n_bootstrap: int = 1000, seed: int = 0,
) -> tuple[list[TaskForecast], dict[str, str]]:  # fmt: skip
    """Forecast every task of the run table (or ``tasks``) at ``target_x``.

    Returns
    -------
    forecasts : list of TaskForecast
        Two per task that could be fitted (see :func:`forecast_task`).
    skipped : dict of str to str
        Tasks that could not be fitted, with the reason.
    """
    forecasts: list[TaskForecast] = []
    skipped: dict[str, str] = {}
    for task in task_names(proxies) if tasks is None else tasks:
        try:
            forecasts += forecast_task(
                proxies, task, target_x, x=x, interval=interval, n_bootstrap=n_bootstrap,
                seed=seed,
            )
        except FitError as error:
            skipped[task] = str(error)
    return forecasts, skipped




def forecast_tasks_for_fit(
    frame: pd.DataFrame, result: Any, budget: float, *, interval: float = 0.9,
    n_bootstrap: int = 1000,
) -> list[TaskForecast]:  # fmt: skip
    """Each task's forecasts at the budget of a loss prediction, on the loss law's compute axis.

    ``result`` is the loss fit (:class:`scaling.laws.fitting.FitResult`): when it was fitted
    against one compute column (``flops`` or ``flops_exact``), the tasks are forecast against
    that column too, otherwise against ``flops``. Tasks that cannot be fitted are left out
    (see :func:`forecast_tasks`).
    """
    x = result.x_[0] if len(result.x_) == 1 and result.x_[0] in ("flops", "flops_exact") else "flops"
    return forecast_tasks(frame, budget, x=x, interval=interval, n_bootstrap=n_bootstrap)[0]
