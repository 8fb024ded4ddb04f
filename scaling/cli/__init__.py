"""The ``scaling`` command: parse, call the library, print.

The root group :func:`root` and the error gate :func:`main` live here; each command group
lives in a module of its own and is registered below with ``root.add_command``:

- :mod:`scaling.cli.run_commands`: ``demo``, ``train``, ``check-coords``
- :mod:`scaling.cli.sweep_commands`: ``sweep run|worker|status|retry|export-target``
- :mod:`scaling.cli.data_commands`: ``data prepare|info``
- :mod:`scaling.cli.law_commands`: ``fit``, ``predict``, ``capability``
- :mod:`scaling.cli.report_commands`: ``report``, ``compare``
- :mod:`scaling.cli.validate_commands`: ``validate``
- :mod:`scaling.cli.forecast_commands`: ``forecast``, ``watch``
- :mod:`scaling.cli.reference`: ``cli-reference`` (hidden)

and :mod:`scaling.cli.options` holds what they share (options, JSON and table output,
progress). Command bodies stay a few lines long; the logic lives in the library modules.
One gate, :func:`main`, turns every :class:`~scaling.errors.ScalingError` into one line on
stderr and a non-zero exit (``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import os
import sys

import click

from scaling.cli.data_commands import data_group
from scaling.cli.forecast_commands import forecast_command, watch_command
from scaling.cli.law_commands import capability_command, fit_command, predict_command
from scaling.cli.reference import cli_reference_command
from scaling.cli.report_commands import compare_command, report_command
from scaling.cli.run_commands import check_coords_command, demo_command, train_command
from scaling.cli.sweep_commands import sweep_group
from scaling.cli.validate_commands import validate_command
from scaling.errors import ScalingError

__all__ = ["root", "main", "READ_COMMANDS"]

# The commands that only read MLflow (``report`` also logs its report run): they use MLflow's
# fail-fast HTTP settings (scaling.sweeps.tracking.READ_SETTINGS).
READ_COMMANDS = frozenset({"fit", "predict", "capability", "report", "compare"})


@click.group("scaling", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scaling")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def root(ctx: click.Context, debug: bool) -> None:
    """Predict a large language-model run's loss from small proxies.

    \b
    Example:
      scaling demo
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if not debug:  # MLflow announces database migrations and the like at INFO
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # workers inherit it
    if ctx.invoked_subcommand in READ_COMMANDS:  # a down server fails in seconds, not minutes
        from scaling.sweeps.tracking import fail_fast_reads

        fail_fast_reads()


root.add_command(demo_command)
root.add_command(train_command)
root.add_command(check_coords_command)
root.add_command(sweep_group)
root.add_command(data_group)
root.add_command(fit_command)
root.add_command(predict_command)
root.add_command(capability_command)
root.add_command(report_command)
root.add_command(compare_command)
root.add_command(forecast_command)
root.add_command(watch_command)
root.add_command(validate_command)
root.add_command(cli_reference_command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command line, print user errors as one line, return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        root.main(args=args, prog_name="scaling", standalone_mode=False)
    except ScalingError as error:
        if debug:
            raise
        click.echo(f"error: {error}", err=True)
        return error.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as error:  # a bad option or argument: one line, and where help is
        command = error.ctx.command_path if error.ctx is not None else "scaling"
        click.echo(f"error: {error.format_message()} (see '{command} --help')", err=True)
        return error.exit_code
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    return 0
