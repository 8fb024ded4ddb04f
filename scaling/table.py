"""The run table: the one contract between what was trained and what is fitted.

One row per run, snake_case columns (docs/architecture.md, "The run table"). It comes from MLflow
(:func:`scaling.sweeps.tracking.runs_frame`) or from a CSV of anyone's runs (:func:`load_csv`).
This module checks columns and coerces values to numbers; it fits nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import DataError

__all__ = [
    "RUN_TABLE_COLUMNS",
    "NUMERIC_COLUMNS",
    "load_csv",
    "require_columns",
    "coerce_numeric",
    "finished",
]

#: Every column of the run-table contract (docs/architecture.md), in its order; extra metrics come as further columns.
RUN_TABLE_COLUMNS: tuple[str, ...] = (
    "run_id",
    "run_key",
    "sweep",
    "role",
    "status",
    "n_layer",
    "d_model",
    "n_head",
    "context",
    "vocab_size",
    "params",
    "params_total",
    "tokens",
    "flops",
    "flops_exact",
    "lr",
    "batch_tokens",
    "seed",
    "loss",
    "bpb",
)

#: Columns that hold numbers (MLflow params arrive as strings and are coerced): all but the
#: five labels (run_id, run_key, sweep, role, status).
NUMERIC_COLUMNS: tuple[str, ...] = RUN_TABLE_COLUMNS[5:]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    """Raise one clear error if ``frame`` lacks any of ``columns``.

    Parameters
    ----------
    frame : DataFrame
        The run table.
    columns : iterable of str
        Columns that must be present.
    source : str
        Where the table came from (a file name, ``experiment 'demo'``), named in the error.

    Raises
    ------
    DataError
        Naming the missing columns, the source and the columns it does have.

    Examples
    --------
    >>> require_columns(pd.DataFrame({"loss": [2.0]}), ["loss"], "runs.csv")
    """
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} (columns present: {have}); "
            "add them or choose other columns with --x/--y"
        )


def coerce_numeric(frame: pd.DataFrame, columns: Iterable[str], source: str) -> pd.DataFrame:
    """Return a copy of ``frame`` with ``columns`` converted to float.

    Empty strings and missing values become NaN; any other value that is not a number is an
    error naming the column, the first bad value and its row.

    Raises
    ------
    DataError
        If a value cannot be read as a number.

    Examples
    --------
    >>> frame = pd.DataFrame({"params": ["1e6", "2e6"], "loss": [3.1, None]})
    >>> coerce_numeric(frame, ["params", "loss"], "runs.csv")["params"].tolist()
    [1000000.0, 2000000.0]
    """
    out = frame.copy()
    for column in columns:
        if column not in out.columns:
            continue
        raw = out[column]
        values = pd.to_numeric(raw.replace("", np.nan), errors="coerce")
        bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bad.any():
            row = bad.to_numpy().nonzero()[0][0]
            raise DataError(
                f"{source}: column {column!r} row {row} holds {raw.iloc[row]!r}, not a number; "
                "fix or drop that run"
            )
        out[column] = values.astype(float)
    return out


def load_csv(path: str | Path) -> pd.DataFrame:
    """Read a run table from a CSV file, numeric columns coerced to float.

    Parameters
    ----------
    path : str or Path
        A CSV with a header row; any subset of :data:`RUN_TABLE_COLUMNS` plus extra metrics.

    Returns
    -------
    DataFrame

    Raises
    ------
    DataError
        If the file does not exist, is empty, cannot be parsed, or holds non-numbers in a
        numeric column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give the path of a CSV run table")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; a run table needs a header and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise DataError(f"{path}: not a readable CSV ({reason})") from None
    if frame.empty:
        raise DataError(f"{path}: the table has a header but no runs")
    numeric = [column for column in frame.columns if column in NUMERIC_COLUMNS]
    return coerce_numeric(frame, numeric, str(path))




def finished(frame: pd.DataFrame) -> pd.Series:
    """Which rows are finished runs: ``status`` FINISHED, or no status at all.

    The one filter every fit, forecast and report uses. A missing ``status`` column, or a
    blank cell in it, counts as finished: a CSV of anyone's runs lists runs that ended.

    >>> finished(pd.DataFrame({"status": ["FINISHED", "FAILED", None]})).tolist()
    [True, False, True]
    """
    if "status" not in frame.columns:
        return pd.Series(True, index=frame.index)
    status = frame["status"]
    return status.isna() | (status.astype(str) == "FINISHED")
