"""``scaling cli-reference``: the Markdown CLI reference, generated from the commands themselves."""

from __future__ import annotations

import click

__all__ = ["REFERENCE_START", "REFERENCE_END", "cli_reference", "cli_reference_command"]

REFERENCE_START = "<!-- cli-reference:start -->"
REFERENCE_END = "<!-- cli-reference:end -->"


def cli_reference(group: click.Group | None = None) -> str:
    """The Markdown CLI reference of ``group`` (default: the ``scaling`` command), generated
    from the command definitions themselves."""
    if group is None:  # imported here: the root group registers this module's command
        from scaling.cli import root as group
    lines: list[str] = []

    def walk(command: click.Command, path: list[str], parent: click.Context | None = None) -> None:
        settings = {"terminal_width": 88, "max_content_width": 88, **group.context_settings}
        with click.Context(command, info_name=path[-1], parent=parent, **settings) as ctx:
            if command.hidden:
                return
            lines.extend([f"### `{' '.join(path)}`", "", "```text", command.get_help(ctx).rstrip(), "```", ""])
            if isinstance(command, click.Group):
                for name in command.list_commands(ctx):
                    walk(command.get_command(ctx, name), [*path, name], ctx)

    walk(group, ["scaling"])
    return "\n".join(lines).rstrip() + "\n"


@click.command("cli-reference", hidden=True)
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
