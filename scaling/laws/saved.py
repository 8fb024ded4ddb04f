"""Saved fits: a fitted law as a JSON file (format ``scaling.fit/1``) and back, predicting the same."""

from __future__ import annotations

import json
from pathlib import Path

from scaling.errors import FitError
from scaling.laws.fitting import FitResult

__all__ = ["save_fit", "load_fit"]


def save_fit(result: FitResult, path: str | Path) -> Path:
    """Write a fit to a JSON file that :func:`load_fit` reads back (predicts the same)."""
    path = Path(path)
    if not hasattr(result, "theta_"):
        raise FitError("only a fitted result can be saved; call fit(frame) first")
    path.write_text(json.dumps(result.to_dict(), indent=1, sort_keys=True))
    return path


def load_fit(path: str | Path) -> FitResult:
    """Read a fit written by :func:`save_fit` (or ``scaling fit --save FILE``).

    Raises
    ------
    FitError
        If the file is missing, not JSON, or not a saved fit.
    """
    path = Path(path)
    if not path.is_file():
        raise FitError(f"{path}: no such fit file; write one with 'scaling fit --save {path}'")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        reason = error.msg if hasattr(error, "msg") else error
        raise FitError(f"{path}: not a JSON fit file ({reason})") from None
    if not isinstance(data, dict):
        raise FitError(f"{path}: not a saved fit (expected a JSON object)")
    return FitResult.from_dict(data, source=str(path))
