"""Publish a report: build it from an experiment or a CSV, write it, log it to the experiment.

:func:`make_report` is what ``scaling report`` and the demo call; the report model is built by
:mod:`scaling.reporting.report` and written by :mod:`scaling.reporting.render`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.errors import ConfigError
from scaling.laws.selection import filter_rows, filter_text
from scaling.reporting.render import write_report
from scaling.reporting.report import (
    build_report,
    inputs_from_csv,
    inputs_from_experiment,
)
from scaling.sweeps.tracking import log_report

__all__ = ["make_report"]


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
    fit_range: str = "all",
    where: str | None = None,
    drop_top_loss: int = 0,
    interval: float = 0.9,
    forecast: Mapping[str, Any] | None = None,
) -> Path:
    """Build and write a report from an MLflow experiment or a CSV; log it to the experiment.

    Parameters
    ----------
    experiment : str, optional
        Sweep (MLflow experiment) to read; the report is then also logged to it as a run
        with role ``report``.
    csv : str or path, optional
        Run table as a CSV file (exactly one of ``experiment`` and ``csv``).
    target, target_flops, law, n_bootstrap, seed, date, fit_range, interval
        As for :func:`build_report`.
    directory : str or path, optional
        Where to write; ``reports/NAME/`` by default.
    tracking_uri : str, optional
        MLflow tracking URI (needed with ``experiment``).
    where, drop_top_loss
        A row filter on the runs (:func:`scaling.laws.selection.filter_rows`); the target run
        is always kept. The filter is named in the report's source line.
    forecast : mapping, optional
        The forecast of record the large-run section scores the target against
        (:func:`scaling.reporting.forecast.load_forecast`); by default the latest registered
        in ``experiment``.

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
    if (experiment is None) == (csv is None):
        raise ConfigError("give exactly one of --experiment NAME and --csv FILE")
    if experiment is not None:
        if tracking_uri is None:
            raise ConfigError("--experiment needs a tracking URI; pass --tracking-uri")
        inputs = inputs_from_experiment(experiment, tracking_uri=tracking_uri)
    else:
        inputs = inputs_from_csv(csv)
    if forecast is not None:
        inputs = dataclasses.replace(inputs, forecast=forecast)
    if where or drop_top_loss:
        inputs = filtered_inputs(inputs, where=where, drop_top_loss=drop_top_loss)
    report = build_report(
        inputs, law=law, target=target, target_flops=target_flops, n_bootstrap=n_bootstrap,
        seed=seed, date=date, fit_range=fit_range, interval=interval,
    )
    if directory is None:
        directory = Path("reports") / inputs.name
    path = write_report(report, directory)
    if experiment is not None:
        log_report(
            experiment, path, tracking_uri=tracking_uri, tags={"scaling.law": report.law.name}
        )
    return path


def filtered_inputs(inputs, *, where: str | None, drop_top_loss: int = 0):
    """``inputs`` with a user's row filter applied to its runs (target runs kept), and named
    in its ``source``."""
    runs = inputs.runs
    is_target = (runs["role"].astype(str) == "target") if "role" in runs.columns else None
    candidates = runs if is_target is None else runs[~is_target]
    kept, record = filter_rows(candidates, where=where, drop_top_loss=drop_top_loss,
                               source=inputs.source)
    if is_target is not None:
        kept = pd.concat([kept, runs[is_target]]).loc[lambda f: sorted(f.index)]
    return dataclasses.replace(inputs, runs=kept, source=f"{inputs.source}; {filter_text(record)}",
                               all_runs=inputs.runs if inputs.all_runs is None else inputs.all_runs)
