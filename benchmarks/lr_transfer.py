"""Learning-rate transfer across width: the optimum under 'standard' against 'mup'.

For each width (2 layers, 4 heads, context 64, the embedded corpus with byte tokens, the
same token budget and schedule for every run), trains one model per learning rate of a
log2 grid under both parametrisations ('mup' with the narrowest width as its base shape)
and takes the optimum as the minimum of a parabola of eval loss in log2 lr through the best
grid point and its two neighbours. The point of muP is that the optimum stays put as the
model widens; the figure of merit is the spread (max - min) of log2(optimal lr) across
widths, with 'standard' measured in the same run as the baseline.

Prints one JSON line per width and parametrisation (the loss at each lr, the optimum), then
one summary line with both spreads.

Usage::

    python benchmarks/lr_transfer.py                       # 11 minutes with one thread
    python benchmarks/lr_transfer.py --widths 32,64 --steps 50 --lrs=-8,-7,-6   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from scaling.config.run import RunSpec
from scaling.training.loop import train

N_LAYER, N_HEAD, CONTEXT, SEQUENCES = 2, 4, 64, 8


def run(parametrization: str, width: int, base_width: int, lr: float, steps: int) -> float:
    """Final eval loss of one run (inf when it diverged)."""
    model = {"n_layer": N_LAYER, "d_model": width, "n_head": N_HEAD, "context": CONTEXT}
    if parametrization == "mup":
        model.update(parametrization="mup", base_d_model=base_width, base_n_layer=N_LAYER)
    batch = SEQUENCES * CONTEXT
    spec = RunSpec(
        name=f"d{width}-{parametrization}-lr{lr:.2e}",
        model=model,
        data={"eval_tokens": 16_384},
        train={"tokens": steps * batch, "batch_tokens": batch, "lr": lr, "precision": "fp32",
               "device": "cpu", "eval_every": steps, "warmup": 0.1},
    )  # fmt: skip
    result = train(spec)
    return result.final_eval_loss if result.status == "finished" else math.inf


def optimum(log2_lrs: list[float], losses: list[float]) -> float:
    """log2 of the optimal lr: the vertex of the parabola through the best grid point and its
    neighbours (the grid point itself when it lies at the edge or the parabola is flat)."""
    best = int(np.argmin(losses))
    if best in (0, len(losses) - 1) or not np.isfinite(losses[best - 1 : best + 2]).all():
        return log2_lrs[best]
    curvature, slope, _ = np.polyfit(log2_lrs[best - 1 : best + 2], losses[best - 1 : best + 2], 2)
    return float(-slope / (2 * curvature)) if curvature > 0 else log2_lrs[best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="32,64,128,256", help="comma-separated d_model values")
    parser.add_argument("--lrs", default="-11,-10,-9,-8,-7,-6,-5",
                        help="comma-separated log2 learning rates (the grid)")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]
    log2_lrs = [float(v) for v in args.lrs.split(",")]
    started = time.perf_counter()
    optima: dict[str, list[float]] = {"standard": [], "mup": []}
    for width in widths:
        for parametrization in optima:
            losses = [run(parametrization, width, widths[0], 2.0**v, args.steps) for v in log2_lrs]
            best = optimum(log2_lrs, losses)
            optima[parametrization].append(best)
            print(json.dumps({
                "width": width, "parametrization": parametrization,
                "losses": {f"2^{v:g}": round(loss, 4) for v, loss in zip(log2_lrs, losses)},
                "log2_lr_opt": round(best, 3), "lr_opt": float(f"{2.0**best:.3g}"),
                "best_loss": round(min(losses), 4),
            }), flush=True)  # fmt: skip
    spread = {name: max(values) - min(values) for name, values in optima.items()}
    print(json.dumps({
        "widths": widths, "steps": args.steps, "tokens_per_run": args.steps * SEQUENCES * CONTEXT,
        "spread_log2_lr_mup": round(spread["mup"], 3),
        "spread_log2_lr_standard": round(spread["standard"], 3),
        "standard_over_mup": round(spread["standard"] / spread["mup"], 2) if spread["mup"] else None,
        "threads": torch.get_num_threads(), "wall_s": round(time.perf_counter() - started, 1),
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
