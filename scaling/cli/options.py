"""What every command group shares: the common options, JSON and table output, progress.

Printing only; anything that computes lives in the library modules.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

__all__ = [
    "DEFAULT_TRACKING_URI",
    "output_option",
    "DEFAULT_FIT_RANGE",
    "fit_range_option",
    "LawChoice",
    "law_option",
    "where_option",
    "drop_top_loss_option",
    "interval_option",
    "overestimate_option",
    "tracking_option",
    "emit_json",
    "comma_list",
    "print_rows",
    "ProgressDisplay",
    "PlainProgress",
    "progress_display",
]

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def emit_json(payload: Any) -> None:
    """Print ``payload`` as indented JSON with sorted keys (``--output json``)."""
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


# Shared options, defined once and reused by every command that takes them.
output_option = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="'json' prints machine-readable output for scripts.",
)
# The default of scaling demo (a sweep file's forecast.fit_range, scaling.config.sweep), so
# that report, compare and forecast give the demo's forecast on the same runs.
DEFAULT_FIT_RANGE = "auto"
fit_range_option = click.option(
    "--fit-range",
    type=click.Choice(["all", "auto"]),
    default=DEFAULT_FIT_RANGE,
    show_default=True,
    help="'auto' (as scaling demo) leaves out the smallest proxies when a backtest on the "
    "proxies alone predicts the largest better without them; 'all' fits every run.",
)
where_option = click.option(
    "--where",
    metavar="QUERY",
    help="Fit only the rows where this pandas query holds, e.g. \"tokens >= 2 * params\" "
    "(recorded in the saved fit).",
)
drop_top_loss_option = click.option(
    "--drop-top-loss",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="K",
    help="Leave out the K highest-loss runs, as Besiroglu et al. do with the Chinchilla points "
    "(after --where; recorded in the saved fit).",
)
def _overestimate(ctx, param, value: str):
    if value == "auto":
        return value
    try:
        weight = float(value)
    except ValueError:
        weight = float("nan")
    if not weight > 0:
        raise click.BadParameter(f"{value!r}: give 'auto' or a positive weight such as 1 (symmetric) or 10")
    return weight


overestimate_option = click.option(
    "--overestimate",
    default="auto",
    show_default=True,
    callback=_overestimate,
    help="Weight of runs the law predicts too high against those it predicts too low: 1 is "
    "Besiroglu et al.'s symmetric loss, 10 fits the lower envelope; 'auto' chooses among 1, 3 "
    "and 10 by a backtest on the fitted runs' own largest scales.",
)

interval_option = click.option(
    "--interval",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.9,
    show_default=True,
    help="Level of the intervals (two-sided).",
)


class LawChoice(click.Choice):
    """``click.Choice`` over the law names, read from :mod:`scaling.laws.forms` only when used.

    The names are looked up when an option is parsed or ``--help`` is shown, so importing the
    CLI does not import numpy. An unknown name raises :class:`scaling.errors.FitError` (one
    line listing the laws, exit 2).
    """

    def __init__(self) -> None:
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        from scaling.laws.forms import LAWS

        return tuple(LAWS)

    @choices.setter
    def choices(self, value: object) -> None:  # click's own __init__ would set it
        pass

    def convert(self, value, param, ctx):
        """The law's name; an unknown one is the library's one-line error, not a usage dump."""
        from scaling.laws.forms import get_law

        return get_law(str(value)).name


def law_option(help: str, default: str = "gpt4"):
    """``--law`` with its choices listed in ``--help``."""
    return click.option("--law", type=LawChoice(), default=default, show_default=True, help=help)


tracking_option = click.option(
    "--tracking-uri",
    default=lambda: os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
    show_default=DEFAULT_TRACKING_URI,
    help="MLflow tracking URI (a sqlite file or a tracking server).",
)


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,"`` -> ``["a", "b"]``: the parts of a comma-separated option (None stays None)."""
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_rows(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    """Print ``rows`` as a rich table of ``columns`` (160 wide when stdout is not a terminal)."""
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


class ProgressDisplay:
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

    def __enter__(self) -> ProgressDisplay:
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


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``"1h02m"``, ``95`` -> ``"1m35s"``, ``None`` -> ``"-"``."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PlainProgress:
    """Progress for a log file: one line per run started, finished (with its loss) or failed,
    and a one-line summary at the first snapshot, every ``every_s`` seconds, when no run is
    left to train and at the end (never the same summary twice in a row).

    Parameters
    ----------
    echo : callable
        Prints one line (``click.echo`` to stdout, or to stderr under ``--output json``).
    every_s : float
        Seconds between summary lines.
    clock : callable
        Monotonic seconds (a test passes its own).
    """

    def __init__(self, echo: Any, every_s: float = 60.0, clock: Any = None) -> None:
        import time

        self.echo, self.every_s = echo, every_s
        self.clock = clock or time.monotonic
        self.states: dict[str, str] | None = None
        self.last_summary: float | None = None
        self.last_line: str | None = None
        self.snapshot: dict[str, Any] | None = None

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.snapshot is not None:
            self._summary(self.snapshot)

    def update(self, snapshot: dict[str, Any]) -> None:
        rows = snapshot.get("rows", [])
        states = {self._key(row): row["state"] for row in rows}
        if self.states is not None:
            for row in rows:
                if states[self._key(row)] != self.states.get(self._key(row)):
                    self._event(row)
        self.states, self.snapshot = states, snapshot
        now = self.clock()
        settled = snapshot["running"] == 0 and snapshot["waiting"] == 0
        if settled or self.last_summary is None or now - self.last_summary >= self.every_s:
            self._summary(snapshot)

    @staticmethod
    def _key(row: dict[str, Any]) -> str:
        return f"{row.get('study')}:{row.get('run_key') or row['name']}"

    def _event(self, row: dict[str, Any]) -> None:
        from scaling.formatting import format_count

        name, state = row["name"], row["state"]
        if state == "RUNNING":
            size = f" (N = {format_count(row['params'])}, D = {format_count(row['tokens'])})" if row.get("params") else ""
            self.echo(f"started {name}{size}")
        elif state == "COMPLETE":
            loss = f"loss {row['loss']:.4f}" if row.get("loss") is not None else "no loss"
            how = " (reused)" if row.get("reused") else (f" in {format_duration(row['wall_s'])}" if row.get("wall_s") else "")
            self.echo(f"finished {name}: {loss}{how}")
        elif state == "FAIL":
            self.echo(f"failed {name}: {row.get('failure') or 'no reason recorded'}")

    def _summary(self, snapshot: dict[str, Any]) -> None:
        self.last_summary = self.clock()
        line = (
            f"sweep: {snapshot['done']}/{snapshot['runs']} done, {snapshot['running']} running, "
            f"{snapshot['waiting']} waiting, {snapshot['failed']} failed | "
            f"{snapshot['flops_spent']:.3g}/{snapshot['flops_total']:.3g} FLOPs | elapsed "
            f"{format_duration(snapshot['elapsed_s'])} | ETA {format_duration(snapshot['eta_s'])}"
        )
        if line != self.last_line:
            self.echo(line)
            self.last_line = line


def progress_display() -> tuple[ProgressDisplay | PlainProgress, Any]:
    """The progress display for a sweep (use it as a context) and its update callback.

    A rich live line when stdout is a terminal; otherwise (a log file, a pipe) plain lines
    from :class:`PlainProgress`, on stdout, or on stderr when the command prints
    ``--output json`` on stdout.
    """
    import sys

    if sys.stdout.isatty():
        display: ProgressDisplay | PlainProgress = ProgressDisplay()
    else:
        context = click.get_current_context(silent=True)
        err = context is not None and context.params.get("output") == "json"
        display = PlainProgress(lambda line: click.echo(line, err=err))
    return display, display.update
