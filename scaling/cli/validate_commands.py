"""The ``scaling validate`` command: how well a law extrapolates, measured on whole ladders.

For each table (every shipped dataset, the ones named, or a CSV run table) it rolls the law
out at the cuts that hold out the largest compute levels (:func:`scaling.laws.rollouts.rollout_cuts`
and :func:`~scaling.laws.rollouts.rollout`, what ``benchmarks/extrapolation.py`` runs as method
``scaling``): fit below each cut, score every run above. It prints one row (or JSON line, the
benchmark's field names) per table and cut, then a summary per table. Printing only; the
computing is in :mod:`scaling.laws.rollouts`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import click

from scaling.cli.options import (
    comma_list,
    drop_top_loss_option,
    interval_option,
    law_option,
    output_option,
    print_rows,
    where_option,
)

__all__ = ["validate_command"]


@dataclass
class _Table:
    """One table to validate: its name and source (for messages), the law and the columns it
    reads, the rows kept with the record of the filter, and the cuts."""

    name: str
    source: str
    law: str
    x: list[str] | None
    y: str | None
    frame: Any
    record: dict[str, Any]
    x_cut: str
    cuts: list[float]


@click.command("validate")
@click.argument("more_datasets", nargs=-1, metavar="[NAME]...")
@click.option("--datasets", "dataset_names", multiple=True, metavar="NAME",
              help="Shipped dataset to validate on: repeatable, comma-separated, or with more names "
              "after it (--datasets A B). Default: every one (scaling.datasets.names()).")
@click.option("--csv", help="Validate on this run table instead: a CSV, one row per run, as "
              "'scaling fit --csv' reads it.")
@law_option("Law to roll out (default: each dataset's own, gpt4 for --csv).", default=None)
@click.option("--x", "x_columns", help="Comma-separated x columns, e.g. 'flops' (default: the law's).")
@click.option("--y", "y_column", help="Column to fit (default: the law's, usually 'loss').")
@click.option("--cut-column", "x_cut", metavar="COLUMN",
              help="Compute column the cuts apply to (default: flops; a table without it is cut "
              "on the law's x column when the law reads one).")
@click.option("--cuts", "n_cuts", type=click.IntRange(min=1), default=3, show_default=True, metavar="N",
              help="Cuts per table: fit with the 1, 2, ... N largest compute levels held out.")
@click.option("--min-fit", type=click.IntRange(min=1), metavar="N",
              help="Fewest runs a cut must leave to fit (default: 5, or the law's parameter count "
              "+ 1 when larger).")
@interval_option
@click.option("--bootstrap", "--resamples", "n_bootstrap", type=click.IntRange(min=0), default=200,
              show_default=True, metavar="N",
              help="Bootstrap resamples per fit (0: no band, coverage not measured).")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@where_option
@drop_top_loss_option
@output_option
def validate_command(
    more_datasets, dataset_names, csv, law, x_columns, y_column, x_cut, n_cuts, min_fit, interval,
    n_bootstrap, seed, where, drop_top_loss, output,
):
    """Measure how well a law extrapolates: fit below compute cuts, score every run above.

    For each table and cut it fits the law on the runs up to the cut (each cut holds out one
    more of the largest compute levels) and scores every run above it: mean and max
    |predicted - observed| / observed, the signed bias (positive: the law predicted too high a
    loss), the share inside the one-run band (--interval) and the wall time. A summary per
    table follows. Exits 1 when a cut could not be fitted.

    \b
    Example:
      scaling validate
      scaling validate --datasets gadre2024_c4_m20 porian2024_rw_cosine_frontier
      scaling validate --datasets gadre2024_rw --law gadre --output json
      scaling validate --csv runs.csv --law chinchilla --cuts 2
    """
    from scaling.errors import ConfigError

    names = [name for text in (*dataset_names, *more_datasets) for name in comma_list(text)]
    if csv and names:
        raise ConfigError("give --csv FILE or dataset names, not both")
    x = comma_list(x_columns)
    tables, skipped = _tables(csv, names, law, x, y_column, x_cut, n_cuts, min_fit, where,
                              drop_top_loss, seed)
    settings = {"settings": True, "n_bootstrap": n_bootstrap, "n_cuts": n_cuts, "min_fit": min_fit,
                "x_cut": x_cut, "interval": interval, "seed": seed, "where": where,
                "drop_top_loss": drop_top_loss, "law": law, "x": x, "y": y_column}
    if output == "json":
        _json_line(settings)
        for line in skipped:
            _json_line(line)
    results = []
    with _status(output) as status:
        for number, table in enumerate(tables, 1):
            status(f"rolling out {table.name} ({table.law}), table {number} of {len(tables)}")
            results.append(_roll(table, interval, n_bootstrap, seed))
            if output == "json":
                for record in results[-1]:
                    _json_line(record)
    summaries = [_summary(table, records) for table, records in zip(tables, results)]
    if output == "json":
        for summary in summaries:
            _json_line(summary)
    else:
        _print_text(tables, results, summaries, skipped, interval, n_bootstrap, seed)
    _fail_on_unfitted([record for records in results for record in records])


def _tables(csv, names, law, x, y_column, x_cut, n_cuts, min_fit, where, drop_top_loss, seed):
    """The tables to roll out, each checked (columns, filter, cuts) before anything is fitted.

    A table named by the user that cannot be validated is an error; in the default run over
    every shipped dataset such a table is skipped with its reason (e.g. a ``--where`` over a
    column only some datasets have), unless every one is.
    """
    from scaling import datasets
    from scaling.errors import ScalingError

    if csv:
        from scaling.laws.hparams import law_table
        from scaling.table import load_csv

        law = law or "gpt4"
        frame = law_table(law, load_csv(csv), seed=seed, source=str(csv))  # as 'scaling fit' reads it
        sources = [(str(csv), law, frame)]
    else:
        chosen = names or datasets.names()
        for name in chosen:
            datasets.describe(name)  # an unknown name fails here, before any fit
        sources = [(name, law or datasets.describe(name).law, None) for name in chosen]
    tables, skipped = [], []
    for name, table_law, frame in sources:
        try:
            if frame is None:
                frame = datasets.load(name)
            tables.append(_prepare(name, table_law, frame, x, y_column, x_cut, n_cuts, min_fit,
                                   where, drop_top_loss, source=name if csv else f"dataset {name!r}"))
        except ScalingError as error:
            if csv or names:
                raise
            skipped.append({"dataset": name, "law": table_law, "skipped": str(error)})
    if not tables:
        raise ScalingError(f"no dataset could be validated; first: {skipped[0]['skipped']}")
    return tables, skipped


def _prepare(name, law, frame, x, y_column, x_cut, n_cuts, min_fit, where, drop_top_loss, source):
    from scaling.errors import ConfigError
    from scaling.laws.capability import metric_column
    from scaling.laws.fitting import x_columns
    from scaling.laws.forms import get_law
    from scaling.laws.rollouts import rollout_cuts
    from scaling.laws.selection import filter_rows

    y = metric_column(y_column)
    frame, record = filter_rows(frame, where=where, drop_top_loss=drop_top_loss,
                                y=y or get_law(law).y, source=source)
    columns = ", ".join(map(str, frame.columns))
    if x_cut is None:
        law_x = x_columns(get_law(law), x)
        if "flops" in frame.columns or len(law_x) != 1:
            x_cut = "flops"
        else:
            x_cut = law_x[0]
    if x_cut not in frame.columns:
        raise ConfigError(f"{source}: no column {x_cut!r} to cut on (columns present: {columns}); "
                          "add it or give --cut-column COLUMN")
    cuts = rollout_cuts(frame, law, x_cut=x_cut, n_cuts=n_cuts, min_fit=min_fit, x=x, y=y,
                        source=source)
    return _Table(name, source, law, x, y, frame, record, x_cut, cuts)


def _roll(table: _Table, interval, n_bootstrap, seed) -> list[dict[str, Any]]:
    """The fold records of one table (:func:`scaling.laws.rollouts.fold_records`)."""
    from scaling.laws.rollouts import fold_records, rollout

    result = rollout(table.frame, table.law, cuts=table.cuts, x_cut=table.x_cut, interval=interval,
                     n_bootstrap=n_bootstrap, seed=seed, x=table.x, y=table.y, source=table.source)
    return fold_records(result, table.name)


def _summary(table: _Table, records: list[dict[str, Any]]) -> dict[str, Any]:
    from scaling.laws.rollouts import summarise_folds

    return {"summary": "scaling", "dataset": table.name, "law": table.law,
            "n_rows": table.record["n_kept"], **summarise_folds(records)}


def _json_line(record: dict[str, Any]) -> None:
    """One compact JSON line (non-finite numbers as null), flushed at once."""
    from scaling.formatting import json_safe

    click.echo(json.dumps(json_safe(record)))
    sys.stdout.flush()


class _status:
    """A rich status line on stderr while tables are rolled out, on a terminal only."""

    def __init__(self, output: str) -> None:
        self.live = None
        if output != "json" and sys.stderr.isatty():
            from rich.console import Console

            self.live = Console(stderr=True).status("")

    def __enter__(self):
        if self.live is not None:
            self.live.start()
        return self.update

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def update(self, text: str) -> None:
        if self.live is not None:
            self.live.update(text)


def _percent(value: Any, sign: bool = False) -> str | None:
    from scaling.formatting import is_finite

    if not is_finite(value):
        return None
    return f"{100 * value:+.2f}%" if sign else f"{100 * value:.2f}%"


def _print_text(tables, results, summaries, skipped, interval, n_bootstrap, seed) -> None:
    from scaling.formatting import is_finite
    from scaling.laws.selection import filter_text

    level = round(100 * interval)
    rows = []
    for records in results:
        for r in records:
            note = r.get("error") or ("" if r["is_valid"] else "fit flagged invalid")
            rows.append({
                "dataset": r["dataset"], "law": r["law"], "cut": f"{r['cut']:.3g}",
                "fit": r["n_fit"], "held out": r["n_held"],
                "mean |error|": _percent(r["mean_abs_error"]), "max |error|": _percent(r["max_abs_error"]),
                "bias": _percent(r["bias"], sign=True),
                f"in {level}% band": f"{100 * r['coverage']:.0f}%" if is_finite(r["coverage"]) else None,
                "wall": f"{r['wall_s']:.2f} s" if is_finite(r["wall_s"]) else None, "note": note,
            })  # fmt: skip
    columns = ["dataset", "law", "cut", "fit", "held out", "mean |error|", "max |error|", "bias",
               f"in {level}% band", "wall"] + (["note"] if any(row["note"] for row in rows) else [])
    print_rows(rows, columns, title=f"Leave-largest-out rollouts ({n_bootstrap} resamples, seed {seed})")
    lines = []
    for table, s in zip(tables, summaries):
        scored = s["folds"] - s["failed"]
        line = f"{table.name} ({table.law}): {scored} of {s['folds']} cuts scored"
        if scored:
            line += (f", mean |error| {_percent(s['mean_of_mean_abs_error'])}, worst "
                     f"{_percent(s['worst_max_abs_error'])}, bias {_percent(s['mean_bias'], sign=True)}")
            if s["mean_coverage"] is not None:
                line += f", {100 * s['mean_coverage']:.0f}% inside the {level}% band"
        line += f", {s['total_wall_s']:.1f} s"
        rows_text = filter_text(table.record)
        lines.append(line + (f" ({rows_text})" if rows_text else ""))
    lines += [f"{line['dataset']}: skipped ({line['skipped']})" for line in skipped]
    click.echo("\n".join(lines))


def _fail_on_unfitted(records: list[dict[str, Any]]) -> None:
    """Exit 1, in one line, when any cut could not be fitted (its row says why)."""
    from scaling.errors import ScalingError

    failed = [r for r in records if r.get("error")]
    if failed:
        first = failed[0]
        raise ScalingError(f"{len(failed)} of {len(records)} cuts could not be fitted; first: "
                           f"{first['dataset']} at cut {first['cut']:.3g}: {first['error']}")
