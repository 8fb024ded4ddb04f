"""The report's figures: the data of each as plain DataFrames, and its drawing.

Each figure has a ``*_data`` function that returns what is plotted (checked by tests
against known laws, never as pixels) and a ``draw_*`` function that turns that data into a
matplotlib figure. matplotlib is imported inside the drawing functions only, and through its
object-oriented API (no pyplot state, no GUI backend).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from scaling.laws.selection import run_label

__all__ = [
    "FIGURES",
    "predict_arrays",
    "loss_vs_compute_data",
    "learning_curves_data",
    "isoflop_data",
    "residuals_data",
    "lr_tuning_data",
    "large_run_data",
    "draw_loss_vs_compute",
    "draw_learning_curves",
    "draw_isoflop",
    "draw_residuals",
    "draw_lr_tuning",
    "draw_large_run_reforecasts",
    "draw_large_run_curve",
    "draw_coord_check",
    "figure_png",
    "draw_all",
]


# --------------------------------------------------------------------------- figure data


def predict_arrays(
    result: Any, at: np.ndarray, interval: float, band: str = "fit"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``result.predict`` at ``at`` as three float arrays: point, lower and upper bound."""
    point, (lo, hi) = result.predict(np.asarray(at, dtype=float), interval=interval, band=band)
    return (np.asarray(point, float), np.asarray(lo, float), np.asarray(hi, float))


def loss_vs_compute_data(
    result: Any,
    proxies: pd.DataFrame,
    *,
    x: str,
    y: str,
    target_x: float,
    target_y: float | None = None,
    interval: float = 0.9,
    n_points: int = 200,
    left_out: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Data of figure 1: the proxies, the fitted law and its band out to the target.

    Parameters
    ----------
    result : FitResult
        The law fitted on ``proxies``.
    proxies : DataFrame
        The runs the law was fitted on.
    x, y : str
        Run-table columns on the axes.
    target_x : float
        Compute of the target: the curve and band run from the smallest proxy to here.
    target_y : float, optional
        The target's actual final value, when the run exists.
    interval : float
        Coverage of the band.
    n_points : int
        Points of the curve, evenly spaced in log ``x``.
    left_out : DataFrame, optional
        Finished proxies that were not fitted (e.g. below the fit range), drawn apart.

    Returns
    -------
    dict
        ``proxies`` and ``left_out`` (DataFrames: run, x, y), ``curve`` (DataFrame: x, predicted, lo, hi; the
        band of the law), ``target`` (dict: x, predicted, lo, hi, actual or None; the band
        of one run there), ``x``, ``y``, ``interval``. A caller may add ``points_label``,
        what the legend calls the fitted runs (``proxies`` by default).
    """
    xs = proxies[x].to_numpy(float)
    grid = np.geomspace(xs.min(), max(xs.max(), target_x), n_points)
    point, lo, hi = predict_arrays(result, grid, interval)
    at_point, at_lo, at_hi = predict_arrays(result, np.array([target_x]), interval, band="run")

    def points(runs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "run": [run_label(r) for _, r in runs.iterrows()],
                "x": runs[x].to_numpy(float),
                "y": runs[y].to_numpy(float),
            }
        )

    return {
        "proxies": points(proxies),
        "left_out": points(left_out if left_out is not None else proxies.iloc[:0]),
        "curve": pd.DataFrame({"x": grid, "predicted": point, "lo": lo, "hi": hi}),
        "target": {
            "x": float(target_x),
            "predicted": float(at_point[0]),
            "lo": float(at_lo[0]),
            "hi": float(at_hi[0]),
            "actual": None if target_y is None else float(target_y),
        },
        "x": x,
        "y": y,
        "interval": interval,
    }


def learning_curves_data(
    curves: Mapping[str, pd.DataFrame], runs: pd.DataFrame, *, target_id: str | None = None
) -> pd.DataFrame:
    """Data of figure 2: eval loss against tokens for every run, the target's last.

    Parameters
    ----------
    curves : dict of str to DataFrame
        Learning curves by ``run_id`` (``step``, ``tokens``, ``value``).
    runs : DataFrame
        The run table (gives each run's label and role).
    target_id : str, optional
        ``run_id`` of the target, drawn last (on top).

    Returns
    -------
    DataFrame
        Columns ``run``, ``run_id``, ``role``, ``flops``, ``tokens``, ``value``; proxies in
        increasing compute, then the target.
    """
    info = runs.set_index("run_id") if "run_id" in runs.columns else pd.DataFrame()
    parts = []
    for run_id, curve in curves.items():
        if curve is None or curve.empty or run_id not in info.index:
            continue
        row = info.loc[run_id]
        role = "target" if run_id == target_id else str(row.get("role", "proxy"))
        parts.append(
            pd.DataFrame(
                {
                    "run": run_label({**row.to_dict(), "run_id": run_id}),
                    "run_id": run_id,
                    "role": role,
                    "flops": float(row.get("flops", math.nan)),
                    "tokens": curve["tokens"].to_numpy(float),
                    "value": curve["value"].to_numpy(float),
                }
            )
        )
    columns = ["run", "run_id", "role", "flops", "tokens", "value"]
    if not parts:
        return pd.DataFrame(columns=columns)
    data = pd.concat(parts, ignore_index=True)
    data["_last"] = data["role"] == "target"
    data = data.sort_values(["_last", "flops", "run_id", "tokens"], kind="stable")
    return data.drop(columns="_last").reset_index(drop=True)[columns]


def isoflop_data(
    proxies: pd.DataFrame, *, flops: str = "flops", tolerance: float = 0.05, min_sizes: int = 3
) -> pd.DataFrame:
    """Data of figure 3: proxies grouped into IsoFLOP profiles (same compute, several sizes).

    Parameters
    ----------
    proxies : DataFrame
        Runs with ``params``, ``tokens``, the compute column ``flops`` and ``loss``.
    flops : str
        The compute column the budgets were set in: ``flops`` (6ND) or ``flops_exact`` (what
        an ``isoflop`` sweep fixes).
    tolerance : float
        Runs whose compute differs by less than this fraction share a budget.
    min_sizes : int
        A budget is an IsoFLOP profile when it has at least this many model sizes.

    Returns
    -------
    DataFrame
        Columns ``budget`` (the profile's median compute), ``params``, ``tokens``, ``loss``;
        empty when the sweep has no IsoFLOP profile.

    Examples
    --------
    >>> import pandas as pd
    >>> runs = pd.DataFrame({"params": [1, 2, 4, 8], "tokens": [8, 4, 2, 5],
    ...                      "flops": [48.0, 48.0, 48.0, 240.0], "loss": [3.1, 3.0, 3.2, 2.9]})
    >>> isoflop_data(runs)["budget"].tolist()
    [48.0, 48.0, 48.0]
    """
    columns = ["budget", "params", "tokens", "loss"]
    needed = {"params", "tokens", flops, "loss"}
    if not needed.issubset(proxies.columns) or proxies.empty:
        return pd.DataFrame(columns=columns)
    runs = proxies.dropna(subset=[flops]).sort_values(flops).reset_index(drop=True)
    if runs.empty:
        return pd.DataFrame(columns=columns)
    log_flops = np.log(runs[flops].to_numpy(float))
    group, start = np.zeros(len(runs), dtype=int), log_flops[0]
    for i in range(1, len(runs)):
        if log_flops[i] - start > math.log1p(tolerance):
            group[i], start = group[i - 1] + 1, log_flops[i]
        else:
            group[i] = group[i - 1]
    runs["_group"] = group
    profiles = []
    for _, members in runs.groupby("_group"):
        if members["params"].nunique() >= min_sizes:
            members = members.sort_values("params")
            budget = float(members[flops].median())
            profiles.append(members.assign(budget=budget)[columns])
    if not profiles:
        return pd.DataFrame(columns=columns)
    return pd.concat(profiles, ignore_index=True)


def residuals_data(result: Any, proxies: pd.DataFrame, *, x: str, y: str) -> pd.DataFrame:
    """Data of figure 4: the fit's residuals, ``log(observed / predicted)``, per proxy.

    Returns
    -------
    DataFrame
        Columns ``run``, ``x``, ``observed``, ``predicted``, ``residual``, in increasing ``x``.
    """
    xs = proxies[x].to_numpy(float)
    observed = proxies[y].to_numpy(float)
    predicted = np.asarray(result.predict(xs)[0], float)
    frame = pd.DataFrame(
        {
            "run": [run_label(r) for _, r in proxies.iterrows()],
            "x": xs,
            "observed": observed,
            "predicted": predicted,
            "residual": np.log(observed / predicted),
        }
    )
    return frame.sort_values("x", kind="stable").reset_index(drop=True)


def lr_tuning_data(
    runs: pd.DataFrame, *, interval: float = 0.9, n_bootstrap: int = 1000, seed: int = 0,
    source: str = "run table",
) -> dict[str, Any]:
    """Data of the tuning figure: loss against lr per tuned shape, each shape's optimum
    (:func:`scaling.laws.hparams.tune_optima`) and the lr law fitted through them.

    Returns
    -------
    dict
        ``trials`` (DataFrame: tune, flops, lr, loss), ``optima`` (the optima table),
        ``law`` (DataFrame: flops, lr, lo, hi; None when fewer than three shapes were
        tuned), ``fit`` (the lr law's FitResult or None), ``note`` (why there is no law).

    Raises
    ------
    FitError
        If ``runs`` holds no finished tune trials.
    """
    from scaling.errors import FitError
    from scaling.laws.fitting import fit
    from scaling.laws.hparams import tune_optima, tune_trials

    optima = tune_optima(runs, seed=seed, interval=interval, source=source)
    trials = tune_trials(runs)[["tune", "flops", "lr", "loss"]].astype({"flops": float, "lr": float, "loss": float})
    out: dict[str, Any] = {"trials": trials.reset_index(drop=True), "optima": optima,
                           "law": None, "fit": None, "note": ""}
    try:
        result = fit("lr", optima, n_bootstrap=n_bootstrap, seed=seed, interval=interval,
                     source=f"{source} (tuned optima)")
    except FitError as error:
        out["note"] = f"No lr law: {error}."
        return out
    grid = np.geomspace(optima["flops"].min(), optima["flops"].max(), 50)
    point, lo, hi = predict_arrays(result, grid, interval)
    out["law"] = pd.DataFrame({"flops": grid, "lr": point, "lo": lo, "hi": hi})
    out["fit"] = result
    return out


def large_run_data(
    measured: pd.DataFrame, reforecasts: pd.DataFrame, forecast: Mapping[str, Any], *,
    total_tokens: float, actual: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Data of the large-run figures: the run's curve, its re-forecasts, the registered band.

    Parameters
    ----------
    measured : DataFrame
        The run's eval curve (``tokens``, ``value``).
    reforecasts : DataFrame
        One row per evaluation re-forecast (``tokens``, ``fraction``, ``projected``,
        ``curve_alone``), as :func:`scaling.reporting.report.large_run_section` builds it.
    forecast : mapping
        The registered forecast (``predicted``, ``lo``, ``hi``, ``interval``).
    total_tokens : float
        The run's planned tokens, where the band stands.
    actual : float, optional
        The run's final loss, once it has finished.

    Returns
    -------
    dict
        ``measured`` (DataFrame: tokens, loss), ``reforecasts`` (as given), ``predicted``,
        ``lo``, ``hi``, ``interval``, ``total_tokens``, ``actual``.
    """
    return {
        "measured": pd.DataFrame({"tokens": measured["tokens"].to_numpy(float),
                                  "loss": measured["value"].to_numpy(float)}),
        "reforecasts": reforecasts.reset_index(drop=True),
        "predicted": float(forecast["predicted"]), "lo": float(forecast["lo"]),
        "hi": float(forecast["hi"]), "interval": float(forecast["interval"]),
        "total_tokens": float(total_tokens), "actual": None if actual is None else float(actual),
    }  # fmt: skip


# --------------------------------------------------------------------------- drawing


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    # The object-oriented API without pyplot: no global state, no GUI backend.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _plain_log_y(ax: Any) -> None:
    """Loss ticks as plain numbers (2.5, 3) rather than 2.5x10^0 on a log axis."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)


def draw_loss_vs_compute(data: Mapping[str, Any]) -> Any:
    """Figure 1 from :func:`loss_vs_compute_data`: log-log, proxies, law, band, target."""
    fig = _figure()
    ax = fig.add_subplot()
    curve, target = data["curve"], data["target"]
    ax.fill_between(curve["x"], curve["lo"], curve["hi"], color="C0", alpha=0.2,
                    label=f"law, {data['interval']:.0%} band")
    ax.plot(curve["x"], curve["predicted"], color="C0", label="fitted law")
    proxies, called = data["proxies"], data.get("points_label", "proxies")
    ax.scatter(proxies["x"], proxies["y"], color="k", s=18, zorder=3, label=called)
    left_out = data.get("left_out")
    if left_out is not None and len(left_out):
        ax.scatter(left_out["x"], left_out["y"], facecolors="none", edgecolors="k", s=18,
                   zorder=3, label=f"{called} left out of the fit")
    ax.errorbar([target["x"]], [target["predicted"]],
                yerr=[[target["predicted"] - target["lo"]], [target["hi"] - target["predicted"]]],
                fmt="o", color="C0", capsize=4, label=f"one run, {data['interval']:.0%}")
    if target["actual"] is not None:
        ax.scatter([target["x"]], [target["actual"]], marker="*", s=160, color="C3", zorder=4,
                   label="target (actual)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xlabel(f"compute, {data['x']} (FLOPs)")
    ax.set_ylabel(f"final {data['y']}")
    ax.legend(fontsize="small")
    return fig


def draw_learning_curves(data: pd.DataFrame) -> Any:
    """Figure 2 from :func:`learning_curves_data`: eval loss against tokens, target on top."""
    from matplotlib import colormaps

    fig = _figure()
    ax = fig.add_subplot()
    proxies = list(dict.fromkeys(data.loc[data["role"] != "target", "run_id"]))
    colors = colormaps["viridis"](np.linspace(0.1, 0.9, max(len(proxies), 1)))
    for color, run_id in zip(colors, proxies):
        run = data[data["run_id"] == run_id]
        ax.plot(run["tokens"], run["value"], color=color, lw=1, label=run["run"].iloc[0])
    for run_id in data.loc[data["role"] == "target", "run_id"].unique():
        run = data[data["run_id"] == run_id]
        label = f"{run['run'].iloc[0]} (target)"
        ax.plot(run["tokens"], run["value"], color="C3", lw=2.5, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_y(ax)
    ax.set_xlabel("tokens")
    ax.set_ylabel("eval loss")
    if len(proxies) <= 12:
        ax.legend(fontsize="x-small")
    return fig


# Up to this many IsoFLOP budgets get a legend entry each; more get a colour bar of compute.
ISOFLOP_LEGEND_MAX = 8


def draw_isoflop(data: Mapping[str, Any]) -> Any:
    """Figure 3: IsoFLOP profiles (loss against N per budget) and N_opt(C), D_opt(C).

    Up to :data:`ISOFLOP_LEGEND_MAX` budgets are named in a legend; more (the Chinchilla
    points have 20) are coloured by compute along a colour bar, which fits beside the axes
    where a legend of 20 entries would cover them.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm

    fig = _figure(9.6, 4.0)
    left, right = fig.subplots(1, 2)
    groups = list(data["profiles"].groupby("budget"))
    legend = len(groups) <= ISOFLOP_LEGEND_MAX
    budgets = [float(budget) for budget, _ in groups]
    scale = None
    if not legend:
        norm = LogNorm(min(budgets), max(budgets) if max(budgets) > min(budgets) else 10 * min(budgets))
        scale = ScalarMappable(norm=norm, cmap=colormaps["viridis"])
    for i, (budget, profile) in enumerate(groups):
        color = f"C{i % 10}" if scale is None else scale.to_rgba(float(budget))
        left.plot(profile["params"], profile["loss"], "o-", color=color, ms=4 if scale else 6,
                  label=f"C = {budget:.2g}")
        best = profile.loc[profile["loss"].idxmin()]
        left.scatter([best["params"]], [best["loss"]], marker="*", s=120, color=color, zorder=3)
    left.set_xscale("log")
    left.set_xlabel("non-embedding parameters N")
    left.set_ylabel("final loss")
    if scale is None:
        left.legend(fontsize="small")
    else:
        bar = fig.colorbar(scale, ax=left, pad=0.02)
        bar.set_label(f"compute C ({data.get('axis', '6ND')}, FLOPs)")
    if data["optima"] is None:
        right.set_axis_off()
        return fig
    optima, law = data["optima"], data["law"]
    right.plot(law["flops"], law["params_opt"], color="C0", label="N_opt(C)")
    right.plot(law["flops"], law["tokens_opt"], color="C1", label="D_opt(C)")
    right.scatter(optima["flops"], optima["params_opt"], color="C0", zorder=3)
    right.scatter(optima["flops"], optima["tokens_opt"], color="C1", zorder=3)
    right.set_xscale("log")
    right.set_yscale("log")
    axis = data.get("axis", "6ND")
    right.set_xlabel("compute C = 6ND (FLOPs)" if axis == "6ND" else f"compute C ({axis})")
    right.set_ylabel("parameters, tokens")
    right.legend(fontsize="small")
    return fig


def draw_residuals(data: pd.DataFrame) -> Any:
    """Figure 4 from :func:`residuals_data`: log(observed / predicted) against compute."""
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.5", lw=1)
    ax.scatter(data["x"], data["residual"], color="k", s=18)
    ax.set_xscale("log")
    ax.set_xlabel("compute (FLOPs)")
    ax.set_ylabel("log(observed / predicted)")
    return fig


def draw_lr_tuning(data: Mapping[str, Any]) -> Any:
    """The tuning figure from :func:`lr_tuning_data`: loss against lr per shape with its
    optimum (left), the optima and the fitted lr law against compute (right)."""
    fig = _figure(9.6, 4.0)
    left, right = fig.subplots(1, 2)
    optima = data["optima"]
    for i, row in optima.iterrows():
        color = f"C{i % 10}"
        trials = data["trials"][data["trials"]["tune"] == row["tune"]].sort_values("lr")
        left.plot(trials["lr"], trials["loss"], "o", color=color, ms=4, label=row["tune"])
        left.axvline(row["lr"], color=color, lw=1, ls="--")
    from matplotlib.ticker import NullFormatter

    left.set_xscale("log")
    left.xaxis.set_minor_formatter(NullFormatter())  # a decade or less: minor labels collide
    left.set_xlabel("learning rate")
    left.set_ylabel("final loss")
    left.legend(fontsize="small")
    errors = [optima["lr"] - optima["lr_lower"], optima["lr_upper"] - optima["lr"]]
    right.errorbar(optima["flops"], optima["lr"], yerr=errors, fmt="o", color="k", capsize=3,
                   label="optimum per shape")
    law = data["law"]
    if law is not None:
        right.fill_between(law["flops"], law["lo"], law["hi"], color="C0", alpha=0.2)
        right.plot(law["flops"], law["lr"], color="C0", label="lr_opt(C) = a·C^b")
    right.set_xscale("log")
    right.set_yscale("log")
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlabel("compute C = 6ND (FLOPs)")
    right.set_ylabel("optimal learning rate")
    right.legend(fontsize="small")
    return fig


def draw_large_run_reforecasts(data: Mapping[str, Any]) -> Any:
    """The re-forecasts of :func:`large_run_data` over training: the projected final loss at
    each evaluation (blended with the forecast, and the curve alone) against the registered
    band and, once known, the final loss reached."""
    fig = _figure()
    ax = fig.add_subplot()
    table = data["reforecasts"]
    percent = 100.0 * table["fraction"].to_numpy(float)
    ax.axhspan(data["lo"], data["hi"], color="C0", alpha=0.15,
               label=f"registered forecast, {data['interval']:.0%} band")
    ax.axhline(data["predicted"], color="C0", lw=1, ls="--")
    ax.plot(percent, table["projected"], "o-", color="C0", label="re-forecast (blended, as watch)")
    alone = np.isfinite(table["curve_alone"].to_numpy(float))
    if alone.any():
        ax.plot(percent[alone], table["curve_alone"].to_numpy(float)[alone], "s--", color="C1",
                ms=4, label="the curve alone (watch --no-prior)")
    if data["actual"] is not None:
        ax.axhline(data["actual"], color="C3", lw=1.5, label="final loss reached")
    ax.set_xlabel("training observed (% of the planned tokens)")
    ax.set_ylabel("projected final eval loss")
    ax.legend(fontsize="small")
    return fig


def draw_large_run_curve(data: Mapping[str, Any]) -> Any:
    """The large run's measured curve against where it was projected to land: the eval
    loss, the re-forecast made at each evaluation, and the registered band at the planned
    tokens."""
    fig = _figure()
    ax = fig.add_subplot()
    measured, table, total = data["measured"], data["reforecasts"], data["total_tokens"]
    start = float(table["tokens"].min()) if len(table) else 0.9 * total
    ax.fill_between([start, 1.02 * total], data["lo"], data["hi"], color="C0", alpha=0.15,
                    label=f"registered {data['interval']:.0%} band, at the planned tokens")
    ax.errorbar([total], [data["predicted"]], yerr=[[data["predicted"] - data["lo"]],
                [data["hi"] - data["predicted"]]], fmt="o", color="C0", capsize=4,
                label="registered forecast")
    ax.plot(measured["tokens"], measured["loss"], "o-", color="k", ms=3, lw=1, label="measured eval loss")
    ax.plot(table["tokens"], table["projected"], "x--", color="C0", lw=1,
            label="re-forecast of the final loss, at each evaluation")
    if data["actual"] is not None:
        ax.scatter([total], [data["actual"]], marker="*", s=160, color="C3", zorder=4,
                   label="final loss reached")
    ax.set_xlabel("tokens")
    ax.set_ylabel("eval loss")
    ax.legend(fontsize="small")
    return fig


def draw_coord_check(table: pd.DataFrame) -> Any:
    """The coord check (:func:`scaling.laws.hparams.coord_check`): activation size against width
    (top) and depth (bottom), one panel per parametrisation, one line per layer."""
    names = list(dict.fromkeys(table["parametrization"]))
    fig = _figure(4.0 * len(names), 6.4)
    axes = fig.subplots(2, len(names), squeeze=False, sharey="row")
    for row, (axis, column) in enumerate((("width", "d_model"), ("depth", "n_layer"))):
        for col, name in enumerate(names):
            ax = axes[row][col]
            part = table[(table["parametrization"] == name) & (table["axis"] == axis)]
            for i, (layer, points) in enumerate(part.groupby("layer", sort=False)):
                ax.plot(points[column], points["size"], "o-", color=f"C{i}", label=layer)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{name}: against {axis}", fontsize="medium")
            ax.set_xlabel(column)
    axes[0][0].set_ylabel("mean |activation|")
    axes[1][0].set_ylabel("mean |activation|")
    axes[0][0].legend(fontsize="x-small")
    return fig


FIGURES: dict[str, tuple[str, Any]] = {
    "loss_vs_compute": ("Loss against compute", draw_loss_vs_compute),
    "learning_curves": ("Learning curves", draw_learning_curves),
    "isoflop": ("IsoFLOP curves", draw_isoflop),
    "residuals": ("Residuals of the fit", draw_residuals),
    "lr_tuning": ("Learning rate per shape", draw_lr_tuning),
    "large_run_reforecasts": ("Re-forecasts of the large run", draw_large_run_reforecasts),
    "large_run_curve": ("The large run against its projection", draw_large_run_curve),
}


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def draw_all(figures: Mapping[str, Any]) -> dict[str, bytes]:
    """PNG bytes of every figure in ``figures`` (figure name to its data), by name."""
    return {name: figure_png(FIGURES[name][1](data)) for name, data in figures.items()}
