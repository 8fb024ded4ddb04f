"""Training throughput of the proxy trainer against a plain PyTorch reference loop.

Prints one JSON line per case: tokens/s of ``scaling.train.train`` for three model sizes
(about 0.1M, 1M and 5M non-embedding parameters, byte vocabulary, context 256) in fp32, bf16
and the default precision ('auto'), and of a reference written below the way a newcomer would
write it (a minimal GPT of the same shape, eager fp32, explicit attention, a standard training
step that reads the loss every step), with the speed ratio: the median over repeats in which
the cases alternate, each repeat's ratio against its own reference run. Both train on the same batches of
the embedded corpus for the same number of tokens and report the eval loss on the same fixed
eval tokens, so a speed-up that changed what is learned would show.

Usage::

    python benchmarks/train_throughput.py [--steps 40] [--repeats 3] [--sizes small,medium,large]
                                           [--threads N]
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

from scaling.config import RunSpec
from scaling.data import eval_sequences, prepare_data, sample_batch
from scaling.hardware import resolve_precision
from scaling.model import GPT, GPTConfig
from scaling.train import lr_multiplier, train

SIZES = {  # name: (n_layer, d_model, n_head); N = 12·L·d² + small terms
    "small": (2, 64, 2),  # ~0.1M
    "medium": (4, 144, 4),  # ~1.0M
    "large": (6, 256, 8),  # ~4.7M
}
CONTEXT = 256
SEQUENCES = 8  # per step: 2,048 tokens
LR = 3e-3


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
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
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
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def run_reference(size: str, steps: int, data) -> dict:
    layers, d, heads = SIZES[size]
    model = ReferenceGPT(layers, d, heads)
    torch.manual_seed(0)  # the initial weights train() draws for seed 0
    initial = GPT(GPTConfig(n_layer=layers, d_model=d, n_head=heads, context=CONTEXT))
    model.load_state_dict(initial.state_dict())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": rest, "weight_decay": 0.0}],
                                  lr=LR, betas=(0.9, 0.95))
    warmup = int(round(0.05 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, steps, warmup, 0.1))
    start = time.perf_counter()
    for step in range(steps):
        batch = torch.from_numpy(sample_batch(data.train, CONTEXT, SEQUENCES, 0, step))
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
            x = torch.from_numpy(seq)[None]
            logits = model(x[:, :-1])
            total += F.cross_entropy(logits.reshape(-1, 256), x[0, 1:], reduction="sum").item()
            count += CONTEXT
    return {"tokens_per_s": steps * SEQUENCES * CONTEXT / seconds, "eval_loss": total / count}


def run_ours(size: str, steps: int, precision: str) -> tuple[dict, float]:
    layers, d, heads = SIZES[size]
    spec = RunSpec(
        name=f"bench-{size}",
        model={"n_layer": layers, "d_model": d, "n_head": heads, "context": CONTEXT},
        data={"eval_tokens": 32_768},
        train={"tokens": steps * SEQUENCES * CONTEXT, "batch_tokens": SEQUENCES * CONTEXT,
               "lr": LR, "precision": precision, "eval_every": 10**9},
    )
    result = train(spec)
    return {"tokens_per_s": result.tokens_per_s, "eval_loss": result.final_eval_loss}, result.params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per case")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating repeats of every case; the median ratio is reported")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: " + ",".join(SIZES))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, i.e. every physical core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = prepare_data(RunSpec().data)
    device = torch.device("cpu")
    machine = {"device": "cpu", "threads": torch.get_num_threads(), "cpu": platform.processor()
               or platform.machine(), "torch": torch.__version__}
    print(json.dumps({"machine": machine}), flush=True)
    for size in args.sizes.split(","):
        # Cases alternate, repeat after repeat, so that a burst of load on a shared machine
        # slows every case alike; each repeat's ratio is taken against its own reference.
        trials: dict[str, list[dict]] = {}
        for _ in range(args.repeats):
            reference = run_reference(size, args.steps, data)
            trials.setdefault("reference-fp32", []).append({**reference, "ratio": 1.0})
            for precision in ("fp32", "bf16"):
                figures, params = run_ours(size, args.steps, precision)
                ratio = figures["tokens_per_s"] / reference["tokens_per_s"]
                trials.setdefault(f"scaling-{precision}", []).append({**figures, "ratio": ratio})
        default = resolve_precision("auto", device, params)
        reference_loss = trials["reference-fp32"][0]["eval_loss"]
        for name, runs in trials.items():
            row = {
                "size": size, "params": params, "case": name,
                "default": name == f"scaling-{default}",
                "tokens": args.steps * SEQUENCES * CONTEXT, "repeats": args.repeats,
                "tokens_per_s": round(float(np.median([r["tokens_per_s"] for r in runs])), 1),
                "speedup_vs_reference": round(float(np.median([r["ratio"] for r in runs])), 3),
                "speedup_range": [round(min(r["ratio"] for r in runs), 3),
                                  round(max(r["ratio"] for r in runs), 3)],
                "eval_loss": round(runs[0]["eval_loss"], 4),
                "eval_loss_vs_reference": round(runs[0]["eval_loss"] / reference_loss - 1, 4),
            }
            print(json.dumps(row), flush=True)

if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
