"""The command-line gate and the generated reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaling.cli import main
from scaling.cli.reference import REFERENCE_END, REFERENCE_START, cli_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_reference_is_in_sync_with_the_commands():
    text = README.read_text(encoding="utf-8")
    block = text.split(REFERENCE_START, 1)[1].split(REFERENCE_END, 1)[0]
    assert block.strip() == cli_reference().strip(), (
        "README.md's command reference is stale: run `scaling cli-reference --write README.md`"
    )


def test_user_error_is_one_line_and_exit_code(tmp_path, capsys):
    target = tmp_path / "doc.md"
    target.write_text("no markers here\n")
    code = main(["cli-reference", "--write", str(target)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"error: {target}: no <!-- cli-reference:start -->")
    assert target.read_text() == "no markers here\n"


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "line"), [
    (["fit", "--csv", "runs.csv", "--interval", "2"],
     "error: Invalid value for '--interval': 2.0 is not in the range 0<x<1. (see 'scaling fit --help')"),
    (["fitt"], "error: No such command 'fitt'. Did you mean 'fit'? (see 'scaling --help')"),
    (["sweep", "run"], "error: Missing argument 'FILE'. (see 'scaling sweep run --help')"),
])
def test_a_bad_option_or_argument_is_one_line_naming_it_and_where_help_is(args, line, capsys):
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert (out, err.splitlines()) == ("", [line])
