"""The forecast of record: the large run's final loss, predicted and registered before it runs.

:func:`make_forecast` fits a law on the proxies and predicts one run (final loss with its
interval for one run, the law, its parameters, the proxies' run ids, a UTC timestamp) as a
JSON-safe record of format ``scaling.forecast/1``; :func:`forecast_experiment` reads the
proxies from MLflow, writes the record and registers it as the artifact ``forecast.json`` of a
run tagged ``scaling.role = forecast`` (:func:`register_forecast`, which the demo calls too).
``compare``, ``watch`` and the report's large-run section score against that record, not a
refit. A record may carry the run's planned learning-rate schedule (``schedule``: tokens and
learning rate, from ``--target-spec``), with which ``watch`` projects the partial curve by the
annealing law (:func:`record_schedule`, :mod:`scaling.laws.partial_curve`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import ConfigError, DataError
from scaling.formatting import is_finite

__all__ = ["FORECAST_FORMAT", "law_x_value", "make_forecast", "write_forecast", "load_forecast",
           "register_forecast", "forecast_experiment", "forecast_label", "check_target_x",
           "schedule_samples", "record_schedule"]

FORECAST_FORMAT = "scaling.forecast/1"
_REQUIRED = ("format", "law", "x", "target_x", "predicted", "lo", "hi", "interval", "created_utc")


def law_x_value(x: str, size: dict[str, float | None], proxies: pd.DataFrame | None = None) -> tuple[float, str]:
    """The target's value of the law's column ``x`` from what is known of its size.

    ``size`` holds ``params``, ``tokens``, ``flops`` (6ND) and ``flops_exact`` (None where
    unknown); ``flops`` is 6ND when only N and D are known. GPT-4's law reads the exact count:
    without it, ``flops`` times the proxies' median ``flops_exact / flops`` is used, and the
    second value returned says so (``"exact"``, ``"6ND"`` or ``"6ND x proxies' ratio R"``).

    Raises
    ------
    DataError
        If the column cannot be worked out; the message names the option to pass.
    """
    size = dict(size)
    if not is_finite(size.get("flops")) and is_finite(size.get("params")) and is_finite(size.get("tokens")):
        size["flops"] = 6.0 * float(size["params"]) * float(size["tokens"])
    if is_finite(size.get(x)):
        return float(size[x]), "exact" if x == "flops_exact" else "given"
    if x == "flops_exact" and is_finite(size.get("flops")) and proxies is not None:
        ratio = pd.to_numeric(proxies.get("flops_exact"), errors="coerce") / pd.to_numeric(
            proxies.get("flops"), errors="coerce")
        ratio = ratio[np.isfinite(ratio) & (ratio > 0)] if ratio is not None else ratio
        if ratio is not None and len(ratio):
            r = float(np.median(ratio))
            return float(size["flops"]) * r, f"6ND x proxies' exact/6ND ratio {r:.3g}"
    raise DataError(
        f"the law reads {x}, which is not known for the target; pass --{x.replace('_', '-')} "
        "(or --target-spec run.yaml for the exact count, or --params and --tokens)"
    )


def make_forecast(
    proxies: pd.DataFrame, size: dict[str, float | None], *, law: str = "gpt4",
    interval: float = 0.9, n_bootstrap: int = 1000, seed: int = 0, experiment: str | None = None,
    x: str | None = None, schedule: tuple[Any, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Fit ``law`` on the proxies and predict one run of ``size``: the forecast record.

    Parameters
    ----------
    proxies : DataFrame
        Finished proxy runs (the run table).
    size : dict
        ``params``, ``tokens``, ``flops``, ``flops_exact`` of the target (None where unknown).
    law, interval, n_bootstrap, seed
        As for :func:`scaling.reporting.comparison.compare`.
    experiment : str, optional
        Where the proxies came from (recorded).
    x : str, optional
        Run-table column to extrapolate along; the law's own (``flops_exact`` for GPT-4's).
    schedule : (tokens, lr), optional
        The run's planned learning rate at tokens seen, over the whole run; recorded
        (:func:`schedule_samples`) so that ``watch`` projects with the annealing law
        (:mod:`scaling.laws.partial_curve`).

    Returns
    -------
    dict
        ``format``, ``law``, ``formula``, ``x``, ``target_x``, ``x_source``, ``params``,
        ``tokens``, ``flops``, ``predicted``, ``lo``, ``hi``, ``interval``, ``fit_params``,
        ``proxy_run_ids``, ``n_proxies``, ``experiment``, ``created_utc``, ``fit`` (the saved
        fit, ``scaling.fit/1``), and ``schedule`` (``tokens``, ``lr``) when given.
    """
    from scaling.formatting import json_safe
    from scaling.laws.fitting import fit
    from scaling.laws.forms import get_law

    law_object = get_law(law)
    if len(law_object.x) != 1:
        raise ConfigError(f"--law {law}: reads {', '.join(law_object.x)}; forecast with a law "
                          "of one column, such as gpt4 (compute)")
    x = x or law_object.x[0]
    target_x, source = law_x_value(x, size, proxies)
    result = fit(law_object, proxies, x=(x,), y="loss", n_bootstrap=n_bootstrap, seed=seed,
                 interval=interval, source="proxies")
    point, (lo, hi) = result.predict(np.array([target_x]), interval=interval, band="run")
    params, tokens = size.get("params"), size.get("tokens")
    flops = size.get("flops") or (6.0 * params * tokens if params and tokens else None)
    record = json_safe({
        "format": FORECAST_FORMAT, "law": law, "formula": law_object.formula, "x": x,
        "target_x": float(target_x), "x_source": source, "params": params, "tokens": tokens,
        "flops": flops, "predicted": float(point[0]), "lo": float(lo[0]), "hi": float(hi[0]),
        "interval": float(interval), "fit_params": dict(result.params_),
        "fit_intervals": {k: list(v) for k, v in getattr(result, "intervals_", {}).items()},
        "proxy_run_ids": [str(r) for r in result.run_ids_],
        "n_proxies": int(result.n_points_), "experiment": experiment,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "fit": result.to_dict(),
    })  # fmt: skip
    if schedule is not None:
        record["schedule"] = schedule_samples(*schedule)
    return record


def schedule_samples(tokens: Any, lr: Any, points: int = 400) -> dict[str, list[float]]:
    """A learning-rate schedule as the record keeps it: at most ``points`` samples, evenly
    spaced over its steps, the first and the last kept (``tokens``, ``lr``).

    Examples
    --------
    >>> schedule_samples(range(1, 11), [1.0] * 10, points=4)
    {'tokens': [1.0, 4.0, 7.0, 10.0], 'lr': [1.0, 1.0, 1.0, 1.0]}
    """
    t = np.asarray(list(tokens), float)
    rate = np.asarray(list(lr), float)
    keep = np.unique(np.linspace(0, len(t) - 1, min(points, len(t))).round().astype(int))
    return {"tokens": [float(v) for v in t[keep]], "lr": [float(v) for v in rate[keep]]}


def record_schedule(record: dict[str, Any], total_tokens: float | None = None) -> Any:
    """The annealing areas (:class:`scaling.laws.partial_curve.Schedule`) of the schedule a
    forecast recorded, over ``total_tokens`` (the record's tokens by default); None when it
    recorded none, or one that does not cover those tokens."""
    from scaling.laws.partial_curve import schedule_areas

    schedule = record.get("schedule")
    total = total_tokens or record.get("tokens")
    if not isinstance(schedule, dict) or not total:
        return None
    try:
        return schedule_areas(schedule.get("tokens") or [], schedule.get("lr") or [], float(total))
    except (TypeError, ValueError):
        return None


def write_forecast(record: dict[str, Any], path: str | Path) -> Path:
    """Write a forecast record as JSON (non-finite numbers as null); return the path."""
    path = Path(path)
    path.write_text(json.dumps(record, indent=1, sort_keys=True, allow_nan=False))
    return path


def load_forecast(path: str | Path) -> dict[str, Any]:
    """Read a forecast record written by :func:`write_forecast`.

    Raises
    ------
    DataError
        One line naming the file: missing, not JSON, another format, or a field missing.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"forecast file {path} does not exist; write one with 'scaling forecast'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"forecast file {path} is not JSON ({error}); pass a file 'scaling "
                        "forecast' wrote") from None
    if not isinstance(record, dict) or record.get("format") != FORECAST_FORMAT:
        raise DataError(f"forecast file {path}: not a forecast (expected format "
                        f"{FORECAST_FORMAT!r}); pass a file 'scaling forecast' wrote")
    missing = [key for key in _REQUIRED if record.get(key) is None]
    if missing:
        raise DataError(f"forecast file {path}: field {missing[0]} is missing; write it again "
                        "with 'scaling forecast'")
    return record


def forecast_label(record: dict[str, Any]) -> str:
    """How a report names a forecast: its run (when registered) and its time."""
    where = f"run {record['run_id']}" if record.get("run_id") else record.get("path", "file")
    return f"the registered forecast ({where}, {record['created_utc']})"


def forecast_experiment(
    experiment: str, size: dict[str, float | None], *, tracking_uri: str, path: str | Path,
    law: str = "gpt4", fit_range: str = "all", interval: float = 0.9, n_bootstrap: int = 1000,
    seed: int = 0, schedule: tuple[Any, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Forecast from an experiment's proxies, write it to ``path`` and register it in MLflow.

    Nothing is written or created when the experiment cannot be read (TrackingError).
    ``schedule`` is the run's planned learning rate (see :func:`make_forecast`).

    Returns
    -------
    dict
        The record, with ``run_id`` (the forecast's MLflow run) and ``path``.
    """
    from scaling.laws.forms import get_law
    from scaling.laws.selection import split_runs
    from scaling.sweeps.tracking import runs_frame

    runs = runs_frame(experiment, tracking_uri=tracking_uri, status=None)
    law_object = get_law(law)
    split = split_runs(runs[runs["role"] != "target"] if "role" in runs else runs,
                       x=law_object.x[0], y="loss", fit_range=fit_range, law=law)
    if split.proxies.empty:
        raise DataError(f"experiment {experiment!r} has no finished proxy with a loss; "
                        "run the sweep first")
    record = make_forecast(split.proxies, size, law=law, interval=interval,
                           n_bootstrap=n_bootstrap, seed=seed, experiment=experiment,
                           schedule=schedule)
    record["fit_range"] = fit_range
    return register_forecast(record, experiment, path, tracking_uri=tracking_uri)


def register_forecast(record: dict[str, Any], experiment: str, path: str | Path, *,
                      tracking_uri: str) -> dict[str, Any]:
    """Write a forecast record to ``path`` and register it in ``experiment`` as the artifact
    ``forecast.json`` of a run with role ``forecast``
    (:func:`scaling.sweeps.tracking.log_forecast`); ``scaling forecast`` and the demo do.

    Returns
    -------
    dict
        The record, with ``run_id`` (the forecast's MLflow run) and ``path``.
    """
    from scaling.sweeps.tracking import log_forecast

    write_forecast(record, path)
    run_id = log_forecast(experiment, path, tracking_uri=tracking_uri,
                          tags={"scaling.law": str(record["law"]),
                                "scaling.forecast_created": str(record["created_utc"])})
    return {**record, "run_id": run_id, "path": str(path)}


def check_target_x(record: dict[str, Any], target_x: float) -> str | None:
    """A note when the forecast was made for another size than the run compared (> 1%)."""
    made = float(record["target_x"])
    if math.isfinite(target_x) and made > 0 and abs(target_x / made - 1) > 0.01:
        return f"the forecast was for {record['x']} = {made:.4g}, the run has {target_x:.4g}"
    return None
