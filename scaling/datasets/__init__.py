"""Published scaling ladders shipped with the package, as run tables.

Each dataset is a CSV converted from the authors' own repository or paper (provenance, licences
and the papers to cite: ``scaling/datasets/README.md``). :func:`load` returns it as a run table
(docs/architecture.md, "The run table"): columns ``params``, ``tokens``, ``flops``, ``loss``
first, then ``flops_exact``, then the dataset's extra columns.

None of the sources gives an exact per-token FLOP count: their compute is C = 6·N·D (the
Chinchilla points' C is the paper's, and there ``tokens = flops / (6·params)``). ``flops_exact``
is therefore a copy of ``flops``, so that laws reading ``flops_exact`` (``gpt4``, ``power``)
fit these tables as they are.

Layer: datasets (imports the base layer and pandas only); the CSVs are read with
:mod:`importlib.resources`, so they work from an installed wheel as from a source tree.

>>> from scaling import datasets
>>> "chinchilla_points" in datasets.names()
True
>>> frame = datasets.load("porian2024_rw_cosine_frontier")
>>> list(frame.columns[:5]), len(frame)
(['params', 'tokens', 'flops', 'loss', 'flops_exact'], 12)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import pandas as pd

from scaling.errors import DataError
from scaling.table import NUMERIC_COLUMNS, coerce_numeric, require_columns

__all__ = ["Dataset", "DATASETS", "names", "load", "describe"]

#: The columns every shipped table has, in this order, before ``flops_exact`` and the extras.
FIRST_COLUMNS: tuple[str, ...] = ("params", "tokens", "flops", "loss")


@dataclass(frozen=True)
class Dataset:
    """One shipped table: its name (the CSV's stem), the law it suits and what a row is."""

    name: str
    law: str
    rows: int
    source: str
    description: str


_HOFFMANN = "Hoffmann et al. 2022 (Figure 4), recovered by Besiroglu et al. 2024"
_PORIAN = "Porian et al. 2024, formll/resolving-scaling-law-discrepancies"
_GADRE = "Gadre et al. 2024, mlfoundations/scaling"
_MUENNIGHOFF = "Muennighoff et al. 2023, huggingface/datablations"


def _porian(data: str, schedule: str, rows: int, frontier_rows: int) -> list[Dataset]:
    corpus = {"rw": "RefinedWeb", "owt2": "OpenWebText2"}[data]
    recipe = {"cosine": "cosine decay, one run per budget",
              "tuned_const": "tuned constant LR, checkpoints of one run per size"}[schedule]
    name = f"porian2024_{data}_{schedule}"
    return [
        Dataset(name, "chinchilla", rows, _PORIAN,
                f"IsoFLOP points on {corpus} ({recipe}), budgets 1.25e16 to 2.56e19"),
        Dataset(f"{name}_frontier", "gpt4", frontier_rows, _PORIAN,
                f"lowest loss at each of the 12 budgets of {name} (an L(C) frontier)"),
    ]


def _gadre(data: str, corpus: str, rows: int) -> list[Dataset]:
    return [
        Dataset(f"gadre2024_{data}", "chinchilla", rows, _GADRE,
                f"models 11M-6.9B trained on {corpus}, 5 to 640 tokens per parameter; C4 eval loss"),
        Dataset(f"gadre2024_{data}_m20", "gpt4", 6, _GADRE,
                f"the runs of gadre2024_{data} at 20 tokens per parameter (N and D move together: an L(C) ladder)"),
    ]


_ALL = [
    Dataset("chinchilla_points", "chinchilla", 245, _HOFFMANN,
            "final training losses of the Chinchilla runs (N, D, C) as digitised from the paper's figure"),
    Dataset("gadre2024_all", "chinchilla", 104, _GADRE,
            "every run of the three training sets (RefinedWeb, C4, RedPajama) in one table"),
    *_gadre("c4", "C4", 34),
    *_gadre("rpj", "RedPajama", 35),
    *_gadre("rw", "RefinedWeb", 35),
    Dataset("muennighoff2023_all", "chinchilla", 229, _MUENNIGHOFF,
            "data-constrained runs, 1 to 9,000 epochs over a repeated subset; C4 validation loss"),
    Dataset("muennighoff2023_single_epoch", "chinchilla", 33, _MUENNIGHOFF,
            "the runs of muennighoff2023_all without repetition (one epoch)"),
    *_porian("owt2", "cosine", 88, 12),
    *_porian("owt2", "tuned_const", 116, 12),
    *_porian("rw", "cosine", 88, 12),
    *_porian("rw", "tuned_const", 121, 12),
]

#: Every shipped dataset by name, in :func:`names` order.
DATASETS: dict[str, Dataset] = {d.name: d for d in sorted(_ALL, key=lambda d: d.name)}


def names() -> list[str]:
    """Names of the shipped datasets, sorted.

    >>> names()[:2]
    ['chinchilla_points', 'gadre2024_all']
    """
    return list(DATASETS)


def describe(name: str) -> Dataset:
    """The :class:`Dataset` record of ``name`` (law it suits, row count, source).

    Raises
    ------
    DataError
        If no dataset has that name.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def load(name: str) -> pd.DataFrame:
    """Read a shipped dataset as a run table.

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    DataFrame
        ``params``, ``tokens``, ``flops``, ``loss``, ``flops_exact`` (= ``flops``), then the
        dataset's extra columns; numbers of the run-table contract as float.

    Raises
    ------
    DataError
        If no dataset has that name (the message lists them).
    """
    dataset = describe(name)
    source = f"dataset {name!r}"
    with resources.files(__name__).joinpath(f"{name}.csv").open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle)
    require_columns(frame, FIRST_COLUMNS, source)
    numeric = [column for column in frame.columns if column in NUMERIC_COLUMNS]
    frame = coerce_numeric(frame, numeric, source)
    if "flops_exact" not in frame.columns:
        frame["flops_exact"] = frame["flops"]
    extras = [column for column in frame.columns if column not in (*FIRST_COLUMNS, "flops_exact")]
    frame = frame[[*FIRST_COLUMNS, "flops_exact", *extras]]
    if len(frame) != dataset.rows:
        raise DataError(f"{source}: {len(frame)} rows where {dataset.rows} were shipped; "
                        "the installed file is damaged, reinstall the package")
    return frame
