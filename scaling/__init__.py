"""scaling: predict a large language-model run's loss from small proxies.

The entry points a notebook needs are importable from here; each is loaded on first use, so
``import scaling`` stays fast and pulls in neither torch, MLflow nor matplotlib.

>>> import scaling
>>> scaling.get_law("gpt4").formula
'L(C) = a·C^b + c'
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

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

# Public name -> module that defines it, imported lazily by __getattr__.
_LAZY = {
    "RunSpec": "scaling.config",
    "load_run_spec": "scaling.config",
    "train": "scaling.train",
    "load_sweep": "scaling.plan",
    "expand": "scaling.plan",
    "run_sweep": "scaling.sweep",
    "runs_frame": "scaling.tracking",
    "learning_curve": "scaling.tracking",
    "get_law": "scaling.laws",
    "fit": "scaling.fit",
    "backtest": "scaling.backtest",
    "select_fit_range": "scaling.backtest",
    "compute_optimal": "scaling.predict",
    "tune_optima": "scaling.hparams",
    "recommend": "scaling.hparams",
    "coord_check": "scaling.hparams",
    "load_csv": "scaling.table",
    "compare": "scaling.compare",
    "evaluate": "scaling.evals",
    "forecast_tasks": "scaling.capability",
    "make_report": "scaling.report",
    "run_demo": "scaling.demo",
}

__all__ = [
    "__version__",
    "ScalingError",
    "ConfigError",
    "DataError",
    "FitError",
    "NotFittedError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scaling' has no attribute {name!r}")
