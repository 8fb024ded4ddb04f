"""Banded causal attention against dense SDPA given the band as an explicit boolean mask."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from scaling.training.attention import banded_causal_attention, banded_scores_per_token


def band_mask(T: int, window: int) -> torch.Tensor:
    """allowed[i, j] = 0 <= i - j < window."""
    position = torch.arange(T)
    distance = position[:, None] - position[None, :]
    return (distance >= 0) & (distance < window)


def reference(q, k, v, window, scale=None):
    """SDPA with the dense band mask, the kv heads expanded to the query heads."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=band_mask(q.shape[2], window), scale=scale
    )


def qkv(T, H=2, H_kv=None, B=2, hd=8, seed=0, grad=False):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(B, H, T, hd), (B, H_kv or H, T, hd), (B, H_kv or H, T, hd)]
    return [torch.randn(s, generator=generator).requires_grad_(grad) for s in shapes]


# (T, window): T a multiple of window, not a multiple, T < window, T == window, window == 1,
# window >= T, and the boundary between the dense path (T² <= nblocks·2W²) and the chunked one.
CASES = [(64, 16), (100, 16), (37, 8), (5, 16), (16, 16), (33, 1), (20, 50), (20, 20),
         (24, 8), (25, 8), (130, 32), (1, 1), (1, 4), (2, 1), (3, 1)]


@pytest.mark.parametrize("T,window", CASES)
def test_matches_sdpa_with_band_mask(T, window):
    q, k, v = qkv(T)
    out = banded_causal_attention(q, k, v, window)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, reference(q, k, v, window), atol=1e-5, rtol=1e-5)


def test_cases_cover_both_paths():
    # The chunked path computes fewer than T scores per query, the dense fallback exactly T.
    chunked = [(T, w) for T, w in CASES if banded_scores_per_token(T, w) < T]
    dense = [(T, w) for T, w in CASES if banded_scores_per_token(T, w) == T]
    assert len(chunked) >= 6 and len(dense) >= 6


def test_explicit_scale():
    q, k, v = qkv(70)
    out = banded_causal_attention(q, k, v, 16, scale=0.3)
    torch.testing.assert_close(out, reference(q, k, v, 16, scale=0.3), atol=1e-5, rtol=1e-5)


def test_window_one_returns_values():
    q, k, v = qkv(45)
    torch.testing.assert_close(banded_causal_attention(q, k, v, 1), v, atol=1e-6, rtol=0)


@pytest.mark.parametrize("T", [30, 64])
def test_window_at_least_context_is_plain_causal(T):
    q, k, v = qkv(T)
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    for window in (T, T + 7):
        out = banded_causal_attention(q, k, v, window)
        torch.testing.assert_close(out, causal, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("H_kv", [1, 2])
@pytest.mark.parametrize("T,window", [(100, 16), (64, 16), (20, 16)])
def test_grouped_query_attention(H_kv, T, window):
    q, k, v = qkv(T, H=4, H_kv=H_kv)
    out = banded_causal_attention(q, k, v, window)
    torch.testing.assert_close(out, reference(q, k, v, window), atol=1e-5, rtol=1e-5)
    # Query head h reads kv head h // (H // H_kv): SDPA's own enable_gqa agrees.
    sdpa_gqa = F.scaled_dot_product_attention(
        q, k, v, attn_mask=band_mask(T, window), enable_gqa=True
    )
    torch.testing.assert_close(out, sdpa_gqa, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("H_kv,T,window", [(4, 100, 16), (2, 90, 8), (4, 20, 16), (1, 70, 16)])
def test_gradients_match_reference(H_kv, T, window):
    q, k, v = qkv(T, H=4, H_kv=H_kv, grad=True)
    upstream = torch.randn(q.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(banded_causal_attention(q, k, v, window), (q, k, v), upstream)
    expected = torch.autograd.grad(reference(q, k, v, window), (q, k, v), upstream)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_outputs_ignore_tokens_outside_the_window():
    T, window = 90, 16
    q, k, v = qkv(T, B=1)
    out = banded_causal_attention(q, k, v, window)
    generator = torch.Generator().manual_seed(2)
    for i in (0, 15, 16, 40, 47, 48, 89):
        k2, v2 = k.clone(), v.clone()
        outside = (torch.arange(T) > i) | (torch.arange(T) <= i - window)
        k2[:, :, outside] = torch.randn(k2[:, :, outside].shape, generator=generator) * 5
        v2[:, :, outside] = torch.randn(v2[:, :, outside].shape, generator=generator) * 5
        changed = banded_causal_attention(q, k2, v2, window)
        torch.testing.assert_close(changed[:, :, i], out[:, :, i], atol=1e-6, rtol=0)
        # ... while changing one key inside the window does change it.
        k3 = k.clone()
        k3[:, :, max(0, i - window + 1)] += 3.0
        if i > 0:
            assert not torch.allclose(banded_causal_attention(q, k3, v, window)[:, :, i],
                                      out[:, :, i])


def test_non_contiguous_inputs():
    # The model passes (B, T, H, hd) projections transposed to (B, H, T, hd).
    B, T, H, hd = 2, 70, 4, 8
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(B, T, H, hd, generator=generator).transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous()
    out = banded_causal_attention(q, k, v, 16)
    torch.testing.assert_close(out, reference(q, k, v, 16), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T,window", [(128, 16), (100, 16), (24, 16)])
def test_bf16_autocast_stays_close_to_fp32(T, window):
    q, k, v = qkv(T, H=4, H_kv=2)
    expected = reference(q, k, v, window)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the model's CPU bf16 recipe
        out = banded_causal_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), window)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=5e-2, rtol=5e-2)


def test_bf16_autocast_backward():
    q, k, v = (t.bfloat16().requires_grad_() for t in qkv(100))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        banded_causal_attention(q, k, v, 16).float().square().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v))


def test_dropout_only_when_training():
    q, k, v = qkv(100)
    plain = banded_causal_attention(q, k, v, 16)
    torch.testing.assert_close(banded_causal_attention(q, k, v, 16, dropout=0.5), plain)
    torch.manual_seed(0)
    dropped = banded_causal_attention(q, k, v, 16, dropout=0.5, training=True)
    assert not torch.allclose(dropped, plain)
    # p = 1 zeroes every weight; on the dense fallback too.
    assert banded_causal_attention(q, k, v, 16, dropout=1.0, training=True).abs().max() == 0
    assert banded_causal_attention(q, k, v, 64, dropout=1.0, training=True).abs().max() == 0


def test_invalid_arguments():
    q, k, v = qkv(10, H=4, H_kv=2)
    with pytest.raises(ValueError, match="window"):
        banded_causal_attention(q, k, v, 0)
    with pytest.raises(ValueError, match="divide"):
        banded_causal_attention(q, *qkv(10, H=3)[1:], 4)
    with pytest.raises(ValueError, match="fit"):
        banded_causal_attention(q, k[:, :, :5], v[:, :, :5], 4)
    with pytest.raises(ValueError):
        banded_scores_per_token(0, 4)


def test_scores_per_token_by_hand():
    # Window divides the context: every query scores one (W, 2W) tile row, 2W keys.
    assert banded_scores_per_token(1024, 64) == 128
    assert banded_scores_per_token(2048, 64) == 128
    assert banded_scores_per_token(256, 1) == 2
    # Padded: 1000 = 15·64 + 40, so 16 blocks of 64 queries x 128 keys = 131,072 scores;
    # 131,072 / 1000 = 131.07 -> 131.
    assert banded_scores_per_token(1000, 64) == 131
    # 200 = 3·64 + 8: 4 blocks, 4·64·128 = 32,768 scores < 200² = 40,000, chunked;
    # 32,768 / 200 = 163.84 -> 164.
    assert banded_scores_per_token(200, 64) == 164
    # 40 = 2·16 + 8, window 16: 3 blocks, 3·16·32 = 1,536 scores < 40² = 1,600, chunked;
    # 1,536 / 40 = 38.4 -> 38.
    assert banded_scores_per_token(40, 16) == 38
    # 150: 3 blocks, 24,576 scores >= 150² = 22,500, so the full matrix is cheaper: 150.
    assert banded_scores_per_token(150, 64) == 150
    # Every context <= 2·window takes the full matrix.
    assert banded_scores_per_token(128, 64) == 128
    assert banded_scores_per_token(64, 64) == 64
    assert banded_scores_per_token(1, 1) == 1


@pytest.mark.parametrize("T,window,H_kv", [(128, 16, 4), (100, 16, 2), (40, 16, 1)])
def test_scores_per_token_counts_the_matmuls(T, window, H_kv):
    # torch's FLOP counter sees the chunked path's two attention matmuls: 2·hd FLOPs per score
    # each, forward; the backward adds twice that, so 12·hd FLOPs per score and query head in
    # all. (It does not count SDPA's CPU kernel, which the dense fallback runs.)
    assert banded_scores_per_token(T, window) < T  # the chunked path
    B, H, hd = 2, 4, 8
    q, k, v = qkv(T, H=H, H_kv=H_kv, B=B, hd=hd, grad=True)
    with FlopCounterMode(display=False) as forward:
        out = banded_causal_attention(q, k, v, window)
    scores = forward.get_total_flops() / (4 * hd * B * H)
    assert scores == int(scores)
    assert (2 * int(scores) + T) // (2 * T) == banded_scores_per_token(T, window)  # half up
    with FlopCounterMode(display=False) as both:
        banded_causal_attention(q, k, v, window).sum().backward()
    assert both.get_total_flops() == 3 * forward.get_total_flops()
    assert out.shape == q.shape
