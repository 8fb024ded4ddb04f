"""The GPT family every proxy and target is built from, top to bottom in one file.

The recipe is GPT-2's (Radford et al. 2019, section 2.3): a decoder-only Transformer with
LayerNorm at the input of each block (pre-LN) and one after the last block, learned position
embeddings, a GELU MLP four times as wide as the residual stream, and the weights of the
projections that write into the residual stream initialised with a standard deviation scaled
by 1/sqrt(number of residual layers). GPT-3 (Brown et al. 2020, section 2.1) adds the option
of layers that alternate dense and locally banded causal attention; the banded layers compute
only their band (:mod:`scaling.training.attention`).

``family = 'llama'`` swaps the block for the recipe of Llama (Touvron et al. 2023, section 2.2)
as most 2025-26 runs use it: RMSNorm instead of LayerNorm, rotary position embeddings (Su et
al. 2021) instead of a learned position table, a SwiGLU MLP (Shazeer 2020) 8·d/3 wide rounded
up to ``ffn_multiple_of``, grouped-query attention with ``n_kv_head`` key/value heads (Ainslie
et al. 2023), and by default no biases and an untied output head. ``factory`` builds a user's
own model instead (:mod:`scaling.training.user_model`).

With ``parametrization = 'mup'`` the same model is reparametrised so that its best
hyperparameters transfer across width and depth (see :class:`MupScales`): width-muP in the
form of Cerebras' practitioner's guide (Dey et al. 2023, table 1; Yang et al. 2021) plus
CompleteP's depth scaling with alpha = 1 (Dey et al. 2025, "Don't be lazy: CompleteP enables
compute-efficient deep transformers", table 1). At the base shape both parametrisations build
the same model.

The counting functions here define the compute axis of every scaling law:
``params`` is Kaplan et al.'s N (no embeddings) and ``flops_per_token_exact`` counts every
matmul including the output head plus the attention scores, which at proxy sizes can be most
of the compute. :func:`model_counts` also gives the other conventions a user compares with
(the README's table "Parameter and FLOP conventions").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from scaling.errors import ConfigError
from scaling.training.attention import banded_causal_attention, banded_scores_per_token

if TYPE_CHECKING:
    from scaling.config.run import ModelConfig

__all__ = ["GPTConfig", "GPT", "MupScales", "model_counts", "build_model"]


@dataclass(frozen=True)
class GPTConfig:
    """Shape of one GPT model; validated on construction.

    Parameters
    ----------
    n_layer, d_model, n_head : int
        Blocks, residual width, attention heads (``n_head`` must divide ``d_model``).
    context : int
        Longest sequence the model sees (the size of the position table).
    vocab_size : int
        Tokens in the vocabulary (256 for the byte tokenizer).
    attention : {'dense', 'alternating'}
        'alternating' is GPT-3's pattern: even layers dense, odd layers banded.
    window : int or None
        Keys a banded layer attends to (the query itself and the ``window - 1`` before it).
    family : {'gpt2', 'llama'}
        The block's recipe (module docstring).
    n_kv_head : int or None
        Key/value heads of grouped-query attention ('llama'); None means ``n_head``.
    ffn_multiple_of : int
        'llama': the SwiGLU width 8·d/3 is rounded up to a multiple of this.
    ffn_hidden : int or None
        The MLP's hidden width, overriding the family's rule (Llama 3 8B: 14336).
    rope_theta : float
        'llama': base of the rotary frequencies.
    factory : str or None
        'module:function' or 'file.py:function' building a user's model from this config.
    tie_embeddings : bool
        Share the token embedding with the output head, as GPT-2 does (saves vocab x d).
    bias : bool
        Biases in the Linear layers and LayerNorms, as GPT-2 has them.
    dropout : float
        0 by default: proxies train for less than one epoch, where dropout only slows them.
    parametrization : {'standard', 'mup'}
        'standard' is GPT-2's; 'mup' scales initialisation, multipliers and learning rates
        with the width and depth relative to the base shape (:class:`MupScales`).
    base_d_model, base_n_layer : int or None
        The base shape of 'mup': the proxy whose hyperparameters are to transfer.
    """

    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    context: int = 256
    vocab_size: int = 256
    attention: str = "dense"
    window: int | None = None
    family: str = "gpt2"
    n_kv_head: int | None = None
    ffn_multiple_of: int = 32
    ffn_hidden: int | None = None
    rope_theta: float = 10000.0
    factory: str | None = None
    tie_embeddings: bool = True
    bias: bool = True
    dropout: float = 0.0
    parametrization: str = "standard"
    base_d_model: int | None = None
    base_n_layer: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "context", "vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} = {value!r}: must be a positive integer")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"model.n_head = {self.n_head} does not divide model.d_model = {self.d_model}; "
                "pick a divisor of d_model"
            )
        if self.attention not in ("dense", "alternating"):
            raise ConfigError(
                f"model.attention = {self.attention!r}: use 'dense' or 'alternating'"
            )
        if self.attention == "alternating" and self.window is None:
            raise ConfigError("model.attention = 'alternating' needs model.window; set it")
        if self.window is not None and not 1 <= self.window <= self.context:
            raise ConfigError(
                f"model.window = {self.window} is outside 1..context = {self.context}; "
                f"use a window of at most {self.context}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout = {self.dropout}: must lie in [0, 1)")
        self._check_family()
        self._check_parametrization()

    def _check_family(self) -> None:
        if self.family not in ("gpt2", "llama"):
            raise ConfigError(f"model.family = {self.family!r}: use 'gpt2' or 'llama'")
        if self.n_kv_head is not None and (
            self.family != "llama" or self.n_kv_head < 1 or self.n_head % self.n_kv_head
        ):
            raise ConfigError(
                f"model.n_kv_head = {self.n_kv_head!r}: grouped-query attention needs family "
                f"'llama' and a divisor of n_head = {self.n_head}"
            )
        if self.family == "llama" and self.head_dim % 2:
            raise ConfigError(
                f"model head width d_model / n_head = {self.head_dim} is odd; rotary positions "
                "need an even one, pick another n_head"
            )

    def _check_parametrization(self) -> None:
        if self.parametrization not in ("standard", "mup"):
            raise ConfigError(
                f"model.parametrization = {self.parametrization!r}: use 'standard' or 'mup'"
            )
        if self.parametrization == "standard":
            return
        for name, size in (("d_model", self.d_model), ("n_layer", self.n_layer)):
            base = getattr(self, f"base_{name}")
            if base is None:
                raise ConfigError(
                    f"model.parametrization = 'mup' needs model.base_{name}, the {name} the "
                    "hyperparameters were tuned at; set it (e.g. the smallest proxy's)"
                )
            if not isinstance(base, int) or not 1 <= base <= size:
                raise ConfigError(
                    f"model.base_{name} = {base!r} must be a positive integer of at most "
                    f"model.{name} = {size}; the base shape is the small tuned model"
                )

    @property
    def mup(self) -> MupScales:
        """The multipliers of this shape (all 1 under 'standard' and at the base shape)."""
        if self.parametrization == "standard":
            return MupScales(1.0, 1.0)
        return MupScales(self.d_model / self.base_d_model, self.n_layer / self.base_n_layer)

    @classmethod
    def from_model_config(cls, config: ModelConfig, vocab_size: int | None = None) -> GPTConfig:
        """Build from the run schema; ``vocab_size`` (the tokenizer's) fills a missing one."""
        vocab = config.vocab_size if config.vocab_size is not None else vocab_size
        if vocab is None:
            raise ConfigError("model.vocab_size is not set and no tokenizer gave one; set it")
        fields = config.model_dump()
        fields["vocab_size"] = vocab
        return cls(**fields)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``n_kv_head`` under grouped-query attention, else ``n_head``."""
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    @property
    def ffn_width(self) -> int:
        """Hidden width of the MLP: 4·d (GPT-2), or Llama's 8·d/3 rounded up to a multiple of
        ``ffn_multiple_of`` (SwiGLU's three matrices then hold about as many weights as two of
        4·d).

        >>> GPTConfig(d_model=96, family="llama").ffn_width  # int(8·96/3) = 256, already a multiple of 32
        256
        >>> GPTConfig(d_model=100, n_head=2, family="llama", ffn_multiple_of=64).ffn_width  # 266 -> 320
        320
        """
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        if self.family == "gpt2":
            return 4 * self.d_model
        multiple = self.ffn_multiple_of
        return multiple * -(-int(8 * self.d_model / 3) // multiple)

    def block_matrix_weights(self) -> int:
        """Weights of the matrices of one block: the attention's q, k, v and output
        projections and the MLP's (2 matrices for GELU, 3 for SwiGLU).

        >>> GPTConfig(d_model=64, n_head=4).block_matrix_weights() == 12 * 64 * 64
        True
        """
        d, kv = self.d_model, self.kv_heads * self.head_dim
        mlp = (2 if self.family == "gpt2" else 3) * d * self.ffn_width
        return 2 * d * d + 2 * d * kv + mlp

    def is_banded(self, layer: int) -> bool:
        """Whether block ``layer`` uses banded attention (GPT-3: every second layer)."""
        return self.attention == "alternating" and layer % 2 == 1

    def keys_per_query(self, layer: int) -> int:
        """Keys one query of block ``layer`` is charged for: the context in a dense layer (the
        convention of charging the whole span, Chinchilla appendix F), and in a banded layer
        the scores the banded kernel actually computes
        (:func:`scaling.training.attention.banded_scores_per_token`)."""
        if self.is_banded(layer):
            return banded_scores_per_token(self.context, self.window)  # type: ignore[arg-type]
        return self.context

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MupScales:
    """The muP + CompleteP table for one shape, relative to the base shape.

    With the width multiplier ``m_d = d_model / base_d_model`` and the depth multiplier
    ``m_L = n_layer / base_n_layer`` (Dey et al. 2025, table 1, alpha = 1; width rules as in
    Dey et al. 2023, table 1):

    ==========================================  ============================================
    what                                        scaled by
    ==========================================  ============================================
    hidden matrices (qkv, attention output,     init variance 1/m_d; Adam lr 1/m_d (times the
    MLP in and out): ``hidden_init_std``,       depth correction m_L^(alpha-1) = 1);
    ``hidden_lr``, ``hidden_weight_decay``,     weight decay m_d so that lr x decay does not
    ``hidden_eps``                              change; Adam epsilon 1/(m_d m_L^alpha)
    attention logits: ``attention_scale``       1/d_head instead of 1/sqrt(d_head)
    residual branches: ``residual``             1/m_L^alpha = base_n_layer / n_layer
    output logits: ``output``                   1/m_d (applied to the readout, tied or not)
    embeddings, LayerNorms, biases              unchanged (init, lr, no decay)
    ==========================================  ============================================

    GPT-2's 1/sqrt(2 n_layer) residual-projection init uses ``base_n_layer`` under 'mup':
    the branch multiplier takes over the depth dependence.

    Examples
    --------
    >>> scales = MupScales(width=4.0, depth=2.0)
    >>> scales.hidden_lr, scales.output, scales.residual
    (0.25, 0.25, 0.5)
    """

    width: float  # m_d
    depth: float  # m_L

    # CompleteP's alpha: residual branches scale as m_L^-alpha; 1 makes every layer learn
    # features at any depth (Dey et al. 2025), 0.5 would be the depth-muP of Yang et al. 2023.
    ALPHA = 1.0

    @property
    def hidden_init_std(self) -> float:
        return 1.0 / math.sqrt(self.width)

    @property
    def hidden_lr(self) -> float:
        return 1.0 / self.width * self.depth ** (self.ALPHA - 1.0)

    @property
    def hidden_weight_decay(self) -> float:
        return self.width

    @property
    def hidden_eps(self) -> float:
        return 1.0 / (self.width * self.depth**self.ALPHA)

    @property
    def residual(self) -> float:
        return self.depth**-self.ALPHA

    @property
    def output(self) -> float:
        return 1.0 / self.width

    def attention_scale(self, head_dim: int) -> float | None:
        """Softmax scale: 1/sqrt(d_head) at the base width (None: SDPA's own default), falling
        as 1/d_head beyond it (with the number of heads fixed, d_head grows as m_d)."""
        if self.width == 1.0:
            return None
        return 1.0 / (math.sqrt(head_dim) * math.sqrt(self.width))


def model_counts(config: GPTConfig) -> dict[str, int]:
    """Parameter and FLOP counts from the shape alone, without building the model.

    With ``d = d_model``, ``L = n_layer``, ``V = vocab_size``, ``T = context``, ``H = n_head``,
    ``W`` the matrix weights of one block (:meth:`GPTConfig.block_matrix_weights`: 12d² for
    GPT-2; 2d² + 2d·kv + 3d·ffn for Llama, kv = n_kv_head·d/H) and ``keys_l`` the keys one
    query of layer l is charged for (:meth:`GPTConfig.keys_per_query`):

    - ``params`` (N, no embeddings) = L·W plus the norms and biases: L·(12d² + 13d) + 2d for
      GPT-2 with biases, L·(12d² + 2d) + d without; an untied output head is an embedding too
      and is left out.
    - ``params_total`` = N + V·d (token table) [+ T·d learned positions] [+ V·d untied head].
    - ``params_kaplan`` = L·W: Kaplan et al.'s N = 2·d·L·(2·d_attn + d_ff) (equation 2.1), the
      matrices only (no norms, biases or embeddings).
    - ``deepseek_m`` = 6·L·W + 12·d·Σ_l keys_l: DeepSeek LLM's non-embedding FLOPs per token
      M = 72·L·d² + 12·L·d·T (section 3.1) for GPT-2's block.
    - ``flops_per_token`` = 6·N (Kaplan's C ≈ 6ND).
    - ``flops_per_token_palm`` = 6·N + 12·L·d·T: PaLM's (appendix B) and nanoGPT's
      ``estimate_mfu`` convention, attention charged over the whole context.
    - ``flops_per_token_exact`` = 6·(L·W + V·d) + 12·d·Σ_l keys_l: forward plus backward
      (3 × 2 FLOPs per multiply-add) of every matmul weight including the output head, plus
      the attention scores QKᵀ and the weighted sum over values (2·keys·d each forward).
      This is what :class:`torch.utils.flop_counter.FlopCounterMode` counts on one forward
      and backward (``tests/test_model.py``), and the compute axis of the fits.
    - ``flops_per_token_chinchilla`` = exact + 6·V·d + 9·H·Σ_l keys_l: Hoffmann et al.'s
      appendix F count, which also charges the embedding lookup as a matmul and 3 FLOPs per
      softmax score.

    Examples
    --------
    >>> counts = model_counts(GPTConfig(n_layer=12, d_model=768, n_head=12, context=1024,
    ...                                 vocab_size=50257))
    >>> counts["params_total"]  # GPT-2 small, as published
    124439808
    >>> counts["deepseek_m"] == 72 * 12 * 768**2 + 12 * 12 * 768 * 1024
    True
    """
    if config.factory is not None:
        from scaling.training.user_model import measured_counts

        return measured_counts(config)
    d, L, V, T = config.d_model, config.n_layer, config.vocab_size, config.context
    weights = config.block_matrix_weights()
    if config.family == "gpt2":
        # biases: qkv 3d, attention output d, MLP 4d + d; LayerNorms 2d each (gain, bias)
        extras = L * (13 * d) + 2 * d if config.bias else L * (2 * d) + d
        positions = T * d
    else:
        kv, ffn = config.kv_heads * config.head_dim, config.ffn_width
        biases = (3 * d + 2 * kv + 2 * ffn) if config.bias else 0  # q k v, out, gate up, down
        extras = L * (biases + 2 * d) + d  # RMSNorm gains only
        positions = 0  # rotary positions have no parameters
    params = L * weights + extras
    embeddings = V * d + positions + (0 if config.tie_embeddings else V * d)
    attention_keys = sum(config.keys_per_query(layer) for layer in range(L))
    exact = 6 * (weights * L + V * d) + 12 * d * attention_keys
    return {
        "params": params,
        "params_total": params + embeddings,
        "params_kaplan": L * weights,
        "deepseek_m": 6 * L * weights + 12 * d * attention_keys,
        "flops_per_token": 6 * params,
        "flops_per_token_palm": 6 * params + 12 * L * d * T,
        "flops_per_token_exact": exact,
        "flops_per_token_chinchilla": exact + 6 * V * d + 9 * config.n_head * attention_keys,
    }


class Rotary(nn.Module):
    """Rotary position embeddings (Su et al. 2021): rotate each pair of coordinates
    (i, i + head_dim/2) of queries and keys by an angle proportional to the position, with
    frequencies theta^(-2i/head_dim), so that q·k depends on the distance between positions."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        half = config.head_dim // 2
        frequencies = config.rope_theta ** (-torch.arange(half, dtype=torch.float32) / half)
        angles = torch.outer(torch.arange(config.context, dtype=torch.float32), frequencies)
        self.register_buffer("cos", angles.cos(), persistent=False)  # (context, head_dim/2)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, heads, T, head_dim) with each pair rotated by its position's angle."""
        T = x.shape[2]
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        first, second = x.chunk(2, dim=-1)
        return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, optionally restricted to a band of recent keys;
    under 'llama' with rotary positions and ``kv_heads`` key/value heads."""

    def __init__(self, config: GPTConfig, banded: bool) -> None:
        super().__init__()
        self.n_head, self.kv_heads, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        self.dropout = config.dropout
        self.scale = config.mup.attention_scale(config.head_dim)
        kv = config.kv_heads * config.head_dim
        self.qkv = nn.Linear(config.d_model, config.d_model + 2 * kv, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.proj.is_residual_output = True  # type: ignore[assignment]
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rotary = Rotary(config) if config.family == "llama" else None
        self.window = config.window if banded else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        kv = self.kv_heads * self.head_dim
        q, k, v = self.qkv(x).split((d, kv, kv), dim=2)
        # (B, T, heads·head_dim) -> (B, heads, T, head_dim)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        dropout = self.dropout if self.training else 0.0
        if self.window is not None:  # only the band is computed, in any precision
            y = banded_causal_attention(q, k, v, self.window, self.scale, dropout, self.training)
        elif x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            if self.kv_heads != self.n_head:
                k, v = (t.repeat_interleave(self.n_head // self.kv_heads, dim=1) for t in (k, v))
            allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = _explicit_attention(q, k, v, allowed, dropout, self.scale)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout, is_causal=True, scale=self.scale,
                enable_gqa=self.kv_heads != self.n_head,
            )
        y = y.transpose(1, 2).contiguous().view(B, T, d)  # (B, T, d)
        return self.resid_dropout(self.proj(y))


def _explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, dropout: float,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q·kᵀ·scale masked to ``allowed``)·v, written out in batched matmuls; ``scale``
    is 1/sqrt(head_dim) when None, as in SDPA.

    Used on CPU under bf16 autocast, where the matmuls run on the bf16 matrix units: the mask
    enters as an additive bias of the score matmul (one ``baddbmm``), and scores, softmax and
    weights stay in bf16. At proxy shapes (head_dim 7-36, context 128-256) a training step is
    20-30% faster than with PyTorch's CPU flash kernel, whose bf16 path is slower than its
    fp32 one there (benchmarks/train_throughput.py).
    """
    B, H, T, head_dim = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(head_dim)
    bias = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device)
    bias.masked_fill_(~allowed, float("-inf"))  # (T, T): 0 where allowed, -inf elsewhere
    scores = torch.baddbmm(
        bias.expand(B * H, T, T),
        q.reshape(B * H, T, head_dim),
        k.reshape(B * H, T, head_dim).transpose(1, 2),
        alpha=scale,
    )  # (B·H, T, T)
    weights = F.dropout(torch.softmax(scores, dim=-1), dropout, training=dropout > 0)
    return torch.bmm(weights, v.reshape(B * H, T, head_dim)).view(B, H, T, head_dim)


class MLP(nn.Module):
    """Position-wise feed-forward layer: GELU 4·d wide (GPT-2), or SwiGLU (Llama):
    proj(silu(gate(x)) · up(x)), with gate and up in one matrix of 2·ffn_width outputs."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gated = config.family == "llama"
        width = config.ffn_width
        self.fc = nn.Linear(config.d_model, (2 if self.gated else 1) * width, bias=config.bias)
        self.proj = nn.Linear(width, config.d_model, bias=config.bias)
        self.proj.is_residual_output = True  # type: ignore[assignment]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.fc(x).chunk(2, dim=-1)
            return self.dropout(self.proj(F.silu(gate) * up))
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # (B, T, d)


def _norm(config: GPTConfig) -> nn.Module:
    """LayerNorm (GPT-2, with a bias when ``bias``) or RMSNorm (Llama: a gain only)."""
    if config.family == "llama":
        return nn.RMSNorm(config.d_model, eps=1e-5)
    return nn.LayerNorm(config.d_model, bias=config.bias)


class Block(nn.Module):
    """Pre-norm Transformer block: x + r·attn(norm(x)), then x + r·mlp(norm(x)); the branch
    multiplier r is 1 except under CompleteP ('mup'), where it is base_n_layer / n_layer."""

    def __init__(self, config: GPTConfig, banded: bool) -> None:
        super().__init__()
        self.residual = config.mup.residual
        self.ln_1 = _norm(config)
        self.attn = CausalSelfAttention(config, banded)
        self.ln_2 = _norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.residual * self.attn(self.ln_1(x))
        return x + self.residual * self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A GPT-2- or Llama-style language model; ``forward(idx, targets)`` returns (logits, loss).

    Examples
    --------
    >>> model = GPT(GPTConfig(n_layer=2, d_model=32, n_head=2, context=16, vocab_size=256))
    >>> model.non_embedding_params() == model_counts(model.config)["params"]
    True
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        # learned positions (GPT-2); Llama's rotary positions live in the attention
        self.wpe = nn.Embedding(config.context, config.d_model) if config.family == "gpt2" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            [Block(config, config.is_banded(layer)) for layer in range(config.n_layer)]
        )
        self.ln_f = _norm(config)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.is_readout = True  # type: ignore[assignment]
        if config.tie_embeddings:
            self.head.weight = self.wte.weight  # GPT-2 ties input and output embeddings
        self.output_scale = config.mup.output
        self.apply(self._init_weights)

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The weights muP calls hidden: every matrix of the blocks (its fan-in grows with
        the width). Embeddings, the readout, LayerNorms and biases are not."""
        return [module.weight for module in self.blocks.modules() if isinstance(module, nn.Linear)]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "is_residual_output", False):
                # GPT-2: each block adds two outputs to the residual stream; scaling their init
                # by 1/sqrt(2·n_layer) keeps the stream's variance independent of depth. Under
                # 'mup' the branch multiplier carries the depth, so the base depth is used.
                layers = self.config.base_n_layer or self.config.n_layer
                std = 0.02 / math.sqrt(2 * layers)
            if not getattr(module, "is_readout", False):
                std *= self.config.mup.hidden_init_std  # muP: hidden init variance 1/m_d
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); with ``targets`` (B, T), also
        the mean cross-entropy in nats per token."""
        B, T = idx.shape
        if T > self.config.context:
            raise ValueError(
                f"sequence of {T} tokens is longer than the context = {self.config.context}"
            )
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        x = self.drop(x)  # (B, T, d)
        for block in self.blocks:
            x = block(x)  # (B, T, d)
        logits = self.head(self.ln_f(x))  # (B, T, vocab)
        if self.output_scale != 1.0:
            logits = logits * self.output_scale  # muP: readout divided by the width multiplier
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.reshape(B * T))
        return logits, loss

    def total_params(self) -> int:
        """All distinct parameters (a tied head is counted once)."""
        return sum(p.numel() for p in self.parameters())

    def non_embedding_params(self) -> int:
        """Kaplan's N: every parameter except the token and position tables (and an untied
        head, which is a vocabulary-sized embedding too). Formula: :func:`model_counts`."""
        embeddings = self.wte.weight.numel() + (self.wpe.weight.numel() if self.wpe is not None else 0)
        if not self.config.tie_embeddings:
            embeddings += self.head.weight.numel()
        return self.total_params() - embeddings

    def flops_per_token(self) -> int:
        """Kaplan's training FLOPs per token, 6·N."""
        return 6 * self.non_embedding_params()

    def flops_per_token_exact(self) -> int:
        """Training FLOPs per token of every matmul, the output head and attention
        (formula in :func:`model_counts`)."""
        return model_counts(self.config)["flops_per_token_exact"]


def build_model(config: GPTConfig) -> nn.Module:
    """The model of ``config``: ours (:class:`GPT`), or the user's from ``config.factory``
    behind the same interface (:class:`scaling.training.user_model.UserModel`)."""
    if config.factory is not None:
        from scaling.training.user_model import build_user_model

        return build_user_model(config)
    return GPT(config)
