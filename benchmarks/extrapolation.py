"""Benchmark: extrapolation error on the published ladders shipped in ``scaling.datasets``.

For every shipped dataset and each leave-largest-out cut (fit on the runs up to a compute
level, score every run above it; ``scaling.laws.rollouts.leave_largest_out_cuts``: the 3 largest
compute levels that leave at least 5 runs to fit), one JSON line per method:

1. ``scaling``: ``scaling.laws.rollouts.leave_largest_out`` (what ``scaling validate`` runs)
   with the dataset's law (``chinchilla`` for the L(N, D) tables, ``gpt4`` for the L(C) ones:
   the ``*_frontier`` and ``*_m20`` ladders), with the coverage of the 90% one-run band. Its
   default loss weighs over-predicted runs by a factor chosen by an inner backtest on the
   fitted runs (``overestimate="auto"``, ``scaling.laws.fitting.FitResult``);
1b. ``scaling_symmetric``: the same with the symmetric loss (``overestimate=1``, the default
   before the choice), every law and table, as the same-run baseline of that choice
   (``--no-symmetric`` leaves it out);
2. ``besiroglu2024`` (L(N, D) tables only): Besiroglu et al.'s method, written here with plain
   scipy and nothing from ``scaling``: Huber loss (delta 1e-3) of log L̂ − log L summed over
   runs, ``scipy.optimize.minimize(method="L-BFGS-B")`` from each start of their 4,500-start
   grid (analytic gradient, no bounds, as their fit had none), the best objective kept;
3. ``chinchilla_pypi`` (L(N, D) tables only): ``chinchilla.Chinchilla`` from PyPI (kyo-takano)
   with its defaults (asymmetric MAE loss, BFGS, 128-bit floats, a worker per CPU) and the
   initial grid of its README, ``E`` 1..2, ``log A`` and ``log B`` 1..10, ``alpha`` and
   ``beta`` 0.1..0.7, with ``--pypi-grid`` values per axis (the README's 5 per axis take about
   500 s for one fit on the 240 Chinchilla points on 2 cores, hence 3 by default).
   Skipped, with a line saying so, if it is not installed (``pip install chinchilla``).

Tables that suit more than one law are rolled out with each (method ``scaling``, its ``law``
in the line): Muennighoff et al.'s data-constrained law (``muennighoff``, reading
``unique_tokens``) on the ``muennighoff2023_*`` tables, and Gadre et al.'s L(C, M) (``gadre``)
on the L(N, D) ``gadre2024_*`` tables, beside ``chinchilla``. ``--laws`` keeps only the laws
named; ``--where`` and ``--drop-top-loss`` filter every table's rows before the cuts
(``scaling.laws.selection.filter_rows``), for all methods alike.

Errors are relative, (predicted − observed) / observed: ``mean_abs_error``, ``max_abs_error``
and ``bias`` (their mean with sign). Everything is seeded (bootstrap, start samples).

Usage::

    python benchmarks/extrapolation.py                       # every dataset, all starts
    python benchmarks/extrapolation.py --quick               # fewer starts and resamples
    python benchmarks/extrapolation.py --datasets chinchilla_points --no-pypi
    python benchmarks/extrapolation.py --datasets muennighoff2023_all --laws muennighoff chinchilla
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from scaling import datasets  # noqa: E402
from scaling.errors import ScalingError  # noqa: E402
from scaling.laws.rollouts import (  # noqa: E402
    fold_records,
    held_out_scores,
    leave_largest_out,
    leave_largest_out_cuts,
    summarise_folds,
)
from scaling.laws.selection import filter_rows  # noqa: E402

X_CUT = "flops"
#: Laws rolled out on a table besides the one it suits (``datasets.describe(name).law``).
EXTRA_LAWS = {"muennighoff2023_all": ("muennighoff",), "muennighoff2023_single_epoch": ("muennighoff",),
              "gadre2024_all": ("gadre",), "gadre2024_c4": ("gadre",), "gadre2024_rpj": ("gadre",),
              "gadre2024_rw": ("gadre",)}


def dataset_laws(name: str, keep: list[str] | None) -> list[str]:
    """The laws a table is rolled out with: the one it suits, then :data:`EXTRA_LAWS`."""
    laws = [datasets.describe(name).law, *EXTRA_LAWS.get(name, ())]
    return [law for law in laws if keep is None or law in keep]


# --- the reference: Besiroglu et al. 2024, plain scipy ------------------------------------------


def besiroglu_starts() -> np.ndarray:
    """Their grid, columns (e, a, b, alpha, beta) with E = exp(e), A = exp(a), B = exp(b):
    alpha, beta in 0..2 step 0.5; e in -1..1 step 0.5; a, b in 0..25 step 5 (4,500 starts)."""
    return np.array(list(itertools.product(
        np.arange(-1.0, 1.01, 0.5), np.arange(0.0, 25.1, 5.0), np.arange(0.0, 25.1, 5.0),
        np.arange(0.0, 2.01, 0.5), np.arange(0.0, 2.01, 0.5),
    )))  # fmt: skip


def besiroglu_log_predict(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray):
    """log L̂ = logsumexp(e, a − alpha·log N, b − beta·log D) and the softmax weights."""
    e, a, b, alpha, beta = theta
    terms = np.stack([np.full_like(log_n, e), a - alpha * log_n, b - beta * log_d])
    top = terms.max(axis=0)
    exps = np.exp(terms - top)
    total = exps.sum(axis=0)
    return top + np.log(total), exps / total


def besiroglu_objective(theta, log_n, log_d, log_loss, delta=1e-3):
    """Sum of Huber(delta) of log L̂ − log L, and its gradient in (e, a, b, alpha, beta)."""
    log_pred, weights = besiroglu_log_predict(theta, log_n, log_d)
    residual = log_pred - log_loss
    if not np.isfinite(residual).all():
        return np.inf, np.zeros(5)
    size = np.abs(residual)
    value = np.where(size <= delta, 0.5 * residual**2, delta * (size - 0.5 * delta)).sum()
    slope = np.clip(residual, -delta, delta)
    w_e, w_n, w_d = weights
    gradient = np.array([
        (slope * w_e).sum(), (slope * w_n).sum(), (slope * w_d).sum(),
        -(slope * w_n * log_n).sum(), -(slope * w_d * log_d).sum(),
    ])  # fmt: skip
    return float(value), gradient


def besiroglu_fit(params, tokens, loss, starts: np.ndarray) -> dict[str, float]:
    """Best of one L-BFGS-B per start; natural parameters E, A, B, alpha, beta."""
    from scipy.optimize import minimize

    log_n, log_d, log_loss = np.log(params), np.log(tokens), np.log(loss)
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for start in starts:
            out = minimize(besiroglu_objective, start, args=(log_n, log_d, log_loss), jac=True,
                           method="L-BFGS-B")
            if np.isfinite(out.fun) and (best is None or out.fun < best.fun):
                best = out
    e, a, b, alpha, beta = best.x
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
            "alpha": float(alpha), "beta": float(beta)}


def chinchilla_predict(p: dict[str, float], params, tokens) -> np.ndarray:
    return p["E"] + p["A"] * np.power(params, -p["alpha"]) + p["B"] * np.power(tokens, -p["beta"])


# --- the chinchilla package from PyPI -------------------------------------------------------------


def pypi_fit(params, tokens, flops, loss, per_axis: int) -> dict[str, float]:
    """``chinchilla.Chinchilla(...).fit()`` with its defaults and its README's initial grid."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    from chinchilla import Chinchilla

    grid = dict(E=np.linspace(1, 2, per_axis), a=np.linspace(1, 10, per_axis),
                b=np.linspace(1, 10, per_axis), alpha=np.linspace(0.1, 0.7, per_axis),
                beta=np.linspace(0.1, 0.7, per_axis))
    with tempfile.TemporaryDirectory() as project, contextlib.redirect_stdout(io.StringIO()):
        cc = Chinchilla(project, param_grid=grid, log_level=40)
        cc.database.df = pd.DataFrame({"C": flops, "N": params, "D": tokens, "loss": loss})
        cc.fit()
        import matplotlib.pyplot as plt

        plt.close("all")
        return cc.get_params()


# --- the harness --------------------------------------------------------------------------------


def emit(record: dict) -> None:
    clean = {k: (round(v, 6) if isinstance(v, float) and np.isfinite(v) else
                 (None if isinstance(v, float) else v)) for k, v in record.items()}
    print(json.dumps(clean), flush=True)


def roll_dataset(name, law, frame, n_cuts, min_fit, n_bootstrap, starts, use_pypi, pypi_grid,
                 no_reference, symmetric=True):
    """The records of one table and law: ours per cut, then (for ``chinchilla``) the others'."""
    def ours(**fit_kwargs):
        return leave_largest_out(frame, law, x_cut=X_CUT, n_cuts=n_cuts, min_fit=min_fit, interval=0.9,
                                 n_bootstrap=n_bootstrap, seed=0, source=f"dataset {name!r}", **fit_kwargs)

    compute = frame[X_CUT].to_numpy(dtype=float)
    baseline = fold_records(ours(overestimate=1.0), name) if symmetric else []
    for i, record in enumerate(fold_records(ours(), name)):
        yield record
        if baseline:
            yield {**baseline[i], "method": "scaling_symmetric"}
        if law != "chinchilla":
            continue
        train, held = compute <= record["cut"], compute > record["cut"]
        fitted, scored = frame[train], frame[held]
        methods = []
        if not no_reference:
            methods.append(("besiroglu2024", lambda fitted=fitted: besiroglu_fit(
                fitted["params"].to_numpy(), fitted["tokens"].to_numpy(),
                fitted["loss"].to_numpy(), starts)))
        if use_pypi:
            methods.append(("chinchilla_pypi", lambda fitted=fitted: pypi_fit(
                fitted["params"].to_numpy(), fitted["tokens"].to_numpy(),
                fitted["flops"].to_numpy(), fitted["loss"].to_numpy(), pypi_grid)))
        for method, run in methods:
            yield reference_record(name, law, method, run, record["cut"], train, held, scored)


def reference_record(name, law, method, run, cut, train, held, scored) -> dict:
    """One line for a reference method's fit below ``cut``, scored on the runs above."""
    started = time.perf_counter()
    record = {"dataset": name, "law": law, "method": method, "cut": cut,
              "n_fit": int(train.sum()), "n_held": int(held.sum())}
    try:
        p = run()
    except Exception as error:  # a method that fails on a cut is a result too
        record.update(error=f"{type(error).__name__}: {error}", wall_s=time.perf_counter() - started)
        return record
    predicted = chinchilla_predict(p, scored["params"].to_numpy(), scored["tokens"].to_numpy())
    record.update(held_out_scores(scored["loss"].to_numpy(), predicted))
    record.update(wall_s=time.perf_counter() - started, alpha=p["alpha"], beta=p["beta"], E=p["E"])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="300 reference starts, 30 bootstrap resamples, 2 values per axis "
                             "of the PyPI package's grid")
    parser.add_argument("--datasets", nargs="+", default=None, help="subset of scaling.datasets.names()")
    parser.add_argument("--n-bootstrap", type=int, default=None, help="resamples of our fit (default 200)")
    parser.add_argument("--ref-starts", type=int, default=None,
                        help="reference starts, sampled (seed 0) from the 4,500 (0 = all; default all)")
    parser.add_argument("--pypi-grid", type=int, default=None,
                        help="values per axis of the chinchilla package's grid (default 3; README 5)")
    parser.add_argument("--no-pypi", action="store_true", help="leave out the chinchilla package")
    parser.add_argument("--no-reference", action="store_true", help="leave out the reference method")
    parser.add_argument("--no-symmetric", action="store_true",
                        help="leave out our fit with the symmetric loss (overestimate=1)")
    parser.add_argument("--n-cuts", type=int, default=3)
    parser.add_argument("--min-fit", type=int, default=5)
    parser.add_argument("--laws", nargs="+", default=None,
                        help="only these laws (default: each table's law and EXTRA_LAWS)")
    parser.add_argument("--where", default=None,
                        help="pandas query every table's rows must satisfy, e.g. 'epochs <= 40'")
    parser.add_argument("--drop-top-loss", type=int, default=0,
                        help="drop each table's K highest-loss rows first")
    args = parser.parse_args()
    n_bootstrap = args.n_bootstrap if args.n_bootstrap is not None else (30 if args.quick else 200)
    ref_starts = args.ref_starts if args.ref_starts is not None else (300 if args.quick else 0)
    pypi_grid = args.pypi_grid if args.pypi_grid is not None else (2 if args.quick else 3)

    starts = besiroglu_starts()
    if 0 < ref_starts < len(starts):
        pick = np.random.default_rng(0).choice(len(starts), ref_starts, replace=False)
        starts = starts[np.sort(pick)]
    use_pypi = not args.no_pypi
    if use_pypi:
        try:
            import chinchilla  # noqa: F401
        except ImportError as error:
            use_pypi = False
            emit({"method": "chinchilla_pypi", "skipped": f"not importable ({error}); "
                  "pip install chinchilla to include it"})
    emit({"settings": True, "n_bootstrap": n_bootstrap, "ref_starts": len(starts),
          "pypi_grid_per_axis": pypi_grid if use_pypi else None, "n_cuts": args.n_cuts,
          "min_fit": args.min_fit, "x_cut": X_CUT, "interval": 0.9, "seed": 0,
          "where": args.where, "drop_top_loss": args.drop_top_loss, "laws": args.laws})

    summary: dict[str, list[dict]] = {}
    for name in args.datasets or datasets.names():
        try:
            frame, _ = filter_rows(datasets.load(name), where=args.where,
                                   drop_top_loss=args.drop_top_loss, source=f"dataset {name!r}")
        except ScalingError as error:
            emit({"dataset": name, "skipped": str(error)})
            continue
        cuts = leave_largest_out_cuts(frame, X_CUT, n_cuts=args.n_cuts, min_fit=args.min_fit)
        for law in dataset_laws(name, args.laws):
            if not cuts:
                emit({"dataset": name, "law": law, "skipped": "no cut leaves enough runs to fit"})
                continue
            for record in roll_dataset(name, law, frame, args.n_cuts, args.min_fit, n_bootstrap,
                                       starts, use_pypi, pypi_grid, args.no_reference,
                                       symmetric=not args.no_symmetric):
                emit(record)
                summary.setdefault((record["method"], record["law"]), []).append(record)

    for (method, law), records in summary.items():
        every = summarise_folds(records)
        lnd = summarise_folds([r for r in records if r["law"] == "chinchilla"])
        emit({"summary": method, "law": law,
              **{k: every[k] for k in ("folds", "failed", "mean_of_mean_abs_error",
                                       "worst_max_abs_error", "mean_bias", "mean_coverage")},
              "lnd_folds": lnd["folds"] - lnd["failed"],
              "lnd_mean_of_mean_abs_error": lnd["mean_of_mean_abs_error"],
              "lnd_mean_bias": lnd["mean_bias"], "total_wall_s": every["total_wall_s"]})


if __name__ == "__main__":
    main()
