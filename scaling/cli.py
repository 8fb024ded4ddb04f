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
