"""The large run closes the loop: the report's large-run section, the annealing projection it
replays, and `scaling capability` against a large run tracked elsewhere.

Real MLflow (sqlite). The proxies follow the known law of tests/helpers.py (``TRUTH``) and are
logged through :class:`scaling.sweeps.tracking.RunLogger` as training logs them; the forecast
is registered with ``scaling forecast`` before the large run is logged. The large run's curve
follows the learning-rate annealing law on its cosine schedule, so its final loss is known and
the projections from its partial curve have a right answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import synthetic_runs

from scaling.cli import main
from scaling.config.run import RunSpec

pytestmark = pytest.mark.slow  # the module's MLflow fixture takes ~15 s; each test a few s
EXPERIMENT = "proxies"
# The large run: the annealing law's parameters on its schedule (L = E + A S1^-alpha - C S2).
LAW = {"E": 1.9, "A": 0.25, "alpha": 0.6, "C": 0.35}
TARGET = {
    "name": "big", "sweep": "big", "role": "target",
    "model": {"n_layer": 4, "d_model": 256, "n_head": 4, "context": 64},
    "data": {"source": "synthetic"},
    "train": {"tokens": 400_000_000, "batch_tokens": 4096, "lr": 0.003, "warmup": 0.05,
              "min_lr_ratio": 0.1},
}


def _log_proxies(uri: str, experiment: str = EXPERIMENT) -> None:
    from scaling.sweeps.tracking import RunLogger, setup_experiment

    setup_experiment(experiment, tracking_uri=uri)
    for row in synthetic_runs(isoflop=False, extras=False, target=False).itertuples():
        spec = RunSpec(sweep=experiment, name=row.name, role="proxy")
        with RunLogger(spec, tracking_uri=uri) as run:
            run.finish({"size/params": row.params, "size/tokens": row.tokens, "size/flops": row.flops,
                        "size/flops_exact": row.flops_exact, "final/eval_loss": row.loss})


def annealing_curve(areas, total: float, n: int = 20, final: float | None = None) -> pd.DataFrame:
    """Eval losses of :data:`LAW` on a schedule's areas at n evenly spaced evaluations (its E
    set so that the run ends at ``final``, when given)."""
    tokens = np.linspace(total / n, total, n)
    s1, s2 = areas.at(tokens)
    shape = LAW["A"] * s1 ** -LAW["alpha"] - LAW["C"] * s2
    loss = (LAW["E"] if final is None else final - shape[-1]) + shape
    return pd.DataFrame({"step": np.round(tokens / TARGET["train"]["batch_tokens"]).astype(int),
                         "tokens": tokens, "value": loss})


def _log_target(uri: str, experiment: str, curve: pd.DataFrame, lr: tuple[list, list],
                tasks: dict[str, float] | None = None) -> str:
    """Log the large run as training does: eval/loss with train/tokens at each evaluation,
    train/lr every 1% of the steps, and the final summary."""
    from scaling.sweeps.tracking import RunLogger, setup_experiment

    setup_experiment(experiment, tracking_uri=uri)
    spec = RunSpec.model_validate({**TARGET, "sweep": experiment})
    tokens, rate = lr
    every = max(1, len(tokens) // 100)
    with RunLogger(spec, tracking_uri=uri) as run:
        for i in list(range(every - 1, len(tokens), every)) + [len(tokens) - 1]:
            run.log(i + 1, {"train/lr": rate[i], "train/tokens": tokens[i]})
        for point in curve.itertuples():
            run.log(int(point.step), {"eval/loss": point.value, "train/tokens": point.tokens})
        size = _size()
        run.finish({"size/params": size["params"], "size/tokens": size["tokens"],
                    "size/flops": size["flops"], "size/flops_exact": size["flops_exact"],
                    "final/eval_loss": float(curve["value"].iloc[-1]), **(tasks or {})})
    return run.run_id


def _size() -> dict[str, float]:
    from scaling.sweeps.planning import run_size

    return run_size(RunSpec.model_validate(TARGET))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Proxies, then a forecast registered with the target's run file (so it records the
    planned schedule), then the large run, whose curve follows LAW on that schedule."""
    from scaling.demo import planned_schedule
    from scaling.reporting.forecast import record_schedule

    folder = tmp_path_factory.mktemp("large-run")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    _log_proxies(uri)
    spec_file = folder / "target.yaml"
    spec_file.write_text(yaml.safe_dump(TARGET))
    path = folder / "forecast.json"
    assert main(["forecast", "--experiment", EXPERIMENT, "--target-spec", str(spec_file),
                 "--n-bootstrap", "100", "-o", str(path), "--tracking-uri", uri,
                 "--fit-range", "all"]) == 0
    record = json.loads(path.read_text())
    total = float(TARGET["train"]["tokens"])
    # The run lands 0.5% above the forecast, inside its band.
    curve = annealing_curve(record_schedule(record, total), total, final=1.005 * record["predicted"])
    run_id = _log_target(uri, EXPERIMENT, curve, planned_schedule(RunSpec.model_validate(TARGET)))
    return {"uri": uri, "record": record, "path": path, "curve": curve, "run_id": run_id,
            "total": total, "folder": folder}


# ------------------------------------------------------------------- the annealing law --


def test_the_forecast_records_the_planned_cosine_schedule(tracked):
    record = tracked["record"]
    schedule = record["schedule"]
    steps = TARGET["train"]["tokens"] // TARGET["train"]["batch_tokens"]
    assert len(schedule["tokens"]) == 400 and schedule["tokens"][-1] == steps * 4096
    peak, lr = TARGET["train"]["lr"], np.array(schedule["lr"])
    assert lr.max() == pytest.approx(peak) and lr[-1] == pytest.approx(0.1 * peak)  # min_lr_ratio
    warmup = np.array(schedule["tokens"]) <= 0.05 * steps * 4096
    assert np.all(np.diff(lr[warmup]) > 0) and np.all(np.diff(lr[~warmup][1:]) <= 1e-12)


def test_the_annealing_law_projects_a_cosine_run_from_its_partial_curve(tracked):
    from scaling.laws.partial_curve import (
        fit_annealing_curve,
        project_final,
        schedule_areas,
    )
    from scaling.reporting.forecast import record_schedule

    total, curve = tracked["total"], tracked["curve"]
    areas = record_schedule(tracked["record"], total)
    final = float(curve["value"].iloc[-1])
    t, y = curve["tokens"].to_numpy(), curve["value"].to_numpy()
    for fraction in (0.35, 0.5, 0.75):  # from 35%: six evaluations past 10%
        seen = t <= fraction * total + 1
        assert project_final(t[seen], y[seen], total, schedule=areas) == pytest.approx(final, rel=1e-6)
        # Without the schedule the power law in tokens misses the annealing still to come.
        assert abs(project_final(t[seen], y[seen], total) / final - 1) > 0.003
    s1, s2 = areas.at(t[t >= 0.1 * total])
    e, a, c, alpha = fit_annealing_curve(s1, s2, y[t >= 0.1 * total])
    shift = final - (LAW["A"] * areas.at([total])[0][0] ** -LAW["alpha"] - LAW["C"] * areas.at([total])[1][0])
    assert (e, a, c, alpha) == pytest.approx((shift, LAW["A"], LAW["C"], LAW["alpha"]), rel=1e-5)
    # A constant learning rate: no annealing area, and the law is the power law in S1 ~ tokens.
    flat = schedule_areas([0.0, total], [1.0, 1.0], total)
    assert flat.s2.max() == 0.0 and flat.at([total / 2])[0][0] == pytest.approx(0.5, rel=1e-3)
    power = 2.0 + 0.4 * (t / total) ** -0.5
    half = t <= total / 2 + 1
    assert project_final(t[half], power[half], total, schedule=flat) == pytest.approx(2.4, rel=1e-3)


def test_too_few_evaluations_for_the_annealing_law_give_the_prior(tracked):
    from scaling.laws.partial_curve import project_final
    from scaling.reporting.forecast import record_schedule

    total, curve = tracked["total"], tracked["curve"]
    areas = record_schedule(tracked["record"], total)
    t, y = curve["tokens"].to_numpy()[:6], curve["value"].to_numpy()[:6]  # 10% to 30%: 5 past 10%
    assert np.isnan(project_final(t, y, total, schedule=areas))
    assert project_final(t, y, total, schedule=areas, prior=2.5) == 2.5


# ------------------------------------------------------------------- the report section --


def _section(markdown: str) -> str:
    start = markdown.index(". The large run\n")
    return markdown[start: markdown.index("\n## ", start)]


def _table_rows(section: str) -> list[list[str]]:
    lines = [line for line in section.splitlines()
             if line.startswith("| ") and not line.startswith(("| step", "| ---"))]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_report_replays_watch_at_every_evaluation_against_the_registered_band(tracked, capsys):
    from scaling.reporting.report import build_report, inputs_from_experiment
    from scaling.reporting.watch import watch_points

    uri, record, total, curve = tracked["uri"], tracked["record"], tracked["total"], tracked["curve"]
    assert main(["report", "--experiment", EXPERIMENT, "-o", "out", "--n-bootstrap", "50",
                 "--fit-range", "all", "--tracking-uri", uri]) == 0, capsys.readouterr().err
    markdown = Path("out/report.md").read_text()
    section = _section(markdown)
    # The registered forecast: value, band, time, law, as registered.
    assert (f"Forecast of record: final loss {record['predicted']:.4f}, 90% interval for one run "
            f"{record['lo']:.4f} to {record['hi']:.4f}, registered {record['created_utc']} as run ") in section
    assert "; law gpt4 (L(C) = a·C^b + c) on 10 proxies" in section
    final = float(curve["value"].iloc[-1])
    assert f"The run reached {final:.4f}: the forecast is off by {(record['predicted'] - final) / final * 100:+.1f}%" in section
    assert "the learning-rate annealing law, L = E + A·S1^(-alpha) - C·S2 on the schedule recorded with the forecast" in section
    # The projections, computed here from the curve logged and the registered forecast.
    from scaling.reporting.forecast import record_schedule

    areas = record_schedule(record, total)
    blended = [p for p in watch_points(curve, record, total, schedule=areas) if p.fraction >= 0.1 - 1e-9]
    alone = [p for p in watch_points(curve, record, total, prior=False, schedule=areas) if p.fraction >= 0.1 - 1e-9]
    rows = _table_rows(section)
    assert len(rows) == len(blended) == 19  # 10%, 15%, ..., 100%
    for row, b, a in zip(rows, blended, alone):
        assert row[:4] == [f"{b.step:.0f}", row[1], f"{b.fraction:.0%}", f"{b.loss:.4f}"]
        assert row[4] == f"{b.projected:.4f}"
        assert row[5] == ("-" if np.isnan(a.projected) else f"{a.projected:.4f}")
        assert row[6] == ("yes" if record["lo"] <= b.projected <= record["hi"] else "no")
    # Six evaluations past 10% fit the law: from there the curve alone lands on the final loss.
    assert [r[5] for r in rows[:5]] == ["-"] * 5 and all(r[5] == f"{final:.4f}" for r in rows[5:])
    # Early on the forecast stands; from six evaluations on, f * final + (1 - f) * forecast.
    assert rows[0][4] == f"{record['predicted']:.4f}"
    assert float(rows[8][4]) == pytest.approx(0.5 * final + 0.5 * record["predicted"], abs=6e-5)
    # The same numbers in the report model, and the band of its figures is the registered one.
    report = build_report(inputs_from_experiment(EXPERIMENT, tracking_uri=uri), n_bootstrap=50,
                          fit_range="all", date="2026-01-01")
    table = report.large_run["reforecasts"]
    assert table["projected"].tolist() == pytest.approx([p.projected for p in blended], rel=1e-12)
    for name in ("large_run_reforecasts", "large_run_curve"):
        data = report.figures[name]
        assert (data["lo"], data["hi"], data["predicted"]) == (record["lo"], record["hi"], record["predicted"])
        assert data["total_tokens"] == total and data["actual"] == pytest.approx(final)
    # Figures written like the others: PNGs beside report.md, embedded in index.html.
    page = Path("out/index.html").read_text()
    for name in ("large_run_reforecasts", "large_run_curve"):
        assert Path(f"out/{name}.png").read_bytes().startswith(b"\x89PNG")
        assert f"]({name}.png)" in markdown
    assert page.count('<img src="data:image/png;base64,') == markdown.count("![")
    assert "Forecast of record: final loss" in page and "<th>re-forecast</th>" in page


def test_without_a_registered_forecast_the_section_says_how_to_register_one(tmp_path, capsys):
    from scaling.demo import planned_schedule
    from scaling.laws.partial_curve import schedule_areas

    uri = f"sqlite:///{tmp_path / 'bare.db'}"
    _log_proxies(uri, "bare")
    spec = RunSpec.model_validate(TARGET)
    lr = planned_schedule(spec)
    total = float(TARGET["train"]["tokens"])
    _log_target(uri, "bare", annealing_curve(schedule_areas(*lr, total), total, n=10), lr)
    assert main(["report", "--experiment", "bare", "-o", "out", "--n-bootstrap", "50",
                 "--tracking-uri", uri]) == 0, capsys.readouterr().err
    section = _section(Path("out/report.md").read_text())
    assert section.startswith(". The large run\n\nNo forecast of record was registered for the large run big")
    assert "scaling forecast --experiment bare --target-spec run.yaml (or --params N --tokens D)" in section
    assert not Path("out/large_run_curve.png").exists()


def test_a_csv_target_with_a_forecast_file_gets_the_section_with_the_power_law(tracked, capsys):
    from scaling.reporting.watch import watch_points

    record, total = tracked["record"], tracked["total"]
    curve = tracked["curve"]
    curve.rename(columns={"value": "loss"})[["tokens", "loss"]].to_csv("curve.csv", index=False)
    no_schedule = {k: v for k, v in record.items() if k != "schedule"}
    Path("plain.json").write_text(json.dumps(no_schedule))
    size = _size()
    assert main(["report", "--experiment", EXPERIMENT, "--target-csv", "curve.csv", "--params",
                 str(size["params"]), "--tokens", str(size["tokens"]), "--forecast", "plain.json",
                 "-o", "out", "--n-bootstrap", "50", "--tracking-uri", tracked["uri"]]) == 0, capsys.readouterr().err
    section = _section(Path("out/report.md").read_text())
    assert "registered " + record["created_utc"] + " as plain.json" in section
    assert "the power law E + A·t^(-alpha) in tokens (no learning-rate schedule known)" in section
    points = [p for p in watch_points(curve, no_schedule, total) if p.fraction >= 0.1 - 1e-9]
    assert [row[4] for row in _table_rows(section)] == [f"{p.projected:.4f}" for p in points]


def test_a_target_in_another_tracking_store_is_replayed_with_its_logged_lr(tracked, capsys):
    from scaling.demo import planned_schedule
    from scaling.laws.partial_curve import schedule_areas
    from scaling.reporting.watch import watch_points

    record, total = tracked["record"], tracked["total"]
    other = "sqlite:///" + str(Path("elsewhere.db").resolve())
    lr = planned_schedule(RunSpec.model_validate(TARGET))
    curve = annealing_curve(schedule_areas(*lr, total), total)
    run_id = _log_target(other, "big-run", curve, lr)
    no_schedule = {k: v for k, v in record.items() if k != "schedule"}
    Path("plain.json").write_text(json.dumps(no_schedule))
    assert main(["report", "--experiment", EXPERIMENT, "--target", run_id, "--target-uri", other,
                 "--target-experiment", "big-run", "--forecast", "plain.json", "-o", "out",
                 "--n-bootstrap", "50", "--tracking-uri", tracked["uri"]]) == 0, capsys.readouterr().err
    section = _section(Path("out/report.md").read_text())
    assert "annealing law, L = E + A·S1^(-alpha) - C·S2 on the run's logged train/lr" in section
    logged = pd.DataFrame({"tokens": [lr[0][i] for i in range(len(lr[0]) // 100 - 1, len(lr[0]), len(lr[0]) // 100)],
                           "value": [lr[1][i] for i in range(len(lr[0]) // 100 - 1, len(lr[0]), len(lr[0]) // 100)]})
    areas = schedule_areas(logged["tokens"], logged["value"], total)
    points = [p for p in watch_points(curve, no_schedule, total, schedule=areas) if p.fraction >= 0.1 - 1e-9]
    assert [row[4] for row in _table_rows(section)] == [f"{p.projected:.4f}" for p in points]
    final = float(curve["value"].iloc[-1])
    alone = watch_points(curve, no_schedule, total, prior=False, schedule=areas)
    assert [row[5] for row in _table_rows(section)][-5] == f"{alone[-5].projected:.4f}"
    # The logged lr (every 1% of the steps) is the schedule sampled: the law still holds to 0.1%.
    assert abs(alone[-5].projected / final - 1) < 1e-3  # at 80%


def test_watch_projects_with_the_recorded_schedule_and_says_so(tracked, capsys):
    tracked["curve"].iloc[:10].rename(columns={"value": "loss"})[["tokens", "loss"]].to_csv(
        "curve.csv", index=False)
    assert main(["watch", "--forecast", str(tracked["path"]), "--target-csv", "curve.csv", "--once"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("; projecting with the annealing law on the schedule recorded with the forecast")
    final = float(tracked["curve"]["value"].iloc[-1])
    record = tracked["record"]
    # At 50% the curve (fitted exactly) and the forecast are blended half and half.
    assert f"projected final {0.5 * final + 0.5 * record['predicted']:.4f}" in lines[-1]


# ------------------------------------------------------------------ capability, elsewhere --

# The proxies' task scores follow known laws of compute (GPT-4's form for the pass rate,
# a·C^b + c for the task's NLL, a sigmoid of it for the accuracy); 200 items each.
ALPHA, K = 40.0, 0.08


def _task_scores(flops: float) -> dict[str, float]:
    nll = 300.0 * flops**-0.2 + 0.4
    accuracy = 0.7 / (1 + np.exp(6.0 * (nll - 1.2))) + 0.25
    return {"task/copy/neg_log_pass_rate": ALPHA * flops**-K, "task/copy/nll": nll,
            "task/copy/accuracy": accuracy, "task/copy/items": 200.0}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Proxies scored on a task in one store; the large run, scored too, in a second one."""
    from scaling.sweeps.tracking import RunLogger, setup_experiment

    folder = tmp_path_factory.mktemp("tasks")
    uri, other = f"sqlite:///{folder / 'proxies.db'}", f"sqlite:///{folder / 'big.db'}"
    setup_experiment("scored", tracking_uri=uri)
    for i, flops in enumerate(np.logspace(12, 15, 8)):
        with RunLogger(RunSpec(sweep="scored", name=f"p{i}", role="proxy"), tracking_uri=uri) as run:
            run.finish({"size/params": 1e5 * (i + 1), "size/tokens": 2e6, "size/flops": flops / 1.15,
                        "size/flops_exact": flops, "final/eval_loss": 3.0 - 0.1 * i, **_task_scores(flops)})
    setup_experiment("big-run", tracking_uri=other)
    big = 1e16
    truth = _task_scores(big)
    with RunLogger(RunSpec(sweep="big-run", name="big", role="target"), tracking_uri=other) as run:
        run.finish({"size/params": 5e6, "size/tokens": 1e8, "size/flops": big / 1.15,
                    "size/flops_exact": big, "final/eval_loss": 2.0,
                    **{k: v * 1.05 for k, v in truth.items() if k != "task/copy/items"},
                    "task/copy/items": 200.0})
    scored_id = run.run_id
    with RunLogger(RunSpec(sweep="big-run", name="unscored", role="target"), tracking_uri=other) as run:
        run.finish({"size/params": 5e6, "size/tokens": 1e8, "size/flops": big / 1.15,
                    "size/flops_exact": big, "final/eval_loss": 2.0})
    return {"uri": uri, "other": other, "scored": scored_id, "unscored": run.run_id, "truth": truth}


def test_capability_sets_the_forecast_against_a_large_run_in_another_store(scored, capsys):
    args = ["capability", "--experiment", "scored", "--tracking-uri", scored["uri"],
            "--target-uri", scored["other"], "--target-experiment", "big-run", "--bootstrap", "50"]
    assert main([*args, "--target", scored["scored"], "--output", "json"]) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert out["budget"] == 1e16 and out["target"] == "big" and out["no_task_scores"] is None
    compared = {row["metric"]: row for row in out["compared"]}
    truth = scored["truth"]
    assert compared["task_copy_neg_log_pass_rate"]["actual"] == pytest.approx(1.05 * truth["task/copy/neg_log_pass_rate"])
    assert compared["task_copy_accuracy"]["actual"] == pytest.approx(1.05 * truth["task/copy/accuracy"])
    # The proxies' laws are exact: the forecast is the truth, 5% below what the run logged.
    assert compared["task_copy_neg_log_pass_rate"]["predicted"] == pytest.approx(
        truth["task/copy/neg_log_pass_rate"], rel=1e-3)
    assert compared["task_copy_neg_log_pass_rate"]["relative_error"] == pytest.approx(1 / 1.05 - 1, rel=1e-2)
    assert main([*args, "--target", scored["unscored"]]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == ("  the large run unscored has no task scores (no task/<name>/accuracy, "
                    "neg_log_pass_rate logged); score it on the tasks (the sweep's evals: section) to compare")


def test_capability_with_a_csv_curve_says_it_carries_no_task_scores(scored, capsys):
    Path("curve.csv").write_text("tokens,loss\n5e7,2.5\n1e8,2.0\n")
    base = ["capability", "--experiment", "scored", "--tracking-uri", scored["uri"], "--bootstrap", "50"]
    assert main([*base, "--target-csv", "curve.csv", "--flops", "1e16"]) == 0
    out = capsys.readouterr().out
    assert "task_copy_neg_log_pass_rate at flops_exact = 1e+16: " in out
    assert out.splitlines()[-1] == ("  the large run curve.csv has no task scores: a CSV curve carries "
                                    "only its loss; to compare, log task/<name>/<metric> with the run "
                                    "in MLflow and pass --target RUN_ID")
    assert main([*base, "--target-csv", "curve.csv"]) == 2
    assert capsys.readouterr().err == ("error: --target-csv CURVE.csv needs the large run's compute: "
                                       "pass --flops C (its flops_exact), and no --target\n")
    assert main([*base, "--target", "nope", "--target-uri", scored["other"], "--target-experiment",
                 "big-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: experiment 'big-run' has no run 'nope'; ") and err.count("\n") == 1
    assert main([*base, "--flops", "1e16", "--target-uri", scored["other"]]) == 2
    assert capsys.readouterr().err == "error: --target-uri/--target-experiment need --target RUN_ID\n"

