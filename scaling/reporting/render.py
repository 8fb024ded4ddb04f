"""Rendering a :class:`~scaling.reporting.report.Report`: Markdown, self-contained HTML, terminal text.

A report is first turned into a list of blocks (headings, paragraphs, lists, tables,
images) by :func:`blocks`; :func:`render_markdown` and :func:`render_html` render the same
blocks, so both say exactly the same. :func:`write_report` writes ``index.html`` (figures as
base64 data URIs, inline CSS: it opens offline) and ``report.md`` with the PNG figures beside
it, into a temporary directory renamed at the end. Every "value ± error" goes through
:mod:`scaling.formatting`.
"""

from __future__ import annotations

import base64
import html
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scaling.errors import DataError
from scaling.formatting import (
    format_band,
    format_count,
    format_flops,
    is_finite,
)
from scaling.laws.fitting import parameter_rows
from scaling.laws.selection import run_label
from scaling.reporting.figures import FIGURES, draw_all

if TYPE_CHECKING:
    from scaling.reporting.report import Report

__all__ = ["blocks", "render_markdown", "render_html", "write_report", "comparison_text"]


# A report is rendered from a list of blocks, so Markdown and HTML say exactly the same:
# ("h1"|"h2"|"p", text), ("list"|"footer", [text]), ("table", header, rows), ("img", name, alt).
Block = tuple


def _g(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _headline(report: Report) -> list[Block]:
    law = report.law
    runs = "proxy runs" if report.inputs.from_sweep else "runs"
    text = (
        f"At {report.x} = {format_flops(report.target_x, digits=3)} ({report.target_note}), the law "
        f"{law.formula} fitted on {len(report.split.proxies)} {runs} predicts a final "
        f"{report.y} of {format_band(report.predicted, report.lo, report.hi)} "
        f"({report.interval:.0%} interval for one run {_g(report.lo, 4)} to "
        f"{_g(report.hi, 4)})."
    )
    if not report.fit.is_valid:
        text += (
            " The fit is not valid (" + "; ".join(report.fit.reasons_) + "), so neither this "
            "prediction nor its interval can be relied on as it stands; see section 5."
        )
    blocks: list[Block] = [("p", text)]
    row = report.prediction
    if row is not None:
        verdict = "inside" if row.inside else "outside"
        text = (
            f"The target run reached {_g(row.actual, 4)}: the prediction is off by "
            f"{row.relative_error * 100:+.1f}%, {verdict} the interval."
        )
        if row.crossing is not None:
            text += (
                " Its learning curve first reached the predicted loss at "
                f"{format_count(row.crossing.tokens)} tokens (step {row.crossing.step:.0f}, "
                f"{row.crossing.fraction:.0%} of training)."
            )
        elif row.has_curve:
            text += " Its learning curve never reached the predicted loss."
        blocks.append(("p", text))
    if "target" in report.notes:
        blocks.append(("p", report.notes["target"]))
    return blocks


def _figure_blocks(report: Report, name: str, number: int, text: str | None = None) -> list[Block]:
    title = FIGURES[name][0]
    blocks: list[Block] = [("h2", f"{number}. {title}")]
    if name in report.figures:
        blocks.append(("img", name, title))
        if text:
            blocks.append(("p", text))
    else:
        blocks.append(("p", report.notes.get(name, "Not available.")))
    return blocks


def _frame_table(frame: pd.DataFrame) -> Block:
    def cell(value: Any) -> str:
        if isinstance(value, (bool, np.bool_)):
            return "yes" if value else "no"
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        if isinstance(value, (float, np.floating)):
            return "" if math.isnan(value) else _g(float(value), 4)
        return str(value)

    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    return ("table", [str(c) for c in frame.columns], rows)


def blocks(report: Report) -> list[Block]:
    """The report as blocks, which :func:`render_markdown` and :func:`render_html` render."""
    out: list[Block] = [("h1", f"Scaling report: {report.inputs.name}")]
    out += _headline(report)
    out += _figure_sections(report)
    out.append(("h2", "5. Fitted parameters"))
    out.append(_parameter_table(report))
    out.append(("list", _diagnostics(report)))
    out += _backtest_and_allocation_blocks(report)
    number = 8
    if report.capabilities is not None:
        out += _capability_blocks(report, number)
        number += 1
    if report.large_run is not None:
        out += _large_run_blocks(report, number)
        number += 1
    out.append(("h2", f"{number}. What went in"))
    out += _inputs_blocks(report)
    if "lr_tuning" in report.figures:
        out += _tuning_blocks(report, number + 1)
    out.append(_footer(report))
    return out


def _figure_sections(report: Report) -> list[Block]:
    """Sections 1-4: loss against compute, learning curves, IsoFLOP profiles, residuals."""
    span = report.figures["loss_vs_compute"]["proxies"]["x"]
    ratio = report.target_x / float(span.max())
    sweep = report.inputs.from_sweep
    out = _figure_blocks(
        report, "loss_vs_compute", 1,
        f"{'Proxies' if sweep else 'Fitted runs'} span {report.x} = {format_flops(span.min(), digits=3)} to "
        f"{format_flops(span.max(), digits=3)}; the prediction is {_g(ratio)}x the largest "
        f"{'proxy' if sweep else 'fitted run'}'s compute. The band is the "
        f"{report.interval:.0%} bootstrap interval of the law; the error bar at the target adds "
        f"the {'proxies' if sweep else 'runs'}' scatter around it, which one run also has.",
    )
    out += _figure_blocks(
        report, "learning_curves", 2,
        "Eval loss of every run; the target's curve is drawn last, in red.",
    )
    out += _figure_blocks(
        report, "isoflop", 3,
        "Loss against model size at fixed compute; stars mark each budget's best run.",
    )
    if "isoflop_law" in report.notes:
        out.append(("p", report.notes["isoflop_law"]))
    residuals = report.figures["residuals"]
    worst = residuals.loc[residuals["residual"].abs().idxmax()]
    out += _figure_blocks(
        report, "residuals", 4,
        f"Largest residual: {worst['residual'] * 100:+.2f}% ({worst['run']}); "
        f"root mean square {float(np.sqrt(np.mean(residuals['residual'] ** 2))) * 100:.2f}%.",
    )
    return out


def _backtest_and_allocation_blocks(report: Report) -> list[Block]:
    """Sections 6 and 7: the backtest table and the compute-optimal allocation."""
    out: list[Block] = [("h2", "6. Backtest")]
    if report.backtest is None:
        out.append(("p", report.notes.get("backtest", "Not available.")))
    else:
        out.append(
            ("p", "The law fitted on the runs below each compute cut, scored on the runs above it.")
        )
        out.append(_frame_table(report.backtest))
    out.append(("h2", "7. Compute-optimal allocation"))
    out.append(("p", report.notes["optimal"]))
    if report.optimal is not None:
        out.append(_frame_table(report.optimal))
    if "allocations" in report.notes:
        out.append(("p", report.notes["allocations"]))
    if report.allocations is not None:
        out.append(_frame_table(report.allocations))
    if "allocation_agreement" in report.notes:
        out.append(("p", report.notes["allocation_agreement"]))
    return out


def _footer(report: Report) -> Block:
    """The footer: what built the report, and (when the runs carry it) what trained the runs."""
    import scaling

    inputs = report.inputs
    lines = [
        f"scaling {scaling.__version__} · sweep {inputs.sweep or 'unknown'} · config hash "
        f"{inputs.config_hash or 'unknown'} · tracking "
        f"{inputs.tracking_uri or f'none ({inputs.source})'} · {report.date}"
    ]
    provenance = _provenance_line(report)
    if provenance:
        lines.append(provenance)
    return ("footer", lines)


def _distinct(runs: pd.DataFrame, column: str) -> list[str]:
    """The distinct non-empty values of a text column, in order of first appearance."""
    if column not in runs.columns:
        return []
    values = [str(v) for v in runs[column] if isinstance(v, str) and v]
    return list(dict.fromkeys(values))


def _provenance_line(report: Report) -> str | None:
    """Commit, versions, device and corpus hash of the runs the report was built from (the
    fitted proxies and the target; see scaling.sweeps.tracking.PROVENANCE_COLUMNS), or None
    when none of them logged any (a CSV of someone else's runs)."""
    runs = report.split.proxies
    if report.split.target is not None:
        runs = pd.concat([runs, report.split.target.to_frame().T], ignore_index=True)
    join = " / ".join
    items = []
    commits = [commit[:12] for commit in _distinct(runs, "git_commit")]
    if commits:
        dirty = " (uncommitted changes)" if "true" in _distinct(runs, "git_dirty") else ""
        items.append(f"commit {join(commits)}{dirty}")
    versions = [
        f"{name} {join(found)}"
        for name in ("scaling", "torch", "cuda", "mlflow", "optuna")
        if (found := _distinct(runs, f"version_{name}"))
    ]
    if versions:
        items.append(", ".join(versions).replace("cuda ", "CUDA "))
    devices = _distinct(runs, "device")
    if devices:
        counts = _distinct(runs, "device_count")
        items.append(f"device {join(devices)}" + (f" (count {join(counts)})" if counts else ""))
    hosts = _distinct(runs, "host")
    if hosts:
        items.append(f"host {join(hosts)}")
    corpus = _distinct(runs, "corpus_hash")
    if corpus:
        items.append(f"corpus hash {join(corpus)}")
    return f"Runs trained with: {' · '.join(items)}." if items else None


def _capability_blocks(report: Report, number: int) -> list[Block]:
    finished = "finished proxy" if report.inputs.from_sweep else "finished run"
    blocks: list[Block] = [
        ("h2", f"{number}. Capability forecasts"),
        ("p", "Each task the runs were scored on, forecast at the same compute from every "
              f"{finished}: GPT-4's -E[log pass_rate] = alpha·C^(-k), and the accuracy "
              "through the task's loss (a·C^b + c, then a sigmoid of that loss). Intervals are "
              "for one run; an accuracy of 0 counts as half an item right. A forecast whose "
              "scores do not move with compute, or whose interval covers more than half of "
              "the metric's range, is marked not predictable instead of given a number."),
    ]
    if "capabilities" in report.notes:
        blocks.append(("p", report.notes["capabilities"]))
    return [*blocks, _frame_table(report.capabilities)]


def _large_run_blocks(report: Report, number: int) -> list[Block]:
    """The large run against its forecast of record: the forecast, the re-forecasts ``watch``
    would have made at each evaluation (a table and a figure), the curve against the band."""
    section = report.large_run
    target = report.split.target
    label = run_label(target) if target is not None else "the target run"
    out: list[Block] = [("h2", f"{number}. The large run")]
    forecast = section["forecast"]
    if forecast is None:
        experiment = report.inputs.sweep or "NAME"
        out.append(("p", f"No forecast of record was registered for the large run {label}, so "
                    "there is nothing it was committed to before it ran. Register one before a "
                    f"large run starts: scaling forecast --experiment {experiment} --target-spec "
                    "run.yaml (or --params N --tokens D); compare, watch and this section then "
                    "score the run against it (scaling report --forecast FILE takes a file)."))
        return out
    text = (
        f"Forecast of record: final loss {forecast['predicted']:.4f}, "
        f"{float(forecast['interval']):.0%} interval for one run {forecast['lo']:.4f} to "
        f"{forecast['hi']:.4f}, registered {forecast['created_utc']} as "
        + (f"run {forecast['run_id']}" if forecast.get("run_id") else str(forecast.get("path", "a file")))
        + f"; law {forecast['law']}"
        + (f" ({forecast['formula']})" if forecast.get("formula") else "")
        + (f" on {forecast['n_proxies']} proxies" if forecast.get("n_proxies") else "")
        + f", at {forecast['x']} = {format_flops(float(forecast['target_x']), digits=3)}."
    )
    if section["actual"] is not None:
        actual = section["actual"]
        inside = "inside" if forecast["lo"] <= actual <= forecast["hi"] else "outside"
        text += (f" The run reached {actual:.4f}: the forecast is off by "
                 f"{(forecast['predicted'] - actual) / actual * 100:+.1f}%, {inside} its band.")
    out.append(("p", text))
    if section["note"]:
        out.append(("p", section["note"]))
    table = section["reforecasts"]
    if table is None:
        return out
    if table.empty:
        out.append(("p", "The run has no evaluation past 10% of its planned tokens yet: no re-forecast."))
        return out
    law = ("the learning-rate annealing law, L = E + A·S1^(-alpha) - C·S2 on "
           f"{section['schedule_source']}" if section["schedule_source"] != "no learning-rate schedule"
           else "the power law E + A·t^(-alpha) in tokens (no learning-rate schedule known)")
    out.append(("p", (
        "Re-forecasts: the final loss scaling watch would have projected at each evaluation, "
        f"from {table['fraction'].iloc[0]:.0%} of the planned "
        f"{format_count(section['total_tokens'])} tokens on: the curve so far (from 10% of the "
        f"tokens) fitted with {law}, blended with the forecast by the fraction observed; 'curve "
        "alone' is watch --no-prior. A re-forecast outside the band is where watch alerts.")))
    header = ["step", "tokens", "observed", "eval loss", "re-forecast", "curve alone", "in band"]
    actual = section["actual"]
    if actual is not None:
        header.append("error")
    rows = []
    for row in table.itertuples():
        cells = [f"{row.step:.0f}", format_count(row.tokens), f"{row.fraction:.0%}", f"{row.loss:.4f}",
                 f"{row.projected:.4f}" if math.isfinite(row.projected) else "-",
                 f"{row.curve_alone:.4f}" if math.isfinite(row.curve_alone) else "-",
                 "yes" if row.inside else "no"]
        if actual is not None:
            cells.append(f"{(row.projected - actual) / actual * 100:+.2f}%" if math.isfinite(row.projected) else "-")
        rows.append(cells)
    out.append(("table", header, rows))
    for name, caption in (
        ("large_run_reforecasts", "Each evaluation's re-forecast of the final loss against the "
         "registered band" + (" and the final loss reached." if actual is not None else ".")),
        ("large_run_curve", "The measured eval loss, the re-forecast made at each evaluation and "
         "the registered band at the planned tokens."),
    ):
        if name in report.figures:
            out += [("img", name, FIGURES[name][0]), ("p", caption)]
    return out


def _tuning_blocks(report: Report, number: int) -> list[Block]:
    """Loss against lr per tuned shape, each shape's optimum, and the lr law through them."""
    data = report.figures["lr_tuning"]
    optima = data["optima"]
    out = _figure_blocks(
        report, "lr_tuning", number,
        "Left: final loss of every tune trial against its learning rate; dashed, each shape's "
        "optimum (minimum of a parabola in log lr through its better trials). Right: the optima "
        f"with {report.interval:.0%} bootstrap intervals over trials, and the lr law fitted "
        "through them. The loss law above is fitted to each shape's best trial.",
    )
    table = pd.DataFrame({
        "shape": optima["tune"], "trials": optima["trials"], "C": [format_flops(v, digits=3) for v in optima["flops"]],
        "lr_opt": [format_band(*values) for values in zip(optima["lr"], optima["lr_lower"], optima["lr_upper"])],
        "how": optima["method"], "best loss": optima["loss"],
    })  # fmt: skip
    out.append(_frame_table(table))
    result = data["fit"]
    if result is None:
        out.append(("p", data["note"]))
    else:
        a, b = result.params_["a"], result.params_["b"]
        (a_lo, a_hi), (b_lo, b_hi) = result.intervals_["a"], result.intervals_["b"]
        out.append(("p", f"lr_opt(C) = a·C^b with a = {format_band(a, a_lo, a_hi)}, b = {format_band(b, b_lo, b_hi)} "
                         f"({report.interval:.0%} intervals, {len(optima)} shapes)."))
    return out


def trained_share(runs: pd.DataFrame) -> pd.Series:
    """The share of each run's budget it trained itself: 1, or for a WSD branch
    (``branch_step`` set) the cooldown after its branch point (docs/architecture.md,
    "WSD ladders: branches")."""
    share = pd.Series(1.0, index=runs.index)
    if {"branch_step", "batch_tokens", "tokens"} <= set(runs.columns):
        step = pd.to_numeric(runs["branch_step"], errors="coerce")
        branched = step.notna()
        share[branched] = 1.0 - step[branched] * runs.loc[branched, "batch_tokens"] / runs.loc[branched, "tokens"]
    return share


def _ladder_item(runs: pd.DataFrame, x: str) -> str | None:
    """What a WSD ladder with branches cost: its compute against separate runs of the same
    budgets; None for runs without branches."""
    if "branch_of" not in runs.columns or x not in runs.columns:
        return None
    proxies = runs[runs[x].notna()]
    if "role" in proxies.columns:
        proxies = proxies[proxies["role"] == "proxy"]
    branched = proxies["branch_of"].notna() & (proxies["branch_of"].astype(str) != "")
    if not branched.any():
        return None
    separate = float(proxies[x].sum())
    trained = float((proxies[x] * trained_share(proxies)).sum())
    return (f"WSD ladder: {int((~branched).sum())} stable runs and {int(branched.sum())} cooldown "
            f"branches; it trained {format_flops(trained, digits=3)} FLOPs ({x}), "
            f"{trained / separate:.2f}x the {format_flops(separate, digits=3)} of separate runs of the same budgets.")


def pruning_item(runs: pd.DataFrame, x: str = "flops") -> str | None:
    """What pruning saved a tune sweep: each pruned trial's budget past its pruned step
    (``pruned_step``), against what all the trials would have trained; None when no trial was
    pruned."""
    if "pruned_step" not in runs.columns or "tune" not in runs.columns:
        return None
    trials = runs[runs["tune"].notna()]
    step = pd.to_numeric(trials["pruned_step"], errors="coerce")
    if not step.notna().any():
        return None
    full = trials[x] if x in trials.columns and trials[x].notna().all() else 6 * trials["params"] * trials["tokens"]
    trained = (step * trials["batch_tokens"] / trials["tokens"]).where(step.notna(), 1.0)
    saved = float((full * (1 - trained)).sum())
    return (f"Tuning: {int(step.notna().sum())} of {len(trials)} trials pruned on their intermediate eval "
            f"losses; pruning saved {format_flops(saved, digits=3)} FLOPs, "
            f"{saved / float(full.sum()):.0%} of what the trials would have trained.")


def _inputs_blocks(report: Report) -> list[Block]:
    split, x = report.split, report.x
    proxies = split.proxies
    spent = float((proxies[x] * trained_share(proxies)).sum())
    items = [
        f"Source: {report.inputs.source}.",
        f"{'Proxy runs' if report.inputs.from_sweep else 'Runs'} fitted: {len(proxies)}, compute spent {format_flops(spent, digits=3)} FLOPs "
        f"({x}), from {format_flops(float(proxies[x].min()), digits=3)} to {format_flops(float(proxies[x].max()), digits=3)} each.",
    ]
    every = report.inputs.all_runs if report.inputs.all_runs is not None else report.inputs.runs
    for extra in (_ladder_item(every, x), pruning_item(every, x)):
        if extra is not None:
            items.append(extra)
    if split.target is not None:
        target = split.target
        spent = f", compute {format_flops(float(target[x]), digits=3)} FLOPs" if is_finite(target.get(x)) else ""
        status = target.get("status", "FINISHED")
        items.append(f"Target run: {run_label(target)} (status {status}{spent}).")
    else:
        items.append("Target run: none in the run table.")
    items.append(f"Runs left out: {len(split.excluded)}.")
    out: list[Block] = [("list", items)]
    if len(split.excluded):
        out.append(_frame_table(split.excluded))
    return out


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report, *, images: Mapping[str, str] | None = None) -> str:
    """The report as Markdown; figures are linked as ``NAME.png`` beside ``report.md``.

    Parameters
    ----------
    report : Report
    images : dict of str to str, optional
        Figure name to the link written; ``NAME.png`` by default.

    Returns
    -------
    str
    """
    lines: list[str] = []
    for block in blocks(report):
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "img":
            link = (images or {}).get(block[1], f"{block[1]}.png")
            lines += [f"![{block[2]}]({link})", ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
            lines.append("|" + "|".join(" --- " for _ in header) + "|")
            lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "footer":
            lines += ["---", ""]
            for line in block[1]:
                lines += [line, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 52rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; line-height: 1.5; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
img { max-width: 100%; height: auto; display: block; margin: 0.5rem 0; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
footer { margin-top: 2rem; border-top: 1px solid #ddd; color: #666; font-size: 0.85rem; }
"""


def render_html(report: Report, images: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page: figures as base64 data URIs, inline CSS.

    Parameters
    ----------
    report : Report
    images : dict of str to bytes
        PNG bytes by figure name (:func:`draw_figures`).

    Returns
    -------
    str
        A page that opens offline: no external stylesheet, script, font or image.
    """
    esc = html.escape
    body: list[str] = []
    title = f"Scaling report: {report.inputs.name}"
    for block in blocks(report):
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "img":
            data = base64.b64encode(images[block[1]]).decode("ascii")
            image = f'<img src="data:image/png;base64,{data}" alt="{esc(block[2])}">'
            body.append(f"<figure>{image}</figure>")
        elif kind == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            rows = "".join(
                "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block[2]
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "footer":
            body.append("<footer>" + "".join(f"<p>{esc(line)}</p>" for line in block[1]) + "</footer>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


_REPORT_FILES = ("index.html", "report.md")


def write_report(report: Report, directory: str | os.PathLike[str]) -> Path:
    """Write ``index.html``, ``report.md`` and the figures' PNGs into ``directory``.

    Everything is written into a temporary directory beside ``directory`` and renamed at
    the end, so a failure leaves no half-written report. An earlier report in ``directory``
    is replaced; any other non-empty directory is refused.

    Parameters
    ----------
    report : Report
    directory : str or path

    Returns
    -------
    Path
        ``directory``.

    Raises
    ------
    DataError
        If ``directory`` exists, is not empty and does not hold a report.
    """
    directory = Path(directory)
    if directory.exists() and (
        not directory.is_dir()
        or (any(directory.iterdir()) and not any((directory / f).exists() for f in _REPORT_FILES))
    ):
        raise DataError(
            f"{directory} exists and is not a report directory; pass another -o or remove it"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        images = draw_all(report.figures)
        for name, png in images.items():
            (staging / f"{name}.png").write_bytes(png)
        (staging / "report.md").write_text(render_markdown(report), encoding="utf-8")
        (staging / "index.html").write_text(render_html(report, images), encoding="utf-8")
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a report is for sharing
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, old / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _parameter_table(report: Report) -> Block:
    rows = []
    for p in parameter_rows(report.fit):  # the rows `scaling fit` prints, as a table
        lo, hi = p["lower"], p["upper"]
        known = is_finite(lo) and is_finite(hi)
        shown = p["text"] if known else f"{p['value']:.4g}"
        interval = f"{lo:.4g} to {hi:.4g}" if known else "none"
        bounds = f"{_bound(p['bound_lower'])} to {_bound(p['bound_upper'])}"
        rows.append([p["name"], shown, interval, bounds, "yes" if p["at_bound"] else "no"])
    header = ["parameter", "value", f"{report.fit.interval:.0%} interval", "bounds", "at bound"]
    return ("table", header, rows)


def _bound(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


def _diagnostics(report: Report) -> list[str]:
    s = report.fit.summary()
    items = [
        f"Law: {s['law']}, {s['formula']}, fitted to {s['y']} against {', '.join(s['x'])}.",
        f"Runs fitted: {s['n_points']}; starts: {s['n_starts']} "
        f"({s['n_starts_converged']} converged, {s['n_starts_screened']} screened out); "
        f"bootstrap resamples: {s['n_bootstrap']} ({s['n_bootstrap_failed']} failed).",
        f"Huber objective {s['objective']:.3g}; log residuals: root mean square "
        f"{s['rms_log_residual']:.2%}, largest {s['max_abs_log_residual']:.2%}.",
    ]
    if s["is_valid"]:
        items.append("The fit is valid: converged, no parameter at a bound, every start agrees.")
    else:
        items.append("The fit is NOT valid: " + "; ".join(s["reasons"]) + ".")
    return items


def comparison_text(comparison: Any) -> str:
    """A :class:`scaling.reporting.comparison.Comparison` as terminal text: the headline, then a table.

    One row per metric: predicted ± half interval, the interval, actual, relative error,
    inside or not, and where the learning curve reached the prediction.
    """
    header = [
        "metric", "law", "predicted", "interval", "actual", "error", "inside", "curve reached it"
    ]
    rows = []
    for row in comparison.metrics:
        if row.crossing is not None:
            reached = f"{format_count(row.crossing.tokens)} tokens ({row.crossing.fraction:.0%})"
        else:
            reached = "never" if row.has_curve else "no curve"
        if row.unpredictable:  # no forecast, so nothing to score
            rows.append([row.metric, row.law, row.predicted_text(), "-", _g(row.actual, 4),
                         "-", "-", reached])
            continue
        rows.append([
            row.metric, row.law, row.predicted_text(),
            f"{_g(row.lo, 4)} to {_g(row.hi, 4)}", _g(row.actual, 4),
            f"{row.relative_error * 100:+.1f}%", "yes" if row.inside else "no", reached,
        ])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [comparison.headline()]
    loss_fit = comparison.fits.get(comparison.loss.metric)
    if loss_fit is not None and not loss_fit.is_valid:
        lines.append("WARNING, fit invalid: " + "; ".join(loss_fit.reasons_))
    lines.append("")
    for cells in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines)
