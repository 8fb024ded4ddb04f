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
    "RunSpec": "scaling.config.run",
    "load_run_spec": "scaling.config.run",
    "train": "scaling.training.loop",
    "load_sweep": "scaling.sweeps.planning",
    "expand": "scaling.sweeps.planning",
    "run_sweep": "scaling.sweeps.workers",
    "runs_frame": "scaling.sweeps.tracking",
    "learning_curve": "scaling.sweeps.tracking",
    "get_law": "scaling.laws.forms",
    "fit": "scaling.laws.fitting",
    "fit_report": "scaling.laws.fitting",
    "backtest": "scaling.laws.backtesting",
    "select_fit_range": "scaling.laws.backtesting",
    "compute_optimal": "scaling.laws.allocation",
    "tune_optima": "scaling.laws.hparams",
    "recommend": "scaling.laws.hparams",
    "coord_check": "scaling.training.coordinates",
    "load_csv": "scaling.table",
    "compare": "scaling.reporting.comparison",
    "evaluate": "scaling.evals.scoring",
    "forecast_tasks": "scaling.laws.capability",
    "make_report": "scaling.reporting.publish",
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
