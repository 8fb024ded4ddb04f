"""How well does `scaling watch` project a run's final loss from its partial curve?

Prints JSON lines: the error of the projected final loss at 10/25/50/75% of training, from the
curve alone and blended with the forecast (scaling.laws.partial_curve), for the power law in
tokens (``method: power``, no schedule) and the learning-rate annealing law (``method:
annealing``, the run's schedule known).

**Synthetic** (the default; seeded): 20 evaluations per run, final loss known, 30 runs per
shape, 0.3% multiplicative noise, a prior 2% below the final loss for half the runs and 2%
above for the other half. Shapes:

- ``power``: L = E + B (t/T)^-alpha, alpha 0.3/0.5/0.8 (a constant learning rate's shape);
- ``schedule``: tests/helpers.py's synthetic_curve, a quadratic approach to the final loss that
  no law here follows (no learning rate behind it: the power law only);
- ``nqm-cosine``, ``nqm-wsd``: the expected loss of SGD on a noisy quadratic model (200
  directions, curvatures 1/i, initial error spectra i^-p for p 0.2/0.5/0.8, gradient noise
  varied over 10 seeds) trained with the demo's cosine schedule (warmup 5%, to 10% of the peak)
  or a WSD one (decay over the last 20%, 1-sqrt): curves shaped by a decaying learning rate
  from the optimisation itself, not from either law; mapped affinely onto 6.0 at the first
  evaluation and 2.283 at the end.

**A finished run of an experiment** (``--experiment NAME``): its eval curve and logged
``train/lr``, and the proxies' forecast fitted as the demo fits it (the sweep file's
``forecast:`` law and fit range, ``--law``/``--fit-range``; 90% interval for one run, seed 0):
one line per fraction and method (projected, error against the actual final loss), the
forecast alone, then every finished run's curve alone (the proxies too: real curves of the same
recipe) and their mean absolute errors. ``--calibrate`` prints, for each proxy left out, the
annealing law's memory that fits the other proxies' whole curves best (the choice of
scaling.laws.partial_curve.MEMORY).

    python3 benchmarks/partial_curve.py
    python3 benchmarks/partial_curve.py --experiment demo --tracking-uri sqlite:////tmp/copy.db
    python3 benchmarks/partial_curve.py --experiment demo --tracking-uri ... --calibrate
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from scaling.laws.partial_curve import (
    MEMORY,
    fit_annealing_curve,
    project_final,
    schedule_areas,
)

FRACTIONS = (0.10, 0.25, 0.50, 0.75)
N_EVALS, TOTAL, FINAL, PRIOR_ERRORS = 20, 1e9, 2.283, (-0.02, 0.02)
NOISE = 0.003


def _evals() -> np.ndarray:
    return np.linspace(TOTAL / N_EVALS, TOTAL, N_EVALS)


def power(rng, alpha):
    t = _evals()
    scale = (6.0 - FINAL) / (N_EVALS**alpha - 1)
    loss = FINAL - scale + scale * (t / TOTAL) ** -alpha
    return t, loss * np.exp(NOISE * rng.standard_normal(N_EVALS)), None


def schedule(rng, _):
    t = _evals()
    loss = FINAL + (6.0 - FINAL) * (1 - t / TOTAL) ** 2
    return t, loss * np.exp(NOISE * rng.standard_normal(N_EVALS)), None


def lr_schedule(kind: str, steps: int, warmup: float = 0.05, min_ratio: float = 0.1,
                decay: float = 0.2) -> np.ndarray:
    """The learning-rate factor of each step: the trainer's cosine or WSD (1-sqrt) schedule."""
    from scaling.training.loop import lr_multiplier

    warm = int(round(warmup * steps))
    decay_steps = max(1, round(decay * steps)) if kind == "wsd" else 0
    return np.array([lr_multiplier(s, steps, warm, min_ratio, kind, decay_steps) for s in range(steps)])


def nqm(kind: str):
    """A shape function: SGD's expected loss on a noisy quadratic under schedule ``kind``."""

    def make(rng, p, steps=4000, dims=200):
        h = 1.0 / np.arange(1, dims + 1)  # curvatures
        mean = np.sqrt(np.arange(1, dims + 1) ** -p / h)  # initial error, h m^2 ~ i^-p
        noise = 10 ** rng.uniform(-3.0, -2.0)  # gradient-noise variance per unit curvature
        eta = 0.5 * lr_schedule(kind, steps)  # peak lr x largest curvature = 0.5: stable
        var = np.zeros(dims)
        loss = np.empty(steps)
        for step in range(steps):
            shrink = 1.0 - eta[step] * h
            mean = shrink * mean
            var = shrink**2 * var + eta[step] ** 2 * noise * h
            loss[step] = 0.5 * np.sum(h * (mean**2 + var))
        t = _evals()
        at = np.round(t / TOTAL * steps).astype(int) - 1
        raw = loss[at]
        mapped = FINAL + (raw - raw[-1]) * (6.0 - FINAL) / (raw[0] - raw[-1])
        tokens = (np.arange(steps) + 1) * TOTAL / steps
        return t, mapped * np.exp(NOISE * rng.standard_normal(N_EVALS)), schedule_areas(tokens, eta, TOTAL)

    return make


SHAPES = {
    "power": (power, (0.3, 0.5, 0.8)),
    "schedule": (schedule, (None, None, None)),
    "nqm-cosine": (nqm("cosine"), (0.2, 0.5, 0.8)),
    "nqm-wsd": (nqm("wsd"), (0.2, 0.5, 0.8)),
}


def synthetic(seeds=range(10)) -> None:
    print(json.dumps({"mode": "synthetic", "forecast_alone_pct": 2.0}), flush=True)
    for label, (shape, settings) in SHAPES.items():
        table = {(f, m, k): [] for f in FRACTIONS for m in ("power", "annealing") for k in ("curve", "blend")}
        for setting in settings:
            for seed in seeds:
                t, loss, areas = shape(np.random.default_rng(seed), setting)
                prior = FINAL * (1 + PRIOR_ERRORS[seed % 2])
                for f in FRACTIONS:
                    seen = t <= f * TOTAL + 1e-6
                    for method, known in (("power", None), ("annealing", areas)):
                        if method == "annealing" and known is None:
                            continue
                        for kind, p in (("curve", None), ("blend", prior)):
                            projected = project_final(t[seen], loss[seen], TOTAL, prior=p, schedule=known)
                            table[f, method, kind].append(abs(projected / FINAL - 1) * 100)
        for method in ("power", "annealing"):
            for f in FRACTIONS:
                curve, blend = table[f, method, "curve"], table[f, method, "blend"]
                if not blend:
                    continue
                print(json.dumps({
                    "mode": "synthetic", "shape": label, "method": method, "fraction": f,
                    "runs": len(blend), "curve_alone_mae_pct": _mean(curve),
                    "blended_mae_pct": _mean(blend),
                }), flush=True)  # fmt: skip


def _mean(values) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(float(np.mean(finite)), 3) if len(finite) == len(values) and finite else None


# ----------------------------------------------------------------------- a finished run --


def _run_curves(experiment: str, uri: str):
    from scaling.errors import TrackingError
    from scaling.reporting.comparison import fill_tokens
    from scaling.sweeps.tracking import learning_curve, runs_frame

    runs = runs_frame(experiment, tracking_uri=uri)
    out = {}
    for row in runs.itertuples():
        try:
            curve = fill_tokens(learning_curve(row.run_id, tracking_uri=uri), row.tokens)
            lr = fill_tokens(learning_curve(row.run_id, tracking_uri=uri, metric="train/lr"), row.tokens)
        except TrackingError:
            continue
        out[row.run_id] = (row, curve, lr)
    return runs, out


def _project(row, curve, lr, fraction: float, prior: float | None, memory: float = MEMORY):
    total = float(row.tokens)
    t, y = curve["tokens"].to_numpy(float), curve["value"].to_numpy(float)
    seen = t <= fraction * total * (1 + 1e-6)
    areas = schedule_areas(lr["tokens"], lr["value"], total, memory=memory)
    return {
        "evaluations": int(seen.sum()),
        "power": project_final(t[seen], y[seen], total, prior=prior),
        "annealing": project_final(t[seen], y[seen], total, prior=prior, schedule=areas),
    }


def _pct(value: float, actual: float) -> float | None:
    return round((value / actual - 1) * 100, 3) if math.isfinite(value) else None


def experiment_mode(experiment: str, uri: str, law: str, fit_range: str, n_bootstrap: int,
                    target: str | None) -> None:
    from scaling.laws.selection import split_runs
    from scaling.reporting.forecast import make_forecast

    runs, curves = _run_curves(experiment, uri)
    targets = runs[runs["role"] == "target"] if target is None else runs[runs["run_id"] == target]
    if targets.empty or targets["run_id"].iloc[0] not in curves:
        raise SystemExit(f"experiment {experiment!r} has no finished target with an eval curve; "
                         "pass --target RUN_ID")
    row, curve, lr = curves[targets["run_id"].iloc[0]]
    proxies = runs[runs["role"] == "proxy"]
    split = split_runs(proxies, x="flops_exact", y="loss", fit_range=fit_range, law=law)
    size = {k: float(getattr(row, k)) for k in ("params", "tokens", "flops", "flops_exact")}
    record = make_forecast(split.proxies, size, law=law, n_bootstrap=n_bootstrap, seed=0,
                           experiment=experiment)
    actual = float(row.loss)
    print(json.dumps({
        "mode": "experiment", "experiment": experiment, "target": row.name, "run_id": row.run_id,
        "actual": actual, "evaluations": len(curve), "forecast": record["predicted"],
        "forecast_lo": record["lo"], "forecast_hi": record["hi"], "law": law,
        "fit_range": fit_range, "n_proxies": record["n_proxies"],
        "forecast_error_pct": _pct(record["predicted"], actual),
    }), flush=True)  # fmt: skip
    for f in FRACTIONS:
        alone = _project(row, curve, lr, f, None)
        blend = _project(row, curve, lr, f, record["predicted"])
        for method in ("power", "annealing"):
            print(json.dumps({
                "mode": "experiment", "target": row.name, "fraction": f, "method": method,
                "evaluations": alone["evaluations"], "curve_alone": _round(alone[method]),
                "curve_alone_error_pct": _pct(alone[method], actual),
                "blended": _round(blend[method]), "blended_error_pct": _pct(blend[method], actual),
                "forecast_alone_error_pct": _pct(record["predicted"], actual),
            }), flush=True)  # fmt: skip
    # Every finished run's curve alone: the proxies are real curves of the same recipe.
    errors = {(f, m): [] for f in FRACTIONS for m in ("power", "annealing")}
    for each, c, rate in curves.values():
        line = {"mode": "experiment-runs", "run": each.name, "role": each.role}
        for f in FRACTIONS:
            alone = _project(each, c, rate, f, None)
            for method in ("power", "annealing"):
                error = _pct(alone[method], float(each.loss))
                line[f"{method}_{f:.0%}_error_pct"] = error
                errors[f, method].append(error)
        print(json.dumps(line), flush=True)
    summary = {"mode": "experiment-runs", "runs": len(curves), "mean_abs_error_pct": {}}
    for (f, method), values in errors.items():
        finite = [abs(v) for v in values if v is not None]
        summary["mean_abs_error_pct"][f"{method} {f:.0%}"] = (
            round(float(np.mean(finite)), 3) if finite else None)
        summary.setdefault("projected_runs", {})[f"{method} {f:.0%}"] = len(finite)
    print(json.dumps(summary), flush=True)


def calibrate(experiment: str, uri: str, memories=(0.0, 0.02, 0.05, 0.1, 0.2, 0.3),
              skip: float = 0.1, per_step: float = 0.999) -> None:
    """For each proxy left out, the memory of least relative squared error over the others'
    whole curves (the law fitted to each curve beyond ``skip``, its exponent on the grid);
    beside the fractions of the run, Tissue et al.'s momentum per optimizer step ``per_step``
    (a memory of 1 / (1 - per_step) steps, another fraction of each run)."""
    _, curves = _run_curves(experiment, uri)
    proxies = {k: v for k, v in curves.items() if v[0].role == "proxy"}
    step_label = f"lambda {per_step:g} per step"
    cost = {}
    for run_id, (row, curve, lr) in proxies.items():
        total = float(row.tokens)
        steps = total / float(row.batch_tokens)
        t, y = curve["tokens"].to_numpy(float), curve["value"].to_numpy(float)
        late = t >= skip * total
        for memory in (*memories, step_label):
            fraction = 1.0 / ((1.0 - per_step) * steps) if memory == step_label else memory
            areas = schedule_areas(lr["tokens"], lr["value"], total, memory=fraction)
            s1, s2 = areas.at(t[late])
            e, a, c, alpha = fit_annealing_curve(s1, s2, y[late])
            fitted = e + a * s1**-alpha - c * s2
            cost[memory, run_id] = float(np.sum((fitted / y[late] - 1) ** 2))
    candidates = (*memories, step_label)
    for left_out, (row, _, _) in proxies.items():
        totals = {m: sum(cost[m, k] for k in proxies if k != left_out) for m in candidates}
        print(json.dumps({"mode": "calibrate", "left_out": row.name,
                          "best_memory": min(totals, key=totals.get),
                          "relative_sse": {str(m): round(v, 6) for m, v in totals.items()}}), flush=True)


def _round(value: float) -> float | None:
    return round(float(value), 5) if math.isfinite(value) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", help="measure on this experiment's finished target")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--target", help="run id of the large run [default: the role 'target' run]")
    parser.add_argument("--law", default="gpt4", help="the demo's forecast.law")
    parser.add_argument("--fit-range", default="auto", help="the demo's forecast.fit_range")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--calibrate", action="store_true", help="choose the annealing memory")
    args = parser.parse_args()
    if args.experiment is None:
        synthetic()
    elif args.calibrate:
        calibrate(args.experiment, args.tracking_uri)
    else:
        experiment_mode(args.experiment, args.tracking_uri, args.law, args.fit_range,
                        args.n_bootstrap, args.target)


if __name__ == "__main__":
    main()
