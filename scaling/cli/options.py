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
    "fit_range_option",
    "tracking_option",
    "emit_json",
    "comma_list",
    "print_rows",
    "ProgressDisplay",
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


def progress_display() -> tuple[ProgressDisplay, Any]:
    """A :class:`ProgressDisplay` (use it as a context) and its update callback."""
    display = ProgressDisplay()
    return display, display.update
