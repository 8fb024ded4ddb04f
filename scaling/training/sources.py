"""Where text comes from: corpora read as a stream of documents, and the synthetic Markov source.

A corpus is a sequence of named documents (the unit of the train/eval split): the files of the
embedded corpus (:data:`EMBEDDED_CORPUS`), the files of a directory, the blank-line separated
blocks of a text file, or the records of a ``.jsonl`` file; any of these files may be gzip
(``.gz``), zstd (``.zst``) or xz (``.xz``) compressed. :class:`CorpusSource` reads them as
:class:`Piece` objects of at most :data:`PIECE_BYTES` each, so that memory stays bounded
whatever the corpus size: a long document arrives in several pieces, cut at line ends.
:class:`MarkovSource` generates tokens whose entropy rate, the loss no model can beat, is known
exactly.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import lzma
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from scaling.errors import DataError

if TYPE_CHECKING:
    from scaling.config.run import DataConfig, SyntheticConfig

__all__ = [
    "EMBEDDED_CORPUS",
    "EMBEDDED_HASH",
    "PIECE_BYTES",
    "CorpusSource",
    "MarkovSource",
    "Piece",
    "open_source",
]

#: The default corpus, shipped inside the package so that it is the same on every machine:
#: every ``.py`` file of CPython 3.11.7's standard library that is UTF-8 text (1,786 files,
#: 31.5 MB; see scaling/corpora/README.md). Its content hash is checked by the tests.
EMBEDDED_CORPUS = Path(__file__).resolve().parent.parent / "corpora" / "python-stdlib-3.11.7.tar.xz"
EMBEDDED_HASH = "e409f21983869bda1dcdfb67ee8009758aaf38a7342ae1c53682abb3f9f9871e"

#: The most bytes of text read at once: a longer document arrives in several pieces.
PIECE_BYTES = 8 << 20

_COMPRESSED = (".gz", ".zst", ".xz")
# A block of a text file ends with a line holding only whitespace.
_BLANK_LINE = re.compile(rb"\n[ \t\r\f\v]*\n")


@dataclass(frozen=True)
class Piece:
    """Some UTF-8 text of one document.

    Attributes
    ----------
    document : str
        The document's name (its split is decided by a hash of it).
    data : bytes
        Valid UTF-8, cut at a line end (or a character boundary) when the document is long.
    first, last : bool
        Whether the piece begins or ends its document.
    consumed : int
        Bytes of the files on disk read since the previous piece (for progress).
    """

    document: str
    data: bytes
    first: bool = True
    last: bool = True
    consumed: int = 0


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(raw file, decompressed stream) of ``path``, by its suffix."""
    if path.suffix not in _COMPRESSED:  # unbuffered: each read lands in its bytes object once
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
        return raw, raw
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if path.suffix == ".gz":
        return raw, gzip.GzipFile(fileobj=raw)
    if path.suffix == ".xz":
        return raw, lzma.LZMAFile(raw)
    if path.suffix == ".zst":
        import zstandard

        return raw, zstandard.ZstdDecompressor().stream_reader(raw)
    return raw, raw


def _base_suffix(path: Path) -> str:
    """The suffix under any compression suffix: ``.jsonl`` for ``docs.jsonl.gz``."""
    suffixes = path.suffixes
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _cut(buffer: bytes) -> int:
    """Where to cut a long buffer: after its last newline, else before its last character."""
    end = buffer.rfind(b"\n") + 1
    if end:
        return end
    end = len(buffer)
    while end > 0 and (buffer[end - 1] & 0xC0) == 0x80:  # back over continuation bytes
        end -= 1
    if end > 0 and buffer[end - 1] >= 0xC0:  # and over the lead byte of that character
        end -= 1
    return end or len(buffer)


class _Reader:
    """Reads one file in blocks and reports the on-disk bytes consumed, with errors naming it."""

    def __init__(self, path: Path, label: str, field_name: str = "data.source") -> None:
        self.path, self.label, self.field = path, label, field_name
        self.position = 0  # decompressed bytes read
        self._disk = 0
        try:
            self.raw, self.stream = _open_binary(path)
            self.size = os.fstat(self.raw.fileno()).st_size
        except OSError as error:
            raise DataError(f"{field_name} = {str(path)!r}: cannot be read ({error.strerror})") from None
        self.errors: tuple[type[BaseException], ...] = (OSError, EOFError, lzma.LZMAError)
        if path.suffix == ".zst":
            import zstandard

            self.errors += (zstandard.ZstdError,)

    def read(self) -> bytes:
        size = PIECE_BYTES
        if self.stream is self.raw:  # a plain file: ask for what is left, not a piece's worth
            size = max(1, min(PIECE_BYTES, self.size - self.position))
        try:
            block = self.stream.read(size)
        except self.errors as error:
            raise DataError(
                f"{self.field} = {str(self.path)!r}: cannot be read ({error}); check that the "
                "file is whole and its suffix names its compression"
            ) from None
        if self.position == 0 and b"\x00" in block[:8192]:
            raise DataError(
                f"{self.field} = {str(self.path)!r} is a binary file, not text; give UTF-8 text "
                "(or a nanoGPT-style .bin of tokens)"
            )
        self.position += len(block)
        return block

    def consumed(self) -> int:
        disk = self.raw.tell()
        delta, self._disk = disk - self._disk, disk
        return delta

    def check_utf8(self, data: bytes, start: int) -> None:
        """Raise a one-line error if ``data`` (at decompressed offset ``start``) is not UTF-8."""
        if data.isascii():  # ASCII is UTF-8, and this check is many times faster than decoding
            return
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(
                f"{self.field} = {str(self.path)!r} is not UTF-8 text (bad byte at offset "
                f"{start + error.start}); convert it to UTF-8"
            ) from None

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def _whole_file(reader: _Reader, name: str) -> Iterator[Piece]:
    """One file as one document, in pieces cut at line ends."""
    buffer, first = b"", True
    while True:
        block = reader.read()
        buffer += block
        if not block:
            reader.check_utf8(buffer, reader.position - len(buffer))
            yield Piece(name, buffer, first, True, reader.consumed())
            return
        while len(buffer) >= PIECE_BYTES:
            cut = _cut(buffer[:PIECE_BYTES])
            piece, buffer = buffer[:cut], buffer[cut:]
            reader.check_utf8(piece, reader.position - len(piece) - len(buffer))
            yield Piece(name, piece, first, False, reader.consumed())
            first = False


def _blocks(reader: _Reader, name: str) -> Iterator[Piece]:
    """A text file's documents: its blocks of lines, each ending with a blank line (blank
    lines before any text join the block that follows them)."""
    index, buffer, continued = 0, b"", False  # continued: this block's head was passed on
    while True:
        block = reader.read()
        buffer += block
        base = reader.position - len(buffer)  # offset of buffer[0] in the file
        if not block:
            if buffer.strip() or continued:
                reader.check_utf8(buffer, base)
                yield Piece(f"{name}#{index}", buffer, not continued, True, reader.consumed())
            return
        start = 0
        for match in _BLANK_LINE.finditer(buffer):
            chunk = buffer[start : match.end()]
            if not chunk.strip():
                continue
            reader.check_utf8(chunk, base + start)
            yield Piece(f"{name}#{index}", chunk, not continued, True, reader.consumed())
            index, continued, start = index + 1, False, match.end()
        buffer, base = buffer[start:], base + start
        while len(buffer) >= PIECE_BYTES:  # a block longer than a piece: pass on its head
            cut = _cut(buffer[:PIECE_BYTES])
            reader.check_utf8(buffer[:cut], base)
            yield Piece(f"{name}#{index}", buffer[:cut], not continued, False, reader.consumed())
            buffer, base, continued = buffer[cut:], base + cut, True


def _records(reader: _Reader, name: str, text_field: str) -> Iterator[Piece]:
    """A JSONL file's documents: the text field of each record (one per non-blank line)."""
    number, carry = 0, b""
    while True:
        block = reader.read()
        lines = (carry + block).split(b"\n")
        carry = lines.pop() if block else b""
        for line in lines:
            number += 1
            if line.strip():
                yield _record(reader, f"{name}:{number}", number, line, text_field)
        if not block:
            return


def _record(reader: _Reader, name: str, number: int, line: bytes, text_field: str) -> Piece:
    try:
        record = json.loads(line)
    except UnicodeDecodeError:
        raise DataError(
            f"{reader.path}: line {number} is not UTF-8 text; convert the file to UTF-8"
        ) from None
    except json.JSONDecodeError as error:
        raise DataError(f"{reader.path}: line {number} is not JSON ({error.msg}); fix the line") from None
    text = record.get(text_field) if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise DataError(
            f"{reader.path}: line {number} has no text field {text_field!r}; "
            "set data.text_field to the field holding the text"
        )
    return Piece(name, text.encode("utf-8"), True, True, reader.consumed())


def _archive_documents(path: Path) -> Iterator[Piece]:
    """The members of a tar archive (the embedded corpus), in the archive's order."""
    import tarfile

    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as archive:
        last = 0
        for member in archive:
            if not member.isfile():
                continue
            handle = archive.extractfile(member)
            data = handle.read() if handle is not None else b""
            disk, last = raw.tell() - last, raw.tell()
            yield Piece(member.name, data, True, True, disk)


@dataclass
class CorpusSource:
    """A text corpus on disk, read as a stream of :class:`Piece` objects.

    Attributes
    ----------
    kind : str
        ``embedded``, ``text``, ``jsonl`` or ``directory``.
    path : Path
        The file or directory named by ``data.source``.
    files : list of Path
        The files read, in reading order (the directory's matches, sorted).
    text_field : str
        The field holding the text of a JSONL record.
    glob : str
        The pattern of a directory's files.
    """

    kind: str
    path: Path
    files: list[Path] = field(default_factory=list)
    text_field: str = "text"
    glob: str = "**/*.txt"

    def describe(self) -> dict[str, str]:
        """What the manifest records of the source."""
        out = {"kind": self.kind, "path": str(self.path)}
        if self.kind == "directory":
            out["glob"] = self.glob
        if self.kind in ("jsonl", "directory"):
            out["text_field"] = self.text_field
        return out

    def disk_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)

    def fingerprint(self) -> str:
        """A hash of what the source is on disk (paths, sizes, modification times), to find an
        earlier preparation of it without reading it again."""
        entries = [(p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
        text = json.dumps({**self.describe(), "files": entries}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def pieces(self) -> Iterator[Piece]:
        """Every document's text, in order, in pieces of at most about :data:`PIECE_BYTES`."""
        if self.kind == "embedded":
            yield from _archive_documents(self.files[0])
            return
        for path in self.files:
            name = path.relative_to(self.path).as_posix() if self.kind == "directory" else path.name
            reader = _Reader(path, name)
            try:
                if _base_suffix(path) == ".jsonl":
                    yield from _records(reader, name, self.text_field)
                elif self.kind == "directory":
                    yield from _whole_file(reader, name)
                else:
                    yield from _blocks(reader, name)
            finally:
                reader.close()


def open_source(config: DataConfig) -> CorpusSource:
    """The text corpus ``config.source`` names, checked to exist (nothing is read yet).

    Raises
    ------
    DataError
        If the path does not exist, or a directory has no file matching ``data.glob``.
    """
    if config.source == "python-stdlib":
        return CorpusSource("embedded", EMBEDDED_CORPUS, [EMBEDDED_CORPUS])
    path = Path(config.source).expanduser()
    if not path.exists():
        raise DataError(
            f"data.source = {config.source!r}: no such file or directory; give an existing "
            "path, 'python-stdlib' or 'synthetic'"
        )
    path = path.resolve()
    if path.is_dir():
        files = sorted(p for p in path.glob(config.glob) if p.is_file())
        if not files:
            raise DataError(
                f"data.source = {str(path)!r}: no files match data.glob = {config.glob!r}; "
                "change the glob or the directory"
            )
        return CorpusSource("directory", path, files, config.text_field, config.glob)
    kind = "jsonl" if _base_suffix(path) == ".jsonl" else "text"
    return CorpusSource(kind, path, [path], config.text_field)


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
