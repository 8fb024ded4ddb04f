"""Model families and a user's own model: Llama's block, hand-computed counts, the FLOP
conventions against their papers' formulas, FlopCounterMode agreeing with the analytic count,
and a factory in this very file trained through a sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import write_sweep
from scaling.sweeps import tracking
from scaling.config.run import ModelConfig, RunSpec, validate
from scaling.errors import ConfigError
from scaling.training.coordinates import coord_check, coord_slopes
from scaling.training.model import GPT, CausalSelfAttention, GPTConfig, Rotary, build_model, model_counts
from scaling.training.user_model import flop_counter, measured_counts

USER_MODEL = Path(__file__).resolve().parent / "data" / "user_model.py"


def llama(**overrides) -> GPTConfig:
    fields = dict(n_layer=2, d_model=64, n_head=4, n_kv_head=2, context=64, vocab_size=256,
                  family="llama", bias=False, tie_embeddings=False)
    fields.update(overrides)
    return GPTConfig(**fields)


# ------------------------------------------------------------------------------ Llama --


def test_llama_counts_by_hand_and_the_built_model_agrees():
    config = llama()
    # SwiGLU width: int(8·64/3) = 170, rounded up to a multiple of 32 -> 192
    assert config.ffn_width == 192
    # per block: q 64·64, k and v 64·32 each (2 kv heads of 16), out 64·64, gate+up 64·384,
    # down 192·64; two RMSNorm gains of 64; a final RMSNorm of 64
    per_block = 4096 + 2 * 2048 + 4096 + 64 * 384 + 192 * 64 + 2 * 64
    counts = model_counts(config)
    assert counts["params"] == 2 * per_block + 64 == 98_624
    assert counts["params_total"] == 98_624 + 2 * 256 * 64  # untied: table and head, no positions
    assert counts["params_kaplan"] == 2 * (per_block - 128)
    model = GPT(config)
    assert model.wpe is None and model.head.weight.data_ptr() != model.wte.weight.data_ptr()
    assert model.non_embedding_params() == counts["params"]
    assert model.total_params() == counts["params_total"]
    assert all(isinstance(block.ln_1, nn.RMSNorm) for block in model.blocks)
    assert not any(isinstance(m, nn.Linear) and m.bias is not None for m in model.modules())


def test_llama_3_8b_total_matches_the_published_count():
    # Meta-Llama-3-8B: 32 layers, d 4096, 32 heads, 8 kv heads, SwiGLU 14336, vocab 128256,
    # untied, no biases: 8,030,261,248 parameters (the model card's 8.03B, as HF counts it).
    config = llama(n_layer=32, d_model=4096, n_head=32, n_kv_head=8, context=8192,
                   vocab_size=128256, ffn_hidden=14336, rope_theta=500000.0)
    counts = model_counts(config)
    assert counts["params_total"] == 8_030_261_248
    assert counts["params"] == 8_030_261_248 - 2 * 128256 * 4096


def test_llama_defaults_in_the_run_file_and_old_run_keys_hold():
    plain = validate(ModelConfig, {"family": "llama"})
    assert (plain.bias, plain.tie_embeddings) == (False, False)
    tied = validate(ModelConfig, {"family": "llama", "tie_embeddings": True, "bias": True})
    assert (tied.bias, tied.tie_embeddings) == (True, True)
    assert validate(ModelConfig, {}).bias is True
    assert RunSpec().run_key == RunSpec(model={"family": "gpt2"}).run_key
    assert "model.family" not in RunSpec().flat_params()
    assert RunSpec(model={"family": "llama"}).run_key != RunSpec().run_key


@pytest.mark.parametrize("model, message", [
    ({"n_kv_head": 2}, r"n_kv_head = 2 needs family: llama"),
    ({"family": "llama", "n_head": 4, "n_kv_head": 3}, r"n_kv_head = 3 does not divide n_head = 4"),
    ({"family": "llama", "d_model": 12, "n_head": 4}, r"head width d_model / n_head = 3 is odd"),
    ({"family": "mamba"}, r"model.family = 'mamba': Input should be 'gpt2' or 'llama'"),
    ({"factory": "no_colon"}, r"model.factory = 'no_colon': String should match pattern"),
    ({"factory": "a.b:build", "parametrization": "mup", "base_d_model": 64, "base_n_layer": 2},
     r"parametrization = 'mup' is built into our families only"),
])
def test_bad_family_settings_are_one_line_naming_the_field(model, message):
    with pytest.raises(ConfigError, match=message):
        validate(RunSpec, {"model": model}, "run.yaml")


def test_grouped_query_attention_equals_attention_with_repeated_kv_heads():
    torch.manual_seed(0)
    config = llama(n_layer=1, context=32)
    attention = CausalSelfAttention(config, banded=False).eval()
    x = torch.randn(2, 32, 64)
    with torch.no_grad():
        got = attention(x)
        q, k, v = attention.qkv(x).split((64, 32, 32), dim=2)
        q = attention.rotary(q.view(2, 32, 4, 16).transpose(1, 2))
        k = attention.rotary(k.view(2, 32, 2, 16).transpose(1, 2))
        v = v.view(2, 32, 2, 16).transpose(1, 2)
        k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)  # head h uses kv h // 2
        scores = (q @ k.transpose(-1, -2)) / 4.0
        scores = scores.masked_fill(~torch.ones(32, 32, dtype=torch.bool).tril(), -math.inf)
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 32, 64)
        assert torch.allclose(got, attention.proj(y), atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the explicit bf16 path
            fast = attention(x).float()
    assert (fast - got).abs().max() < 0.02 * got.abs().max()


def test_rotary_scores_depend_only_on_the_distance():
    torch.manual_seed(0)
    rotary = Rotary(llama(context=64))
    q, k = torch.randn(16), torch.randn(16)

    def score(m, n):
        rq = rotary(q.expand(1, 1, 64, 16).contiguous())[0, 0, m]
        rk = rotary(k.expand(1, 1, 64, 16).contiguous())[0, 0, n]
        return float(rq @ rk)

    assert score(10, 3) == pytest.approx(score(40, 33), abs=1e-4)
    assert score(5, 5) == pytest.approx(float(q @ k), abs=1e-4)  # distance 0: no rotation
    assert score(10, 3) != pytest.approx(score(10, 4), abs=1e-3)


def test_llama_trains_to_a_lower_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = GPT(llama(context=32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.randint(0, 256, (4, 33))
    _, first = model(x[:, :-1], x[:, 1:])
    assert first.item() == pytest.approx(math.log(256), abs=0.1)
    for _ in range(30):
        _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.5 * first.item()


def test_llama_coord_check_stays_flat_under_mup():
    # SwiGLU multiplies two small pre-activations, so its output needs more large-lr steps
    # than GELU's to leave the initial regime: measured mup width slopes within -0.25..0.01
    # at 10 steps of 3e-2 (mlp -0.68 after 4 steps of 1e-2), standard 0.6..2.9.
    table = coord_check(widths=(16, 32, 64, 128), depths=(1, 2, 4), steps=10, lr=3e-2,
                        context=32, family="llama")
    slopes = coord_slopes(table).set_index(["parametrization", "axis", "layer"]).sort_index()["slope"]
    assert slopes["mup", "width"].abs().max() < 0.35
    assert slopes["standard", "width"].max() > 1.0
    assert abs(slopes["mup", "depth", "residual"]) < 0.25


# -------------------------------------------------------------------------- conventions --


def test_the_conventions_match_their_papers_formulas():
    d, L, V, T, H = 64, 3, 256, 128, 4
    config = GPTConfig(n_layer=L, d_model=d, n_head=H, context=T, vocab_size=V)
    counts = model_counts(config)
    assert counts["params_kaplan"] == 2 * d * L * (2 * d + 4 * d)  # Kaplan et al. eq. 2.1
    assert counts["deepseek_m"] == 72 * L * d * d + 12 * L * d * T  # DeepSeek LLM, section 3.1
    assert counts["flops_per_token_palm"] == 6 * counts["params"] + 12 * L * d * T  # PaLM app. B
    # Chinchilla appendix F, per sequence of T tokens, forward; backward = 2 x forward
    embeddings = 2 * T * V * d
    attention = 2 * 3 * T * d * d + 2 * T * T * d + 3 * H * T * T + 2 * T * T * d + 2 * T * d * d
    dense = 2 * T * (d * 4 * d * 2)
    logits = 2 * T * d * V
    forward = embeddings + L * (attention + dense) + logits
    assert counts["flops_per_token_chinchilla"] == 3 * forward // T


@pytest.mark.parametrize("config", [
    GPTConfig(n_layer=2, d_model=64, n_head=4, context=128, vocab_size=256),
    GPTConfig(n_layer=2, d_model=64, n_head=4, context=128, vocab_size=256, bias=False,
              tie_embeddings=False),
    llama(context=128),
    llama(context=128, n_kv_head=None, tie_embeddings=True),
    GPTConfig(n_layer=3, d_model=64, n_head=4, context=256, vocab_size=256,
              attention="alternating", window=32),
], ids=["gpt2", "gpt2-untied", "llama-gqa", "llama-tied", "gpt3-banded"])
def test_flop_counter_agrees_with_the_analytic_count_within_one_percent(config):
    model = GPT(config)
    idx = torch.zeros(1, config.context, dtype=torch.long)
    with flop_counter() as counter:
        logits, _ = model(idx)
        logits.float().sum().backward()
    measured = counter.get_total_flops() / config.context
    assert measured == pytest.approx(model_counts(config)["flops_per_token_exact"], rel=0.01)


def test_a_run_logs_every_convention(tmp_path):
    from scaling.training.loop import train

    spec = RunSpec(model={"n_layer": 1, "d_model": 16, "n_head": 2, "context": 16, "family": "llama"},
                   data={"eval_tokens": 256}, train={"tokens": 2048, "batch_tokens": 256})
    summary = train(spec).summary()
    counts = model_counts(GPTConfig.from_model_config(spec.model, 256))
    tokens = summary["size/tokens"]
    assert summary["size/params_kaplan"] == counts["params_kaplan"]
    assert summary["size/deepseek_m"] == counts["deepseek_m"]
    assert summary["size/flops_palm"] == counts["flops_per_token_palm"] * tokens
    assert summary["size/flops_chinchilla"] == counts["flops_per_token_chinchilla"] * tokens
    assert summary["size/flops_exact"] == counts["flops_per_token_exact"] * tokens


# ----------------------------------------------------------------------- bring your own --


def factory_config(name: str, **overrides) -> GPTConfig:
    fields = dict(n_layer=1, d_model=16, n_head=2, context=32, vocab_size=256,
                  factory=f"{USER_MODEL}:{name}")
    fields.update(overrides)
    return GPTConfig(**fields)


def test_a_factory_model_is_counted_by_the_documented_rule():
    d, V = 16, 256
    counts = measured_counts(factory_config("build_tiny"))
    # non-embedding: the MLP (16·64 + 64 + 64·16 + 16) and the LayerNorm (32); not the
    # token table nor the untied head (a Linear with vocab outputs)
    assert counts["params"] == 16 * 64 + 64 + 64 * 16 + 16 + 32
    assert counts["params_total"] == counts["params"] + 2 * V * d
    assert counts["params_kaplan"] == 2 * 16 * 64
    # FlopCounterMode, forward + backward: 6 × (the two MLP matrices + the head) per token
    assert counts["flops_per_token_exact"] == 6 * (2 * 16 * 64 + d * V)
    assert counts["deepseek_m"] == 6 * 2 * 16 * 64
    model = build_model(factory_config("build_tiny"))
    assert model.non_embedding_params() == counts["params"]
    logits, loss = model(torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 8, dtype=torch.long))
    assert logits.shape == (2, 8, 256) and loss.item() == pytest.approx(math.log(256), abs=0.5)


@pytest.mark.parametrize("factory, message", [
    ("no_such_module_xyz:build", r"model.factory = 'no_such_module_xyz:build': importing "
                                 r"no_such_module_xyz failed \(ModuleNotFoundError"),
    ("missing/file.py:build", r"no file missing/file.py"),
    (f"{USER_MODEL}:build_absent", r"has no function build_absent"),
    (f"{USER_MODEL}:build_nothing", r"returned a str, not a torch.nn.Module"),
    (f"{USER_MODEL}:build_wrong_shape", r"forward returned \(1, 32, 16\) for ids of shape \(1, 32\); "
                                  r"return logits of shape \(1, 32, 256\)"),
    (f"{USER_MODEL}:build_failing", r"calling it failed \(RuntimeError: the user's bug\)"),
])
def test_a_bad_factory_is_one_clear_line_before_training(factory, message):
    with pytest.raises(ConfigError, match=message):
        model_counts(GPTConfig(n_layer=1, d_model=16, n_head=2, context=32, vocab_size=256,
                               factory=factory))


def test_editing_the_factory_file_makes_a_new_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("mine.py").write_text("def build(config):\n    raise RuntimeError\n")
    spec = RunSpec(model={"factory": "mine.py:build"})
    before = spec.run_key
    Path("mine.py").write_text("def build(config):\n    raise ValueError\n")
    assert spec.run_key != before


@pytest.mark.slow
def test_a_factory_in_this_file_trains_through_a_quick_sweep():
    from scaling.sweeps.workers import run_sweep

    sweep = {
        "name": "byo",
        "data": {"eval_tokens": 512},
        "model": {"n_layer": 1, "n_head": 2, "context": 16, "factory": f"{USER_MODEL}:build_tiny"},
        "train": {"batch_tokens": 64, "eval_every": 5},
        "ladder": {"tokens_per_param": [1], "shapes": [{"d_model": 8}, {"d_model": 12}]},
        "target": {"shape": {"d_model": 16}, "tokens_per_param": 1},
    }
    summary = run_sweep(write_sweep(sweep), threads=1)
    assert (summary["done"], summary["failed"]) == (3, 0)
    frame = tracking.runs_frame("byo")
    assert len(frame) == 3 and frame.loss.between(0, 2 * math.log(256)).all()
    # each run's size is the factory model's, measured; the target's is the largest
    expected = {measured_counts(factory_config("build_tiny", d_model=width, context=16))["params"]
                for width in (8, 12, 16)}
    assert set(frame.params) == expected
    assert set(tracking.runs_frame("byo", role="target").params) == {max(expected)}
