"""The ``scaling`` command: parse, call the library, print.

Command bodies stay a few lines long; the logic lives in the library modules. One gate,
:func:`main`, turns every :class:`~scaling.errors.ScalingError` into one line on stderr and
a non-zero exit (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from scaling.errors import ScalingError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def _emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


# Shared options, defined once and reused by every command that takes them.
output_option = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="'json' prints machine-readable output for scripts.",
)
tracking_option = click.option(
    "--tracking-uri",
    default=lambda: os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
    show_default=DEFAULT_TRACKING_URI,
    help="MLflow tracking URI (a sqlite file or a tracking server).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scaling")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Predict a large language-model run's loss from small proxies.

    \b
    Example:
      scaling demo
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# --- report and compare commands ---


@cli.command("report")
@click.option("--experiment", help="Sweep (MLflow experiment) to report on.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Run table as a CSV file instead.")
@click.option("--target", help="Run id of the large run (default: the run with role 'target').")
@click.option("--target-flops", type=float, help="Compute to predict for when the large run does not exist yet.")
@click.option("--law", default="gpt4", show_default=True, help="Law of compute to fit.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), help="Report directory [default: reports/NAME/].")
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@tracking_option
def report_command(experiment, csv_path, target, target_flops, law, output_dir, n_bootstrap, seed, tracking_uri):
    """Write a prediction report: index.html (self-contained) and report.md with figures.

    \b
    Example:
      scaling report --experiment demo -o reports/demo/
      scaling report --csv runs.csv --target-flops 1e21
    """
    from scaling.report import make_report

    path = make_report(
        experiment=experiment, csv=csv_path, target=target, target_flops=target_flops, law=law,
        directory=output_dir, n_bootstrap=n_bootstrap, seed=seed, tracking_uri=tracking_uri,
    )
    click.echo(f"wrote {path / 'index.html'} and {path / 'report.md'}")


@cli.command("compare")
@click.option("--experiment", required=True, help="Sweep (MLflow experiment) of the proxies.")
@click.option("--target", required=True, help="MLflow run id of the large run.")
@click.option("--law", default="gpt4", show_default=True, help="Law of compute fitted on the proxies.")
@click.option("--metric", "metrics", multiple=True, help="Capability metric column to compare too (repeatable).")
@click.option("--fail-above", type=click.FloatRange(min=0), help="Exit 1 when the loss error is above PCT percent.")
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@output_option
@tracking_option
def compare_command(experiment, target, law, metrics, fail_above, n_bootstrap, seed, output, tracking_uri):
    """Compare the proxies' prediction with the large run's final loss and learning curve.

    \b
    Example:
      scaling compare --experiment demo --target 3f2a9c... --fail-above 5
    """
    from scaling.compare import compare_experiment
    from scaling.report import comparison_text

    comparison = compare_experiment(
        experiment, target, tracking_uri=tracking_uri, law=law, metrics=list(metrics) or None,
        n_bootstrap=n_bootstrap, seed=seed,
    )
    if output == "json":
        _emit_json(comparison.summary())
    else:
        click.echo(comparison_text(comparison))
    if fail_above is not None and comparison.error_above(fail_above):
        error = comparison.loss.relative_error * 100
        click.echo(f"error: loss error {error:+.1f}% is above --fail-above {fail_above:g}%", err=True)
        raise click.exceptions.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command line, print user errors as one line, return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="scaling", standalone_mode=False)
    except ScalingError as error:
        if debug:
            raise
        click.echo(f"error: {error}", err=True)
        return error.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
