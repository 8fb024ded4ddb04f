"""The machine a run trains on: device, precision, threads, DDP processes, peak FLOP/s.

Kept apart from :mod:`scaling.training.loop` so that the training loop reads as the recipe; nothing
here knows about models or data.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from scaling.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["Distributed", "pick_device", "device_name", "set_threads", "limit_threads", "threads_for",
           "CPU_THREADS_MIN_PARAMS", "resolve_precision", "cpu_capability", "cpu_has_native_bf16",
           "device_peak_flops", "GPU_PEAK_FLOPS"]

# Dense peak FLOP/s of one accelerator by precision (vendor datasheets, no sparsity).
GPU_PEAK_FLOPS = {
    "H100": {"bf16": 989e12, "fp32": 494.7e12},  # fp32 matmuls run as TF32 (train() enables it)
    "H200": {"bf16": 989e12, "fp32": 494.7e12},
    "A100": {"bf16": 312e12, "fp32": 156e12},
}


@dataclass
class Distributed:
    """This process's place among the ``torchrun`` processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    owns_group: bool = False

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(
            rank=int(os.environ["RANK"]),
            world=world,
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            local_world=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
        )

    def start(self, device: torch.device) -> None:
        import torch.distributed as dist

        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            self.owns_group = True

    def stop(self) -> None:
        import torch.distributed as dist

        if self.owns_group and dist.is_initialized():
            # Leave together: a rank that tears down while another is still finishing its last
            # collective was seen to hang the other in destroy_process_group (gloo).
            dist.barrier()
            dist.destroy_process_group()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist

            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return value

    def total(self, value: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(value)
        return value

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def visible_gpus() -> int:
    """How many CUDA GPUs this process sees (0 on a machine without, or a CPU-only torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pick_device(name: str, dist: Distributed) -> torch.device:
    """The device this process trains on, made current. A bare 'cuda' gets an index: torch
    refuses to make an index-less CUDA device current, and RNG state is saved per GPU."""
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = torch.device(device_name(name, dist.local_rank, available))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def device_name(name: str, local_rank: int, gpus: int) -> str:
    """``train.device`` resolved to 'cpu' or 'cuda:N' for a process of ``local_rank`` on a
    machine with ``gpus`` visible GPUs: 'auto' takes a GPU when there is one, and 'auto' or
    'cuda' take the local rank's GPU (the first visible one outside ``torchrun``)."""
    if name == "auto":
        name = "cuda" if gpus else "cpu"
    if name == "cpu":
        return name
    kind, sep, index = name.partition(":")
    if kind != "cuda" or (sep and not index.isdigit()):
        raise ConfigError(f"train.device = {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not gpus:
        raise ConfigError(f"train.device = {name!r} but no CUDA GPU is visible; use 'cpu'")
    number = int(index) if sep else local_rank
    if number >= gpus:
        raise ConfigError(
            f"train.device = {name!r} but only {gpus} GPU(s) are visible (cuda:0 to "
            f"cuda:{gpus - 1}); use one of those or 'auto'"
        )
    return f"cuda:{number}"


def set_threads(dist: Distributed) -> None:
    """Use all cores (shared evenly among local DDP ranks) unless the caller chose fewer:
    ``OMP_NUM_THREADS`` or a lower ``torch.set_num_threads`` is respected."""
    import torch

    if "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, (cores or 1) // dist.local_world)
    # torch already defaults to every physical core; only more than this process's share
    # (several local DDP ranks) is lowered, so a caller's smaller setting stands.
    if torch.get_num_threads() > share:
        torch.set_num_threads(share)


# Below this many non-embedding parameters a run trains with one intra-op thread: the threads
# of a tiny model's small matmuls spin-wait for each other, and beside another CPU-bound
# process they collapse. Measured with benchmarks/cpu_threads.py on the project's shared
# 2-core AMD EPYC (AVX2), demo recipe (4 layers, context 64, fp32, each shape with its demo
# batch), median seconds per optimizer step, 1 thread -> 2 threads, in a quiet hour (load
# average 1.2-3.2, the benchmark included; reports/cpu-threads/README.md has a busy hour too):
#
#   shape   N       no extra load            + one busy loop
#   d14     10K     0.0135 -> 0.110 (8.2x)   0.0204 -> 0.110 (5.4x)
#   d40     79K     0.0254 -> 0.545 (21x)    0.0243 -> 0.084 (3.5x)
#   d64     200K    0.0609 -> 0.109 (1.8x)   0.120 -> 0.307 (2.6x)
#   d96     448K    0.195 -> 0.331 (1.7x)    0.347 -> 0.602 (1.7x)
#
# Two threads lost at every size by the median; their best repeat beat one thread by at most
# 1.2x (d64, 0.049 vs 0.057), and in the busy hour (load 2-10) they were 3.4-28x slower. The
# crossover lies above 448K; the threshold is the next decade, 1M (the benchmark's d144),
# which keeps every run of the demo, its 448K target included, on one thread. Above it, runs
# keep the worker's threads.
CPU_THREADS_MIN_PARAMS = 1_000_000

_STARTUP_THREADS: list[int] = []  # torch's own thread count, before any run lowered it


def threads_for(threads: int | None, params: int | None, default: int) -> int:
    """Intra-op threads for a run of ``params`` non-embedding parameters: one below
    :data:`CPU_THREADS_MIN_PARAMS`, else ``threads`` (or ``default``, torch's own count).

    Examples
    --------
    >>> threads_for(None, 10_000, default=2), threads_for(None, 5_000_000, default=2)
    (1, 2)
    >>> threads_for(4, 5_000_000, default=2), threads_for(4, None, default=2)
    (4, 4)
    """
    if params is not None and params < CPU_THREADS_MIN_PARAMS:
        return 1
    return threads or default


def limit_threads(threads: int | None, params: int | None = None) -> int:
    """Set this process's intra-op threads for the next run (a worker's ``--threads``, one
    thread for runs below :data:`CPU_THREADS_MIN_PARAMS`); return the count set. Called before
    every run of a worker, so a large run after a tiny one gets its threads back."""
    import torch

    if not _STARTUP_THREADS:
        _STARTUP_THREADS.append(torch.get_num_threads())
    count = threads_for(threads, params, _STARTUP_THREADS[0])
    torch.set_num_threads(count)
    return count


# Below this many non-embedding parameters, bf16 autocast on a CPU was measured slower than
# fp32: the casts cost more than the smaller matmuls save (context 128, 4 layers, 1 thread:
# 0.74x at 10K parameters and 1 sequence per step, 1.03x at 79K and 4 sequences). Above it,
# with attention in bf16 matmuls (model._explicit_attention), faster: 1.38x at 100K
# (context 256, 8 sequences, 2 threads), 1.54x at 448K (context 128, 14 sequences).
CPU_BF16_MIN_PARAMS = 100_000


def cpu_capability() -> dict[str, object]:
    """What this CPU offers for bf16: torch's vector capability
    (``torch.backends.cpu.get_cpu_capability()``: 'AVX2', 'AVX512', 'AMX'...), the bf16 flags
    of ``/proc/cpuinfo`` (``avx512_bf16``, ``amx_bf16``) and the decision of
    :func:`cpu_has_native_bf16`."""
    import torch

    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        capability = "unknown"
    flags = sorted(_cpuinfo_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"})
    return {"capability": capability, "bf16_flags": flags,
            "native_bf16": cpu_has_native_bf16(capability, flags)}


def cpu_has_native_bf16(capability: str, flags: set[str] | list[str] | tuple[str, ...]) -> bool:
    """Whether a CPU computes bf16 in hardware (AMX or AVX512_BF16), from torch's CPU
    capability and the ``/proc/cpuinfo`` flags. AVX-512 alone is not enough: on a Xeon with
    AVX-512 but neither extension, bf16 autocast ran 0.63x and 0.48x the fp32 reference at
    0.1M and 1M parameters (benchmarks/train_throughput.py), where fp32 ran 1.19x and 1.17x.

    Examples
    --------
    >>> cpu_has_native_bf16("AVX2", set()), cpu_has_native_bf16("AVX512", {"avx512f"})
    (False, False)
    >>> cpu_has_native_bf16("AVX512", {"avx512_bf16"}), cpu_has_native_bf16("AMX", set())
    (True, True)
    """
    return "AMX" in capability.upper() or bool({"avx512_bf16", "amx_bf16"} & set(flags))


@lru_cache(maxsize=1)
def _cpuinfo_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:  # not Linux: torch's capability alone decides
        pass
    return frozenset()


def resolve_precision(precision: str, device: torch.device, params: int | None = None) -> str:
    """'fp32' or 'bf16' for ``precision = 'auto'``.

    bf16 autocast on GPUs that support it; on CPUs with native bf16 (AMX or AVX512_BF16,
    :func:`cpu_has_native_bf16`) for models of at least ``CPU_BF16_MIN_PARAMS``
    non-embedding parameters (``params``; None counts as large), where it measured faster;
    fp32 elsewhere (an AVX2 or plain AVX-512 CPU emulates bf16, slower than fp32).
    """
    import torch

    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    native = bool(cpu_capability()["native_bf16"])
    large = params is None or params >= CPU_BF16_MIN_PARAMS
    return "bf16" if native and large else "fp32"


def device_peak_flops(device: torch.device, precision: str) -> float:
    """Peak FLOP/s of one device, the denominator of MFU.

    MFU = (training tokens/s) × flops_per_token_exact / (peak × processes). GPUs use their
    datasheet dense peak (H100/H200 bf16 989 TFLOP/s, A100 312); a CPU publishes no single
    figure, so its peak is measured: the best of a few 1024³ matmuls in the run's precision.
    """
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in GPU_PEAK_FLOPS.items():
            if key in name:
                return peaks[precision]
    return _measured_peak(device.type, precision)


@lru_cache(maxsize=None)
def _measured_peak(device_type: str, precision: str) -> float:
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = 1024
    a = torch.randn(n, n, device=device_type).to(dtype)
    b = torch.randn(n, n, device=device_type).to(dtype)
    for _ in range(2):  # the first products pay for kernel selection (oneDNN, cuBLAS)
        a @ b
    best = math.inf
    for _ in range(10):
        if device_type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device_type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
