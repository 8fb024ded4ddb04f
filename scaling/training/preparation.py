"""Preparing a text corpus into token shards: one streaming pass, bounded memory, K processes.

:func:`prepare_corpus` reads a :class:`~scaling.training.sources.CorpusSource` piece by piece,
decides each document's split by a hash of its name (:func:`is_eval_document`, one pass, no
list scans), checks its UTF-8, hashes the content in reading order, and hands batches of
pieces to ``workers`` processes that tokenise them; the main process writes the tokens to
the shards in order. Everything is written into a temporary sibling of the output directory
and renamed into place at the end, so a failure leaves nothing half-written.

``scaling data prepare`` and the token cache of text sources
(:func:`scaling.training.data.prepare_data`) both call it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from scaling.errors import DataError
from scaling.training.shards import MANIFEST, MANIFEST_FORMAT, token_dtype
from scaling.training.sources import CorpusSource, Piece

__all__ = ["BATCH_BYTES", "SHARD_TOKENS", "TOKENIZER_BATCH_BYTES", "Progress", "is_eval_document", "prepare_corpus", "tokenizer_id"]

#: Text handed to a worker at once (at most two batches per worker are in flight): large for
#: byte tokens, which cost little each; small for a tokenizer, so that the work spreads evenly
#: over the processes and a batch's encodings stay small.
BATCH_BYTES = 16 << 20
TOKENIZER_BATCH_BYTES = 1 << 20
#: Tokens per shard file (a new shard starts when one is full).
SHARD_TOKENS = 1 << 30
#: Text a BPE tokenizer is trained on: a sample of the training documents.
BPE_SAMPLE_BYTES = 256 << 20


def is_eval_document(name: str, eval_fraction: float) -> bool:
    """Split by a hash of the document's name: fixed, and stable when documents are added.

    Examples
    --------
    >>> is_eval_document("os.py", 0.5), is_eval_document("os.py", 1e-9)
    (False, False)
    """
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


@dataclass
class Progress:
    """Where a preparation stands, as passed to its ``on_progress`` callback."""

    disk_bytes: int = 0  # bytes of the source files read so far
    total_disk_bytes: int = 0
    text_bytes: int = 0  # UTF-8 bytes of text
    tokens: int = 0
    documents: int = 0
    started: float = field(default_factory=time.perf_counter)
    phase: str = "tokenizing"


# ----------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _start_worker(tokenizer_file: str | None) -> None:
    """Process initializer: one tokenizer per process, single-threaded (the processes are the
    parallelism)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER.clear()
    if tokenizer_file is not None:
        from tokenizers import Tokenizer

        _WORKER["tokenizer"] = Tokenizer.from_file(tokenizer_file)


def _encode(batch: list[tuple[bool, bytes]], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(train tokens, eval tokens) of a batch of (is_eval, UTF-8 piece)."""
    out = []
    tokenizer = _WORKER.get("tokenizer")
    for split in (False, True):
        pieces = [data for held, data in batch if held is split]
        if not pieces:
            out.append(np.empty(0, dtype=dtype))
        elif tokenizer is None:  # one cast-and-copy per piece into the batch's array
            tokens = np.empty(sum(len(p) for p in pieces), dtype=dtype)
            position = 0
            for piece in pieces:
                tokens[position : position + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
                position += len(piece)
            out.append(tokens)
        else:
            texts = [p.decode("utf-8") for p in pieces]
            # ids only: the fast variant skips the character offsets nobody reads here
            encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
            encodings = encode(texts)
            ids = [np.asarray(e.ids, dtype=dtype) for e in encodings]
            out.append(np.concatenate(ids) if ids else np.empty(0, dtype=dtype))
    return out[0], out[1]


def _encode_into(batch: list[tuple[bool, bytes]], dtype: str,
                 writers: dict[str, _ShardWriter]) -> tuple[int, int]:
    """Tokenise a batch and append it to the shards (the one-process path, in its thread)."""
    train, held = _encode(batch, dtype)
    writers["train"].write(train)
    writers["eval"].write(held)
    return len(train), len(held)


class _Inline:
    """The one-process executor: tokenising in one thread beside the reading (numpy's casts and
    the tokenizers library release the GIL), with the same calls as a process pool."""

    def __init__(self, tokenizer_file: str | None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.saved = os.environ.get("TOKENIZERS_PARALLELISM")
        _start_worker(tokenizer_file)
        self.pool = ThreadPoolExecutor(1)

    def submit(self, fn: Callable, *args: Any) -> Future:
        return self.pool.submit(fn, *args)

    def shutdown(self, cancel_futures: bool = False) -> None:
        self.pool.shutdown(cancel_futures=cancel_futures)
        _WORKER.clear()
        if self.saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = self.saved


# ----------------------------------------------------------------------------- shards


class _ShardWriter:
    """Appends tokens of one split to ``<split>-00000.bin``, ``-00001.bin``, ... in order."""

    def __init__(self, directory: Path, split: str) -> None:
        self.directory, self.split = directory, split
        self.names: list[str] = []
        self.tokens = 0
        self._handle: BinaryIO | None = None
        self._in_shard = 0

    def write(self, tokens: np.ndarray) -> None:
        while len(tokens):
            if self._handle is None or self._in_shard >= SHARD_TOKENS:
                self._rotate()
            take = tokens[: SHARD_TOKENS - self._in_shard]
            take.tofile(self._handle)
            self._in_shard += len(take)
            self.tokens += len(take)
            tokens = tokens[len(take):]

    def _rotate(self) -> None:
        self.close()
        name = f"{self.split}-{len(self.names):05d}.bin"
        self.names.append(name)
        self._handle = open(self.directory / name, "wb")  # noqa: SIM115 - closed in close()
        self._in_shard = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# ----------------------------------------------------------------------------- the pass


@dataclass
class _Pass:
    """Counts and hash of one pass over the corpus."""

    hasher: Any = field(default_factory=hashlib.sha256)
    documents: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})
    text_bytes: dict[bool, int] = field(default_factory=lambda: {False: 0, True: 0})
    first_document: str | None = None
    last_document: str | None = None
    eval_names: list[str] = field(default_factory=list)


def _routed(pieces: Iterator[Piece], eval_fraction: float, forced: dict[str, bool],
            state: _Pass) -> Iterator[tuple[Piece, bool]]:
    """Each non-empty piece with its split, hashing and counting documents on the way."""
    held = False
    for piece in pieces:
        if piece.first:
            if piece.last and not piece.data:  # an empty document: hashed, but no document
                state.hasher.update(piece.document.encode() + b"\x00\x00")
                continue
            held = forced.get(piece.document, is_eval_document(piece.document, eval_fraction))
            state.documents[held] += 1
            state.hasher.update(piece.document.encode() + b"\x00")
            state.first_document = state.first_document or piece.document
            state.last_document = piece.document
            if held and len(state.eval_names) < 1000:
                state.eval_names.append(piece.document)
        state.hasher.update(piece.data)
        if piece.last:
            state.hasher.update(b"\x00")
        state.text_bytes[held] += len(piece.data)
        yield piece, held


def _batches(routed: Iterator[tuple[Piece, bool]], progress: Progress, limit: int,
             on_progress: Callable[[Progress], None] | None) -> Iterator[list[tuple[bool, bytes]]]:
    batch: list[tuple[bool, bytes]] = []
    size = 0
    for piece, held in routed:
        batch.append((held, piece.data))
        size += len(piece.data)
        progress.disk_bytes += piece.consumed
        progress.text_bytes += len(piece.data)
        progress.documents += piece.first
        if size >= limit:
            yield batch
            batch, size = [], 0
            if on_progress is not None:
                on_progress(progress)
    if batch:
        yield batch


def _tokenize_pass(source: CorpusSource, directory: Path, tokenizer_file: str | None,
                   dtype: np.dtype, eval_fraction: float, forced: dict[str, bool], workers: int,
                   progress: Progress, on_progress: Callable[[Progress], None] | None,
                   ) -> tuple[_Pass, dict[str, _ShardWriter]]:
    state = _Pass()
    writers = {"train": _ShardWriter(directory, "train"), "eval": _ShardWriter(directory, "eval")}
    # Spawned, not forked: the parent may already have used the tokenizers library's threads.
    executor: Any = (_Inline(tokenizer_file) if workers <= 1 else ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
        initargs=(tokenizer_file,)))
    pending: deque[Future] = deque()

    def drain(keep: int) -> None:
        while len(pending) > keep:
            train, held = pending.popleft().result()
            if isinstance(train, np.ndarray):  # from a process: written here, in order
                writers["train"].write(train)
                writers["eval"].write(held)
                train, held = len(train), len(held)
            progress.tokens += train + held

    try:
        routed = _routed(source.pieces(), eval_fraction, forced, state)
        limit = BATCH_BYTES if tokenizer_file is None else TOKENIZER_BATCH_BYTES
        for batch in _batches(routed, progress, limit, on_progress):
            if workers <= 1:  # the executor's one thread writes too, in order, beside the reading
                pending.append(executor.submit(_encode_into, batch, dtype.name, writers))
            else:
                pending.append(executor.submit(_encode, batch, dtype.name))
            drain(2 * max(1, workers) - 1)
        drain(0)
    finally:
        executor.shutdown(cancel_futures=True)
        for writer in writers.values():
            writer.close()
    return state, writers


# ----------------------------------------------------------------------------- tokenizers


def _bpe_sample(source: CorpusSource, eval_fraction: float, limit: int) -> Iterator[str]:
    """Training documents for the BPE trainer: about ``limit`` bytes, spread over the corpus."""
    rate = min(1.0, limit / max(1, source.disk_bytes()))
    taken, keep = 0, False
    for piece in source.pieces():
        if piece.first:
            keep = not is_eval_document(piece.document, eval_fraction) and (
                rate >= 1.0 or is_eval_document("bpe-sample:" + piece.document, rate))
        if keep and piece.data:
            taken += len(piece.data)
            yield piece.data.decode("utf-8")
            if taken >= limit:
                return


def tokenizer_id(tokenizer: str, bpe_vocab_size: int) -> str:
    """How the manifest and the cache name a tokenizer: ``bytes``, ``bpe<vocabulary>`` or
    ``json-<first 12 hex digits of the file's SHA-256>``.

    Raises
    ------
    DataError
        If ``tokenizer`` names no file.
    """
    if tokenizer == "bytes":
        return "bytes"
    if tokenizer == "bpe":
        return f"bpe{bpe_vocab_size}"
    path = Path(tokenizer)
    if not path.is_file():
        raise DataError(
            f"data.tokenizer = {tokenizer!r}: no such file; use 'bytes', 'bpe' or the path of a "
            "tokenizer.json"
        )
    return "json-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _tokenizer(source: CorpusSource, directory: Path, tokenizer: str, bpe_vocab_size: int,
               eval_fraction: float, progress: Progress,
               on_progress: Callable[[Progress], None] | None) -> tuple[str, str | None, int]:
    """(tokenizer id, tokenizer.json in ``directory`` or None, vocabulary size)."""
    if tokenizer == "bytes":
        return "bytes", None, 256
    target = directory / "tokenizer.json"
    from tokenizers import Tokenizer

    if tokenizer == "bpe":
        from tokenizers import decoders, models, pre_tokenizers, trainers

        progress.phase = "training BPE"
        if on_progress is not None:
            on_progress(progress)
        model = Tokenizer(models.BPE())
        # Byte-level pre-tokenisation: every string is representable, nothing maps to <unk>.
        model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        model.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=bpe_vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        model.train_from_iterator(_bpe_sample(source, eval_fraction, BPE_SAMPLE_BYTES), trainer=trainer)
        model.save(str(target))
        progress.phase = "tokenizing"
        return tokenizer_id(tokenizer, bpe_vocab_size), str(target), model.get_vocab_size()
    path = Path(tokenizer)
    name = tokenizer_id(tokenizer, bpe_vocab_size)  # checks that the file exists
    try:
        vocab = Tokenizer.from_file(str(path)).get_vocab_size()
    except Exception as error:  # noqa: BLE001 - the library raises a bare Exception for bad files
        raise DataError(
            f"data.tokenizer = {tokenizer!r}: not a readable tokenizer.json ({error}); give a file "
            "saved by the tokenizers library"
        ) from None
    shutil.copyfile(path, target)
    return name, str(target), vocab


# ----------------------------------------------------------------------------- entry point


def _forced_splits(source: CorpusSource, eval_fraction: float) -> dict[str, bool]:
    """For a directory of whole-file documents, whose names are known before reading: hold out
    the last file when the hash holds out none (and keep the first when it holds out all)."""
    if source.kind != "directory" or any(".jsonl" in p.suffixes for p in source.files):
        return {}
    names = [p.relative_to(source.path).as_posix() for p in source.files]
    held = [is_eval_document(n, eval_fraction) for n in names]
    if len(names) >= 2 and not any(held):
        return {names[-1]: True}
    if len(names) >= 2 and all(held):
        return {names[0]: False}
    return {}


def prepare_corpus(source: CorpusSource, output: Path, *, tokenizer: str = "bytes",
                   bpe_vocab_size: int = 4096, eval_fraction: float = 0.02, workers: int = 1,
                   label: str | None = None,
                   on_progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Tokenise ``source`` into token shards and a manifest in the new directory ``output``.

    Parameters
    ----------
    source : CorpusSource
        The corpus (:func:`scaling.training.sources.open_source`).
    output : Path
        The directory to create; it must not exist.
    tokenizer : str
        ``bytes``, ``bpe`` (trained on a sample of the training documents) or a tokenizer.json.
    bpe_vocab_size, eval_fraction : int, float
        The BPE vocabulary asked for; the share of documents held out, by a hash of each name.
    workers : int
        Tokenizing processes (1: in this process).
    label : str, optional
        How errors name the source (default: its path).
    on_progress : callable, optional
        Called with a :class:`Progress` after every batch.

    Returns
    -------
    dict
        The manifest written to ``output / "manifest.json"``.

    Raises
    ------
    DataError
        If the source is empty, has fewer than two documents, is not UTF-8 text, or a JSONL
        line lacks the text field; nothing is left behind.
    """
    label = label or str(source.path)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        manifest = _prepare_into(source, temporary, tokenizer, bpe_vocab_size, eval_fraction,
                                 workers, label, on_progress)
        os.rename(temporary, output)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return manifest


def _prepare_into(source: CorpusSource, directory: Path, tokenizer: str, bpe_vocab_size: int,
                  eval_fraction: float, workers: int, label: str,
                  on_progress: Callable[[Progress], None] | None) -> dict[str, Any]:
    progress = Progress(total_disk_bytes=source.disk_bytes())
    tokenizer_id, tokenizer_file, vocab = _tokenizer(
        source, directory, tokenizer, bpe_vocab_size, eval_fraction, progress, on_progress)
    dtype = token_dtype(vocab)
    forced = _forced_splits(source, eval_fraction)
    for attempt in range(2):
        state, writers = _tokenize_pass(source, directory, tokenizer_file, dtype, eval_fraction,
                                        forced, workers, progress, on_progress)
        count = state.documents[False] + state.documents[True]
        if count < 2:
            if not state.text_bytes[False] + state.text_bytes[True]:
                raise DataError(f"data.source = {label!r} is empty; give a corpus with text")
            raise DataError(
                f"data.source = {label!r} has {count} document(s); need at least 2 to hold some "
                "out for evaluation (separate documents by a blank line)"
            )
        if (state.documents[True] and state.documents[False]) or attempt:
            break
        # A small corpus can miss the fraction: hold out its last document (or keep its first).
        forced = ({state.last_document: True} if not state.documents[True]
                  else {state.first_document: False})
        for writer in writers.values():
            for name in writer.names:
                (directory / name).unlink()
        progress = Progress(total_disk_bytes=progress.total_disk_bytes)
    if on_progress is not None:
        progress.phase = "done"
        on_progress(progress)
    manifest = _manifest(source, state, writers, tokenizer_id, tokenizer_file, vocab, dtype,
                         eval_fraction)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _manifest(source: CorpusSource, state: _Pass, writers: dict[str, _ShardWriter],
              tokenizer_id: str, tokenizer_file: str | None, vocab: int, dtype: np.dtype,
              eval_fraction: float) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        scaling_version = version("scaling")
    except PackageNotFoundError:
        scaling_version = "unknown"
    eval_tokens = writers["eval"].tokens
    return {
        "format": MANIFEST_FORMAT,
        "source": source.describe(),
        "tokenizer": tokenizer_id,
        "tokenizer_file": "tokenizer.json" if tokenizer_file else None,
        "vocab_size": int(vocab),
        "dtype": dtype.name,
        "eval_fraction": eval_fraction,
        "split": "a document is held out when the first 8 bytes of SHA-256(name), read as an "
                 "integer over 2**64, are below eval_fraction",
        "documents": {"train": state.documents[False], "eval": state.documents[True]},
        "tokens": {"train": writers["train"].tokens, "eval": eval_tokens},
        "bytes": {"train": state.text_bytes[False], "eval": state.text_bytes[True]},
        "bytes_per_token": state.text_bytes[True] / max(1, eval_tokens),
        "content_hash": state.hasher.hexdigest(),
        "eval_documents": state.eval_names,
        "shards": {"train": writers["train"].names, "eval": writers["eval"].names},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scaling_version": scaling_version,
    }
