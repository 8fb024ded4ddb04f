"""One training run end to end: model, data, optimizer, schedule, eval, checkpoints.

:func:`train` takes a :class:`~scaling.config.run.RunSpec` and returns a :class:`RunResult`.
It knows nothing about sweeps or tracking: metrics go to the ``log`` callback, progress to
the ``progress`` callback. The same call trains with DDP when started by ``torchrun``
(``WORLD_SIZE`` > 1): gloo on CPU, nccl on GPU, the global batch split evenly over ranks.

Every proxy follows one recipe (GPT-3, appendix B): AdamW with betas (0.9, 0.95) and weight
decay on matrices only, linear warmup then cosine decay to ``min_lr_ratio`` of the peak over
the run's own token budget, gradient clipping at norm 1.0. Under ``model.parametrization:
mup`` the hidden matrices get their own learning rate, decay and epsilon (:func:`build_optimizer`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scaling.errors import ConfigError, DivergedError
from scaling.training.hardware import (
    Distributed,
    device_peak_flops,
    pick_device,
    resolve_precision,
    set_threads,
)

if TYPE_CHECKING:
    import torch

    from scaling.config.run import RunSpec, TrainConfig
    from scaling.training.data import PreparedData
    from scaling.training.model import GPT, GPTConfig

__all__ = ["RunResult", "Branch", "train", "load_model", "lr_multiplier", "lr_schedule", "warmup_steps",
           "build_optimizer"]

LogFn = Callable[[int, dict[str, float]], None]
ProgressFn = Callable[[int, int, dict[str, float]], None]

CHECKPOINT = "last.pt"
FINAL = "final.pt"

@dataclass
class RunResult:
    """What one run achieved.

    Attributes
    ----------
    status : {'finished', 'diverged'}
    failure : str or None
        Why a diverged run was stopped.
    final_eval_loss : float
        Loss on the fixed eval tokens after the last step, nats per token (NaN if diverged).
    final_bpb : float
        The same in bits per byte of raw text.
    params, params_total : int
        Kaplan's N (no embeddings) and all parameters.
    tokens : int
        Tokens actually trained on: steps × batch_tokens (D).
    flops, flops_exact : float
        6·N·D and the exact count (matmuls, head, attention) × D.
    steps : int
    wall_s : float
        Seconds this call took (a resumed run counts only its own part).
    tokens_per_s : float
        Training tokens per second over the steps this call trained.
    resumed_from_step : int
        0 for a fresh run, else the checkpoint's step.
    capabilities : dict
        ``task/<name>/<metric>`` scores of the final model (:func:`scaling.evals.scoring.evaluate`);
        empty when the run lists no ``evals.tasks``.
    evals_s : float
        Seconds spent scoring the tasks (included in ``wall_s``).
    checkpoint_s : float
        Seconds spent writing checkpoints (``last.pt``, a branch's, ``final.pt``; included
        in ``wall_s``).
    conventions : dict
        The counts under the other conventions (:func:`scaling.training.model.model_counts`):
        ``params_kaplan``, ``deepseek_m`` (FLOPs per token), and ``flops_palm``,
        ``flops_chinchilla`` (per token × D).
    """

    status: str
    failure: str | None
    final_eval_loss: float
    final_bpb: float
    params: int
    params_total: int
    tokens: int
    flops: float
    flops_exact: float
    steps: int
    wall_s: float
    tokens_per_s: float
    resumed_from_step: int = 0
    capabilities: dict[str, float] = field(default_factory=dict)
    evals_s: float = 0.0
    conventions: dict[str, float] = field(default_factory=dict)
    checkpoint_s: float = 0.0

    def summary(self) -> dict[str, float]:
        """The summary metrics logged once at the end (the keys of docs/architecture.md, "MLflow keys"), as plain floats.

        Raises
        ------
        DivergedError
            For a diverged run, which has no result to report.
        """
        if self.status != "finished":
            raise DivergedError(f"run diverged ({self.failure}); it has no result to report")
        return {
            "final/eval_loss": float(self.final_eval_loss),
            "final/bpb": float(self.final_bpb),
            "size/params": float(self.params),
            "size/params_total": float(self.params_total),
            "size/tokens": float(self.tokens),
            "size/flops": float(self.flops),
            "size/flops_exact": float(self.flops_exact),
            **{f"size/{name}": float(value) for name, value in self.conventions.items()},
            **self.capabilities,
            **({"perf/evals_s": float(self.evals_s)} if self.capabilities else {}),
        }

    def timing(self) -> dict[str, float]:
        """Where this call's time went, logged at its end whether it finished or diverged."""
        return {
            "perf/wall_s": float(self.wall_s),
            "perf/mean_tokens_per_s": float(self.tokens_per_s),
            "perf/resumed_from_step": float(self.resumed_from_step),
            "perf/checkpoint_s": float(self.checkpoint_s),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Branch:
    """A run that shares this run's first ``step`` optimizer steps: a cooldown branch of a WSD
    stable run (docs/architecture.md, "WSD ladders: branches"). After step ``step`` the run
    writes its state as the branch's checkpoint (``checkpoint_dir/last.pt`` under the branch's
    run key) unless the branch already has one; the branch then resumes from it as from its
    own checkpoint, and trains only its cooldown."""

    step: int
    run_key: str
    checkpoint_dir: Path


# ----------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class _Plan:
    steps: int
    sequences: int  # global sequences per optimizer step
    per_rank: int  # sequences per rank per step
    micro: int  # sequences per forward pass
    accumulation: int  # forward passes per optimizer step and rank
    warmup_steps: int
    eval_every: int
    log_every: int
    decay_steps: int = 0  # the steps a 'wsd' schedule spends decaying


def _plan(train: TrainConfig, context: int, world: int) -> _Plan:
    """Turn token counts into steps and sequences; every mismatch is a one-line ConfigError."""
    if train.batch_tokens % context:
        fit = max(1, round(train.batch_tokens / context)) * context
        raise ConfigError(
            f"train.batch_tokens = {train.batch_tokens} is not a multiple of model.context = "
            f"{context}; use {fit}"
        )
    sequences = train.batch_tokens // context
    if sequences % world:
        raise ConfigError(
            f"train.batch_tokens = {train.batch_tokens} is {sequences} sequences, which do not "
            f"split over {world} processes; use a multiple of {context * world}"
        )
    per_rank = sequences // world
    micro = per_rank
    if train.micro_batch_tokens is not None:
        if train.micro_batch_tokens % context or (per_rank * context) % train.micro_batch_tokens:
            raise ConfigError(
                f"train.micro_batch_tokens = {train.micro_batch_tokens} must be a multiple of "
                f"model.context = {context} that divides the {per_rank * context} tokens each "
                f"process handles per step; use e.g. {context}"
            )
        micro = train.micro_batch_tokens // context
    steps = train.tokens // train.batch_tokens
    if steps < 1:
        raise ConfigError(
            f"train.tokens = {train.tokens} is less than one batch of train.batch_tokens = "
            f"{train.batch_tokens}; raise train.tokens or lower train.batch_tokens"
        )
    return _Plan(
        steps=steps,
        sequences=sequences,
        per_rank=per_rank,
        micro=micro,
        accumulation=per_rank // micro,
        warmup_steps=warmup_steps(train, steps),
        eval_every=train.eval_every or max(1, steps // 10),
        log_every=train.log_every or max(1, steps // 100),
        decay_steps=max(1, round(train.decay_fraction * steps)) if train.schedule == "wsd" else 0,
    )


def warmup_steps(train: TrainConfig, steps: int) -> int:
    """The optimizer steps a run of ``steps`` steps warms up for: ``train.warmup_steps`` when
    set (never more than the run), else ``train.warmup`` of its steps."""
    if train.warmup_steps is not None:
        return min(train.warmup_steps, steps)
    return int(round(train.warmup * steps))


def lr_multiplier(step: int, steps: int, warmup_steps: int, min_ratio: float,
                  schedule: str = "cosine", decay_steps: int = 0, decay_shape: str = "1-sqrt") -> float:
    """Learning-rate factor of optimizer step ``step`` (0-based): linear warmup to 1, then

    - ``cosine``: cosine decay reaching ``min_ratio`` at the last step;
    - ``wsd`` (warmup-stable-decay, Hägele et al. 2024): 1 until the last ``decay_steps``
      steps, which decay to ``min_ratio`` at the last step, linearly, along a half cosine, or
      as 1 - sqrt(progress) (``decay_shape``);
    - ``constant``: 1 to the end.

    Examples
    --------
    >>> [round(lr_multiplier(s, 10, 2, 0.1), 3) for s in (0, 1, 2, 9)]
    [0.5, 1.0, 1.0, 0.1]
    >>> [round(lr_multiplier(s, 10, 2, 0.0, "wsd", 4, "linear"), 2) for s in (1, 5, 6, 7, 9)]
    [1.0, 1.0, 0.75, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        decay_start = steps - decay_steps
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start + 1) / max(1, decay_steps))
        if decay_shape == "linear":
            shape = 1.0 - progress
        elif decay_shape == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - math.sqrt(progress)
        return min_ratio + (1.0 - min_ratio) * shape
    progress = (step - warmup_steps) / max(1, steps - warmup_steps - 1)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_schedule(train: TrainConfig) -> np.ndarray:
    """The learning-rate factor of every optimizer step of a run with these settings (what
    ``train/lr`` logs, divided by ``train.lr``): the schedule a curve law reads
    (:mod:`scaling.training.curves`).

    Examples
    --------
    >>> from scaling.config.run import TrainConfig
    >>> lr_schedule(TrainConfig(tokens=100, batch_tokens=10, warmup=0.2, schedule="wsd",
    ...                         decay_fraction=0.4, decay_shape="linear", min_lr_ratio=0.0)).tolist()
    [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    steps = train.tokens // train.batch_tokens
    warmup = warmup_steps(train, steps)
    decay = max(1, round(train.decay_fraction * steps)) if train.schedule == "wsd" else 0
    return np.array([
        lr_multiplier(step, steps, warmup, train.min_lr_ratio, train.schedule, decay,
                      train.decay_shape)
        for step in range(steps)
    ])  # fmt: skip


# Adam's epsilon (torch's default); muP scales it for the hidden matrices.
ADAM_EPS = 1e-8


def build_optimizer(model: GPT, train: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (GPT-3): biases and LayerNorm gains stay
    undecayed. Under 'mup' the hidden matrices form a third group whose learning rate,
    decay and epsilon follow :class:`scaling.training.model.MupScales` (Dey et al. 2023 and 2025);
    the first group always runs at ``train.lr``, which is what ``train/lr`` logs."""
    import torch

    hidden = {id(p) for p in model.hidden_matrices()} if model.config.parametrization == "mup" else set()
    matrices = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in hidden]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": matrices, "weight_decay": train.weight_decay},
        {"params": vectors, "weight_decay": 0.0},
    ]
    if hidden:
        scales = model.config.mup
        groups.append({
            "params": [p for p in model.parameters() if id(p) in hidden],
            "lr": train.lr * scales.hidden_lr,
            "weight_decay": train.weight_decay * scales.hidden_weight_decay,
            "eps": ADAM_EPS * scales.hidden_eps,
        })  # fmt: skip
    # The fused kernel updates every parameter in one pass: 6% faster steps at 0.1M-1M
    # parameters on CPU (benchmarks/train_throughput.py), and the usual choice on GPUs.
    return torch.optim.AdamW(
        groups, lr=train.lr, betas=(train.beta1, train.beta2), eps=ADAM_EPS,
        fused=device.type in ("cuda", "cpu"),
    )


# ----------------------------------------------------------------------------- checkpoints


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` so that a reader, on this machine or another one sharing
    the checkpoint root, sees the previous file or the new one whole, never a part: a
    temporary file named after this host and process (two machines can share a pid), flushed
    to disk, then renamed over ``path`` (``os.replace``); a failed write leaves no temporary."""
    import socket

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())  # on a network file system, the bytes before the name
        os.replace(temporary, path)  # a kill mid-save leaves the previous checkpoint intact
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_model(path: str | Path, device: str = "cpu") -> tuple[GPT, dict[str, Any]]:
    """Load a trained model saved by :func:`train` as ``final.pt`` (or a ``last.pt``).

    Returns
    -------
    (GPT, dict)
        The model in eval mode, and the checkpoint's metadata (``spec``, ``config``,
        ``eval_loss`` when present).
    """
    import torch

    from scaling.training.model import GPTConfig, build_model

    payload = torch.load(path, map_location=device, weights_only=True)
    model = build_model(GPTConfig(**payload["config"]))
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    return model, {key: value for key, value in payload.items() if key != "model"}


# ----------------------------------------------------------------------------- the run


def train(
    spec: RunSpec,
    log: LogFn | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
    branches: Sequence[Branch] = (),
    on_branch: Callable[[Branch], None] | None = None,
) -> RunResult:
    """Train one model as ``spec`` says and score it on the fixed eval tokens.

    Parameters
    ----------
    spec : RunSpec
        Model, data and training configuration.
    log : callable, optional
        ``log(step, metrics)`` receives ``train/loss``, ``train/lr``, ``train/tokens``,
        ``perf/tokens_per_s``, ``perf/flops_per_s``, ``perf/mfu`` every ``train.log_every``
        steps and ``eval/loss``, ``eval/bpb`` at each evaluation (rank 0 only under DDP);
        a resumed run first gets ``perf/resume_step`` (the step it resumed from, at that step),
        so every resume of a run that is killed again stays on record.
    checkpoint_dir : path, optional
        Save ``last.pt`` there every ``train.checkpoint_every`` steps and resume from it if
        present; save the final weights and model config as ``final.pt``.
    progress : callable, optional
        ``progress(step, steps, metrics)`` at each logged step, for progress bars.
    branches : sequence of Branch, optional
        Runs that share this run's first steps: after each one's ``step`` its checkpoint is
        written (rank 0), then ``on_branch(branch)`` is called (a sweep worker enqueues the
        branch there).

    Returns
    -------
    RunResult
        ``status`` is 'diverged' (with ``failure``) if the loss became NaN/inf or exceeded
        ``train.divergence_factor`` times its running minimum.

    Raises
    ------
    ConfigError
        If the batch does not fit the context or the processes, the budget is less than one
        batch, the vocabulary is too small, or the checkpoint belongs to another run.
    DataError
        If the corpus cannot be used (see :func:`scaling.training.data.prepare_data`).
    """
    started = time.perf_counter()
    run = _setup(spec, log, progress, checkpoint_dir)
    run.branches, run.on_branch = tuple(branches), on_branch
    _restore(run)
    if run.start_step:
        _emit(run, run.start_step, {"perf/resume_step": float(run.start_step)})
    _distribute(run)
    _prepare_evals(run)
    train_start = time.perf_counter()
    run.model.train()
    try:
        status, failure, trained_steps = _train_steps(run)
        train_seconds = time.perf_counter() - train_start
        final_loss, capabilities, evals_s = math.nan, {}, 0.0
        if status == "finished":
            final_loss, capabilities, evals_s = _finish(run)
    finally:
        run.dist.stop()
    return _result(run, status, failure, final_loss, trained_steps, train_seconds,
                   capabilities, evals_s, started)


@dataclass
class _Run:
    """What one call of :func:`train` works with. ``start_step``, ``running_min`` and
    ``last_eval`` are the run's progress (what a checkpoint restores); the fields after them
    are filled once the model is distributed (:func:`_distribute`, :func:`_prepare_evals`)."""

    spec: RunSpec
    log: LogFn | None
    progress: ProgressFn | None
    checkpoint_dir: Path | None
    dist: Distributed
    device: torch.device
    data: PreparedData
    config: GPTConfig
    plan: _Plan
    counts: dict[str, int]
    precision: str
    autocast: Callable[[], Any]
    model: GPT
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    start_step: int = 0
    running_min: float = math.inf
    last_eval: dict[str, Any] | None = None
    trained: Any = None  # the model, or its DDP wrapper
    forward: Any = None  # ``trained``, compiled if asked for
    score_tasks: Callable[[], dict[str, float]] = dict
    eval_batches: list[np.ndarray] = field(default_factory=list)
    peak: float = math.nan
    branches: tuple[Branch, ...] = ()
    on_branch: Callable[[Branch], None] | None = None
    checkpoint_s: float = 0.0  # seconds this call spent writing checkpoints

    @property
    def cfg(self) -> TrainConfig:
        return self.spec.train

    @property
    def checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / CHECKPOINT if self.checkpoint_dir is not None else None


def _setup(spec: RunSpec, log: LogFn | None, progress: ProgressFn | None,
           checkpoint_dir: str | Path | None) -> _Run:
    """Device, data, model config, step plan and precision; then the seeded model, its
    optimizer and learning-rate schedule."""
    import torch

    from scaling.training.data import prepare_data
    from scaling.training.model import GPTConfig, build_model, model_counts

    cfg = spec.train
    dist = Distributed.from_env()
    device = pick_device(cfg.device, dist)
    set_threads(dist)
    data = prepare_data(spec.data)
    if spec.data.content_hash is None:  # a run outside a sweep: its key names its data too
        spec = spec.model_copy(
            update={"data": spec.data.model_copy(update={"content_hash": data.corpus_hash})})
    config = GPTConfig.from_model_config(spec.model, data.vocab_size)
    if config.vocab_size < data.vocab_size:
        raise ConfigError(
            f"model.vocab_size = {config.vocab_size} is smaller than the data's vocabulary of "
            f"{data.vocab_size}; leave model.vocab_size unset to take the tokenizer's"
        )
    plan = _plan(cfg, config.context, dist.world)
    counts = model_counts(config)
    precision, autocast = _precision(cfg, device, counts["params"])

    torch.manual_seed(cfg.seed)
    model = build_model(config).to(device)
    optimizer = build_optimizer(model, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(step, plan.steps, plan.warmup_steps, cfg.min_lr_ratio,
                                   cfg.schedule, plan.decay_steps, cfg.decay_shape),
    )
    return _Run(
        spec=spec, log=log, progress=progress,
        checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
        dist=dist, device=device, data=data, config=config, plan=plan, counts=counts,
        precision=precision, autocast=autocast, model=model, optimizer=optimizer,
        scheduler=scheduler,
    )


def _precision(cfg: TrainConfig, device: torch.device,
               params: int) -> tuple[str, Callable[[], Any]]:
    """The run's precision and the context manager factory its forward passes run under;
    on CUDA, fp32 matmuls may use TF32."""
    import torch

    precision = resolve_precision(cfg.precision, device, params)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if precision == "bf16"
        else contextlib.nullcontext
    )
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return precision, autocast


def _restore(run: _Run) -> None:
    """Resume from ``last.pt`` when the checkpoint directory holds one: weights, optimizer,
    schedule, random state and progress."""
    import torch

    path = run.checkpoint_path
    if path is None or not path.is_file():
        return
    state = torch.load(path, map_location=run.device, weights_only=True)
    if state["run_key"] != run.spec.run_key:
        raise ConfigError(
            f"{path} belongs to run {state['run_key']}, not {run.spec.run_key}; "
            "use another checkpoint directory or delete it"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    # The next step's learning rate from this run's own schedule, as the scheduler computes it:
    # a branch resumes from its stable run's state, whose next rate is still the stable one.
    for group, base, multiplier in zip(run.optimizer.param_groups, run.scheduler.base_lrs,
                                       run.scheduler.lr_lambdas, strict=True):
        group["lr"] = base * multiplier(run.scheduler.last_epoch)
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if run.device.type == "cuda" and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), run.device)
    run.start_step, run.running_min, run.last_eval = (
        state["step"], state["running_min"], state["last_eval"]
    )


def _distribute(run: _Run) -> None:
    """Join the process group, wrap the model in DDP when there are several processes and
    compile the forward pass if asked to."""
    import torch

    run.dist.start(run.device)
    run.trained = run.model
    if run.dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        run.trained = DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None
        )
    run.forward = torch.compile(run.trained) if run.cfg.compile else run.trained


def _prepare_evals(run: _Run) -> None:
    """The capability tasks, this rank's eval batches and the peak FLOP/s that MFU divides by."""
    from scaling.training.data import eval_sequences

    run.score_tasks = _task_scorer(run.spec, run.data, run.config.context, run.model,
                                   run.device, run.autocast)
    run.eval_batches = _eval_batches(
        eval_sequences(run.data.eval, run.config.context, run.spec.data.eval_tokens),
        run.dist, run.plan.micro,
    )
    run.peak = device_peak_flops(run.device, run.precision) * run.dist.world


def _train_steps(run: _Run) -> tuple[str, str | None, int]:
    """The optimizer steps from ``run.start_step`` on, with logging, evaluation and
    checkpoints. Returns (status, failure, steps trained)."""
    plan, cfg = run.plan, run.cfg
    interval_start, interval_tokens = time.perf_counter(), 0
    for step in range(run.start_step, plan.steps):
        loss_sum, lr = _step(run, step)
        done = step + 1
        interval_tokens += cfg.batch_tokens

        if done % plan.log_every == 0 or done == plan.steps:
            # The only host sync of an ordinary step: one scalar every log_every steps.
            train_loss = float(run.dist.mean(loss_sum / plan.accumulation))
            failure = _check_divergence(run, train_loss, done)
            if failure is not None:
                return "diverged", failure, done
            _log_train(run, done, train_loss, lr, interval_start, interval_tokens)
            interval_start, interval_tokens = time.perf_counter(), 0

        if done % plan.eval_every == 0 or done == plan.steps:
            failure = _evaluate_step(run, done)
            if failure is not None:
                return "diverged", failure, done
            interval_start = time.perf_counter()  # evaluation is not training throughput
        if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == plan.steps):
            _save(run, done)
        for branch in run.branches:
            if branch.step == done:
                _save_branch(run, branch)
    return "finished", None, plan.steps


def _step(run: _Run, step: int) -> tuple[torch.Tensor, float]:
    """One optimizer step: this rank's share of the global batch of ``step`` in micro
    batches with the gradients accumulated, clipping, the update and the schedule. Returns
    the summed micro-batch losses (on the device: no host sync) and the step's learning rate."""
    import torch

    from scaling.training.data import sample_batch

    plan, cfg, dist = run.plan, run.cfg, run.dist
    batch = sample_batch(run.data.train, run.config.context, plan.sequences, cfg.seed, step)
    local = batch[dist.rank * plan.per_rank : (dist.rank + 1) * plan.per_rank]
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(plan.accumulation):
        x = torch.from_numpy(local[micro * plan.micro : (micro + 1) * plan.micro])
        x = x.to(run.device, non_blocking=True)
        last_micro = micro == plan.accumulation - 1
        # Gradients are all-reduced once per optimizer step, on the last micro batch.
        sync = contextlib.nullcontext() if last_micro or dist.world == 1 else run.trained.no_sync()
        with sync, run.autocast():
            _, loss = run.forward(x[:, :-1], x[:, 1:])
        (loss / plan.accumulation).backward()
        loss_sum += loss.detach()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip, foreach=True)
    lr = run.optimizer.param_groups[0]["lr"]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum, lr


def _check_divergence(run: _Run, train_loss: float, done: int) -> str | None:
    """Why the run diverged at step ``done``, or None (then the running minimum takes
    ``train_loss`` in)."""
    if not math.isfinite(train_loss):
        return f"train/loss = {train_loss} at step {done}"
    factor = run.cfg.divergence_factor
    if train_loss > factor * run.running_min:
        return (
            f"train/loss = {train_loss:.4g} at step {done} is more than "
            f"{factor:g}x its running minimum {run.running_min:.4g}"
        )
    run.running_min = min(run.running_min, train_loss)
    return None


def _log_train(run: _Run, done: int, train_loss: float, lr: float, interval_start: float,
               interval_tokens: int) -> None:
    """Training metrics of step ``done`` (throughput over the interval since
    ``interval_start``) to the log and progress callbacks."""
    import torch

    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    elapsed = time.perf_counter() - interval_start
    tokens_per_s = interval_tokens / elapsed
    flops_per_token = run.counts["flops_per_token_exact"]
    metrics = {
        "train/loss": train_loss,
        "train/lr": lr,
        "train/tokens": float(done * run.cfg.batch_tokens),
        "perf/tokens_per_s": tokens_per_s,
        "perf/flops_per_s": tokens_per_s * flops_per_token,
        "perf/mfu": tokens_per_s * flops_per_token / run.peak,
    }
    _emit(run, done, metrics)
    if run.progress is not None and run.dist.rank == 0:
        run.progress(done, run.plan.steps, metrics)


def _emit(run: _Run, step: int, metrics: dict[str, float]) -> None:
    if run.dist.rank == 0 and run.log is not None:
        run.log(step, metrics)


def _evaluate(run: _Run) -> float:
    """Mean loss per token on the fixed eval tokens, over all ranks."""
    import torch

    device = run.device
    run.model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (loss sum, tokens)
    with torch.no_grad(), run.autocast():
        for batch in run.eval_batches:
            x = torch.from_numpy(batch).to(device)
            _, loss = run.model(x[:, :-1], x[:, 1:])
            tokens = x[:, 1:].numel()
            total += torch.stack([loss.double() * tokens, torch.tensor(tokens, device=device,
                                                                      dtype=torch.float64)])
    run.model.train()
    total = run.dist.total(total)
    return float(total[0] / total[1])


def _evaluate_step(run: _Run, done: int) -> str | None:
    """The evaluation after step ``done``: logs it (and the tasks when ``evals.every_eval``);
    returns why the run diverged, or None."""
    eval_loss = _evaluate(run)
    if not math.isfinite(eval_loss):
        return f"eval/loss = {eval_loss} at step {done}"
    run.last_eval = {"step": done, "loss": eval_loss}
    _emit(run, done, _eval_metrics(eval_loss, run.data.bits_per_byte(eval_loss),
                                   done * run.cfg.batch_tokens))
    if run.spec.evals.every_eval and done < run.plan.steps and run.dist.rank == 0:
        _emit(run, done, run.score_tasks())
    return None


def _save(run: _Run, step: int, *, path: Path | None = None, run_key: str | None = None) -> None:
    """Checkpoint the run after ``step`` as ``last.pt`` (rank 0, atomically); all ranks wait.
    ``path`` and ``run_key`` write it as another run's checkpoint (a branch's)."""
    import torch

    path = path if path is not None else run.checkpoint_path
    started = time.perf_counter()
    if path is not None and run.dist.rank == 0:
        device = run.device
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
        _save_atomically({
            "run_key": run_key or run.spec.run_key, "step": step, "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "rng": rng, "running_min": run.running_min, "last_eval": run.last_eval,
        }, path)
    run.dist.barrier()
    if path is not None:  # no checkpoint directory: nothing written, nothing counted
        run.checkpoint_s += time.perf_counter() - started


def _save_branch(run: _Run, branch: Branch) -> None:
    """Write this run's state after ``branch.step`` as the branch's checkpoint, unless the
    branch has one already (it may be training from it, or be further on), then tell
    ``on_branch``. The branch's evaluations are its own: ``last_eval`` is not carried over."""
    path = Path(branch.checkpoint_dir) / CHECKPOINT
    if not path.is_file():
        last_eval, run.last_eval = run.last_eval, None
        try:
            _save(run, branch.step, path=path, run_key=branch.run_key)
        finally:
            run.last_eval = last_eval
    if run.on_branch is not None and run.dist.rank == 0:
        run.on_branch(branch)


def _finish(run: _Run) -> tuple[float, dict[str, float], float]:
    """After the last step of a finished run: the final evaluation (if a resumed checkpoint
    lacks it), the capability scores and ``final.pt``. Returns (final eval loss, scores,
    seconds spent scoring)."""
    plan = run.plan
    if run.last_eval is None or run.last_eval["step"] != plan.steps:
        # Only when resuming a checkpoint taken before the final evaluation completed.
        run.last_eval = {"step": plan.steps, "loss": _evaluate(run)}
        _emit(run, plan.steps, _eval_metrics(run.last_eval["loss"],
                                             run.data.bits_per_byte(run.last_eval["loss"]),
                                             plan.steps * run.cfg.batch_tokens))
    final_loss = run.last_eval["loss"]
    capabilities, evals_s = {}, 0.0
    if run.dist.rank == 0:
        scored = time.perf_counter()
        capabilities = run.score_tasks()
        evals_s = time.perf_counter() - scored
    if run.checkpoint_dir is not None and run.dist.rank == 0:
        data, started = run.data, time.perf_counter()
        _save_atomically({
            "model": run.model.state_dict(), "config": run.config.to_dict(),
            "spec": run.spec.model_dump(mode="json"), "eval_loss": final_loss,
            "data": {"corpus_hash": data.corpus_hash, "cache": str(data.path)},
        }, run.checkpoint_dir / FINAL)
        run.checkpoint_s += time.perf_counter() - started
    return final_loss, capabilities, evals_s


def _result(run: _Run, status: str, failure: str | None, final_loss: float,
            trained_steps: int, train_seconds: float, capabilities: dict[str, float],
            evals_s: float, started: float) -> RunResult:
    """The :class:`RunResult` of a run that trained ``trained_steps`` steps in all."""
    counts, batch_tokens = run.counts, run.cfg.batch_tokens
    tokens = trained_steps * batch_tokens
    new_tokens = (trained_steps - run.start_step) * batch_tokens
    return RunResult(
        status=status,
        failure=failure,
        final_eval_loss=final_loss,
        final_bpb=run.data.bits_per_byte(final_loss),
        params=counts["params"],
        params_total=counts["params_total"],
        tokens=tokens,
        flops=float(counts["flops_per_token"]) * tokens,
        flops_exact=float(counts["flops_per_token_exact"]) * tokens,
        steps=trained_steps,
        wall_s=time.perf_counter() - started,
        tokens_per_s=new_tokens / train_seconds if train_seconds > 0 and new_tokens else 0.0,
        resumed_from_step=run.start_step,
        capabilities=capabilities,
        evals_s=evals_s,
        checkpoint_s=run.checkpoint_s,
        conventions={
            "params_kaplan": float(counts["params_kaplan"]),
            "deepseek_m": float(counts["deepseek_m"]),
            "flops_palm": float(counts["flops_per_token_palm"]) * tokens,
            "flops_chinchilla": float(counts["flops_per_token_chinchilla"]) * tokens,
        },
    )


def _task_scorer(spec: RunSpec, data: Any, context: int, model: GPT, device: Any,
                 autocast: Any) -> Callable[[], dict[str, float]]:
    """``score()`` -> the run's capability scores now (empty when it lists no tasks). The
    tasks are built before training, so a bad task file fails the run before any step."""
    from scaling.evals.scoring import build_tasks, evaluate

    if not spec.evals.tasks:
        return dict
    tasks = build_tasks(spec.evals, data, context)
    return lambda: evaluate(model, tasks, data.tokenizer, spec.evals, device=device,
                            autocast=autocast)


def _eval_metrics(loss: float, bpb: float, tokens: int) -> dict[str, float]:
    # Tokens seen go with every evaluation, so a learning curve needs no other metric.
    metrics = {"eval/loss": loss, "train/tokens": float(tokens)}
    if math.isfinite(bpb):  # a pre-tokenised .bin corpus has no raw bytes to count
        metrics["eval/bpb"] = bpb
    return metrics


def _eval_batches(sequences: Any, dist: Distributed, batch: int) -> list[np.ndarray]:
    """This rank's share of the fixed eval sequences, stacked into batches of ``batch``."""
    mine = [seq for i, seq in enumerate(sequences) if i % dist.world == dist.rank]
    return [np.stack(mine[i : i + batch]) for i in range(0, len(mine), batch)]
