"""Muennighoff et al. 2023's data-constrained law and Gadre et al. 2024's L(C, M): values
computed by hand, reduction to the Chinchilla form, recovery of known parameters by the fit,
and the one-line error for a table without ``unique_tokens``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import FitError
from scaling.laws.fitting import fit
from scaling.laws.forms import get_law

# The paper's fit (Muennighoff et al. 2023, section 5).
PAPER = {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.353, "beta": 0.353,
         "RD_star": 15.4, "RN_star": 5.31}


def by_hand(p, n, d, u):
    """The law written out term by term, as the paper defines it."""
    r_d = d / u - 1.0
    d_eff = u + u * p["RD_star"] * (1.0 - np.exp(-r_d / p["RD_star"]))
    g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1.0 / (p["alpha"] + p["beta"]))
    n_opt = g ** ((p["alpha"] + p["beta"]) / p["alpha"]) * u ** (p["beta"] / p["alpha"])
    u_n = min(n, n_opt)
    r_n = n / u_n - 1.0
    n_eff = u_n + u_n * p["RN_star"] * (1.0 - np.exp(-r_n / p["RN_star"]))
    return p["E"] + p["A"] / n_eff ** p["alpha"] + p["B"] / d_eff ** p["beta"]


@pytest.mark.parametrize("n, d, u", [(1e8, 1e9, 1e9), (1e8, 5e9, 1e9), (8.7e9, 1.78e11, 2.5e10),
                                     (2.8e9, 3.6e10, 1e8)])
def test_muennighoff_matches_the_paper_written_out(n, d, u):
    law = get_law("muennighoff")
    assert law.predict(PAPER, n, d, u)[0] == pytest.approx(by_hand(PAPER, n, d, u), rel=1e-12)


def test_muennighoff_hand_computed_numbers():
    # 4 repetitions of 1e9 unique tokens with R*_D = 15.4: D' = 1e9 (1 + 15.4 (1 - e^(-4/15.4))).
    d_eff = 1e9 * (1.0 + 15.4 * (1.0 - np.exp(-4.0 / 15.4)))
    assert d_eff == pytest.approx(4.5227e9, rel=1e-4)  # 5e9 tokens are worth about 4.52e9 unique
    law = get_law("muennighoff")
    small = 1e7  # far below N_opt for 1e9 tokens, so N' = N
    expected = 1.87 + 521.0 / small**0.353 + 1488.0 / d_eff**0.353
    assert law.predict(PAPER, small, 5e9, 1e9)[0] == pytest.approx(expected, rel=1e-12)


def test_muennighoff_reduces_to_chinchilla_without_repetition():
    # One epoch and N below N_opt(U_D): D' = D, N' = N, so the law is Chinchilla's.
    params = {k: PAPER[k] for k in ("E", "A", "B", "alpha", "beta")}
    n, d = np.array([1e7, 5e7, 1e8]), np.array([1e10, 2e10, 5e10])
    ours = get_law("muennighoff").predict(PAPER, n, d, d)
    assert np.allclose(ours, get_law("chinchilla").predict(params, n, d), rtol=1e-12)


def test_repeated_tokens_are_worth_less_but_never_nothing():
    law = get_law("muennighoff")
    unique = 1e9
    epochs = np.array([1.0, 2.0, 4.0, 16.0, 100.0, 1000.0])
    loss = law.predict(PAPER, np.full(6, 1e7), unique * epochs, np.full(6, unique))
    assert (np.diff(loss) < 0).all()  # more epochs still help...
    fresh = law.predict(PAPER, np.full(6, 1e7), unique * epochs, unique * epochs)
    assert (loss[1:] > fresh[1:]).all()  # ...less than fresh tokens
    # ...and saturate: D' < U_D (1 + R*_D) whatever the number of epochs.
    floor = 1.87 + 521.0 / 1e7**0.353 + 1488.0 / (unique * (1 + 15.4)) ** 0.353
    assert loss[-1] == pytest.approx(floor, rel=1e-9)
    assert loss[3] > floor * (1 + 1e-3)  # 16 epochs: not saturated yet


def synthetic_repeated_runs(seed=0, noise=0.0):
    """Runs with 1 to 100 epochs, and models above the compute-optimal size for their data."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (1e7, 3e7, 1e8, 3e8, 1e9, 3e9):
        for u in (1e8, 1e9, 1e10):
            for epochs in (1.0, 4.0, 20.0, 100.0):
                d = u * epochs
                rows.append((n, d, u, by_hand(PAPER, n, d, u)))
    frame = pd.DataFrame(rows, columns=["params", "tokens", "unique_tokens", "loss"])
    frame["loss"] *= np.exp(noise * rng.standard_normal(len(frame)))
    return frame


def capped_share(frame):
    """Share of runs whose size exceeds N_opt(U_D), where R*_N enters the loss."""
    law = get_law("muennighoff")
    with_rn = law.predict({**PAPER, "RN_star": 50.0}, frame["params"], frame["tokens"],
                          frame["unique_tokens"])
    return float(np.mean(np.abs(with_rn - frame["loss"]) > 1e-6))


def test_muennighoff_fit_recovers_known_parameters_from_nearby_starts():
    # The model, its gradient and the optimiser, from 16 starts 20-50% off the truth in every
    # parameter (the full start grid is checked in the slow test below).
    frame = synthetic_repeated_runs()
    assert 0.1 < capped_share(frame) < 0.9  # R*_N is identified by the data
    law = get_law("muennighoff")
    truth = law.from_natural(PAPER)
    rng = np.random.default_rng(0)
    scale = np.where([name in law.log_params for name in law.param_names], 0.4, 0.25 * truth)
    starts = truth + scale * rng.uniform(-1.0, 1.0, size=(16, law.n_params))
    nearby = dataclasses.replace(law, start_grid=lambda xs, y: starts)
    result = fit(nearby, frame, n_bootstrap=0)
    for name, value in PAPER.items():
        assert result.params_[name] == pytest.approx(value, rel=2e-3), name
    assert result.is_valid
    assert np.abs(result.log_residuals_).max() < 1e-6


@pytest.mark.slow
def test_muennighoff_fit_recovers_known_parameters_from_its_start_grid():
    result = fit("muennighoff", synthetic_repeated_runs(), n_bootstrap=0)
    for name, value in PAPER.items():
        assert result.params_[name] == pytest.approx(value, rel=2e-3), name
    assert result.is_valid


def test_muennighoff_needs_unique_tokens(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    synthetic_repeated_runs().drop(columns="unique_tokens").to_csv(path, index=False)
    code = main(["fit", "--csv", str(path), "--law", "muennighoff", "--bootstrap", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "unique_tokens" in err and str(path) in err


# --- Gadre et al. 2024 ---------------------------------------------------------------------------

GADRE = {"E": 1.9, "a": 60.0, "b": 900.0, "eta": 0.16}


def test_gadre_hand_computed_value():
    n, d = 4e8, 8e9  # M = 20, C = 6 N D = 1.92e19
    c, m = 6.0 * n * d, d / n
    expected = 1.9 + (60.0 * m**0.16 + 900.0 * m**-0.16) * c**-0.16
    assert get_law("gadre").predict(GADRE, n, d)[0] == pytest.approx(expected, rel=1e-12)
    assert c == 1.92e19 and m == 20.0


def test_gadre_is_chinchilla_with_equal_exponents():
    # a M^eta C^-eta = a 6^-eta N^-2eta and b M^-eta C^-eta = b 6^-eta D^-2eta.
    eta = GADRE["eta"]
    same = {"E": GADRE["E"], "A": GADRE["a"] * 6.0**-eta, "B": GADRE["b"] * 6.0**-eta,
            "alpha": 2 * eta, "beta": 2 * eta}
    n, d = np.logspace(7, 10, 9), np.logspace(9, 12, 9)[::-1]
    assert np.allclose(get_law("gadre").predict(GADRE, n, d), get_law("chinchilla").predict(same, n, d),
                       rtol=1e-12)


def test_gadre_fit_recovers_known_parameters():
    n = np.repeat(np.logspace(7, 9, 5), 4)
    m = np.tile([5.0, 20.0, 80.0, 320.0], 5)  # over-trained ladders at four token multipliers
    frame = pd.DataFrame({"params": n, "tokens": n * m})
    frame["loss"] = get_law("gadre").predict(GADRE, frame["params"], frame["tokens"])
    result = fit("gadre", frame, n_bootstrap=0)
    for name, value in GADRE.items():
        assert result.params_[name] == pytest.approx(value, rel=1e-3), name
    assert result.is_valid


def test_unknown_law_names_the_new_ones():
    with pytest.raises(FitError, match="muennighoff, gadre"):
        get_law("data_constrained")
