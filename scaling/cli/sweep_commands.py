"""``scaling sweep run|worker|status``: families of runs through an Optuna queue."""

from __future__ import annotations

import click

from scaling.cli.options import (
    emit_json,
    output_option,
    print_rows,
    progress_display,
    tracking_option,
)

__all__ = ["sweep_group"]


def _split(text: str | None) -> tuple[str, ...] | None:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else None


@click.group("sweep")
def sweep_group() -> None:
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


@sweep_group.command("run")
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
    from scaling.sweeps import workers as sweeps
    from scaling.sweeps.planning import load_sweep, plan

    config = load_sweep(file, quick=quick)
    if dry_run:
        rows = plan(config)
        total = {"name": "total", "C": sum(r["C"] for r in rows), "C_exact": sum(r["C_exact"] for r in rows)}
        if output == "json":
            return emit_json({"runs": rows, "total_flops": total["C"], "total_flops_exact": total["C_exact"]})
        return print_rows([*rows, total], ["name", "role", "runs", "shape", "N", "D", "C", "C_exact", "batch_tokens", "lr"], config.name)
    display, update = progress_display()
    with display:
        summary = sweeps.run_sweep(
            config, workers=workers, devices=_split(devices), storage=storage,
            tracking_uri=tracking_uri, roles=_split(roles), threads=threads, progress=update,
        )  # fmt: skip
    if output == "json":
        return emit_json(summary)
    print_rows(summary["rows"], ["name", "role", "state", "loss", "flops_exact", "reused", "failure"], config.name)


@sweep_group.command("worker")
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
    from scaling.sweeps import workers as sweeps

    counts = sweeps.worker(file, storage=storage, tracking_uri=tracking_uri, roles=_split(roles), threads=threads, quick=quick)
    emit_json(counts)


@sweep_group.command("status")
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
    from scaling.sweeps import workers as sweeps

    rows = sweeps.status(file, storage=storage, tracking_uri=tracking_uri, roles=_split(roles), quick=quick)
    if output == "json":
        return emit_json(rows)
    print_rows(rows, ["name", "role", "state", "loss", "flops_exact", "worker", "mlflow_run_id"], file)
