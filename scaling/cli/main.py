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
fit_range_option = click.option(
    "--fit-range",
    type=click.Choice(["all", "auto"]),
    default="all",
    show_default=True,
    help="'auto' leaves out the smallest proxies when a backtest on the proxies alone "
    "predicts the largest better without them.",
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
    if not debug:  # MLflow announces database migrations and the like at INFO
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # workers inherit it


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
    law L(C) = a*C^b + c on the proxies' exact compute (or the law the sweep file's
    'forecast:' section names), prints the forecast with its 90% interval, trains the
    target, writes reports/demo/ and prints one headline line.
    Finished runs are reused, so a second call takes seconds.

    \b
    Example:
      scaling demo
      scaling demo --quick
    """
    from scaling.demo import run_demo

    say = (lambda line: click.echo(line, err=True)) if output == "json" else click.echo
    display, update = _progress_display()
    with display:
        result = run_demo(
            sweep, quick=quick, tracking_uri=tracking_uri, storage=storage, workers=workers,
            report_dir=report_dir, say=say, progress=update,
        )
    if output == "json":
        _emit_json(result.summary())
    else:
        click.echo(f"headline: {result.comparison.headline()}")
        click.echo(f"report: {result.report_dir / 'index.html'} (wall time {result.wall_s:.0f} s)")


# --- report and compare commands ---


@cli.command("report")
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


@cli.command("compare")
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
        _emit_json(comparison.summary())
    else:
        click.echo(comparison_text(comparison))
    if fail_above is not None and comparison.error_above(fail_above):
        error = comparison.loss.relative_error * 100
        raise ScalingError(f"loss error {error:+.1f}% is above --fail-above {fail_above:g}%")


# --- fitting commands ---


def _run_table(csv: str | None, experiment: str | None, tracking_uri: str):
    """The run table and a name for it, from --csv or --experiment (exactly one)."""
    from scaling.errors import ConfigError

    if (csv is None) == (experiment is None):
        raise ConfigError("give exactly one of --csv FILE or --experiment NAME")
    if csv is not None:
        from scaling.table import load_csv

        return load_csv(csv), str(csv)
    from scaling.sweeps.tracking import runs_frame

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
@click.option("--law", default="gpt4", show_default=True, help="Law to fit (see scaling.laws.forms.LAWS).")
@click.option("--x", "x_columns", help="Comma-separated x columns, e.g. 'flops' (default: the law's).")
@click.option("--y", "y_column", help="Column to fit (default: the law's, usually 'loss'), or a "
              "metric such as task/copy/neg_log_pass_rate.")
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
      scaling fit --experiment demo --law capability --y task/copy/neg_log_pass_rate
    """
    from scaling.laws.backtesting import backtest
    from scaling.laws.fitting import fit
    from scaling.laws.hparams import law_table
    from scaling.laws.saved import save_fit

    frame, source = _run_table(csv, experiment, tracking_uri)
    frame = law_table(law, frame, seed=seed, source=source)  # tuned shapes: optima or best trials
    x = _columns(x_columns)
    y_column = _metric_column(y_column)
    result = fit(law, frame, x=x, y=y_column, n_bootstrap=n_bootstrap, seed=seed, source=source)
    report: dict[str, Any] = {"fit": result.summary()}
    if "tune" in frame.columns and law in ("lr", "batch"):
        report["optima"] = frame.to_dict(orient="records")
    if cuts:
        folds = backtest(law, frame, _cuts(cuts), x=x, y=y_column, seed=seed, source=source)
        report["backtest"] = folds.summary()
    if save:
        report["saved"] = str(save_fit(result, save))
    if output == "json":
        _emit_json(report)
        return
    lines = _fit_lines(report["fit"])
    lines += _optima_lines(report.get("optima", []))
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


def _optima_lines(optima: list[dict[str, Any]]) -> list[str]:
    """One line per tuned shape: the optimum the lr (and batch) law was fitted through."""
    from scaling.formatting import format_flops

    lines = [f"  fitted to the optima of {len(optima)} tuned shapes:"] if optima else []
    for row in optima:
        batch = f", batch {row['batch_tokens']:,.0f} tokens" if row["batch_choices"] > 1 else ""
        lines.append(
            f"    {row['tune']:<12} C = {format_flops(row['flops'])}: lr {row['lr']:.3g} "
            f"[{row['lr_lower']:.3g}, {row['lr_upper']:.3g}] ({row['method']}, "
            f"{row['trials']} trials){batch}"
        )
    return lines


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

    Fitted on the fly from runs scored on capability tasks, it also forecasts each task's
    metrics at that budget (as 'scaling capability' does).

    \b
    Example:
      scaling predict --fit fit.json --flops 5.76e23
      scaling predict --csv runs.csv --law gpt4 --x flops --params 70e9 --tokens 1.4e12
    """
    from scaling.errors import ConfigError
    from scaling.laws.allocation import compute_optimal
    from scaling.laws.fitting import fit
    from scaling.laws.hparams import law_table, recommend, tune_trials
    from scaling.laws.prediction import predict_run
    from scaling.laws.saved import load_fit

    if fit_file and (csv or experiment):
        raise ConfigError("give --fit FILE or --csv/--experiment to fit on the fly, not both")
    trials, source = None, str(fit_file)
    if fit_file:
        result = load_fit(fit_file)
        optimal_fit = result if result.law_.name == "chinchilla" else None
    else:
        frame, source = _run_table(csv, experiment, tracking_uri)
        trials = tune_trials(frame)
        frame = law_table(law, frame, source=source)  # a mistuned trial would bend the loss law
        result = fit(law, frame, x=_columns(x_columns), n_bootstrap=n_bootstrap, source=source)
        optimal_fit = result if law == "chinchilla" else None
        if optimal_fit is None and {"params", "tokens", "loss"} <= set(frame.columns):
            optimal_fit = _optional_chinchilla(frame, n_bootstrap, source)
    prediction = predict_run(result, flops=flops, params=params, tokens=tokens, interval=interval)
    budget = prediction["flops"]
    allocation = compute_optimal(budget, optimal_fit, interval).to_dict() if optimal_fit else None
    hparams = recommend(trials, budget, interval=interval, n_bootstrap=n_bootstrap, source=source)
    tasks = [] if fit_file else _task_forecasts(frame, result, budget, interval, n_bootstrap)
    if output == "json":
        _emit_json({"prediction": prediction, "compute_optimal": allocation, "fit_valid": result.is_valid,
                    "hyperparameters": hparams, "capabilities": [f.summary() for f in tasks]})
        return
    click.echo("\n".join(_prediction_lines(prediction, allocation, result)
                          + _hyperparameter_lines(hparams) + _task_lines(tasks)))


def _optional_chinchilla(frame, n_bootstrap: int, source: str):
    """The Chinchilla fit behind the compute-optimal N and D, or None where the runs cannot
    carry it (e.g. three tuned shapes for five parameters): the loss prediction stands alone."""
    from scaling.errors import FitError
    from scaling.laws.fitting import fit

    try:
        return fit("chinchilla", frame, n_bootstrap=n_bootstrap, source=source)
    except FitError:
        return None


def _hyperparameter_lines(hparams: dict[str, Any]) -> list[str]:
    from scaling.formatting import format_count

    if hparams["source"] == "unavailable":
        return [f"  recommended lr: none ({hparams['reason']})"]
    lr, batch = hparams["lr"], hparams["batch_tokens"]
    if hparams["source"] == "deepseek":
        return [f"  no tune runs; DeepSeek LLM's published laws (reference only): lr {lr['value']:.3g}, "
                f"batch {format_count(batch['value'])} tokens"]
    line = (f"  recommended lr {lr['value']:.3g} [{lr['lower']:.3g}, {lr['upper']:.3g}] "
            f"(lr law fitted to {hparams['shapes']} tuned shapes)")
    if batch is not None:
        line += (f", batch {format_count(batch['value'])} [{format_count(batch['lower'])}, "
                 f"{format_count(batch['upper'])}] tokens")
    return [line]


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


# --- sweep commands ---


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _print_rows(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[_cell(row.get(column)) for column in columns])
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


class _ProgressDisplay:
    """A rich live line (runs done/running/waiting/failed, compute spent, ETA) that appears
    with the first snapshot, so an error raised before any training prints alone."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]sweep"), BarColumn(), TextColumn("{task.description}"),
            TimeElapsedColumn(), transient=False, console=Console(stderr=True),
        )  # fmt: skip
        self.task = None

    def __enter__(self) -> _ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.progress.stop()

    def update(self, snapshot: dict[str, Any]) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("starting", total=1.0)
        eta = snapshot["eta_s"]
        self.progress.update(
            self.task,
            completed=snapshot["flops_spent"],
            total=max(snapshot["flops_total"], 1.0),
            description=(
                f"{snapshot['done']}/{snapshot['runs']} done, {snapshot['running']} running, "
                f"{snapshot['failed']} failed | {snapshot['flops_spent']:.3g}/"
                f"{snapshot['flops_total']:.3g} FLOPs | ETA "
                + (f"{eta:.0f}s" if eta is not None else "-")
            ),
        )


def _progress_display() -> tuple[_ProgressDisplay, Any]:
    display = _ProgressDisplay()
    return display, display.update


def _split(text: str | None) -> tuple[str, ...] | None:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else None


@cli.group()
def sweep() -> None:
    """Launch families of runs through an Optuna queue, every run tracked in MLflow.

    \b
    Example:
      scaling sweep run sweeps/demo.yaml --dry-run
    """


_storage_option = click.option(
    "--storage", default=None,
    help="Optuna storage: journal file path or RDB URL (default: optuna.journal beside mlflow.db).",
)  # fmt: skip
_roles_option = click.option("--roles", default=None, help="Only these roles, e.g. 'proxy' or 'proxy,target'.")
_quick_option = click.option("--quick", is_flag=True, help="Use the file's 'quick:' toy overrides.")


@sweep.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--workers", type=int, default=1, show_default=True, help="CPU worker processes (cores are split).")
@click.option("--devices", default=None, help="GPU indices, one worker each, e.g. 0,1,2,3.")
@_storage_option
@tracking_option
@_roles_option
@_quick_option
@click.option("--threads", type=int, default=None, help="torch threads per CPU worker (default: cores / workers).")
@click.option("--dry-run", is_flag=True, help="Print the plan (shape, N, D, exact C) and train nothing.")
@output_option
def sweep_run(file, workers, devices, storage, tracking_uri, roles, quick, threads, dry_run, output) -> None:
    """Run a sweep until every run is done (a second call reuses finished runs).

    \b
    Example:
      scaling sweep run sweeps/demo.yaml --workers 2 --roles proxy
      scaling sweep run sweeps/gpt2-ladder-gpu.yaml --dry-run
    """
    from scaling.sweeps import queue as sweeps

    config = sweeps.load_sweep(file, quick=quick)
    if dry_run:
        rows = sweeps.plan(config)
        total = {"name": "total", "C": sum(r["C"] for r in rows), "C_exact": sum(r["C_exact"] for r in rows)}
        if output == "json":
            return _emit_json({"runs": rows, "total_flops": total["C"], "total_flops_exact": total["C_exact"]})
        return _print_rows([*rows, total], ["name", "role", "runs", "shape", "N", "D", "C", "C_exact", "batch_tokens", "lr"], config.name)
    display, update = _progress_display()
    with display:
        summary = sweeps.run_sweep(
            config, workers=workers, devices=_split(devices), storage=storage,
            tracking_uri=tracking_uri, roles=_split(roles), threads=threads, progress=update,
        )  # fmt: skip
    if output == "json":
        return _emit_json(summary)
    _print_rows(summary["rows"], ["name", "role", "state", "loss", "flops_exact", "reused", "failure"], config.name)


@sweep.command("worker")
@click.argument("file", type=click.Path(dir_okay=False))
@_storage_option
@tracking_option
@_roles_option
@_quick_option
@click.option("--threads", type=int, default=None, help="torch threads for this worker.")
def sweep_worker(file, storage, tracking_uri, roles, quick, threads) -> None:
    """Join a running sweep (e.g. from another machine or a SLURM array) and drain its queue.

    \b
    Example:
      scaling sweep worker sweeps/gpt2-ladder-gpu.yaml \
        --storage postgresql://user@db/optuna --tracking-uri http://mlflow:5000
    """
    from scaling.sweeps import queue as sweeps

    counts = sweeps.worker(file, storage=storage, tracking_uri=tracking_uri, roles=_split(roles), threads=threads, quick=quick)
    _emit_json(counts)


@sweep.command("status")
@click.argument("file", type=click.Path(dir_okay=False))
@_storage_option
@tracking_option
@_roles_option
@_quick_option
@output_option
def sweep_status(file, storage, tracking_uri, roles, quick, output) -> None:
    """Print a table of the sweep's runs and their states.

    \b
    Example:
      scaling sweep status sweeps/demo.yaml
    """
    from scaling.sweeps import queue as sweeps

    rows = sweeps.status(file, storage=storage, tracking_uri=tracking_uri, roles=_split(roles), quick=quick)
    if output == "json":
        return _emit_json(rows)
    _print_rows(rows, ["name", "role", "state", "loss", "flops_exact", "worker", "mlflow_run_id"], file)


# --- trainer commands ---


def _parse_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("train.lr=1e-3", ...)`` -> ``{"train.lr": 0.001}``; values are read as YAML scalars."""
    import yaml

    from scaling.errors import ConfigError

    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: write it as KEY=VALUE, e.g. --set train.lr=1e-3")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _train_with_progress(spec: Any, checkpoint_dir: str | None) -> Any:
    """Run :func:`scaling.training.loop.train` under a rich progress bar (loss, tokens/s, ETA)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from scaling.training.loop import train

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]} tok/s"),
        TimeRemainingColumn(),
    )
    # On stderr, so that --output json leaves stdout to the JSON.
    bar = Progress(*columns, console=Console(stderr=True))
    task = bar.add_task(spec.name, total=None, loss="-", speed="-")

    def progress(step: int, steps: int, metrics: dict[str, float]) -> None:
        bar.start()  # on the first step, so a config error prints alone, without a bar
        bar.update(task, completed=step, total=steps, loss=f"{metrics['train/loss']:.4f}",
                   speed=f"{metrics['perf/tokens_per_s']:,.0f}")

    try:
        return train(spec, checkpoint_dir=checkpoint_dir, progress=progress)
    finally:
        if bar.live.is_started:
            bar.stop()


@cli.command("train")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field by its dotted path; repeatable.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Checkpoint here (train.checkpoint_every) and resume if one exists; the "
                   "final weights go to final.pt.")
@output_option
def train_command(config: str | None, overrides: tuple[str, ...], checkpoint_dir: str | None,
                  output: str) -> None:
    """Train one model from a YAML run file and/or --set flags, with a progress bar.

    \b
    Example:
      scaling train --set model.d_model=64 --set model.n_layer=2 --set train.tokens=200000
      scaling train run.yaml --checkpoint-dir checkpoints/target
    """
    from scaling.config.run import load_run_spec

    spec = load_run_spec(config, _parse_overrides(overrides))
    result = _train_with_progress(spec, checkpoint_dir)
    _print_run_result(result, output)


def _print_run_result(result: Any, output: str) -> None:
    from scaling.errors import DivergedError

    if os.environ.get("RANK", "0") != "0":
        pass  # under torchrun, rank 0 alone reports the run
    elif output == "json":
        _emit_json(result.to_dict())
    else:
        for key, value in result.to_dict().items():
            click.echo(f"{key:>18}  {value:,.6g}" if isinstance(value, float) else f"{key:>18}  {value}")
    if result.status != "finished":
        raise DivergedError(f"run diverged: {result.failure}; lower train.lr or check the data")


# --- capability commands ---


def _metric_column(name: str | None) -> str | None:
    """A metric as logged (``task/copy/accuracy``) to its run-table column (``task_copy_accuracy``)."""
    return None if name is None else name.replace("/", "_")


def _task_forecasts(frame, result, budget: float, interval: float, n_bootstrap: int) -> list:
    """Each task's forecasts at the budget of a loss prediction, on the loss law's compute axis."""
    from scaling.laws.capability import forecast_tasks

    x = result.x_[0] if len(result.x_) == 1 and result.x_[0] in ("flops", "flops_exact") else "flops"
    return forecast_tasks(frame, budget, x=x, interval=interval, n_bootstrap=n_bootstrap)[0]


def _task_lines(forecasts: list) -> list[str]:
    from scaling.formatting import format_band

    return [
        f"  {f.column} at {f.x} = {f.target_x:.3g}: "
        f"{format_band(f.predicted, f.lo, f.hi)} ({round(100 * f.interval)}%, {f.method})"
        for f in forecasts
    ]


@cli.command("capability")
@click.option("--experiment", help="MLflow experiment (= sweep name) of runs scored on tasks.")
@click.option("--csv", help="Run table as a CSV file instead (columns task_<name>_<metric>).")
@click.option("--flops", type=float, help="Compute to forecast for (in the --x column).")
@click.option("--target", help="Run id of the large run: forecast for its compute and compare.")
@click.option("--task", "tasks", multiple=True, help="Task to forecast (repeatable; default: all).")
@click.option("--x", "x_column", default="flops_exact", show_default=True,
              help="Compute column: flops_exact or flops (6ND).")
@click.option("--interval", default=0.9, show_default=True, help="Level of the forecast bands.")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="Bootstrap resamples.")
@output_option
@tracking_option
def capability_command(experiment, csv, flops, target, tasks, x_column, interval, n_bootstrap, output,
                       tracking_uri):
    """Forecast each task's score at a compute budget from the proxies' scores.

    Two forecasts per task: GPT-4's -E[log pass_rate] = alpha*C^(-k), and the two-step chain
    compute -> task NLL (a*C^b + c) -> accuracy (sigmoid), each with its interval for one
    run. With --target, the large run's compute is used and its scores are compared.

    \b
    Example:
      scaling capability --experiment demo --flops 3e14
      scaling capability --experiment demo --target 3f2a9c...
    """
    from scaling.errors import ConfigError
    from scaling.laws.capability import forecast_tasks
    from scaling.reporting.comparison import compare_forecasts

    frame, _ = _run_table(csv, experiment, tracking_uri)
    if (flops is None) == (target is None):
        raise ConfigError("give exactly one of --flops C or --target RUN_ID")
    target_row = _target_row(frame, target) if target is not None else None
    budget = flops if target_row is None else float(target_row[x_column])
    proxies = frame if target_row is None else frame[frame["run_id"] != target]
    forecasts, skipped = forecast_tasks(proxies, budget, tasks=list(tasks) or None, x=x_column,
                                        interval=interval, n_bootstrap=n_bootstrap)
    if not forecasts and not skipped:
        raise ConfigError("the run table has no task scores; list tasks in the sweep's evals: section")
    compared = [] if target_row is None else compare_forecasts(forecasts, target_row)
    if output == "json":
        return _emit_json({"forecasts": [f.summary() for f in forecasts], "skipped": skipped,
                           "compared": [row.summary() for row in compared]})
    lines = _task_lines(forecasts) + [f"  {task}: not forecast ({why})" for task, why in skipped.items()]
    lines += [f"  {row.metric}: actual {row.actual:.4g}, error {row.relative_error * 100:+.1f}%, "
              f"{'inside' if row.inside else 'outside'} the interval" for row in compared]
    click.echo("\n".join(lines))


def _target_row(frame, target: str):
    from scaling.errors import DataError

    rows = frame[frame["run_id"].astype(str) == target] if "run_id" in frame.columns else frame.iloc[:0]
    if rows.empty:
        raise DataError(f"the run table has no run {target!r}; pass a run_id from it")
    return rows.iloc[0]
# --- hyperparameter commands ---


def _integers(text: str, option: str) -> list[int]:
    from scaling.errors import ConfigError

    try:
        values = [int(part) for part in _columns(text)]
    except ValueError:
        values = []
    if len(values) < 2 or min(values) < 1:
        raise ConfigError(f"{option} {text!r}: give two or more positive integers, e.g. '32,64,128'")
    return values


@cli.command("check-coords")
@click.option("--widths", default="32,64,128,256", show_default=True, help="d_model values (the first is the base).")
@click.option("--depths", default="2,4,8", show_default=True, help="n_layer values (the first is the base).")
@click.option("--n-head", type=click.IntRange(min=1), default=4, show_default=True, help="Heads, fixed across widths.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2, show_default=True,
              help="A large learning rate, kept constant.")
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True, help="AdamW steps before measuring.")
@click.option("--plot", type=click.Path(dir_okay=False), default="coord-check.png", show_default=True,
              help="Where to write the figure.")
@output_option
def check_coords_command(widths, depths, n_head, lr, steps, plot, output):
    """Coordinate check of the parametrisations: activation size against width and depth.

    Trains each shape a few steps at a large learning rate under 'standard' and 'mup'
    (the first width and depth are the base shape) and measures the mean |coordinate| of
    the embedding, attention, MLP, residual stream and logits. Under 'mup' they must stay
    flat as the model widens or deepens; under 'standard' they grow. Prints the growth of
    log2(size) per doubling of width and depth, and writes the figure.

    \b
    Example:
      scaling check-coords
      scaling check-coords --widths 64,128,256,512 --lr 3e-2 --plot coords.png
    """
    from pathlib import Path

    from scaling.reporting.figures import draw_coord_check, figure_png
    from scaling.training.coordinates import coord_check, coord_slopes

    table = coord_check(_integers(widths, "--widths"), _integers(depths, "--depths"),
                        n_head=n_head, lr=lr, steps=steps)
    slopes = coord_slopes(table)
    Path(plot).write_bytes(figure_png(draw_coord_check(table)))
    if output == "json":
        return _emit_json({"sizes": table.to_dict(orient="records"),
                           "slopes": slopes.to_dict(orient="records"), "plot": plot})
    wide = slopes.pivot_table(index="layer", columns=["axis", "parametrization"], values="slope", sort=False)
    rows = [{"layer": layer, **{f"{axis} {name}": float(value) for (axis, name), value in row.items()}}
            for layer, row in wide.iterrows()]
    _print_rows(rows, ["layer", *[f"{axis} {name}" for axis, name in wide.columns]],
                "growth of log2(activation size) per doubling")
    click.echo(f"figure: {plot}")


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
