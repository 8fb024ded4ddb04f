"""Which runs of a run table enter a fit: the proxies, the target, and what is left out and why.

Every fit of the toolkit (``fit``, ``report``, ``compare``, ``capability``, the demo) chooses
its runs here, with :func:`split_runs`: finished proxy runs with usable values of the law's
columns, the target run apart, and optionally the smallest proxies left out when the proxies'
own backtest says the law fits better without them (``fit_range="auto"``). A user's own row
filter (``--where``, a pandas query, and ``--drop-top-loss K``) is :func:`filter_rows`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from scaling.errors import ConfigError, DataError
from scaling.table import finished

__all__ = ["RunSplit", "run_label", "split_runs", "find_run", "filter_rows", "filter_text"]


# Runs logged by the toolkit itself (reports) are not training runs.
_NOT_TRAINING_ROLES = {"report", "sweep"}


@dataclass(frozen=True)
class RunSplit:
    """The run table split into what is fitted, what is predicted and what is left out.

    Attributes
    ----------
    proxies : DataFrame
        Finished proxy runs with usable values: the law is fitted on these.
    target : Series or None
        The large run's row, when the table has one.
    excluded : DataFrame
        Columns ``run``, ``status`` and ``reason``: every run left out, and why.
    """

    proxies: pd.DataFrame
    target: pd.Series | None
    excluded: pd.DataFrame


def run_label(row: Mapping[str, Any]) -> str:
    for key in ("name", "run_key", "run_id"):
        value = row.get(key)
        if isinstance(value, str) and value:
            return value
    return "?"


def split_runs(
    runs: pd.DataFrame,
    *,
    x: str = "flops",
    y: str = "loss",
    target: str | None = None,
    fit_range: str = "all",
    law: str = "gpt4",
) -> RunSplit:
    """Split a run table into the proxies to fit, the target and the runs left out.

    A run is left out when it did not finish (its ``failure`` reason is given when the table
    has one), has no value of ``x`` or ``y``, or has a non-positive one (a power law cannot
    use it). The target is the run ``target`` (by ``run_id`` or ``run_key``) or, when None,
    the one run whose ``role`` is ``target``.

    Parameters
    ----------
    runs : DataFrame
        The run table.
    x, y : str
        Columns the law reads.
    target : str, optional
        Run id (or run key) of the large run.
    fit_range : {"all", "auto"}
        ``"auto"`` also leaves out the smallest proxies when a backtest on the proxies alone
        predicts the largest one better without them (:func:`scaling.laws.backtesting.select_fit_range`
        with ``law``), and keeps them all when they are too few to hold one out;
        ``"all"`` fits every usable proxy.
    law : str
        The law whose fit range is chosen (``fit_range="auto"`` only).

    Returns
    -------
    RunSplit

    Raises
    ------
    DataError
        If ``target`` is not in the table, or the table marks several runs as targets.

    Examples
    --------
    >>> import pandas as pd
    >>> runs = pd.DataFrame({"run_id": ["a", "b", "c"],
    ...                      "status": ["FINISHED", "FAILED", "FINISHED"],
    ...                      "flops": [1e15, 2e15, 4e15], "loss": [3.0, None, 2.8]})
    >>> split = split_runs(runs)
    >>> list(split.proxies["run_id"]), split.excluded["reason"].tolist()
    (['a', 'c'], ['status FAILED'])
    """
    runs = runs.reset_index(drop=True)
    role = runs["role"].astype(str) if "role" in runs.columns else pd.Series("proxy", runs.index)
    is_target = pd.Series(False, index=runs.index)
    if target is not None:
        for key in ("run_id", "run_key"):
            if key in runs.columns:
                is_target |= runs[key].astype(str) == target
        if not is_target.any():
            raise DataError(
                f"run table has no run {target!r}; pass a run_id (or run_key) from the table"
            )
    else:
        is_target = role == "target"
        if is_target.sum() > 1:
            raise DataError(
                f"run table marks {int(is_target.sum())} runs as role 'target'; "
                "pick one with --target RUN_ID"
            )
    target_row = runs[is_target].iloc[0] if is_target.any() else None

    ended = finished(runs)
    reasons: list[str | None] = []
    for _, row in runs.iterrows():
        status = "FINISHED" if ended[row.name] else str(row.get("status"))
        failure = row.get("failure")
        if row.name in runs.index[is_target]:
            reasons.append(None)
        elif role[row.name] in _NOT_TRAINING_ROLES:
            reasons.append(None)
        elif status != "FINISHED":
            has_failure = isinstance(failure, str) and failure
            reasons.append(f"{status.lower()}: {failure}" if has_failure else f"status {status}")
        elif role[row.name] != "proxy":
            reasons.append(f"role {role[row.name]!r} (only proxies are fitted)")
        else:
            reasons.append(_unusable(row, x, y))
    reason = pd.Series(reasons, index=runs.index, dtype=object)
    used = reason.isna() & ~is_target & ~role.isin(_NOT_TRAINING_ROLES)
    left_out = reason.notna()
    excluded = pd.DataFrame(
        {
            "run": [run_label(row) for _, row in runs[left_out].iterrows()],
            "status": runs.loc[left_out, "status"].astype(str).tolist()
            if "status" in runs.columns
            else ["FINISHED"] * int(left_out.sum()),
            "reason": reason[left_out].tolist(),
        }
    )
    proxies = runs[used].reset_index(drop=True)
    if fit_range == "auto":
        proxies, excluded = _fit_range(proxies, excluded, law=law, x=x, y=y)
    elif fit_range != "all":
        raise ConfigError(f"fit_range = {fit_range!r}: use 'all' or 'auto'")
    return RunSplit(proxies, target_row, excluded)


def _fit_range(
    proxies: pd.DataFrame, excluded: pd.DataFrame, *, law: str, x: str, y: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave out the smallest proxies when the proxies' own backtest says the law fits better
    without them; they join ``excluded`` with the reason and the backtest errors."""
    from scaling.laws.backtesting import select_fit_range
    from scaling.laws.forms import get_law

    if len(proxies) < get_law(law).n_params + 2:  # too few to hold one out: fit them all
        return proxies, excluded
    chosen = select_fit_range(law, proxies, x=x, y=y)
    if chosen.dropped == 0:
        return proxies, excluded
    order = proxies.sort_values(x)
    dropped, kept = order.iloc[: chosen.dropped], order.iloc[chosen.dropped :]
    errors = ", ".join(f"{e * 100:+.1f}%" for e in chosen.errors)
    reason = (
        f"below the fit range: leaving out the {chosen.dropped} smallest proxies predicted the "
        f"largest best (held-out error with 0, 1, 2... left out: {errors})"
    )
    more = pd.DataFrame(
        {
            "run": [run_label(row) for _, row in dropped.iterrows()],
            "status": ["FINISHED"] * len(dropped),
            "reason": [reason] * len(dropped),
        }
    )
    return kept.reset_index(drop=True), pd.concat([excluded, more], ignore_index=True)


def _unusable(row: Mapping[str, Any], x: str, y: str) -> str | None:
    for column in (x, y):
        value = pd.to_numeric(pd.Series([row.get(column)]), errors="coerce").iloc[0]
        if pd.isna(value):
            return f"no {column}"
        if value <= 0:
            return f"{column} = {value:g} is not positive"
    return None


def find_run(frame: pd.DataFrame, run_id: str) -> pd.Series:
    """The row of run ``run_id`` in a run table (the first, should the id repeat).

    Raises
    ------
    DataError
        If the table has no such run (or no ``run_id`` column).

    Examples
    --------
    >>> frame = pd.DataFrame({"run_id": ["a1", "b2"], "loss": [3.2, 2.9]})
    >>> float(find_run(frame, "b2")["loss"])
    2.9
    """
    rows = frame[frame["run_id"].astype(str) == run_id] if "run_id" in frame.columns else frame.iloc[:0]
    if rows.empty:
        raise DataError(f"the run table has no run {run_id!r}; pass a run_id from it")
    return rows.iloc[0]


def filter_rows(
    frame: pd.DataFrame,
    *,
    where: str | None = None,
    drop_top_loss: int = 0,
    y: str = "loss",
    source: str = "run table",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Keep the rows a user's filter selects: a pandas query, then drop the K highest ``y``.

    Parameters
    ----------
    frame : DataFrame
        The run table.
    where : str, optional
        A :meth:`pandas.DataFrame.query` expression over the columns, e.g.
        ``"tokens >= 2 * params"``; rows where it is false are dropped.
    drop_top_loss : int
        Drop the ``drop_top_loss`` rows with the highest ``y`` among those left (Besiroglu
        et al. 2024 drop the 5 highest-loss Chinchilla points); 0 drops none.
    y : str
        The column ranked by ``drop_top_loss`` (the fitted one, usually ``loss``).
    source : str
        Where the table came from, named in errors.

    Returns
    -------
    (DataFrame, dict)
        The rows kept, and the record of the filter: ``where``, ``drop_top_loss``,
        ``n_rows`` (before), ``n_kept`` (after).

    Raises
    ------
    DataError
        If the query is not valid over the table, does not give one true/false per row,
        leaves no row, or ``drop_top_loss`` is negative, exceeds the rows or ``y`` is missing.

    Examples
    --------
    >>> runs = pd.DataFrame({"params": [1.0, 2.0, 3.0, 4.0], "tokens": [1.0, 8.0, 9.0, 16.0],
    ...                      "loss": [4.0, 3.0, 2.5, 2.0]})
    >>> kept, record = filter_rows(runs, where="tokens >= 2 * params", drop_top_loss=1)
    >>> kept["loss"].tolist(), record["n_kept"]
    ([2.5, 2.0], 2)
    """
    record = {"where": where, "drop_top_loss": int(drop_top_loss), "n_rows": len(frame),
              "n_kept": len(frame)}
    if where is not None and where.strip():
        frame = _query(frame, where, source)
    if drop_top_loss:
        frame = _drop_top(frame, int(drop_top_loss), y, source)
    record["n_kept"] = len(frame)
    return frame, record


def _query(frame: pd.DataFrame, where: str, source: str) -> pd.DataFrame:
    columns = ", ".join(map(str, frame.columns)) or "none"
    fix = f"write a pandas query over the columns ({columns}), e.g. --where \"tokens >= 2 * params\""
    try:
        mask = frame.eval(where)
    except Exception as error:  # pandas raises many kinds (SyntaxError, UndefinedVariableError, ...)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{source}: --where {where!r} is not a valid row filter ({reason}); {fix}") from None
    if not isinstance(mask, pd.Series) or mask.dtype != bool:
        raise DataError(f"{source}: --where {where!r} does not give true or false per row; {fix}")
    if not mask.any():
        raise DataError(f"{source}: --where {where!r} keeps none of its {len(frame)} rows; loosen it")
    return frame[mask]


def _drop_top(frame: pd.DataFrame, k: int, y: str, source: str) -> pd.DataFrame:
    if k < 0:
        raise DataError(f"--drop-top-loss {k}: give 0 or a positive number of runs to drop")
    if y not in frame.columns:
        raise DataError(f"{source}: --drop-top-loss ranks column {y!r}, which it lacks; "
                        "drop --drop-top-loss or add the column")
    if k >= len(frame):
        raise DataError(f"{source}: --drop-top-loss {k} would drop all {len(frame)} rows; "
                        "give a smaller number")
    values = pd.to_numeric(frame[y], errors="coerce")
    top = values.sort_values(ascending=False, na_position="last", kind="stable").index[:k]
    return frame.drop(index=top)


def filter_text(record: dict[str, Any] | None) -> str | None:
    """The row filter of a fit in words, or None when nothing was filtered.

    >>> filter_text({"where": "tokens >= 2 * params", "drop_top_loss": 5, "n_rows": 245,
    ...              "n_kept": 200})
    "rows: where 'tokens >= 2 * params', the 5 highest-loss dropped (245 -> 200)"
    """
    if not record or (not record.get("where") and not record.get("drop_top_loss")):
        return None
    parts = []
    if record.get("where"):
        parts.append(f"where {record['where']!r}")
    if record.get("drop_top_loss"):
        parts.append(f"the {record['drop_top_loss']} highest-loss dropped")
    return f"rows: {', '.join(parts)} ({record['n_rows']} -> {record['n_kept']})"
