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


# --- demo commands ---


@cli.command("demo")
@click.option("--sweep", "sweep", type=click.Path(dir_okay=False), default=None,
              help="Sweep file with the proxies and the target [default: sweeps/demo.yaml].")
@click.option("--quick", is_flag=True, help="Toy sizes: the same pipeline in about a minute.")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--storage", default=None, help="Optuna storage [default: optuna.journal beside mlflow.db].")
@click.option("-o", "--report-dir", type=click.Path(file_okay=False), default=None,
              help="Report directory [default: reports/<sweep name>/].")
@tracking_option
@output_option
def demo_command(sweep, quick, workers, storage, report_dir, tracking_uri, output):
    """Train proxies, predict a bigger run before training it, train it, and compare.

    Runs the demo sweep on the embedded corpus (byte tokens, CPU or GPU), fits the GPT-4
    law L(C) = a*C^b + c on the proxies' exact compute, prints the forecast with its 90%
    interval, trains the target, writes reports/demo/ and prints one headline line.
    Finished runs are reused, so a second call takes seconds.

    \b
    Example:
      scaling demo
      scaling demo --quick
    """
    from scaling.demo import run_demo

    say = (lambda line: click.echo(line, err=True)) if output == "json" else click.echo
    result = run_demo(
        sweep, quick=quick, tracking_uri=tracking_uri, storage=storage, workers=workers,
        report_dir=report_dir, say=say, progress=_sweep_progress(output),
    )
    if output == "json":
        _emit_json(result.summary())
    else:
        click.echo(f"headline: {result.comparison.headline()}")
        click.echo(f"report: {result.report_dir / 'index.html'} (wall time {result.wall_s:.0f} s)")


def _sweep_progress(output: str):
    """A progress callback for sweeps: one rich status line on a terminal, nothing otherwise."""
    if output == "json" or not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)

    def show(snapshot: dict) -> None:
        console.print(
            f"  runs {snapshot.get('done', 0)}/{snapshot.get('runs', 0)} done, "
            f"{snapshot.get('running', 0)} running, {snapshot.get('failed', 0)} failed",
            end="\r",
        )

    return show

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


def _cuts(text: str) -> list[float]:
    from scaling.errors import ConfigError

    try:
        return [float(part) for part in _columns(text)]
    except ValueError:
        raise ConfigError(f"--backtest {text!r}: give compute cuts as numbers, e.g. '1e19,1e20'") from None


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
def fit_command(
    csv, experiment, law, x_columns, y_column, n_bootstrap, seed, cuts, save, output, tracking_uri
):
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
        folds = backtest(law, frame, _cuts(cuts), x=x, y=y_column, seed=seed, source=source)
        report["backtest"] = folds.summary()
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
def predict_command(
    fit_file, csv, experiment, law, x_columns, flops, params, tokens, interval, n_bootstrap, output,
    tracking_uri,
):
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
    nan = float("nan")
    value = format_interval(prediction["value"], prediction["lower"] or nan, prediction["upper"] or nan)
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


REFERENCE_START = "<!-- cli-reference:start -->"
REFERENCE_END = "<!-- cli-reference:end -->"


def cli_reference() -> str:
    """The Markdown CLI reference, generated from the command definitions themselves."""
    lines: list[str] = []

    def walk(command: click.Command, path: list[str], parent: click.Context | None = None) -> None:
        settings = {"terminal_width": 88, "max_content_width": 88, **cli.context_settings}
        with click.Context(command, info_name=path[-1], parent=parent, **settings) as ctx:
            if command.hidden:
                return
            lines.extend([f"### `{' '.join(path)}`", "", "```text", command.get_help(ctx).rstrip(), "```", ""])
            if isinstance(command, click.Group):
                for name in command.list_commands(ctx):
                    walk(command.get_command(ctx, name), [*path, name], ctx)

    walk(cli, ["scaling"])
    return "\n".join(lines).rstrip() + "\n"


@cli.command("cli-reference", hidden=True)
@click.option("--write", "target", type=click.Path(dir_okay=False), help="Rewrite the reference block of this file.")
def cli_reference_command(target: str | None) -> None:
    """Print the CLI reference in Markdown, or rewrite it between the markers of a file.

    \b
    Example:
      scaling cli-reference --write README.md
    """
    from pathlib import Path

    from scaling.errors import ConfigError

    text = cli_reference()
    if target is None:
        click.echo(text, nl=False)
        return
    path = Path(target)
    document = path.read_text(encoding="utf-8")
    if REFERENCE_START not in document or REFERENCE_END not in document:
        raise ConfigError(f"{path}: no {REFERENCE_START} ... {REFERENCE_END} block; add the two markers")
    head, rest = document.split(REFERENCE_START, 1)
    _, tail = rest.split(REFERENCE_END, 1)
    path.write_text(f"{head}{REFERENCE_START}\n{text}{REFERENCE_END}{tail}", encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
