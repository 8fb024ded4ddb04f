"""A schedule that was never run, predicted by the curve law from the curves of other schedules.

For each of the demo's shapes given (4 layers, context 64, byte tokens on the embedded corpus,
the demo's batch and learning rate, fp32, 20 tokens per parameter), train one WSD run (20% of
the steps decaying to 0 along 1 − sqrt) and one cosine run (to 10% of the peak), each with about
40 evaluations on the demo's 131,072 held-out tokens. Then, per shape, fit Tissue et al.'s curve
law (``tissue``: L(s) = E + B·S1^(−β) − C·S2, scaling/laws/forms.py) to the WSD curve past 10% of
its steps and predict the cosine run's final loss (the same size, a schedule the fit never
saw), against the same-run baseline of the WSD run's own final loss as the prediction. Runs go
through ``scaling.training.loop.train`` in child processes, one torch thread each, two at a time.

Prints one JSON line per shape and a summary line.

With ``--wsd-experiment`` it trains nothing: it fits ``tissue`` per size to every logged curve
of a WSD ladder with cooldown branches (sweeps/demo-wsd.yaml: the stable run and its branches,
four budgets per size) and predicts the final loss of the cosine run of the same size and
budget in ``--cosine-experiment`` (sweeps/demo.yaml), against the same-run baseline of the WSD
run of that budget taken as the prediction.

Usage::

    python benchmarks/curve_law.py [--shapes 16,24,32] [--evals 40] [--processes 2] [--save-curves F]
    python benchmarks/curve_law.py --wsd-experiment demo-wsd --wsd-uri sqlite:///a.db \
        --cosine-experiment demo --cosine-uri sqlite:///b.db
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

# the demo's shapes (sweeps/demo.yaml): d_model -> (batch_tokens, lr)
DEMO = {14: (128, 0.01707), 16: (128, 0.01600), 20: (256, 0.01436), 24: (256, 0.01314),
        28: (384, 0.01218), 32: (384, 0.01141), 36: (512, 0.01077), 40: (512, 0.01022)}


def train_curve(d_model: int, schedule: str, evals: int) -> dict:
    """Train one run; its eval curve (steps, losses), schedule settings and final loss."""
    import torch

    torch.set_num_threads(1)
    from scaling.config.run import ModelConfig, RunSpec
    from scaling.sweeps.planning import run_size

    batch, lr = DEMO[d_model]
    model = ModelConfig(n_layer=4, d_model=d_model, n_head=2, context=64)
    probe = RunSpec(model=model, train={"tokens": 10_000, "batch_tokens": batch})
    tokens = round(20 * run_size(probe)["params"])
    steps = tokens // batch
    train = {"tokens": tokens, "batch_tokens": batch, "lr": lr, "precision": "fp32",
             "schedule": schedule, "min_lr_ratio": 0.1 if schedule == "cosine" else 0.0,
             "decay_fraction": 0.2, "decay_shape": "1-sqrt", "eval_every": max(1, steps // evals),
             "device": "cpu"}
    spec = RunSpec(name=f"d{d_model}-{schedule}", model=model, train=train)
    curve: dict[int, float] = {}

    def log(step: int, metrics: dict) -> None:
        if "eval/loss" in metrics:
            curve[step] = metrics["eval/loss"]

    from scaling.training.loop import train as run

    started = time.perf_counter()
    result = run(spec, log=log)
    return {"d_model": d_model, "schedule": schedule, "params": result.params,
            "train": spec.train.model_dump(mode="json"), "steps": sorted(curve),
            "losses": [curve[s] for s in sorted(curve)], "final": result.final_eval_loss,
            "wall_s": time.perf_counter() - started}


def from_sweeps(wsd_experiment: str, wsd_uri: str, cosine_experiment: str, cosine_uri: str,
                n_bootstrap: int) -> None:
    """Per size: ``tissue`` on the WSD ladder's curves, the cosine run's final loss predicted."""
    from scaling.laws.fitting import fit
    from scaling.sweeps import tracking
    from scaling.sweeps.curves import curve_table, train_settings
    from scaling.training.curves import curve_points
    from scaling.training.loop import lr_schedule

    started = time.perf_counter()
    rows = curve_table(wsd_experiment, tracking_uri=wsd_uri)
    wsd = tracking.runs_frame(wsd_experiment, tracking_uri=wsd_uri, role="proxy")
    cosine = tracking.runs_frame(cosine_experiment, tracking_uri=cosine_uri, role="proxy")
    errors, baseline_errors = [], []
    for run in cosine.sort_values("params").itertuples(index=False):
        group = rows[rows.params == float(run.params)]
        same = wsd[(wsd.params == run.params) & (wsd.tokens == run.tokens)]
        if group.empty or same.empty:
            continue
        result = fit("tissue", group, n_bootstrap=n_bootstrap)
        schedule = lr_schedule(train_settings(tracking.run_params(run.run_id, tracking_uri=cosine_uri)))
        final = curve_points({"run_id": run.run_id, "params": float(run.params),
                              "batch_tokens": float(run.batch_tokens)},
                             [len(schedule)], [run.loss], schedule)  # fmt: skip
        predicted, (low, high) = result.predict(final)
        error = float(predicted[0] / run.loss - 1)
        baseline = float(same.loss.iloc[0] / run.loss - 1)
        errors.append(abs(error))
        baseline_errors.append(abs(baseline))
        print(json.dumps({
            "name": run.name, "params": float(run.params), "wsd_runs": int(group.run_id.nunique()),
            "fit_points": len(group), "fit_valid": result.is_valid, "fit": result.params_,
            "cosine_final": float(run.loss), "wsd_final_same_budget": float(same.loss.iloc[0]),
            "predicted_cosine_final": float(predicted[0]), "interval": [float(low[0]), float(high[0])],
            "inside": bool(low[0] <= run.loss <= high[0]), "error": error,
            "baseline_wsd_final_as_prediction_error": baseline,
        }), flush=True)
    print(json.dumps({"summary": True, "sizes": len(errors), "mean_abs_error": sum(errors) / len(errors),
                      "max_abs_error": max(errors),
                      "baseline_mean_abs_error": sum(baseline_errors) / len(baseline_errors),
                      "wall_s": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="16,24,32", help="demo widths to train")
    parser.add_argument("--evals", type=int, default=40, help="evaluations per run")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--save-curves", help="also write the trained curves to this JSON file")
    parser.add_argument("--wsd-experiment", help="fit the logged curves of this WSD ladder instead")
    parser.add_argument("--wsd-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--cosine-experiment", default="demo")
    parser.add_argument("--cosine-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--bootstrap", type=int, default=200)
    args = parser.parse_args()
    if args.wsd_experiment:
        return from_sweeps(args.wsd_experiment, args.wsd_uri, args.cosine_experiment,
                           args.cosine_uri, args.bootstrap)

    from scaling.config.run import TrainConfig
    from scaling.laws.fitting import fit
    from scaling.training.curves import curve_points
    from scaling.training.loop import lr_schedule

    shapes = [int(text) for text in args.shapes.split(",")]
    started = time.perf_counter()
    jobs = [(d, schedule) for d in shapes for schedule in ("wsd", "cosine")]
    with ProcessPoolExecutor(args.processes) as pool:
        runs = list(pool.map(train_curve, *zip(*jobs), [args.evals] * len(jobs)))
    if args.save_curves:  # to try other laws on the same curves without training again
        with open(args.save_curves, "w", encoding="utf-8") as handle:
            json.dump(runs, handle)
    by = {(run["d_model"], run["schedule"]): run for run in runs}
    errors, baseline_errors = [], []
    for d in shapes:
        wsd, cosine = by[d, "wsd"], by[d, "cosine"]
        schedule = lr_schedule(TrainConfig(**wsd["train"]))
        rows = curve_points({"run_id": wsd["schedule"], "params": wsd["params"],
                             "batch_tokens": wsd["train"]["batch_tokens"]},
                            wsd["steps"], wsd["losses"], schedule)
        result = fit("tissue", rows, n_bootstrap=200)
        target = lr_schedule(TrainConfig(**cosine["train"]))
        final = curve_points({"run_id": "cosine", "params": cosine["params"],
                              "batch_tokens": cosine["train"]["batch_tokens"]},
                             [len(target)], [cosine["final"]], target)
        predicted, (low, high) = result.predict(final)
        error = float(predicted[0] / cosine["final"] - 1)
        baseline = float(wsd["final"] / cosine["final"] - 1)
        errors.append(abs(error))
        baseline_errors.append(abs(baseline))
        print(json.dumps({
            "d_model": d, "params": wsd["params"], "fit_points": len(rows),
            "fit_valid": result.is_valid, "fit": result.params_,
            "wsd_final": wsd["final"], "cosine_final": cosine["final"],
            "predicted_cosine_final": float(predicted[0]), "interval": [float(low[0]), float(high[0])],
            "inside": bool(low[0] <= cosine["final"] <= high[0]), "error": error,
            "baseline_wsd_final_as_prediction_error": baseline,
            "wall_s": {"wsd": wsd["wall_s"], "cosine": cosine["wall_s"]},
        }), flush=True)
    print(json.dumps({"summary": True, "mean_abs_error": sum(errors) / len(errors),
                      "max_abs_error": max(errors),
                      "baseline_mean_abs_error": sum(baseline_errors) / len(baseline_errors),
                      "wall_s": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
