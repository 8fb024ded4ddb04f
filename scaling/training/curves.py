"""Whole learning curves as rows a law can be fitted to: the areas under a learning-rate schedule.

Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing", arXiv:2408.11029) model the loss
after step s of any schedule as L(s) = L0 + A·S1^(−α) − C·S2, with

- S1 = Σ_{i ≤ s} η_i, the *forward area*: how far the weights have travelled;
- S2 = Σ_{i ≤ s} m_i with m_i = λ·m_{i−1} + (η_{i−1} − η_i), the *annealing area*: the
  learning rate given up so far, with a momentum λ (0.999 in the paper) because the loss
  responds to a decay with a delay. Warmup, up to the schedule's peak, anneals nothing.

Here η is the schedule's factor of the peak learning rate (the run's ``train/lr`` divided by its
``train.lr``). S1 weights every step by its tokens, so that with a constant learning rate it is
the tokens trained and ``tissue_n`` (with Chinchilla's A·N^(−α) term, :mod:`scaling.laws.forms`)
is L(N, D) across sizes trained with different batches. S2 stays in steps, as in the paper: its
momentum is a memory of optimizer steps, so for a run much longer than 1/(1 − λ) steps S2 is
about the total drop of η over 1 − λ, and the annealing gain is bounded. (Weighted by tokens
too, S2 grows with the batch and the fit's annealing term runs away on larger runs: measured on
the demo's ladder, the target predicted 81% low.)

Warmup and the first steps follow other dynamics; the papers fit from after warmup, and
:func:`curve_points` keeps the evaluations from ``min_fraction`` of each run's tokens on.

This module is numpy and pandas only: the laws are in :mod:`scaling.laws.forms` (``tissue``,
``tissue_n``), the schedules in :func:`scaling.training.loop.lr_schedule`, and the table of a
sweep's logged curves in :mod:`scaling.sweeps.curves`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scaling.errors import FitError

__all__ = ["ANNEALING_MOMENTUM", "ANNEALING_MEMORY", "run_momentum", "annealing_areas", "curve_points"]

#: λ of Tissue et al. 2024 (section 3): the annealing momentum per optimizer step.
ANNEALING_MOMENTUM = 0.999

#: The annealing memory the curve laws use by default: a tenth of each run's steps, the
#: memory :mod:`scaling.laws.partial_curve` measured best on other curves. With the paper's
#: 0.999, a memory of 1,000 steps, a short run's whole cosine decay counts as annealing:
#: measured on the demo's eight sizes (benchmarks/curve_law.py on the WSD ladder of
#: sweeps/demo-wsd.yaml, predicting each cosine run of sweeps/demo.yaml), the cosine finals
#: came out 15-34% low with 0.999 and within -0.8% to -6.3% with a tenth of the run.
ANNEALING_MEMORY = 0.1


def run_momentum(steps: int, memory: float = ANNEALING_MEMORY) -> float:
    """λ per step of a memory of ``memory`` of a run's ``steps``: ``exp(-1 / (memory·steps))``.

    Examples
    --------
    >>> round(run_momentum(1000), 4)  # a tenth of 1,000 steps: like the paper's 0.99
    0.99
    """
    import math

    return math.exp(-1.0 / max(memory * steps, 1e-12))

def annealing_areas(
    multipliers: Sequence[float], batch_tokens: float, momentum: float = ANNEALING_MOMENTUM
) -> tuple[np.ndarray, np.ndarray]:
    """S1 (in tokens) and S2 (in steps) after 0, 1, ..., steps optimizer steps of a schedule.

    Parameters
    ----------
    multipliers : sequence of float
        The learning-rate factor of each step (1 at the peak).
    batch_tokens : float
        Tokens per optimizer step.
    momentum : float
        λ of the annealing momentum.

    Returns
    -------
    (ndarray, ndarray)
        Each of length ``steps + 1``; index t is after t steps (the evaluation at step t).

    Examples
    --------
    >>> s1, s2 = annealing_areas([1.0, 1.0, 0.5, 0.0], batch_tokens=10, momentum=0.0)
    >>> s1.tolist(), s2.tolist()
    ([0.0, 10.0, 20.0, 25.0, 25.0], [0.0, 0.0, 0.0, 0.5, 1.0])
    """
    eta = np.asarray(multipliers, dtype=float)
    drops = np.concatenate([[0.0], eta[:-1] - eta[1:]])  # η_{i−1} − η_i, 0 at the first step
    drops[: int(np.argmax(eta)) + 1] = 0.0  # warmup raises the rate: it anneals nothing
    m = np.empty_like(eta)
    level = 0.0
    for i, drop in enumerate(drops):
        level = momentum * level + drop
        m[i] = level
    s1 = np.concatenate([[0.0], np.cumsum(eta)]) * batch_tokens
    s2 = np.concatenate([[0.0], np.cumsum(m)])
    return s1, s2


def curve_points(
    run: dict, steps: Sequence[int], losses: Sequence[float], multipliers: Sequence[float],
    *, min_fraction: float = 0.1, momentum: float | None = None,
) -> pd.DataFrame:
    """The rows of one run's curve a curve law is fitted to: ``run``'s fields (``run_id``,
    ``params``, ``role``...) on every row, then ``step``, ``tokens``, ``s1``, ``s2``, ``loss``;
    evaluations before ``min_fraction`` of the run's steps (and at step 0) left out. The
    annealing momentum is ``momentum``, or by default a memory of :data:`ANNEALING_MEMORY` of
    the run's steps (:func:`run_momentum`).

    Raises
    ------
    FitError
        If a step lies beyond the schedule.
    """
    multipliers = np.asarray(multipliers, dtype=float)
    batch_tokens = float(run["batch_tokens"])
    if momentum is None:
        momentum = run_momentum(len(multipliers))
    s1, s2 = annealing_areas(multipliers, batch_tokens, momentum)
    steps = np.asarray(steps, dtype=int)
    if len(steps) and steps.max() > len(multipliers):
        raise FitError(
            f"run {run.get('run_id', '?')}: evaluation at step {int(steps.max())} beyond its "
            f"{len(multipliers)}-step schedule; the run's train settings do not match its curve"
        )
    keep = (steps >= max(1, min_fraction * len(multipliers))) & np.isfinite(np.asarray(losses, float))
    steps, losses = steps[keep], np.asarray(losses, dtype=float)[keep]
    frame = pd.DataFrame({"step": steps, "tokens": steps * batch_tokens, "s1": s1[steps],
                          "s2": s2[steps], "loss": losses})
    for key, value in reversed(list(run.items())):
        if key not in frame.columns:
            frame.insert(0, key, value)
    return frame
