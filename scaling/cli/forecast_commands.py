"""``scaling forecast`` and ``scaling watch``: the forecast of record, and the run checked live.

Also the options that name the large run wherever it is (``--target-csv`` with its size,
``--target-uri``), shared with ``compare`` and ``report`` (:mod:`scaling.cli.report_commands`).
"""

from __future__ import annotations

import time
from typing import Any

import click

from scaling.cli.options import (
    emit_json,
    fit_range_option,
    law_option,
    output_option,
    tracking_option,
)
from scaling.errors import ConfigError, ScalingError

__all__ = ["forecast_command", "watch_command", "size_options", "external_target_options",
           "target_size", "csv_target", "resolve_forecast"]


def size_options(function):
    """``--params``, ``--tokens``, ``--flops`` and ``--target-spec`` of the large run."""
    options = [
        click.option("--params", type=click.FloatRange(min=0, min_open=True), metavar="N",
                     help="The large run's non-embedding parameters."),
        click.option("--tokens", type=click.FloatRange(min=0, min_open=True), metavar="D",
                     help="The large run's training tokens."),
        click.option("--flops", type=click.FloatRange(min=0, min_open=True), metavar="C",
                     help="The large run's compute (6ND)."),
        click.option("--target-spec", type=click.Path(dir_okay=False), metavar="RUN.yaml",
                     help="The large run's run file: exact N, D and FLOP count."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def external_target_options(function):
    """Where the large run is, when not a run beside the proxies."""
    options = [
        click.option("--target-uri", help="Tracking URI where the --target run is, when not "
                     "--tracking-uri (another server or database)."),
        click.option("--target-experiment", help="Experiment of the --target run, when not the "
                     "proxies' one."),
        click.option("--target-csv", type=click.Path(dir_okay=False), metavar="CURVE.csv",
                     help="The large run's eval curve: columns tokens (or step) and loss."),
        click.option("--batch-tokens", type=click.FloatRange(min=0, min_open=True),
                     help="Tokens per step, for a --target-csv curve by step."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def target_size(params: float | None, tokens: float | None, flops: float | None,
                target_spec: str | None) -> dict[str, float | None]:
    """N, D, C (6ND) and the exact FLOP count of the large run, from flags or its run file."""
    if target_spec is not None:
        from scaling.config.run import load_run_spec
        from scaling.sweeps.planning import run_size

        return {k: float(v) for k, v in run_size(load_run_spec(target_spec)).items()}
    if flops is None and params is not None and tokens is not None:
        flops = 6.0 * params * tokens
    return {"params": params, "tokens": tokens, "flops": flops, "flops_exact": None}


def csv_target(path: str, batch_tokens: float | None, size: dict[str, Any]) -> tuple[dict, Any]:
    """The run-table row and the curve of a large run given as a CSV curve and its size."""
    from pathlib import Path

    from scaling.reporting.external import external_target, read_curve_csv

    curve = read_curve_csv(path, batch_tokens=batch_tokens)
    row = external_target(curve, name=Path(path).stem, params=size.get("params"),
                          tokens=size.get("tokens"), flops=size.get("flops"),
                          flops_exact=size.get("flops_exact"))
    return row, curve


def resolve_forecast(path: str | None, experiment: str | None, tracking_uri: str,
                     refit: bool = False) -> dict[str, Any] | None:
    """The forecast to score against: ``--forecast FILE``, else (unless ``refit``) the latest
    registered in the experiment, else None (a refit)."""
    from scaling.reporting.forecast import load_forecast

    if path is not None:
        return {**load_forecast(path), "path": str(path)}
    if refit or experiment is None:
        return None
    from scaling.sweeps.tracking import latest_forecast

    return latest_forecast(experiment, tracking_uri=tracking_uri)


@click.command("forecast")
@click.option("--experiment", required=True, help="Sweep (MLflow experiment) of the proxies.")
@size_options
@law_option("Law of compute fitted on the proxies.")
@fit_range_option
@click.option("-o", "--out", "path", type=click.Path(dir_okay=False), default="forecast.json",
              show_default=True, help="Where to write the forecast.")
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Bootstrap resamples for the interval.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@output_option
@tracking_option
def forecast_command(experiment, params, tokens, flops, target_spec, law, fit_range, path,
                     n_bootstrap, seed, output, tracking_uri):
    """Register the forecast of record of the large run, before it runs.

    Fits the law on the proxies, predicts the run's final loss with its 90% interval, writes
    it as JSON (law, fit parameters, proxies' run ids, UTC time) and logs it to MLflow as the
    artifact forecast.json of a run with role 'forecast'. compare and watch score against it.
    With --target-spec it records the run's planned learning-rate schedule too, which watch
    projects the partial curve with.

    \b
    Example:
      scaling forecast --experiment demo --target-spec target.yaml
      scaling forecast --experiment demo --params 5e7 --tokens 1e9 -o forecast.json
    """
    from scaling.reporting.forecast import forecast_experiment
    from scaling.sweeps.tracking import fail_fast_reads

    fail_fast_reads()  # a down server fails in seconds (as for the read commands)
    size = target_size(params, tokens, flops, target_spec)
    if size["flops"] is None and size["flops_exact"] is None:
        raise ConfigError("give the large run's size: --flops C, --params N --tokens D, or "
                          "--target-spec run.yaml")
    schedule = None
    if target_spec is not None:  # the run's planned learning rate, for watch's annealing law
        from scaling.config.run import load_run_spec
        from scaling.demo import planned_schedule

        schedule = planned_schedule(load_run_spec(target_spec))
    record = forecast_experiment(experiment, size, tracking_uri=tracking_uri, path=path, law=law,
                                 fit_range=fit_range, n_bootstrap=n_bootstrap, seed=seed,
                                 schedule=schedule)
    if output == "json":  # the fit and the schedule's samples are in the file
        return emit_json({k: v for k, v in record.items() if k not in ("fit", "schedule")})
    click.echo(
        f"forecast: loss {record['predicted']:.4f} (90% interval {record['lo']:.4f} to "
        f"{record['hi']:.4f}) at {record['x']} = {record['target_x']:.4g}, law {law}, "
        f"{record['n_proxies']} proxies"
    )
    click.echo(f"wrote {path}; registered as run {record['run_id']} (role 'forecast') in "
               f"experiment {experiment}, {record['created_utc']}")
    if schedule is not None:
        click.echo(f"recorded the run's planned learning-rate schedule ({len(record['schedule']['lr'])} "
                   "points): watch projects its curve with the annealing law")


@click.command("watch")
@click.option("--target", help="MLflow run id of the large run (still training).")
@click.option("--target-uri", help="Tracking URI of the --target run [default: --tracking-uri].")
@click.option("--target-csv", type=click.Path(dir_okay=False), metavar="CURVE.csv",
              help="The large run's eval curve (tokens or step, loss), re-read at every poll.")
@click.option("--batch-tokens", type=click.FloatRange(min=0, min_open=True),
              help="Tokens per step, for a --target-csv curve by step.")
@click.option("--forecast", "forecast_path", type=click.Path(dir_okay=False),
              help="Forecast file to watch against [default: the latest registered in --experiment].")
@click.option("--experiment", help="Sweep (MLflow experiment) whose registered forecast is used.")
@click.option("--tokens", type=click.FloatRange(min=0, min_open=True), metavar="D",
              help="The run's planned tokens [default: the forecast's].")
@click.option("--no-prior", is_flag=True, help="Project from the curve alone, without blending "
              "in the forecast.")
@click.option("--once", is_flag=True, help="Read the curve once and exit (for cron jobs).")
@click.option("--interval", "poll_s", type=click.FloatRange(min=0), default=60.0, show_default=True,
              metavar="SECONDS", help="Seconds between polls.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Stop watching after this long (exit 0 when on track).")
@click.option("--on-alert", metavar="CMD", help="Shell command run once when the run goes off "
              "track (SCALING_ALERT holds the line).")
@tracking_option
def watch_command(target, target_uri, target_csv, batch_tokens, forecast_path, experiment, tokens,
                  no_prior, once, poll_s, timeout_s, on_alert, tracking_uri):
    """Watch the large run: project its final loss at every new evaluation, alert off track.

    Prints one line per new evaluation (the projected final loss and the registered band) and
    exits 1 (after running --on-alert CMD) as soon as the projection leaves the band; exits 0
    when the run reaches its planned tokens on track, at --timeout, or after one read (--once).
    The curve is fitted with the learning-rate annealing law when the run's schedule is known
    (recorded by 'scaling forecast --target-spec' or the demo, or logged by a finished run),
    else with a power law in tokens; the first line says which.

    \b
    Example:
      scaling watch --experiment demo --target 3f2a9c... --once
      scaling watch --forecast forecast.json --target-csv curve.csv --interval 600
    """
    from scaling.sweeps.tracking import fail_fast_reads

    fail_fast_reads()  # a down server fails in seconds (as for the read commands)
    if (target is None) == (target_csv is None):
        raise ConfigError("give exactly one of --target RUN_ID or --target-csv CURVE.csv")
    if forecast_path is None and experiment is None:
        raise ConfigError("give the forecast to watch against: --forecast FILE or --experiment NAME")
    record = resolve_forecast(forecast_path, experiment, tracking_uri)
    if record is None:
        raise ConfigError(f"experiment {experiment!r} has no registered forecast; register one "
                          "with 'scaling forecast' or pass --forecast FILE")
    total = tokens or record.get("tokens")
    if not total:
        raise ConfigError("the forecast does not say the run's planned tokens; pass --tokens D")
    read = _curve_reader(target, target_uri or tracking_uri, target_csv, batch_tokens)
    schedule, source = _schedule(record, float(total), target, target_uri or tracking_uri)
    law = "the annealing law on " + source if schedule is not None else "the power law in tokens (" + source + ")"
    click.echo(f"watching against {_label(record)}: band {record['lo']:.4f} to {record['hi']:.4f} "
               f"at {float(total):.4g} tokens; projecting with {law}")
    _watch_loop(read, record, float(total), prior=not no_prior, once=once, poll_s=poll_s,
                timeout_s=timeout_s, on_alert=on_alert, schedule=schedule)


def _schedule(record: dict[str, Any], total: float, target: str | None, uri: str):
    """The learning-rate schedule the projection knows (:func:`scaling.reporting.watch.watch_schedule`):
    the forecast's, else a finished MLflow run's logged train/lr."""
    from scaling.errors import TrackingError
    from scaling.reporting.watch import watch_schedule

    lr = None
    if target is not None and record.get("schedule") is None:
        from scaling.reporting.comparison import fill_tokens
        from scaling.sweeps.tracking import learning_curve

        try:
            lr = fill_tokens(learning_curve(target, tracking_uri=uri, metric="train/lr"))
        except TrackingError as error:
            if "has no metric" not in str(error):
                raise
    return watch_schedule(record, total, lr)


def _label(record: dict[str, Any]) -> str:
    from scaling.reporting.forecast import forecast_label

    return forecast_label(record)


def _curve_reader(target: str | None, uri: str, path: str | None, batch_tokens: float | None):
    """A function returning the large run's curve so far (no evaluation yet: an empty one)."""
    import pandas as pd

    from scaling.errors import TrackingError

    def from_mlflow():
        from scaling.reporting.comparison import fill_tokens
        from scaling.sweeps.tracking import learning_curve

        try:
            return fill_tokens(learning_curve(target, tracking_uri=uri))
        except TrackingError as error:
            if "has no metric" not in str(error):
                raise
            return pd.DataFrame({"step": [], "tokens": [], "value": []})

    def from_csv():
        from scaling.reporting.external import read_curve_csv

        return read_curve_csv(path, batch_tokens=batch_tokens)

    return from_csv if path is not None else from_mlflow


def _watch_loop(read, record, total: float, *, prior: bool, once: bool, poll_s: float,
                timeout_s: float | None, on_alert: str | None, schedule=None) -> None:
    """Poll ``read`` and print each new evaluation's projection; raise on the first alert."""
    from scaling.reporting.watch import watch_points

    seen, started = 0, time.monotonic()
    while True:
        curve = read()
        for point in watch_points(curve, record, total, start=seen, prior=prior, schedule=schedule):
            seen += 1
            click.echo(point.line())
            if not point.on_track:
                _alert(point, on_alert, seen)
        if once:
            return
        if len(curve) and float(curve["tokens"].max()) >= total:
            click.echo(f"the run reached its {total:.4g} tokens on track")
            return
        if timeout_s is not None and time.monotonic() - started >= timeout_s:
            click.echo(f"stopped after --timeout {timeout_s:g} s, on track so far")
            return
        time.sleep(poll_s)


def _alert(point, on_alert: str | None, evaluations: int) -> None:
    import os
    import subprocess

    line = (f"the run left the registered band at evaluation {evaluations} (step "
            f"{point.step:.0f}): projected final loss {point.projected:.4f} outside "
            f"{point.lo:.4f} to {point.hi:.4f}")
    if on_alert:
        subprocess.run(on_alert, shell=True, check=False,
                       env={**os.environ, "SCALING_ALERT": line})
    raise ScalingError(line)
