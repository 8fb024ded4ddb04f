"""CPU policy: one intra-op thread for tiny runs, one worker per core for sweeps of them, and
bf16 on a CPU only where the hardware computes it natively."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import write_sweep

from scaling.sweeps.planning import load_sweep
from scaling.sweeps.workers import default_workers
from scaling.training.hardware import (
    CPU_BF16_MIN_PARAMS,
    CPU_THREADS_MIN_PARAMS,
    cpu_capability,
    cpu_has_native_bf16,
    limit_threads,
    resolve_precision,
)

CORES = len(__import__("os").sched_getaffinity(0))


def _sweep(d_model: int) -> dict:
    return {
        "name": "cpu-policy",
        "model": {"n_layer": 1, "n_head": 2, "context": 16},
        "train": {"batch_tokens": 64},
        "ladder": {"tokens": [64 * 10], "shapes": [{"d_model": 8}, {"d_model": d_model}]},
    }


def test_runs_below_the_threshold_train_with_one_thread_and_larger_ones_get_theirs_back():
    before = torch.get_num_threads()
    try:
        assert limit_threads(None, params=CPU_THREADS_MIN_PARAMS - 1) == 1
        assert torch.get_num_threads() == 1
        assert limit_threads(3, params=CPU_THREADS_MIN_PARAMS - 1) == 1  # --threads does not win
        assert limit_threads(3, params=CPU_THREADS_MIN_PARAMS) == 3
        assert torch.get_num_threads() == 3
        assert limit_threads(None, params=CPU_THREADS_MIN_PARAMS) == before  # torch's own count
    finally:
        torch.set_num_threads(before)


def test_a_sweep_of_tiny_runs_gets_one_worker_per_core_and_a_sweep_with_a_large_run_one():
    tiny = load_sweep(write_sweep(_sweep(16)))
    assert default_workers(tiny, ("proxy", "target")) == CORES
    # 1 layer of width 512: N = 12 * 512^2 = 3.1M, above the threshold
    large = load_sweep(write_sweep(_sweep(512)))
    assert default_workers(large, ("proxy", "target")) == 1


def test_native_bf16_needs_amx_or_avx512_bf16_whatever_the_vector_width():
    assert not cpu_has_native_bf16("AVX2", set())
    assert not cpu_has_native_bf16("AVX512", {"avx512f", "avx512bw", "avx512vl"})  # emulated
    assert cpu_has_native_bf16("AVX512", {"avx512f", "avx512_bf16"})
    assert cpu_has_native_bf16("AVX512", {"amx_bf16", "amx_tile"})
    assert cpu_has_native_bf16("AMX", set())


def test_auto_precision_on_this_cpu_follows_its_capability():
    found = cpu_capability()
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert found["capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(found["bf16_flags"]) == flags & {"avx512_bf16", "amx_bf16", "amx_tile"}
    expected = "bf16" if found["native_bf16"] else "fp32"
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, CPU_BF16_MIN_PARAMS) == expected
    assert resolve_precision("auto", cpu, CPU_BF16_MIN_PARAMS - 1) == "fp32"
    if found["capability"] in ("AVX2", "DEFAULT") and not found["bf16_flags"]:
        assert expected == "fp32"  # this project's AVX2 machine
