"""The trainer's GPU paths: bf16 autocast, TF32, fused AdamW, torch.compile, MFU against the
datasheet peak, and a SIGKILLed run that resumes on the GPU.

Skipped where no CUDA GPU is visible (the CI machine has none); on a GPU machine run
``pytest tests/test_cuda.py``. Each test compares the GPU against known truth: the same run
in fp32 on the CPU, the synthetic source's exact entropy, and the datasheet peak.
"""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from helpers import sigkill_at_first_checkpoint

from scaling.config.run import RunSpec
from scaling.training.data import prepare_data
from scaling.training.hardware import GPU_PEAK_FLOPS, resolve_precision
from scaling.training.loop import build_optimizer, load_model, train
from scaling.training.model import GPT, GPTConfig, model_counts

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

RUN = {
    "name": "gpu",
    "model": {"n_layer": 2, "d_model": 64, "n_head": 4, "context": 64},
    "data": {"source": "synthetic", "eval_fraction": 0.2, "eval_tokens": 16_384,
             "synthetic": {"tokens": 200_000, "alphabet": 8, "order": 1}},
    "train": {"tokens": 64 * 32 * 150, "batch_tokens": 64 * 32, "lr": 1e-2, "device": "cuda",
              "eval_every": 10_000, "log_every": 10},
}


def spec(**train_settings) -> RunSpec:
    return RunSpec.model_validate({**RUN, "train": {**RUN["train"], **train_settings}})


def entropy_rate() -> float:
    """The synthetic source's exact entropy, in nats per token: the loss floor."""
    return prepare_data(spec().data).entropy_rate


def datasheet_peak(precision: str) -> float:
    name = torch.cuda.get_device_name()
    for key, peaks in GPU_PEAK_FLOPS.items():
        if key in name:
            return peaks[precision]
    pytest.skip(f"{name} has no datasheet peak in GPU_PEAK_FLOPS")


def test_auto_precision_is_bf16_with_tf32_and_mfu_against_the_datasheet_peak():
    logged = []
    result = train(spec(precision="auto"), lambda step, metrics: logged.append(metrics))
    assert result.status == "finished"
    assert resolve_precision("auto", torch.device("cuda"), result.params) == "bf16"
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32

    per_token = model_counts(GPTConfig.from_model_config(spec().model, 8))["flops_per_token_exact"]
    perf = [m for m in logged if "perf/mfu" in m]
    assert len(perf) == 15  # 150 steps, one throughput line every 10
    for metrics in perf:
        expected = metrics["perf/tokens_per_s"] * per_token / datasheet_peak("bf16")
        assert metrics["perf/mfu"] == pytest.approx(expected, rel=1e-9)
        assert 0 < metrics["perf/mfu"] < 1
    # It learned: within 5% of the exact floor (1.50), far below the uniform guess ln 8 = 2.08.
    assert 0.98 * entropy_rate() < result.final_eval_loss < 1.05 * entropy_rate()


def test_gpu_fp32_bf16_and_compiled_runs_learn_what_the_cpu_learns():
    cpu = train(spec(device="cpu", precision="fp32"))
    gpu = {
        "fp32": train(spec(precision="fp32")),
        "bf16": train(spec(precision="bf16")),
        "bf16+compile": train(spec(precision="bf16", compile=True)),
    }
    for case, result in gpu.items():
        assert result.status == "finished", case
        gap = result.final_eval_loss / cpu.final_eval_loss - 1
        assert abs(gap) < 0.01, f"{case}: {result.final_eval_loss:.4f} vs CPU fp32 {cpu.final_eval_loss:.4f}"
    # Compile changes the kernels, not the arithmetic it is asked for: same loss as eager bf16.
    assert gpu["bf16+compile"].final_eval_loss == pytest.approx(gpu["bf16"].final_eval_loss, rel=5e-3)


def test_adamw_is_fused_on_the_gpu_and_steps_the_weights():
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, d_model=32, n_head=2, context=16, vocab_size=8)).to(device)
    optimizer = build_optimizer(model, spec().train, device)
    assert optimizer.defaults["fused"] is True
    before = model.blocks[0].mlp.fc.weight.detach().clone()
    x = torch.randint(0, 8, (4, 17), device=device)
    _, loss = model(x[:, :-1], x[:, 1:])
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.blocks[0].mlp.fc.weight)


@pytest.mark.slow
def test_a_sigkilled_gpu_run_resumes_to_the_uninterrupted_loss(tmp_path):
    resumable = spec(precision="fp32", checkpoint_every=5)
    prepare_data(resumable.data)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(resumable.model_dump(mode="json")))
    checkpoints = tmp_path / "ck"
    sigkill_at_first_checkpoint(config, checkpoints, timeout=180)

    resumed = train(resumable, checkpoint_dir=checkpoints)
    assert 0 < resumed.resumed_from_step < 150
    uninterrupted = train(resumable)
    # Scatter-adds in the embedding's backward make CUDA sums order-dependent, so the GPU
    # cannot promise the CPU's 1e-4; a resume that lost the optimizer or schedule is off by more.
    assert abs(resumed.final_eval_loss - uninterrupted.final_eval_loss) < 2e-3

    # The target trained on a GPU is read back on a CPU for the report.
    model, meta = load_model(checkpoints / "final.pt", device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    assert meta["eval_loss"] == pytest.approx(resumed.final_eval_loss)
    assert math.isfinite(meta["eval_loss"])
