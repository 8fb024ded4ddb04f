"""What Optuna + MLflow + worker processes cost a sweep: (wall time - sum of training time) / wall.

Runs a small ladder in a temporary directory (fresh MLflow sqlite database, Optuna journal,
one worker process, one torch thread by default), each run sized by a short calibration to last about
``--run-seconds``. Training time is each run's own ``RunResult.wall_s`` (the ``perf/wall_s``
metric). Reported: the overhead share of the whole sweep, the one-time setup (launcher start
to the first run's start: database creation, study, enqueue, worker start-up), and the
overhead per run after it.

    python benchmarks/sweep_overhead.py --runs 3 --run-seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def calibrate(model: dict, train: dict, data: dict, threads: int) -> float:
    """Training tokens per second of the benchmark shape, from a short run (not counted)."""
    import torch

    from scaling.config.run import RunSpec
    from scaling.training.loop import train as train_run

    torch.set_num_threads(threads)
    probe = RunSpec(model=model, data=data, train={**train, "tokens": train["batch_tokens"] * 30})
    return train_run(probe).tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--run-seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    args = parser.parse_args()

    from scaling.config.sweep import SweepConfig
    from scaling.sweeps import tracking
    from scaling.sweeps.workers import run_sweep

    model = {"n_layer": 2, "d_model": 48, "n_head": 4, "context": 64}
    train = {"batch_tokens": 1024, "lr": 3e-3, "checkpoint_every": 100, "device": "cpu"}
    data = {"eval_tokens": 8192}
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as folder:
        os.chdir(folder)
        os.environ.setdefault("SCALING_CACHE_DIR", str(Path(folder) / "cache"))
        tokens_per_s = calibrate(model, train, data, args.threads)
        tokens = int(tokens_per_s * args.run_seconds)
        config = SweepConfig.model_validate(
            {
                "name": "overhead",
                "model": model,
                "train": train,
                "data": data,
                # one shape at budgets 10% apart: distinct runs (and names) of about equal length
                "ladder": {"tokens": [int(tokens * (1 + 0.1 * i)) for i in range(args.runs)],
                           "shapes": [{}]},
            }
        )
        started = time.time()
        summary = run_sweep(config, workers=args.workers, threads=args.threads)
        wall = time.time() - started
        runs = tracking.find_runs("overhead")
        trained = sum(run["metrics"]["perf/wall_s"] for run in runs)
        first_start = min(run["start_time"] for run in runs) / 1000
        setup = first_start - started
        result = {
            "runs": len(runs),
            "done": summary["done"],
            "workers": args.workers,
            "threads": args.threads,
            "tokens_per_run": tokens,
            "wall_s": round(wall, 2),
            "train_s": round(trained, 2),
            "overhead_share": round((wall - trained) / wall, 4),
            "setup_s": round(setup, 2),
            "overhead_per_run_s": round((wall - setup - trained) / len(runs), 2),
            "overhead_share_after_setup": round((wall - setup - trained) / (wall - setup), 4),
            "baseline": "sum of the runs' own training time", "baseline_s": round(trained, 2),
            "ratio_wall_to_baseline": round(wall / trained, 4),
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
