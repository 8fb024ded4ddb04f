"""The published ladders shipped in ``scaling.datasets``: every table loads whole and clean, the
package ships every file, and the Chinchilla points reproduce Besiroglu et al.'s fit."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from scaling import datasets
from scaling.errors import DataError
from scaling.laws.fitting import fit

ROOT = Path(__file__).resolve().parents[1]

# Runs per file, as in the authors' converted tables (CSV lines less the header).
ROWS = {
    "chinchilla_points": 245,
    "gadre2024_all": 104,
    "gadre2024_c4": 34,
    "gadre2024_c4_m20": 6,
    "gadre2024_rpj": 35,
    "gadre2024_rpj_m20": 6,
    "gadre2024_rw": 35,
    "gadre2024_rw_m20": 6,
    "muennighoff2023_all": 229,
    "muennighoff2023_single_epoch": 33,
    "porian2024_owt2_cosine": 88,
    "porian2024_owt2_cosine_frontier": 12,
    "porian2024_owt2_tuned_const": 116,
    "porian2024_owt2_tuned_const_frontier": 12,
    "porian2024_rw_cosine": 88,
    "porian2024_rw_cosine_frontier": 12,
    "porian2024_rw_tuned_const": 121,
    "porian2024_rw_tuned_const_frontier": 12,
}

# Besiroglu et al. 2024, 95% bootstrap intervals on the 240 points they fit.
BESIROGLU_95 = {"E": (1.769, 1.871), "alpha": (0.317, 0.373), "beta": (0.331, 0.415)}


def test_names_are_the_shipped_files():
    assert datasets.names() == sorted(ROWS)
    packaged = sorted(p.name[:-4] for p in resources.files("scaling.datasets").iterdir()
                      if p.name.endswith(".csv"))
    assert packaged == sorted(ROWS)
    assert resources.files("scaling.datasets").joinpath("README.md").is_file()


def test_the_package_data_carries_the_csvs_and_readme():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["scaling"]
    assert "datasets/*.csv" in patterns and "datasets/*.md" in patterns


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_dataset_loads_whole_with_positive_finite_columns(name):
    frame = datasets.load(name)
    assert list(frame.columns[:5]) == ["params", "tokens", "flops", "loss", "flops_exact"]
    text = resources.files("scaling.datasets").joinpath(f"{name}.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(frame) == len(lines) - 1 == ROWS[name] == datasets.describe(name).rows
    for column in ("params", "tokens", "flops", "loss", "flops_exact"):
        values = frame[column].to_numpy()
        assert values.dtype == np.float64, column
        assert np.isfinite(values).all() and (values > 0).all(), column
    np.testing.assert_array_equal(frame["flops_exact"].to_numpy(), frame["flops"].to_numpy())
    # Every source's compute is C = 6·N·D (for the Chinchilla points to their 6 digits).
    ratio = frame["flops"] / (6 * frame["params"] * frame["tokens"])
    assert np.allclose(ratio, 1.0, rtol=1e-4)
    assert 1.0 < frame["loss"].min() and frame["loss"].max() < 12.0  # nats per token; Muennighoff
    # et al.'s most repeated runs (hundreds of epochs) reach 11
    assert datasets.describe(name).law in ("chinchilla", "gpt4")


def test_load_returns_a_fresh_copy():
    first = datasets.load("gadre2024_c4_m20")
    first.loc[:, "loss"] = -1.0
    assert (datasets.load("gadre2024_c4_m20")["loss"] > 0).all()


def test_unknown_name_is_a_one_line_error_listing_the_choices():
    with pytest.raises(DataError) as caught:
        datasets.load("chinchila")
    message = str(caught.value)
    assert "\n" not in message
    assert "'chinchila'" in message
    assert all(name in message for name in ROWS)
    with pytest.raises(DataError, match="unknown dataset 'x'"):
        datasets.describe("x")


@pytest.mark.slow
def test_chinchilla_points_reproduce_besiroglu_et_al():
    points = datasets.load("chinchilla_points").sort_values("loss").iloc[:-5]  # as they fit it
    result = fit("chinchilla", points, n_bootstrap=100, seed=0)
    assert result.n_points_ == 240 and result.is_valid, result.reasons_
    for name, (lower, upper) in BESIROGLU_95.items():
        assert lower <= result.params_[name] <= upper, (name, result.params_[name])
    assert result.params_["alpha"] == pytest.approx(0.3478, abs=5e-3)
    assert result.params_["beta"] == pytest.approx(0.3658, abs=5e-3)


def test_a_frontier_fits_the_default_law_as_loaded():
    result = fit(datasets.describe("porian2024_rw_cosine_frontier").law,
                 datasets.load("porian2024_rw_cosine_frontier"), n_bootstrap=0)
    assert result.x_ == ("flops_exact",) and result.n_points_ == 12
    assert -0.3 < result.params_["b"] < 0 and result.is_valid, result.reasons_
