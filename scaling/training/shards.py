"""Token shards on disk, used in place: memory-mapped, never copied, never re-read at run start.

A prepared corpus is a directory holding a ``manifest.json`` and flat token files (``uint16``
or ``uint32``, chosen by the vocabulary size), written by :mod:`scaling.training.preparation`.
A nanoGPT-style ``.bin`` (with its ``val.bin``) is one such shard without a manifest.
:class:`TokenStream` presents the shards of a split as one sequence of tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scaling.errors import DataError

__all__ = [
    "MANIFEST",
    "MANIFEST_FORMAT",
    "TokenStream",
    "is_prepared",
    "read_manifest",
    "token_dtype",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "scaling-tokens/2"


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id of the vocabulary."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def is_prepared(path: Path) -> bool:
    """Whether ``path`` is a directory written by ``scaling data prepare``."""
    return path.is_dir() and (path / MANIFEST).is_file()


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a prepared directory, checked to be one this version reads.

    Raises
    ------
    DataError
        If the manifest is not JSON, has another format, or names a shard that is missing or
        whose size does not match its token count.
    """
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable manifest ({error}); prepare the corpus again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise DataError(
            f"{path}: format {found!r} is not {MANIFEST_FORMAT!r}; prepare the corpus again "
            "with `scaling data prepare`"
        )
    itemsize = np.dtype(manifest["dtype"]).itemsize
    for split in ("train", "eval"):
        total = 0
        for name in manifest["shards"][split]:
            shard = directory / name
            if not shard.is_file():
                raise DataError(f"{shard}: shard missing; prepare the corpus again")
            total += shard.stat().st_size // itemsize
        if total != manifest["tokens"][split]:
            raise DataError(
                f"{directory}: the {split} shards hold {total} tokens, the manifest says "
                f"{manifest['tokens'][split]}; prepare the corpus again"
            )
    return manifest


class TokenStream(Sequence):
    """Several memory-mapped token files (or a window of them) as one flat sequence.

    Slicing returns a numpy array (a view when the slice lies within one shard). Nothing is
    read until sliced, so opening a stream over gigabytes costs a few system calls.

    Parameters
    ----------
    paths : sequence of Path
        The shard files, in order; empty files are skipped.
    dtype : numpy dtype
        The token type of every shard.
    start, stop : int, optional
        A window of the concatenated tokens (the tail of a ``.bin`` held out for evaluation).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> np.arange(5, dtype=np.uint16).tofile(folder / "a.bin")
    >>> np.arange(5, 8, dtype=np.uint16).tofile(folder / "b.bin")
    >>> stream = TokenStream([folder / "a.bin", folder / "b.bin"], np.uint16)
    >>> len(stream), stream[3:7].tolist(), stream.window(6, 8)[:].tolist()
    (8, [3, 4, 5, 6], [6, 7])
    """

    def __init__(self, paths: Sequence[Path], dtype: Any, start: int = 0,
                 stop: int | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.paths = [Path(p) for p in paths if Path(p).stat().st_size]
        self.maps = [np.memmap(p, dtype=self.dtype, mode="r") for p in self.paths]
        self.offsets = np.cumsum([0] + [len(m) for m in self.maps])
        total = int(self.offsets[-1])
        self.start = start
        self.stop = total if stop is None else stop

    def window(self, start: int, stop: int) -> TokenStream:
        """The tokens ``[start, stop)`` of this stream, as a stream over the same files."""
        out = TokenStream.__new__(TokenStream)
        out.dtype, out.paths, out.maps, out.offsets = self.dtype, self.paths, self.maps, self.offsets
        out.start, out.stop = self.start + start, self.start + stop
        return out

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            begin, end, step = index.indices(len(self))
            if step != 1:
                return self._read(begin, end)[::step]
            return self._read(begin, end)
        position = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= position < len(self):
            raise IndexError(f"token {index} of a stream of {len(self)}")
        return self._read(position, position + 1)[0]

    def _read(self, begin: int, end: int) -> np.ndarray:
        begin, end = self.start + begin, self.start + max(begin, end)
        first = int(np.searchsorted(self.offsets, begin, side="right")) - 1
        if first < 0 or first >= len(self.maps):
            return np.empty(0, dtype=self.dtype)
        if end <= self.offsets[first + 1]:  # within one shard: a view, no copy
            base = int(self.offsets[first])
            return self.maps[first][begin - base : end - base]
        parts, shard = [], first
        while begin < end and shard < len(self.maps):
            base, top = int(self.offsets[shard]), int(self.offsets[shard + 1])
            parts.append(self.maps[shard][begin - base : min(end, top) - base])
            begin, shard = min(end, top), shard + 1
        return np.concatenate(parts)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self._read(0, len(self)))
        return out.astype(dtype) if dtype is not None else out

    def __repr__(self) -> str:
        return f"TokenStream({len(self)} {self.dtype.name} tokens in {len(self.paths)} shard(s))"
