"""``scaling report`` and ``scaling compare``: the forecast written up, and checked."""

from __future__ import annotations

import click

from scaling.cli.forecast_commands import (
    csv_target,
    external_target_options,
    resolve_forecast,
    size_options,
    target_size,
)
from scaling.cli.options import (
    drop_top_loss_option,
    emit_json,
    fit_range_option,
    interval_option,
    law_option,
    output_option,
    tracking_option,
    where_option,
)
from scaling.errors import ConfigError, ScalingError

__all__ = ["report_command", "compare_command"]


@click.command("report")
@click.option("--experiment", help="Sweep (MLflow experiment) to report on.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Run table as a CSV file instead.")
@click.option("--target", help="Run id of the large run (default: the run with role 'target').")
@click.option("--target-flops", type=float, help="Compute to predict for when the large run does not exist yet.")
@law_option("Law of compute to fit.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), help="Report directory [default: reports/NAME/].")
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Bootstrap resamples for the intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@interval_option
@fit_range_option
@where_option
@drop_top_loss_option
@external_target_options
@size_options
@click.option("--forecast", "forecast_path", type=click.Path(dir_okay=False),
              help="Forecast file the large run is set against [default: the latest "
              "registered in --experiment].")
@tracking_option
def report_command(experiment, csv_path, target, target_flops, law, output_dir, n_bootstrap, seed, interval,
                   fit_range, where, drop_top_loss, target_uri, target_experiment, target_csv,
                   batch_tokens, params, tokens, flops, target_spec, forecast_path, tracking_uri):
    """Write a prediction report: index.html (self-contained) and report.md with figures.

    The large run may live elsewhere: --target RUN_ID with --target-uri/--target-experiment,
    or --target-csv CURVE.csv with its size (--params/--tokens/--flops or --target-spec).
    With a large run, the report has a section on it: the forecast of record, the
    re-forecasts watch would have made at each of its evaluations, its curve against the band.

    \b
    Example:
      scaling report --experiment demo -o reports/demo/
      scaling report --csv runs.csv --target-flops 1e21
      scaling report --experiment demo --target-csv curve.csv --params 5e7 --tokens 1e9
    """
    from scaling.reporting.publish import make_report

    forecast = resolve_forecast(forecast_path, None, tracking_uri)  # a file; else the experiment's
    settings = dict(law=law, directory=output_dir, n_bootstrap=n_bootstrap, seed=seed,
                    tracking_uri=tracking_uri, fit_range=fit_range, where=where,
                    drop_top_loss=drop_top_loss, interval=interval, forecast=forecast)
    if target_csv is not None or target_uri is not None or target_experiment is not None:
        path = _external_report(experiment, csv_path, target, target_uri, target_experiment,
                                target_csv, batch_tokens, target_size(params, tokens, flops, target_spec),
                                **settings)
    else:
        path = make_report(experiment=experiment, csv=csv_path, target=target,
                           target_flops=target_flops, **settings)
    click.echo(f"wrote {path / 'index.html'} and {path / 'report.md'}")
    if experiment is not None:
        click.echo(f"logged to MLflow experiment {experiment} as a run with role 'report'")
        from scaling.sweeps.tracking import sweep_view_url

        view = sweep_view_url(experiment, tracking_uri=tracking_uri)
        if view is not None:  # a tracking server: its UI, on the sweep's training runs
            click.echo(f"training runs in the MLflow UI: {view}")


def _external_report(experiment, csv_path, target, target_uri, target_experiment, target_csv,
                     batch_tokens, size, *, law, directory, n_bootstrap, seed, tracking_uri,
                     fit_range, where, drop_top_loss, interval, forecast):
    """The report of the proxies with a large run tracked elsewhere or given as a CSV curve."""
    import dataclasses
    from pathlib import Path

    from scaling.reporting.comparison import mlflow_target
    from scaling.reporting.external import with_external_target
    from scaling.reporting.publish import filtered_inputs
    from scaling.reporting.render import write_report
    from scaling.reporting.report import (
        build_report,
        inputs_from_csv,
        inputs_from_experiment,
        target_schedule,
    )
    from scaling.sweeps.tracking import log_report, runs_frame

    if (experiment is None) == (csv_path is None):
        raise ConfigError("give exactly one of --experiment NAME and --csv FILE")
    inputs = (inputs_from_experiment(experiment, tracking_uri=tracking_uri) if experiment
              else inputs_from_csv(csv_path))
    schedules = {}
    if target_csv is not None:
        row, curve = csv_target(target_csv, batch_tokens, size)
    elif target is None:
        raise ConfigError("--target-uri/--target-experiment need --target RUN_ID")
    else:
        uri, where_from = target_uri or tracking_uri, target_experiment or experiment
        row, curve = mlflow_target(runs_frame(where_from, tracking_uri=uri, status=None), target,
                                   experiment=where_from, tracking_uri=uri)
        lr = target_schedule(target, tracking_uri=uri, tokens=row.get("tokens"))
        if lr is not None:
            schedules[target] = lr
    inputs = with_external_target(inputs, row, curve, law=law)
    inputs = dataclasses.replace(inputs, schedules=schedules or None,
                                 forecast=forecast if forecast is not None else inputs.forecast)
    if where or drop_top_loss:
        inputs = filtered_inputs(inputs, where=where, drop_top_loss=drop_top_loss)
    report = build_report(inputs, law=law, target=str(row["run_id"]), n_bootstrap=n_bootstrap,
                          seed=seed, fit_range=fit_range, interval=interval)
    path = write_report(report, directory or Path("reports") / inputs.name)
    if experiment is not None:
        log_report(experiment, path, tracking_uri=tracking_uri, tags={"scaling.law": report.law.name})
    return path


@click.command("compare")
@click.option("--experiment", help="Sweep (MLflow experiment) of the proxies.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False),
              help="The proxies' run table as a CSV file instead.")
@click.option("--target", help="MLflow run id of the large run.")
@external_target_options
@size_options
@click.option("--forecast", "forecast_path", type=click.Path(dir_okay=False),
              help="Score against this forecast file [default: the latest registered in "
              "--experiment, else a refit].")
@click.option("--refit", is_flag=True, help="Refit the proxies even when a forecast is registered.")
@law_option("Law of compute fitted on the proxies.")
@click.option("--metric", "metrics", multiple=True, metavar="COLUMN",
              help="Capability metric to compare too (repeatable; default: every "
              "*neg_log_pass_rate column).")
@click.option("--fail-above", type=click.FloatRange(min=0), metavar="PCT",
              help="Exit 1 when the loss's relative error is above PCT percent.")
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Bootstrap resamples for the intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@interval_option
@fit_range_option
@output_option
@tracking_option
def compare_command(experiment, csv_path, target, target_uri, target_experiment, target_csv,
                    batch_tokens, params, tokens, flops, target_spec, forecast_path, refit, law,
                    metrics, fail_above, n_bootstrap, seed, interval, fit_range, output, tracking_uri):
    """Compare the proxies' prediction with the large run's final loss and learning curve.

    The large run is an MLflow run (--target, beside the proxies or at --target-uri /
    --target-experiment) or a CSV of its eval curve with its size (--target-csv with
    --params/--tokens/--flops or --target-spec). The loss is scored against the registered
    forecast when there is one (scaling forecast), else against a refit; the headline says which.

    \b
    Example:
      scaling compare --experiment demo --target 3f2a9c... --fail-above 5
      scaling compare --experiment demo --target-csv curve.csv --params 5e7 --tokens 1e9
    """
    from dataclasses import replace

    from scaling.reporting.comparison import (
        compare_experiment,
        compare_table,
        read_run_table,
    )
    from scaling.reporting.render import comparison_text

    forecast = resolve_forecast(forecast_path, experiment, tracking_uri, refit)
    settings = dict(law=law, metrics=list(metrics) or None, n_bootstrap=n_bootstrap, seed=seed,
                    fit_range=fit_range, forecast=forecast, interval=interval)
    if (target is None) == (target_csv is None):
        raise ConfigError("give the large run: --target RUN_ID or --target-csv CURVE.csv")
    if target_csv is not None:
        runs, _ = read_run_table(csv_path, experiment, tracking_uri=tracking_uri)
        size = target_size(params, tokens, flops, target_spec)
        row, curve = csv_target(target_csv, batch_tokens, size)
        comparison = compare_table(runs, row, curve=curve, **settings)
        if csv_path is not None and not comparison.basis:  # a CSV's rows are runs, not a sweep's proxies
            comparison = replace(comparison, basis=f"a refit of {comparison.n_proxies} runs of {csv_path}")
    elif experiment is None:
        raise ConfigError("--target RUN_ID needs the proxies' --experiment NAME")
    else:
        comparison = compare_experiment(experiment, target, tracking_uri=tracking_uri,
                                        target_uri=target_uri, target_experiment=target_experiment,
                                        **settings)
    if output == "json":
        emit_json(comparison.summary())
    else:
        click.echo(comparison_text(comparison))
    if fail_above is not None and comparison.error_above(fail_above):
        error = comparison.loss.relative_error * 100
        raise ScalingError(f"loss error {error:+.1f}% is above --fail-above {fail_above:g}%")
