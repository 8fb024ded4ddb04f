"""The items of a capability task, and the built-in suites made from held-out text.

Each built-in task is drawn reproducibly (a seed) from the held-out split of the run's corpus,
never from training text, and every item fits the model's context:

- ``copy``: a line is shown, then its start again; the answer is the next characters of the
  line (in-context copying, which appears abruptly with scale);
- ``next_line``: pick the true next line among 4, the others drawn from far away in the
  held-out text (HellaSwag-style, scored by log-likelihood);
- ``closing``: complete the brackets and quotes a line of code left open, then end the line;
  on a corpus with too few such lines (prose), end a sentence: its last word and the stop.

Scoring them is :mod:`scaling.evals.scoring`'s business.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from scaling.config.run import BUILTIN_TASKS
from scaling.errors import ConfigError, DataError

__all__ = ["BUILTIN_TASKS", "Item", "Task", "builtin_task", "open_structure"]



@dataclass(frozen=True)
class Item:
    """One item: a prompt and either the ``answer`` or the ``choices`` with ``label`` correct.

    ``line`` is its line in the task file (None for built-in items), for error messages.
    """

    prompt: str
    answer: str | None = None
    choices: tuple[str, ...] | None = None
    label: int | None = None
    line: int | None = None

    @property
    def target(self) -> str:
        """What a correct model writes after the prompt (the answer or the correct choice)."""
        return self.answer if self.answer is not None else self.choices[self.label]


@dataclass(frozen=True)
class Task:
    """A named list of items of one kind (``completion`` or ``choice``)."""

    name: str
    kind: str
    items: tuple[Item, ...]
    source: str = field(default="", compare=False)  # file path or "built-in", for errors


def _fits(text: str, budget: int) -> bool:
    """Whether ``text`` surely fits ``budget`` tokens: no tokenizer here makes more tokens than
    UTF-8 bytes (bytes: one each; byte-level BPE: at most one per byte)."""
    return len(text.encode("utf-8")) <= budget


def _tail(text: str, budget: int) -> str:
    """The end of ``text`` that fits ``budget`` bytes, cut at a line start when one fits."""
    data = text.encode("utf-8")
    if len(data) <= budget:
        return text
    cut = data[-budget:].decode("utf-8", errors="ignore")
    newline = cut.find("\n")
    return cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut


def _copy_items(lines: list[str], context: int) -> Iterator[Item]:
    """A line, a newline, then the line again up to a cue; the answer is what follows."""
    answer_chars = max(2, min(8, context // 16))
    cue_chars = max(2, min(4, context // 16))
    longest = (context - 1) // 2
    seen: set[str] = set()
    for number, raw in enumerate(lines):
        line = raw.strip()
        if not cue_chars + answer_chars <= len(line) <= min(40, longest) or line in seen:
            continue
        seen.add(line)
        # Cue position from a hash of the line: fixed, without a random state to thread through.
        start = sum(line.encode()) % (len(line) - cue_chars - answer_chars + 1)
        cut = start + cue_chars
        answer = line[cut : cut + answer_chars]
        if len(set(answer)) < min(3, len(answer)):  # "--------" needs no copying
            continue
        prompt = f"{line}\n{line[:cut]}"
        if _fits(prompt + answer, context):
            yield Item(prompt, answer=answer, line=number)


def _next_line_items(lines: list[str], context: int, rng: np.random.Generator) -> Iterator[Item]:
    """Up to 3 lines of context; the true next line among 3 lines from far away."""
    longest = min(60, context // 2 - 1)
    pool = [i for i, line in enumerate(lines) if 8 <= len(line.strip()) and len(line) <= longest]
    if len(pool) < 8:
        return
    for index in pool:
        if index == 0 or not lines[index - 1].strip():
            continue
        true = lines[index] + "\n"
        far = [pool[j] for j in rng.integers(0, len(pool), size=12)
               if abs(pool[j] - index) > 50 and lines[pool[j]].strip() != lines[index].strip()]
        distinct = list(dict.fromkeys(lines[j] + "\n" for j in far))[:3]
        if len(distinct) < 3:
            continue
        label = int(rng.integers(0, 4))
        choices = distinct[:label] + [true] + distinct[label:]
        # Half the context at most: the prompt is scored once per choice.
        room = min(context // 2, context - max(len(c.encode("utf-8")) for c in choices))
        prompt = _tail("\n".join(lines[max(0, index - 3) : index]) + "\n", room)
        if prompt.strip():
            yield Item(prompt, choices=tuple(choices), label=label, line=index)


_PAIRS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = set(_PAIRS.values()) | {"'", '"'}


def open_structure(code: str) -> str | None:
    """What closes the brackets and quote ``code`` leaves open, or None if it is unbalanced
    or holds a comment (whose text follows no structure).

    Examples
    --------
    >>> open_structure('print(f(x["a')
    '"]))'
    >>> open_structure("x = (1))") is None
    True
    """
    stack: list[str] = []
    quote = None
    position = 0
    while position < len(code):
        char = code[position]
        if quote is not None:
            if char == "\\":
                position += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#":
            return None
        elif char in _PAIRS:
            stack.append(char)
        elif char in _PAIRS.values():
            if not stack or _PAIRS[stack.pop()] != char:
                return None
        position += 1
    return (quote or "") + "".join(_PAIRS[c] for c in reversed(stack))


def _closing_code_items(lines: list[str], context: int) -> Iterator[Item]:
    """A line of code without its closing brackets/quotes (after up to 3 lines of context);
    the answer is exactly what closes it, then the end of the line."""
    for number, raw in enumerate(lines):
        line = raw.rstrip()
        cut = len(line)
        while cut > 0 and line[cut - 1] in _CLOSERS:
            cut -= 1
        head, closers = line[:cut], line[cut:]
        if not closers or len(head.strip()) < 4 or open_structure(head) != closers:
            continue
        answer = closers + "\n"
        before = "\n".join(lines[max(0, number - 3) : number])
        prompt = _tail(before + "\n" + head if before else head, context - len(answer.encode()))
        if prompt.endswith(head):
            yield Item(prompt, answer=answer, line=number)


_SENTENCE_END = re.compile(r"(?<=\s)([A-Za-z]{3,})([.!?])(?=\s)")


def _closing_prose_items(text: str, context: int) -> Iterator[Item]:
    """Text up to a sentence's last word; the answer is that word and the stop."""
    for match in _SENTENCE_END.finditer(text):
        answer = match.group(1) + match.group(2)
        start = match.start()
        prompt = _tail(text[max(0, start - 4 * context) : start], context - len(answer.encode()))
        if len(prompt.split()) >= 5:
            yield Item(prompt, answer=answer)


def _pick(items: list[Item], count: int, rng: np.random.Generator, name: str) -> tuple[Item, ...]:
    if len(items) < count:
        raise DataError(
            f"evals: the held-out text yields {len(items)} '{name}' items, fewer than "
            f"evals.n_items = {count}; lower evals.n_items, hold out more text "
            "(data.eval_fraction) or drop the task"
        )
    chosen = np.sort(rng.choice(len(items), size=count, replace=False))
    return tuple(items[i] for i in chosen)


def builtin_task(name: str, text: str, *, context: int, n_items: int, seed: int = 0) -> Task:
    """Build a built-in task from held-out text, reproducibly (same text and seed, same items).

    Parameters
    ----------
    name : {"copy", "next_line", "closing"}
    text : str
        The held-out split's text (never training text).
    context : int
        The model's context in tokens: every item fits it.
    n_items : int
        Items to draw.
    seed : int
        Seed of the draw.

    Raises
    ------
    ConfigError
        If ``name`` is not a built-in task.
    DataError
        If the text yields fewer than ``n_items`` items.
    """
    rng = np.random.default_rng([seed, BUILTIN_TASKS.index(name) if name in BUILTIN_TASKS else 0])
    lines = text.split("\n")
    if name == "copy":
        return Task(name, "completion", _pick(list(_copy_items(lines, context)), n_items, rng, name), "built-in")
    if name == "next_line":
        items = list(_next_line_items(lines, context, rng))
        return Task(name, "choice", _pick(items, n_items, rng, name), "built-in")
    if name == "closing":
        items = list(_closing_code_items(lines, context))
        if len(items) < n_items:  # too little code: end sentences instead
            items = list(_closing_prose_items(text, context))
        return Task(name, "completion", _pick(items, n_items, rng, name), "built-in")
    raise ConfigError(
        f"evals.tasks: unknown task {name!r}; use one of {', '.join(BUILTIN_TASKS)} or the path "
        "of a .jsonl task file"
    )
