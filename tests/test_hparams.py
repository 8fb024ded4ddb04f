"""Tuned optima and hyperparameter laws, against tune trials drawn from known laws."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import FitError
from scaling.laws.fitting import fit
from scaling.laws.hparams import (
    best_of_tuned,
    law_table,
    recommend,
    tune_optima,
)

# lr_opt(C) = A·C^B and L(C) = 10·C^-0.05 + 1 at the optimum; a trial at lr pays
# CURVATURE·ln(lr/lr_opt)² (a parabola in log lr, as measured lr sweeps look near the optimum).
A, B, CURVATURE = 0.3, -0.125, 0.05
FLOPS = 1e12 * 4.0 ** np.arange(4)


def trials(noise: float = 0.0, batches: tuple[int, ...] = (4096,), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, flops in enumerate(FLOPS):
        best = A * flops**B
        for batch in batches:
            # the larger batch is worse by 0.02 nats and prefers twice the lr
            shift = 2.0 if batch != batches[0] else 1.0
            for step in (-2, -1, -0.5, 0, 0.5, 1, 2):
                lr = best * shift * 2.0**step
                loss = 10 * flops**-0.05 + 1 + CURVATURE * np.log(lr / (best * shift)) ** 2
                loss += 0.02 * (batch != batches[0]) + noise * rng.standard_normal()
                rows.append({"tune": f"d{16 * 2**i}-L2", "role": "proxy", "status": "FINISHED",
                             "lr": lr, "batch_tokens": batch, "loss": loss, "flops": flops,
                             "flops_exact": 1.2 * flops, "params": flops / 6 / 2e6, "tokens": 2e6})
    return pd.DataFrame(rows)


def test_optima_recover_the_known_lr_per_shape_and_the_lr_law():
    optima = tune_optima(trials(), n_bootstrap=0)
    assert optima["tune"].tolist() == ["d16-L2", "d32-L2", "d64-L2", "d128-L2"]
    assert optima["lr"].to_numpy() == pytest.approx(A * FLOPS**B, rel=1e-9)
    assert (optima["method"] == "parabola").all() and (optima["trials"] == 7).all()
    result = fit("lr", optima, n_bootstrap=20)
    assert result.params_["a"] == pytest.approx(A, rel=1e-4)
    assert result.params_["b"] == pytest.approx(B, abs=1e-5)


def test_bootstrap_interval_of_a_noisy_shape_covers_its_optimum():
    optima = tune_optima(trials(noise=0.005, seed=3), n_bootstrap=200, interval=0.9)
    truth = A * FLOPS**B
    assert ((optima["lr_lower"] <= optima["lr"]) & (optima["lr"] <= optima["lr_upper"])).all()
    assert (optima["lr_lower"] < optima["lr_upper"]).all()
    # 0.005 nats of noise on a curvature of 0.05 per ln(lr)^2: the optimum within a factor 1.5
    assert np.all(np.abs(np.log(optima["lr"] / truth)) < np.log(1.5))


def test_a_tuned_batch_size_is_the_best_trials_and_its_lr_is_read_at_that_batch():
    optima = tune_optima(trials(batches=(4096, 8192)), n_bootstrap=0)
    assert (optima["batch_tokens"] == 4096).all() and (optima["batch_choices"] == 2).all()
    assert optima["lr"].to_numpy() == pytest.approx(A * FLOPS**B, rel=1e-9)
    assert len(law_table("batch", trials(batches=(4096, 8192)))) == 4


def test_an_optimum_at_the_edge_of_the_range_falls_back_to_the_best_trial():
    frame = trials()
    frame = frame[frame["lr"] > 1.1 * A * frame["flops"] ** B]  # every lr tried is too large
    optima = tune_optima(frame, n_bootstrap=0)
    assert (optima["method"] == "best trial").all()
    assert optima["lr"].to_numpy() == pytest.approx(A * FLOPS**B * 2**0.5)


def test_best_of_tuned_keeps_one_trial_per_shape_and_every_other_run():
    frame = pd.concat([trials(), pd.DataFrame({"tune": [None], "loss": [4.0], "flops": [1e11]})])
    best = best_of_tuned(frame)
    assert len(best) == 5 and best["loss"].isna().sum() == 0
    assert sorted(best["lr"].dropna()) == pytest.approx(sorted(A * FLOPS**B))


def test_recommend_reads_the_fitted_laws_or_labels_the_reference():
    tuned = recommend(trials(noise=0.002), 1e16, n_bootstrap=100)
    assert tuned["source"] == "tuned" and tuned["shapes"] == 4 and tuned["batch_tokens"] is None
    lr = tuned["lr"]
    assert lr["lower"] < A * 1e16**B < lr["upper"]
    assert lr["value"] == pytest.approx(A * 1e16**B, rel=0.2)
    reference = recommend(None, 1e20)
    assert reference["source"] == "deepseek" and reference["lr"]["value"] == pytest.approx(0.3118 * 1e20**-0.125)
    few = recommend(trials().query("flops < 1e13"), 1e16)
    assert few["source"] == "unavailable" and "fitting needs more runs than parameters" in few["reason"]


def test_no_tune_trials_and_an_untuned_batch_are_clear_errors():
    empty = trials().assign(tune=None)
    with pytest.raises(FitError, match=r"runs.csv: no finished tune trials \(the 'tune' column is empty\); .*run one first"):
        tune_optima(empty, source="runs.csv")
    with pytest.raises(FitError, match=r"the batch size was not tuned \(one size per shape\); add choices"):
        law_table("batch", trials())
    assert len(law_table("gpt4", trials())) == 4  # a loss law sees each shape's best trial
    plain = trials().drop(columns="tune")
    assert law_table("lr", plain) is plain  # a CSV without a tune column is fitted as it is


def test_fit_and_predict_commands_use_the_tuned_optima(capsys):
    trials(noise=0.002).to_csv("tune.csv", index=False)
    assert main(["fit", "--csv", "tune.csv", "--law", "lr", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "lr: lr_opt(C) = a·C^b   (flops -> lr)" in out
    assert "fitted to the optima of 4 tuned shapes:" in out and "d128-L2" in out

    assert main(["predict", "--csv", "tune.csv", "--flops", "1e16", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "loss at C = " in out and "recommended lr 0.00" in out and "(lr law fitted to 4 tuned shapes)" in out
    # four best trials cannot carry the five-parameter Chinchilla fit: the prediction stands alone
    assert "compute-optimal N and D need a valid chinchilla fit" in out

    assert main(["predict", "--csv", "tune.csv", "--flops", "1e16", "--bootstrap", "50", "--output", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["hyperparameters"]["lr"]["value"] == pytest.approx(A * 1e16**B, rel=0.2)

    assert main(["fit", "--csv", "tune.csv", "--law", "gpt4", "--bootstrap", "10", "--save", "fit.json"]) == 0
    capsys.readouterr()
    assert main(["predict", "--fit", "fit.json", "--flops", "1e20"]) == 0
    assert "DeepSeek LLM's published laws (reference only): lr 0.000986" in capsys.readouterr().out

    trials().assign(tune=None).to_csv("empty.csv", index=False)
    assert main(["fit", "--csv", "empty.csv", "--law", "lr"]) == 2  # a FitError's exit code
    assert "no finished tune trials" in capsys.readouterr().err


def test_the_report_of_a_tune_sweep_shows_loss_against_lr_the_optima_and_the_law():
    from scaling.reporting.render import render_markdown
    from scaling.reporting.report import build_report, inputs_from_csv

    trials(noise=0.002).to_csv("tune.csv", index=False)
    report = build_report(inputs_from_csv("tune.csv"), target_flops=1e16, n_bootstrap=100, date="2026-01-01")
    assert len(report.split.proxies) == 4  # the loss law sees each shape's best trial only
    data = report.figures["lr_tuning"]
    assert len(data["trials"]) == 28 and len(data["optima"]) == 4
    assert data["fit"].params_["b"] == pytest.approx(B, abs=0.05)
    assert (data["law"]["lo"] <= data["law"]["lr"]).all() and (data["law"]["lr"] <= data["law"]["hi"]).all()
    text = render_markdown(report)
    assert "## 9. Learning rate per shape" in text and "| d128-L2 | 7 | 6.40e13 |" in text
    assert "lr_opt(C) = a·C^b with a = " in text
