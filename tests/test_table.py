"""The run-table contract: columns, numeric coercion and CSV errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scaling.errors import DataError
from scaling.table import RUN_TABLE_COLUMNS, coerce_numeric, load_csv, require_columns

DATA = Path(__file__).parent / "data"


def test_columns_follow_design():
    for column in ["run_id", "run_key", "role", "params", "tokens", "flops", "flops_exact", "loss", "bpb"]:
        assert column in RUN_TABLE_COLUMNS
    assert len(set(RUN_TABLE_COLUMNS)) == len(RUN_TABLE_COLUMNS) == 20


def test_load_chinchilla_points():
    frame = load_csv(DATA / "chinchilla_points.csv")
    assert frame.shape == (245, 4)
    assert frame["params"].dtype == float
    assert frame["loss"].min() == pytest.approx(2.07739)


def test_strings_from_mlflow_become_numbers():
    frame = pd.DataFrame({"params": ["1e6", "2.5e6", ""], "loss": ["3.0", None, "2.0"], "sweep": ["a"] * 3})
    out = coerce_numeric(frame, ["params", "loss"], "experiment 'demo'")
    assert out["params"].tolist()[:2] == [1e6, 2.5e6]
    assert out["params"].isna().tolist() == [False, False, True]
    assert out["sweep"].tolist() == ["a"] * 3
    assert frame["params"].tolist()[0] == "1e6"  # input untouched


def test_non_number_names_column_and_row():
    frame = pd.DataFrame({"loss": ["2.0", "abc"]})
    with pytest.raises(DataError, match=r"runs.csv: column 'loss' row 1 holds 'abc', not a number"):
        coerce_numeric(frame, ["loss"], "runs.csv")


def test_require_columns_lists_missing_and_present():
    frame = pd.DataFrame({"flops": [1.0], "loss": [2.0]})
    message = r"runs.csv: missing column\(s\) flops_exact \(columns present: flops, loss\)"
    with pytest.raises(DataError, match=message):
        require_columns(frame, ["flops_exact", "loss"], "runs.csv")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope.csv: no such file"):
        load_csv(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty.csv: the file is empty"):
        load_csv(path)


def test_header_only(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("params,loss\n")
    with pytest.raises(DataError, match=r"header.csv: the table has a header but no runs"):
        load_csv(path)


def test_unparseable(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n1,"2\n')
    with pytest.raises(DataError, match=r"bad.csv: not a readable CSV"):
        load_csv(path)


def test_bad_value_in_csv(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("params,loss\n1e6,2.5\n2e6,oops\n")
    with pytest.raises(DataError, match=r"runs.csv: column 'loss' row 1 holds 'oops'"):
        load_csv(path)
