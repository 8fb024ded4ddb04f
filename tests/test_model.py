"""The GPT family: published parameter counts, hand-computed FLOPs, banded attention, init."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from scaling.config.run import ModelConfig
from scaling.errors import ConfigError
from scaling.training.model import GPT, CausalSelfAttention, GPTConfig, model_counts


def small(**overrides) -> GPTConfig:
    fields = dict(n_layer=2, d_model=32, n_head=2, context=16, vocab_size=64)
    fields.update(overrides)
    return GPTConfig(**fields)


def test_gpt2_small_total_matches_the_published_count():
    # GPT-2 small (HF "gpt2"): 124,439,808 parameters with vocab 50257, context 1024, tied.
    counts = model_counts(GPTConfig(n_layer=12, d_model=768, n_head=12, context=1024,
                                    vocab_size=50257))
    assert counts["params_total"] == 124_439_808
    # Kaplan's N = 12·L·d² plus biases and LayerNorms: 85,054,464 + 1,536 (final LN).
    assert counts["params"] == 85_056_000
    assert counts["flops_per_token"] == 6 * 85_056_000


def test_hand_computed_counts_for_a_small_model():
    d, L, V, T = 64, 2, 256, 64
    counts = model_counts(GPTConfig(n_layer=L, d_model=d, n_head=2, context=T, vocab_size=V))
    # per block: qkv 64·192+192, proj 64·64+64, fc 64·256+256, proj 256·64+64, 2 LNs 4·64
    per_block = 12_288 + 192 + 4_096 + 64 + 16_384 + 256 + 16_384 + 64 + 256
    assert counts["params"] == 2 * per_block + 128 == 100_096
    assert counts["params_total"] == 100_096 + 256 * 64 + 64 * 64
    # 6 × (block matmuls + head) + 12 · d · (keys of layer 0 + keys of layer 1)
    assert counts["flops_per_token_exact"] == 6 * (2 * 12 * 64 * 64 + 256 * 64) + 12 * 64 * 128


def test_exact_flops_charge_banded_layers_only_their_window():
    dense = model_counts(small(context=64))
    banded = model_counts(small(context=64, attention="alternating", window=8))
    # layer 1 is banded: its attention term drops from 12·d·64 to 12·d·16, the 2·window
    # scores per query the banded kernel computes (tiles of 8 queries against 16 keys)
    assert dense["flops_per_token_exact"] - banded["flops_per_token_exact"] == 12 * 32 * (64 - 16)
    assert dense["params"] == banded["params"]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"bias": False}, {"tie_embeddings": False},
     {"attention": "alternating", "window": 4, "n_layer": 3}],
)
def test_counting_without_building_agrees_with_the_built_model(overrides):
    config = small(**overrides)
    model = GPT(config)
    counts = model_counts(config)
    assert model.non_embedding_params() == counts["params"]
    assert model.total_params() == counts["params_total"]
    assert model.flops_per_token() == counts["flops_per_token"]
    assert model.flops_per_token_exact() == counts["flops_per_token_exact"]


def test_embeddings_are_tied_by_default_and_untied_on_request():
    tied = GPT(small())
    assert tied.head.weight.data_ptr() == tied.wte.weight.data_ptr()
    untied = GPT(small(tie_embeddings=False))
    assert untied.head.weight.data_ptr() != untied.wte.weight.data_ptr()


def precision(name: str):
    """fp32, or CPU bf16 autocast (attention then takes the explicit-matmul path)."""
    if name == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_banded_attention_ignores_tokens_outside_the_window(dtype):
    torch.manual_seed(0)
    config = small(context=32, attention="alternating", window=5)
    attention = CausalSelfAttention(config, banded=True).eval()
    x = torch.randn(1, 32, 32)
    changed = x.clone()
    changed[0, 10] += 10.0  # perturb token 10
    with precision(dtype):
        delta = (attention(changed) - attention(x)).float().abs().amax(dim=-1)[0]  # (T,)
    assert torch.all(delta[:10] == 0)  # causal: earlier tokens never see it
    assert torch.all(delta[10:15] > 1e-4)  # queries 10..14 are within 5 keys of it
    assert torch.all(delta[15:] == 0)  # queries 15+ are outside the window


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_dense_attention_is_causal_and_sees_the_whole_past(dtype):
    torch.manual_seed(0)
    attention = CausalSelfAttention(small(context=32), banded=False).eval()
    x = torch.randn(1, 32, 32)
    changed = x.clone()
    changed[0, 3] += 10.0
    with precision(dtype):
        delta = (attention(changed) - attention(x)).float().abs().amax(dim=-1)[0]
    assert torch.all(delta[:3] == 0)
    assert torch.all(delta[3:] > 1e-6)


@pytest.mark.parametrize("banded", [False, True])
def test_cpu_bf16_attention_matches_the_fp32_kernel(banded):
    torch.manual_seed(0)
    config = small(context=32, attention="alternating", window=6)
    attention = CausalSelfAttention(config, banded=banded).eval()
    x = torch.randn(2, 32, 32)
    with torch.no_grad():
        exact = attention(x)
        with precision("bf16"):
            fast = attention(x).float()
    # bf16 keeps 8 bits of mantissa: agreement to ~1% of the output's scale
    assert (fast - exact).abs().max() < 0.02 * exact.abs().max()


def test_alternating_layers_are_dense_then_banded():
    config = small(n_layer=4, attention="alternating", window=4)
    model = GPT(config)
    assert [block.attn.window for block in model.blocks] == [None, 4, None, 4]


def test_initial_loss_is_log_vocab_and_residual_init_is_scaled():
    torch.manual_seed(0)
    config = small(n_layer=8, d_model=128, n_head=4, vocab_size=256, context=64)
    model = GPT(config)
    idx, targets = torch.randint(0, 256, (2, 8, 64))
    logits, loss = model(idx, targets)
    assert logits.shape == (8, 64, 256)
    assert loss.item() == pytest.approx(math.log(256), abs=0.05)  # near-uniform at init
    residual_std = model.blocks[0].mlp.proj.weight.std().item()
    assert residual_std == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert model.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.all(model.blocks[0].mlp.fc.bias == 0)


def test_sequence_longer_than_context_is_refused():
    model = GPT(small())
    with pytest.raises(ValueError, match="longer than the context = 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_head": 3}, r"model.n_head = 3 does not divide model.d_model = 32"),
        ({"attention": "sparse"}, r"model.attention = 'sparse': use 'dense' or 'alternating'"),
        ({"attention": "alternating"}, r"needs model.window; set it"),
        ({"attention": "alternating", "window": 17}, r"model.window = 17 is outside 1..context = 16"),
        ({"d_model": 0}, r"model.d_model = 0: must be a positive integer"),
        ({"dropout": 1.0}, r"model.dropout = 1.0: must lie in \[0, 1\)"),
    ],
)
def test_invalid_shapes_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        small(**overrides)


def test_from_model_config_takes_the_tokenizer_vocab_when_unset():
    config = GPTConfig.from_model_config(ModelConfig(d_model=32, n_head=2), vocab_size=300)
    assert (config.vocab_size, config.d_model) == (300, 32)
    assert GPTConfig.from_model_config(ModelConfig(vocab_size=512), 300).vocab_size == 512
    with pytest.raises(ConfigError, match="model.vocab_size is not set"):
        GPTConfig.from_model_config(ModelConfig())
