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
