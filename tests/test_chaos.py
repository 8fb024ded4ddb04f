"""Exactly once under chaos: two nodes on PostgreSQL and an mlflow server, workers SIGKILLed at
random moments, a transient failure injected into every run, one run with its user's error.

A small version of ``benchmarks/chaos.py`` (the same code, fewer kills and shorter runs); it
fails if a run is lost or trained twice, a killed or failed run does not resume from its
checkpoint, the user's error is retried or hidden, or the final ``sweep run`` exits 0.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _chaos_module():
    spec = importlib.util.spec_from_file_location("chaos_benchmark", ROOT / "benchmarks" / "chaos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.postgres
def test_killed_and_failing_workers_on_two_nodes_finish_every_run_exactly_once(postgres_server, mlflow_server, tmp_path):
    chaos = _chaos_module()
    line = chaos.run_chaos(tmp_path / "chaos", postgres_server("chaos"), mlflow_server, runs=8, kills=4,
                           steps=120, checkpoint_every=10, workers_per_node=1, kill_gap=(0.5, 2.0), seed=1)
    assert line["kills"] == 4 and line["kills_on_runs"] == 4
    assert (line["runs"], line["finished"], line["lost"], line["duplicated"]) == (8, 8, 0, 0)
    assert line["injected"] == line["injected_finished"] == 8  # one transient failure per run, all retried
    assert line["resumes_missing"] == [] and line["resumed_from_checkpoint"] >= 8
    assert line["resumes"] >= 8  # each run resumed at least once, after its injected failure
    assert line["user_error_failed_at_once"] and line["user_error_mlflow"] == ["FAILED"]
    assert line["user_error_reason"] == ("ConfigError: train.batch_tokens = 72 is not a multiple of "
                                         "model.context = 16; use 64")
    assert line["sweep_run_exit"] == 1 and line["sweep_run_enqueued"] == 0
    assert line["sweep_run_failures"] == line["sweep_run_retried"] == ["target-d24-L1-7.68e3tok"]
    assert line["ok"]
