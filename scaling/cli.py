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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
