"""Commands on scaling laws: ``scaling fit``, ``scaling predict`` and ``scaling capability``."""

from __future__ import annotations

from typing import Any

import click

from scaling.cli.forecast_commands import external_target_options
from scaling.cli.options import (
    comma_list,
    drop_top_loss_option,
    emit_json,
    interval_option,
    law_option,
    output_option,
    overestimate_option,
    print_rows,
    tracking_option,
    where_option,
)

__all__ = ["fit_command", "predict_command", "capability_command"]


def _cuts(text: str) -> list[float]:
    from scaling.errors import ConfigError

    try:
        return [float(part) for part in comma_list(text)]
    except ValueError:
        raise ConfigError(f"--backtest {text!r}: give compute cuts as numbers, e.g. '1e19,1e20'") from None


@click.command("fit")
@click.option("--csv", help="Run table as a CSV file (one row per run).")
@click.option("--experiment", help="MLflow experiment (= sweep name) to read the runs from.")
@law_option("Law to fit (scaling.laws.forms.LAWS).")
@click.option("--x", "x_columns", help="Comma-separated x columns, e.g. 'flops' (default: the law's).")
@click.option("--y", "y_column", help="Column to fit (default: the law's, usually 'loss'), or a "
              "metric such as task/copy/neg_log_pass_rate.")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option("--backtest", "cuts", help="Comma-separated compute cuts to backtest at, e.g. '1e20'.")
@click.option("--save", help="Write the fit to this JSON file (for 'scaling predict --fit').")
@click.option("--allocation", is_flag=True, help="Also fit Chinchilla's three approaches to "
              "the compute-optimal N_opt ∝ C^a: 1 the lower envelope of loss over compute, 2 "
              "IsoFLOP minima, 3 a chinchilla fit's closed form (runs with params, flops, loss).")
@interval_option
@where_option
@drop_top_loss_option
@overestimate_option
@output_option
@tracking_option
def fit_command(
    csv, experiment, law, x_columns, y_column, n_bootstrap, seed, cuts, save, allocation,
    interval, where, drop_top_loss, overestimate, output, tracking_uri,
):
    """Fit a scaling law to runs, with bootstrap intervals and diagnostics.

    \b
    Example:
      scaling fit --csv chinchilla_points.csv --law chinchilla --backtest 1e20 --save fit.json
      scaling fit --experiment demo --law capability --y task/copy/neg_log_pass_rate
      scaling fit --csv chinchilla_points.csv --law chinchilla --drop-top-loss 5
      scaling fit --csv runs.csv --law chinchilla --where "tokens >= 2 * params"
      scaling fit --csv chinchilla_points.csv --law chinchilla --allocation
      scaling fit --experiment demo --law tissue_n --save curves.json

    The curve laws (tissue, tissue_n) fit every evaluation of every finished run past 10% of
    its steps, with the areas under its learning-rate schedule (scaling/training/curves.py);
    from a CSV they read the columns s1 and s2 (and params).
    """
    from scaling.laws.backtesting import backtest
    from scaling.laws.capability import metric_column
    from scaling.laws.fitting import fit, fit_report
    from scaling.laws.hparams import law_table
    from scaling.laws.saved import save_fit
    from scaling.laws.selection import filter_rows
    from scaling.reporting.comparison import read_run_table

    from scaling.sweeps.curves import CURVE_LAWS, curve_table

    if law in CURVE_LAWS and experiment and not csv:  # whole curves, not one loss per run
        frame = curve_table(experiment, tracking_uri=tracking_uri)
        source = f"the eval curves of experiment {experiment!r}"
    else:
        frame, source = read_run_table(csv, experiment, tracking_uri=tracking_uri)
    frame = law_table(law, frame, seed=seed, source=source)  # tuned shapes: optima or best trials
    x = comma_list(x_columns)
    y_column = metric_column(y_column)
    result = fit(law, frame, x=x, y=y_column, n_bootstrap=n_bootstrap, seed=seed, interval=interval,
                 where=where, drop_top_loss=drop_top_loss, overestimate=overestimate, source=source)
    frame, _ = filter_rows(frame, where=where, drop_top_loss=drop_top_loss, y=result.y_, source=source)
    report: dict[str, Any] = {"fit": result.summary()}
    if "tune" in frame.columns and law in ("lr", "batch"):
        report["optima"] = frame.to_dict(orient="records")
    if cuts:
        folds = backtest(law, frame, _cuts(cuts), x=x, y=y_column, seed=seed, interval=interval,
                         source=source)
        report["backtest"] = folds.summary()
    if save:
        report["saved"] = str(save_fit(result, save))
    laws = None
    if allocation:
        from scaling.laws.allocation import allocation_laws

        laws = allocation_laws(frame, result if result.law_.name == "chinchilla" else None,
                               n_bootstrap=min(n_bootstrap, 200), seed=seed, interval=interval,
                               source=source)
        report["allocation"] = {f"approach{k}": v.to_dict() if not isinstance(v, str) else {"error": v}
                                for k, v in laws.items()}
    if output == "json":
        emit_json(report)
        return
    lines = [fit_report(result)]
    lines += _optima_lines(report.get("optima", []))
    if "backtest" in report:
        for fold in report["backtest"]["folds"]:
            lines.append(
                f"  backtest {fold['n_train']} runs below {fold['cut']:.3g} -> {fold['n_test']} above: "
                f"mean |error| {100 * fold['mean_abs_relative_error']:.2f}%, max "
                f"{100 * fold['max_abs_relative_error']:.2f}%, {100 * fold['coverage']:.0f}% inside the "
                f"{round(100 * report['backtest']['interval'])}% band"
            )
    if laws is not None:
        lines += _allocation_lines(laws, interval)
    if save:
        lines.append(f"  saved to {save}")
    click.echo("\n".join(lines))


def _allocation_lines(laws: dict[int, Any], interval: float) -> list[str]:
    """One line per Chinchilla approach: N_opt ∝ C^a and D_opt ∝ C^b, or why it has none."""
    from scaling.formatting import format_band

    how = {1: "lower envelope", 2: "IsoFLOP minima", 3: "chinchilla fit, closed form"}
    lines = [f"  compute-optimal allocation, N_opt ∝ C^a and D_opt ∝ C^b (C = 6ND, "
             f"{round(100 * interval)}%):"]
    for number, law in laws.items():
        if isinstance(law, str):
            lines.append(f"    approach {number} ({how[number]}): none, {law}")
            continue
        points = f", {len(law.points['flops'])} points" if law.points else ""
        lines.append(f"    approach {number} ({how[number]}{points}): a = {format_band(law.a, *law.a_interval)}, "
                     f"b = {format_band(law.b, *law.b_interval)}")
    return lines


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


@click.command("predict")
@click.option("--fit", "fit_file", help="A fit saved by 'scaling fit --save FILE'.")
@click.option("--csv", help="With --fit: rows to predict (one run per row, the columns the law "
              "reads). Without --fit: a CSV run table to fit on the fly.")
@click.option("--experiment", help="Fit on the fly from this MLflow experiment instead.")
@law_option("Law to fit on the fly.")
@click.option("--x", "x_columns", help="Comma-separated x columns for the on-the-fly fit.")
@click.option("--flops", type=float, help="Compute budget C of the run to predict (FLOPs).")
@click.option("--params", type=float, help="Model size N (non-embedding parameters).")
@click.option("--tokens", type=float, help="Training tokens D.")
@interval_option
@click.option("--band", type=click.Choice(["run", "fit"]), default="run", show_default=True,
              help="With --fit and --csv: 'run' bands hold one run's value (the fit's scatter "
              "included), 'fit' bands the fitted curve.")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="Bootstrap resamples.")
@where_option
@drop_top_loss_option
@output_option
@tracking_option
def predict_command(
    fit_file, csv, experiment, law, x_columns, flops, params, tokens, interval, band, n_bootstrap,
    where, drop_top_loss, output, tracking_uri,
):
    """Predict a run's loss with its interval, and the compute-optimal N and D.

    With --fit FILE --csv ROWS.csv it predicts every row of ROWS.csv instead, and scores the
    rows that have the fitted column (usually loss): a fit checked on your own held-out runs.
    --where and --drop-top-loss then filter those rows; without --fit, the fitted runs.

    Fitted on the fly from runs scored on capability tasks, it also forecasts each task's
    metrics at that budget (as 'scaling capability' does).

    \b
    Example:
      scaling predict --fit fit.json --flops 5.76e23
      scaling predict --fit fit.json --csv held_out.csv --output json
      scaling predict --csv runs.csv --law gpt4 --x flops --params 70e9 --tokens 1.4e12
    """
    from scaling.errors import ConfigError
    from scaling.laws.allocation import compute_optimal, optional_chinchilla_fit
    from scaling.laws.capability import forecast_tasks_for_fit
    from scaling.laws.fitting import fit
    from scaling.laws.hparams import law_table, recommend, tune_trials
    from scaling.laws.prediction import predict_run
    from scaling.laws.saved import load_fit
    from scaling.reporting.comparison import read_run_table

    if fit_file and csv:
        if experiment or flops is not None or params is not None or tokens is not None:
            raise ConfigError("--fit FILE --csv ROWS predicts the rows of ROWS; leave out "
                              "--experiment, --flops, --params and --tokens")
        return _predict_csv_rows(load_fit(fit_file), csv, interval, band, where, drop_top_loss, output)
    if fit_file and experiment:
        raise ConfigError("give --fit FILE or --csv/--experiment to fit on the fly, not both")
    trials, source = None, str(fit_file)
    if fit_file:
        result = load_fit(fit_file)
        optimal_fit = result if result.law_.name == "chinchilla" else None
    else:
        frame, source = read_run_table(csv, experiment, tracking_uri=tracking_uri)
        trials = tune_trials(frame)
        frame = law_table(law, frame, source=source)  # a mistuned trial would bend the loss law
        result = fit(law, frame, x=comma_list(x_columns), n_bootstrap=n_bootstrap, interval=interval,
                     where=where, drop_top_loss=drop_top_loss, source=source)
        optimal_fit = result if law == "chinchilla" else None
        if optimal_fit is None and {"params", "tokens", "loss"} <= set(frame.columns):
            optimal_fit = optional_chinchilla_fit(frame, n_bootstrap, source)
    prediction = predict_run(result, flops=flops, params=params, tokens=tokens, interval=interval)
    budget = prediction["flops"]
    allocation = compute_optimal(budget, optimal_fit, interval).to_dict() if optimal_fit else None
    hparams = recommend(trials, budget, interval=interval, n_bootstrap=n_bootstrap, source=source)
    tasks = [] if fit_file else forecast_tasks_for_fit(frame, result, budget, interval=interval,
                                                       n_bootstrap=n_bootstrap)
    if output == "json":
        emit_json({"prediction": prediction, "compute_optimal": allocation, "fit_valid": result.is_valid,
                   "hyperparameters": hparams, "capabilities": [f.summary() for f in tasks]})
        return
    click.echo("\n".join(_prediction_lines(prediction, allocation, result)
                          + _hyperparameter_lines(hparams) + _task_lines(tasks)))


def _predict_csv_rows(result, csv: str, interval, band, where, drop_top_loss, output) -> None:
    """``scaling predict --fit FILE --csv ROWS``: every row predicted, and scored where it has y."""
    from scaling.laws.prediction import predict_rows
    from scaling.laws.selection import filter_rows
    from scaling.table import load_csv

    rows = load_csv(csv)
    rows, record = filter_rows(rows, where=where, drop_top_loss=drop_top_loss, y=result.y_, source=csv)
    out = predict_rows(result, rows, interval=interval, band=band, source=csv)
    out.update(source=csv, row_filter=record, fit_valid=result.is_valid, fit_reasons=list(result.reasons_))
    if output == "json":
        emit_json(out)
        return
    level = round(100 * interval)
    table = []
    for row in out["rows"]:
        cells = {column: f"{row[column]:.4g}" for column in out["x"]}
        cells.update(predicted=f"{row['value']:.4g}", band=_band_text(row["lower"], row["upper"]))
        if "observed" in row:
            cells.update(observed=f"{row['observed']:.4g}", error=f"{100 * row['error']:+.2f}%",
                         inside="yes" if row["inside"] else "no")
        table.append(cells)
    columns = [*out["x"], "predicted", "band"]
    if out["scores"] is not None:
        columns += ["observed", "error", "inside"]
    print_rows(table, columns, title=f"{out['y']} from {result.law_.name} ({level}% {band} band), {csv}")
    click.echo("\n".join(_row_score_lines(out, record, result, level)))


def _band_text(lower: float | None, upper: float | None) -> str:
    return "-" if lower is None or upper is None else f"[{lower:.4g}, {upper:.4g}]"


def _row_score_lines(out, record, result, level) -> list[str]:
    from scaling.laws.selection import filter_text

    lines = [f"  {len(out['rows'])} rows predicted"]
    scores = out["scores"]
    if scores is not None:
        scored = sum("observed" in row for row in out["rows"])
        inside = "" if scores["coverage"] is None else f", {100 * scores['coverage']:.0f}% inside the {level}% band"
        lines[0] += (f"; {scored} with {out['y']}: mean |error| {100 * scores['mean_abs_error']:.2f}%, "
                     f"max {100 * scores['max_abs_error']:.2f}%, bias {100 * scores['bias']:+.2f}%{inside}")
    text = filter_text(record)
    if text:
        lines.append(f"  {text}")
    if not result.is_valid:
        lines.append("  WARNING, fit invalid: " + "; ".join(result.reasons_))
    return lines


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
        lines.append("  compute-optimal N and D need a valid chinchilla fit (runs with params and tokens "
                     "at several tokens per parameter)")
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


# --- capability commands ---


def _task_lines(forecasts: list) -> list[str]:
    """One line per capability forecast: the value with its interval, or why the proxies
    cannot predict it (:meth:`scaling.laws.capability.TaskForecast.text`)."""
    return [
        f"  {f.column} at {f.x} = {f.target_x:.3g}: {f.text()} "
        + (f"({round(100 * f.interval)}%, {f.method})" if f.predictable else f"({f.method})")
        for f in forecasts
    ]


@click.command("capability")
@click.option("--experiment", help="MLflow experiment (= sweep name) of runs scored on tasks.")
@click.option("--csv", help="Run table as a CSV file instead (columns task_<name>_<metric>).")
@click.option("--flops", type=float, help="Compute to forecast for (in the --x column).")
@click.option("--target", help="Run id of the large run: forecast for its compute and compare.")
@external_target_options
@click.option("--task", "tasks", multiple=True, help="Task to forecast (repeatable; default: all).")
@click.option("--x", "x_column", default="flops_exact", show_default=True,
              help="Compute column: flops_exact or flops (6ND).")
@interval_option
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="Bootstrap resamples.")
@output_option
@tracking_option
def capability_command(experiment, csv, flops, target, target_uri, target_experiment, target_csv,
                       batch_tokens, tasks, x_column, interval, n_bootstrap, output, tracking_uri):
    """Forecast each task's score at a compute budget from the proxies' scores.

    Two forecasts per task: GPT-4's -E[log pass_rate] = alpha*C^(-k), and the two-step chain
    compute -> task NLL (a*C^b + c) -> accuracy (sigmoid), each with its interval for one
    run. A forecast the proxies cannot make (their scores do not move with compute, or the
    interval covers most of the metric's range) says "not predictable from these proxies"
    and why. With --target, the large run's compute is used and its scores are compared; the
    large run may be tracked elsewhere (--target-uri, --target-experiment), as for compare.
    A --target-csv curve carries no task scores: give its compute with --flops.

    \b
    Example:
      scaling capability --experiment demo --flops 3e14
      scaling capability --experiment demo --target 3f2a9c...
      scaling capability --experiment demo --target 3f2a9c... --target-uri http://HOST:5000 \\
          --target-experiment big-run
    """
    from scaling.errors import ConfigError
    from scaling.laws.capability import forecast_tasks
    from scaling.reporting.comparison import compare_forecasts, read_run_table

    frame, _ = read_run_table(csv, experiment, tracking_uri=tracking_uri)
    if target_csv is not None and (target is not None or flops is None):
        raise ConfigError("--target-csv CURVE.csv needs the large run's compute: pass --flops C "
                          f"(its {x_column}), and no --target")
    if target_csv is None and (flops is None) == (target is None):
        raise ConfigError("give exactly one of --flops C or --target RUN_ID")
    if target is None and (target_uri is not None or target_experiment is not None):
        raise ConfigError("--target-uri/--target-experiment need --target RUN_ID")
    target_row, name, proxies = _capability_target(
        frame, target, target_uri, target_experiment, target_csv, batch_tokens, experiment,
        tracking_uri, x_column)
    budget = flops if target_row is None or target_csv is not None else _target_budget(
        target_row, x_column, proxies, name)
    forecasts, skipped = forecast_tasks(proxies, budget, tasks=list(tasks) or None, x=x_column,
                                        interval=interval, n_bootstrap=n_bootstrap)
    if not forecasts and not skipped:
        raise ConfigError("the run table has no task scores; list tasks in the sweep's evals: section")
    compared = [] if target_row is None else compare_forecasts(forecasts, target_row)
    missing = None
    if target_row is not None and not compared:
        missing = (f"the large run {name} has no task scores: a CSV curve carries only its loss; "
                   "to compare, log task/<name>/<metric> with the run in MLflow and pass "
                   "--target RUN_ID" if target_csv is not None else
                   f"the large run {name} has no task scores (no task/<name>/accuracy, "
                   "neg_log_pass_rate logged); score it on the tasks (the sweep's evals: "
                   "section) to compare")
    if output == "json":
        return emit_json({"forecasts": [f.summary() for f in forecasts], "skipped": skipped,
                          "compared": [row.summary() for row in compared],
                          "budget": budget, "target": name, "no_task_scores": missing})
    lines = _task_lines(forecasts) + [f"  {task}: not forecast ({why})" for task, why in skipped.items()]
    lines += [f"  {row.metric}: actual {row.actual:.4g}" + (
              f", error {row.relative_error * 100:+.1f}%, {'inside' if row.inside else 'outside'} "
              "the interval" if not row.unpredictable else " (no forecast to score)")
              for row in compared]
    if missing:
        lines.append(f"  {missing}")
    click.echo("\n".join(lines))


def _capability_target(frame, target, target_uri, target_experiment, target_csv, batch_tokens,
                       experiment, tracking_uri, x_column):
    """The large run's row (None without one), its name, and the proxies' table without it."""
    from pathlib import Path

    from scaling.laws.selection import find_run, run_label

    if target_csv is not None:
        from scaling.reporting.external import external_target, read_curve_csv

        curve = read_curve_csv(target_csv, batch_tokens=batch_tokens)
        row = external_target(curve, name=Path(target_csv).stem)
        pool = frame[frame["role"] != "target"] if "role" in frame.columns else frame
        return row, Path(target_csv).name, pool
    if target is None:
        return None, None, frame
    if target_uri is None and target_experiment is None:
        row = find_run(frame, target)
        return row, run_label(row), frame[frame["run_id"] != target]
    from scaling.reporting.comparison import mlflow_target
    from scaling.sweeps.tracking import runs_frame

    uri, where = target_uri or tracking_uri, target_experiment or experiment
    if where is None:
        from scaling.errors import ConfigError

        raise ConfigError("--target-uri with --csv needs --target-experiment NAME (where the run is)")
    row, _ = mlflow_target(runs_frame(where, tracking_uri=uri, status=None), target,
                           experiment=where, tracking_uri=uri)
    pool = frame[frame["role"] != "target"] if "role" in frame.columns else frame
    return row, run_label(row), pool[pool["run_id"] != target] if "run_id" in pool.columns else pool


def _target_budget(row, x_column: str, proxies, name: str) -> float:
    """The large run's value of the compute column (worked out from its size when missing)."""
    from scaling.errors import DataError
    from scaling.formatting import is_finite
    from scaling.reporting.forecast import law_x_value

    if is_finite(row.get(x_column)):
        return float(row[x_column])
    try:
        return law_x_value(x_column, dict(row), proxies)[0]
    except DataError:
        raise DataError(f"target run {name}: {x_column} is missing; pass --x flops, or --flops C "
                        "with --target-csv") from None
