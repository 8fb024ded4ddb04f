"""`scaling train --experiment NAME` logs a standalone run as a sweep worker logs its runs.

A tiny run on the synthetic corpus, logged to a real sqlite MLflow: the same params (the
RunSpec's dotted config with the corpus hash pinned and the resolved vocabulary), tags, step
and summary metrics as :mod:`scaling.sweeps.workers` logs, role ``target`` by default, so
that ``runs_frame`` and ``compare`` find it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scaling.cli import main

pytestmark = pytest.mark.slow  # one tiny training run (~15 s with torch's start) for the module

SETTINGS = [
    "data.source=synthetic", "data.synthetic.tokens=20000", "data.synthetic.alphabet=8",
    "data.eval_tokens=1024", "model.n_layer=1", "model.d_model=16", "model.n_head=2",
    "model.context=16", "train.batch_tokens=128", "train.tokens=3840", "train.eval_every=10",
    "train.log_every=5", "train.seed=3", "name=big",
]


def _train(uri: str, *extra: str) -> int:
    args = ["train", "--experiment", "large", "--tracking-uri", uri, "--output", "json", *extra]
    for setting in SETTINGS:
        args += ["--set", setting]
    return main(args)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    import os

    folder = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    here = os.getcwd()
    os.chdir(folder)
    try:
        assert _train(uri) == 0
    finally:
        os.chdir(here)
    return uri


def test_the_run_is_logged_with_the_keys_a_sweep_worker_logs(logged):
    from scaling.config.run import load_run_spec
    from scaling.sweeps import tracking
    from scaling.sweeps.planning import model_vocab_size, pin_corpus

    (run,) = tracking.find_runs("large", tracking_uri=logged)
    spec = load_run_spec(None, {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in SETTINGS)})
    spec = spec.model_copy(update={"sweep": "large", "role": "target", "data": pin_corpus(spec.data)})
    params = {k: str(v) for k, v in spec.flat_params().items()}
    params["model.vocab_size"] = str(model_vocab_size(spec.model, spec.data))
    assert run["status"] == "FINISHED" and run["name"] == "big"
    assert run["params"] == params
    tags = run["tags"]
    assert tags["scaling.role"] == "target" and tags["scaling.sweep"] == "large"
    assert tags["scaling.run_key"] == spec.run_key and tags["scaling.corpus_hash"] == spec.data.content_hash
    for key in ("scaling.host", "scaling.pid", "scaling.version_scaling", "scaling.device"):
        assert tags[key]
    metrics = run["metrics"]
    for key in ("final/eval_loss", "final/bpb", "size/params", "size/tokens", "size/flops",
                "size/flops_exact", "perf/wall_s", "perf/mean_tokens_per_s", "perf/resumed_from_step", "perf/checkpoint_s",
                "train/loss", "eval/loss"):
        assert key in metrics, key
    assert metrics["size/tokens"] == 3840 and metrics["perf/resumed_from_step"] == 0
    assert metrics["size/flops"] == pytest.approx(6 * metrics["size/params"] * 3840)


def test_runs_frame_and_the_curve_see_a_finished_target(logged):
    from scaling.sweeps.tracking import learning_curve, runs_frame

    (row,) = runs_frame("large", tracking_uri=logged).to_dict(orient="records")
    assert row["role"] == "target" and row["status"] == "FINISHED" and row["tokens"] == 3840
    curve = learning_curve(row["run_id"], tracking_uri=logged)
    assert curve["step"].tolist() == [10, 20, 30]  # 30 steps of 128 tokens, an eval every 10
    assert curve["value"].iloc[-1] == pytest.approx(row["loss"], rel=0.05)


def test_printed_result_is_the_runs_and_a_rank_above_0_logs_nothing(logged, capsys, monkeypatch):
    from scaling.sweeps.tracking import find_runs

    uri = "sqlite:///" + str(Path("rank.db").resolve())
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it on a second process
    assert _train(uri, "--role", "proxy") == 0
    assert capsys.readouterr().out == ""  # rank 0 alone reports
    assert not Path("rank.db").exists()  # and alone talks to MLflow
    monkeypatch.setenv("RANK", "0")
    assert _train(uri, "--role", "proxy") == 0
    out, err = capsys.readouterr()
    (run,) = find_runs("large", tracking_uri=uri)
    assert run["tags"]["scaling.role"] == "proxy"
    assert json.loads(out)["final_eval_loss"] == pytest.approx(run["metrics"]["final/eval_loss"])
    assert f"as run {run['run_id']} (role 'proxy')" in err


def test_an_unreachable_server_fails_in_one_line_before_training(capsys):
    assert _train("http://127.0.0.1:9") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the MLflow tracking server at http://127.0.0.1:9")
    assert err.count("\n") == 1
