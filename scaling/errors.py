"""The exceptions every module raises.

Each message names the thing (file, field, run), the bad value and the fix, in one line:
the CLI prints ``str(error)`` and exits with ``error.exit_code``; ``--debug`` shows the
traceback. Nothing heavy is imported here.
"""

from __future__ import annotations

__all__ = [
    "ScalingError",
    "ConfigError",
    "DataError",
    "FitError",
    "NotFittedError",
    "TrackingError",
    "StorageError",
    "DivergedError",
]


class ScalingError(Exception):
    """Base of every error this toolkit raises for a user mistake or an unusable input."""

    exit_code = 1


class ConfigError(ScalingError, ValueError):
    """A sweep, run or command-line configuration is invalid."""

    exit_code = 2


class DataError(ScalingError, ValueError):
    """A corpus, tokenizer, cache or run table cannot be used as given."""

    exit_code = 2


class FitError(ScalingError, ValueError):
    """A law cannot be fitted to the data given (too few runs, bad values, unknown law)."""

    exit_code = 2


class NotFittedError(ScalingError, AttributeError):
    """A fitted attribute or ``predict`` was used before ``fit``."""


class TrackingError(ScalingError):
    """MLflow cannot be reached or does not hold what was asked for (experiment, run)."""


class StorageError(ScalingError):
    """The Optuna storage (journal file or database) cannot be reached or used."""


class DivergedError(ScalingError):
    """A training run diverged (NaN/inf loss or a loss far above its running minimum)."""
