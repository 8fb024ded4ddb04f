"""``scaling sweep run|worker|status|retry|export-target``: families of runs through an Optuna queue."""

from __future__ import annotations

import os

import click

from scaling.cli.options import (
    DEFAULT_TRACKING_URI,
    emit_json,
    output_option,
    print_rows,
    progress_display,
    tracking_option,
)
from scaling.errors import ScalingError

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
_retries_option = click.option(
    "--max-retries", type=int, default=None,
    help="Retries of a run after a transient failure (killed worker, lost node or connection) "
         "[default: the file's execution.max_retries, 2].",
)  # fmt: skip
_checkpoint_option = click.option(
    "--checkpoint-root", type=click.Path(file_okay=False), default=None,
    help="Folder of <sweep>/<run_key>/ checkpoints shared by every machine [default: the file's "
         "execution.checkpoint_root, else checkpoints/].",
)  # fmt: skip


def _report_failures(failed: list[dict[str, str]]) -> None:
    """One line per failed run on stderr (which and why), then exit 1 through the error gate."""
    if not failed:
        return
    for failure in failed:
        reason = " ".join(str(failure["reason"]).split())
        click.echo(f"failed: {failure['name']}: {reason[:500]}", err=True)
    raise ScalingError(f"{len(failed)} run(s) failed; fix the cause, then 'scaling sweep run FILE' "
                       "(or 'scaling sweep retry FILE') re-queues them")  # fmt: skip


@sweep_group.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="CPU worker processes (cores are split) [default: one per core when every run "
                   "is tiny, else 1]; 0 only enqueues, for workers that join with 'scaling sweep "
                   "worker'.")  # fmt: skip
@click.option("--devices", default=None, help="GPU indices, one worker each, e.g. 0,1,2,3.")
@_storage_option
@tracking_option
@_roles_option
@_quick_option
@click.option("--threads", type=int, default=None, help="torch threads per CPU worker (default: cores / workers).")
@_retries_option
@_checkpoint_option
@click.option("--dry-run", is_flag=True,
              help="Print the plan (shape, N, D, exact C) and an estimated wall time, and train "
                   "nothing; fails naming any run that cannot train as planned.")  # fmt: skip
@click.option("--no-estimate", is_flag=True,
              help="With --dry-run: skip the wall-time estimate (and its few-second probe).")
@output_option
def sweep_run(file, workers, devices, storage, tracking_uri, roles, quick, threads, max_retries,
              checkpoint_root, dry_run, no_estimate, output) -> None:  # fmt: skip
    """Run a sweep until every run is done (a second call reuses finished runs and re-queues
    failed ones); exits 1, naming each failed run and why, when any failed.

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
        total = {"name": "total", "C": sum(r["C"] for r in rows), "C_exact": sum(r["C_exact"] for r in rows),
                 "C_trained": sum(r["C_trained"] for r in rows)}  # fmt: skip
        estimate = None if no_estimate else _estimate(config, workers, devices, threads, roles, tracking_uri)
        if output == "json":
            return emit_json({"runs": rows, "total_flops": total["C"], "total_flops_exact": total["C_exact"],
                              "total_flops_trained": total["C_trained"], "estimate": estimate})  # fmt: skip
        columns = ["name", "role", "runs", "processes", "shape", "N", "D", "C", "C_exact", "batch_tokens", "lr"]
        if any(row["branch_of"] for row in rows):  # a WSD ladder: what each branch trains itself
            columns += ["branch_of", "C_trained"]
        print_rows([*rows, total], columns, config.name)
        if estimate is not None:
            click.echo(_estimate_line(estimate))
        return None
    display, update = progress_display()
    with display:
        summary = sweeps.run_sweep(
            config, workers=workers, devices=_split(devices), storage=storage,
            tracking_uri=tracking_uri, roles=_split(roles), threads=threads, progress=update,
            max_retries=max_retries, checkpoint_root=checkpoint_root,
        )  # fmt: skip
    if output == "json":
        emit_json(summary)
    else:
        print_rows(summary["rows"], ["name", "role", "state", "loss", "flops_exact", "reused", "failure"], config.name)
        if workers == 0 and not devices:
            waiting = sum(row["state"] == "WAITING" for row in summary["rows"])
            click.echo(f"{waiting} run(s) waiting; start workers with 'scaling sweep worker {file}' "
                       "and the same --storage and --tracking-uri")  # fmt: skip
    _report_failures(summary["failures"])


def _estimate(config, workers, devices, threads, roles, tracking_uri) -> dict:
    """The dry run's wall-time estimate (:func:`scaling.sweeps.estimate.estimate_wall_time`) for the
    workers and threads ``sweep run`` would use with these options."""
    from scaling.sweeps import workers as sweeps
    from scaling.sweeps.estimate import estimate_wall_time
    from scaling.sweeps.planning import expand, ladder_branches, trained_tokens
    from scaling.sweeps.queue import check_roles

    chosen = check_roles(_split(roles))
    planned = expand(config)
    branches = ladder_branches(config, planned)
    specs = [spec for spec in planned if spec.role in chosen]
    count = len(_split(devices)) if devices else (workers or sweeps.default_workers(config, chosen))
    per_worker = threads or (None if devices else max(1, sweeps.available_cores() // count))
    trained = {spec.run_key: trained_tokens(spec, branches) for spec in specs}
    processes = {spec.run_key: config.target.processes for spec in specs if spec.role == "target"}
    return estimate_wall_time(specs, sweep=config.name, workers=count, threads=per_worker,
                              tracking_uri=tracking_uri, trained=trained, processes=processes)


def _estimate_line(estimate: dict) -> str:
    from scaling.cli.options import format_duration

    if estimate["seconds"] is None:
        return f"estimated wall time: none ({estimate['skipped']})"
    longest = max(estimate["per_run"], key=lambda row: row["seconds"])
    return (f"estimated wall time: {format_duration(estimate['seconds'])} on {estimate['workers']} worker(s), "
            f"from {estimate['source']} ({estimate['probe_s']:.1f} s); longest run {longest['name']} "
            f"{format_duration(longest['seconds'])}")  # fmt: skip


@sweep_group.command("worker")
@click.argument("file", type=click.Path(dir_okay=False))
@_storage_option
@tracking_option
@_roles_option
@_quick_option
@click.option("--threads", type=int, default=None, help="torch threads for this worker.")
@click.option("--devices", default=None,
              help="GPU indices of this node: one pinned worker process each, e.g. 0,1,2,3.")
@_retries_option
@_checkpoint_option
def sweep_worker(file, storage, tracking_uri, roles, quick, threads, devices, max_retries, checkpoint_root) -> None:
    """Join a running sweep (e.g. from another machine or a SLURM array) and drain its queue.

    Waits until every run has ended, reaping the runs of dead workers meanwhile, so no
    launcher has to stay alive; exits 1, naming each failed run and why, when any failed.

    \b
    Example:
      scaling sweep worker sweeps/gpt2-ladder-gpu.yaml --devices 0,1,2,3
      scaling sweep worker sweeps/gpt2-ladder-gpu.yaml --storage postgresql://user@db/optuna
        --tracking-uri http://mlflow:5000 --checkpoint-root /shared/checkpoints
    """
    from scaling.sweeps import workers as sweeps

    options = {"storage": storage, "tracking_uri": tracking_uri, "roles": _split(roles), "quick": quick,
               "threads": threads, "max_retries": max_retries, "checkpoint_root": checkpoint_root}  # fmt: skip
    if devices:
        codes = sweeps.node_workers(file, devices=_split(devices), **options)
        emit_json({"workers": len(codes), "exit_codes": codes})
    else:
        emit_json(sweeps.worker(file, **options))
    rows = sweeps.status(file, storage=storage, tracking_uri=tracking_uri, roles=_split(roles), quick=quick)
    _report_failures(sweeps.failures(rows))


@sweep_group.command("retry")
@click.argument("file", type=click.Path(dir_okay=False))
@_storage_option
@tracking_option
@_roles_option
@_quick_option
def sweep_retry(file, storage, tracking_uri, roles, quick) -> None:
    """Re-queue the sweep's failed runs (after fixing their cause) and train nothing.

    Workers already running pick them up; otherwise run 'scaling sweep run FILE' or
    'scaling sweep worker FILE'. Diverged runs are results and stay as they are.

    \b
    Example:
      scaling sweep retry sweeps/demo.yaml
    """
    from scaling.sweeps.planning import load_sweep
    from scaling.sweeps.queue import (
        check_roles,
        open_storage,
        retry_failed,
        storage_url,
    )

    config = load_sweep(file, quick=quick)
    store = open_storage(storage_url(storage, tracking_uri))
    names = retry_failed(config, store, check_roles(_split(roles)))
    for name in names:
        click.echo(f"re-queued: {name}")
    click.echo(f"{len(names)} failed run(s) re-queued")


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
    print_rows(rows, ["name", "role", "state", "loss", "flops_exact", "retries", "worker", "failure"], file)


@sweep_group.command("export-target")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "path", type=click.Path(dir_okay=False), default="target.yaml", show_default=True,
              help="The run file to write.")
@_quick_option
@click.option("--tracking-uri", default=lambda: os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
              show_default=DEFAULT_TRACKING_URI,
              help="The sweep's MLflow tracking URI, for the launch command in the file's header.")
@output_option
def sweep_export_target(file, path, quick, tracking_uri, output) -> None:
    """Write the sweep's target as a run file, for a launcher that is not a sweep worker.

    The file is the target's complete RunSpec (model, data with its content hash pinned,
    train, evals, name, sweep, role), so 'scaling train' trains the very run the sweep
    plans, with its run key; its header says how to launch it (torchrun with the target's
    nproc_per_node and nnodes). Logged with --experiment into the sweep's experiment, the
    run is found by 'scaling sweep run' (reused, not trained again) and by compare.

    \b
    Example:
      scaling sweep export-target sweeps/gpt2-ladder-gpu.yaml -o target.yaml
      torchrun --standalone --nproc_per_node 8 -m scaling train target.yaml
        --experiment gpt2-ladder-gpu --tracking-uri http://mlflow:5000
    """
    from pathlib import Path

    from scaling.errors import ConfigError
    from scaling.sweeps.planning import (
        load_sweep,
        run_file,
        target_command,
        target_spec,
    )

    config = load_sweep(file, quick=quick)
    spec = target_spec(config)
    command = target_command(config, path, tracking_uri=tracking_uri)
    target = config.target
    header = [
        f"The target run of sweep {config.name} (run key {spec.run_key}), written by",
        f"'scaling sweep export-target {file}{' --quick' if quick else ''}'. Train it on "
        + (f"{target.processes} processes ({target.nnodes} nodes x {target.nproc_per_node}) with:"
           if target.nnodes > 1 else f"{target.processes} process(es) with:"),
        "",
        f"  {command}",
        "",
        "Logged to the sweep's experiment this way, the run carries the sweep's run key:",
        "'scaling sweep run' reuses it and 'scaling compare' finds it. Edit nothing below:",
        "a changed field is another run, with another run key.",
    ]
    if target.nnodes > 1:
        header[4:4] = ["  (on every node, with HOST:29400 the first node's address; or your scheduler's",
                       "   rendezvous: srun torchrun ... under SLURM)"]  # fmt: skip
    try:
        Path(path).write_text(run_file(spec, header), encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"-o {path}: cannot write it ({error.strerror or error}); give a file in "
                          "an existing folder you can write to") from None  # fmt: skip
    if output == "json":
        return emit_json({"path": path, "name": spec.name, "run_key": spec.run_key,
                          "nproc_per_node": target.nproc_per_node, "nnodes": target.nnodes,
                          "command": command})  # fmt: skip
    click.echo(f"wrote {path}: {spec.name} (run key {spec.run_key}); train it with:")
    click.echo(f"  {command}")
    return None
