"""Report inputs and plot data: a synthetic run table from a known law, checked against it.

``synthetic_runs`` and ``synthetic_curve`` live in ``tests/helpers.py``, shared with the other
report and compare tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import ISOFLOP_BUDGETS, synthetic_curve, synthetic_runs

from scaling.errors import DataError
from scaling.laws.selection import split_runs
from scaling.reporting.figures import isoflop_data, learning_curves_data


def test_split_keeps_finished_proxies_and_says_why_others_are_left_out():
    runs = synthetic_runs()
    split = split_runs(runs, x="flops_exact", y="loss")
    assert len(split.proxies) == 22  # 10 ladder + 3 x 4 IsoFLOP
    assert set(split.proxies["role"]) == {"proxy"}
    assert split.target["name"] == "N5e7-target"
    assert split.excluded.to_dict("records") == [
        {"run": "N3e6-diverged", "status": "FAILED", "reason": "failed: diverged: loss nan at step 120"},
        {"run": "N4e6-running", "status": "RUNNING", "reason": "status RUNNING"},
        {"run": "N1e6-noloss", "status": "FINISHED", "reason": "no loss"},
    ]


def test_split_leaves_out_non_positive_values():
    runs = synthetic_runs(extras=False, target=False)
    runs.loc[0, "flops_exact"] = 0.0
    split = split_runs(runs, x="flops_exact", y="loss")
    assert split.excluded["reason"].tolist() == ["flops_exact = 0 is not positive"]
    assert split.target is None


def test_split_takes_the_target_by_run_id_and_the_role_target_run_is_then_left_out():
    runs = synthetic_runs(extras=False)
    split = split_runs(runs, x="flops_exact", y="loss", target="run13")
    assert split.target["run_id"] == "run13"
    assert "run13" not in set(split.proxies["run_id"])
    assert split.excluded["reason"].tolist() == ["role 'target' (only proxies are fitted)"]


def test_split_unknown_target_is_one_clear_error():
    with pytest.raises(DataError, match=r"run table has no run 'nope'; pass a run_id \(or run_key\)"):
        split_runs(synthetic_runs(), target="nope")


def test_split_refuses_to_guess_between_two_targets():
    runs = synthetic_runs(extras=False)
    runs.loc[0, "role"] = "target"
    with pytest.raises(DataError, match=r"marks 2 runs as role 'target'; pick one with --target RUN_ID"):
        split_runs(runs)


def test_isoflop_profiles_group_runs_of_one_budget_and_find_the_known_optimum():
    split = split_runs(synthetic_runs(), x="flops_exact", y="loss")
    data = isoflop_data(split.proxies)
    assert data["budget"].unique().tolist() == pytest.approx(list(ISOFLOP_BUDGETS))
    for budget, profile in data.groupby("budget"):
        best = np.sqrt(budget / 120.0)  # the synthetic optimum: 20 tokens per parameter
        assert profile["params"].tolist() == pytest.approx(list(best * np.array([0.5, 1, 2, 4])))
        assert profile.loc[profile["loss"].idxmin(), "params"] == pytest.approx(best)


def test_no_isoflop_profile_in_a_ladder():
    split = split_runs(synthetic_runs(isoflop=False), x="flops_exact", y="loss")
    assert isoflop_data(split.proxies).empty


def test_learning_curves_put_proxies_in_compute_order_and_the_target_last():
    runs = synthetic_runs(isoflop=False, extras=False)
    curves = {
        row.run_id: synthetic_curve(row.loss, row.tokens, n_points=5)
        for row in runs.itertuples()
    }
    data = learning_curves_data(curves, runs, target_id="run10")
    order = list(dict.fromkeys(data["run_id"]))
    assert order == [f"run{i:02d}" for i in range(10)] + ["run10"]
    assert (data.loc[data["run_id"] == "run10", "role"] == "target").all()
    last = data[data["run_id"] == "run03"].iloc[-1]
    assert last["value"] == pytest.approx(runs.loc[3, "loss"])
    assert last["tokens"] == pytest.approx(runs.loc[3, "tokens"])


def test_learning_curves_skip_runs_without_a_curve():
    runs = synthetic_runs(isoflop=False, extras=False)
    data = learning_curves_data({"run00": pd.DataFrame(columns=["step", "tokens", "value"])}, runs)
    assert data.empty
    assert list(data.columns) == ["run", "run_id", "role", "flops", "tokens", "value"]


def test_isoflop_profiles_on_exact_flops_give_approach_2_and_d_opt_on_that_axis():
    from scaling.reporting.report import _isoflop_figure, _isoflop_profiles

    rows = []
    for budget in (1e11, 1e12, 1e13):  # exact FLOPs, as an isoflop sweep sets them
        n_opt = 0.02 * budget**0.5
        for n in n_opt * np.array([0.25, 0.5, 1.0, 2.0, 4.0]):
            tokens = budget / (6 * n + 3e6)  # exact FLOPs per token: 6N + head and attention
            loss = 2.0 + 0.3 * np.log(n / n_opt) ** 2 - 0.1 * np.log10(budget)
            rows.append({"params": n, "tokens": tokens, "flops": 6 * n * tokens,
                         "flops_exact": budget, "loss": loss})
    proxies = pd.DataFrame(rows)
    assert isoflop_data(proxies).empty  # on 6ND the sizes of one budget fall apart
    axis, profiles = _isoflop_profiles(proxies)
    assert axis == "flops_exact" and profiles["budget"].nunique() == 3
    data, text = _isoflop_figure(profiles, proxies, 1e14, 0.9, 50, 0, flops=axis)
    optima = data["optima"]
    assert optima["params_opt"].to_numpy() == pytest.approx(0.02 * optima["flops"] ** 0.5, rel=1e-6)
    exact_tokens = optima["flops"] / (6 * optima["params_opt"] + 3e6)
    assert optima["tokens_opt"].to_numpy() == pytest.approx(exact_tokens.to_numpy(), rel=0.02)
    assert "on exact FLOPs, 3 budgets" in text and "a = 0.5," in text
