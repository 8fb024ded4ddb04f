"""Corpora, tokenizers and the token cache every run trains and is scored on.

A :class:`~scaling.config.run.DataConfig` names a source and a tokenizer; :func:`prepare_data`
reads the source once, splits it into disjoint train and eval documents, tokenises both and
keeps them as memmapped ``uint16`` files in a cache keyed by (corpus hash, tokenizer), so that
every run of a sweep sees exactly the same tokens and is scored on the same eval text.

Sources: ``python-stdlib`` (the ``.py`` files of the running Python's standard library, the
default that needs no download), a text file, a directory of text files, a ``.jsonl`` file,
a nanoGPT-style flat ``uint16`` ``.bin`` and ``synthetic``, a seeded Markov source whose
entropy rate, the loss no model can beat, is computed exactly (:class:`MarkovSource`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from scaling.errors import ConfigError, DataError
from scaling.training.sources import Document, MarkovSource, read_documents

if TYPE_CHECKING:
    from scaling.config.run import DataConfig

__all__ = [
    "Tokenizer",
    "ByteTokenizer",
    "JsonTokenizer",
    "MarkovSource",
    "PreparedData",
    "prepare_data",
    "cache_dir",
    "sample_batch",
    "eval_sequences",
    "vocab_size",
]

TOKEN_DTYPE = np.uint16
MAX_VOCAB = int(np.iinfo(TOKEN_DTYPE).max) + 1  # 65536 ids fit the uint16 cache
CACHE_FORMAT = 1  # bump when the cache layout changes, so old caches are not misread


def cache_dir() -> Path:
    """The token cache: ``$SCALING_CACHE_DIR``, else ``~/.cache/scaling`` (``$XDG_CACHE_HOME``)."""
    if os.environ.get("SCALING_CACHE_DIR"):
        return Path(os.environ["SCALING_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scaling"


# ----------------------------------------------------------------------------- tokenizers


class Tokenizer(Protocol):
    """What runs and capability evaluations need from a tokenizer."""

    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocab 256, exactly one byte per token.

    Examples
    --------
    >>> tok = ByteTokenizer()
    >>> tok.encode("hé")
    [104, 195, 169]
    >>> tok.decode([104, 195, 169])
    'hé'
    """

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class JsonTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer loaded from a ``tokenizer.json`` file."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.path = Path(path)
        try:
            self._tokenizer = HFTokenizer.from_file(str(self.path))
        except Exception as error:  # the library raises a bare Exception for bad files
            raise DataError(
                f"data.tokenizer = {str(path)!r}: not a readable tokenizer.json ({error}); "
                "give a file saved by the tokenizers library"
            ) from None
        self.vocab_size = self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode([int(i) for i in ids])


def _train_bpe(documents: list[str], vocab_size: int, path: Path) -> None:
    """Train a byte-level BPE on the training documents and save it as ``path``."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = HFTokenizer(models.BPE())
    # Byte-level pre-tokenisation: every string is representable, nothing maps to <unk>.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer, length=len(documents))
    tokenizer.save(str(path))


# ----------------------------------------------------------------------------- the cache


@dataclass
class PreparedData:
    """Tokens of one corpus under one tokenizer, ready to train on.

    Attributes
    ----------
    train, eval : numpy.memmap
        Flat ``uint16`` token streams; eval documents never appear in train.
    vocab_size : int
        Size of the tokenizer's vocabulary (the model's output width).
    bytes_per_token : float
        Raw UTF-8 bytes per token on the eval split; bits per byte = loss / ln 2 / this.
        NaN for a ``.bin`` source, whose raw text is unknown.
    corpus_hash : str
        SHA-256 over the documents' names and contents: what a run saw, exactly.
    manifest : dict
        Source description, per-document name/bytes/split, token counts.
    tokenizer : Tokenizer
        ``encode``/``decode`` for capability evaluations and sampling.
    path : Path
        The cache directory holding ``train.bin``, ``eval.bin``, ``meta.json``.
    entropy_rate : float or None
        The synthetic source's exact entropy rate in nats per token (the loss floor).
    """

    train: np.ndarray
    eval: np.ndarray
    vocab_size: int
    bytes_per_token: float
    corpus_hash: str
    manifest: dict[str, Any]
    tokenizer: Tokenizer
    path: Path
    entropy_rate: float | None = None
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def bits_per_byte(self, loss: float) -> float:
        """Convert a loss in nats per token to bits per byte of raw text."""
        return loss / math.log(2) / self.bytes_per_token


def _is_eval_document(name: str, eval_fraction: float) -> bool:
    """Split by a hash of the document's name: fixed, and stable when documents are added."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def _split(documents: list[Document], eval_fraction: float, source: str) -> tuple[list, list]:
    if len(documents) < 2:
        raise DataError(
            f"data.source = {source!r} has {len(documents)} document(s); need at least 2 to "
            "hold some out for evaluation (separate documents by a blank line)"
        )
    train = [doc for doc in documents if not _is_eval_document(doc.name, eval_fraction)]
    held = [doc for doc in documents if _is_eval_document(doc.name, eval_fraction)]
    if not held:  # a small corpus can miss the fraction: hold out its last document
        train, held = train[:-1], train[-1:]
    if not train:
        train, held = held[:1], held[1:]
    return train, held


def _tokenize(tokenizer: Tokenizer, documents: list[Document]) -> np.ndarray:
    if isinstance(tokenizer, ByteTokenizer):
        joined = "".join(doc.text for doc in documents).encode("utf-8")
        return np.frombuffer(joined, dtype=np.uint8).astype(TOKEN_DTYPE)
    ids = tokenizer.encode_batch([doc.text for doc in documents])  # type: ignore[attr-defined]
    return np.fromiter((i for doc in ids for i in doc), dtype=TOKEN_DTYPE)


def _write_atomically(final: Path, write: Any) -> None:
    """Build the cache entry in a temporary sibling directory, then rename it into place:
    a crash leaves no half-written entry, only a stray temporary directory."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        write(temporary)
        try:
            os.rename(temporary, final)
        except OSError:  # another process finished the same entry first: keep theirs
            if not (final / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _tokenizer_id(config: DataConfig) -> str:
    if config.tokenizer == "bytes":
        return "bytes"
    if config.tokenizer == "bpe":
        return f"bpe{config.bpe_vocab_size}"
    path = Path(config.tokenizer)
    if not path.is_file():
        raise DataError(
            f"data.tokenizer = {config.tokenizer!r}: no such file; use 'bytes', 'bpe' or the "
            "path of a tokenizer.json"
        )
    return "json-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _load_entry(path: Path) -> PreparedData:
    meta = json.loads((path / "meta.json").read_text())
    if meta["tokenizer"] == "bytes" or meta["source_kind"] in ("synthetic", "bin"):
        tokenizer: Tokenizer = ByteTokenizer()
    else:
        tokenizer = JsonTokenizer(path / "tokenizer.json")
    return PreparedData(
        train=np.memmap(path / "train.bin", dtype=TOKEN_DTYPE, mode="r"),
        eval=np.memmap(path / "eval.bin", dtype=TOKEN_DTYPE, mode="r"),
        vocab_size=meta["vocab_size"],
        bytes_per_token=meta["bytes_per_token"] if meta["bytes_per_token"] is not None else math.nan,
        corpus_hash=meta["corpus_hash"],
        manifest=meta["manifest"],
        tokenizer=tokenizer,
        path=path,
        entropy_rate=meta.get("entropy_rate"),
        meta=meta,
    )


_PREPARED: dict[tuple[str, str], PreparedData] = {}


def prepare_data(config: DataConfig) -> PreparedData:
    """Tokenise the configured corpus once into the cache and return it memmapped.

    Parameters
    ----------
    config : DataConfig
        Source, tokenizer and eval split.

    Returns
    -------
    PreparedData
        Train and eval tokens, vocab size, bytes per token, corpus hash and manifest.

    Raises
    ------
    DataError
        If the source is missing, empty, binary or not UTF-8, has fewer than two documents,
        or the tokenizer's vocabulary does not fit ``uint16`` tokens.

    Examples
    --------
    >>> from scaling.config.run import DataConfig
    >>> data = prepare_data(DataConfig(source="synthetic", synthetic={"tokens": 5000}))  # doctest: +SKIP
    >>> data.vocab_size, len(data.train) + len(data.eval)  # doctest: +SKIP
    (16, 5000)
    """
    memo_key = (config.model_dump_json(), str(cache_dir()))
    if memo_key in _PREPARED:
        return _PREPARED[memo_key]
    source = config.source
    if source == "synthetic":
        prepared = _prepare_synthetic(config)
    elif source != "python-stdlib" and Path(source).suffix == ".bin":
        prepared = _prepare_bin(config)
    else:
        prepared = _prepare_text(config)
    _PREPARED[memo_key] = prepared
    return prepared


def _entry_name(corpus_hash: str, tokenizer_id: str, config: DataConfig) -> str:
    split = f"eval{config.eval_fraction:g}"
    return f"v{CACHE_FORMAT}-{corpus_hash[:16]}-{tokenizer_id}-{split}"


def _prepare_text(config: DataConfig) -> PreparedData:
    documents, source = read_documents(config)
    hasher = hashlib.sha256()
    for doc in documents:
        hasher.update(doc.name.encode() + b"\x00" + doc.text.encode("utf-8") + b"\x00")
    corpus_hash = hasher.hexdigest()
    tokenizer_id = _tokenizer_id(config)
    entry = cache_dir() / _entry_name(corpus_hash, tokenizer_id, config)
    if (entry / "meta.json").is_file():
        return _load_entry(entry)
    train_docs, eval_docs = _split(documents, config.eval_fraction, config.source)

    def write(directory: Path) -> None:
        tokenizer: Tokenizer
        if config.tokenizer == "bytes":
            tokenizer = ByteTokenizer()
        elif config.tokenizer == "bpe":
            _train_bpe([doc.text for doc in train_docs], config.bpe_vocab_size,
                       directory / "tokenizer.json")
            tokenizer = JsonTokenizer(directory / "tokenizer.json")
        else:
            shutil.copyfile(config.tokenizer, directory / "tokenizer.json")
            tokenizer = JsonTokenizer(directory / "tokenizer.json")
        if tokenizer.vocab_size > MAX_VOCAB:
            raise DataError(
                f"data.tokenizer = {config.tokenizer!r} has {tokenizer.vocab_size} tokens, more "
                f"than the {MAX_VOCAB} a uint16 token cache holds; use a smaller vocabulary"
            )
        train_tokens = _tokenize(tokenizer, train_docs)
        eval_tokens = _tokenize(tokenizer, eval_docs)
        eval_bytes = sum(len(doc.text.encode("utf-8")) for doc in eval_docs)
        manifest = {
            "source": source,
            "documents": [
                {"name": doc.name, "bytes": len(doc.text.encode("utf-8")),
                 "split": "eval" if doc in eval_docs else "train"}
                for doc in documents
            ],
            "train_tokens": int(len(train_tokens)),
            "eval_tokens": int(len(eval_tokens)),
        }
        _write_tokens(directory, train_tokens, eval_tokens, {
            "source_kind": source["kind"],
            "tokenizer": tokenizer_id,
            "vocab_size": int(tokenizer.vocab_size),
            "bytes_per_token": eval_bytes / max(1, len(eval_tokens)),
            "corpus_hash": corpus_hash,
            "manifest": manifest,
        })

    _write_atomically(entry, write)
    return _load_entry(entry)


def _write_tokens(directory: Path, train: np.ndarray, held: np.ndarray, meta: dict) -> None:
    train.astype(TOKEN_DTYPE).tofile(directory / "train.bin")
    held.astype(TOKEN_DTYPE).tofile(directory / "eval.bin")
    (directory / "meta.json").write_text(json.dumps({"format": CACHE_FORMAT, **meta}, indent=1))


def _prepare_synthetic(config: DataConfig) -> PreparedData:
    synthetic = config.synthetic
    if config.tokenizer != "bytes":
        raise DataError(
            f"data.tokenizer = {config.tokenizer!r} cannot apply to the synthetic source, whose "
            "symbols are already tokens; use data.tokenizer = 'bytes'"
        )
    description = json.dumps(synthetic.model_dump(mode="json"), sort_keys=True)
    corpus_hash = hashlib.sha256(f"synthetic:{description}".encode()).hexdigest()
    entry = cache_dir() / _entry_name(corpus_hash, "symbols", config)
    if (entry / "meta.json").is_file():
        return _load_entry(entry)
    source = MarkovSource(synthetic)

    def write(directory: Path) -> None:
        tokens = source.generate(synthetic.tokens)
        # One long stream: hold out its tail (the chain mixes fast, so the tail is unseen text
        # from the same distribution).
        cut = len(tokens) - max(1, int(round(len(tokens) * config.eval_fraction)))
        manifest = {"source": {"kind": "synthetic", **synthetic.model_dump(mode="json")},
                    "train_tokens": cut, "eval_tokens": len(tokens) - cut}
        _write_tokens(directory, tokens[:cut], tokens[cut:], {
            "source_kind": "synthetic",
            "tokenizer": "symbols",
            "vocab_size": synthetic.alphabet,
            "bytes_per_token": 1.0,  # one symbol stands for one byte
            "corpus_hash": corpus_hash,
            "manifest": manifest,
            "entropy_rate": source.entropy_rate,
        })

    _write_atomically(entry, write)
    return _load_entry(entry)


def _prepare_bin(config: DataConfig) -> PreparedData:
    """A nanoGPT-style flat uint16 token file; a sibling ``val.bin`` is the eval split,
    otherwise the last ``eval_fraction`` of the tokens is."""
    path = Path(config.source)
    if not path.is_file():
        raise DataError(f"data.source = {config.source!r}: no such file; give an existing .bin")
    size = path.stat().st_size
    if size == 0 or size % 2:
        raise DataError(
            f"data.source = {config.source!r} holds {size} bytes, not a whole number of uint16 "
            "tokens (or none); give a nanoGPT-style uint16 .bin"
        )
    if config.tokenizer != "bytes":
        raise DataError(
            f"data.tokenizer = {config.tokenizer!r} cannot apply to a .bin source, which is "
            "already tokenised; use data.tokenizer = 'bytes' and set model.vocab_size"
        )
    sibling = path.with_name("val.bin")
    hasher = hashlib.sha256()
    for part in ([path, sibling] if sibling.is_file() and sibling != path else [path]):
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                hasher.update(block)
    corpus_hash = hasher.hexdigest()
    entry = cache_dir() / _entry_name(corpus_hash, "bin", config)
    if (entry / "meta.json").is_file():
        return _load_entry(entry)

    def write(directory: Path) -> None:
        tokens = np.fromfile(path, dtype=TOKEN_DTYPE)
        if sibling.is_file() and sibling != path:
            train, held = tokens, np.fromfile(sibling, dtype=TOKEN_DTYPE)
        else:
            cut = len(tokens) - max(1, int(round(len(tokens) * config.eval_fraction)))
            train, held = tokens[:cut], tokens[cut:]
        vocab = int(max(train.max(), held.max())) + 1
        manifest = {"source": {"kind": "bin", "path": str(path.resolve())},
                    "train_tokens": len(train), "eval_tokens": len(held)}
        _write_tokens(directory, train, held, {
            "source_kind": "bin", "tokenizer": "bin", "vocab_size": vocab,
            "bytes_per_token": None, "corpus_hash": corpus_hash, "manifest": manifest,
        })

    _write_atomically(entry, write)
    return _load_entry(entry)


# ----------------------------------------------------------------------------- batches


def sample_batch(
    tokens: np.ndarray, context: int, sequences: int, seed: int, step: int
) -> np.ndarray:
    """``sequences`` windows of ``context + 1`` tokens at seeded random offsets.

    The offsets depend only on (seed, step), so the data position of a run is its step: a
    resumed run and a run split over several processes see exactly the same batches.

    Returns
    -------
    numpy.ndarray
        int64 array of shape (sequences, context + 1): inputs ``[:, :-1]``, targets ``[:, 1:]``.
    """
    span = len(tokens) - context - 1
    if span < 1:
        raise DataError(
            f"the training split has {len(tokens)} tokens, fewer than one sequence of "
            f"context + 1 = {context + 1}; use a larger corpus or a smaller model.context"
        )
    rng = np.random.default_rng([seed, step])
    offsets = rng.integers(0, span + 1, size=sequences)
    return np.stack([tokens[o : o + context + 1] for o in offsets]).astype(np.int64)


def eval_sequences(tokens: np.ndarray, context: int, max_tokens: int) -> Iterator[np.ndarray]:
    """The fixed eval set: consecutive non-overlapping windows over the first ``max_tokens``
    eval tokens, each of shape (context + 1,), so every run is scored on the same text."""
    usable = min(len(tokens), max_tokens + 1)
    count = (usable - 1) // context
    if count < 1:
        raise DataError(
            f"the eval split has {len(tokens)} tokens, fewer than one sequence of context + 1 = "
            f"{context + 1}; raise data.eval_fraction or lower model.context"
        )
    for i in range(count):
        yield np.asarray(tokens[i * context : (i + 1) * context + 1], dtype=np.int64)


def vocab_size(config: DataConfig) -> int:
    """The vocabulary a model trained on ``config`` gets (when ``model.vocab_size`` is unset).

    The one source of it, for the plan, the run key and the trainer alike: bytes give 256,
    the synthetic source its alphabet, a ``tokenizer.json`` its own size; a vocabulary learnt
    from the corpus (BPE, or the largest id of a pre-tokenised ``.bin``) is read from the
    prepared data, so the corpus is prepared (once, into the cache) to know it.

    Raises
    ------
    ConfigError
        If ``data.tokenizer`` names no readable ``tokenizer.json``.
    DataError
        If the corpus cannot be prepared.
    """
    if config.source == "synthetic":
        return config.synthetic.alphabet
    is_bin = config.source != "python-stdlib" and Path(config.source).suffix == ".bin"
    if config.tokenizer == "bytes" and not is_bin:
        return ByteTokenizer.vocab_size
    if config.tokenizer not in ("bytes", "bpe") and not is_bin:
        try:
            return JsonTokenizer(config.tokenizer).vocab_size
        except DataError:
            raise ConfigError(
                f"data.tokenizer = {config.tokenizer!r} is not 'bytes', 'bpe' or a readable "
                "tokenizer.json; fix the path or set model.vocab_size"
            ) from None
    return prepare_data(config).vocab_size
