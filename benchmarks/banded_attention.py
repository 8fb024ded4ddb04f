"""Banded attention that computes only the band, against dense SDPA with the band as a mask.

Times forward + backward of one layer's attention (q, k, v of shape (B, H, T, hd) that require
grad, backward from a fixed random upstream gradient) on CPU in fp32 for these kernels:

* ``dense``: ``F.scaled_dot_product_attention(is_causal=True)``, a dense causal layer;
* ``masked``: SDPA with the dense (T, T) band boolean mask, built once outside the timing,
  as the model's banded layers did before ``scaling.training.attention``;
* ``banded``: :func:`scaling.training.attention.banded_causal_attention` (chunked tiles, or
  masked SDPA where the tiles would not compute fewer scores than the full matrix);
* ``chunked-forced``: the same function with the chunked path forced, only at contexts where
  it would fall back, to check that the fallback is the faster choice there.

Defaults: B=8, H=4, hd=16 (d_model 64), window 64, contexts 128 (the fallback), 256, 512,
1024 and 2048. The kernels alternate inside every repeat, so that load elsewhere on a shared
machine slows all alike, and each figure is the median over ``--repeats`` after one untimed
warm-up call; the ratios are those of the medians. One torch thread by default: proxies of
this size train on one intra-op thread (``scaling.training.hardware.CPU_THREADS_MIN_PARAMS``,
reports/cpu-threads), and one thread keeps the figures steadier on a shared 2-core machine;
``--threads`` changes it.

With ``--model`` a last set of lines times one training step (forward, loss, backward) of a
2-layer d64 GPT from ``scaling.training.model`` at each context: ``attention='dense'``,
``'alternating'`` with the banded layer on the masked SDPA (the old path, swapped in for the
measurement), and ``'alternating'`` as wired (the chunked kernel).

Prints one JSON line per (context, kernel), one line of ratios per context, and a first line
describing the machine.

Usage::

    python benchmarks/banded_attention.py [--contexts 128,256,512,1024,2048] [--window 64]
                                          [--batch 8] [--heads 4] [--head-dim 16]
                                          [--repeats 7] [--threads 1] [--model]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import lru_cache

import torch
from torch.nn import functional as F

from scaling.training import attention as attention_module
from scaling.training.attention import banded_causal_attention, banded_scores_per_token


@lru_cache(maxsize=16)
def band_mask(T: int, window: int) -> torch.Tensor:
    """(T, T) booleans: allowed[i, j] = 0 <= i - j < window (built once, as the model's buffer
    was)."""
    position = torch.arange(T)
    distance = position[:, None] - position[None, :]
    return (distance >= 0) & (distance < window)


def chunked_forced(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int) -> torch.Tensor:
    """``banded_causal_attention`` with its choice of path overridden to the chunked tiles."""
    choose = attention_module._use_chunks
    attention_module._use_chunks = lambda T, window: True
    try:
        return banded_causal_attention(q, k, v, window)
    finally:
        attention_module._use_chunks = choose


def kernels(T: int, window: int) -> dict[str, Callable[..., torch.Tensor]]:
    mask = band_mask(T, window)
    cases = {
        "dense": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "masked": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        "banded": lambda q, k, v: banded_causal_attention(q, k, v, window),
    }
    if banded_scores_per_token(T, window) == T:  # the function falls back to masked SDPA
        cases["chunked-forced"] = lambda q, k, v: chunked_forced(q, k, v, window)
    return cases


def time_attention(fn: Callable[..., torch.Tensor], tensors: tuple[torch.Tensor, ...],
                   upstream: torch.Tensor) -> float:
    """Seconds of one forward + backward."""
    for t in tensors:
        t.grad = None
    started = time.perf_counter()
    fn(*tensors).backward(upstream)
    return time.perf_counter() - started


def attention_rows(args: argparse.Namespace) -> None:
    for T in args.contexts:
        generator = torch.Generator().manual_seed(T)
        shape = (args.batch, args.heads, T, args.head_dim)
        tensors = tuple(torch.randn(shape, generator=generator).requires_grad_()
                        for _ in range(3))
        upstream = torch.randn(shape, generator=generator)
        cases = kernels(T, args.window)
        for fn in cases.values():  # warm-up: allocator, caches, the cached band bias
            time_attention(fn, tensors, upstream)
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, fn in cases.items():
                seconds[name].append(time_attention(fn, tensors, upstream))
        median = {name: statistics.median(s) for name, s in seconds.items()}
        # Scores computed per query: all T under the dense mask, the band's tiles for the new
        # kernel; the causal kernel's count depends on how it skips blocks above the diagonal.
        nblocks = -(-T // args.window)
        scores = {"dense": None, "masked": T, "banded": banded_scores_per_token(T, args.window),
                  "chunked-forced": round(nblocks * 2 * args.window**2 / T)}
        for name in cases:
            print(json.dumps({
                "what": "attention fwd+bwd", "context": T, "window": args.window,
                "kernel": name, "batch": args.batch, "heads": args.heads,
                "head_dim": args.head_dim, "dtype": "fp32", "threads": torch.get_num_threads(),
                "seconds": round(median[name], 5),
                "all_seconds": [round(s, 5) for s in seconds[name]],
                "scores_per_token": scores[name],
            }), flush=True)
        ratios = {f"{name}_over_banded": round(median[name] / median["banded"], 3)
                  for name in cases if name != "banded"}
        print(json.dumps({"what": "attention ratios", "context": T, "window": args.window,
                          **ratios}), flush=True)


def masked_banded_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, scale: float | None = None,
    dropout: float = 0.0, training: bool = False,
) -> torch.Tensor:
    """The old banded layer: SDPA given the dense band mask (same signature as the new one)."""
    mask = band_mask(q.shape[2], window)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout if training else 0.0, scale=scale,
        enable_gqa=k.shape[1] != q.shape[1],
    )


def model_rows(args: argparse.Namespace) -> None:
    from scaling.training import model as model_module

    wired = model_module.banded_causal_attention
    for T in args.contexts:
        times: dict[str, list[float]] = {}
        models: dict[str, torch.nn.Module] = {}
        for name, attention in (("dense", "dense"), ("alternating-masked", "alternating"),
                                ("alternating-banded", "alternating")):
            torch.manual_seed(0)
            config = model_module.GPTConfig(
                n_layer=2, d_model=args.heads * args.head_dim, n_head=args.heads, context=T,
                vocab_size=256, attention=attention, window=args.window,
            )
            models[name] = model_module.GPT(config)
            times[name] = []
        generator = torch.Generator().manual_seed(T)
        idx = torch.randint(0, 256, (args.batch, T), generator=generator)
        targets = torch.randint(0, 256, (args.batch, T), generator=generator)

        def step(name: str, models: dict[str, torch.nn.Module] = models, idx: torch.Tensor = idx,
                 targets: torch.Tensor = targets) -> float:
            # The masked case swaps the old kernel into the model module for its own step only.
            model_module.banded_causal_attention = (
                masked_banded_attention if name == "alternating-masked" else wired)
            try:
                model = models[name]
                model.zero_grad(set_to_none=True)
                started = time.perf_counter()
                _, loss = model(idx, targets)
                loss.backward()
                return time.perf_counter() - started
            finally:
                model_module.banded_causal_attention = wired

        for name in times:
            step(name)
        for _ in range(args.repeats):
            for name, seconds in times.items():
                seconds.append(step(name))
        median = {name: statistics.median(s) for name, s in times.items()}
        for name, seconds in times.items():
            print(json.dumps({
                "what": "model step fwd+bwd", "context": T, "window": args.window,
                "model": f"L2 d{args.heads * args.head_dim} h{args.heads}", "case": name,
                "batch": args.batch, "dtype": "fp32", "threads": torch.get_num_threads(),
                "seconds": round(median[name], 5),
                "all_seconds": [round(s, 5) for s in seconds],
            }), flush=True)
        print(json.dumps({
            "what": "model step ratios", "context": T,
            "dense_over_banded": round(median["dense"] / median["alternating-banded"], 3),
            "masked_over_banded": round(
                median["alternating-masked"] / median["alternating-banded"], 3),
        }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", default="128,256,512,1024,2048",
                        type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", action="store_true", help="also time a 2-layer GPT step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(json.dumps({"machine": {
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability(),
        "loadavg": round(os.getloadavg()[0], 2), "repeats": args.repeats,
    }}), flush=True)
    attention_rows(args)
    if args.model:
        model_rows(args)


if __name__ == "__main__":
    main()
