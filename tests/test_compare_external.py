"""A large run trained elsewhere: compared from a CSV of its eval curve and its size only.

The proxies follow a known law (tests/helpers.py, ``TRUTH``); the target is a CSV curve that
ends 0.5% above the law at N = 5e7, D = 1e9. No MLflow: the proxies are a run-table CSV.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import EXACT_OVER_6ND, synthetic_curve, synthetic_runs, true_loss

from scaling.cli import main

N, D = 5e7, 1e9


@pytest.fixture
def files(tmp_path):
    runs = synthetic_runs(isoflop=False, extras=False)
    runs[runs["role"] == "proxy"].to_csv("proxies.csv", index=False)
    target = runs[runs["role"] == "target"].iloc[0]
    curve = synthetic_curve(target["loss"], target["tokens"])
    curve.rename(columns={"value": "loss"})[["tokens", "loss"]].to_csv("curve.csv", index=False)
    by_step = curve.rename(columns={"value": "loss"})[["step", "loss"]]
    by_step.to_csv("by_step.csv", index=False)
    return target, curve


def _compare(*args):
    return main(["compare", "--csv", "proxies.csv", "--n-bootstrap", "100", "--output", "json", *args])


def test_a_csv_curve_and_its_size_are_compared_with_the_known_truth(files, capsys):
    target, _ = files
    assert _compare("--target-csv", "curve.csv", "--params", str(N), "--tokens", str(D)) == 0
    summary = json.loads(capsys.readouterr().out)
    loss = summary["metrics"][0]
    exact = EXACT_OVER_6ND * 6 * N * D  # the proxies' exact/6ND ratio carries over exactly
    truth = float(true_loss(exact))
    assert loss["x"] == "flops_exact" and loss["target_x"] == pytest.approx(exact, rel=1e-9)
    assert loss["actual"] == pytest.approx(target["loss"])  # the curve's last evaluation
    assert loss["predicted"] == pytest.approx(truth, rel=0.03)
    assert loss["lo"] < truth < loss["hi"] and loss["inside"] is True
    assert loss["relative_error"] == pytest.approx((loss["predicted"] - target["loss"]) / target["loss"])
    # A CSV's rows are runs, not a sweep's proxies; the default --fit-range auto (as the demo)
    # may leave out the smallest of them.
    assert summary["basis"] == f"a refit of {summary['n_proxies']} runs of proxies.csv"
    assert 4 <= summary["n_proxies"] <= 10
    assert summary["name"] == "curve"


def test_a_curve_by_step_with_batch_tokens_gives_the_same_comparison(files, capsys):
    assert _compare("--target-csv", "curve.csv", "--params", str(N), "--tokens", str(D)) == 0
    by_tokens = json.loads(capsys.readouterr().out)["metrics"][0]
    # synthetic_curve's steps 1..20 over 1e9 tokens: 5e7 tokens per step.
    assert _compare("--target-csv", "by_step.csv", "--batch-tokens", "5e7", "--params", str(N)) == 0
    by_step = json.loads(capsys.readouterr().out)["metrics"][0]
    for key in ("target_x", "predicted", "lo", "hi", "actual"):
        assert by_step[key] == pytest.approx(by_tokens[key])
    assert by_step["crossing"] == by_tokens["crossing"]


def test_flops_alone_is_enough_for_gpt4s_law(files, capsys):
    assert _compare("--target-csv", "curve.csv", "--flops", str(6 * N * D)) == 0
    loss = json.loads(capsys.readouterr().out)["metrics"][0]
    assert loss["target_x"] == pytest.approx(EXACT_OVER_6ND * 6 * N * D, rel=1e-9)


@pytest.mark.parametrize(
    "content, args, message",
    [
        (None, [], "error: curve file missing.csv does not exist; pass --target-csv CURVE.csv"),
        ("tokens,value\n1e8,3.0\n", [], "error: curve file bad.csv: no column 'loss' (columns: "
         "tokens, value); name the evaluation loss column 'loss'"),
        ("step,loss\n1,3.0\n", [], "error: curve file bad.csv: a curve by 'step' needs "
         "--batch-tokens N (tokens per step), or add a 'tokens' column"),
        ("tokens,loss\n1e8,3.0\n2e8,oops\n", [], "error: curve file bad.csv: column 'loss' row 3 "
         "is 'oops'; give a positive number"),
        ("loss\n3.0\n", [], "error: curve file bad.csv: no column 'tokens' or 'step'; add one "
         "(tokens seen, or step with --batch-tokens)"),
        ("tokens,loss\n1e8,3.0\n", ["--tokens", "1e9"], "error: the law reads flops_exact, which "
         "is not known for the target; pass --flops-exact"),
    ],
)
def test_a_bad_curve_file_is_one_line_naming_file_column_and_fix(files, capsys, content, args, message):
    name = "missing.csv" if content is None else "bad.csv"
    if content is not None:
        Path(name).write_text(content)
    code = _compare("--target-csv", name, *(args or ["--params", str(N)]))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1


def test_a_target_needs_a_run_id_or_a_curve(files, capsys):
    assert _compare() == 2
    assert capsys.readouterr().err == (
        "error: give the large run: --target RUN_ID or --target-csv CURVE.csv\n"
    )


def test_report_takes_the_csv_target_too(files, capsys):
    target, _ = files
    code = main(["report", "--csv", "proxies.csv", "--target-csv", "curve.csv", "--params", str(N),
                 "--tokens", str(D), "--n-bootstrap", "50", "-o", "out"])
    assert code == 0, capsys.readouterr().err
    text = Path("out/report.md").read_text()
    assert "At flops_exact = 3.45e17 (the target run curve)" in text  # 1.15 x 6ND
    assert f"The target run reached {target['loss']:.4g}" in text
    assert "![Learning curves](learning_curves.png)" in text  # its curve is drawn


def test_compare_takes_interval(files, capsys):
    args = ("--target-csv", "curve.csv", "--params", str(N), "--tokens", str(D), "--fit-range", "all")
    assert _compare(*args) == 0
    wide = json.loads(capsys.readouterr().out)["metrics"][0]
    assert _compare(*args, "--interval", "0.5") == 0
    narrow = json.loads(capsys.readouterr().out)["metrics"][0]
    assert (wide["interval"], narrow["interval"]) == (0.9, 0.5)
    assert wide["lo"] < narrow["lo"] < narrow["predicted"] < narrow["hi"] < wide["hi"]
    assert main(["compare", "--csv", "proxies.csv", "--target-csv", "curve.csv", "--params", str(N),
                 "--interval", "1.5"]) == 2
    assert "--interval" in capsys.readouterr().err
