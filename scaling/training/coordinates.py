"""The coordinate check of a parametrisation (Yang et al. 2021, "Tensor Programs V", section 5).

Under ``model.parametrization: mup`` the best learning rate of the base shape holds at every
width and depth (:class:`scaling.training.model.MupScales`). :func:`coord_check` tests an
implementation: a few steps at a large learning rate, after which the typical size of every
layer's activations must not grow with the width (or depth) under muP, while it does under the
standard parametrisation. :func:`coord_slopes` summarises the table as slopes in log-log.

This module computes; it neither prints nor draws (:mod:`scaling.reporting.figures` draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["COORD_LAYERS", "coord_check", "coord_slopes"]


#: The activations a coord check measures, after a few steps (mean |coordinate|).
COORD_LAYERS = ("embedding", "attention", "mlp", "residual", "logits")


def _measured(model: Any, x: Any) -> dict[str, float]:
    """Mean absolute coordinate of each layer of :data:`COORD_LAYERS` on batch ``x``
    (the last block for attention, MLP and the residual stream)."""
    import torch

    sizes: dict[str, float] = {}

    def record(name: str):
        def hook(module, inputs, output):
            sizes[name] = float(output.detach().abs().mean())
        return hook

    last = model.blocks[-1]
    hooks = [module.register_forward_hook(record(name)) for name, module in
             (("embedding", model.drop), ("attention", last.attn), ("mlp", last.mlp),
              ("residual", last))]  # fmt: skip
    with torch.no_grad():
        logits, _ = model(x[:, :-1])
    sizes["logits"] = float(logits.abs().mean())
    for hook in hooks:
        hook.remove()
    return sizes


def _coord_run(parametrization: str, d_model: int, n_layer: int, base: tuple[int, int], *,
               n_head: int, lr: float, steps: int, batch: int, context: int, seed: int,
               family: str = "gpt2") -> dict[str, float]:
    import torch

    from scaling.config.run import TrainConfig
    from scaling.training.loop import build_optimizer
    from scaling.training.model import GPT, GPTConfig

    mup = parametrization == "mup"
    config = GPTConfig(
        n_layer=n_layer, d_model=d_model, n_head=n_head, context=context, vocab_size=256,
        family=family, bias=family == "gpt2", tie_embeddings=family == "gpt2",
        parametrization=parametrization, base_d_model=base[0] if mup else None,
        base_n_layer=base[1] if mup else None,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = GPT(config)
    # The run's own optimizer groups, at a constant large lr without decay or clipping.
    optimizer = build_optimizer(model, TrainConfig(lr=lr, weight_decay=0.0), torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, context + 1), generator=generator)  # one fixed batch
    for _ in range(steps):
        _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return _measured(model, x)


def coord_check(
    widths: Sequence[int] = (32, 64, 128, 256),
    depths: Sequence[int] = (2, 4, 8),
    *,
    parametrizations: Sequence[str] = ("standard", "mup"),
    n_head: int = 4,
    lr: float = 1e-2,
    steps: int = 5,
    batch: int = 8,
    context: int = 64,
    seed: int = 0,
    family: str = "gpt2",
) -> pd.DataFrame:
    """Activation sizes after a few large-lr steps, across widths and depths.

    The width axis runs at depth ``depths[0]``, the depth axis at width ``widths[0]``; the
    base shape of 'mup' is (``widths[0]``, ``depths[0]``). Each model trains ``steps`` AdamW
    steps at a constant ``lr`` on one fixed batch of random byte tokens, with the optimizer
    groups of :func:`scaling.training.loop.train`; then one forward pass records the mean absolute
    coordinate of the embedding output, the last block's attention and MLP outputs, the
    residual stream after it, and the logits. ``family`` is the model family ('gpt2' or
    'llama', with Llama's defaults: no biases, untied head).

    Returns
    -------
    DataFrame
        Columns ``parametrization``, ``axis`` ('width' or 'depth'), ``d_model``,
        ``n_layer``, ``layer`` (:data:`COORD_LAYERS`), ``size``.

    Raises
    ------
    ConfigError
        If a width is not divisible by ``n_head``.
    """
    base = (int(widths[0]), int(depths[0]))
    shapes = [("width", int(w), base[1]) for w in widths] + [("depth", base[0], int(n)) for n in depths]
    rows = []
    for parametrization in parametrizations:
        for axis, d_model, n_layer in shapes:
            sizes = _coord_run(parametrization, d_model, n_layer, base, n_head=n_head, lr=lr,
                               steps=steps, batch=batch, context=context, seed=seed,
                               family=family)
            rows += [{"parametrization": parametrization, "axis": axis, "d_model": d_model,
                      "n_layer": n_layer, "layer": layer, "size": sizes[layer]}
                     for layer in COORD_LAYERS]  # fmt: skip
    return pd.DataFrame(rows)


def coord_slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Growth of each layer's activation size per doubling of width (or depth): the slope
    of log2(size) against log2(d_model) (or log2(n_layer)). About 0 is flat (muP's promise);
    1 means the size doubles with the width.

    Returns
    -------
    DataFrame
        Columns ``parametrization``, ``axis``, ``layer``, ``slope``.

    Examples
    --------
    >>> table = pd.DataFrame({"parametrization": "standard", "axis": "width",
    ...                       "d_model": [32, 64, 128], "n_layer": 2, "layer": "logits",
    ...                       "size": [1.0, 2.0, 4.0]})
    >>> coord_slopes(table)["slope"].round(3).tolist()
    [1.0]
    """
    rows = []
    for (parametrization, axis, layer), group in table.groupby(
        ["parametrization", "axis", "layer"], sort=False
    ):
        along = group["d_model" if axis == "width" else "n_layer"].to_numpy(dtype=float)
        slope = np.polyfit(np.log2(along), np.log2(group["size"].to_numpy(dtype=float)), 1)[0]
        rows.append({"parametrization": parametrization, "axis": axis, "layer": layer,
                     "slope": float(slope)})
    return pd.DataFrame(rows)
