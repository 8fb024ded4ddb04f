"""Where text comes from: the documents of each corpus kind, and the synthetic Markov source.

A corpus is a list of named documents (the unit of the train/eval split): the ``.py`` files of
the running Python's standard library, the files of a directory, the blank-line separated
blocks of a text file, or the records of a ``.jsonl`` file. :class:`MarkovSource` generates
tokens whose entropy rate, the loss no model can beat, is known exactly.
"""

from __future__ import annotations

import bisect
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scaling.errors import DataError
from scaling.textfiles import jsonl_records, read_text

if TYPE_CHECKING:
    from scaling.config.run import DataConfig, SyntheticConfig

__all__ = ["Document", "MarkovSource", "read_documents"]

@dataclass
class Document:
    name: str
    text: str


def _stdlib_documents() -> tuple[list[Document], str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if {"site-packages", "dist-packages"} & set(relative.parts):
            continue
        try:
            documents.append(Document(relative.as_posix(), path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue  # a few test fixtures are deliberately not UTF-8; the manifest omits them
    return documents, str(root)


def _file_documents(path: Path) -> list[Document]:
    """A text file's documents are its blocks of lines separated by blank lines."""
    text = read_text(path)
    blocks, current = [], []
    for line in text.splitlines(keepends=True):
        current.append(line)
        if not line.strip() and any(part.strip() for part in current):
            blocks.append("".join(current))
            current = []
    if current:
        blocks.append("".join(current))
    return [Document(f"{path.name}#{i}", block) for i, block in enumerate(blocks)]


def _directory_documents(path: Path, pattern: str) -> list[Document]:
    files = sorted(p for p in path.glob(pattern) if p.is_file())
    if not files:
        raise DataError(
            f"data.source = {str(path)!r}: no files match data.glob = {pattern!r}; "
            "change the glob or the directory"
        )
    return [Document(p.relative_to(path).as_posix(), read_text(p)) for p in files]


def _jsonl_documents(path: Path, text_field: str) -> list[Document]:
    documents = []
    for number, record in jsonl_records(path):
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise DataError(
                f"{path}: line {number} has no text field {text_field!r}; "
                "set data.text_field to the field holding the text"
            )
        documents.append(Document(f"line {number}", record[text_field]))
    return documents


class MarkovSource:
    """A seeded random Markov chain of a given order over a small alphabet.

    Each history of ``order`` symbols has its own next-symbol distribution drawn from a
    symmetric Dirichlet, so the best possible model has a known loss: the chain's entropy rate
    H = Σ_s π(s) · H(P(· | s)) nats per symbol, with π the stationary distribution of histories.

    Examples
    --------
    >>> from scaling.config.run import SyntheticConfig
    >>> source = MarkovSource(SyntheticConfig(alphabet=4, order=1, seed=0))
    >>> 0 < source.entropy_rate < float(np.log(4))
    True
    """

    max_states = 1 << 16

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.states = config.alphabet**config.order
        if self.states > self.max_states:
            raise DataError(
                f"data.synthetic: alphabet ** order = {self.states} histories is more than "
                f"{self.max_states}; lower data.synthetic.alphabet or data.synthetic.order"
            )
        rng = np.random.default_rng(config.seed)
        alpha = np.full(config.alphabet, config.concentration)
        self.transition = rng.dirichlet(alpha, size=self.states)  # (states, alphabet)
        # Guard against an exact 0 (possible for tiny concentrations): keeps the chain ergodic.
        self.transition = np.maximum(self.transition, 1e-12)
        self.transition /= self.transition.sum(axis=1, keepdims=True)
        self.stationary = self._stationary()
        probs = self.transition
        per_state = -(probs * np.log(probs)).sum(axis=1)
        self.entropy_rate = float(self.stationary @ per_state)

    def _next_state(self) -> np.ndarray:
        """(states, alphabet): the history after emitting each symbol from each history."""
        states = np.arange(self.states)[:, None]
        symbols = np.arange(self.config.alphabet)[None, :]
        return (states * self.config.alphabet + symbols) % self.states

    def _stationary(self) -> np.ndarray:
        nxt = self._next_state().ravel()
        pi = np.full(self.states, 1.0 / self.states)
        for _ in range(100_000):
            new = np.bincount(nxt, weights=(pi[:, None] * self.transition).ravel(),
                              minlength=self.states)
            if np.abs(new - pi).max() < 1e-15:
                return new
            pi = new
        return pi

    def generate(self, length: int) -> np.ndarray:
        """``length`` symbols started from the stationary distribution (seeded)."""
        rng = np.random.default_rng([self.config.seed, 1])
        cumulative = np.cumsum(self.transition, axis=1)
        cumulative[:, -1] = 1.0
        uniforms = rng.random(length + 1)
        state = int(np.searchsorted(np.cumsum(self.stationary), uniforms[0] * self.stationary.sum()))
        state = min(state, self.states - 1)
        out = np.empty(length, dtype=np.uint16)
        rows = cumulative.tolist()
        alphabet, states = self.config.alphabet, self.states
        for i in range(length):  # sequential by nature; ~1 µs a symbol, cached afterwards
            symbol = bisect.bisect_right(rows[state], uniforms[i + 1])
            symbol = min(symbol, alphabet - 1)
            out[i] = symbol
            state = (state * alphabet + symbol) % states
        return out


def read_documents(config: DataConfig) -> tuple[list[Document], dict[str, Any]]:
    if config.source == "python-stdlib":
        documents, root = _stdlib_documents()
        return documents, {"kind": "python-stdlib", "root": root}
    path = Path(config.source)
    if not path.exists():
        raise DataError(
            f"data.source = {config.source!r}: no such file or directory; give an existing "
            "path, 'python-stdlib' or 'synthetic'"
        )
    if path.is_dir():
        documents = _directory_documents(path, config.glob)
        kind = "directory"
    elif path.suffix == ".jsonl":
        documents = _jsonl_documents(path, config.text_field)
        kind = "jsonl"
    else:
        documents = _file_documents(path)
        kind = "text"
    documents = [doc for doc in documents if doc.text]
    if not documents or not any(doc.text.strip() for doc in documents):
        raise DataError(f"data.source = {config.source!r} is empty; give a corpus with text")
    return documents, {"kind": kind, "path": str(path.resolve())}
