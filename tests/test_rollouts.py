"""Rollouts (``scaling.laws.rollouts``): fit up to each compute cut, score every run above.

On laws with known parameters: exact data gives ~0 error, noisy data small errors; the
held-out runs never enter the fit; a cut that cannot be fitted is reported in its row."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling import datasets
from scaling.errors import FitError
from scaling.laws.rollouts import (
    ROLLOUT_COLUMNS,
    held_out_scores,
    leave_largest_out_cuts,
    rollout,
)

TRUTH = dict(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)


def chinchilla_table(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A ladder of L(N, D) = E + A/N^alpha + B/D^beta: 6 sizes x 7 token counts."""
    rows = list(itertools.product(np.logspace(7, 9, 6), np.logspace(9, 11, 7)))
    n, d = np.array(rows).T
    loss = TRUTH["E"] + TRUTH["A"] * n ** -TRUTH["alpha"] + TRUTH["B"] * d ** -TRUTH["beta"]
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(loss.size))
    return pd.DataFrame({"params": n, "tokens": d, "flops": 6 * n * d, "loss": loss})


def gpt4_table(noise: float = 0.0, seed: int = 0, n: int = 14) -> pd.DataFrame:
    flops = np.logspace(16, 21, n)
    loss = 40.0 * flops**-0.1 + 1.6
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(n))
    return pd.DataFrame({"flops": flops, "flops_exact": flops, "loss": loss})


def test_exact_chinchilla_data_rolls_out_with_no_error():
    table = chinchilla_table()
    cuts = [1e19, 1e20]
    result = rollout(table, "chinchilla", cuts=cuts, n_bootstrap=20, seed=0)
    assert list(result.columns) == list(ROLLOUT_COLUMNS)
    assert result["cut"].tolist() == cuts
    for row in result.to_dict("records"):
        assert row["error"] is None and row["is_valid"], row["reasons"]
        assert row["n_fit"] == int((table["flops"] <= row["cut"]).sum())
        assert row["n_held"] == int((table["flops"] > row["cut"]).sum()) > 0
        assert row["n_fit"] + row["n_held"] == len(table)
        assert row["max_abs_error"] < 1e-6 and abs(row["bias"]) < 1e-6
        assert 0.0 <= row["coverage"] <= 1.0  # defined, though the band has zero width here
        assert row["params"]["alpha"] == pytest.approx(TRUTH["alpha"], rel=1e-4)
        assert row["wall_s"] > 0


def test_exact_gpt4_data_rolls_out_with_no_error_on_its_own_cut_column():
    table = gpt4_table().rename(columns={"flops": "compute"})
    result = rollout(table, "gpt4", cuts=[1e19, 1e18], x_cut="compute", n_bootstrap=20)
    assert result["cut"].tolist() == [1e18, 1e19]  # sorted
    assert (result["max_abs_error"] < 1e-6).all()
    assert result["coverage"].between(0, 1).all()


def test_noisy_data_gives_small_errors_and_a_band_that_covers():
    result = rollout(chinchilla_table(noise=0.01, seed=1), "chinchilla", cuts=[3e19],
                     n_bootstrap=100, seed=0)
    row = result.iloc[0]
    assert row["error"] is None
    assert row["mean_abs_error"] < 0.02 and row["max_abs_error"] < 0.05
    assert abs(row["bias"]) < 0.02
    assert row["coverage"] >= 0.6  # the 90% one-run band holds most held-out runs

    frontier = rollout(gpt4_table(noise=0.005, seed=2), "gpt4", cuts=[1e19], n_bootstrap=100)
    assert frontier.loc[0, "mean_abs_error"] < 0.02


def test_held_out_runs_do_not_enter_the_fit():
    # Runs above the cut are 10% worse than the law: an honest rollout sees exactly -1/11.
    table = gpt4_table()
    above = table["flops"] > 1e19
    table.loc[above, "loss"] *= 1.1
    row = rollout(table, "gpt4", cuts=[1e19], n_bootstrap=0).iloc[0]
    assert row["bias"] == pytest.approx(1 / 1.1 - 1, abs=1e-6)
    assert row["max_abs_error"] == pytest.approx(1 - 1 / 1.1, abs=1e-6)
    assert np.isnan(row["coverage"])  # no bootstrap, no band


def test_cuts_that_cannot_be_fitted_are_reported_not_raised():
    table = gpt4_table(n=14)
    flops = np.sort(table["flops"].to_numpy())
    low, top = float(flops[2]), float(flops[-1])  # 3 runs to fit a 3-parameter law; none above
    result = rollout(table, "gpt4", cuts=[low, 1e19, top], n_bootstrap=10)
    first, middle, last = result.to_dict("records")
    assert first["n_fit"] == 3 and "more runs than parameters" in first["error"]
    assert np.isnan(first["mean_abs_error"]) and np.isnan(first["coverage"])
    assert middle["error"] is None and middle["max_abs_error"] < 1e-6
    assert last["n_held"] == 0 and "leaves no run above it" in last["error"]
    assert np.isnan(last["mean_abs_error"])


def test_unusable_input_raises_a_clear_fit_error():
    table = gpt4_table()
    with pytest.raises(FitError, match="unknown law|no law|law"):
        rollout(table, "no_such_law", cuts=[1e19])
    with pytest.raises(FitError, match="cut column 'tokens' is missing"):
        rollout(table, "gpt4", cuts=[1e19], x_cut="tokens")
    with pytest.raises(FitError, match="no cuts"):
        rollout(table, "gpt4", cuts=[])
    with pytest.raises(FitError, match="params"):
        rollout(table, "chinchilla", cuts=[1e19])


def test_fit_keywords_pass_through():
    table = gpt4_table().rename(columns={"flops_exact": "c", "loss": "val"})
    row = rollout(table, "gpt4", cuts=[1e19], n_bootstrap=0, x=["c"], y="val").iloc[0]
    assert row["error"] is None and row["max_abs_error"] < 1e-6


def test_held_out_scores_signs_and_coverage():
    scores = held_out_scores(np.array([2.0, 2.0]), np.array([2.2, 2.1]))
    assert scores["bias"] == pytest.approx(0.075) and np.isnan(scores["coverage"])
    assert held_out_scores(np.array([2.0]), np.array([1.8]), np.array([1.9]),
                           np.array([2.1]))["coverage"] == 1.0
    assert np.isnan(held_out_scores(np.array([]), np.array([]))["mean_abs_error"])


def test_leave_largest_out_cuts_on_a_shipped_ladder():
    frame = datasets.load("porian2024_rw_cosine")  # 12 budgets, 1.25e16 * 2^k
    assert leave_largest_out_cuts(frame) == [3.2e18, 6.4e18, 1.28e19]
    small = datasets.load("gadre2024_c4_m20")  # 6 runs: only one cut leaves 5 to fit
    assert len(leave_largest_out_cuts(small, min_fit=5)) == 1
    assert leave_largest_out_cuts(small, min_fit=6) == []
    with pytest.raises(FitError):
        leave_largest_out_cuts(frame, n_cuts=0)


# --- the benchmark harness (benchmarks/extrapolation.py) -----------------------------------------

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "benchmarks" / "extrapolation.py"


def _harness():
    spec = importlib.util.spec_from_file_location("extrapolation_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_reference_method_recovers_a_known_law():
    harness = _harness()
    starts = harness.besiroglu_starts()
    assert starts.shape == (4500, 5)
    # The 36 starts of their grid with e = 0.5, alpha = beta = 0.5 (a, b over 0..25): ~10 s.
    starts = starts[(starts[:, 0] == 0.5) & (starts[:, 3] == 0.5) & (starts[:, 4] == 0.5)]
    table = chinchilla_table()
    p = harness.besiroglu_fit(table["params"].to_numpy(), table["tokens"].to_numpy(),
                              table["loss"].to_numpy(), starts)
    for name, value in TRUTH.items():
        assert p[name] == pytest.approx(value, rel=1e-3), name
    predicted = harness.chinchilla_predict(p, table["params"].to_numpy(), table["tokens"].to_numpy())
    assert np.abs(predicted / table["loss"].to_numpy() - 1).max() < 1e-5


def test_harness_prints_one_json_line_per_method_and_cut():
    # L(C) ladders only (no reference or PyPI fits): seconds. The full run is the benchmark's.
    out = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--no-pypi", "--n-bootstrap", "20",
         "--datasets", "gadre2024_c4_m20", "porian2024_rw_cosine_frontier"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["settings"] and lines[0]["n_bootstrap"] == 20 and lines[0]["ref_starts"] == 300
    folds = [r for r in lines if "method" in r and "cut" in r]
    both = ["scaling", "scaling_symmetric"]  # the default, then the symmetric loss as its baseline
    assert [(r["dataset"], r["method"]) for r in folds] == (
        [("gadre2024_c4_m20", m) for m in both] + [("porian2024_rw_cosine_frontier", m) for m in both] * 3)
    assert {r["overestimate"] for r in folds if r["method"] == "scaling_symmetric"} == {1.0}
    for r in folds:
        assert "error" not in r and 0 <= r["mean_abs_error"] <= r["max_abs_error"] < 0.1
        assert 0 <= r["coverage"] <= 1 and r["law"] == "gpt4"
    summary = [r for r in lines if "summary" in r]
    assert [r["summary"] for r in summary] == both and summary[0]["folds"] == summary[1]["folds"] == 4


def test_harness_rolls_out_the_extra_laws_with_the_row_filter():
    harness = _harness()
    assert harness.dataset_laws("muennighoff2023_all", None) == ["chinchilla", "muennighoff"]
    assert harness.dataset_laws("gadre2024_rw", ["gadre"]) == ["gadre"]
    assert harness.dataset_laws("gadre2024_rw_m20", None) == ["gpt4"]
    where = "token_multiplier <= 80"
    out = subprocess.run(
        [sys.executable, str(HARNESS), "--no-pypi", "--no-reference", "--n-bootstrap", "0",
         "--n-cuts", "1", "--datasets", "gadre2024_rw", "--laws", "gadre", "--where", where,
         "--drop-top-loss", "2", "--no-symmetric"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["where"] == where and lines[0]["drop_top_loss"] == 2 and lines[0]["laws"] == ["gadre"]
    folds = [r for r in lines if "method" in r and "cut" in r]
    assert len(folds) == 1 and folds[0]["law"] == "gadre" and "eta" in folds[0]
    kept = int((datasets.load("gadre2024_rw")["token_multiplier"] <= 80).sum()) - 2
    assert folds[0]["n_fit"] + folds[0]["n_held"] == kept
    assert 0 <= folds[0]["mean_abs_error"] < 0.05
