"""``scaling report`` and ``scaling compare``: the forecast written up, and checked."""

from __future__ import annotations

import click

from scaling.cli.options import (
    emit_json,
    fit_range_option,
    output_option,
    tracking_option,
)
from scaling.errors import ScalingError

__all__ = ["report_command", "compare_command"]


@click.command("report")
@click.option("--experiment", help="Sweep (MLflow experiment) to report on.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Run table as a CSV file instead.")
@click.option("--target", help="Run id of the large run (default: the run with role 'target').")
@click.option("--target-flops", type=float, help="Compute to predict for when the large run does not exist yet.")
@click.option("--law", default="gpt4", show_default=True, help="Law of compute to fit.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), help="Report directory [default: reports/NAME/].")
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Bootstrap resamples for the intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@fit_range_option
@tracking_option
def report_command(experiment, csv_path, target, target_flops, law, output_dir, n_bootstrap, seed, fit_range, tracking_uri):
    """Write a prediction report: index.html (self-contained) and report.md with figures.

    \b
    Example:
      scaling report --experiment demo -o reports/demo/
      scaling report --csv runs.csv --target-flops 1e21
    """
    from scaling.reporting.publish import make_report

    path = make_report(
        experiment=experiment, csv=csv_path, target=target, target_flops=target_flops, law=law,
        directory=output_dir, n_bootstrap=n_bootstrap, seed=seed, tracking_uri=tracking_uri,
        fit_range=fit_range,
    )
    click.echo(f"wrote {path / 'index.html'} and {path / 'report.md'}")
    if experiment is not None:
        click.echo(f"logged to MLflow experiment {experiment} as a run with role 'report'")


@click.command("compare")
@click.option("--experiment", required=True, help="Sweep (MLflow experiment) of the proxies.")
@click.option("--target", required=True, help="MLflow run id of the large run.")
@click.option("--law", default="gpt4", show_default=True, help="Law of compute fitted on the proxies.")
@click.option("--metric", "metrics", multiple=True, metavar="COLUMN",
              help="Capability metric to compare too (repeatable; default: every "
              "*neg_log_pass_rate column).")
@click.option("--fail-above", type=click.FloatRange(min=0), metavar="PCT",
              help="Exit 1 when the loss's relative error is above PCT percent.")
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Bootstrap resamples for the intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@fit_range_option
@output_option
@tracking_option
def compare_command(experiment, target, law, metrics, fail_above, n_bootstrap, seed, fit_range, output, tracking_uri):
    """Compare the proxies' prediction with the large run's final loss and learning curve.

    \b
    Example:
      scaling compare --experiment demo --target 3f2a9c... --fail-above 5
    """
    from scaling.reporting.comparison import compare_experiment
    from scaling.reporting.render import comparison_text

    comparison = compare_experiment(
        experiment, target, tracking_uri=tracking_uri, law=law, metrics=list(metrics) or None,
        n_bootstrap=n_bootstrap, seed=seed, fit_range=fit_range,
    )
    if output == "json":
        emit_json(comparison.summary())
    else:
        click.echo(comparison_text(comparison))
    if fail_above is not None and comparison.error_above(fail_above):
        error = comparison.loss.relative_error * 100
        raise ScalingError(f"loss error {error:+.1f}% is above --fail-above {fail_above:g}%")
