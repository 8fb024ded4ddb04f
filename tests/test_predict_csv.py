"""``scaling predict --fit FIT --csv ROWS``, the row filters (``--where``, ``--drop-top-loss``)
of ``fit``, ``predict`` and ``report``, and ``--law`` choices in ``--help``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import DataError
from scaling.laws.fitting import fit
from scaling.laws.saved import load_fit, save_fit
from scaling.laws.selection import filter_rows

TRUTH = {"a": 40.0, "b": -0.1, "c": 1.5}  # GPT-4's L(C) = a C^b + c
CHIN = {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37}


def gpt4_loss(c):
    return TRUTH["a"] * np.asarray(c, float) ** TRUTH["b"] + TRUTH["c"]


def chinchilla_loss(n, d):
    return CHIN["E"] + CHIN["A"] / np.asarray(n) ** CHIN["alpha"] + CHIN["B"] / np.asarray(d) ** CHIN["beta"]


@pytest.fixture
def gpt4_fit(tmp_path):
    c = np.logspace(15, 19, 12)
    result = fit("gpt4", pd.DataFrame({"flops_exact": c, "loss": gpt4_loss(c)}), n_bootstrap=50)
    return save_fit(result, tmp_path / "fit.json")


def test_predict_csv_json_gives_every_row_and_scores_it(gpt4_fit, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    c = np.array([1e20, 1e21, 1e22])
    observed = gpt4_loss(c) * np.array([1.0, 1.02, 0.95])  # 0%, +2%, -5% from the law
    pd.DataFrame({"flops_exact": c, "loss": observed}).to_csv(rows, index=False)
    assert main(["predict", "--fit", str(gpt4_fit), "--csv", str(rows), "--output", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"] == "gpt4" and out["interval"] == 0.9 and out["band"] == "run"
    values = np.array([row["value"] for row in out["rows"]])
    assert np.allclose(values, gpt4_loss(c), rtol=1e-6)  # the exact law, recovered
    errors = np.array([row["error"] for row in out["rows"]])
    assert np.allclose(errors, [0.0, 1 / 1.02 - 1, 1 / 0.95 - 1], atol=1e-6)
    assert out["scores"]["max_abs_error"] == pytest.approx(1 / 0.95 - 1, abs=1e-6)
    # The same numbers as the loaded fit's own prediction, band included.
    _, (lower, upper) = load_fit(gpt4_fit).predict({"flops_exact": c}, interval=0.9, band="run")
    assert np.allclose([row["lower"] for row in out["rows"]], lower)
    assert np.allclose([row["upper"] for row in out["rows"]], upper)


def test_predict_csv_reads_the_columns_of_any_law(tmp_path, capsys):
    n = np.repeat(np.logspace(7, 9, 5), 5)
    d = n * np.tile([5.0, 10.0, 20.0, 40.0, 80.0], 5)
    frame = pd.DataFrame({"params": n, "tokens": d, "loss": chinchilla_loss(n, d)})
    path = save_fit(fit("chinchilla", frame, n_bootstrap=0), tmp_path / "chin.json")
    rows = tmp_path / "big.csv"
    pd.DataFrame({"tokens": [1.4e12, 3e12], "params": [70e9, 1e11], "note": ["a", "b"]}).to_csv(rows, index=False)
    assert main(["predict", "--fit", str(path), "--csv", str(rows), "--output", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert np.allclose([r["value"] for r in out["rows"]], chinchilla_loss([70e9, 1e11], [1.4e12, 3e12]),
                       rtol=1e-6)
    assert out["scores"] is None and "observed" not in out["rows"][0]  # no loss column: nothing scored


def test_predict_csv_missing_column_is_one_line(gpt4_fit, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"flops": [1e20]}).to_csv(rows, index=False)
    code = main(["predict", "--fit", str(gpt4_fit), "--csv", str(rows)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1
    assert str(rows) in err[0] and "'flops_exact'" in err[0] and "add it to the file" in err[0]


def test_predict_csv_bad_value_is_one_line(gpt4_fit, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text("flops_exact\n1e20\n-3\n")
    assert main(["predict", "--fit", str(gpt4_fit), "--csv", str(rows)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "row 2" in err[0] and "-3" in err[0]


def test_predict_csv_table_and_row_filter(gpt4_fit, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    c = np.array([1e20, 1e21, 1e22, 1e23])
    pd.DataFrame({"flops_exact": c, "loss": gpt4_loss(c) * 1.01}).to_csv(rows, index=False)
    args = ["predict", "--fit", str(gpt4_fit), "--csv", str(rows), "--where", "flops_exact < 5e22",
            "--drop-top-loss", "1", "--interval", "0.5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "predicted" in out and "observed" in out and "50% run band" in out
    assert "2 rows predicted; 2 with loss: mean |error| 0.99%" in out  # 1e20 (highest loss) dropped
    assert "rows: where 'flops_exact < 5e22', the 1 highest-loss dropped (4 -> 2)" in out
    assert main([*args, "--output", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [row["flops_exact"] for row in data["rows"]] == [1e21, 1e22]


def test_fit_filters_are_applied_recorded_and_printed(tmp_path, capsys):
    c = np.logspace(15, 19, 14)
    loss = gpt4_loss(c)
    loss[[0, 3, 7]] *= 1.5  # three outliers above the law
    frame = pd.DataFrame({"flops_exact": c, "loss": loss, "tokens": c / 1e6, "params": np.full(14, 1e5)})
    csv = tmp_path / "runs.csv"
    frame.to_csv(csv, index=False)
    save = tmp_path / "fit.json"
    args = ["fit", "--csv", str(csv), "--law", "gpt4", "--bootstrap", "0", "--drop-top-loss", "3",
            "--where", "tokens >= 2 * params", "--save", str(save)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rows: where 'tokens >= 2 * params', the 3 highest-loss dropped (14 -> 11)" in out
    saved = json.loads(save.read_text())
    assert saved["row_filter"] == {"where": "tokens >= 2 * params", "drop_top_loss": 3, "n_rows": 14,
                                   "n_kept": 11}
    assert saved["n_points"] == 11
    # Without the three outliers the exact law comes back; the loaded fit remembers the filter.
    assert saved["params"]["c"]["value"] == pytest.approx(TRUTH["c"], rel=1e-4)
    assert load_fit(save).row_filter_["drop_top_loss"] == 3
    assert main(args[:-6] + ["--output", "json"]) == 0  # no filter: the outliers pull the fit off
    unfiltered = json.loads(capsys.readouterr().out)["fit"]
    assert unfiltered["row_filter"]["where"] is None and unfiltered["n_points"] == 14
    assert abs(unfiltered["params"]["c"]["value"] - TRUTH["c"]) > 1e-3


def test_bad_where_is_one_line(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    c = np.logspace(15, 19, 8)
    pd.DataFrame({"flops_exact": c, "loss": gpt4_loss(c)}).to_csv(csv, index=False)
    for where in ("tokns > 3", "flops_exact >", "flops_exact * 2"):
        code = main(["fit", "--csv", str(csv), "--bootstrap", "0", "--where", where])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert str(csv) in err[0] and repr(where) in err[0] and "flops_exact, loss" in err[0]
    code = main(["fit", "--csv", str(csv), "--bootstrap", "0", "--where", "loss > 100"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "keeps none of its 8 rows" in err


def test_filter_rows_drops_the_highest_after_the_query():
    frame = pd.DataFrame({"x": [1, 2, 3, 4, 5, 6], "loss": [9.0, 1.0, 8.0, 2.0, 7.0, np.nan]})
    kept, record = filter_rows(frame, where="x >= 2", drop_top_loss=2)
    assert kept["x"].tolist() == [2, 4, 6]  # 8.0 and 7.0 go; 9.0 was already out; NaN is never "top"
    assert record == {"where": "x >= 2", "drop_top_loss": 2, "n_rows": 6, "n_kept": 3}
    with pytest.raises(DataError, match="would drop all 6 rows"):
        filter_rows(frame, drop_top_loss=6)


def test_report_filter_keeps_the_target_and_names_itself():
    from scaling.reporting.publish import filtered_inputs
    from scaling.reporting.report import ReportInputs

    runs = pd.DataFrame({"run_id": list("abcd"), "role": ["proxy", "proxy", "proxy", "target"],
                         "flops": [1e15, 2e15, 4e15, 1e18], "loss": [3.0, 2.9, 2.8, 2.0]})
    fields = {f: None for f in ReportInputs.__dataclass_fields__}
    inputs = ReportInputs(**{**fields, "runs": runs, "name": "runs", "source": "runs.csv"})
    out = filtered_inputs(inputs, where="flops > 3e15", drop_top_loss=0)
    assert out.runs["run_id"].tolist() == ["c", "d"]  # the target stays whatever the filter
    assert out.source == "runs.csv; rows: where 'flops > 3e15' (3 -> 1)"


@pytest.mark.parametrize("command", ["fit", "predict", "report", "compare"])
def test_law_choices_in_help(command, capsys):
    from scaling.laws.forms import LAWS

    assert main([command, "--help"]) == 0
    flat = "".join(capsys.readouterr().out.split())
    assert "--law[" + "|".join(LAWS) + "]" in flat


def test_fit_takes_the_weight_of_over_predicted_runs_and_says_how_it_was_set(tmp_path, capsys):
    c = np.logspace(15, 19, 14)
    csv = tmp_path / "runs.csv"
    pd.DataFrame({"flops_exact": c, "loss": gpt4_loss(c)}).to_csv(csv, index=False)
    base = ["fit", "--csv", str(csv), "--law", "gpt4", "--bootstrap", "0"]
    assert main([*base, "--overestimate", "10", "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["fit"]["overestimate"] == 10.0
    assert main(base) == 0  # the default chooses, and says why: one run per compute level
    assert "loss: symmetric (3 runs above the inner cuts, too few to choose a lean on; 4 needed)" in (
        capsys.readouterr().out)
    assert main([*base, "--overestimate", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--overestimate" in err and "'-1'" in err and len(err.strip().splitlines()) == 1
