"""The plan of a sweep, pure: a sweep file becomes a validated SweepConfig and a list of RunSpecs.

Nothing here touches Optuna or MLflow; of the disk it reads the sweep file and the corpus's
identity (its content hash and vocabulary, :func:`scaling.training.data.pin_corpus`, which
prepares a text source once into the token cache). The queue and
the workers live in :mod:`scaling.sweeps.queue`, which re-exports :func:`load_sweep`, :func:`expand`
and :func:`plan`. Parameter and FLOP counts come from :func:`scaling.training.model.model_counts`, so a
plan's N, D and C are the trainer's.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaling.config.run import (
    DataConfig,
    ModelConfig,
    RunSpec,
    TrainConfig,
    load_yaml,
    validate,
)
from scaling.config.sweep import Shape, SweepConfig
from scaling.errors import ConfigError

__all__ = ["load_sweep", "expand", "plan", "model_vocab_size", "run_size", "tune_studies",
           "target_spec", "run_file", "target_command", "PlannedBranch", "ladder_branches",
           "trained_tokens"]


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_sweep(path: str | Path, *, quick: bool = False) -> SweepConfig:
    """Read and validate a sweep file; with ``quick``, merge its ``quick:`` section over it.

    The plan is expanded once here, so budgets that cannot work (an isoflop budget too small
    for a shape, duplicate runs, a WSD branch without a stable phase) fail at load time,
    before anything is enqueued.

    Raises
    ------
    ConfigError
        With one line naming the file, the key and the fix.

    Examples
    --------
    >>> config = load_sweep("sweeps/demo.yaml")  # doctest: +SKIP
    >>> len(expand(config))  # doctest: +SKIP
    7
    """
    raw = load_yaml(path)
    config = validate(SweepConfig, raw, path).with_source(path)
    if quick:
        if not config.quick:
            raise ConfigError(f"{path}: no quick section; add 'quick:' with toy overrides")
        merged = _deep_merge({k: v for k, v in raw.items() if k != "quick"}, config.quick)
        config = validate(SweepConfig, merged, f"{path} (quick)").with_source(f"{path} (quick)")
    specs = expand(config, pin=False)  # the shape of the plan only: the corpus may live elsewhere
    ladder_branches(config, specs)  # a budget that cannot branch fails here too
    return config


def pin_corpus(data: DataConfig) -> DataConfig:
    """The data config with its corpus's content hash (:func:`scaling.training.data.pin_corpus`)."""
    from scaling.training.data import pin_corpus as pin

    return pin(data)


def model_vocab_size(model: ModelConfig, data: DataConfig) -> int:
    """The vocabulary the model will have: ``model.vocab_size`` when set, else the data's
    (:func:`scaling.training.data.vocab_size`, the source the trainer uses too)."""
    from scaling.training.data import vocab_size

    return model.vocab_size if model.vocab_size is not None else vocab_size(data)


def _counts(model: ModelConfig, vocab_size: int) -> dict[str, float]:
    from scaling.training.model import GPTConfig, model_counts

    return model_counts(GPTConfig.from_model_config(model, vocab_size))


def _label(model: ModelConfig) -> str:
    return f"d{model.d_model}-L{model.n_layer}"


def _short(number: float) -> str:
    """Three significant digits, exponent without '+' or zeros: 1.5e12, 2e6, 500."""
    text = f"{number:.3g}"
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


def _shape_spec(config: SweepConfig, shape: Shape, **train: Any) -> tuple[ModelConfig, TrainConfig]:
    model = ModelConfig.model_validate({**config.model.model_dump(), **shape.model_overrides()})
    merged = {**config.train.model_dump(), **shape.train_overrides(), **train}
    return model, TrainConfig.model_validate(merged)


def _budget(config, section: str, shape: Shape, tokens: int | None, multiple: float | None):
    """(tokens, label) of a budget given as a token count or a multiple of N."""
    model, _ = _shape_spec(config, shape)
    if tokens is not None:
        return tokens, f"{_short(tokens)}tok"
    N = _counts(model, model_vocab_size(model, config.data))["params"]
    return max(1, round(multiple * N)), f"{multiple:g}xN"


def expand(config: SweepConfig, *, pin: bool = True) -> list[RunSpec]:
    """Every RunSpec a sweep fixes in advance: ladder, isoflop and target runs.

    Tune trials are not listed: their learning rates are sampled while the sweep runs. With
    ``pin`` (the default), each spec carries the corpus's content hash in ``data.content_hash``
    and so in its run key (:func:`pin_corpus`): the corpus must be readable here. Without it the
    plan's shape is checked without touching the data.

    Raises
    ------
    ConfigError
        If an isoflop budget gives a shape fewer than ``isoflop.min_steps`` steps, or two runs
        share a name or a run key.
    DataError
        With ``pin``, if the corpus is missing or unreadable.
    """
    source = config.source
    specs: list[tuple[str, RunSpec]] = []
    data = pin_corpus(config.data) if pin else config.data  # run keys name the corpus's content

    def add(where: str, shape: Shape, role: str, name: str, tokens: int, **train: Any) -> None:
        model, train = _shape_spec(config, shape, tokens=tokens, **train)
        spec = RunSpec(sweep=config.name, name=name, role=role, model=model, data=data,
                       train=train, evals=config.evals)
        specs.append((where, spec))

    if config.ladder is not None:
        for index, shape in enumerate(config.ladder.shapes):
            label = _label(_shape_spec(config, shape)[0])
            budgets = [(None, m) for m in config.ladder.tokens_per_param]
            budgets += [(t, None) for t in config.ladder.tokens]
            budgets = [_budget(config, "ladder", shape, t, m) for t, m in budgets]
            shared = _branch_warmup(config, shape, [tokens for tokens, _ in budgets])
            seeds = config.ladder.seeds or [None]
            for (tokens, suffix), seed in itertools.product(budgets, seeds):
                extra = {} if shared is None else {"warmup_steps": shared}
                if seed is None:
                    add(f"ladder.shapes.{index}", shape, "proxy", f"{label}-{suffix}", tokens, **extra)
                else:
                    add(f"ladder.shapes.{index}", shape, "proxy", f"{label}-{suffix}-s{seed}",
                        tokens, seed=seed, **extra)
    if config.isoflop is not None:
        for index, shape in enumerate(config.isoflop.shapes):
            model, train = _shape_spec(config, shape)
            per_token = _counts(model, model_vocab_size(model, config.data))["flops_per_token_exact"]
            for budget in config.isoflop.budgets:
                tokens = round(budget / per_token)
                steps = tokens // train.batch_tokens
                if steps < config.isoflop.min_steps:
                    needed = config.isoflop.min_steps * train.batch_tokens * per_token
                    raise ConfigError(
                        f"{source}: isoflop.budgets = {budget:.3g} is too small for "
                        f"isoflop.shapes.{index} ({_label(model)}): {steps} steps of "
                        f"{train.batch_tokens} tokens < min_steps = {config.isoflop.min_steps}; "
                        f"raise the budget to at least {needed:.3g} or drop the shape"
                    )
                add(f"isoflop.shapes.{index}", shape, "proxy", f"{_label(model)}-C{_short(budget)}", tokens)
    if config.target is not None:
        target = config.target
        shape = target.shape
        tokens, suffix = _budget(config, "target", shape, target.tokens, target.tokens_per_param)
        label = _label(_shape_spec(config, shape)[0])
        add("target.shape", shape, "target", f"target-{label}-{suffix}", tokens, **target.train)
        _check_processes(config, specs[-1][1])

    names: dict[str, str] = {}
    keys: dict[str, str] = {}
    for where, spec in specs:
        if spec.name in names:
            raise ConfigError(
                f"{source}: {where} duplicates run {spec.name} of {names[spec.name]}; "
                "remove one of them"
            )
        if spec.run_key in keys:
            raise ConfigError(
                f"{source}: {where} ({spec.name}) is the same run as {keys[spec.run_key]}; "
                "remove one of them"
            )
        names[spec.name] = where
        keys[spec.run_key] = spec.name
    return [spec for _, spec in specs]


def _branch_warmup(config: SweepConfig, shape: Shape, budgets: list[int]) -> int | None:
    """The warmup, in steps, every run of a branched ladder shape shares (its branches share
    the stable run's first steps): ``train.warmup_steps`` when set, else ``train.warmup`` of
    the shortest budget's steps. None for a ladder without branches."""
    if not config.ladder.branches:
        return None
    _, train = _shape_spec(config, shape)
    if train.warmup_steps is not None:
        return train.warmup_steps
    return int(round(train.warmup * (min(budgets) // train.batch_tokens)))


@dataclass(frozen=True)
class PlannedBranch:
    """A ladder run trained as a cooldown branch: ``spec`` shares its first ``step`` optimizer
    steps with ``parent`` (the longest run of its shape and seed), from whose checkpoint it
    resumes (:class:`scaling.training.loop.Branch`)."""

    spec: RunSpec
    parent: RunSpec
    step: int

    @property
    def cooldown_tokens(self) -> int:
        """The tokens the branch trains itself: its steps after the branch point."""
        return (self.spec.train.tokens // self.spec.train.batch_tokens - self.step) * self.spec.train.batch_tokens


def ladder_branches(config: SweepConfig, specs: Sequence[RunSpec] | None = None) -> dict[str, PlannedBranch]:
    """Branch run key -> :class:`PlannedBranch` of a ladder with ``branches: true``; empty
    otherwise. ``specs`` is the plan (:func:`expand`) when already at hand.

    Each shape and seed trains its longest budget as the stable run; every shorter budget is
    a WSD run whose stable phase ends where its decay starts, ``T - round(decay_fraction·T)``
    of its ``T`` steps, and up to there its learning rate is the stable run's, step for step
    (the same warmup, then the peak until the stable run's own decay, checked here). Data order depends only on (seed, step) (:func:`scaling.training.data.sample_batch`),
    so resuming the stable run's state there trains exactly the run a fresh start would.

    Raises
    ------
    ConfigError
        If a budget's decay would start before its warmup ends, or two budgets of a shape
        fall on the same step count.
    """
    from scaling.training.loop import warmup_steps

    if config.ladder is None or not config.ladder.branches:
        return {}
    specs = [s for s in (expand(config) if specs is None else specs) if s.role == "proxy"]
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        group = (spec.model.model_dump_json(), spec.train.batch_tokens, spec.train.lr, spec.train.seed)
        groups.setdefault(group, []).append(spec)
    branches: dict[str, PlannedBranch] = {}
    for members in groups.values():
        members.sort(key=lambda spec: spec.train.tokens)
        parent = members[-1]
        parent_steps = parent.train.tokens // parent.train.batch_tokens
        for spec in members[:-1]:
            train = spec.train
            steps = train.tokens // train.batch_tokens
            step = steps - max(1, round(train.decay_fraction * steps))
            warmup = warmup_steps(train, steps)
            if step <= warmup or steps == parent_steps:
                problem = (f"its decay starts at step {step}, inside the warmup of {warmup} steps"
                           if step <= warmup else f"{steps} steps, as many as {parent.name}")
                raise ConfigError(
                    f"{config.source}: ladder run {spec.name} cannot branch from {parent.name}: "
                    f"{problem}; drop the budget or lower train.warmup"
                )
            # Both warm up for the same steps and hold the peak until their decay starts, so
            # their rates agree before the branch point unless the longer run decays earlier.
            if parent_steps - max(1, round(train.decay_fraction * parent_steps)) < step:
                raise ConfigError(
                    f"{config.source}: ladder run {spec.name} cannot branch from {parent.name}: "
                    f"their learning rates differ before step {step}; space the budgets further apart"
                )
            branches[spec.run_key] = PlannedBranch(spec=spec, parent=parent, step=step)
    return branches


def trained_tokens(spec: RunSpec, branches: dict[str, PlannedBranch]) -> int:
    """The tokens ``spec`` trains itself: all of its budget, or a branch's cooldown only."""
    branch = branches.get(spec.run_key)
    return branch.cooldown_tokens if branch is not None else spec.train.tokens


def _check_processes(config: SweepConfig, spec: RunSpec) -> None:
    """Refuse a target that its processes cannot share: a global batch that does not split
    into whole sequences per process, or one GPU named for all of them."""
    target = config.target
    processes, context = target.processes, spec.model.context
    if processes == 1:
        return
    where = f"{config.source}: target.nproc_per_node = {target.nproc_per_node}"
    if target.nnodes > 1:
        where += f" on target.nnodes = {target.nnodes}"
    sequences, rest = divmod(spec.train.batch_tokens, context)
    if not rest and sequences % processes:
        raise ConfigError(
            f"{where}: the target's train.batch_tokens = {spec.train.batch_tokens} is {sequences} "
            f"sequences of model.context = {context}, which do not split over {processes} "
            f"processes; use a batch_tokens multiple of {context * processes} or fewer processes"
        )
    if spec.train.device.startswith("cuda:"):
        raise ConfigError(
            f"{where}: train.device = {spec.train.device!r} puts every process on one GPU; use "
            "'cuda' or 'auto' (each process takes its local rank's GPU)"
        )


def target_spec(config: SweepConfig) -> RunSpec:
    """The sweep's target RunSpec as the plan fixes it (corpus hash pinned, :func:`expand`).

    Raises
    ------
    ConfigError
        If the sweep has no ``target`` section.
    """
    if config.target is None:
        raise ConfigError(
            f"{config.source}: no target section; add 'target:' with the shape and budget of "
            "the large run (e.g. target: {shape: {d_model: 512}, tokens_per_param: 20})"
        )
    return next(spec for spec in expand(config) if spec.role == "target")


def run_file(spec: RunSpec, header: Sequence[str] = ()) -> str:
    """``spec`` as the YAML run file ``scaling train`` reads
    (:func:`scaling.config.run.load_run_spec`), every field written out so that it loads to the
    same run key, after the comment lines ``header``."""
    import yaml

    comments = "".join(f"# {line}".rstrip() + "\n" for line in header)
    return comments + yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def target_command(config: SweepConfig, path: str, *, tracking_uri: str) -> str:
    """The command that trains the target's run file ``path`` as the sweep would: on
    ``nnodes`` x ``nproc_per_node`` processes (torchrun), logged to the sweep's experiment
    (rank 0), with the sweep's checkpoint folder of the run (a killed run resumes from it)."""
    import shlex

    target = config.target
    spec = target_spec(config)
    checkpoints = str(Path(config.checkpoint_root) / config.name / spec.run_key)
    if target.nnodes > 1:
        launcher = (f"torchrun --nnodes {target.nnodes} --nproc_per_node {target.nproc_per_node} "
                    "--rdzv-backend c10d --rdzv-endpoint HOST:29400 -m scaling")  # fmt: skip
    elif target.nproc_per_node > 1:
        launcher = f"torchrun --standalone --nproc_per_node {target.nproc_per_node} -m scaling"
    else:
        launcher = "scaling"
    arguments = ["train", path, "--experiment", config.name, "--tracking-uri", tracking_uri,
                 "--checkpoint-dir", checkpoints]  # fmt: skip
    return f"{launcher} {shlex.join(arguments)}"


def _tune_base(config: SweepConfig, shape: Shape) -> RunSpec:
    tune = config.tune
    tokens, _ = _budget(config, "tune", shape, tune.tokens, tune.tokens_per_param)
    model, train = _shape_spec(config, shape, tokens=tokens)
    return RunSpec(sweep=config.name, name=_label(model), model=model,
                   data=pin_corpus(config.data), train=train, evals=config.evals)


def tune_studies(config: SweepConfig) -> dict[str, RunSpec]:
    """Study name -> base RunSpec of each tuned shape."""
    if config.tune is None:
        return {}
    bases = [_tune_base(config, shape) for shape in config.tune.shapes]
    return {f"{config.name}/tune/{base.name}": base for base in bases}


def run_size(spec: RunSpec) -> dict[str, float]:
    counts = _counts(spec.model, model_vocab_size(spec.model, spec.data))
    tokens = spec.train.tokens
    return {
        "params": counts["params"],
        "tokens": tokens,
        "flops": 6 * counts["params"] * tokens,
        "flops_exact": counts["flops_per_token_exact"] * tokens,
    }


def plan(config: SweepConfig) -> list[dict[str, Any]]:
    """One row per planned run (tune: one row per shape with its trial count): what
    ``sweep run --dry-run`` prints. Columns: name, role, runs, processes (that train each
    run: the target's ``nnodes`` x ``nproc_per_node``, else 1), shape, N, D, C, C_exact,
    batch_tokens, lr, branch_of (the stable run a WSD branch resumes from, else empty) and
    C_trained (the FLOPs 6·N·tokens the run trains itself: a branch's cooldown only, so the
    column's sum is the sweep's compute)."""
    rows = []
    specs = expand(config)
    branches = ladder_branches(config, specs)
    entries = [(spec, 1, spec.train.lr) for spec in specs]
    if config.tune is not None:
        low, high = config.tune.lr
        entries += [(base, config.tune.trials, f"{low:g}..{high:g}") for base in tune_studies(config).values()]
    for spec, runs, lr in entries:
        size = run_size(spec)
        rows.append(
            {
                "name": spec.name if runs == 1 else f"{spec.name} (tune)",
                "role": spec.role,
                "runs": runs,
                "processes": config.target.processes if spec.role == "target" else 1,
                "shape": f"L{spec.model.n_layer} d{spec.model.d_model} h{spec.model.n_head}",
                "N": size["params"],
                "D": size["tokens"],
                "C": float(size["flops"] * runs),
                "C_exact": float(size["flops_exact"] * runs),
                "batch_tokens": spec.train.batch_tokens,
                "lr": lr,
                "branch_of": branches[spec.run_key].parent.name if spec.run_key in branches else "",
                "C_trained": float(6 * size["params"] * trained_tokens(spec, branches) * runs),
            }
        )
    return rows
