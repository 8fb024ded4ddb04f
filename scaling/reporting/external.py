"""A large run trained elsewhere: its evaluation curve from a CSV file, its size from flags.

A run logged by another framework (Megatron, torchtitan, NeMo) is compared from a CSV of its
evaluation curve: columns ``tokens`` (or ``step``, with the run's tokens per step) and ``loss``.
:func:`read_curve_csv` reads it with one-line errors; :func:`external_target` makes the
run-table row :func:`scaling.reporting.comparison.compare` reads (its final loss is the curve's
last evaluation).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.errors import DataError

__all__ = ["read_curve_csv", "external_target", "with_external_target"]


def read_curve_csv(path: str | Path, *, batch_tokens: float | None = None) -> pd.DataFrame:
    """A learning curve (``step``, ``tokens``, ``value``) from a CSV of evaluations.

    Parameters
    ----------
    path : str or path
        CSV with a ``loss`` column and a ``tokens`` column, or a ``step`` column and
        ``batch_tokens`` (tokens = step x batch_tokens).
    batch_tokens : float, optional
        Tokens per optimizer step, for a curve by step.

    Returns
    -------
    DataFrame
        One row per evaluation, sorted by tokens.

    Raises
    ------
    DataError
        One line naming the file, the column or value and the fix.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"curve file {path} does not exist; pass --target-csv CURVE.csv") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        reason = " ".join(str(error).split())[:120]
        raise DataError(f"curve file {path} is not a CSV ({reason}); write columns tokens,loss") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "loss" not in frame.columns:
        raise DataError(f"curve file {path}: no column 'loss' (columns: {', '.join(frame.columns)}); "
                        "name the evaluation loss column 'loss'")
    if "tokens" in frame.columns:
        tokens = _numbers(frame, "tokens", path)
        step = _numbers(frame, "step", path) if "step" in frame.columns else np.arange(1, len(frame) + 1.0)
    elif "step" in frame.columns:
        if batch_tokens is None:
            raise DataError(f"curve file {path}: a curve by 'step' needs --batch-tokens N (tokens "
                            "per step), or add a 'tokens' column")
        step = _numbers(frame, "step", path)
        tokens = step * float(batch_tokens)
    else:
        raise DataError(f"curve file {path}: no column 'tokens' or 'step'; add one (tokens seen, "
                        "or step with --batch-tokens)")
    loss = _numbers(frame, "loss", path)
    if len(loss) == 0:
        raise DataError(f"curve file {path} has no evaluations; add rows tokens,loss")
    curve = pd.DataFrame({"step": step, "tokens": tokens, "value": loss})
    return curve.sort_values("tokens", kind="stable").reset_index(drop=True)


def _numbers(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values) | ((values <= 0) if column != "step" else (values < 0))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"curve file {path}: column {column!r} row {row + 2} is "
                        f"{frame[column].iloc[row]!r}; give a positive number")
    return values


def external_target(
    curve: pd.DataFrame, *, name: str, params: float | None = None, tokens: float | None = None,
    flops: float | None = None, flops_exact: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The run-table row of a run known only by its curve and its size.

    ``tokens`` defaults to the curve's last evaluation; ``flops`` to 6ND; ``loss`` is the
    last evaluation's value.

    Examples
    --------
    >>> curve = pd.DataFrame({"step": [1, 2], "tokens": [5e8, 1e9], "value": [3.0, 2.5]})
    >>> row = external_target(curve, name="big", params=5e7)
    >>> row["loss"], row["tokens"], row["flops"]
    (2.5, 1000000000.0, 3e+17)
    """
    last = curve.iloc[-1]
    tokens = float(tokens) if tokens is not None else float(last["tokens"])
    if flops is None and params is not None:
        flops = 6.0 * float(params) * tokens
    return {
        "run_id": name, "name": name, "role": "target", "status": "FINISHED",
        "params": math.nan if params is None else float(params), "tokens": tokens,
        "flops": math.nan if flops is None else float(flops),
        "flops_exact": math.nan if flops_exact is None else float(flops_exact),
        "loss": float(last["value"]),
    }


def with_external_target(inputs: Any, row: dict[str, Any], curve: pd.DataFrame | None, *,
                         law: str = "gpt4") -> Any:
    """Report inputs (:class:`scaling.reporting.report.ReportInputs`) with the large run from
    elsewhere as their target: the proxies' own ``target`` rows are left out, the row is
    appended (its value of the law's column worked out from its size when missing) and its
    curve added under its ``run_id``."""
    import dataclasses

    from scaling.formatting import is_finite
    from scaling.laws.forms import get_law
    from scaling.reporting.forecast import law_x_value

    runs = inputs.runs
    proxies = runs[runs["role"] != "target"] if "role" in runs.columns else runs
    row = dict(row)
    x = get_law(law).x[0]
    if not is_finite(row.get(x)):
        row[x], _ = law_x_value(x, row, proxies)
    table = pd.concat([proxies, pd.DataFrame([row])], ignore_index=True)
    curves = dict(inputs.curves or {})
    if curve is not None:
        curves[str(row["run_id"])] = curve
    return dataclasses.replace(inputs, runs=table, curves=curves or None)
