"""``scaling validate`` (``scaling/cli/validate_commands.py``): leave-largest-out rollouts.

Against known truth: a run table drawn from L = E + A/N^alpha + B/D^beta gives errors at the
noise level and a band that covers about as often as it says; exact data gives no error; runs
made worse above the cut by a known factor show exactly that bias. On shipped datasets the
lines carry the benchmark's fields and the figures of ``scaling.laws.rollouts`` called
directly. Bad input is one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling import datasets
from scaling.cli import main
from scaling.laws.rollouts import leave_largest_out_cuts, rollout
from scaling.laws.selection import filter_rows

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.35, "beta": 0.37}
FOLD_KEYS = ["dataset", "law", "method", "cut", "n_fit", "n_held", "mean_abs_error", "max_abs_error",
             "bias", "coverage", "wall_s", "is_valid", "overestimate"]
SMALL = ["gadre2024_c4_m20", "porian2024_rw_cosine_frontier"]  # 6 and 12 runs, law gpt4


def isoflop_table(noise: float, seed: int = 0) -> pd.DataFrame:
    """7 compute budgets (1e17 x 4^k) x 6 sizes around N* = sqrt(C/120), loss from TRUTH."""
    rows = []
    for flops in 1e17 * 4.0 ** np.arange(7):
        for params in np.sqrt(flops / 120) * np.logspace(-0.6, 0.6, 6):
            rows.append((params, flops / (6 * params), flops))
    params, tokens, flops = np.array(rows).T
    loss = TRUTH["E"] + TRUTH["A"] * params ** -TRUTH["alpha"] + TRUTH["B"] * tokens ** -TRUTH["beta"]
    loss = loss * np.exp(noise * np.random.default_rng(seed).standard_normal(loss.size))
    return pd.DataFrame({"params": params, "tokens": tokens, "flops": flops, "loss": loss})


def gpt4_table(n: int = 12) -> pd.DataFrame:
    flops = np.logspace(16, 21, n)
    return pd.DataFrame({"flops": flops, "flops_exact": flops, "loss": 40.0 * flops**-0.1 + 1.6})


def run_json(capsys, *args: str) -> tuple[int, list[dict]]:
    code = main(["validate", "--output", "json", *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def folds_of(lines):
    return [line for line in lines if "cut" in line and "summary" not in line]


def summaries_of(lines):
    return [line for line in lines if "summary" in line]


# --- known truth ---------------------------------------------------------------------------------


def test_noisy_chinchilla_csv_errors_at_the_noise_level_and_the_band_covers(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    isoflop_table(noise=0.005, seed=0).to_csv(csv, index=False)  # 0.5% lognormal scatter
    code, lines = run_json(capsys, "--csv", str(csv), "--law", "chinchilla", "--resamples", "50")
    assert code == 0
    folds = folds_of(lines)
    # The top 1, 2, 3 budgets held out: 6, 12, 18 runs above the cut, the rest fitted.
    assert [(f["n_fit"], f["n_held"]) for f in folds] == [(24, 18), (30, 12), (36, 6)]
    for fold in folds:
        assert fold["dataset"] == str(csv) and fold["law"] == "chinchilla" and "error" not in fold
        assert fold["is_valid"]
        assert fold["mean_abs_error"] < 0.015  # E|noise| = 0.4%; extrapolation adds a little
        assert fold["max_abs_error"] < 0.04  # 8 sigma of the scatter
        assert abs(fold["bias"]) < 0.01
        assert fold["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.1)
        assert fold["beta"] == pytest.approx(TRUTH["beta"], abs=0.1)
    (summary,) = summaries_of(lines)
    assert summary["folds"] == 3 and summary["failed"] == 0 and summary["n_rows"] == 42
    assert 0.65 <= summary["mean_coverage"] <= 1.0  # nominal 0.9, on 6 to 18 runs per cut
    assert summary["mean_of_mean_abs_error"] == pytest.approx(
        np.mean([f["mean_abs_error"] for f in folds]))


def test_exact_csv_rolls_out_with_no_error(tmp_path, capsys):
    csv = tmp_path / "exact.csv"
    isoflop_table(noise=0.0).to_csv(csv, index=False)
    code, lines = run_json(capsys, "--csv", str(csv), "--law", "chinchilla", "--bootstrap", "0")
    assert code == 0
    folds = folds_of(lines)
    assert len(folds) == 3
    for fold in folds:
        assert fold["max_abs_error"] < 1e-6 and abs(fold["bias"]) < 1e-6
        assert fold["coverage"] is None  # no resamples, no band
        assert fold["alpha"] == pytest.approx(TRUTH["alpha"], rel=1e-4)
    assert summaries_of(lines)[0]["mean_coverage"] is None


def test_runs_made_worse_above_the_cut_show_exactly_that_bias(tmp_path, capsys):
    table = gpt4_table(12)
    table.loc[table.index[-1], "loss"] *= 1.1  # only the largest run, the one level held out
    csv = tmp_path / "runs.csv"
    table.to_csv(csv, index=False)
    code, lines = run_json(capsys, "--csv", str(csv), "--cuts", "1", "--bootstrap", "0")
    assert code == 0
    (fold,) = folds_of(lines)
    assert fold["law"] == "gpt4" and (fold["n_fit"], fold["n_held"]) == (11, 1)
    assert fold["bias"] == pytest.approx(1 / 1.1 - 1, abs=1e-6)
    assert fold["max_abs_error"] == pytest.approx(1 - 1 / 1.1, abs=1e-6)


# --- shipped datasets ----------------------------------------------------------------------------


def test_shipped_datasets_match_rollouts_called_directly(capsys):
    code, lines = run_json(capsys, "--datasets", *SMALL, "--resamples", "20", "--interval", "0.8",
                           "--cuts", "2", "--seed", "3")
    assert code == 0
    settings = lines[0]
    assert settings["settings"] and settings["n_bootstrap"] == 20 and settings["interval"] == 0.8
    assert settings["n_cuts"] == 2 and settings["seed"] == 3
    folds = folds_of(lines)
    for name in SMALL:
        frame = datasets.load(name)
        cuts = leave_largest_out_cuts(frame, "flops", n_cuts=2, min_fit=5)
        direct = rollout(frame, "gpt4", cuts=cuts, interval=0.8, n_bootstrap=20, seed=3)
        mine = [f for f in folds if f["dataset"] == name]
        assert [f["cut"] for f in mine] == cuts
        for fold, row in zip(mine, direct.to_dict("records")):
            assert list(fold) == FOLD_KEYS  # gpt4's a, b, c are not among the reported parameters
            assert fold["law"] == "gpt4" and fold["method"] == "scaling"
            assert (fold["n_fit"], fold["n_held"]) == (row["n_fit"], row["n_held"])
            for key in ("mean_abs_error", "max_abs_error", "bias", "coverage"):
                assert fold[key] == pytest.approx(row[key], rel=1e-9, abs=1e-12), key
            assert fold["wall_s"] > 0
    assert [len([f for f in folds if f["dataset"] == name]) for name in SMALL] == [1, 2]
    summaries = summaries_of(lines)
    assert [(s["dataset"], s["law"], s["folds"], s["failed"]) for s in summaries] == [
        (SMALL[0], "gpt4", 1, 0), (SMALL[1], "gpt4", 2, 0)]
    porian = [f for f in folds if f["dataset"] == SMALL[1]]
    assert summaries[1]["mean_coverage"] == pytest.approx(np.mean([f["coverage"] for f in porian]))
    assert summaries[1]["worst_max_abs_error"] == max(f["max_abs_error"] for f in porian)


def test_lines_carry_the_benchmarks_fields_and_figures(capsys):
    spec = importlib.util.spec_from_file_location("extrapolation_harness",
                                                  ROOT / "benchmarks" / "extrapolation.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    name = SMALL[0]
    bench = list(harness.roll_dataset(name, "gpt4", datasets.load(name), 3, 5, 20, None, False, 2, True,
                                      symmetric=False))
    code, lines = run_json(capsys, "--datasets", name, "--resamples", "20")
    assert code == 0
    folds = folds_of(lines)
    assert [list(f) for f in folds] == [list(b) for b in bench]
    for fold, record in zip(folds, bench):
        for key in FOLD_KEYS:
            if key != "wall_s":
                assert fold[key] == pytest.approx(record[key]), key


def test_table_output_and_summary_lines(capsys):
    assert main(["validate", "--datasets", ",".join(SMALL), "--resamples", "20"]) == 0
    out = capsys.readouterr().out
    assert "Leave-largest-out rollouts (20 resamples, seed 0)" in out
    assert "in 90% band" in out and "mean |error|" in out
    summary = [line for line in out.splitlines() if line.startswith(SMALL[1])]
    assert len(summary) == 1 and "3 of 3 cuts scored" in summary[0]
    assert "inside the 90% band" in summary[0]
    assert f"{SMALL[0]} (gpt4): 1 of 1 cuts scored" in out


def test_dataset_names_are_repeatable_comma_separated_or_listed(capsys):
    base = ["--resamples", "0", "--cuts", "1"]
    runs = [["--datasets", *SMALL], ["--datasets", SMALL[0], "--datasets", SMALL[1]],
            ["--datasets", ",".join(SMALL)]]
    seen = []
    for names in runs:
        code, lines = run_json(capsys, *names, *base)
        assert code == 0
        seen.append([(f["dataset"], f["cut"], f["mean_abs_error"]) for f in folds_of(lines)])
    assert seen[0] == seen[1] == seen[2] and [s[0] for s in seen[0]] == SMALL


def test_row_filter_applies_before_the_cuts(capsys):
    name, where = SMALL[1], "flops >= 2e16"
    code, lines = run_json(capsys, "--datasets", name, "--where", where, "--drop-top-loss", "2",
                           "--cuts", "2", "--bootstrap", "0")
    assert code == 0
    kept, record = filter_rows(datasets.load(name), where=where, drop_top_loss=2)
    assert record["n_kept"] == 12 - 1 - 2
    direct = rollout(kept, "gpt4", cuts=leave_largest_out_cuts(kept, n_cuts=2), n_bootstrap=0)
    folds = folds_of(lines)
    assert [(f["cut"], f["n_fit"], f["n_held"]) for f in folds] == [
        (r["cut"], r["n_fit"], r["n_held"]) for r in direct.to_dict("records")]
    assert all(f["n_fit"] + f["n_held"] == 9 for f in folds)
    assert [f["bias"] for f in folds] == pytest.approx(direct["bias"].tolist())
    assert summaries_of(lines)[0]["n_rows"] == 9


def test_every_dataset_by_default_skipping_those_a_filter_cannot_apply_to(capsys, monkeypatch):
    monkeypatch.setattr(datasets, "names", lambda: list(SMALL))  # every dataset: two, for speed
    code, lines = run_json(capsys, "--where", "token_multiplier <= 20", "--bootstrap", "0",
                           "--cuts", "1")
    assert code == 0
    (skipped,) = [line for line in lines if "skipped" in line]
    assert skipped["dataset"] == SMALL[1] and "token_multiplier" in skipped["skipped"]
    assert [s["dataset"] for s in summaries_of(lines)] == [SMALL[0]]
    # Named explicitly, the same table is an error instead.
    assert main(["validate", "--datasets", SMALL[1], "--where", "token_multiplier <= 20"]) == 2
    assert "token_multiplier" in capsys.readouterr().err


def test_a_cut_that_cannot_be_fitted_is_shown_and_exits_1(tmp_path, capsys):
    # kaplan_n reads params: below the two lower cuts every run has the same size.
    flops = np.logspace(16, 20, 8)
    params = np.r_[np.full(6, 1e7), 3e7, 1e8]
    csv = tmp_path / "runs.csv"
    pd.DataFrame({"params": params, "flops": flops, "loss": 2 + 30 * params**-0.2}).to_csv(csv, index=False)
    code = main(["validate", "--csv", str(csv), "--law", "kaplan_n", "--bootstrap", "0"])
    captured = capsys.readouterr()
    assert code == 1
    assert "constant" in captured.out and "1 of 3 cuts scored" in captured.out
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("error: 2 of 3 cuts could not be fitted; first: ")


# --- bad input -----------------------------------------------------------------------------------


def _write(tmp_path, name, frame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


BAD_INPUTS = {
    "missing file": (lambda tmp: ["--csv", str(tmp / "nope.csv")], "no such file"),
    "missing law column": (lambda tmp: ["--csv", _write(tmp, "r.csv", isoflop_table(0).drop(columns="tokens")),
                                        "--law", "chinchilla"], "missing column(s) tokens"),
    "no column to cut on": (lambda tmp: ["--csv", _write(tmp, "r.csv", isoflop_table(0).drop(columns="flops")),
                                         "--law", "chinchilla"], "no column 'flops' to cut on"),
    "bad cut column": (lambda tmp: ["--datasets", SMALL[0], "--cut-column", "compute"],
                       "no column 'compute' to cut on"),
    "too few runs for a cut": (lambda tmp: ["--csv", _write(tmp, "r.csv", gpt4_table(5))],
                               "no cut on 'flops' leaves 5 runs to fit"),
    "too few for the law": (lambda tmp: ["--datasets", SMALL[0], "--law", "chinchilla"],
                            "needs more runs than its 5 parameters"),
    "non-number": (lambda tmp: ["--csv", _write(tmp, "r.csv", gpt4_table().astype({"loss": object})
                                                .assign(loss=lambda f: f["loss"].where(f.index != 3, "n/a")))],
                   "loss"),
    "unknown dataset": (lambda tmp: ["--datasets", SMALL[0], "no_such_ladder"],
                        "unknown dataset 'no_such_ladder'; choose one of chinchilla_points, "),
    "unknown law": (lambda tmp: ["--datasets", SMALL[0], "--law", "no_such_law"], "unknown law 'no_such_law'"),
    "csv and names": (lambda tmp: ["--csv", "runs.csv", "--datasets", SMALL[0]], "not both"),
    "bad where": (lambda tmp: ["--datasets", SMALL[0], "--where", "epochs <"], "--where 'epochs <'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_a_non_zero_exit(case, tmp_path, capsys):
    args, message = BAD_INPUTS[case]
    code = main(["validate", *args(tmp_path)])
    captured = capsys.readouterr()
    assert code != 0
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert message in captured.err
    assert "Traceback" not in captured.err


def test_unknown_dataset_lists_every_valid_name(capsys):
    assert main(["validate", "--datasets", "gadre2024"]) == 2
    err = capsys.readouterr().err
    assert "'gadre2024'" in err and all(name in err for name in datasets.names())


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "scaling", "validate", "--csv", str(tmp_path / "x.csv")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no such file" in out.stderr
    assert "Traceback" not in out.stderr
