"""scaling: predict a large language-model run's loss from small proxies.

Heavy dependencies (torch, mlflow, matplotlib) are imported where they are used, so
``import scaling`` and ``scaling fit --csv`` stay fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from scaling.errors import (
    ConfigError,
    DataError,
    FitError,
    NotFittedError,
    ScalingError,
)

try:
    __version__ = version("scaling")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "ScalingError",
    "ConfigError",
    "DataError",
    "FitError",
    "NotFittedError",
]
