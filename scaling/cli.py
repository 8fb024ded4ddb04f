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


# --- fitting commands ---


def _run_table(csv: str | None, experiment: str | None, tracking_uri: str):
    """The run table and a name for it, from --csv or --experiment (exactly one)."""
    from scaling.errors import ConfigError

    if (csv is None) == (experiment is None):
        raise ConfigError("give exactly one of --csv FILE or --experiment NAME")
    if csv is not None:
        from scaling.table import load_csv

        return load_csv(csv), str(csv)
    from scaling.tracking import runs_frame

    return runs_frame(experiment, tracking_uri=tracking_uri), f"experiment {experiment!r}"


def _columns(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _fit_lines(summary: dict[str, Any]) -> list[str]:
    from scaling.formatting import format_interval

    lines = [f"{summary['law']}: {summary['formula']}   ({', '.join(summary['x'])} -> {summary['y']})"]
    level = round(100 * summary["interval"])
    for name, p in summary["params"].items():
        lower = float("nan") if p["lower"] is None else p["lower"]
        upper = float("nan") if p["upper"] is None else p["upper"]
        flag = "  AT BOUND" if p["at_bound"] else ""
        lines.append(f"  {name:>8} = {format_interval(p['value'], lower, upper)}  ({level}%){flag}")
    lines.append(
        f"  {summary['n_points']} runs, {summary['n_starts']} starts "
        f"({summary['n_starts_screened']} screened out), {summary['n_bootstrap']} bootstrap fits, "
        f"rms log residual {summary['rms_log_residual']:.2g}, {summary['fit_seconds']:.2f} s"
    )
    lines.append("  valid" if summary["is_valid"] else "  INVALID: " + "; ".join(summary["reasons"]))
    return lines


@cli.command("fit")
@click.option("--csv", help="Run table as a CSV file (one row per run).")
@click.option("--experiment", help="MLflow experiment (= sweep name) to read the runs from.")
@click.option("--law", default="gpt4", show_default=True, help="Law to fit (see scaling.laws.LAWS).")
@click.option("--x", "x_columns", help="Comma-separated x columns, e.g. 'flops' (default: the law's).")
@click.option("--y", "y_column", help="Column to fit (default: the law's, usually 'loss').")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option("--backtest", "cuts", help="Comma-separated compute cuts to backtest at, e.g. '1e20'.")
@click.option("--save", help="Write the fit to this JSON file (for 'scaling predict --fit').")
@output_option
@tracking_option
def fit_command(csv, experiment, law, x_columns, y_column, n_bootstrap, seed, cuts, save, output, tracking_uri):
    """Fit a scaling law to runs, with bootstrap intervals and diagnostics.

    \b
    Example:
      scaling fit --csv chinchilla_points.csv --law chinchilla --backtest 1e20 --save fit.json
    """
    from scaling.fit import backtest, fit
    from scaling.predict import save_fit

    frame, source = _run_table(csv, experiment, tracking_uri)
    x = _columns(x_columns)
    result = fit(law, frame, x=x, y=y_column, n_bootstrap=n_bootstrap, seed=seed, source=source)
    report: dict[str, Any] = {"fit": result.summary()}
    if cuts:
        cut_values = [float(c) for c in _columns(cuts)]
        report["backtest"] = backtest(law, frame, cut_values, x=x, y=y_column, seed=seed, source=source).summary()
    if save:
        report["saved"] = str(save_fit(result, save))
    if output == "json":
        _emit_json(report)
        return
    lines = _fit_lines(report["fit"])
    if "backtest" in report:
        for fold in report["backtest"]["folds"]:
            lines.append(
                f"  backtest {fold['n_train']} runs below {fold['cut']:.3g} -> {fold['n_test']} above: "
                f"mean |error| {100 * fold['mean_abs_relative_error']:.2f}%, max "
                f"{100 * fold['max_abs_relative_error']:.2f}%, {100 * fold['coverage']:.0f}% inside the "
                f"{round(100 * report['backtest']['interval'])}% band"
            )
    if save:
        lines.append(f"  saved to {save}")
    click.echo("\n".join(lines))


@cli.command("predict")
@click.option("--fit", "fit_file", help="A fit saved by 'scaling fit --save FILE'.")
@click.option("--csv", help="Fit on the fly from this CSV run table instead.")
@click.option("--experiment", help="Fit on the fly from this MLflow experiment instead.")
@click.option("--law", default="gpt4", show_default=True, help="Law to fit on the fly.")
@click.option("--x", "x_columns", help="Comma-separated x columns for the on-the-fly fit.")
@click.option("--flops", type=float, help="Compute budget C of the run to predict (FLOPs).")
@click.option("--params", type=float, help="Model size N (non-embedding parameters).")
@click.option("--tokens", type=float, help="Training tokens D.")
@click.option("--interval", default=0.9, show_default=True, help="Level of the prediction band.")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="Bootstrap resamples.")
@output_option
@tracking_option
def predict_command(fit_file, csv, experiment, law, x_columns, flops, params, tokens, interval, n_bootstrap, output, tracking_uri):
    """Predict a run's loss with its interval, and the compute-optimal N and D.

    \b
    Example:
      scaling predict --fit fit.json --flops 5.76e23
      scaling predict --csv runs.csv --law gpt4 --x flops --params 70e9 --tokens 1.4e12
    """
    from scaling.errors import ConfigError
    from scaling.fit import fit
    from scaling.predict import compute_optimal, load_fit, predict_run

    if fit_file and (csv or experiment):
        raise ConfigError("give --fit FILE or --csv/--experiment to fit on the fly, not both")
    if fit_file:
        result = load_fit(fit_file)
        optimal_fit = result if result.law_.name == "chinchilla" else None
    else:
        frame, source = _run_table(csv, experiment, tracking_uri)
        result = fit(law, frame, x=_columns(x_columns), n_bootstrap=n_bootstrap, source=source)
        optimal_fit = result if law == "chinchilla" else None
        if optimal_fit is None and {"params", "tokens", "loss"} <= set(frame.columns):
            optimal_fit = fit("chinchilla", frame, n_bootstrap=n_bootstrap, source=source)
    prediction = predict_run(result, flops=flops, params=params, tokens=tokens, interval=interval)
    budget = prediction["flops"]
    allocation = compute_optimal(budget, optimal_fit, interval).to_dict() if optimal_fit else None
    if output == "json":
        _emit_json({"prediction": prediction, "compute_optimal": allocation, "fit_valid": result.is_valid})
        return
    click.echo("\n".join(_prediction_lines(prediction, allocation, result)))


def _prediction_lines(prediction, allocation, result) -> list[str]:
    from scaling.formatting import format_count, format_flops, format_interval

    level = round(100 * prediction["interval"])
    where = f"C = {format_flops(prediction['flops'])}"
    if prediction["params"] is not None:
        where += f", N = {format_count(prediction['params'])}, D = {format_count(prediction['tokens'])}"
    value = format_interval(prediction["value"], prediction["lower"] or float("nan"), prediction["upper"] or float("nan"))
    lines = [f"{prediction['y']} at {where}: {value} ({level}%, law {prediction['law']})"]
    if prediction["extrapolation"]:
        lines.append(f"  {prediction['extrapolation']:.3g}x beyond the largest fitted run")
    if not result.is_valid:
        lines.append("  WARNING, fit invalid: " + "; ".join(result.reasons_))
    if allocation is None:
        lines.append("  compute-optimal N and D need a chinchilla fit (runs with params and tokens)")
    else:
        lines.append(
            f"  compute-optimal for C = {format_flops(allocation['flops'])}: "
            f"N = {format_count(allocation['params'])} "
            f"[{format_count(allocation['params_interval'][0] or float('nan'))}, "
            f"{format_count(allocation['params_interval'][1] or float('nan'))}], "
            f"D = {format_count(allocation['tokens'])} "
            f"[{format_count(allocation['tokens_interval'][0] or float('nan'))}, "
            f"{format_count(allocation['tokens_interval'][1] or float('nan'))}], "
            f"{allocation['tokens_per_param']:.1f} tokens/param"
        )
    return lines


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
