"""Intervals from bootstrap draws, shared by every law module."""

from __future__ import annotations

import numpy as np

__all__ = ["quantile_interval"]


def quantile_interval(samples: np.ndarray, interval: float) -> tuple[float, float]:
    """The central ``interval`` of the finite draws (NaN, NaN when none is finite)."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (float("nan"), float("nan"))
    tail = (1 - interval) / 2
    return float(np.quantile(samples, tail)), float(np.quantile(samples, 1 - tail))
