"""Crash safety and scale-out: a SIGKILLed run resumes to the same loss; DDP matches one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from scaling.config import RunSpec
from scaling.data import prepare_data
from scaling.train import train

REPO = Path(__file__).resolve().parents[1]
RUN = {
    "name": "resume",
    "model": {"n_layer": 2, "d_model": 32, "n_head": 2, "context": 32},
    "data": {"source": "synthetic", "eval_fraction": 0.2, "eval_tokens": 4096,
             "synthetic": {"tokens": 50_000, "alphabet": 8, "order": 1}},
    "train": {"tokens": 32 * 16 * 120, "batch_tokens": 32 * 16, "lr": 1e-2,
              "precision": "fp32", "checkpoint_every": 5, "eval_every": 60,
              "device": "cpu"},  # the 1e-4 promises are CPU fp32's (tests/test_cuda.py: GPU)
}


def subprocess_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def sigkill_at_first_checkpoint(config: Path, checkpoints: Path, timeout: float = 120) -> None:
    """Start ``scaling train config`` in a child process and SIGKILL it as soon as it has
    written its first checkpoint: a crash mid-run, with no chance to clean up."""
    child = subprocess.Popen(
        [sys.executable, "-m", "scaling", "train", str(config), "--checkpoint-dir", str(checkpoints)],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not (checkpoints / "last.pt").exists():
        assert child.poll() is None, "the run ended before it wrote a checkpoint"
        assert time.monotonic() < deadline, f"no checkpoint within {timeout:g} s"
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (checkpoints / "final.pt").exists()


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # same as the subprocesses (OMP_NUM_THREADS=1)
    yield
    torch.set_num_threads(old)


@pytest.mark.slow
def test_a_sigkilled_run_resumes_to_the_uninterrupted_loss(tmp_path):
    spec = RunSpec.model_validate(RUN)
    prepare_data(spec.data)  # tokenise once, so the child spends its time training
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(RUN))
    checkpoints = tmp_path / "ck"
    sigkill_at_first_checkpoint(config, checkpoints)

    logged = []
    resumed = train(spec, lambda step, metrics: logged.append(step), checkpoint_dir=checkpoints)
    assert 0 < resumed.resumed_from_step < 120  # it really was interrupted mid-run
    assert min(logged) > resumed.resumed_from_step  # only steps after the checkpoint are logged
    assert (checkpoints / "final.pt").exists()

    uninterrupted = train(spec)
    assert resumed.steps == uninterrupted.steps == 120
    assert abs(resumed.final_eval_loss - uninterrupted.final_eval_loss) < 1e-4


DDP_SCRIPT = """
import faulthandler, json, sys
faulthandler.dump_traceback_later(90, exit=True)  # a hang fails with the stack, not silently
from scaling.config import RunSpec
from scaling.train import train
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
