"""Predictions, compute-optimal allocation (Chinchilla approaches 1-3), saved fits, and the
`scaling fit` / `scaling predict` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import besiroglu_points, chinchilla_fit_with

from scaling.cli import main
from scaling.errors import FitError
from scaling.laws.allocation import approach1, approach2, approach3, compute_optimal
from scaling.laws.fitting import FitResult, fit
from scaling.laws.hparams import best_runs, hyperparameters
from scaling.laws.prediction import predict_run, two_step
from scaling.laws.saved import load_fit, save_fit
from scaling.table import load_csv

DATA = Path(__file__).parent / "data" / "chinchilla_points.csv"


@pytest.fixture(scope="module")
def points():
    return besiroglu_points(load_csv(DATA))


@pytest.fixture(scope="module")
def chinchilla(points):
    return fit("chinchilla", points, n_bootstrap=300, seed=0)


def test_compute_optimal_matches_brute_force(chinchilla):
    C = 5.76e23
    best = compute_optimal(C, chinchilla)
    p = chinchilla.params_
    N = np.logspace(9, 13, 400_001)
    D = C / (6 * N)
    loss = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
    i = np.argmin(loss)
    assert best.params == pytest.approx(N[i], rel=1e-3)
    assert best.tokens == pytest.approx(D[i], rel=1e-3)
    assert best.loss == pytest.approx(loss[i], rel=1e-9)
    assert 6 * best.params * best.tokens == pytest.approx(C)
    assert best.params_interval[0] < best.params < best.params_interval[1]
    assert best.tokens_interval[0] < best.tokens < best.tokens_interval[1]
    assert best.loss_interval[0] < best.loss < best.loss_interval[1]
    assert best.tokens_per_param == pytest.approx(best.tokens / best.params)
    saved = json.loads(json.dumps(best.to_dict(), allow_nan=False))  # JSON-safe: no NaN left
    assert (saved["params"], saved["tokens"], saved["loss"]) == (best.params, best.tokens, best.loss)
    assert saved["params_interval"] == list(best.params_interval)
    assert saved["loss_interval"] == list(best.loss_interval)


@pytest.mark.parametrize("exponent", ["alpha", "beta"])
def test_an_exponent_at_zero_has_no_compute_optimal_allocation_and_says_so(exponent):
    # alpha = 0 once came out of a WSD ladder's fit: eq. 4 then divided by zero in the report
    flat = chinchilla_fit_with(**{exponent: 0.0})
    for what, call in (("compute_optimal", lambda: compute_optimal(1e20, flat)),
                       ("approach3", lambda: approach3(flat))):
        with pytest.raises(FitError, match=rf"^{what}: the Chinchilla fit has alpha = [\d.]+ and "
                                           r"beta = [\d.]+; with an exponent at 0 .* no finite"):
            call()


def test_approach3_exponents(chinchilla):
    law = approach3(chinchilla)
    p = chinchilla.params_
    assert law.a == pytest.approx(p["beta"] / (p["alpha"] + p["beta"]))
    assert law.a + law.b == pytest.approx(1.0)
    # Besiroglu et al. report a = 0.51 for their fit of these points.
    assert law.a == pytest.approx(0.51, abs=0.01)
    assert law.a_interval[0] < law.a < law.a_interval[1]
    C = 1e22
    assert law.params_opt(C) == pytest.approx(compute_optimal(C, chinchilla).params, rel=1e-9)
    assert law.tokens_opt(C) == pytest.approx(compute_optimal(C, chinchilla).tokens, rel=1e-9)


def test_approaches_1_and_2_agree_with_chinchilla(points):
    # Hoffmann et al.: a = 0.50 (approach 1), 0.49 (approach 2), 0.46 (approach 3).
    first = approach1(points, n_bootstrap=100)
    second = approach2(points, n_bootstrap=100)
    for law in (first, second):
        assert 0.45 < law.a < 0.56
        assert law.a_interval[0] <= law.a <= law.a_interval[1]
        assert law.b == pytest.approx(1 - law.a)
        assert law.points["flops"].size >= 3
        saved = json.loads(json.dumps(law.to_dict(), allow_nan=False))  # JSON-safe: no NaN left
        assert (saved["approach"], saved["a"], saved["b"]) == (law.approach, law.a, law.b)
        assert saved["a_interval"] == list(law.a_interval)
        assert saved["points"]["flops"] == law.points["flops"].tolist()
    assert (first.approach, second.approach) == (1, 2)


def test_approach2_recovers_a_known_allocation():
    # IsoFLOP parabolas from an exact Chinchilla law: the minima follow a = beta/(alpha+beta).
    E, A, B, alpha, beta = 1.8, 400.0, 2000.0, 0.34, 0.37
    rows = []
    for C in np.logspace(18, 22, 9):
        for N in np.logspace(np.log10(C) / 2 - 3, np.log10(C) / 2 - 0.5, 9):
            D = C / (6 * N)
            rows.append({"params": N, "tokens": D, "flops": C, "loss": E + A / N**alpha + B / D**beta})
    law = approach2(pd.DataFrame(rows), n_bootstrap=20)
    assert law.a == pytest.approx(beta / (alpha + beta), abs=0.01)


def test_approach_errors(points, chinchilla):
    from scaling.errors import DataError

    few = points.iloc[:5]
    with pytest.raises(FitError, match=r"approach 2 found \d compute-optimal point\(s\), needs 3"):
        approach2(few, n_bootstrap=0)
    with pytest.raises(DataError, match=r"run table: missing column\(s\) flops_exact \(columns present: params, "):
        approach1(points, flops="flops_exact")
    bad = points.copy()
    bad.iloc[0, bad.columns.get_loc("loss")] = -1.0
    with pytest.raises(FitError, match=r"params, flops and loss must be finite and positive"):
        approach1(bad)


def test_non_chinchilla_fits_are_refused():
    C = np.logspace(15, 19, 12)
    result = fit("gpt4", pd.DataFrame({"flops_exact": C, "loss": 40 * C**-0.1 + 1.5}), n_bootstrap=0)
    message = r"compute_optimal needs a 'chinchilla' fit of L\(N, D\); got law 'gpt4'"
    with pytest.raises(FitError, match=message):
        compute_optimal(1e20, result)
    with pytest.raises(FitError, match=r"approach3 needs a fitted result"):
        approach3(FitResult("chinchilla"))


def test_bad_budget(chinchilla):
    with pytest.raises(FitError, match=r"flops = -1.0 must be a positive number of FLOPs"):
        compute_optimal(-1.0, chinchilla)


def test_predict_run(chinchilla):
    by_budget = predict_run(chinchilla, flops=5.76e23)
    best = compute_optimal(5.76e23, chinchilla)
    assert by_budget["params"] == pytest.approx(best.params)
    assert by_budget["value"] == pytest.approx(best.loss)
    assert by_budget["lower"] < by_budget["value"] < by_budget["upper"]
    by_shape = predict_run(chinchilla, params=70e9, tokens=1.4e12)
    assert by_shape["flops"] == pytest.approx(6 * 70e9 * 1.4e12)
    # The larger stretch of the two: 1.4e12 tokens vs the 3.18e11 largest fitted.
    stretch = max(70e9 / chinchilla.x_range_["params"][1], 1.4e12 / chinchilla.x_range_["tokens"][1])
    assert by_shape["extrapolation"] == pytest.approx(stretch)
    assert by_shape["extrapolation"] == pytest.approx(1.4e12 / 3.17754e11)
    with pytest.raises(FitError, match=r"give --flops C, or both --params N and --tokens D"):
        predict_run(chinchilla, params=70e9)


def test_predict_run_one_x_law():
    C = np.logspace(15, 19, 12)
    result = fit("gpt4", pd.DataFrame({"flops_exact": C, "loss": 40 * C**-0.1 + 1.5}), n_bootstrap=20)
    out = predict_run(result, params=1e9, tokens=2e10)
    assert out["flops"] == pytest.approx(1.2e20)
    assert out["value"] == pytest.approx(40 * 1.2e20**-0.1 + 1.5, rel=1e-5)
    assert out["extrapolation"] == pytest.approx(12.0)


def test_deepseek_hyperparameters():
    hp = hyperparameters(1e20)
    assert hp["lr"] == pytest.approx(0.3118 * 1e20**-0.125)
    assert hp["batch_tokens"] == pytest.approx(0.2920 * 1e20**0.3271)
    assert hyperparameters(1e20, lr={"a": 1.0, "b": 0.0})["lr"] == 1.0


def test_lr_law_from_a_learning_rate_sweep():
    # Five budgets x 41 learning rates; loss is a parabola in log lr around DeepSeek's optimum.
    rows = []
    for C in np.logspace(17, 21, 5):
        best = 0.3118 * C**-0.125
        for lr in np.logspace(-4, -2, 41):
            rows.append({"flops": C, "lr": lr, "loss": 2.0 + 0.1 * np.log(lr / best) ** 2})
    points = best_runs(pd.DataFrame(rows))
    assert len(points) == 5
    result = fit("lr", points, n_bootstrap=0)
    # The lr grid has 20 steps per decade: the fitted exponent is within 0.01 of -0.125.
    assert result.params_["b"] == pytest.approx(-0.125, abs=0.01)


def test_two_step_compute_to_loss_to_accuracy():
    C = np.logspace(17, 21, 20)
    loss = 40 * C**-0.1 + 1.5
    accuracy = 0.05 + 0.7 / (1 + np.exp(4.0 * (loss - 3.0)))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"flops_exact": C, "loss": loss * np.exp(rng.normal(0, 0.002, 20)),
                          "accuracy": accuracy * np.exp(rng.normal(0, 0.002, 20))})
    loss_fit = fit("gpt4", frame, n_bootstrap=100)
    metric_fit = fit("sigmoid", frame, n_bootstrap=100)
    target = 1e22
    true_loss = 40 * target**-0.1 + 1.5
    truth = 0.05 + 0.7 / (1 + np.exp(4.0 * (true_loss - 3.0)))
    point, (lower, upper) = two_step(loss_fit, metric_fit, [target])
    assert point[0] == pytest.approx(truth, rel=0.02)
    assert lower[0] < point[0] < upper[0]
    with pytest.raises(FitError, match=r"two_step: the metric law must read one column"):
        two_step(loss_fit, fit("chinchilla", synthetic_chinchilla(), n_bootstrap=0), [target])


def synthetic_chinchilla():
    grid = np.meshgrid(np.logspace(7, 10, 5), np.logspace(9, 12, 5))
    N, D = grid[0].ravel(), grid[1].ravel()
    return pd.DataFrame({"params": N, "tokens": D, "loss": 1.8 + 400 / N**0.34 + 2000 / D**0.37})


def test_save_and_load(chinchilla, tmp_path):
    path = save_fit(chinchilla, tmp_path / "fit.json")
    again = load_fit(path)
    assert again.params_ == chinchilla.params_
    assert again.intervals_.keys() == chinchilla.intervals_.keys()
    for name, (lower, upper) in chinchilla.intervals_.items():
        assert again.intervals_[name] == pytest.approx((lower, upper)), name
    assert compute_optimal(1e22, again).params_interval == compute_optimal(1e22, chinchilla).params_interval


def test_load_errors(tmp_path):
    with pytest.raises(FitError, match=r"nope.json: no such fit file; write one with 'scaling fit --save"):
        load_fit(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FitError, match=r"bad.json: not a JSON fit file"):
        load_fit(bad)
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    with pytest.raises(FitError, match=r"array.json: not a saved fit \(expected a JSON object\)"):
        load_fit(array)
    other = tmp_path / "other.json"
    other.write_text('{"law": "gpt4"}')
    with pytest.raises(FitError, match=r"other.json: not a saved fit \(expected format 'scaling.fit/1'\)"):
        load_fit(other)
    with pytest.raises(FitError, match=r"only a fitted result can be saved"):
        save_fit(FitResult("gpt4"), tmp_path / "x.json")


# --- commands ------------------------------------------------------------------------------------


def test_fit_command_json_and_save(capsys):
    code = main(["fit", "--csv", str(DATA), "--law", "chinchilla", "--bootstrap", "100",
                 "--backtest", "1e20", "--save", "fit.json", "--output", "json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fit"]["n_points"] == 245
    assert report["fit"]["n_starts"] == 4500
    assert 0.30 < report["fit"]["params"]["alpha"]["value"] < 0.40
    assert report["backtest"]["folds"][0]["cut"] == 1e20
    assert Path("fit.json").is_file() and report["saved"] == "fit.json"


def test_fit_command_table(capsys):
    from scaling.formatting import format_interval

    args = ["fit", "--csv", str(DATA), "--law", "gpt4", "--x", "flops", "--bootstrap", "50"]
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0
    assert "gpt4: L(C) = a·C^b + c" in out
    # One line per parameter: its value and bootstrap interval as `value +up/-down` (or
    # `value ± error` when symmetric) at the 90% level (the default --interval), the numbers of the same fit's JSON.
    assert main([*args, "--output", "json"]) == 0
    fitted = json.loads(capsys.readouterr().out)["fit"]
    assert list(fitted["params"]) == ["a", "b", "c"] and fitted["interval"] == 0.9
    lines = out.splitlines()
    for name, p in fitted["params"].items():
        shown = format_interval(p["value"], p["lower"], p["upper"])
        assert re.fullmatch(r"-?[\d.]+ (± [\d.]+|\+[\d.]+/-[\d.]+)", shown), shown
        assert f"  {name:>8} = {shown}  (90%)" in lines, out
    assert "245 runs" in out


def test_predict_command_from_saved_fit(capsys):
    assert main(["fit", "--csv", str(DATA), "--law", "chinchilla", "--bootstrap", "100", "--save", "fit.json",
                 "--output", "json"]) == 0
    capsys.readouterr()
    assert main(["predict", "--fit", "fit.json", "--flops", "5.76e23", "--output", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prediction"]["law"] == "chinchilla"
    assert out["compute_optimal"]["flops"] == 5.76e23
    assert out["compute_optimal"]["params"] == pytest.approx(out["prediction"]["params"])
    assert main(["predict", "--fit", "fit.json", "--params", "70e9", "--tokens", "1.4e12"]) == 0
    text = capsys.readouterr().out
    assert "loss at C = 5.9e23, N = 70B, D = 1.4T" in text
    assert "compute-optimal for C = 5.9e23" in text


def test_predict_command_fits_on_the_fly(capsys):
    code = main(["predict", "--csv", str(DATA), "--law", "gpt4", "--x", "flops", "--bootstrap", "50",
                 "--flops", "1e23", "--output", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prediction"]["law"] == "gpt4"
    assert out["compute_optimal"]["params"] > 1e10  # from a chinchilla fit of the same table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit"], "give exactly one of --csv FILE or --experiment NAME"),
        (["fit", "--csv", "a.csv", "--experiment", "demo"],
         "give exactly one of --csv FILE or --experiment NAME"),
        (["fit", "--csv", "missing.csv"], "missing.csv: no such file"),
        (["fit", "--csv", str(DATA), "--law", "gpt5"], "unknown law 'gpt5'"),
        (["fit", "--csv", str(DATA)], "missing column(s) flops_exact"),
        (["fit", "--csv", str(DATA), "--law", "chinchilla", "--bootstrap", "0", "--backtest", "1e20,x"],
         "--backtest '1e20,x': give compute cuts as numbers"),
        (["predict", "--fit", "f.json", "--csv", "a.csv", "--flops", "1e20"],
         "--fit FILE --csv ROWS predicts the rows of ROWS; leave out --experiment, --flops"),
        (["predict", "--fit", "f.json", "--experiment", "demo"], "give --fit FILE or --csv/--experiment"),
        (["predict", "--fit", "f.json", "--flops", "1e20"], "f.json: no such fit file"),
    ],
)
def test_command_errors(args, message, capsys):
    code = main(args)
    assert code == 2
    assert message in capsys.readouterr().err


def test_fit_command_says_first_when_the_fit_is_not_valid(capsys):
    flops = np.logspace(15, 19, 12)
    pd.DataFrame({"flops_exact": flops, "loss": 50.0 * flops**-0.1}).to_csv("power.csv", index=False)
    assert main(["fit", "--csv", "power.csv", "--law", "gpt4", "--bootstrap", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("  NOT VALID: parameter(s) at a bound: c (the values and intervals below "
                        "cannot be relied on)")
    assert lines[-1] == "  INVALID: parameter(s) at a bound: c"
    assert main(["fit", "--csv", str(DATA), "--law", "gpt4", "--x", "flops", "--bootstrap", "20"]) == 0
    assert "NOT VALID" not in capsys.readouterr().out


def test_fit_command_prints_chinchillas_three_approaches(capsys):
    args = ["fit", "--csv", str(DATA), "--law", "chinchilla", "--bootstrap", "20", "--allocation"]
    assert main([*args, "--output", "json"]) == 0
    allocation = json.loads(capsys.readouterr().out)["allocation"]
    # On Chinchilla's points each approach puts N_opt near C^0.5 (Hoffmann et al. 2022: 0.50,
    # 0.49 and 0.46); approach 2 reads 20 IsoFLOP budgets.
    for number in (1, 2, 3):
        law = allocation[f"approach{number}"]
        assert law["approach"] == number and 0.45 < law["a"] < 0.62, law
        assert law["a"] + law["b"] == pytest.approx(1.0)
    assert len(allocation["approach2"]["points"]["flops"]) == 20
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "  compute-optimal allocation, N_opt ∝ C^a and D_opt ∝ C^b (C = 6ND, 90%):" in out
    assert re.search(r"    approach 1 \(lower envelope, \d+ points\): a = 0\.5", out), out
    assert re.search(r"    approach 2 \(IsoFLOP minima, 20 points\): a = 0\.5", out), out
    assert "    approach 3 (chinchilla fit, closed form): a = 0." in out


def test_fit_allocation_on_runs_without_sizes_says_why_each_approach_is_missing(capsys):
    flops = np.logspace(15, 19, 12)
    pd.DataFrame({"flops_exact": flops, "loss": 40.0 * flops**-0.1 + 1.5}).to_csv("c.csv", index=False)
    assert main(["fit", "--csv", "c.csv", "--law", "gpt4", "--bootstrap", "20", "--allocation"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("    approach")]
    assert len(lines) == 3 and all("none, " in line and "params" in line for line in lines), lines


def test_the_demo_says_under_its_forecast_when_the_fit_is_not_valid():
    from scaling.demo import validity_line
    from scaling.laws.fitting import fit

    flops = np.logspace(15, 19, 12)
    power = fit("gpt4", pd.DataFrame({"flops_exact": flops, "loss": 50.0 * flops**-0.1}), n_bootstrap=0)
    assert validity_line(power.summary()) == (
        "    the fit is NOT valid (parameter(s) at a bound: c): the forecast and its interval "
        "cannot be relied on as they stand")
    clean = fit("gpt4", pd.DataFrame({"flops_exact": flops, "loss": 40.0 * flops**-0.1 + 1.5}), n_bootstrap=0)
    assert validity_line(clean.summary()) is None


def test_a_ladder_at_one_tokens_per_param_ratio_gets_no_compute_optimal_allocation():
    from helpers import synthetic_runs
    from scaling.laws.allocation import optional_chinchilla_fit

    # at 20 tokens per parameter N and D move together: the Chinchilla fit is not valid, and
    # an allocation from it (once N = 508B at 0.0 tokens/param for the Llama CPU ladder) is not shown
    assert optional_chinchilla_fit(synthetic_runs(isoflop=False, extras=False, target=False),
                                   n_bootstrap=0) is None
    with_profiles = optional_chinchilla_fit(synthetic_runs(extras=False, target=False), n_bootstrap=0)
    assert with_profiles is not None and with_profiles.is_valid
