"""The one number formatter: every "value ± error" in every report and terminal table.

Rounding follows the Particle Data Group rule, as iminuit's ``pdg_format`` does: look at the
three leading digits of the error; 100-354 keep two significant digits, 355-949 keep one,
950-999 round up to 1000 and keep two. The value is rounded to the same decimal place.
Large or small numbers share one power of ten: ``(1.23 ± 0.05)e18``.

An interval one of whose sides is more than :data:`LOPSIDED` times the other is not written
``value +up/-down``: rounded at the smaller side, the larger would print with a dozen
meaningless digits (``90 +18246270/-70``). It is written ``value [lower, upper]`` instead, each
number to two significant digits, the bounds rounded outward (``90 [20, 1.9e7]``); an infinite
bound reads ``unbounded above`` (or ``below``).

Also here: a value with its interval or alone (:func:`format_band`), compact counts (``442K``, ``70B``) for parameters and tokens, and compact
scientific numbers (``1.2e18``) for FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "LOPSIDED",
    "format_value_error",
    "format_interval",
    "format_significant",
    "format_band",
    "format_range",
    "format_count",
    "format_flops",
    "is_finite",
    "json_safe",
]

# Plain notation for numbers whose leading digit sits between 10^-3 and 10^4 (0.00123 .. 99999).
_PLAIN_EXPONENTS = range(-3, 5)

# One side of an interval more than this many times the other: "value [lower, upper]".
LOPSIDED = 10.0


def _rounding(error: float) -> tuple[int, float]:
    """PDG rule: (power of ten of the last kept digit, the rounded error)."""
    exponent = math.floor(math.log10(error))
    leading = round(error / 10 ** (exponent - 2))
    if leading >= 1000:  # 999.6 rounds to 1000
        exponent, leading = exponent + 1, 100
    if leading <= 354:
        digits = 2
    elif leading <= 949:
        digits = 1
    else:
        exponent, digits = exponent + 1, 2  # 950-999 become 1000 with two digits: 1.0
    last = exponent - digits + 1
    return last, round(error / 10**last) * 10**last


def _render(numbers: list[float], last: int, reference: float) -> tuple[list[str], str]:
    """Numbers rounded at 10^last, as strings, plus the shared exponent suffix ('' if none)."""
    shift = math.floor(math.log10(abs(reference))) if reference else last
    if shift in _PLAIN_EXPONENTS:
        decimals = max(0, -last)
        return [f"{round(x / 10**last) * 10**last:.{decimals}f}" for x in numbers], ""
    decimals = max(0, shift - last)
    return [f"{x / 10**shift:.{decimals}f}" for x in numbers], f"e{shift}"


def format_value_error(value: float, error: float, upper_error: float | None = None) -> str:
    """Format ``value ± error`` (or ``value +upper/-error``) with PDG rounding.

    Parameters
    ----------
    value : float
        The central value.
    error : float
        The (lower) error, positive.
    upper_error : float, optional
        The upper error when the interval is asymmetric; the smaller of the two errors sets
        the rounding.

    Returns
    -------
    str

    Examples
    --------
    >>> format_value_error(0.34731, 0.0142)
    '0.347 ± 0.014'
    >>> format_value_error(1.8172, 0.0263)
    '1.817 ± 0.026'
    >>> format_value_error(2142.96, 1200.0)
    '2100 ± 1200'
    >>> format_value_error(1.2345e18, 4.6e16)
    '(1.23 ± 0.05)e18'
    >>> format_value_error(0.3473, 0.030, 0.026)
    '0.347 +0.026/-0.030'
    >>> format_value_error(13000.0, 11000.0, 100000.0)
    '13000 +100000/-11000'

    One side more than :data:`LOPSIDED` times the other: the value and its bounds, to two
    significant digits, the bounds rounded outward.

    >>> format_value_error(90.0, 70.0, 18246270.0)
    '90 [20, 1.9e7]'
    >>> format_value_error(0.015638, 0.000018, 0.984362)
    '0.016 [0.015, 1.0]'
    >>> format_value_error(1.0, 0.0)
    '1 ± 0'
    >>> format_value_error(2.5, float("nan"))
    '2.5 ± nan'
    """
    errors = [error] if upper_error is None else [error, upper_error]
    if upper_error is not None and _lopsided(error, upper_error) and math.isfinite(value):
        return _bracket(value, value - error, value + upper_error)
    if not all(math.isfinite(e) and e > 0 for e in errors) or not math.isfinite(value):
        shown = [f"{e:.2g}" for e in errors]
        if upper_error is None:
            return f"{value:.4g} ± {shown[0]}"
        return f"{value:.4g} +{shown[1]}/-{shown[0]}"
    last, _ = _rounding(min(errors))
    rounded = [_rounding(min(errors))[1] if e == min(errors) else e for e in errors]
    reference = abs(value) if value else max(rounded)
    texts, suffix = _render([value, *rounded], last, reference)
    if upper_error is None:
        body = f"{texts[0]} ± {texts[1]}"
    else:
        body = f"{texts[0]} +{texts[2]}/-{texts[1]}"
    return f"({body}){suffix}" if suffix else body


def _lopsided(down: float, up: float) -> bool:
    """Both sides known and not negative, and one more than LOPSIDED times the other (or
    zero while the other is not)."""
    if not (math.isfinite(down) and math.isfinite(up)) or down < 0 or up < 0:
        return False
    small, large = sorted((down, up))
    return large > 0 and large > LOPSIDED * small


def format_significant(x: float, digits: int = 2, direction: int = 0) -> str:
    """``x`` to ``digits`` significant digits, plain between 10^-3 and 10^5, else ``1.7e5``.

    ``direction`` -1 rounds down, +1 up (an interval's bounds, rounded outward), 0 to nearest.

    Examples
    --------
    >>> format_significant(162750.0), format_significant(162750.0, direction=1)
    ('1.6e5', '1.7e5')
    >>> format_significant(0.01562, direction=-1), format_significant(20.0), format_significant(0.0)
    ('0.015', '20', '0')
    >>> format_significant(-0.0156, direction=-1), format_significant(float("inf"))
    ('-0.016', 'inf')
    """
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    scale = 10.0 ** (math.floor(math.log10(abs(x))) - digits + 1)
    mantissa = x / scale
    if direction < 0:
        mantissa = math.floor(mantissa + 1e-9)  # 0.01 / 0.001 is 9.999999999999998
    elif direction > 0:
        mantissa = math.ceil(mantissa - 1e-9)
    else:
        mantissa = round(mantissa)
    y = mantissa * scale
    exponent = math.floor(math.log10(abs(y)))  # rounding may have carried: 99.6 -> 100
    if exponent in _PLAIN_EXPONENTS:
        return f"{y:.{max(0, digits - 1 - exponent)}f}"
    return f"{y / 10**exponent:.{digits - 1}f}e{exponent}"


def _bracket(value: float, lower: float, upper: float) -> str:
    """``value [lower, upper]`` to two significant digits, the bounds rounded outward."""
    low = "unbounded below" if lower == -math.inf else format_significant(lower, 2, -1)
    high = "unbounded above" if upper == math.inf else format_significant(upper, 2, 1)
    return f"{format_significant(value, 2)} [{low}, {high}]"


def format_interval(value: float, lower: float, upper: float) -> str:
    """Format a value with its interval ``[lower, upper]`` as ``value +up/-down``.

    A symmetric interval (to rounding) prints as ``value ± error``.

    Examples
    --------
    >>> format_interval(0.3478, 0.317, 0.373)
    '0.348 +0.025/-0.031'
    >>> format_interval(10.0, 9.0, 11.0)
    '10.0 ± 1.0'

    A percentile band can miss the central value; then the band is shown as it is, rounded
    by the distance from the value to the band:

    >>> format_interval(1.273, 1.3125, 1.869)
    '1.27 [1.31, 1.87]'
    >>> format_interval(2.5e18, 1e18, 2e18)
    '(2.5 [1.0, 2.0])e18'

    A lopsided interval (see :data:`LOPSIDED`), or one with an infinite bound:

    >>> format_interval(90.0, 20.0, 162750.0)
    '90 [20, 1.7e5]'
    >>> format_interval(90.0, 20.0, float("inf"))
    '90 [20, unbounded above]'
    """
    down, up = value - lower, upper - value
    if math.isfinite(value) and (upper == math.inf or lower == -math.inf) and lower <= value <= upper:
        return _bracket(value, lower, upper)
    if math.isfinite(down) and math.isfinite(up) and (down < 0 or up < 0):
        gap = min(abs(down), abs(up))
        last, _ = _rounding(gap) if gap > 0 else (math.floor(math.log10(abs(value) or 1)) - 3, 0)
        texts, suffix = _render([value, lower, upper], last, value)
        body = f"{texts[0]} [{texts[1]}, {texts[2]}]"
        return f"({body}){suffix}" if suffix else body
    if math.isfinite(down) and math.isfinite(up) and down > 0 and up > 0:
        last, _ = _rounding(min(down, up))
        if round(down / 10**last) == round(up / 10**last):
            return format_value_error(value, down)
    return format_value_error(value, down, up)


def format_count(x: float) -> str:
    """Compact count with K/M/B/T suffix and three significant digits (params, tokens).

    Examples
    --------
    >>> format_count(442368)
    '442K'
    >>> format_count(70e9), format_count(1.4e12), format_count(1_500_000), format_count(950)
    ('70B', '1.4T', '1.5M', '950')
    >>> format_count(999_999_999.9)
    '1B'
    """
    if not math.isfinite(x):
        return str(x)
    x = float(f"{x:.3g}")  # round first, so 999,999,999.9 is 1B and not 1e+03M
    for factor, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def format_flops(x: float, digits: int = 2) -> str:
    """Compact scientific notation for FLOPs: ``1.2e18``.

    Examples
    --------
    >>> format_flops(1.2345e18)
    '1.2e18'
    >>> format_flops(5.76e23, digits=3)
    '5.76e23'
    >>> format_flops(0.0)
    '0'
    """
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def json_safe(value: Any) -> Any:
    """``value`` with numpy numbers as Python numbers and non-finite floats as None (JSON null)."""
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_band(value: float, lo: float, hi: float) -> str:
    """``value`` with its interval (:func:`format_interval`), or the value alone when the
    interval is missing or of zero width (no bootstrap).

    >>> format_band(2.5, 2.4, 2.7), format_band(2.5, 2.5, 2.5)
    ('2.50 +0.20/-0.10', '2.5')
    >>> format_band(90.0, 20.0, float("inf"))
    '90 [20, unbounded above]'
    """
    if _infinite(lo) or _infinite(hi):
        return format_interval(value, float(lo), float(hi))
    spread = max(abs(value - lo), abs(hi - value)) if is_finite(lo) and is_finite(hi) else math.nan
    if not spread > 1e-6 * abs(value):  # no bootstrap, or a band of zero width (to rounding)
        return f"{value:.4g}"
    return format_interval(value, lo, hi)


def format_range(bounds: tuple[float, float], show: Any) -> str:
    """``"lo to hi"`` with ``show`` applied to each bound; ``"none"`` when either is missing."""
    lo, hi = bounds
    return "none" if not (is_finite(lo) and is_finite(hi)) else f"{show(lo)} to {show(hi)}"


def _infinite(value: Any) -> bool:
    try:
        return math.isinf(float(value))
    except (TypeError, ValueError):
        return False


def is_finite(value: Any) -> bool:
    """True for a number (or numeric string) that is finite; False for None, NaN, text."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
