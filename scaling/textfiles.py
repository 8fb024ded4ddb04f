"""Reading a user's text and JSONL files, with one-line errors that name the file and the fix.

Base layer: used by corpora (:mod:`scaling.training.sources`) and task files
(:mod:`scaling.evals.tasks`) alike. Nothing heavy is imported here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scaling.errors import DataError

__all__ = ["read_text", "jsonl_records"]


def read_text(path: Path, field_name: str = "data.source") -> str:
    """The file's text; a missing, binary or non-UTF-8 file is a :class:`DataError` naming
    ``field_name``, the path and the fix."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{field_name} = {str(path)!r}: cannot be read ({error.strerror})") from None
    if b"\x00" in raw[:8192]:
        raise DataError(
            f"{field_name} = {str(path)!r} is a binary file, not text; give UTF-8 text "
            "(or a nanoGPT-style .bin of uint16 tokens)"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{field_name} = {str(path)!r} is not UTF-8 text (bad byte at offset {error.start}); "
            "convert it to UTF-8"
        ) from None


def jsonl_records(path: Path, field_name: str = "data.source") -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-blank line of a UTF-8 JSONL file.

    Raises
    ------
    DataError
        If the file cannot be read, is not UTF-8 text, or a line is not JSON (naming the line).
    """
    for number, line in enumerate(read_text(path, field_name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {number} is not JSON ({error.msg}); fix the line") from None
