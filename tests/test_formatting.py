"""The one number formatter: PDG rounding of value ± error, compact counts and FLOPs."""

from __future__ import annotations

import math
import re

import pytest

from scaling.formatting import (
    format_count,
    format_flops,
    format_interval,
    format_value_error,
)


@pytest.mark.parametrize(
    ("value", "error", "expected"),
    [
        (1.23456, 0.0354, "1.235 ± 0.035"),  # leading digits 354: two significant digits
        (1.23456, 0.0355, "1.23 ± 0.04"),  # 355: one significant digit
        (1.23456, 0.0949, "1.23 ± 0.09"),  # 949: one digit
        (1.23456, 0.0950, "1.23 ± 0.10"),  # 950: rounds up to 1000, two digits
        (1.23456, 0.0999, "1.23 ± 0.10"),
        (482.01, 120.0, "480 ± 120"),
        (-0.125, 0.012, "-0.125 ± 0.012"),
        (1.2345e18, 4.6e16, "(1.23 ± 0.05)e18"),
        (3.2e-6, 1.1e-7, "(3.20 ± 0.11)e-6"),
    ],
)
def test_pdg_rounding(value, error, expected):
    assert format_value_error(value, error) == expected


def test_asymmetric_errors_round_at_the_smaller_one():
    assert format_value_error(0.3473, 0.0303, 0.0257) == "0.347 +0.026/-0.030"


def test_interval_collapses_to_plus_minus_when_symmetric():
    assert format_interval(1.82, 1.77, 1.87) == "1.82 ± 0.05"
    assert format_interval(0.3478, 0.317, 0.373) == "0.348 +0.025/-0.031"


def test_non_finite_errors_still_print_the_value():
    assert format_value_error(2.5, float("nan")) == "2.5 ± nan"
    assert format_interval(2.5, float("nan"), float("nan")) == "2.5 +nan/-nan"


@pytest.mark.parametrize(
    ("x", "expected"),
    [(442368, "442K"), (70e9, "70B"), (1.4e12, "1.4T"), (2.5e6, "2.5M"), (12.0, "12"), (999, "999")],
)
def test_format_count(x, expected):
    assert format_count(x) == expected


def test_format_flops():
    assert format_flops(1.2345e18) == "1.2e18"
    assert format_flops(9.87e-3, digits=3) == "9.87e-3"


# An error bar many times the other side, or the value: the value and its interval, readable.
@pytest.mark.parametrize(
    ("value", "lower", "upper", "expected"),
    [
        (0.015638, 0.015620, 1.0, "0.016 [0.015, 1.0]"),  # was 0.015638 +0.984362/-0.000018
        (90.0, 20.0, 90.0 + 18246270.0, "90 [20, 1.9e7]"),  # was 90 +18246270/-70
        (90.0, 20.0, 90.0 + 162660.0, "90 [20, 1.7e5]"),  # was 90 +162660/-70
        (1.0, 0.01, 1.0, "1.0 [0.010, 1.0]"),  # was 1 +0/-0.99
        (3.2e-6, 1e-9, 3.3e-6, "3.2e-6 [1.0e-9, 3.3e-6]"),
        (90.0, 20.0, float("inf"), "90 [20, unbounded above]"),
    ],
)
def test_lopsided_intervals_print_value_and_bounds(value, lower, upper, expected):
    shown = format_interval(value, lower, upper)
    assert shown == expected
    if math.isfinite(upper):  # the bounds are rounded outward: the printed interval holds the true one
        low, high = (float(x) for x in re.findall(r"\[(\S+), (\S+)\]", shown)[0])
        assert low <= lower and high >= upper


def test_moderately_asymmetric_intervals_keep_the_pdg_form():
    assert format_interval(13000.0, 2000.0, 113000.0) == "13000 +100000/-11000"  # 9x: not lopsided
    assert format_interval(72.0, 48.0, 193.0) == "72 +121/-24"
    assert format_value_error(90.0, 70.0, 162660.0) == "90 [20, 1.7e5]"


def test_format_significant_rounds_outward_on_request():
    from scaling.formatting import format_significant

    assert format_significant(162750.0, 2, 1) == "1.7e5" and format_significant(162750.0) == "1.6e5"
    assert format_significant(0.0156, 2, -1) == "0.015" and format_significant(-0.0156, 2, -1) == "-0.016"
    assert format_significant(99.7, 2, 1) == "100" and format_significant(0.01, 2, -1) == "0.010"
