"""When do intra-op threads pay for a small proxy on a CPU? One vs two torch threads, idle
and beside one competing busy-loop process, at a few model sizes.

Every case trains ``scaling.training.loop.train`` for ``--steps`` optimizer steps in a fresh
child process (the demo's recipe: 4 layers, context 64, byte tokens, fp32, each shape with the
demo's batch) and reports the seconds per step of the training loop (``RunResult.tokens_per_s``,
evaluation excluded). The load is one ``while True: pass`` process started before the case and
killed after it. Cases alternate (1 thread, 2 threads) inside every repeat so that a burst of
load elsewhere on a shared machine slows both alike; the median over repeats is reported, with
the load average seen at the start of each case. The result decides
``scaling.training.hardware.CPU_THREADS_MIN_PARAMS``.

Prints one JSON line per (size, threads, load) and a last line with the ratios.

Usage::

    python benchmarks/cpu_threads.py [--steps 30] [--repeats 2] [--sizes d14,d40,d64,d96]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES = {  # name: (d_model, n_head, batch_tokens): the demo's shapes and one step above
    "d14": (14, 2, 128),
    "d40": (40, 2, 512),
    "d64": (64, 4, 1024),
    "d96": (96, 6, 1792),
    "d144": (144, 6, 2048),  # ~1M: the threshold's size, not measured by default (minutes a case)
    "d192": (192, 6, 2048),  # ~1.8M: above the threshold
}
DEFAULT_SIZES = "d14,d40,d64,d96"


def one_case(size: str, threads: int, steps: int) -> dict:
    """Train one size with ``threads`` torch threads in this process; seconds per step."""
    import torch

    torch.set_num_threads(threads)
    from scaling.config.run import RunSpec
    from scaling.training.loop import train

    d_model, n_head, batch = SIZES[size]
    spec = RunSpec(
        name=f"threads-{size}",
        model={"n_layer": 4, "d_model": d_model, "n_head": n_head, "context": 64},
        data={"eval_tokens": 4096},
        train={"tokens": steps * batch, "batch_tokens": batch, "lr": 0.01, "precision": "fp32",
               "eval_every": 10**9, "device": "cpu"},
    )
    result = train(spec)
    return {"params": result.params, "s_per_step": batch / result.tokens_per_s,
            "threads_used": torch.get_num_threads()}


def measure(size: str, threads: int, steps: int, load: bool) -> dict:
    """One case in a child process, with or without a competing busy loop."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load else None
    try:
        time.sleep(0.5 if load else 0.0)
        load_average = os.getloadavg()[0]
        command = [sys.executable, __file__, "--one", size, "--threads", str(threads),
                   "--steps", str(steps)]
        started = time.perf_counter()
        child = subprocess.run(command, capture_output=True, text=True, check=False,
                               env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if child.returncode:
            raise SystemExit(f"case {size} threads={threads} failed:\n{child.stderr}")
        out = child.stdout
        wall = time.perf_counter() - started
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall, "loadavg": load_average}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"of {','.join(SIZES)}")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_case(args.one, args.threads, args.steps)))
        return
    print(json.dumps({"machine": {"cores": len(os.sched_getaffinity(0)), "steps": args.steps,
                                  "repeats": args.repeats}}), flush=True)
    ratios = {}
    for size in args.sizes.split(","):
        for load in (False, True):
            runs: dict[int, list[dict]] = {1: [], 2: []}
            for _ in range(args.repeats):
                for threads in (1, 2):
                    runs[threads].append(measure(size, threads, args.steps, load))
            for threads, cases in runs.items():
                row = {"size": size, "params": cases[0]["params"], "threads": threads,
                       "load": "busy loop" if load else "idle",
                       "s_per_step": round(statistics.median(c["s_per_step"] for c in cases), 5),
                       "all_s_per_step": [round(c["s_per_step"], 5) for c in cases],
                       "loadavg": [round(c["loadavg"], 2) for c in cases]}
                print(json.dumps(row), flush=True)
            two_over_one = (statistics.median(c["s_per_step"] for c in runs[2])
                            / statistics.median(c["s_per_step"] for c in runs[1]))
            ratios[f"{size} {'busy' if load else 'idle'}"] = round(two_over_one, 3)
    print(json.dumps({"time_2_threads_over_1": ratios}), flush=True)


if __name__ == "__main__":
    main()
