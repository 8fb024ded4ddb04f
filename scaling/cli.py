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


def _progress_display():
    """A rich live line: runs done/running/waiting/failed, compute spent, ETA."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]sweep"), BarColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), transient=False, console=Console(stderr=True),
    )  # fmt: skip
    task = progress.add_task("starting", total=1.0)

    def update(snapshot: dict[str, Any]) -> None:
        eta = snapshot["eta_s"]
        progress.update(
            task,
            completed=snapshot["flops_spent"],
            total=max(snapshot["flops_total"], 1.0),
            description=(
                f"{snapshot['done']}/{snapshot['runs']} done, {snapshot['running']} running, "
                f"{snapshot['failed']} failed | {snapshot['flops_spent']:.3g}/"
                f"{snapshot['flops_total']:.3g} FLOPs | ETA "
                + (f"{eta:.0f}s" if eta is not None else "-")
            ),
        )

    return progress, update


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
    from scaling import sweep as sweeps

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
    from scaling import sweep as sweeps

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
    from scaling import sweep as sweeps

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
    """Run :func:`scaling.train.train` under a rich progress bar (loss, tokens/s, ETA)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from scaling.train import train

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
    from scaling.config import load_run_spec

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
