"""Typed configuration: what one run is (model, data, training) and how YAML becomes it.

Every schema forbids unknown keys and is frozen once validated. Validation errors become
one-line :class:`~scaling.errors.ConfigError` messages that name the file, the dotted key,
the bad value and the fix. This module never touches torch or MLflow.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from scaling.errors import ConfigError

__all__ = [
    "BUILTIN_TASKS",
    "StrictModel",
    "ModelConfig",
    "DataConfig",
    "SyntheticConfig",
    "TrainConfig",
    "EvalsConfig",
    "RunSpec",
    "load_yaml",
    "validate",
    "load_run_spec",
]

T = TypeVar("T", bound=BaseModel)


#: The capability tasks built from a run's held-out text (:mod:`scaling.evals.tasks`).
BUILTIN_TASKS = ("copy", "next_line", "closing")


class StrictModel(BaseModel):
    """Base of every schema: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(StrictModel):
    """Shape and recipe of one model (see :class:`scaling.training.model.GPTConfig`).

    ``family`` picks the block: 'gpt2' (LayerNorm, learned positions, GELU MLP, biases; the
    default) or 'llama' (RMSNorm, rotary positions, SwiGLU, grouped-query attention, and by
    default no biases and an untied output head). ``factory`` names a user's own model
    instead (:mod:`scaling.training.user_model`).
    """

    family: Literal["gpt2", "llama"] = Field(
        "gpt2",
        description=(
            "'gpt2': LayerNorm, learned positions, GELU MLP 4d wide, biases; 'llama': RMSNorm, "
            "rotary positions, SwiGLU, grouped-query attention, no biases, untied head"
        ),
    )
    n_layer: int = Field(4, ge=1, description="number of Transformer blocks")
    d_model: int = Field(128, ge=1, description="residual stream width")
    n_head: int = Field(4, ge=1, description="attention heads; must divide d_model")
    context: int = Field(256, ge=2, description="tokens per sequence")
    vocab_size: int | None = Field(
        None, ge=2, description="None takes the tokenizer's vocabulary size"
    )
    attention: Literal["dense", "alternating"] = Field(
        "dense", description="'alternating' = GPT-3: dense and locally banded layers in turn"
    )
    window: int | None = Field(
        None, ge=1, description="band width in tokens of the banded layers ('alternating' only)"
    )
    n_kv_head: int | None = Field(
        None, ge=1,
        description="key/value heads of grouped-query attention ('llama'; None = n_head)",
    )
    ffn_multiple_of: int = Field(
        32, ge=1, description="'llama': the SwiGLU width 8·d/3 is rounded up to a multiple of this"
    )
    ffn_hidden: int | None = Field(
        None, ge=1, description="the MLP's hidden width, overriding the family's rule (4d; 8d/3)"
    )
    rope_theta: float = Field(10000.0, gt=1, description="'llama': base of the rotary frequencies")
    tie_embeddings: bool = Field(
        True, description="share the token table with the output head ('llama' default: false)"
    )
    bias: bool = Field(True, description="biases in Linear layers and norms ('llama' default: false)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    factory: str | None = Field(
        None,
        pattern=r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$",
        description=(
            "your own model: 'package.module:function' or 'path/to/file.py:function', called "
            "with the GPTConfig of the shape and returning an nn.Module from token ids (B, T) "
            "to logits (B, T, vocab)"
        ),
    )
    parametrization: Literal["standard", "mup"] = Field(
        "standard",
        description="'mup' = width-muP plus CompleteP depth scaling relative to the base shape",
    )
    base_d_model: int | None = Field(
        None, ge=1, description="width the hyperparameters were tuned at ('mup' only)"
    )
    base_n_layer: int | None = Field(
        None, ge=1, description="depth the hyperparameters were tuned at ('mup' only)"
    )

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        """Llama's recipe has no biases and an untied head unless the file says otherwise."""
        if isinstance(data, dict) and data.get("family") == "llama":
            data = {"bias": False, "tie_embeddings": False, **data}
        return data

    @model_validator(mode="after")
    def _check_shape(self) -> ModelConfig:
        if self.d_model % self.n_head:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0]
            below = [h for h in divisors if h < self.n_head][-1:]
            above = [h for h in divisors if h > self.n_head][:1]
            nearest = below + above
            raise ValueError(
                f"n_head = {self.n_head} does not divide d_model = {self.d_model}; "
                f"pick a divisor such as {' or '.join(map(str, nearest))}"
            )
        if self.attention == "alternating" and self.window is None:
            raise ValueError(
                "attention = 'alternating' needs a window; set model.window, e.g. "
                f"{max(1, self.context // 4)}"
            )
        if self.window is not None and self.window > self.context:
            raise ValueError(
                f"window = {self.window} is larger than context = {self.context}; "
                f"use a window of at most {self.context}"
            )
        self._check_family()
        self._check_parametrization()
        return self

    def _check_family(self) -> None:
        if self.n_kv_head is not None:
            if self.family != "llama":
                raise ValueError(
                    f"n_kv_head = {self.n_kv_head} needs family: llama (grouped-query "
                    "attention); set family: llama or remove n_kv_head"
                )
            if self.n_head % self.n_kv_head:
                raise ValueError(
                    f"n_kv_head = {self.n_kv_head} does not divide n_head = {self.n_head}; "
                    "each key/value head serves an equal group of query heads"
                )
        if self.family == "llama" and (self.d_model // self.n_head) % 2:
            raise ValueError(
                f"head width d_model / n_head = {self.d_model // self.n_head} is odd; rotary "
                "positions rotate pairs of coordinates, pick n_head so that it is even"
            )
        if self.factory is not None and self.parametrization != "standard":
            raise ValueError(
                f"parametrization = {self.parametrization!r} is built into our families only; "
                "with a factory, use parametrization: standard"
            )

    def _check_parametrization(self) -> None:
        base = {"base_d_model": self.base_d_model, "base_n_layer": self.base_n_layer}
        if self.parametrization == "standard":
            given = [name for name, value in base.items() if value is not None]
            if given:
                raise ValueError(
                    f"{given[0]} = {base[given[0]]} has no effect with parametrization = "
                    "'standard'; set parametrization: mup or remove it"
                )
            return
        missing = [name for name, value in base.items() if value is None]
        if missing:
            raise ValueError(
                f"parametrization = 'mup' needs the base shape the hyperparameters were tuned "
                f"at; set {' and '.join(missing)} (e.g. the smallest proxy's "
                f"{' and '.join(name.removeprefix('base_') for name in missing)})"
            )
        for name, size in (("d_model", self.d_model), ("n_layer", self.n_layer)):
            if base[f"base_{name}"] > size:
                raise ValueError(
                    f"base_{name} = {base[f'base_{name}']} is larger than {name} = {size}; the "
                    f"base shape is the small model the hyperparameters were tuned at, use a "
                    f"base_{name} of at most {size}"
                )


# Fields added after run keys were first published: they enter the run key and the logged
# params only when they differ from these defaults, so every earlier run keeps its key.
_OPTIONAL_MODEL_FIELDS = {
    "parametrization": "standard", "base_d_model": None, "base_n_layer": None,
    "family": "gpt2", "n_kv_head": None, "ffn_multiple_of": 32, "ffn_hidden": None,
    "rope_theta": 10000.0, "factory": None,
}
_OPTIONAL_DATA_FIELDS = {"bin_dtype": "uint16", "content_hash": None}
_OPTIONAL_TRAIN_FIELDS = {"schedule": "cosine", "decay_fraction": 0.2, "decay_shape": "1-sqrt",
                          "warmup_steps": None}


def _file_digest(path: str) -> str | None:
    """SHA-256 of a file's bytes; None when it is missing (the run then fails with the path)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def factory_source(factory: str) -> Path | None:
    """The file that defines a ``model.factory`` ('path/to/file.py:function' or
    'package.module:function', found on ``sys.path`` with the working directory first), without
    running it; None when it cannot be found (the run then fails naming it)."""
    import importlib.util
    import sys

    target = factory.rpartition(":")[0]
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        return path.resolve() if path.is_file() else None
    added = str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        spec = importlib.util.find_spec(target)
    except Exception:  # a package that fails to import: the run names it when it builds
        spec = None
    finally:
        if added:
            sys.path.remove(str(Path.cwd()))
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and Path(origin).is_file() else None


def _model_payload(model: ModelConfig) -> dict[str, Any]:
    """The model config as JSON values, without optional fields left at their defaults."""
    return _without_defaults(model.model_dump(mode="json"), _OPTIONAL_MODEL_FIELDS)


def _data_payload(data: DataConfig) -> dict[str, Any]:
    """The data config as JSON values, without optional fields left at their defaults (a
    pinned corpus enters with its content hash)."""
    return _without_defaults(data.model_dump(mode="json"), _OPTIONAL_DATA_FIELDS)


def _train_payload(train: TrainConfig) -> dict[str, Any]:
    """The training config as JSON values that change the result: without the fields that only
    say how a run executes, and without the schedule's fields where they do not apply."""
    payload = train.model_dump(mode="json", exclude=_KEY_NEUTRAL_TRAIN_FIELDS)
    if payload["schedule"] != "wsd":  # the decay settings shape only a WSD schedule
        payload["decay_fraction"], payload["decay_shape"] = 0.2, "1-sqrt"
    if payload["warmup_steps"] is not None:  # a warmup in steps makes the share irrelevant
        payload["warmup"] = 0.05
    return _without_defaults(payload, _OPTIONAL_TRAIN_FIELDS)


def _without_defaults(payload: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    for name, default in optional.items():
        if payload[name] == default:
            del payload[name]
    return payload


class SyntheticConfig(StrictModel):
    """A seeded random Markov source whose entropy rate (the irreducible loss) is exact."""

    alphabet: int = Field(16, ge=2, le=256, description="number of symbols")
    order: int = Field(2, ge=1, le=4, description="Markov order (symbols of history)")
    concentration: float = Field(
        0.5, gt=0, description="Dirichlet concentration of each next-symbol distribution"
    )
    tokens: int = Field(2_000_000, ge=1_000, description="length of the generated corpus")
    seed: int = 0


class DataConfig(StrictModel):
    """Where the text comes from and how it becomes tokens."""

    source: str = Field(
        "python-stdlib",
        description=(
            "'python-stdlib' (the embedded corpus, the same on every machine), 'synthetic', or "
            "a path: a directory prepared by `scaling data prepare`, a text file, a directory "
            "of text files, a .jsonl file (any of them .gz/.zst/.xz compressed), or a "
            "nanoGPT-style .bin"
        ),
    )
    glob: str = Field("**/*.txt", description="files to read when source is a directory")
    text_field: str = Field("text", description="field holding the text in a .jsonl source")
    tokenizer: str = Field(
        "bytes", description="'bytes' (vocab 256), 'bpe' (trained locally), or a tokenizer.json path"
    )
    bpe_vocab_size: int = Field(4096, ge=257, le=65535)
    eval_fraction: float = Field(
        0.02, gt=0, lt=0.5, description="share of documents held out for evaluation"
    )
    eval_tokens: int = Field(
        131_072, ge=1, description="tokens scored at every evaluation (fixed across a sweep)"
    )
    bin_dtype: Literal["uint16", "uint32"] = Field(
        "uint16", description="token type of a .bin source (nanoGPT writes uint16)"
    )
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    content_hash: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description=(
            "the corpus's content hash (SHA-256), which enters the run key: filled in when a "
            "sweep is planned; set it to pin the data, so a run on other data fails"
        ),
    )


class TrainConfig(StrictModel):
    """Optimizer, schedule, budget and bookkeeping of one run."""

    tokens: int = Field(1_000_000, ge=1, description="training budget D in tokens")
    batch_tokens: int = Field(8192, ge=1, description="tokens per optimizer step (global)")
    micro_batch_tokens: int | None = Field(
        None, ge=1, description="tokens per forward pass; None = the whole batch at once"
    )
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    min_lr_ratio: float = Field(
        0.1, ge=0, le=1, description="the learning rate at the last step, as a share of lr"
    )
    schedule: Literal["cosine", "wsd", "constant"] = Field(
        "cosine",
        description=(
            "after warmup: 'cosine' decays to min_lr_ratio at the last step; 'wsd' holds lr, "
            "then decays over the last decay_fraction of the steps; 'constant' holds lr"
        ),
    )
    decay_fraction: float = Field(
        0.2, gt=0, le=1, description="share of the steps a 'wsd' schedule spends decaying"
    )
    decay_shape: Literal["linear", "cosine", "1-sqrt"] = Field(
        "1-sqrt", description="shape of a 'wsd' decay (Hägele et al. 2024 favour 1-sqrt)"
    )
    warmup: float = Field(0.05, ge=0, lt=1, description="share of steps spent warming up")
    warmup_steps: int | None = Field(
        None, ge=0,
        description="warmup in optimizer steps, over warmup: the same for runs of any length "
                    "(the branches of a WSD ladder share their stable run's warmup)",
    )
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    seed: int = 0
    eval_every: int = Field(0, ge=0, description="steps between evaluations; 0 = about 10 per run")
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = never")
    log_every: int = Field(
        0, ge=0, description="steps between logged training metrics; 0 = about 100 per run"
    )
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    divergence_factor: float = Field(
        3.0, gt=1, description="stop when the loss exceeds this multiple of its running minimum"
    )


class EvalsConfig(StrictModel):
    """Capability tasks scored on the final model (:mod:`scaling.evals.scoring`); none by default.

    A sweep file lists them in an ``evals:`` section, e.g. ``evals: {tasks: [copy, next_line,
    closing]}``. Each run then logs ``task/<name>/accuracy``, ``accuracy_se``, ``pass_rate``,
    ``neg_log_pass_rate``, ``nll`` and ``items``.
    """

    tasks: list[str] = Field(
        default_factory=list,
        description="built-in tasks (copy, next_line, closing) and/or paths of .jsonl task files",
    )
    shots: int = Field(0, ge=0, description="examples from the task's other items before each item")
    n_items: int = Field(100, ge=1, description="items per built-in task, from the held-out split")
    samples: int = Field(20, ge=1, description="k: sampled continuations per item for pass rates")
    seed: int = Field(0, description="seed of the built-in items, the examples and the samples")
    every_eval: bool = Field(False, description="also score the tasks at every evaluation step")

    @model_validator(mode="after")
    def _check_tasks(self) -> EvalsConfig:
        names = []
        for task in self.tasks:
            if task not in BUILTIN_TASKS and not task.endswith(".jsonl"):
                raise ValueError(
                    f"unknown task {task!r}; use one of {', '.join(BUILTIN_TASKS)} or the path "
                    "of a .jsonl task file"
                )
            names.append(Path(task).stem if task.endswith(".jsonl") else task)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"tasks: {', '.join(repeated)} listed twice (a task file is named after its "
                "file name); keep one or rename the file"
            )
        return self


# Fields that change how a run is executed, not what it computes: left out of the run key so
# that the same run on another device, or with other checkpoint settings, is recognised.
_KEY_NEUTRAL_TRAIN_FIELDS = {"device", "checkpoint_every", "compile", "log_every"}


class RunSpec(StrictModel):
    """Everything one training run needs: the unit a sweep enqueues and a worker trains."""

    sweep: str = Field("default", min_length=1)
    name: str = Field("run", min_length=1, description="e.g. d128-L4-20xN")
    role: Literal["proxy", "target"] = "proxy"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evals: EvalsConfig = Field(default_factory=EvalsConfig)

    @property
    def run_key(self) -> str:
        """A stable 16-hex-digit hash of everything that changes this run's result.

        The name, sweep and role are labels, and device/checkpoint/compile settings change
        only how the run executes, so none of them enters the key. Capability tasks enter it
        only when there are some, so runs without them keep the keys they always had; a task
        file enters with a hash of its contents, so editing it makes its runs new runs.
        """
        payload = {
            "model": _model_payload(self.model),
            "data": _data_payload(self.data),
            "train": _train_payload(self.train),
        }
        if self.evals.tasks:
            payload["evals"] = self.evals.model_dump(mode="json")
            files = {task: _file_digest(task) for task in self.evals.tasks if task.endswith(".jsonl")}
            if files:
                payload["task_files"] = files
        if self.model.factory is not None:  # editing the model's file makes its runs new runs
            source = factory_source(self.model.factory)
            payload["factory_source"] = None if source is None else _file_digest(str(source))
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def flat_params(self) -> dict[str, Any]:
        """The config as dotted keys (``model.d_model``), as logged to MLflow params."""
        flat: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    walk(f"{prefix}.{key}" if prefix else key, item)
            else:
                flat[prefix] = value

        labels = {"sweep", "name", "role"} | (set() if self.evals.tasks else {"evals"})
        payload = self.model_dump(mode="json", exclude=labels)
        payload["model"] = _model_payload(self.model)
        payload["data"] = _data_payload(self.data)
        walk("", payload)
        return flat


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file.

    Raises
    ------
    ConfigError
        If the file is missing, unreadable, not YAML, or not a mapping at the top.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; check the path (relative to {Path.cwd()})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; give a YAML file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{where} invalid YAML ({problem}); fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level is a {type(data).__name__}, not a mapping of keys; "
            "write it as 'key: value' lines"
        )
    return data


def _describe(error: dict[str, Any]) -> str:
    """One line for one pydantic error: dotted key, bad value, what is wrong and the fix."""
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"unknown key {key}; remove it or check its spelling"
    if kind == "missing":
        return f"{key} is required; add it"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    if key == "(top level)" or (isinstance(value, dict) and kind == "value_error"):
        return f"{key}: {message}" if key != "(top level)" else message
    return f"{key} = {shown}: {message}"


def validate(schema: type[T], data: Any, source: str | Path = "<config>") -> T:
    """Validate ``data`` against ``schema``; turn the first problem into a one-line ConfigError.

    Examples
    --------
    >>> validate(ModelConfig, {"d_model": 64, "n_head": 4}).n_head
    4
    >>> validate(ModelConfig, {"d_model": 64, "n_head": 5}, "sweeps/demo.yaml")
    Traceback (most recent call last):
    ...
    scaling.errors.ConfigError: sweeps/demo.yaml: n_head = 5 does not divide d_model = 64; pick a divisor such as 4 or 8
    """
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        raise ConfigError(f"{source}: {_describe(first)}") from None


def load_run_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> RunSpec:
    """Load one run from YAML (``model:``, ``data:``, ``train:``, ``name:``...), then apply
    dotted ``overrides`` such as ``{"train.lr": 1e-3}``."""
    data = load_yaml(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: {dotted} cannot be set: {part} is not a mapping")
        node[leaf] = value
    return validate(RunSpec, data, path if path is not None else "<flags>")
