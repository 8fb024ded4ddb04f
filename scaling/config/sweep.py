"""The sweep file's schema: what a sweep file (``sweeps/*.yaml``) says.

A sweep expands into RunSpecs (:func:`scaling.sweeps.planning.expand`); these classes only
describe and validate the file. Loading one is :func:`scaling.sweeps.planning.load_sweep`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from scaling.config.run import (
    DataConfig,
    EvalsConfig,
    ModelConfig,
    StrictModel,
    TrainConfig,
)

__all__ = [
    "Shape",
    "LadderConfig",
    "IsoflopConfig",
    "TuneConfig",
    "TargetConfig",
    "ForecastConfig",
    "ExecutionConfig",
    "SweepConfig",
]


class Shape(StrictModel):
    """One model shape of a sweep; fields left out take the sweep's ``model``/``train`` values.

    ``batch_tokens`` and ``lr`` belong to the shape because a recipe usually grows the batch
    (and may shrink the learning rate) with model size.
    """

    n_layer: int | None = Field(None, ge=1)
    d_model: int | None = Field(None, ge=1)
    n_head: int | None = Field(None, ge=1)
    n_kv_head: int | None = Field(None, ge=1, description="key/value heads ('llama' family)")
    batch_tokens: int | None = Field(None, ge=1, description="overrides train.batch_tokens")
    lr: float | None = Field(None, gt=0, description="overrides train.lr")

    def model_overrides(self) -> dict[str, int]:
        """The model fields this shape sets."""
        fields = ("n_layer", "d_model", "n_head", "n_kv_head")
        return {key: getattr(self, key) for key in fields if getattr(self, key) is not None}

    def train_overrides(self) -> dict[str, Any]:
        """The train fields this shape sets."""
        fields = ("batch_tokens", "lr")
        return {key: getattr(self, key) for key in fields if getattr(self, key) is not None}


class LadderConfig(StrictModel):
    """Shapes x token budgets: multiples of each model's N (20 ~ Chinchilla) or fixed counts."""

    shapes: list[Shape] = Field(min_length=1)
    tokens_per_param: list[PositiveFloat] = Field(
        default_factory=list, description="budgets as multiples of N (non-embedding params)"
    )
    tokens: list[PositiveInt] = Field(default_factory=list, description="explicit budgets in tokens")
    seeds: list[NonNegativeInt] = Field(
        default_factory=list,
        description="train every ladder run once per seed (train.seed), to measure the noise",
    )
    branches: bool = Field(
        False,
        description="with train.schedule 'wsd': train each shape's longest budget once and "
                    "branch every shorter budget's cooldown from its stable phase",
    )

    @model_validator(mode="after")
    def _check_budgets(self) -> LadderConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds = {self.seeds} repeats a seed; list each seed once")
        if not self.tokens_per_param and not self.tokens:
            raise ValueError("no budget; set ladder.tokens_per_param (e.g. [20]) or ladder.tokens")
        return self


class IsoflopConfig(StrictModel):
    """Compute budgets x shapes; each run's tokens = budget / exact FLOPs per token."""

    budgets: list[PositiveFloat] = Field(min_length=1, description="compute budgets C in FLOPs")
    shapes: list[Shape] = Field(min_length=1)
    min_steps: int = Field(
        10, ge=1, description="a budget giving a shape fewer optimizer steps is an error"
    )


class TuneConfig(StrictModel):
    """An Optuna search of the learning rate (and optionally warmup, batch) for each shape."""

    shapes: list[Shape] = Field(min_length=1)
    trials: int = Field(8, ge=1, description="trials per shape")
    tokens_per_param: float | None = Field(20.0, gt=0)
    tokens: int | None = Field(None, gt=0, description="explicit budget; wins over tokens_per_param")
    lr: tuple[float, float] = Field((1e-4, 1e-2), description="log-uniform search range")
    warmup: tuple[float, float] | None = Field(None, description="uniform range, e.g. [0, 0.2]")
    batch_tokens: list[int] | None = Field(None, description="choices, e.g. [4096, 8192]")
    seed: int = Field(0, description="seed of the sampler")
    pruner: Literal["none", "median", "halving"] = Field(
        "none",
        description="stop trials early on their intermediate eval losses: 'median' (Optuna's "
                    "MedianPruner: below the median of earlier trials at the same step) or "
                    "'halving' (SuccessiveHalvingPruner, reduction factor 3)",
    )
    prune_after: float = Field(
        0.25, gt=0, lt=1,
        description="share of a trial's steps before which no trial is pruned (the median "
                    "pruner's warmup; successive halving's minimum resource)",
    )
    prune_startup: int = Field(
        3, ge=0, description="trials of a shape that run to the end before the median pruner prunes",
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> TuneConfig:
        low, high = self.lr
        if not 0 < low < high:
            raise ValueError(f"lr = [{low}, {high}] must satisfy 0 < low < high; e.g. [1e-4, 1e-2]")
        if self.warmup is not None and not 0 <= self.warmup[0] < self.warmup[1] < 1:
            raise ValueError(
                f"warmup = {list(self.warmup)} must satisfy 0 <= low < high < 1; e.g. [0, 0.2]"
            )
        if self.batch_tokens is not None and (
            not self.batch_tokens or min(self.batch_tokens) < 1
        ):
            raise ValueError("batch_tokens must list positive sizes, e.g. [4096, 8192]")
        return self


class TargetConfig(StrictModel):
    """The large run the proxies predict (role ``target``), trained with the same recipe.

    ``nproc_per_node`` and ``nnodes`` say how many processes train it (DDP, the global batch
    split over them); like ``execution``, they change neither its run key nor the sweep's
    ``config_hash``. A sweep worker launches the target on ``nproc_per_node`` processes of its
    own node (``torchrun --standalone``, :mod:`scaling.sweeps.workers`); a target on several
    nodes is launched outside the sweep from ``scaling sweep export-target``.
    """

    shape: Shape
    tokens_per_param: float | None = Field(20.0, gt=0)
    tokens: int | None = Field(None, gt=0, description="explicit budget; wins over tokens_per_param")
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="train settings of the target that differ from the sweep's, e.g. "
                    "{schedule: cosine} for a target trained as one run beside a WSD ladder",
    )
    nproc_per_node: int = Field(
        1, description="processes that train the target on one node (one per GPU; on CPU, "
                       "gloo processes sharing the cores); 1 trains it in the worker itself",
    )
    nnodes: int = Field(
        1, description="nodes of the target's torchrun job; above 1 a sweep worker cannot launch "
                       "it: export it with 'scaling sweep export-target' and launch it yourself",
    )

    @field_validator("nproc_per_node", "nnodes", mode="before")
    @classmethod
    def _whole_count(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("use a whole number of at least 1, e.g. 8 (one process per GPU)")
        return value

    @property
    def processes(self) -> int:
        """Processes that train the target in all (``nnodes`` x ``nproc_per_node``)."""
        return self.nnodes * self.nproc_per_node


class ForecastConfig(StrictModel):
    """How ``scaling demo`` forecasts the sweep's target from its proxies."""

    law: Literal["gpt4", "power"] = Field(
        "gpt4",
        description="gpt4: L = a·C^b + c; power: L = a·C^b, which needs no floor from the "
                    "proxies but undershoots the further it extrapolates",
    )
    fit_range: Literal["auto", "all"] = Field(
        "auto", description="auto: leave out the smallest proxies when the proxies' own backtest "
                            "predicts the largest better without them",
    )
    tokens_per_param: float | None = Field(
        None, gt=0,
        description="fit only the proxies trained at this many tokens per parameter (within "
                    "1%): a ladder of several budgets per shape forecasts a target of one budget "
                    "from the runs at that budget; None fits every proxy",
    )

    def where(self) -> str | None:
        """The run-table query (:func:`scaling.laws.selection.filter_rows`) that keeps the
        proxies this forecast fits, or None for all of them."""
        if self.tokens_per_param is None:
            return None
        low, high = 0.99 * self.tokens_per_param, 1.01 * self.tokens_per_param
        return f"tokens >= {low:g} * params and tokens <= {high:g} * params"


class ExecutionConfig(StrictModel):
    """How the sweep's runs are executed; nothing here changes a run's result or its key.

    ``scaling sweep run`` and ``scaling sweep worker`` take ``--max-retries`` and
    ``--checkpoint-root`` over these values.
    """

    max_retries: NonNegativeInt = Field(
        2, description="times a run that failed for a transient reason (a killed worker, a lost "
                       "node, database or tracking connection) is retried from its checkpoint",
    )
    checkpoint_root: str | None = Field(
        None, min_length=1,
        description="folder of checkpoints/<sweep>/<run_key>/ shared by every machine "
                    "(default: checkpoints/ in each worker's working directory)",
    )


class SweepConfig(StrictModel):
    """A whole sweep file: names, shared recipe, and the families of runs to launch.

    ``quick`` holds overrides (same layout as the file) merged in by
    ``scaling.sweeps.planning.load_sweep(path, quick=True)``: a toy version of the sweep for tests.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="= MLflow experiment")
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evals: EvalsConfig = Field(default_factory=EvalsConfig)
    ladder: LadderConfig | None = None
    isoflop: IsoflopConfig | None = None
    tune: TuneConfig | None = None
    target: TargetConfig | None = None
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    quick: dict[str, Any] | None = Field(None, description="toy overrides for tests and demos")
    _source: str = PrivateAttr("<sweep>")  # the file it came from, for error messages

    @property
    def checkpoint_root(self) -> str:
        """Where run checkpoints live: ``execution.checkpoint_root`` or ``checkpoints``."""
        return self.execution.checkpoint_root or "checkpoints"

    @property
    def source(self) -> str:
        """The file this sweep was read from (``<sweep>`` when built in code)."""
        return self._source

    @property
    def config_hash(self) -> str:
        """A 16-hex-digit hash of the validated sweep (its ``quick``, ``forecast`` and
        ``execution`` sections and the target's process counts aside, which change no run):
        every run of the sweep is tagged with it, so a report can say which sweep file
        produced it."""
        sections: dict[str, Any] = {"quick": True, "forecast": True, "execution": True}
        if self.target is not None:  # how many processes train it changes no run either
            sections["target"] = {"nproc_per_node": True, "nnodes": True}
        text = json.dumps(self.model_dump(mode="json", exclude=sections), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_source(self, source: str | Path) -> SweepConfig:
        """This config, remembering the file it came from (errors name it)."""
        self._source = str(source)
        return self

    @model_validator(mode="after")
    def _check_sweep(self) -> SweepConfig:
        if not any((self.ladder, self.isoflop, self.tune, self.target)):
            raise ValueError("the sweep runs nothing; add a ladder, isoflop, tune or target section")
        sections = {
            "ladder": self.ladder.shapes if self.ladder else [],
            "isoflop": self.isoflop.shapes if self.isoflop else [],
            "tune": self.tune.shapes if self.tune else [],
            "target": [self.target.shape] if self.target else [],
        }
        if self.ladder is not None and self.ladder.branches:
            if self.train.schedule != "wsd":
                raise ValueError(
                    f"ladder.branches needs train.schedule = 'wsd', not {self.train.schedule!r}: "
                    "only a warmup-stable-decay run has a stable phase to branch from; set "
                    "train.schedule: wsd"
                )
            if len(self.ladder.tokens_per_param) + len(self.ladder.tokens) < 2:
                raise ValueError(
                    "ladder.branches needs at least two budgets per shape (one stable run and a "
                    "branch), e.g. tokens_per_param: [10, 20, 40]"
                )
        if self.target is not None and self.target.train:
            if "tokens" in self.target.train:
                raise ValueError("target.train.tokens: set the budget as target.tokens or "
                                 "target.tokens_per_param")
            try:
                TrainConfig.model_validate({**self.train.model_dump(), **self.target.train})
            except ValidationError as error:
                problem = error.errors(include_url=False)[0]
                field = ".".join(str(part) for part in problem["loc"])
                raise ValueError(f"target.train.{field}: {problem['msg'].removeprefix('Value error, ')}") from None
        base = self.model.model_dump()
        for section, shapes in sections.items():
            for index, shape in enumerate(shapes):
                merged = {**base, **shape.model_overrides()}
                where = f"{section}.shape" if section == "target" else f"{section}.shapes.{index}"
                try:
                    ModelConfig.model_validate(merged)
                except ValidationError as error:
                    message = error.errors(include_url=False)[0]["msg"]
                    message = message.removeprefix("Value error, ")
                    raise ValueError(f"{where}: {message}") from None
        return self
