"""Banded (local) causal attention that computes only the band.

A banded layer lets query ``i`` see the keys ``j`` with ``0 <= i - j < window``: itself and the
``window - 1`` positions before it (GPT-3's locally banded layers). Handing that pattern to
``F.scaled_dot_product_attention`` as a dense (T, T) boolean mask still computes all T² scores,
so a banded layer costs as much as a dense one. :func:`banded_causal_attention` computes the
band in chunks instead:

1. The sequence is right-padded to ``nblocks = ceil(T / window)`` blocks of ``window``
   positions; the keys and values are also left-padded by one block of zeros.
2. Query block ``b`` (queries ``b·W .. b·W + W - 1``, ``W = window``) can only see keys in key
   blocks ``b - 1`` and ``b``, so its scores form one (W, 2W) tile: one batched matmul of the
   (B, H, nblocks, W, hd) queries against the (B, H, nblocks, 2W, hd) key tiles.
3. Inside the tile, query row ``r`` may see tile column ``c`` iff ``r < c <= r + W`` (that is
   ``0 <= i - j < W``); in the first block the left half is the zero padding and is masked too.
   The mask enters as an additive bias (0 or -inf) of shape (nblocks, W, 2W), built once and
   cached per (nblocks, window, device, dtype). Every row keeps its diagonal, so no row is all
   -inf; right-padded queries are computed and sliced away, and right-padded keys are seen by
   right-padded queries only.
4. Softmax over the 2W columns in the input dtype (bf16 under CPU autocast), optional dropout
   on the weights, and a second batched matmul with the (2W, hd) value tiles.

The cost is ``nblocks · W · 2W`` scores instead of ``T²``: at context 1024 and window 64, 128
keys per query instead of 1024. For short sequences (``T² <= nblocks · 2W²``, which holds for
every ``T <= 2·window``) the chunked tiles would compute at least as many scores as the full
(T, T) matrix, so the function hands the full boolean band mask to
``F.scaled_dot_product_attention`` instead, whose fused kernel is the faster of the two there.
:func:`banded_scores_per_token` counts the scores either path computes, for FLOP accounting.

Grouped-query attention (k, v with ``H_kv`` heads dividing the ``H`` query heads; query head
``h`` uses kv head ``h // (H // H_kv)``, as SDPA's ``enable_gqa``) does not copy the kv heads:
the ``H // H_kv`` query heads of a group are stacked as extra rows of the same tile (and the
bias repeated for them).

Both paths are plain differentiable tensor code (pad, view, cat, matmul, add, softmax; SDPA),
so autograd supplies the backward pass.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["banded_causal_attention", "banded_scores_per_token"]


def _use_chunks(T: int, window: int) -> bool:
    """Whether the chunked tiles compute fewer scores than the full (T, T) matrix."""
    nblocks = -(-T // window)
    return T * T > nblocks * window * 2 * window


def banded_scores_per_token(context: int, window: int) -> int:
    """Query-key scores :func:`banded_causal_attention` computes per query position.

    Counts every score the function evaluates on a full sequence of ``context`` positions,
    padding and masked entries included, divided by ``context`` and rounded half up:

    * chunked path (``context² > nblocks · 2·window²``, ``nblocks = ceil(context / window)``):
      ``nblocks · window · 2·window / context``, which is ``2·window`` when ``window`` divides
      ``context`` and more otherwise (the padded last block is computed in full);
    * dense path (every other context, including all ``context <= 2·window``): ``context``,
      the full (context, context) score matrix.

    Each score is one ``head_dim``-long dot product for QKᵀ and one for weights·V, so a banded
    layer costs ``2 · 2 · d_model · scores`` forward FLOPs per token (2 FLOPs per multiply-add,
    summed over the heads) and ``12 · d_model · scores`` for forward + backward (backward taken
    as twice forward). The count is per query head and does not depend on grouped-query
    attention, which shares the keys but not the scores.

    Parameters
    ----------
    context : int
        Sequence length ``T`` (>= 1).
    window : int
        Band width (>= 1): keys a query attends to, itself included.

    Returns
    -------
    int
        Scores computed per query position.

    Examples
    --------
    >>> banded_scores_per_token(1024, 64)
    128
    >>> banded_scores_per_token(100, 64)  # T <= 2·window: the full matrix
    100
    """
    if context < 1 or window < 1:
        raise ValueError(f"context = {context} and window = {window} must both be >= 1")
    if not _use_chunks(context, window):
        return context
    nblocks = -(-context // window)
    total = nblocks * window * 2 * window
    return (2 * total + context) // (2 * context)  # total / context rounded half up


@lru_cache(maxsize=32)
def _tile_bias(
    nblocks: int, group: int, window: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """(nblocks, group·W, 2W) additive mask of the score tiles: 0 where allowed, -inf elsewhere.

    Row ``r`` of block ``b`` is query ``b·W + r``; column ``c`` is key ``(b - 1)·W + c``, so
    ``i - j = r + W - c`` and the band ``0 <= i - j < W`` is ``r < c <= r + W``. Block 0's
    left half (keys before position 0, the zero padding) is masked as well. The (W, 2W) pattern
    repeats for each of the ``group`` query heads stacked in a tile.
    """
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable under autograd
        rows = torch.arange(window, device=device)[:, None]
        cols = torch.arange(2 * window, device=device)[None, :]
        allowed = ((cols > rows) & (cols <= rows + window)).repeat(nblocks, group, 1)
        allowed.view(nblocks, group, window, 2 * window)[0, :, :, :window] = False
        bias = torch.zeros(allowed.shape, dtype=dtype, device=device)
        return bias.masked_fill_(~allowed, float("-inf"))


@lru_cache(maxsize=32)
def _band_mask(T: int, window: int, device: torch.device) -> Tensor:
    """(T, T) booleans of the full matrix: allowed[i, j] = 0 <= i - j < window."""
    with torch.inference_mode(False), torch.no_grad():
        position = torch.arange(T, device=device)
        distance = position[:, None] - position[None, :]
        return (distance >= 0) & (distance < window)


def _key_tiles(x: Tensor, window: int, nblocks: int) -> Tensor:
    """(B, G, T, hd) -> (B, G, nblocks, 2W, hd): for block b, positions (b-1)·W .. (b+1)·W - 1.

    One zero block on the left (keys before position 0) and zeros on the right up to
    ``nblocks · W``; tile ``b`` is key blocks ``b - 1`` and ``b`` side by side (a copy of 2·T
    rows, small next to the (W, 2W) score tiles).
    """
    B, G, T, hd = x.shape
    padded = F.pad(x, (0, 0, window, nblocks * window - T))
    blocks = padded.reshape(B, G, nblocks + 1, window, hd)
    return torch.cat([blocks[:, :, :-1], blocks[:, :, 1:]], dim=3)


def banded_causal_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    scale: float | None = None,
    dropout: float = 0.0,
    training: bool = False,
) -> Tensor:
    """Causal attention restricted to a band: query ``i`` sees keys ``0 <= i - j < window``.

    Equal (up to rounding) to ``F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
    scale=scale, enable_gqa=True)`` with ``allowed[i, j] = 0 <= i - j < window``, but computes
    only ``banded_scores_per_token(T, window)`` scores per query instead of ``T`` (see the
    module docstring for the method).

    Parameters
    ----------
    q : Tensor
        Queries, (B, H, T, hd).
    k, v : Tensor
        Keys and values, (B, H_kv, T, hd) with ``H_kv`` dividing ``H`` (grouped-query
        attention: query head ``h`` uses kv head ``h // (H // H_kv)``).
    window : int
        Keys a query attends to, itself included (>= 1). ``window >= T`` is plain causal
        attention; ``window == 1`` returns ``v`` (expanded to the query heads).
    scale : float or None
        Multiplier of the scores; None means ``1 / sqrt(hd)``.
    dropout : float
        Probability of zeroing an attention weight, applied only when ``training``.
    training : bool
        Whether to apply ``dropout``.

    Returns
    -------
    Tensor
        (B, H, T, hd), in the dtype of the matmuls (the input dtype, or bf16 under autocast).
        Not necessarily contiguous when T is not a multiple of ``window``.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k and v must be 4-d: (batch, heads, time, head_dim)")
    B, H, T, hd = q.shape
    H_kv = k.shape[1]
    if k.shape != v.shape or k.shape[0] != B or k.shape[2] != T or k.shape[3] != hd:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} do not fit q {tuple(q.shape)}")
    if H_kv < 1 or H % H_kv:
        raise ValueError(f"{H_kv} kv heads do not divide {H} query heads")
    if window < 1:
        raise ValueError(f"window = {window} must be >= 1")
    if T < 1:
        raise ValueError("the sequence is empty (T = 0)")
    if scale is None:
        scale = 1.0 / math.sqrt(hd)
    group = H // H_kv
    p = dropout if training and dropout > 0 else 0.0

    if not _use_chunks(T, window):
        return _dense_banded(q, k, v, window, scale, p)

    W = window
    nblocks = -(-T // W)
    # Queries scaled once (T·hd products instead of T·2W), padded, and the `group` query heads
    # sharing a kv head stacked as rows of one tile: (B, H_kv, nblocks, group·W, hd).
    queries = F.pad(q * scale, (0, 0, 0, nblocks * W - T))
    queries = queries.reshape(B, H_kv, group, nblocks, W, hd)
    if group > 1:
        queries = queries.transpose(2, 3)  # (B, H_kv, nblocks, group, W, hd)
    queries = queries.reshape(B, H_kv, nblocks, group * W, hd)
    keys = _key_tiles(k, W, nblocks)  # (B, H_kv, nblocks, 2W, hd)
    values = _key_tiles(v, W, nblocks)

    scores = torch.matmul(queries, keys.transpose(-1, -2))  # (B, H_kv, nblocks, group·W, 2W)
    # In place on the whole tensor (not a view of it, which autograd would answer with copies):
    # matmul's backward does not need its output, and the add's gradient is the identity.
    scores.add_(_tile_bias(nblocks, group, W, scores.device, scores.dtype))
    weights = torch.softmax(scores, dim=-1)
    if p > 0:
        weights = F.dropout(weights, p, training=True)
    out = torch.matmul(weights, values)  # (B, H_kv, nblocks, group·W, hd)

    out = out.view(B, H_kv, nblocks, group, W, hd)
    if group > 1:
        out = out.transpose(2, 3)  # (B, H_kv, group, nblocks, W, hd)
    return out.reshape(B, H, nblocks * W, hd)[:, :, :T]


def _dense_banded(
    q: Tensor, k: Tensor, v: Tensor, window: int, scale: float, dropout: float
) -> Tensor:
    """The full (T, T) band-masked score matrix in SDPA's fused kernel, for short sequences.

    Where this path is taken the chunked tiles would compute at least as many scores, and the
    fused kernel was also the faster: 2-2.7x the chunked path's speed at ``T = 2·window = 128``
    (fp32, forward + backward, one thread of a 2-core AVX2 CPU; reports/banded-attention).
    """
    mask = _band_mask(q.shape[2], window, q.device)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale,
        enable_gqa=k.shape[1] != q.shape[1],
    )
