"""Commands that train: ``scaling demo``, ``scaling train`` and ``scaling check-coords``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import click

from scaling.cli.options import (
    comma_list,
    emit_json,
    output_option,
    print_rows,
    progress_display,
    tracking_option,
)

__all__ = ["demo_command", "train_command", "check_coords_command"]


@click.command("demo")
@click.option("--sweep", "sweep", type=click.Path(dir_okay=False), default=None,
              help="Sweep file with the proxies and the target [default: sweeps/demo.yaml].")
@click.option("--quick", is_flag=True, help="Toy sizes: the same pipeline in about a minute.")
@click.option("--workers", type=int, default=None,
              help="Worker processes [default: one per core for tiny runs, else 1].")
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
    display, update = progress_display()
    with display:
        result = run_demo(
            sweep, quick=quick, tracking_uri=tracking_uri, storage=storage, workers=workers,
            report_dir=report_dir, say=say, progress=update,
        )
    if output == "json":
        emit_json(result.summary())
    else:
        click.echo(f"headline: {result.comparison.headline()}")
        click.echo(f"report: {result.report_dir / 'index.html'} (wall time {result.wall_s:.0f} s)")


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


def _train_with_progress(spec: Any, checkpoint_dir: str | None, log: Any = None) -> Any:
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
        return train(spec, log=log, checkpoint_dir=checkpoint_dir, progress=progress)
    finally:
        if bar.live.is_started:
            bar.stop()


@click.command("train")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field by its dotted path; repeatable.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Checkpoint here (train.checkpoint_every) and resume if one exists; the "
                   "final weights go to final.pt.")
@click.option("--experiment", default=None,
              help="Log the run to this MLflow experiment (created if new), as sweep runs are "
                   "logged; under torchrun rank 0 logs.")
@click.option("--role", type=click.Choice(["target", "proxy"]), default="target", show_default=True,
              help="The logged run's scaling.role (with --experiment).")
@click.option("--run-id", default=None,
              help="With --experiment: log into this existing run of the experiment (it must carry "
                   "the run file's run key), reopened as a sweep worker resumes a run.")
@click.option("--failure-file", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="Append why this process failed to this file, as one JSON line (the rank, "
                   "the error's class and message): how a sweep worker reads its torchrun child.")
@tracking_option
@output_option
def train_command(config: str | None, overrides: tuple[str, ...], checkpoint_dir: str | None,
                  experiment: str | None, role: str, run_id: str | None, failure_file: str | None,
                  tracking_uri: str, output: str) -> None:
    """Train one model from a YAML run file and/or --set flags, with a progress bar.

    With --experiment the run is logged to MLflow exactly as a sweep's runs are (params,
    tags, step and summary metrics), with role 'target' by default, so that compare finds it;
    a SIGTERM then ends the run KILLED. A sweep's target exported with 'scaling sweep
    export-target' trains this way on any launcher, and the sweep finds it by its run key.

    \b
    Example:
      scaling train --set model.d_model=64 --set model.n_layer=2 --set train.tokens=200000
      scaling train run.yaml --checkpoint-dir checkpoints/target
      torchrun --nproc_per_node 8 -m scaling train target.yaml --experiment demo
    """
    from scaling.config.run import load_run_spec
    from scaling.errors import ConfigError

    try:
        if run_id is not None and experiment is None:
            raise ConfigError(f"--run-id {run_id} needs --experiment, the run's experiment (its sweep)")
        spec = load_run_spec(config, _parse_overrides(overrides))
        if experiment is None:
            result = _train_with_progress(spec, checkpoint_dir)
        else:
            result = _train_logged(spec, checkpoint_dir, experiment, role, tracking_uri, run_id)
        _print_run_result(result, output)
    except Exception as error:
        if failure_file is not None:
            _record_failure(failure_file, error)
        raise


def _record_failure(path: str, error: Exception) -> None:
    """Append ``{"rank", "error", "message"}`` of a failed run as one JSON line to ``path``:
    every rank of a torchrun job appends its own, and the first line is the first failure."""
    import json

    line = json.dumps({"rank": int(os.environ.get("RANK", "0")), "error": type(error).__name__,
                       "message": " ".join(str(error).split())})  # fmt: skip
    with open(path, "a", encoding="utf-8") as handle:  # one short write: atomic with O_APPEND
        handle.write(line + "\n")


@contextlib.contextmanager
def _stopped_by_sigterm(run: Any, world: int) -> Iterator[None]:
    """While training into ``run``, end it KILLED on SIGTERM, as a sweep worker ends its runs.

    One process raises ``SystemExit``, which leaves the run's block (KILLED). Rank 0 of a
    torchrun job (torchrun passes a SIGTERM on to every rank) ends the run here and exits at
    once: unwinding through the training's teardown would wait on a collective that the
    other ranks, stopped too, never join.
    """
    import signal
    import sys
    import threading

    def stop(signum: int, frame: Any) -> None:
        if world == 1:
            sys.exit(143)
        try:
            run.end("KILLED", "stopped by SIGTERM")
        finally:
            os._exit(143)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _reopened_run(run_id: str, spec: Any, tracking_uri: str) -> None:
    """Check that ``run_id`` is a run of ``spec``'s run key before training into it.

    Raises
    ------
    ConfigError
        If the run is another run's (a run key of another RunSpec).
    TrackingError
        If the run does not exist or MLflow cannot be read.
    """
    from scaling.errors import ConfigError
    from scaling.sweeps import tracking

    tags = tracking.run_tags(run_id, tracking_uri=tracking_uri)
    key = tags.get(tracking.TAG_RUN_KEY)
    if key != spec.run_key:
        raise ConfigError(
            f"--run-id {run_id} is the run of run key {key}, not of this run file's "
            f"{spec.run_key}; give the run id of this run, or leave --run-id out to log a new run"
        )


def _train_logged(spec: Any, checkpoint_dir: str | None, experiment: str, role: str,
                  tracking_uri: str, run_id: str | None = None) -> Any:
    """Train ``spec`` into a new MLflow run of ``experiment`` (or reopen ``run_id``) as a sweep
    worker does (the corpus hash pinned, the resolved vocabulary logged, the processes as
    ``scaling.world_size``, summary and timing at the end); only rank 0 of a torchrun job
    talks to MLflow."""
    from scaling.sweeps import tracking
    from scaling.sweeps.planning import model_vocab_size, pin_corpus
    from scaling.training.hardware import Distributed

    rank0 = os.environ.get("RANK", "0") == "0"
    if rank0 and run_id is None:  # before any training: a bad URI or a down server fails in one line
        tracking.setup_experiment(experiment, tracking_uri=tracking_uri)
    elif rank0:  # the sweep's launcher made the experiment; a reader never creates a database
        tracking.check_tracking(tracking_uri)
    spec = spec.model_copy(update={"sweep": experiment, "role": role, "data": pin_corpus(spec.data)})
    if not rank0:
        return _train_with_progress(spec, checkpoint_dir)
    if run_id is not None:
        _reopened_run(run_id, spec, tracking_uri)
    params = spec.flat_params()
    params["model.vocab_size"] = model_vocab_size(spec.model, spec.data)
    world = Distributed.from_env().world
    tags = {tracking.TAG_WORLD_SIZE: str(world)}
    with tracking.RunLogger(spec, tracking_uri=tracking_uri, run_id=run_id, params=params, tags=tags) as run:
        with _stopped_by_sigterm(run, world):
            result = _train_with_progress(spec, checkpoint_dir, log=run.log)
        timing = result.timing()
        if result.status == "finished":
            run.finish({**result.summary(), **timing})
        else:
            run.fail(f"diverged: {result.failure}", timing)
    click.echo(f"logged to MLflow experiment {experiment} as run {run.run_id} (role {role!r})",
               err=True)
    return result


def _print_run_result(result: Any, output: str) -> None:
    from scaling.errors import DivergedError

    if os.environ.get("RANK", "0") != "0":
        pass  # under torchrun, rank 0 alone reports the run
    elif output == "json":
        emit_json(result.to_dict())
    else:
        for key, value in result.to_dict().items():
            click.echo(f"{key:>18}  {value:,.6g}" if isinstance(value, float) else f"{key:>18}  {value}")
    if result.status != "finished":
        raise DivergedError(f"run diverged: {result.failure}; lower train.lr or check the data")


# --- hyperparameter commands ---


def _integers(text: str, option: str) -> list[int]:
    from scaling.errors import ConfigError

    try:
        values = [int(part) for part in comma_list(text)]
    except ValueError:
        values = []
    if len(values) < 2 or min(values) < 1:
        raise ConfigError(f"{option} {text!r}: give two or more positive integers, e.g. '32,64,128'")
    return values


@click.command("check-coords")
@click.option("--widths", default="32,64,128,256", show_default=True, help="d_model values (the first is the base).")
@click.option("--depths", default="2,4,8", show_default=True, help="n_layer values (the first is the base).")
@click.option("--n-head", type=click.IntRange(min=1), default=4, show_default=True, help="Heads, fixed across widths.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2, show_default=True,
              help="A large learning rate, kept constant.")
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True, help="AdamW steps before measuring.")
@click.option("--family", type=click.Choice(["gpt2", "llama"]), default="gpt2", show_default=True,
              help="The model family whose parametrisation is checked.")
@click.option("--plot", type=click.Path(dir_okay=False), default="coord-check.png", show_default=True,
              help="Where to write the figure.")
@output_option
def check_coords_command(widths, depths, n_head, lr, steps, family, plot, output):
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
      scaling check-coords --family llama
    """
    from pathlib import Path

    from scaling.reporting.figures import draw_coord_check, figure_png
    from scaling.training.coordinates import coord_check, coord_slopes

    table = coord_check(_integers(widths, "--widths"), _integers(depths, "--depths"),
                        n_head=n_head, lr=lr, steps=steps, family=family)
    slopes = coord_slopes(table)
    Path(plot).write_bytes(figure_png(draw_coord_check(table)))
    if output == "json":
        return emit_json({"sizes": table.to_dict(orient="records"),
                          "slopes": slopes.to_dict(orient="records"), "plot": plot})
    wide = slopes.pivot_table(index="layer", columns=["axis", "parametrization"], values="slope", sort=False)
    rows = [{"layer": layer, **{f"{axis} {name}": float(value) for (axis, name), value in row.items()}}
            for layer, row in wide.iterrows()]
    print_rows(rows, ["layer", *[f"{axis} {name}" for axis, name in wide.columns]],
               "growth of log2(activation size) per doubling")
    click.echo(f"figure: {plot}")
