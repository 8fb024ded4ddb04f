"""Crash safety and scale-out: a SIGKILLed run resumes to the same loss; DDP matches one process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from helpers import sigkill_at_first_checkpoint, subprocess_env

from scaling.config.run import RunSpec
from scaling.training.data import prepare_data
from scaling.training.loop import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # as the subprocesses (OMP_NUM_THREADS=1)

RUN = {
    "name": "resume",
    "model": {"n_layer": 2, "d_model": 32, "n_head": 2, "context": 32},
    "data": {"source": "synthetic", "eval_fraction": 0.2, "eval_tokens": 4096,
             "synthetic": {"tokens": 50_000, "alphabet": 8, "order": 1}},
    "train": {"tokens": 32 * 16 * 120, "batch_tokens": 32 * 16, "lr": 1e-2,
              "precision": "fp32", "checkpoint_every": 5, "eval_every": 60,
              "device": "cpu"},  # the 1e-4 promises are CPU fp32's (tests/test_cuda.py: GPU)
}


@pytest.mark.slow
def test_a_sigkilled_run_resumes_to_the_uninterrupted_loss(tmp_path):
    spec = RunSpec.model_validate(RUN)
    prepare_data(spec.data)  # tokenise once, so the child spends its time training
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(RUN))
    checkpoints = tmp_path / "ck"
    sigkill_at_first_checkpoint(config, checkpoints)

    logged = []
    resumed = train(spec, lambda step, metrics: logged.append((step, dict(metrics))), checkpoint_dir=checkpoints)
    assert 0 < resumed.resumed_from_step < 120  # it really was interrupted mid-run
    start = resumed.resumed_from_step
    assert logged[0] == (start, {"perf/resume_step": float(start)})  # the resume, on record first
    assert min(step for step, _ in logged[1:]) > start  # then only steps after the checkpoint
    assert (checkpoints / "final.pt").exists()

    uninterrupted = train(spec)
    assert resumed.steps == uninterrupted.steps == 120
    assert abs(resumed.final_eval_loss - uninterrupted.final_eval_loss) < 1e-4


DDP_SCRIPT = """
import faulthandler, json, sys
faulthandler.dump_traceback_later(90, exit=True)  # a hang fails with the stack, not silently
from scaling.config.run import RunSpec
from scaling.training.loop import train
losses = {}
spec = RunSpec.model_validate(json.loads(sys.argv[1]))
result = train(spec, lambda step, m: losses.__setitem__(step, m["train/loss"]) if "train/loss" in m else None)
import os
if os.environ["RANK"] == "0":
    with open(sys.argv[2], "w") as handle:
        json.dump({"losses": losses, "final": result.final_eval_loss, "tokens": result.tokens}, handle)
"""


@pytest.mark.slow
def test_two_ddp_processes_match_one_process_at_the_same_global_batch(tmp_path):
    run = json.loads(json.dumps(RUN))
    run["train"].update(tokens=32 * 16 * 20, log_every=1, checkpoint_every=0)
    spec = RunSpec.model_validate(run)
    prepare_data(spec.data)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp.json"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), json.dumps(run), str(out)],
        env=subprocess_env(), capture_output=True, text=True, timeout=150,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    ddp = json.loads(out.read_text())

    single = {}
    result = train(spec, lambda step, m: single.__setitem__(step, m["train/loss"])
                   if "train/loss" in m else None)
    assert ddp["tokens"] == result.tokens == 32 * 16 * 20
    assert sorted(int(step) for step in ddp["losses"]) == list(range(1, 21))
    for step, loss in single.items():
        assert ddp["losses"][str(step)] == pytest.approx(loss, abs=1e-4)
    assert ddp["final"] == pytest.approx(result.final_eval_loss, abs=1e-4)
    assert single[20] < single[1] - 0.2  # the curve compared is a learning curve, not noise
