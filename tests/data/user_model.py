"""A model of a user's own, in a file of their project: what ``model.factory`` names in
``tests/test_families.py``. It imports only torch, as a user's file would, and is loaded by
path in the sweep's worker processes."""

from __future__ import annotations

from torch import nn


class TinyUserModel(nn.Module):
    """Embedding -> GELU MLP with a residual -> LayerNorm -> untied head."""

    def __init__(self, config) -> None:
        super().__init__()
        d = config.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, config.vocab_size, bias=False)

    def forward(self, idx):
        x = self.embed(idx)
        return self.out(self.norm(x + self.mlp(x)))


def build_tiny(config):
    return TinyUserModel(config)


def build_nothing(config):
    return "not a model"


def build_wrong_shape(config):
    return nn.Embedding(config.vocab_size, config.d_model)  # (B, T, d), not (B, T, vocab)


def build_failing(config):
    raise RuntimeError("the user's bug")
