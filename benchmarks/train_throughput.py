"""Training throughput of the proxy trainer against a plain PyTorch reference loop.

Prints one JSON line per case: tokens/s of ``scaling.training.loop.train`` for three model sizes
(about 0.1M, 1M and 5M non-embedding parameters, byte vocabulary, context 256) in fp32, bf16
and the default precision ('auto'), and of a reference written below the way a newcomer would
write it (a minimal GPT of the same shape, eager fp32, explicit attention, a standard training
step that reads the loss every step), with the speed ratio: the median over repeats in which
the cases alternate, each repeat's ratio against its own reference run. Both train on the same batches of
the embedded corpus for the same number of tokens and report the eval loss on the same fixed
eval tokens, so a speed-up that changed what is learned would show.

On a GPU (``--device cuda``, the default when one is visible) the reference runs there too,
in plain fp32 as PyTorch defaults to (no TF32), a ``bf16+compile`` case is added, a GPT-2
small shape (12 layers x 768, 85M parameters) joins the sizes, and the first ``--warmup``
steps of every case (compilation, allocator and kernel autotuning) are left out of its
tokens/s. The first line names the CPU's capability as torch reports it
(``torch.backends.cpu.get_cpu_capability()``) and its bf16 flags, which decide what 'auto'
picks on a CPU, and every figure repeats the capability. Every line also gives the achieved
FLOP/s (tokens/s x the model's exact FLOPs per token: every matmul, the output head and
attention) and MFU, that over the device's dense
bf16 peak (H100/H200 989 TFLOP/s, A100 312; on a CPU the best of a few 1024^3 matmuls in bf16
where it is native, in fp32 elsewhere).

Usage::

    python benchmarks/train_throughput.py [--steps 40] [--repeats 3] [--sizes small,medium,large]
                                           [--threads N] [--device auto|cpu|cuda]
                                           [--sequences 8] [--warmup 0]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from scaling.config.run import RunSpec
from scaling.training.data import eval_sequences, prepare_data, sample_batch
from scaling.training.hardware import cpu_capability, device_peak_flops, resolve_precision
from scaling.training.loop import lr_multiplier, train
from scaling.training.model import GPT, GPTConfig, model_counts

SIZES = {  # name: (n_layer, d_model, n_head, lr); N = 12·L·d² + small terms
    "small": (2, 64, 2, 3e-3),  # ~0.1M
    "medium": (4, 144, 4, 3e-3),  # ~1.0M
    "large": (6, 256, 8, 3e-3),  # ~4.7M
    "gpt2": (12, 768, 12, 6e-4),  # ~85M, GPT-2 small's shape (GPU only by default)
}
CONTEXT = 256


# ----------------------------------------------------------------------------- the reference


class ReferenceAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(B, T, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=1)
        attention = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(B, T, d))


class ReferenceMLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class ReferenceBlock(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d), ReferenceAttention(d, heads)
        self.ln_2, self.mlp = nn.LayerNorm(d), ReferenceMLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ReferenceGPT(nn.Module):
    """The same shape as scaling's GPT, with module names that match, so that both can start
    from the very same initial weights: any difference in the final loss is the trainer's."""

    def __init__(self, layers: int, d: int, heads: int, vocab: int = 256) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(CONTEXT, d)
        self.blocks = nn.ModuleList([ReferenceBlock(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def run_reference(size: str, steps: int, data, device: torch.device, sequences: int,
                  warmup: int) -> dict:
    layers, d, heads, lr = SIZES[size]
    model = ReferenceGPT(layers, d, heads)
    torch.manual_seed(0)  # the initial weights train() draws for seed 0
    initial = GPT(GPTConfig(n_layer=layers, d_model=d, n_head=heads, context=CONTEXT))
    model.load_state_dict(initial.state_dict())
    model.to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": rest, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, steps, int(round(0.05 * steps)), 0.1))
    # PyTorch's default: plain fp32 matmuls. train() switches TF32 on for its own runs.
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    start = time.perf_counter()
    for step in range(steps):
        if step == warmup:
            start = time.perf_counter()  # the loss.item() below has synchronised the device
        batch = torch.from_numpy(sample_batch(data.train, CONTEXT, sequences, 0, step)).to(device)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        loss.item()  # what a training loop that prints its loss does every step
    seconds = time.perf_counter() - start
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for seq in eval_sequences(data.eval, CONTEXT, 32_768):
            x = torch.from_numpy(seq)[None].to(device)
            logits = model(x[:, :-1])
            total += F.cross_entropy(logits.reshape(-1, 256), x[0, 1:], reduction="sum").item()
            count += CONTEXT
    torch.backends.cuda.matmul.allow_tf32 = tf32
    timed = steps - warmup
    return {"tokens_per_s": timed * sequences * CONTEXT / seconds, "eval_loss": total / count}


def run_ours(size: str, steps: int, case: str, device: torch.device, sequences: int,
             warmup: int) -> tuple[dict, int]:
    layers, d, heads, lr = SIZES[size]
    precision, _, compiled = case.partition("+")
    spec = RunSpec(
        name=f"bench-{size}",
        model={"n_layer": layers, "d_model": d, "n_head": heads, "context": CONTEXT},
        data={"eval_tokens": 32_768},
        train={"tokens": steps * sequences * CONTEXT, "batch_tokens": sequences * CONTEXT,
               "lr": lr, "precision": precision, "eval_every": 10**9, "device": str(device),
               "compile": bool(compiled), "log_every": warmup},  # 0: the trainer's default
    )
    rates: list[float] = []
    result = train(spec, lambda step, metrics: rates.extend(
        [metrics["perf/tokens_per_s"]] if "perf/tokens_per_s" in metrics else []))
    if warmup:
        # Every throughput line covers log_every = warmup steps; the first holds the warm-up.
        # Equal token counts per interval, so the rate over the rest is their harmonic mean.
        steady = rates[1:]
        tokens_per_s = len(steady) / sum(1 / rate for rate in steady)
    else:
        tokens_per_s = result.tokens_per_s
    return {"tokens_per_s": tokens_per_s, "eval_loss": result.final_eval_loss}, result.params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per case")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating repeats of every case; the median ratio is reported")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated: " + ",".join(SIZES)
                        + " [default: small,medium,large on a CPU, small,large,gpt2 on a GPU]")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, i.e. every physical core)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--sequences", type=int, default=None,
                        help="sequences of 256 tokens per step [default: 8 on a CPU, 64 on a GPU]")
    parser.add_argument("--warmup", type=int, default=None,
                        help="first steps left out of tokens/s [default: 0 on a CPU, 10 on a GPU]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    gpu = device.type == "cuda"
    sizes = (args.sizes or ("small,large,gpt2" if gpu else "small,medium,large")).split(",")
    sequences = args.sequences or (64 if gpu else 8)
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 0)
    if warmup and (warmup >= args.steps or args.steps % warmup):
        parser.error(f"--steps {args.steps} must be a multiple of --warmup {warmup}, and larger")
    cases = ("fp32", "bf16", "bf16+compile") if gpu else ("fp32", "bf16")
    data = prepare_data(RunSpec().data)
    # What 'auto' decides from: bf16 on a CPU only with native bf16 (AMX or AVX512_BF16).
    capability = cpu_capability()
    # MFU over the fastest precision the device has: a CPU without native bf16 emulates it
    # (its bf16 matmuls ran slower than fp32), so its peak is fp32's.
    peak_precision = "bf16" if gpu or capability["native_bf16"] else "fp32"
    peak = device_peak_flops(device, peak_precision)
    machine = {"device": torch.cuda.get_device_name(device) if gpu else "cpu",
               "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
               "torch": torch.__version__, "sequences": sequences, "warmup_steps": warmup,
               "peak_tflops": round(peak / 1e12, 3), "peak_precision": peak_precision,
               "cpu_capability": capability["capability"],
               "cpu_bf16_flags": capability["bf16_flags"], "cpu_native_bf16": capability["native_bf16"]}
    print(json.dumps({"machine": machine}), flush=True)
    for size in sizes:
        layers, d, heads, _ = SIZES[size]
        per_token = model_counts(GPTConfig(n_layer=layers, d_model=d, n_head=heads,
                                           context=CONTEXT))["flops_per_token_exact"]
        # Cases alternate, repeat after repeat, so that a burst of load on a shared machine
        # slows every case alike; each repeat's ratio is taken against its own reference.
        trials: dict[str, list[dict]] = {}
        for _ in range(args.repeats):
            reference = run_reference(size, args.steps, data, device, sequences, warmup)
            trials.setdefault("reference-fp32", []).append({**reference, "ratio": 1.0})
            for case in cases:
                figures, params = run_ours(size, args.steps, case, device, sequences, warmup)
                ratio = figures["tokens_per_s"] / reference["tokens_per_s"]
                trials.setdefault(f"scaling-{case}", []).append({**figures, "ratio": ratio})
        default = resolve_precision("auto", device, params)
        reference_loss = trials["reference-fp32"][0]["eval_loss"]
        for name, runs in trials.items():
            tokens_per_s = float(np.median([r["tokens_per_s"] for r in runs]))
            row = {
                "size": size, "params": params, "case": name,
                "default": name == f"scaling-{default}", "cpu_capability": capability["capability"],
                "tokens": args.steps * sequences * CONTEXT, "repeats": args.repeats,
                "tokens_per_s": round(tokens_per_s, 1),
                "speedup_vs_reference": round(float(np.median([r["ratio"] for r in runs])), 3),
                "speedup_range": [round(min(r["ratio"] for r in runs), 3),
                                  round(max(r["ratio"] for r in runs), 3)],
                "achieved_tflops": round(tokens_per_s * per_token / 1e12, 3),
                "mfu": round(tokens_per_s * per_token / peak, 4),
                "eval_loss": round(runs[0]["eval_loss"], 4),
                "eval_loss_vs_reference": round(runs[0]["eval_loss"] / reference_loss - 1, 4),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
