"""Sweep progress in a log file: plain lines when stdout is not a terminal, and an ETA from the
throughput runs measured (tokens/s per run size), not from FLOPs alone."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import subprocess_env, write_sweep

from scaling.cli.options import PlainProgress
from scaling.sweeps.progress import eta_seconds, predicted_seconds

TINY = {
    "name": "tiny-progress",
    "data": {"eval_tokens": 512},
    "model": {"n_layer": 1, "n_head": 2, "context": 16},
    "train": {"batch_tokens": 64, "eval_every": 5},
    "ladder": {"tokens_per_param": [1], "shapes": [{"d_model": 8}, {"d_model": 12}]},
    "target": {"shape": {"d_model": 16}, "tokens_per_param": 1},
}


def _row(name, state, params=1e4, tokens=2e5, **extra):
    return {"name": name, "study": "s/proxy", "run_key": name, "state": state, "params": params,
            "tokens": tokens, "loss": None, "reused": False, "failure": None, **extra}  # fmt: skip


def _snapshot(rows, elapsed=0.0):
    states = [row["state"] for row in rows]
    return {
        "runs": len(rows), "done": states.count("COMPLETE"), "running": states.count("RUNNING"),
        "waiting": states.count("WAITING"), "failed": states.count("FAIL"), "flops_spent": 0.0,
        "flops_total": 1e12, "elapsed_s": elapsed, "eta_s": eta_seconds(rows), "rows": rows,
    }  # fmt: skip


def test_plain_lines_for_each_run_and_a_summary_every_minute():
    lines: list[str] = []
    now = [0.0]
    display = PlainProgress(lines.append, every_s=60, clock=lambda: now[0])
    with display:
        display.update(_snapshot([_row("a", "WAITING"), _row("b", "WAITING")]))
        assert lines == ["sweep: 0/2 done, 0 running, 2 waiting, 0 failed | 0/1e+12 FLOPs | elapsed 0s | ETA -"]
        now[0] = 5
        display.update(_snapshot([_row("a", "RUNNING"), _row("b", "WAITING")], 5))
        now[0] = 30
        finished = _row("a", "COMPLETE", loss=2.34567, wall_s=25.0)
        display.update(_snapshot([finished, _row("b", "RUNNING", running_s=2.0)], 30))
        now[0] = 59  # under a minute since the first summary: no summary line
        display.update(_snapshot([finished, _row("b", "RUNNING", running_s=31.0)], 59))
        now[0] = 61  # a minute: a summary line, the ETA from run a's measured 8,000 tokens/s
        display.update(_snapshot([finished, _row("b", "RUNNING", running_s=20.0)], 61))
        now[0] = 70  # no run left: a summary line
        failed = _row("b", "FAIL", failure="ConfigError: data.source 'x' does not exist")
        display.update(_snapshot([finished, failed], 70))
    assert lines[1:] == [
        "started a (N = 10K, D = 200K)",
        "finished a: loss 2.3457 in 25s",
        "started b (N = 10K, D = 200K)",
        "sweep: 1/2 done, 1 running, 0 waiting, 0 failed | 0/1e+12 FLOPs | elapsed 1m01s | ETA 5s",
        "failed b: ConfigError: data.source 'x' does not exist",
        "sweep: 1/2 done, 0 running, 0 waiting, 1 failed | 0/1e+12 FLOPs | elapsed 1m10s | ETA 0s",
    ]  # once: leaving the block repeats no summary


def test_the_eta_comes_from_measured_tokens_per_second_per_size():
    # The first of eight small, overhead-bound runs took 20 s for 2e5 tokens (1e4 tokens/s).
    # FLOPs alone extrapolated 348,634 s; measured throughput says about 7 more such runs.
    done = _row("r0", "COMPLETE", wall_s=20.0, loss=3.0)
    waiting = [_row(f"r{i}", "WAITING") for i in range(1, 8)]
    assert eta_seconds([done, *waiting]) == pytest.approx(7 * 20.0)
    running = _row("r1", "RUNNING", running_s=15.0)
    assert eta_seconds([done, running, *waiting[1:]]) == pytest.approx(5.0 + 6 * 20.0)
    assert eta_seconds([_row("r0", "RUNNING", running_s=3.0)]) is None  # nothing measured yet


def test_a_running_run_that_logged_its_progress_gets_an_eta_from_its_own_rate():
    # The demo's target trains alone in its stage, 6x the largest proxy: no finished run of
    # its size. Its own logged train/tokens and perf/tokens_per_s give the rest of it.
    import time

    from scaling.config.run import RunSpec
    from scaling.sweeps import tracking
    from scaling.sweeps.workers import _LiveProgress, _with_live

    uri = "sqlite:///mlflow.db"
    tracking.setup_experiment("live-eta", tracking_uri=uri)
    with tracking.RunLogger(RunSpec(sweep="live-eta", name="target", role="target"), tracking_uri=uri) as run:
        run.log(100, {"train/loss": 3.0})  # no progress logged yet: no rate to read
        run.flush()
        row = _row("target", "RUNNING", params=4.5e5, tokens=9e6, run_tokens=9e6, running_s=60.0,
                   mlflow_run_id=run.run_id)
        assert tracking.live_progress([run.run_id, "no-such-run"], tracking_uri=uri) == {}
        assert eta_seconds([row]) is None
        run.log(200, {"train/tokens": 3e6, "perf/tokens_per_s": 2e4})
        run.flush()
        live = _LiveProgress(uri, every_s=0.0)
        live.refresh([run.run_id])
        live._thread.join(30)
        assert live.values == {run.run_id: {"tokens_done": 3e6, "tokens_per_s": 2e4}}
        assert eta_seconds(_with_live([row], live.values)) == pytest.approx(6e6 / 2e4)  # 300 s left
        started, first = time.monotonic(), live._thread
        live.every_s = 3600.0
        live.refresh([run.run_id])  # read a moment ago: not again, and never blocks the caller
        assert live._thread is first and time.monotonic() - started < 1.0
    # a WSD branch's logged tokens count its stable run's share: the rest is of the whole run
    branch = _row("b", "RUNNING", tokens=2e6, run_tokens=8e6, tokens_done=7e6, tokens_per_s=1e4)
    assert eta_seconds([branch]) == pytest.approx(100.0)


def test_throughput_is_interpolated_between_sizes_and_compute_bound_above():
    points = [(1e4, 1e4), (1e6, 1e3)]  # (N, tokens/s)
    assert predicted_seconds(1e3, 1e4, points) == pytest.approx(1.0)  # below: the smallest's rate
    assert predicted_seconds(1e5, 1e4, points) == pytest.approx(1e4 / 10 ** 3.5)  # log-log between
    assert predicted_seconds(1e7, 1e4, points) == pytest.approx(1e4 / 1e2)  # above: FLOP rate of the largest


@pytest.mark.slow
def test_sweep_run_into_a_log_file_prints_plain_lines(tmp_path):
    path = write_sweep(TINY)
    done = subprocess.run(
        [sys.executable, "-m", "scaling", "sweep", "run", str(path), "--roles", "proxy"],
        capture_output=True, text=True, env=subprocess_env(), timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out and "\r" not in out  # no live display, no colours
    started = re.findall(r"^started (\S+) \(N = \S+, D = \S+\)$", out, re.MULTILINE)
    finished = re.findall(r"^finished (\S+): loss (\d+\.\d{4}) in \d+s$", out, re.MULTILINE)
    assert len(started) == 2 and sorted(started) == sorted(name for name, _ in finished)
    assert re.search(r"^sweep: 0/2 done, \d running, \d waiting, 0 failed \|", out, re.MULTILINE)
    assert re.search(r"^sweep: 2/2 done, 0 running, 0 waiting, 0 failed \|.* \| ETA 0s$", out, re.MULTILINE)
