"""Plain helpers shared by several test modules: synthetic run tables and learning curves from a
known law, the Chinchilla points Besiroglu et al. fit, sweep files, and a ``scaling train`` child
process SIGKILLed at its first checkpoint.

Import them by name (``from helpers import synthetic_runs``): pytest puts ``tests/`` on
``sys.path``, as for ``services``. Test modules never import each other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ synthetic run tables --

# The law the synthetic runs follow: L(C) = a * C^b + c on flops_exact (GPT-4's form).
TRUTH = {"a": 60.0, "b": -0.12, "c": 1.8}
EXACT_OVER_6ND = 1.15  # flops_exact / flops of these small models (embeddings, attention)
ISOFLOP_BUDGETS = (1e14, 1e15, 1e16)  # 6ND FLOPs of the IsoFLOP profiles


def true_loss(flops_exact):
    return TRUTH["a"] * np.asarray(flops_exact, float) ** TRUTH["b"] + TRUTH["c"]


def synthetic_runs(*, n_ladder=10, isoflop=True, extras=True, target=True, noise=0.003, seed=0):
    """A run table that follows :data:`TRUTH`, with the rows a real sweep has.

    Ladder proxies at 20 tokens per parameter; optionally three IsoFLOP profiles (sizes
    N*/2 to 4N* around N* = sqrt(C/120), the others above the law by 2% x log(N/N*)^2, so
    N_opt is proportional to C^0.5 by construction); a diverged run, a
    run still running and a finished run without a loss; and the target at ~100x the
    largest proxy's compute, 0.5% above the law.
    """
    rng = np.random.default_rng(seed)
    rows = []

    def add(name, role, params, tokens, loss, status="FINISHED", failure=None):
        flops = 6.0 * params * tokens
        rows.append(
            {
                "run_id": f"run{len(rows):02d}",
                "run_key": f"key{len(rows):02d}",
                "name": name,
                "sweep": "synthetic",
                "role": role,
                "status": status,
                "failure": failure,
                "params": float(params),
                "tokens": float(tokens),
                "flops": flops,
                "flops_exact": EXACT_OVER_6ND * flops,
                "loss": loss,
            }
        )

    for params in np.geomspace(2e5, 5e6, n_ladder):
        exact = EXACT_OVER_6ND * 6.0 * params * 20 * params
        loss = float(true_loss(exact) * np.exp(noise * rng.standard_normal()))
        add(f"N{params:.2g}-20xN", "proxy", params, 20 * params, loss)
    if isoflop:
        # Compute-optimal size at 20 tokens per parameter: C = 6 N (20 N) => N* = sqrt(C / 120).
        for budget in ISOFLOP_BUDGETS:
            best = np.sqrt(budget / 120.0)
            for params in best * np.array([0.5, 1.0, 2.0, 4.0]):
                penalty = 1 + 0.02 * np.log(params / best) ** 2
                add(f"N{params:.2g}-C{budget:.0e}", "proxy", params, budget / (6.0 * params),
                    float(true_loss(EXACT_OVER_6ND * budget) * penalty
                          * np.exp(noise * rng.standard_normal())))
    if extras:
        add("N3e6-diverged", "proxy", 3e6, 6e7, np.nan, "FAILED", "diverged: loss nan at step 120")
        add("N4e6-running", "proxy", 4e6, 8e7, np.nan, "RUNNING")
        add("N1e6-noloss", "proxy", 1e6, 2e7, np.nan)
    if target:
        params = 5e7
        exact = EXACT_OVER_6ND * 6.0 * params * 20 * params
        add("N5e7-target", "target", params, 20 * params, float(true_loss(exact) * 1.005))
    return pd.DataFrame(rows)


def synthetic_curve(final_loss, tokens, *, start_loss=6.0, n_points=20):
    """An eval-loss curve falling from ``start_loss`` to ``final_loss`` at ``tokens``."""
    seen = np.linspace(tokens / n_points, tokens, n_points)
    value = final_loss + (start_loss - final_loss) * (1 - seen / tokens) ** 2
    return pd.DataFrame({"step": np.arange(1, n_points + 1), "tokens": seen, "value": value})


def synthetic_curves(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A :func:`synthetic_curve` (20 points) per run of ``runs`` that has a final loss, by run_id."""
    return {
        row.run_id: synthetic_curve(row.loss, row.tokens)
        for row in runs.itertuples()
        if np.isfinite(row.loss)
    }


def besiroglu_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The Chinchilla points (``tests/data/chinchilla_points.csv``) as Besiroglu et al. fit them:
    sorted by loss, less the 5 highest losses."""
    return frame.sort_values("loss").iloc[:-5]


# ----------------------------------------------------------------------------- sweeps --


def write_sweep(data: dict, name: str = "sweep.yaml") -> Path:
    """Write a sweep (or run) configuration as YAML to ``name`` in the working directory."""
    path = Path(name)
    path.write_text(yaml.safe_dump(data))
    return path


def ladder_proxy_count(path: Path, *, quick: bool = False) -> int:
    """How many proxies a sweep file's ladder lists, read from the YAML itself (not through
    the planner under test): shapes x budgets (tokens_per_param and tokens) x seeds. With
    ``quick``, the keys of the ``quick.ladder`` section replace the ladder's."""
    raw = yaml.safe_load(Path(path).read_text())
    ladder = dict(raw["ladder"])
    if quick:
        ladder.update(raw["quick"].get("ladder", {}))
    budgets = len(ladder.get("tokens_per_param", [])) + len(ladder.get("tokens", []))
    return len(ladder["shapes"]) * budgets * max(1, len(ladder.get("seeds", [])))


# ------------------------------------------------------------------- crashed processes --


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


def chinchilla_fit_with(**natural):
    """Hoffmann et al.'s published fit with some of its parameters replaced."""
    from scaling.laws.allocation import _reference_fit
    from scaling.laws.fitting import FitResult
    from scaling.laws.forms import get_law

    law, saved = get_law("chinchilla"), _reference_fit()
    saved["theta"] = law.from_natural({**law.reference, **natural}).tolist()
    return FitResult.from_dict(saved)
