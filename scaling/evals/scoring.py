"""Capability suites run on a trained model: zero-, one- and few-shot prompts, exact match,
sampled pass rates, and multiple choice by log-likelihood.

A task is a list of items (:class:`~scaling.evals.tasks.Item`). A *completion* item has a prompt
and the expected answer; a *choice* item has a prompt, several choices and the index of the
correct one. Tasks come from JSONL files (one item per line, :func:`load_task`) or are built
from the held-out split of the run's corpus (``copy``, ``next_line``, ``closing``: see
:mod:`scaling.evals.tasks`); :func:`build_tasks` gathers those a run lists.

Scores per task (:func:`evaluate`, keys of :data:`METRICS`):

- ``accuracy``: completion items, exact match of the greedy continuation; choice items, the
  choice with the highest mean log-likelihood per token is the correct one. ``accuracy_se``
  is its binomial standard error, sqrt(p(1 - p)/n).
- ``pass_rate``: the mean per-item pass rate. A completion item draws ``k`` continuations at
  temperature 1; the pass rate is the share equal to the answer. A choice item's pass rate is
  the chance that a choice drawn from the model is correct: its length-normalised likelihood
  over those of all choices, computed exactly.
- ``neg_log_pass_rate``: GPT-4's −E[log pass_rate] over items. An item none of whose ``k``
  samples passed counts as pass rate 1/(2k), half the smallest rate ``k`` samples can show,
  so the metric is finite and at most log(2k).
- ``nll``: the mean over items of the correct answer's negative log-likelihood in nats per
  token, the intermediate of the two-step forecast (compute -> task loss -> accuracy).

One teacher-forced forward pass over prompt + answer scores a completion item entirely. A
continuation equals the answer only if every token equals the answer's given the answer's
prefix so far; once one token differs the continuation has failed, whatever follows. So the
greedy continuation passes if the answer's token is the argmax at every step, and each
sampled continuation follows the answer's path one token at a time with the model's own
probability of the answer's token, leaving it (and failing) at its first miss: these are
exactly the outcomes of generating the continuations, at the cost of scoring the answer once.

This module knows nothing about tracking: :func:`evaluate` returns plain floats keyed
``task/<name>/<metric>``, which the trainer passes on. torch is imported inside functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scaling.config.run import BUILTIN_TASKS
from scaling.errors import DataError
from scaling.evals.tasks import Item, Task, builtin_task
from scaling.textfiles import jsonl_records

if TYPE_CHECKING:
    import torch

    from scaling.config.run import EvalsConfig
    from scaling.training.data import PreparedData, Tokenizer
    from scaling.training.model import GPT

__all__ = [
    "BUILTIN_TASKS",
    "METRICS",
    "Item",
    "Task",
    "metric_key",
    "load_task",
    "builtin_task",
    "build_tasks",
    "prompt_tokens",
    "score_task",
    "evaluate",
]

METRICS = ("accuracy", "accuracy_se", "pass_rate", "neg_log_pass_rate", "nll", "items")
SHOT_SEPARATOR = "\n\n"  # between the examples of a few-shot prompt and the item
TASK_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a task name is part of MLflow metric names


def metric_key(task: str, metric: str) -> str:
    """The MLflow metric name of one task's metric (``task/copy/accuracy``).

    Examples
    --------
    >>> metric_key("copy", "neg_log_pass_rate")
    'task/copy/neg_log_pass_rate'
    """
    return f"task/{task}/{metric}"


# ----------------------------------------------------------------------------- task files


def _item_from_record(record: Any, where: str, number: int) -> Item:
    fix = (
        "write {\"prompt\": ..., \"answer\": ...} or {\"prompt\": ..., \"choices\": [...], "
        "\"label\": INDEX}"
    )
    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
        raise DataError(f"{where}: line {number} has no string 'prompt'; {fix}")
    if not record["prompt"]:
        raise DataError(f"{where}: line {number} has an empty 'prompt'; give the text to continue")
    if isinstance(record.get("answer"), str) and "choices" not in record:
        if not record["answer"]:
            raise DataError(f"{where}: line {number} has an empty 'answer'; give the expected text")
        return Item(record["prompt"], answer=record["answer"], line=number)
    choices, label = record.get("choices"), record.get("label")
    if "answer" in record or not isinstance(choices, list):
        raise DataError(f"{where}: line {number} needs either 'answer' or 'choices'; {fix}")
    if len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise DataError(
            f"{where}: line {number}: 'choices' must hold at least 2 non-empty strings; {fix}"
        )
    if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
        raise DataError(
            f"{where}: line {number}: 'label' = {label!r} is not an index of the "
            f"{len(choices)} choices; give 0 to {len(choices) - 1}"
        )
    return Item(record["prompt"], choices=tuple(choices), label=label, line=number)


def load_task(path: str | Path) -> Task:
    """Read a task from a JSONL file: one item per line, all of one kind.

    Each line is ``{"prompt": ..., "answer": ...}`` (a completion item) or ``{"prompt": ...,
    "choices": [...], "label": INDEX}`` (a choice item); blank lines are skipped. The task is
    named after the file (``evals/arith.jsonl`` -> ``arith``).

    Raises
    ------
    DataError
        If the file is missing or empty, a line is not JSON or not an item, or the file mixes
        completion and choice items; the message names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"evals.tasks: {path}: no such task file; give the path of a .jsonl file")
    name = path.stem
    if not TASK_NAME.match(name):
        raise DataError(
            f"evals.tasks: {path}: the task name {name!r} (the file name) may hold only letters, "
            "digits, '_', '-' and '.'; rename the file"
        )
    items = []
    for number, record in jsonl_records(path, "evals.tasks"):
        items.append(_item_from_record(record, str(path), number))
    if not items:
        raise DataError(f"{path}: no items; write one JSON object per line")
    kinds = {"completion" if item.answer is not None else "choice" for item in items}
    if len(kinds) > 1:
        first = next(i for i in items if (i.answer is None) != (items[0].answer is None))
        raise DataError(
            f"{path}: line {first.line} is a {'choice' if first.answer is None else 'completion'} "
            f"item but line {items[0].line} is not; put each kind in its own file"
        )
    return Task(name, kinds.pop(), tuple(items), str(path))


def _held_out_text(data: PreparedData, limit: int = 1 << 20) -> str:
    """The held-out split as text (its first ``limit`` tokens)."""
    return data.tokenizer.decode(np.asarray(data.eval[:limit]).tolist())


_TASKS: dict[tuple, list[Task]] = {}


def build_tasks(config: EvalsConfig, data: PreparedData, context: int) -> list[Task]:
    """The tasks ``config`` lists: built-ins from the held-out split, the rest from files.

    Built once per process for a given corpus, config and context (every run of a sweep is
    scored on the same items), and checked against the context and the shots asked for, so
    a run whose tasks cannot be scored fails before it trains.

    Raises
    ------
    ConfigError, DataError
        For an unknown task name, a missing or malformed task file, too little held-out text
        for ``n_items`` items, an item longer than the context or more shots than examples.
    """
    key = (data.corpus_hash, str(data.path), config.model_dump_json(), context)
    if key not in _TASKS:
        text = _held_out_text(data) if set(config.tasks) & set(BUILTIN_TASKS) else ""
        tasks = [
            builtin_task(name, text, context=context, n_items=config.n_items, seed=config.seed)
            if name in BUILTIN_TASKS or not name.endswith(".jsonl")
            else load_task(name)
            for name in config.tasks
        ]
        for task in tasks:
            prompt_tokens(task, data.tokenizer, context, config.shots, config.seed)
        _TASKS[key] = tasks
    return _TASKS[key]


# ----------------------------------------------------------------------------- prompts


def _shots(task: Task, index: int, shots: int, seed: int) -> list[Item]:
    """``shots`` other items of the task, drawn with a fixed seed for item ``index``."""
    if shots == 0:
        return []
    others = [i for i in range(len(task.items)) if i != index]
    rng = np.random.default_rng([seed, index])
    return [task.items[i] for i in rng.choice(others, size=shots, replace=False)]


def prompt_tokens(
    task: Task, tokenizer: Tokenizer, context: int, shots: int = 0, seed: int = 0
) -> list[tuple[list[int], list[list[int]]]]:
    """Token ids of every item: (prompt, [continuation, ...]) with one continuation per choice
    (one, the answer, for a completion item).

    A few-shot prompt is ``shots`` other items of the task, each written as its prompt and its
    correct continuation, then :data:`SHOT_SEPARATOR`, then the item's prompt. When they do not
    all fit the context, the oldest examples are dropped until they do.

    Raises
    ------
    DataError
        If ``shots`` needs more items than the task has, or an item alone (prompt and longest
        continuation) is longer than the context; the message names the file and the line.
    """
    if shots >= len(task.items):
        raise DataError(
            f"{task.source or task.name}: evals.shots = {shots} needs {shots + 1} items (the "
            f"examples come from the task's other items) but the task has {len(task.items)}; "
            "lower evals.shots or add items"
        )
    out = []
    for index, item in enumerate(task.items):
        continuations = [tokenizer.encode(c) for c in (item.choices or (item.answer,))]
        prompt = tokenizer.encode(item.prompt)
        room = context - max(len(c) for c in continuations)
        if len(prompt) > room:
            where = f"{task.source}: line {item.line}" if item.line is not None else task.name
            raise DataError(
                f"{where}: the prompt and its longest continuation take "
                f"{len(prompt) + context - room} tokens, more than model.context = {context}; "
                "shorten the item or raise model.context"
            )
        examples = [tokenizer.encode(s.prompt + s.target + SHOT_SEPARATOR)
                    for s in _shots(task, index, shots, seed)]
        while examples and sum(map(len, examples)) + len(prompt) > room:
            examples.pop(0)
        out.append(([t for e in examples for t in e] + prompt, continuations))
    return out


# ----------------------------------------------------------------------------- scoring


def _answer_log_probs(
    model: GPT, sequences: list[tuple[list[int], list[int]]], device: torch.device,
    autocast: Callable[[], Any], max_logits: int = 1 << 22,
) -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """For each (prompt, continuation): the log-probability of each continuation token and
    whether it was the argmax, from one forward pass over prompt + continuation.

    Sequences are sorted by length and batched so that a batch's logits hold at most
    ``max_logits`` numbers; right padding leaves a causal model's real positions unchanged.
    """
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]) + len(sequences[i][1]))
    out: list[Any] = [None] * len(sequences)
    vocab = model.config.vocab_size
    start = 0
    while start < len(order):
        longest = len(sequences[order[start]][0]) + len(sequences[order[start]][1])
        end = start
        while end < len(order):
            length = len(sequences[order[end]][0]) + len(sequences[order[end]][1])
            if (end - start + 1) * length * vocab > max_logits and end > start:
                break
            longest, end = length, end + 1
        batch = order[start:end]
        tokens = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, i in enumerate(batch):
            prompt, continuation = sequences[i]
            tokens[row, : len(prompt) + len(continuation)] = torch.tensor(prompt + continuation)
        with torch.no_grad(), autocast():
            logits, _ = model(tokens[:, :-1].to(device))  # (B, T - 1, vocab)
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for row, i in enumerate(batch):
            prompt, continuation = sequences[i]
            positions = torch.arange(len(prompt) - 1, len(prompt) + len(continuation) - 1)
            targets = torch.tensor(continuation)
            rows = log_probs[row, positions]  # (answer length, vocab)
            chosen = rows.gather(1, targets[:, None])[:, 0]
            out[i] = (chosen.numpy().astype(float), (rows.argmax(dim=1) == targets).numpy())
        start = end
    return out


def _summarise(correct: np.ndarray, pass_rates: np.ndarray, nll: np.ndarray, floor: float) -> dict[str, float]:
    n = len(correct)
    accuracy = float(np.mean(correct))
    return {
        "accuracy": accuracy,
        "accuracy_se": math.sqrt(accuracy * (1.0 - accuracy) / n),
        "pass_rate": float(np.mean(pass_rates)),
        "neg_log_pass_rate": float(np.mean(-np.log(np.maximum(pass_rates, floor)))),
        "nll": float(np.mean(nll)),
        "items": float(n),
    }


def score_task(
    model: GPT, task: Task, tokenizer: Tokenizer, *, shots: int = 0, samples: int = 20,
    seed: int = 0, device: Any = "cpu", autocast: Callable[[], Any] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Score one task (see the module docstring for each metric and how it is computed).

    Parameters
    ----------
    model : GPT
        The model, in eval mode.
    task : Task
    tokenizer : Tokenizer
        The tokenizer the model was trained with.
    shots : int
        Examples from the task's other items before each item.
    samples : int
        k, continuations sampled per completion item for its pass rate.
    seed : int
        Seed of the examples chosen and of the samples.
    device : str or torch.device
    autocast : callable, optional
        Returns the context manager the forward pass runs in (mixed precision).

    Returns
    -------
    dict
        ``accuracy``, ``accuracy_se``, ``pass_rate``, ``neg_log_pass_rate``, ``nll``, ``items``.

    Raises
    ------
    DataError
        If an item does not fit the model's context or ``shots`` exceeds the items available.
    """
    import contextlib

    import torch

    autocast = autocast or contextlib.nullcontext
    device = torch.device(device)
    encoded = prompt_tokens(task, tokenizer, model.config.context, shots, seed)
    flat = [(prompt, c) for prompt, continuations in encoded for c in continuations]
    scored = iter(_answer_log_probs(model, flat, device, autocast))
    rng = np.random.default_rng([seed, len(task.items)])
    correct, pass_rates, nll = [], [], []
    for (_, continuations), item in zip(encoded, task.items):
        results = [next(scored) for _ in continuations]
        if task.kind == "completion":
            log_probs, is_argmax = results[0]
            correct.append(bool(is_argmax.all()))
            # Sample j passes step t with the model's probability of the answer's token there.
            steps = rng.random((samples, len(log_probs))) < np.exp(log_probs)[None, :]
            pass_rates.append(float(steps.all(axis=1).mean()))
            nll.append(-float(log_probs.mean()))
        else:
            mean_log_probs = np.array([r[0].mean() for r in results])
            weights = np.exp(mean_log_probs - mean_log_probs.max())
            correct.append(int(np.argmax(mean_log_probs)) == item.label)
            pass_rates.append(float(weights[item.label] / weights.sum()))
            nll.append(-float(mean_log_probs[item.label]))
    floor = 1.0 / (2 * samples)
    return _summarise(np.array(correct), np.array(pass_rates), np.array(nll), floor)


def evaluate(
    model: GPT, tasks: Sequence[Task], tokenizer: Tokenizer, config: EvalsConfig, *,
    device: Any = "cpu", autocast: Callable[[], Any] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Score every task; return ``{"task/<name>/<metric>": value}`` (see :data:`METRICS`).

    The model is put in eval mode for the scoring and back in its former mode afterwards.

    Examples
    --------
    >>> metrics = evaluate(model, build_tasks(config, data, 128), data.tokenizer, config)  # doctest: +SKIP
    >>> metrics["task/copy/accuracy"]  # doctest: +SKIP
    0.42
    """
    was_training = model.training
    model.eval()
    try:
        metrics = {}
        for task in tasks:
            scores = score_task(
                model, task, tokenizer, shots=config.shots, samples=config.samples,
                seed=config.seed, device=device, autocast=autocast,
            )
            metrics.update({metric_key(task.name, k): v for k, v in scores.items()})
        return metrics
    finally:
        model.train(was_training)
