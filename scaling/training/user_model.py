"""A user's own model in place of our families: ``model.factory``.

A sweep or run file names a function with ``model.factory: "package.module:build"`` (found on
``sys.path`` with the working directory first) or ``"path/to/file.py:build"``. It is called
with the run's :class:`~scaling.training.model.GPTConfig` (the shape fields ``n_layer``,
``d_model``, ``n_head``, ``context``, ``vocab_size`` and the rest of the model section) and
returns an :class:`torch.nn.Module` whose ``forward(idx)`` maps token ids ``(B, T)`` (int64,
T at most the context) to logits ``(B, T, vocab_size)``. The trainer adds the loss, the
optimizer (decay on every parameter of two or more dimensions), the schedule, DDP,
checkpoints and evaluation exactly as for our models, so the run is tracked, fitted and
reported like any other.

Its counts cannot come from a formula, so they are measured once per shape
(:func:`measured_counts`):

- parameters from the module itself, the embeddings being the ``nn.Embedding`` tables and an
  untied output head, the ``nn.Linear`` with ``vocab_size`` outputs (the non-embedding rule
  of Kaplan et al.); Kaplan's matrix count keeps only non-embedding tensors of two or more
  dimensions;
- training FLOPs per token with :class:`torch.utils.flop_counter.FlopCounterMode` on one
  forward and backward pass of one sequence at the full context, on the ``meta`` device when
  the model allows it (no memory, no time), else on the CPU. It counts the matmuls,
  convolutions and attention kernels, which is what ``flops_per_token_exact`` counts for our
  own families (``tests/test_model.py`` checks that the two agree).

A factory that cannot be imported, is not callable, fails, returns something that is not a
module or gives logits of the wrong shape is one :class:`~scaling.errors.ConfigError` naming
``model.factory`` before any training: sweeps count every run when they are planned.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from scaling.errors import ConfigError

if TYPE_CHECKING:
    from scaling.training.model import GPTConfig

__all__ = ["UserModel", "load_factory", "build_user_model", "measured_counts", "flop_counter"]


def load_factory(factory: str) -> Callable[..., Any]:
    """The function ``factory`` names ('module:function' or 'file.py:function').

    Raises
    ------
    ConfigError
        If the module or file cannot be imported or has no such callable.
    """
    target, _, name = factory.rpartition(":")
    where = f"model.factory = {factory!r}"
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target)
            if not path.is_file():
                raise ConfigError(f"{where}: no file {target} (relative to {Path.cwd()}); "
                                  "check the path")
            module_name = f"scaling_user_model_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                sys.modules[module_name] = module
                try:
                    spec.loader.exec_module(module)  # type: ignore[union-attr]
                except BaseException:
                    del sys.modules[module_name]
                    raise
        else:
            added = str(Path.cwd()) not in sys.path  # the user's project, as a script would see it
            if added:
                sys.path.insert(0, str(Path.cwd()))
            try:
                module = importlib.import_module(target)
            finally:
                if added:
                    sys.path.remove(str(Path.cwd()))
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(
            f"{where}: importing {target} failed ({type(error).__name__}: {error}); fix the "
            "module or the name (a file path, or a module importable from the working directory)"
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"{where}: {target} has no function {name}; name one that builds the model")
    return function


class UserModel(nn.Module):
    """The user's module behind our training interface: ``forward(idx, targets)`` returns
    (logits, mean cross-entropy in nats per token), as :class:`scaling.training.model.GPT` does."""

    def __init__(self, config: GPTConfig, module: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.module = module

    def hidden_matrices(self) -> list[nn.Parameter]:
        """None: muP is built into our families only (refused for a factory)."""
        return []

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.module(idx)
        if targets is None:
            return logits, None
        B, T = idx.shape
        loss = F.cross_entropy(logits.reshape(B * T, -1).float(), targets.reshape(B * T))
        return logits, loss

    def total_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def non_embedding_params(self) -> int:
        return _parameter_counts(self.module, self.config.vocab_size)["params"]


def build_user_model(config: GPTConfig) -> UserModel:
    """Call the factory and check what it returns on a short batch.

    Raises
    ------
    ConfigError
        If the factory fails, returns no ``nn.Module``, or its logits have the wrong shape.
    """
    module = _call(config)
    _check_logits(config, module, torch.zeros(2, min(8, config.context), dtype=torch.long))
    return UserModel(config, module)


def _call(config: GPTConfig) -> nn.Module:
    where = f"model.factory = {config.factory!r}"
    function = load_factory(config.factory)  # type: ignore[arg-type]
    try:
        module = function(config)
    except Exception as error:
        raise ConfigError(f"{where}: calling it failed ({type(error).__name__}: {error}); it "
                          "is called with the run's GPTConfig") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{where}: returned a {type(module).__name__}, not a torch.nn.Module; "
                          "return the model")
    return module


def _check_logits(config: GPTConfig, module: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    where = f"model.factory = {config.factory!r}"
    try:
        logits = module(idx)
    except Exception as error:
        raise ConfigError(f"{where}: its forward on token ids of shape {tuple(idx.shape)} failed "
                          f"({type(error).__name__}: {error}); it must map (B, T) ids to logits"
                          ) from None
    expected = (*idx.shape, config.vocab_size)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"{where}: forward returned {shape} for ids of shape "
                          f"{tuple(idx.shape)}; return logits of shape {expected}")
    return logits


def _parameter_counts(module: nn.Module, vocab_size: int) -> dict[str, int]:
    """Total, non-embedding and Kaplan's matrix-only counts, plus the output head's weights."""
    unique = {id(p): p for p in module.parameters()}
    embedding_ids = {id(p) for sub in module.modules() if isinstance(sub, nn.Embedding)
                     for p in sub.parameters()}
    heads = [sub.weight for sub in module.modules()
             if isinstance(sub, nn.Linear) and sub.out_features == vocab_size]
    embedding_ids |= {id(weight) for weight in heads}
    rest = [p for key, p in unique.items() if key not in embedding_ids]
    return {
        "params": sum(p.numel() for p in rest),
        "params_total": sum(p.numel() for p in unique.values()),
        "params_kaplan": sum(p.numel() for p in rest if p.dim() >= 2),
        "head": sum(weight.numel() for weight in heads),
    }


def flop_counter() -> Any:
    """A :class:`torch.utils.flop_counter.FlopCounterMode` under the convention of
    :func:`scaling.training.model.model_counts`: every attention kernel (the CPU flash kernel,
    which the counter leaves out, and the CUDA ones) is charged QKᵀ and the weighted sum over
    the full T × T forward, and twice that backward. The counter's own CUDA formulas charge the
    backward 2.5 × the forward because flash kernels recompute the scores; that recomputation
    is how a kernel saves memory, not work the model needs, and the analytic counts of every
    paper leave it out."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return 2 * sdpa_flop_count(query, key, value)

    aten = torch.ops.aten
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }
    for name in ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                 "_scaled_dot_product_cudnn_attention"):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = forward
            mapping[getattr(aten, f"{name}_backward")] = backward
    return FlopCounterMode(display=False, custom_mapping=mapping)


@functools.lru_cache(maxsize=64)
def measured_counts(config: GPTConfig) -> dict[str, int]:
    """The counts of :func:`scaling.training.model.model_counts` for a factory's model,
    measured (module docstring); cached per shape.

    Raises
    ------
    ConfigError
        As :func:`build_user_model`.
    """
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                module = _call(config)
            idx = torch.zeros(1, config.context, dtype=torch.long, device=device)
            with flop_counter() as counter:
                logits = _check_logits(config, module, idx)
                logits.float().sum().backward()
            break
        except ConfigError:
            if device == "cpu":
                raise
    counts = _parameter_counts(module, config.vocab_size)
    exact = round(counter.get_total_flops() / config.context)
    d, L, H, T, V = config.d_model, config.n_layer, config.n_head, config.context, config.vocab_size
    head = counts["head"] or V * d
    return {
        "params": counts["params"],
        "params_total": counts["params_total"],
        "params_kaplan": counts["params_kaplan"],
        "deepseek_m": exact - 6 * head,
        "flops_per_token": 6 * counts["params"],
        "flops_per_token_palm": 6 * counts["params"] + 12 * L * d * T,
        "flops_per_token_exact": exact,
        "flops_per_token_chinchilla": exact + 6 * V * d + 9 * H * L * T,
    }
