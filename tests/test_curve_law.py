"""The curve law (Tissue et al. 2024): the areas under a schedule by hand, the trainer's own
learning rates, synthetic curves from a known law fitted back and a schedule that was never run
predicted, run-level bootstrap, and the fit of a real sweep's logged curves from the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import synthetic_runs, write_sweep
from scaling.cli import main
from scaling.config.run import RunSpec, TrainConfig
from scaling.laws.fitting import fit
from scaling.laws.forms import get_law
from scaling.sweeps.curves import curve_table, planned_curve
from scaling.training.curves import annealing_areas, curve_points, run_momentum
from scaling.training.loop import lr_schedule, train

TRUTH = {"E": 1.8, "A": 40.0, "alpha": 0.3, "B": 300.0, "beta": 0.35, "C": 2e-4}


def test_annealing_areas_by_hand():
    # warmup 0.5 -> 1 anneals nothing; then drops of 0.5 and 0.5 with momentum 0.5:
    # m = [0, 0, 0.5, 0.5·0.5 + 0.5 = 0.75, 0.375]; S2 = cumulative sums
    s1, s2 = annealing_areas([0.5, 1.0, 0.5, 0.0, 0.0], batch_tokens=4, momentum=0.5)
    assert s1.tolist() == [0.0, 2.0, 6.0, 8.0, 8.0, 8.0]
    assert s2.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.25, 1.625])
    constant = annealing_areas(np.ones(10), batch_tokens=100)
    assert constant[0][-1] == 1000 and not constant[1].any()  # constant lr: S1 = D, S2 = 0


@pytest.mark.parametrize("schedule", ["cosine", "wsd", "constant"])
def test_the_schedule_is_the_learning_rate_the_trainer_logs(schedule):
    spec = RunSpec(model={"n_layer": 1, "d_model": 8, "n_head": 2, "context": 16},
                   data={"eval_tokens": 256},
                   train={"tokens": 64 * 40, "batch_tokens": 64, "schedule": schedule, "lr": 0.01,
                          "log_every": 1, "warmup": 0.1})
    logged = {}
    train(spec, log=lambda step, metrics: logged.update(
        {step: metrics["train/lr"]} if "train/lr" in metrics else {}))
    expected = lr_schedule(spec.train) * 0.01
    assert len(logged) == 40
    assert [logged[step] for step in sorted(logged)] == pytest.approx(expected.tolist(), rel=1e-9)


def synthetic_curves(schedules, sizes=(1e5, 3e5, 1e6), noise=0.002, run_noise=0.0, seed=0):
    """Eval curves (every 5% of the steps) of runs that follow TRUTH, with point noise and an
    optional per-run offset."""
    rng = np.random.default_rng(seed)
    law = get_law("tissue_n")
    frames = []
    for params in sizes:
        for schedule in schedules:
            cfg = TrainConfig(tokens=int(20 * params), batch_tokens=512, schedule=schedule,
                              min_lr_ratio=0.1 if schedule == "cosine" else 0.0)
            multipliers = lr_schedule(cfg)
            steps = np.linspace(0, len(multipliers), 21).astype(int)[1:]
            run = {"run_id": f"{schedule}-{params:g}", "params": params, "batch_tokens": 512.0,
                   "schedule": schedule}
            rows = curve_points(run, steps, np.ones(len(steps)), multipliers, min_fraction=0.1)
            clean = law.predict(TRUTH, rows.params.to_numpy(), rows.s1.to_numpy(), rows.s2.to_numpy())
            offset = np.exp(run_noise * rng.standard_normal())
            rows["loss"] = clean * offset * np.exp(noise * rng.standard_normal(len(rows)))
            rows["truth"] = clean
            frames.append(rows)
    return pd.concat(frames, ignore_index=True)


def test_a_cosine_run_is_predicted_from_constant_and_wsd_curves():
    fitted = fit("tissue_n", synthetic_curves(("constant", "wsd")), n_bootstrap=100)
    assert fitted.is_valid, fitted.reasons_
    assert fitted.params_["beta"] == pytest.approx(TRUTH["beta"], rel=0.15)
    assert fitted.params_["C"] == pytest.approx(TRUTH["C"], rel=0.15)
    # the final loss of a schedule that was never run, at each size and at 10x the largest
    held_out = synthetic_curves(("cosine",), sizes=(1e5, 3e5, 1e6, 1e7), noise=0.0)
    final = held_out.groupby("run_id").tail(1)
    predicted = fitted.predict(final)[0]
    errors = np.abs(predicted / final.truth.to_numpy() - 1)
    assert errors.max() < 0.01
    # and the whole planned curve of a run file: every step, the law's value there
    spec = RunSpec(train={"tokens": 2_000_000, "batch_tokens": 512, "schedule": "cosine"},
                   model={"n_layer": 2, "d_model": 32, "n_head": 2, "context": 64})
    curve = planned_curve(spec)
    assert len(curve) == 2_000_000 // 512 and curve.step.iloc[-1] == len(curve)
    assert curve.s1.iloc[-1] == pytest.approx(512 * lr_schedule(spec.train).sum())


def test_the_bootstrap_resamples_runs_not_the_points_of_a_curve():
    # Each run's row repeated 20 times, as the points of a curve repeat its run: resampling
    # runs gives the intervals of the runs themselves; resampling rows would shrink them ~4.5x.
    runs = synthetic_runs(isoflop=False, extras=False, target=False, noise=0.01)
    repeated = runs.loc[runs.index.repeat(20)].reset_index(drop=True)
    # One fixed loss for all three (the choice of a lean is not what is compared here).
    alone = fit("gpt4", runs, n_bootstrap=300, seed=1, overestimate=1.0)
    grouped = fit("gpt4", repeated, n_bootstrap=300, seed=1, overestimate=1.0)
    pointwise = fit("gpt4", repeated.assign(run_id=[f"p{i:04d}" for i in range(len(repeated))]),
                    n_bootstrap=300, seed=1, overestimate=1.0)
    # measured widths (a, b, c): alone 280 / 0.138 / 2.32, grouped 317 / 0.143 / 2.33 (the same
    # resamples; the 20x larger objective stops the optimiser elsewhere on the flat a axis),
    # rows resampled 6.9 / 0.014 / 0.35
    for name in ("a", "b", "c"):
        width = np.subtract(*alone.intervals_[name][::-1])
        assert np.subtract(*grouped.intervals_[name][::-1]) == pytest.approx(width, rel=0.2)
        assert np.subtract(*pointwise.intervals_[name][::-1]) < 0.2 * width


def test_a_run_whose_logged_schedule_is_not_ours_is_one_line():
    from scaling.errors import TrackingError
    from scaling.sweeps.curves import train_settings

    with pytest.raises(TrackingError, match=r"run r1: param train.tokens = 'many' is not a valid "
                                            r"train setting"):
        train_settings({"train.tokens": "many", "train.batch_tokens": "64"}, "r1")
    with pytest.raises(TrackingError, match=r"run r1 has no param train.batch_tokens"):
        train_settings({"train.tokens": "640"}, "r1")
    assert train_settings({"train.tokens": "640", "train.batch_tokens": "64"}).schedule == "cosine"


def test_a_negative_annealing_area_is_one_line():
    bad = synthetic_curves(("wsd",))
    bad.loc[3, "s2"] = -1.0
    with pytest.raises(Exception, match=r"column 's2' has 1 non-finite or negative value\(s\)"):
        fit("tissue_n", bad, n_bootstrap=0)


@pytest.mark.slow
def test_fit_reads_a_sweeps_logged_curves(capsys):
    sweep = {
        "name": "curves",
        "data": {"eval_tokens": 512},
        "model": {"n_layer": 1, "n_head": 2, "context": 16},
        "train": {"batch_tokens": 64, "eval_every": 4, "schedule": "wsd", "lr": 0.01},
        "ladder": {"tokens_per_param": [2], "shapes": [{"d_model": 8}, {"d_model": 12},
                                                       {"d_model": 16}]},
    }
    assert main(["sweep", "run", str(write_sweep(sweep)), "--threads", "1"]) == 0
    table = curve_table("curves")
    assert table.groupby("run_id").size().min() >= 5 and table.run_id.nunique() == 3
    for run_id, rows in table.groupby("run_id"):  # the areas of each run's own schedule
        cfg = TrainConfig(tokens=int(rows.tokens.max()), batch_tokens=64, schedule="wsd")
        schedule = lr_schedule(cfg)  # with the curve laws' memory: a tenth of the run
        s1, s2 = annealing_areas(schedule, 64, run_momentum(len(schedule)))
        assert rows.s1.tolist() == pytest.approx(s1[rows.step.to_numpy()].tolist())
        assert rows.s2.tolist() == pytest.approx(s2[rows.step.to_numpy()].tolist())
        assert rows.step.min() >= 0.1 * len(lr_schedule(cfg))
    capsys.readouterr()
    assert main(["fit", "--experiment", "curves", "--law", "tissue", "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "tissue: L(s) = E + B·S1^(−beta) − C·S2" in out
    assert f"{len(table)} points of 3 runs" in out
