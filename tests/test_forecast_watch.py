"""The forecast of record on a real sqlite MLflow, compare scored against it, and `scaling watch`.

The proxies follow the known law of tests/helpers.py (``TRUTH``) and are logged through
:class:`scaling.sweeps.tracking.RunLogger` as training logs them. The large run is N = 5e7,
D = 1e9; its curves are power laws in tokens ending where each test wants them.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import EXACT_OVER_6ND, synthetic_runs, true_loss

from scaling.cli import main
from scaling.config.run import RunSpec

pytestmark = pytest.mark.slow  # the module's MLflow fixture takes ~10 s; each test ~1 s
EXPERIMENT = "proxies"
N, D = 5e7, 1e9


def power_curve(final: float, tokens: float, *, n: int = 20, alpha: float = 0.5,
                start: float = 6.0) -> pd.DataFrame:
    """An eval curve L(t) = E + B (t/T)^-alpha through ``start`` at T/n and ``final`` at T."""
    seen = np.linspace(tokens / n, tokens, n)
    scale = (start - final) / (n**alpha - 1)
    loss = final - scale + scale * (seen / tokens) ** -alpha
    return pd.DataFrame({"step": np.arange(1, n + 1), "tokens": seen, "loss": loss})


def _log_proxies(uri: str) -> None:
    from scaling.sweeps.tracking import RunLogger, setup_experiment

    setup_experiment(EXPERIMENT, tracking_uri=uri)
    runs = synthetic_runs(isoflop=False, extras=False, target=False)
    for row in runs.itertuples():
        with RunLogger(RunSpec(sweep=EXPERIMENT, name=row.name, role="proxy"), tracking_uri=uri) as run:
            run.finish({"size/params": row.params, "size/tokens": row.tokens, "size/flops": row.flops,
                        "size/flops_exact": row.flops_exact, "final/eval_loss": row.loss})


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """Proxies in MLflow and a forecast registered for N = 5e7, D = 1e9."""
    folder = tmp_path_factory.mktemp("forecast")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    _log_proxies(uri)
    path = folder / "forecast.json"
    # Every proxy fitted (the default, auto as in the demo, may leave out the smallest): the
    # checks below read the law's parameters against TRUTH.
    code = main(["forecast", "--experiment", EXPERIMENT, "--params", str(N), "--tokens", str(D),
                 "--n-bootstrap", "100", "-o", str(path), "--tracking-uri", uri, "--fit-range", "all"])
    assert code == 0
    return uri, path, json.loads(path.read_text())


def test_the_forecast_is_written_and_registered_with_its_fit(registered):
    from scaling.sweeps.tracking import find_runs, latest_forecast, runs_frame

    uri, _, record = registered
    exact = EXACT_OVER_6ND * 6 * N * D
    truth = float(true_loss(exact))
    assert record["format"] == "scaling.forecast/1" and record["law"] == "gpt4"
    assert record["x"] == "flops_exact" and record["target_x"] == pytest.approx(exact, rel=1e-9)
    assert record["predicted"] == pytest.approx(truth, rel=0.03)
    assert record["lo"] < truth < record["hi"] and record["interval"] == 0.9
    assert record["params"] == N and record["tokens"] == D
    assert record["fit_params"]["c"] == pytest.approx(1.8, rel=0.1)  # TRUTH's irreducible loss
    proxies = runs_frame(EXPERIMENT, tracking_uri=uri, role="proxy")
    assert sorted(record["proxy_run_ids"]) == sorted(proxies["run_id"]) and record["n_proxies"] == 10
    assert record["created_utc"].endswith("+00:00")
    (run,) = [r for r in find_runs(EXPERIMENT, tracking_uri=uri) if r["tags"]["scaling.role"] == "forecast"]
    assert run["status"] == "FINISHED"
    latest = latest_forecast(EXPERIMENT, tracking_uri=uri)
    assert latest == {**record, "run_id": run["run_id"]}
    assert len(runs_frame(EXPERIMENT, tracking_uri=uri)) == 10  # not a training run


def test_forecast_of_a_missing_experiment_creates_nothing(registered, capsys):
    from scaling.sweeps.tracking import find_runs

    uri, _, _ = registered
    before = len(find_runs(EXPERIMENT, tracking_uri=uri))
    code = main(["forecast", "--experiment", "nope", "--flops", "1e18", "-o", "f.json",
                 "--tracking-uri", uri])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: no MLflow experiment 'nope' at ") and err.count("\n") == 1
    assert not Path("f.json").exists() and len(find_runs(EXPERIMENT, tracking_uri=uri)) == before
    missing_db = "sqlite:///" + str(Path("absent.db").resolve())
    assert main(["forecast", "--experiment", EXPERIMENT, "--flops", "1e18", "--tracking-uri", missing_db]) == 1
    assert "no tracking database" in capsys.readouterr().err and not Path("absent.db").exists()
    assert main(["forecast", "--experiment", EXPERIMENT, "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err == (
        "error: give the large run's size: --flops C, --params N --tokens D, or --target-spec run.yaml\n"
    )


def test_compare_scores_against_the_registered_forecast_not_a_refit(registered, capsys):
    uri, _, record = registered
    actual = 1.01 * record["predicted"]
    power_curve(actual, D).to_csv("curve.csv", index=False)
    args = ["compare", "--experiment", EXPERIMENT, "--target-csv", "curve.csv", "--params", str(N),
            "--tokens", str(D), "--tracking-uri", uri, "--output", "json", "--n-bootstrap", "100"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    loss = summary["metrics"][0]
    assert (loss["predicted"], loss["lo"], loss["hi"]) == (record["predicted"], record["lo"], record["hi"])
    assert loss["actual"] == pytest.approx(actual) and loss["relative_error"] == pytest.approx(1 / 1.01 - 1)
    assert summary["basis"].startswith("the registered forecast (run ")
    assert record["created_utc"] in summary["basis"]
    assert main([*args, "--refit", "--n-bootstrap", "50", "--fit-range", "all"]) == 0
    refit = json.loads(capsys.readouterr().out)
    assert refit["basis"] == "a refit of 10 proxies"
    # Refitted with 50 resamples: the same point, another interval.
    assert refit["metrics"][0]["predicted"] == pytest.approx(record["predicted"], rel=1e-6)
    assert (refit["metrics"][0]["lo"], refit["metrics"][0]["hi"]) != (record["lo"], record["hi"])


def test_a_target_in_another_tracking_database_is_compared(registered, capsys):
    from scaling.sweeps.tracking import RunLogger, setup_experiment

    uri, path, record = registered
    other = "sqlite:///" + str(Path("elsewhere.db").resolve())
    setup_experiment("big", tracking_uri=other)
    curve = power_curve(record["predicted"], D, n=10)
    with RunLogger(RunSpec(sweep="big", name="big-run", role="target"), tracking_uri=other) as run:
        for point in curve.itertuples():
            run.log(int(point.step), {"eval/loss": point.loss, "train/tokens": point.tokens})
        run.finish({"size/params": N, "size/tokens": D, "size/flops": 6 * N * D,
                    "size/flops_exact": EXACT_OVER_6ND * 6 * N * D, "final/eval_loss": curve.loss.iloc[-1]})
    code = main(["compare", "--experiment", EXPERIMENT, "--target", run.run_id, "--target-uri", other,
                 "--target-experiment", "big", "--forecast", str(path), "--tracking-uri", uri])
    out = capsys.readouterr().out
    assert code == 0
    headline = out.splitlines()[0]
    assert headline.startswith("big-run: predicted loss ") and "error +0.0%, inside" in headline
    assert f"scored against the registered forecast ({path}, {record['created_utc']})" in headline


# ------------------------------------------------------------------------------- watch --


def _watch(forecast: Path, *args: str) -> int:
    return main(["watch", "--forecast", str(forecast), "--target-csv", "curve.csv", *args])


def test_watch_once_on_an_on_track_run_exits_0_with_a_line_per_evaluation(registered, capsys):
    _, path, record = registered
    power_curve(record["predicted"], D).iloc[:12].to_csv("curve.csv", index=False)
    assert _watch(path, "--once") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("watching against the registered forecast (")
    assert len(lines) == 1 + 12 and all(line.endswith(": on track") for line in lines[1:])
    assert lines[-1].startswith("step 12, 600M tokens (60%): eval loss ")
    assert f"projected final {record['predicted']:.4f}" in lines[-1]


def test_watch_alerts_when_the_run_goes_off_track_and_runs_the_command(registered, capsys):
    _, path, record = registered
    off = record["hi"] * 1.06  # lands 6% above the top of the band
    power_curve(off, D).to_csv("curve.csv", index=False)
    code = _watch(path, "--once", "--on-alert", "echo \"$SCALING_ALERT\" > alert.txt")
    out, err = capsys.readouterr()
    assert code == 1
    evaluations = len(out.splitlines()) - 1
    assert out.splitlines()[-1].endswith("OFF TRACK")
    # Blended with the forecast by the observed fraction f, the projection leaves the band when
    # f * off + (1 - f) * predicted > hi.
    fraction = (record["hi"] - record["predicted"]) / (off - record["predicted"])
    assert evaluations == int(np.ceil(fraction * 20 - 1e-9))
    assert err.startswith(f"error: the run left the registered band at evaluation {evaluations} ")
    assert Path("alert.txt").read_text().strip() == err.strip().removeprefix("error: ")
    power_curve(off, D).to_csv("curve.csv", index=False)
    assert _watch(path, "--once", "--no-prior") == 1  # the curve alone says so earlier
    assert len(capsys.readouterr().out.splitlines()) - 1 < evaluations


def test_watch_rereads_a_csv_that_grows_between_polls(registered, capsys):
    _, path, record = registered
    curve = power_curve(record["predicted"], D)
    curve.iloc[:5].to_csv("curve.csv", index=False)

    def grow():
        for end in (10, 20):
            time.sleep(0.6)
            curve.iloc[:end].to_csv("curve.tmp", index=False)
            Path("curve.tmp").replace("curve.csv")

    writer = threading.Thread(target=grow)
    writer.start()
    code = _watch(path, "--interval", "0.2", "--timeout", "20")
    writer.join()
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    steps = [int(line.split(",")[0].removeprefix("step ")) for line in lines[1:-1]]
    assert steps == list(range(1, 21))  # every evaluation once, in order
    assert lines[-1] == "the run reached its 1e+09 tokens on track"


def test_watch_against_the_experiments_registered_forecast_from_mlflow(registered, capsys):
    uri, _, record = registered
    power_curve(record["predicted"], D).iloc[:3].to_csv("curve.csv", index=False)
    assert main(["watch", "--experiment", EXPERIMENT, "--target-csv", "curve.csv", "--once",
                 "--tracking-uri", uri]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("watching against the registered forecast (run ")
    assert main(["watch", "--experiment", EXPERIMENT, "--once", "--tracking-uri", uri]) == 2
    assert capsys.readouterr().err == "error: give exactly one of --target RUN_ID or --target-csv CURVE.csv\n"


def test_watch_reads_a_running_mlflow_run_by_id(registered, capsys):
    from scaling.sweeps.tracking import RunLogger, setup_experiment

    uri, path, record = registered
    setup_experiment("live", tracking_uri=uri)
    curve = power_curve(record["hi"] * 1.06, D)
    with RunLogger(RunSpec(sweep="live", name="live-run", role="target"), tracking_uri=uri) as run:
        run.log(0, {"train/loss": 9.0})  # no evaluation yet: nothing to report
        run.flush()
        assert main(["watch", "--forecast", str(path), "--target", run.run_id, "--once",
                     "--tracking-uri", uri]) == 0
        assert capsys.readouterr().out.splitlines()[1:] == []
        for point in curve.iloc[:12].itertuples():  # eval loss and tokens at every step
            run.log(int(point.step), {"eval/loss": point.loss, "train/tokens": point.tokens})
        run.flush()
        code = main(["watch", "--forecast", str(path), "--target", run.run_id, "--once",
                     "--tracking-uri", uri])
    lines = capsys.readouterr().out.splitlines()[1:]
    off = record["hi"] * 1.06  # as from the CSV (the test above): the alert where the blend leaves the band
    alert_at = int(np.ceil((record["hi"] - record["predicted"]) / (off - record["predicted"]) * 20 - 1e-9))
    assert alert_at <= 12 and code == 1 and len(lines) == alert_at
    assert lines[0].startswith("step 1, 50M tokens (5%): eval loss 6.0000")


def test_watch_stops_at_the_timeout_when_no_evaluation_comes(registered, capsys):
    _, path, record = registered
    power_curve(record["predicted"], D).iloc[:4].to_csv("curve.csv", index=False)
    started = time.monotonic()
    assert _watch(path, "--interval", "0.1", "--timeout", "0.5") == 0
    assert time.monotonic() - started < 5
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 4 + 1 and lines[-1] == "stopped after --timeout 0.5 s, on track so far"


@pytest.mark.parametrize("args", [
    ["forecast", "--experiment", "sweep", "--flops", "1e20"],
    ["watch", "--experiment", "sweep", "--target", "abc", "--once"],
])  # fmt: skip
def test_an_unreachable_server_is_one_line_within_seconds_and_writes_nothing(args, capsys, monkeypatch):
    from services import free_port

    from scaling.sweeps.tracking import READ_SETTINGS

    for key in READ_SETTINGS:  # the commands set MLflow's fail-fast settings; undo it afterwards
        monkeypatch.delenv(key, raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert main([*args, "--tracking-uri", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the MLflow tracking server at {url} (")
    assert err.count("\n") == 1 and time.monotonic() - started < 20
    assert list(Path(".").iterdir()) == []


def test_a_target_spec_gives_the_exact_flop_count(registered, capsys):
    import yaml

    from scaling.config.run import load_run_spec
    from scaling.sweeps.planning import run_size

    uri, _, _ = registered
    Path("target.yaml").write_text(yaml.safe_dump({
        "name": "target", "model": {"n_layer": 4, "d_model": 256, "n_head": 4, "context": 64},
        "data": {"source": "synthetic"}, "train": {"tokens": 2_000_000_000, "batch_tokens": 4096},
    }))  # fmt: skip
    size = run_size(load_run_spec("target.yaml"))
    assert main(["forecast", "--experiment", EXPERIMENT, "--target-spec", "target.yaml",
                 "--n-bootstrap", "50", "-o", "spec.json", "--tracking-uri", uri, "--output", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    from mlflow import MlflowClient  # leave the module's registered forecast the latest one

    MlflowClient(tracking_uri=uri).delete_run(record["run_id"])
    assert record["target_x"] == size["flops_exact"] and record["x_source"] == "exact"
    assert record["params"] == size["params"] and record["tokens"] == 2e9
    assert record["predicted"] == pytest.approx(float(true_loss(size["flops_exact"])), rel=0.03)
