"""Corpora, tokenizers and the token data every run trains and is scored on.

A :class:`~scaling.config.run.DataConfig` names a source and a tokenizer; :func:`prepare_data`
returns its train and eval tokens as memory-mapped :class:`~scaling.training.shards.TokenStream`
objects, so that every run of a sweep sees exactly the same tokens and is scored on the same
eval text. What it does depends on the source:

- a directory prepared by ``scaling data prepare`` (it holds a ``manifest.json``), or a
  nanoGPT-style ``.bin`` of ``uint16`` (or ``data.bin_dtype``) tokens with its ``val.bin``:
  used in place, never copied, never re-read at run start;
- ``python-stdlib`` (the embedded corpus shipped in the package, the same on every machine),
  a text file, a directory of text files or a ``.jsonl`` file, any of them gzip/zstd/xz
  compressed: prepared once into the cache (``cache_dir()``) by the same code as
  ``scaling data prepare`` (:mod:`scaling.training.preparation`), and found again from the
  files' paths, sizes and modification times, without reading them;
- ``synthetic``: a seeded Markov source whose entropy rate, the loss no model can beat, is
  computed exactly (:class:`~scaling.training.sources.MarkovSource`).

Every corpus has a content hash (:func:`corpus_hash`): SHA-256 over its documents' names and
texts (over the token files for a ``.bin``). It enters the run key, so changed data can never
reuse a run trained on other data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from scaling.errors import ConfigError, DataError
from scaling.training import preparation
from scaling.training.shards import (
    MANIFEST,
    MANIFEST_FORMAT,
    TokenStream,
    is_prepared,
    read_manifest,
)
from scaling.training.sources import EMBEDDED_HASH, MarkovSource, open_source

if TYPE_CHECKING:
    from scaling.config.run import DataConfig

__all__ = [
    "Tokenizer",
    "ByteTokenizer",
    "JsonTokenizer",
    "MarkovSource",
    "PreparedData",
    "prepare_data",
    "pin_corpus",
    "load_prepared",
    "corpus_hash",
    "cache_dir",
    "sample_batch",
    "eval_sequences",
    "vocab_size",
]

CACHE_FORMAT = 2  # bump when the cache layout changes, so old caches are not misread


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


# ----------------------------------------------------------------------------- prepared data


@dataclass
class PreparedData:
    """Tokens of one corpus under one tokenizer, ready to train on.

    Attributes
    ----------
    train, eval : TokenStream
        Memory-mapped token streams; eval documents never appear in train.
    vocab_size : int
        Size of the tokenizer's vocabulary (the model's output width).
    bytes_per_token : float
        Raw UTF-8 bytes per token on the eval split; bits per byte = loss / ln 2 / this.
        NaN for a ``.bin`` source, whose raw text is unknown.
    corpus_hash : str
        SHA-256 over the documents' names and contents: what a run saw, exactly.
    manifest : dict
        Source, tokenizer, document/token/byte counts per split, shards.
    tokenizer : Tokenizer
        ``encode``/``decode`` for capability evaluations and sampling.
    path : Path
        Where the tokens are: the prepared directory, or the ``.bin`` file.
    entropy_rate : float or None
        The synthetic source's exact entropy rate in nats per token (the loss floor).
    """

    train: TokenStream
    eval: TokenStream
    vocab_size: int
    bytes_per_token: float
    corpus_hash: str
    manifest: dict[str, Any]
    tokenizer: Tokenizer
    path: Path
    entropy_rate: float | None = None

    def bits_per_byte(self, loss: float) -> float:
        """Convert a loss in nats per token to bits per byte of raw text."""
        return loss / math.log(2) / self.bytes_per_token


def load_prepared(directory: Path) -> PreparedData:
    """A prepared directory's tokens, memory-mapped in place (a few system calls, no reading).

    Raises
    ------
    DataError
        If the manifest is missing or of another format, or a shard is missing or truncated.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    tokenizer: Tokenizer = (JsonTokenizer(directory / manifest["tokenizer_file"])
                            if manifest.get("tokenizer_file") else ByteTokenizer())
    dtype = np.dtype(manifest["dtype"])
    shards = manifest["shards"]
    bytes_per_token = manifest.get("bytes_per_token")
    return PreparedData(
        train=TokenStream([directory / n for n in shards["train"]], dtype),
        eval=TokenStream([directory / n for n in shards["eval"]], dtype),
        vocab_size=int(manifest["vocab_size"]),
        bytes_per_token=float(bytes_per_token) if bytes_per_token is not None else math.nan,
        corpus_hash=manifest["content_hash"],
        manifest=manifest,
        tokenizer=tokenizer,
        path=directory,
        entropy_rate=manifest.get("entropy_rate"),
    )


def _kind(config: DataConfig) -> str:
    """``synthetic``, ``prepared`` (a directory with a manifest), ``bin`` or ``text``."""
    if config.source == "synthetic":
        return "synthetic"
    if config.source == "python-stdlib":
        return "text"
    path = Path(config.source).expanduser()
    if is_prepared(path):
        return "prepared"
    return "bin" if path.suffix == ".bin" else "text"


_PREPARED: dict[tuple[str, str], PreparedData] = {}


def prepare_data(config: DataConfig) -> PreparedData:
    """The configured corpus's tokens, memory-mapped (preparing a text source once).

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
        or its tokens do not match ``data.content_hash`` when that is set.

    Examples
    --------
    >>> from scaling.config.run import DataConfig
    >>> data = prepare_data(DataConfig(source="synthetic", synthetic={"tokens": 5000}))  # doctest: +SKIP
    >>> data.vocab_size, len(data.train) + len(data.eval)  # doctest: +SKIP
    (16, 5000)
    """
    memo_key = (config.model_dump_json(exclude={"content_hash"}), str(cache_dir()))
    prepared = _PREPARED.get(memo_key)
    if prepared is None:
        kind = _kind(config)
        if kind == "synthetic":
            prepared = _prepare_synthetic(config)
        elif kind == "prepared":
            prepared = _prepared_in_place(config)
        elif kind == "bin":
            prepared = _prepare_bin(config)
        else:
            prepared = _prepare_text(config)
        _PREPARED[memo_key] = prepared
    if config.content_hash is not None and config.content_hash != prepared.corpus_hash:
        raise DataError(
            f"data.source = {config.source!r}: its content hash is {prepared.corpus_hash[:16]}, "
            f"not the {config.content_hash[:16]} in data.content_hash (the data changed since "
            "the sweep was planned, or this machine holds other data); plan again to train on "
            "this data, or restore the data"
        )
    return prepared


def corpus_hash(config: DataConfig) -> str:
    """The content hash of the configured corpus, the identity that enters the run key.

    Cheap after the first call for a corpus: a prepared directory reads its manifest, a
    ``.bin`` its cached record (by path, size and modification time), a text source its cache
    entry (by its files' paths, sizes and modification times); the synthetic source hashes
    its settings.
    """
    kind = _kind(config)
    if kind == "synthetic":
        return _synthetic_hash(config)
    if kind == "prepared":
        return read_manifest(Path(config.source).expanduser())["content_hash"]
    if kind == "bin":
        return _bin_record(config)["content_hash"]
    return prepare_data(config.model_copy(update={"content_hash": None})).corpus_hash


def pin_corpus(config: DataConfig) -> DataConfig:
    """``config`` with ``content_hash`` set to its corpus's, so that the run key names the data.

    Raises
    ------
    DataError
        If ``content_hash`` is already set and the corpus's differs (the data changed).
    """
    actual = corpus_hash(config)
    if config.content_hash is not None and config.content_hash != actual:
        raise DataError(
            f"data.content_hash = {config.content_hash[:16]}... does not match the corpus "
            f"data.source = {config.source!r}, whose content hash is {actual[:16]}...; set "
            "data.content_hash to the new hash to accept the new data, or restore the data"
        )
    return config if config.content_hash == actual else config.model_copy(update={"content_hash": actual})


def _prepared_in_place(config: DataConfig) -> PreparedData:
    data = load_prepared(Path(config.source).expanduser())
    prepared_with = data.manifest["tokenizer"]
    asked = config.tokenizer
    if asked not in ("bytes", prepared_with) and not (asked == "bpe" and prepared_with.startswith("bpe")):
        raise DataError(
            f"data.tokenizer = {asked!r} does not match the tokenizer {prepared_with!r} the "
            f"directory {config.source!r} was prepared with; leave data.tokenizer unset (a "
            "prepared directory carries its tokenizer) or prepare the corpus again"
        )
    return data


def _entry_name(content_hash: str, tokenizer_id: str, config: DataConfig) -> str:
    return f"v{CACHE_FORMAT}-{content_hash[:16]}-{tokenizer_id}-eval{config.eval_fraction:g}"


def _write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(payload, indent=1))
    os.replace(temporary, path)


def _move_into_place(staging: Path, final: Path) -> None:
    """Rename a finished entry into the cache; if another process finished it first, keep
    theirs (the same content under the same tokenizer is the same tokens)."""
    try:
        os.rename(staging, final)
    except OSError:
        if not is_prepared(final):
            raise
        shutil.rmtree(staging, ignore_errors=True)


def _prepare_text(config: DataConfig) -> PreparedData:
    """A text source through :func:`scaling.training.preparation.prepare_corpus`, once."""
    source = open_source(config)
    tokenizer_id = preparation.tokenizer_id(config.tokenizer, config.bpe_vocab_size)
    identity = EMBEDDED_HASH if source.kind == "embedded" else source.fingerprint()
    key = hashlib.sha256(
        f"{CACHE_FORMAT}:{identity}:{tokenizer_id}:{config.eval_fraction!r}".encode()
    ).hexdigest()
    index = cache_dir() / "sources" / f"{key[:32]}.json"
    if index.is_file():
        entry = cache_dir() / json.loads(index.read_text())["entry"]
        if is_prepared(entry):
            return load_prepared(entry)
    staging = cache_dir() / f".staging-{key[:16]}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    label = config.source if source.kind != "embedded" else "python-stdlib"
    manifest = preparation.prepare_corpus(
        source, staging, tokenizer=config.tokenizer, bpe_vocab_size=config.bpe_vocab_size,
        eval_fraction=config.eval_fraction, label=label,
    )
    final = cache_dir() / _entry_name(manifest["content_hash"], tokenizer_id, config)
    _move_into_place(staging, final)
    _write_json_atomically(index, {"entry": final.name, "source": source.describe()})
    return load_prepared(final)


def _write_entry(directory: Path, train: np.ndarray, held: np.ndarray, manifest: dict) -> None:
    """An entry of tokens generated in memory (the synthetic source) in the prepared format."""
    names = {}
    for split, tokens in (("train", train), ("eval", held)):
        names[split] = [f"{split}-00000.bin"]
        tokens.tofile(directory / names[split][0])
    payload = {"format": MANIFEST_FORMAT, **manifest, "shards": names,
               "tokens": {"train": int(len(train)), "eval": int(len(held))},
               "dtype": train.dtype.name}
    (directory / MANIFEST).write_text(json.dumps(payload, indent=1))


def _synthetic_hash(config: DataConfig) -> str:
    description = json.dumps(config.synthetic.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(f"synthetic:{description}".encode()).hexdigest()


def _prepare_synthetic(config: DataConfig) -> PreparedData:
    synthetic = config.synthetic
    if config.tokenizer != "bytes":
        raise DataError(
            f"data.tokenizer = {config.tokenizer!r} cannot apply to the synthetic source, whose "
            "symbols are already tokens; use data.tokenizer = 'bytes'"
        )
    content_hash = _synthetic_hash(config)
    entry = cache_dir() / _entry_name(content_hash, "symbols", config)
    if is_prepared(entry):
        return load_prepared(entry)
    source = MarkovSource(synthetic)
    tokens = source.generate(synthetic.tokens)
    # One long stream: hold out its tail (the chain mixes fast, so the tail is unseen text
    # from the same distribution).
    cut = len(tokens) - max(1, int(round(len(tokens) * config.eval_fraction)))
    staging = cache_dir() / f".staging-{content_hash[:16]}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_entry(staging, tokens[:cut], tokens[cut:], {
            "source": {"kind": "synthetic", **synthetic.model_dump(mode="json")},
            "tokenizer": "symbols", "tokenizer_file": None, "vocab_size": synthetic.alphabet,
            "bytes_per_token": 1.0,  # one symbol stands for one byte
            "content_hash": content_hash, "entropy_rate": source.entropy_rate,
            "eval_fraction": config.eval_fraction,
        })
        _move_into_place(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_prepared(entry)


def _bin_files(config: DataConfig) -> tuple[Path, Path | None, np.dtype]:
    path = Path(config.source).expanduser()
    if not path.is_file():
        raise DataError(f"data.source = {config.source!r}: no such file; give an existing .bin")
    dtype = np.dtype(config.bin_dtype)
    sibling = path.with_name("val.bin")
    sibling = sibling if sibling.is_file() and sibling.resolve() != path.resolve() else None
    for part in [path] + ([sibling] if sibling else []):
        size = part.stat().st_size
        if size == 0 or size % dtype.itemsize:
            raise DataError(
                f"data.source = {str(part)!r} holds {size} bytes, not a whole number of "
                f"{dtype.name} tokens (or none); give a nanoGPT-style .bin, or set "
                "data.bin_dtype to the type it was written with"
            )
    if config.tokenizer != "bytes":
        raise DataError(
            f"data.tokenizer = {config.tokenizer!r} cannot apply to a .bin source, which is "
            "already tokenised; use data.tokenizer = 'bytes' and set model.vocab_size"
        )
    return path, sibling, dtype


def _bin_record(config: DataConfig) -> dict[str, Any]:
    """Content hash and largest id of a ``.bin`` (and its ``val.bin``): computed in one pass
    the first time, then cached by path, size and modification time."""
    path, sibling, dtype = _bin_files(config)
    parts = [path] + ([sibling] if sibling else [])
    stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in parts]
    key = hashlib.sha256(json.dumps([stamp, dtype.name]).encode()).hexdigest()[:32]
    record_path = cache_dir() / "bins" / f"{key}.json"
    if record_path.is_file():
        return json.loads(record_path.read_text())
    hasher, largest = hashlib.sha256(), 0
    block_tokens = (64 << 20) // dtype.itemsize
    for part in parts:
        tokens = np.memmap(part, dtype=dtype, mode="r")
        for start in range(0, len(tokens), block_tokens):
            block = np.asarray(tokens[start : start + block_tokens])
            hasher.update(block.tobytes())
            largest = max(largest, int(block.max()))
    record = {"content_hash": hasher.hexdigest(), "vocab_size": largest + 1,
              "files": stamp, "dtype": dtype.name}
    _write_json_atomically(record_path, record)
    return record


def _prepare_bin(config: DataConfig) -> PreparedData:
    """A nanoGPT-style flat token file, used in place: a sibling ``val.bin`` is the eval split,
    otherwise the last ``eval_fraction`` of the tokens is."""
    path, sibling, dtype = _bin_files(config)
    record = _bin_record(config)
    tokens = TokenStream([path], dtype)
    if sibling is not None:
        train, held = tokens, TokenStream([sibling], dtype)
    else:
        cut = len(tokens) - max(1, int(round(len(tokens) * config.eval_fraction)))
        train, held = tokens.window(0, cut), tokens.window(cut, len(tokens))
    manifest = {"source": {"kind": "bin", "path": str(path.resolve()),
                           "val": str(sibling.resolve()) if sibling else None},
                "tokens": {"train": len(train), "eval": len(held)}, "dtype": dtype.name,
                "tokenizer": "bin", "vocab_size": record["vocab_size"],
                "content_hash": record["content_hash"]}
    return PreparedData(
        train=train, eval=held, vocab_size=record["vocab_size"], bytes_per_token=math.nan,
        corpus_hash=record["content_hash"], manifest=manifest, tokenizer=ByteTokenizer(),
        path=path,
    )


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
    the synthetic source its alphabet, a ``tokenizer.json`` its own size, a prepared directory
    its manifest's; a vocabulary learnt from the corpus (BPE, or the largest id of a
    pre-tokenised ``.bin``) is read from the prepared data, so the corpus is prepared (once,
    into the cache) to know it.

    Raises
    ------
    ConfigError
        If ``data.tokenizer`` names no readable ``tokenizer.json``.
    DataError
        If the corpus cannot be prepared.
    """
    kind = _kind(config)
    if kind == "synthetic":
        return config.synthetic.alphabet
    if kind == "prepared":
        return int(read_manifest(Path(config.source).expanduser())["vocab_size"])
    if kind == "bin":
        return int(_bin_record(config)["vocab_size"])
    if config.tokenizer == "bytes":
        return ByteTokenizer.vocab_size
    if config.tokenizer != "bpe":
        try:
            return JsonTokenizer(config.tokenizer).vocab_size
        except DataError:
            raise ConfigError(
                f"data.tokenizer = {config.tokenizer!r} is not 'bytes', 'bpe' or a readable "
                "tokenizer.json; fix the path or set model.vocab_size"
            ) from None
    return prepare_data(config.model_copy(update={"content_hash": None})).vocab_size
