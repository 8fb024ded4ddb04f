"""Capability suites: items from held-out text, prompts, scores against hand-computed values,
and one clear error for each kind of bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from scaling.config.run import EvalsConfig, RunSpec, validate
from scaling.errors import ConfigError, DataError
from scaling.evals.scoring import (
    SHOT_SEPARATOR,
    evaluate,
    load_task,
    prompt_tokens,
    score_task,
)
from scaling.evals.tasks import Item, Task, builtin_task
from scaling.training.data import ByteTokenizer
from scaling.training.model import GPTConfig

BYTES = ByteTokenizer()


class FixedModel(nn.Module):
    """The same next-byte distribution at every position: every score is known by hand."""

    def __init__(self, probs: dict[str, float], context: int = 64) -> None:
        super().__init__()
        self.config = GPTConfig(n_layer=1, d_model=4, n_head=1, context=context, vocab_size=256)
        rest = (1.0 - sum(probs.values())) / (256 - len(probs))
        p = torch.full((256,), rest, dtype=torch.float64)
        for char, value in probs.items():
            p[ord(char)] = value
        self.register_buffer("log_p", torch.log(p).float())

    def forward(self, idx, targets=None):
        B, T = idx.shape
        return self.log_p.expand(B, T, 256), None


class Copier(nn.Module):
    """A perfect in-context copier: after a token, predict what followed its last earlier
    occurrence (an induction head written out by hand)."""

    def __init__(self, context: int = 64) -> None:
        super().__init__()
        self.config = GPTConfig(n_layer=1, d_model=4, n_head=1, context=context, vocab_size=256)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        logits = torch.zeros(B, T, 256)
        for b in range(B):
            row = idx[b].tolist()
            for t in range(T):
                earlier = [j for j in range(t) if row[j] == row[t]]
                if earlier:
                    logits[b, t, row[earlier[-1] + 1]] = 30.0
        return logits, None


PROBS = {"a": 0.5, "b": 0.3}
REST = 0.2 / 254


def completion_task(*answers: str) -> Task:
    return Task("t", "completion", tuple(Item("x", answer=a) for a in answers), "t.jsonl")


def test_completion_scores_match_hand_computed_values():
    task = completion_task("aa", "ab", "ba", "zz")
    scores = score_task(FixedModel(PROBS), task, BYTES, samples=4000, seed=1)
    # Greedy writes "aa...": only the first item is an exact match.
    assert scores["accuracy"] == 0.25
    assert scores["accuracy_se"] == pytest.approx(math.sqrt(0.25 * 0.75 / 4))
    nll = [-math.log(0.5), -(math.log(0.5) + math.log(0.3)) / 2,
           -(math.log(0.3) + math.log(0.5)) / 2, -math.log(REST)]
    assert scores["nll"] == pytest.approx(np.mean(nll), rel=1e-5)
    # A sample passes with the product of the answer's token probabilities.
    expected = [0.25, 0.15, 0.15, REST**2]
    assert scores["pass_rate"] == pytest.approx(np.mean(expected), abs=0.01)
    # "zz" never passes in 4000 samples: its pass rate counts as 1 / (2k).
    logs = [-math.log(p) for p in expected[:3]] + [math.log(2 * 4000)]
    assert scores["neg_log_pass_rate"] == pytest.approx(np.mean(logs), abs=0.05)
    assert scores["items"] == 4


def test_a_pass_rate_of_zero_is_floored_at_half_a_sample():
    scores = score_task(FixedModel(PROBS), completion_task("zz", "zy"), BYTES, samples=10)
    assert scores["pass_rate"] == 0.0
    assert scores["neg_log_pass_rate"] == pytest.approx(math.log(20))


def test_choice_scores_match_hand_computed_values():
    items = (Item("x", choices=("a", "bb", "zzz"), label=1), Item("x", choices=("ab", "b"), label=0))
    scores = score_task(FixedModel(PROBS), Task("c", "choice", items), BYTES)
    # Mean log-likelihood per token: "a" beats "bb" (item 1 wrong); "ab" beats "b" (right).
    assert scores["accuracy"] == 0.5
    first = 0.3 / (0.5 + 0.3 + REST)
    second = math.sqrt(0.5 * 0.3) / (math.sqrt(0.5 * 0.3) + 0.3)
    assert scores["pass_rate"] == pytest.approx((first + second) / 2, rel=1e-5)
    assert scores["neg_log_pass_rate"] == pytest.approx(-(math.log(first) + math.log(second)) / 2, rel=1e-5)
    assert scores["nll"] == pytest.approx((-math.log(0.3) - math.log(0.15) / 2) / 2, rel=1e-5)


def distinct_letter_lines(count: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return "\n".join("".join(rng.permutation(letters)[: rng.integers(12, 21)]) for _ in range(count))


def test_a_perfect_copier_aces_the_copy_task_and_a_unigram_model_does_not():
    text = distinct_letter_lines(300)
    task = builtin_task("copy", text, context=64, n_items=40, seed=0)
    copier = score_task(Copier(), task, BYTES, samples=10)
    assert copier["accuracy"] == 1.0 and copier["pass_rate"] == 1.0
    assert copier["neg_log_pass_rate"] == pytest.approx(0.0, abs=1e-6)
    assert copier["nll"] == pytest.approx(0.0, abs=1e-6)
    assert score_task(FixedModel(PROBS), task, BYTES)["accuracy"] == 0.0


def test_evaluate_names_metrics_by_task_and_restores_the_mode():
    model = FixedModel(PROBS)
    model.train()
    text = distinct_letter_lines(300)
    tasks = [builtin_task("copy", text, context=64, n_items=10), completion_task("aa")]
    metrics = evaluate(model, tasks, BYTES, EvalsConfig(tasks=["copy"], samples=5))
    assert sorted(metrics) == sorted(
        f"task/{name}/{m}" for name in ("copy", "t")
        for m in ("accuracy", "accuracy_se", "pass_rate", "neg_log_pass_rate", "nll", "items")
    )
    assert model.training


# ----------------------------------------------------------------------------- built-in suites

CODE = "\n".join([
    "def f(x):",
    "    return g(x, [1, 2])",
    "    y = {'a': h(x)}",
    "    print(\"done\")",
    "    z = k(w)  # comment (",
] * 40)


def test_closing_items_close_exactly_what_the_line_left_open():
    task = builtin_task("closing", CODE, context=64, n_items=60)
    answers = {item.prompt.rsplit("\n", 1)[-1]: item.answer for item in task.items}
    assert answers == {"    return g(x, [1, 2": "])\n", "    y = {'a': h(x": ")}\n",
                       "    print(\"done": "\")\n"}


def test_closing_falls_back_to_sentence_ends_on_prose():
    prose = " ".join(f"The cat number {i} sat on the warm mat today." for i in range(80))
    task = builtin_task("closing", prose, context=64, n_items=20)
    assert {item.answer for item in task.items} == {"today."}
    assert all(len(BYTES.encode(i.prompt + i.answer)) <= 64 for i in task.items)


def test_next_line_items_hide_the_true_next_line_among_far_lines():
    lines = distinct_letter_lines(400, seed=3)
    task = builtin_task("next_line", lines, context=64, n_items=30, seed=5)
    text_lines = lines.split("\n")
    for item in task.items:
        assert len(item.choices) == 4 and len(set(item.choices)) == 4
        previous = item.prompt.rstrip("\n").rsplit("\n", 1)[-1]
        assert text_lines[text_lines.index(previous) + 1] + "\n" == item.choices[item.label]
        assert max(len(BYTES.encode(item.prompt + c)) for c in item.choices) <= 64
    assert [i.label for i in task.items] == [
        i.label for i in builtin_task("next_line", lines, context=64, n_items=30, seed=5).items
    ]
    assert len({i.label for i in task.items}) > 1


def test_built_in_suites_are_reproducible_and_fit_the_context():
    text = distinct_letter_lines(300)
    first = builtin_task("copy", text, context=32, n_items=25, seed=7)
    assert first == builtin_task("copy", text, context=32, n_items=25, seed=7)
    assert first != builtin_task("copy", text, context=32, n_items=25, seed=8)
    for item in first.items:
        assert len(item.prompt) + len(item.answer) <= 32
        line = item.prompt.split("\n")[0]
        assert line + "\n" + line in item.prompt + line[len(item.prompt) - len(line) - 1 :]


def test_too_little_held_out_text_is_one_clear_error():
    with pytest.raises(DataError, match=r"evals: the held-out text yields \d+ 'copy' items, fewer "
                       r"than evals.n_items = 500; lower evals.n_items, hold out more text"):
        builtin_task("copy", distinct_letter_lines(100), context=64, n_items=500)


# ----------------------------------------------------------------------------- prompts


def test_few_shot_prompts_are_seeded_and_drop_the_oldest_examples_to_fit():
    task = completion_task("aa", "bb", "cc")
    zero = prompt_tokens(task, BYTES, context=64, shots=0)
    assert zero[0] == (BYTES.encode("x"), [BYTES.encode("aa")])
    two = prompt_tokens(task, BYTES, context=64, shots=2, seed=3)
    assert two == prompt_tokens(task, BYTES, context=64, shots=2, seed=3)
    shown = BYTES.decode(two[0][0])
    assert shown in (f"xbb{SHOT_SEPARATOR}xcc{SHOT_SEPARATOR}x", f"xcc{SHOT_SEPARATOR}xbb{SHOT_SEPARATOR}x")
    tight = prompt_tokens(task, BYTES, context=8, shots=2, seed=3)  # room for one example
    assert BYTES.decode(tight[0][0]) == shown[-(len(shown) - 5):]


# ----------------------------------------------------------------------------- bad input


def write_lines(path, *lines: str):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"prompt": "a", "answer": "b"}', '{"prompt": "a", "answer": '],
         r"arith.jsonl: line 2 is not JSON \(Expecting value\); fix the line"),
        (['{"prompt": "a"}'],
         r"arith.jsonl: line 1 needs either 'answer' or 'choices'; write \{\"prompt\""),
        (['{"question": "a", "answer": "b"}'], r"arith.jsonl: line 1 has no string 'prompt'"),
        (['{"prompt": "a", "choices": ["b", "c"], "label": 2}'],
         r"arith.jsonl: line 1: 'label' = 2 is not an index of the 2 choices; give 0 to 1"),
        (['{"prompt": "a", "answer": "b"}', "", '{"prompt": "a", "choices": ["b", "c"], "label": 0}'],
         r"arith.jsonl: line 3 is a choice item but line 1 is not; put each kind in its own file"),
        ([""], r"arith.jsonl: no items; write one JSON object per line"),
    ],
)
def test_malformed_task_files_name_the_file_the_line_and_the_fix(tmp_path, lines, message):
    with pytest.raises(DataError, match=message):
        load_task(write_lines(tmp_path / "arith.jsonl", *lines))


def test_an_item_longer_than_the_context_names_its_line(tmp_path):
    path = write_lines(tmp_path / "long.jsonl", '{"prompt": "ab", "answer": "c"}',
                       json.dumps({"prompt": "x" * 20, "answer": "yyy"}))
    with pytest.raises(DataError, match=r"long.jsonl: line 2: the prompt and its longest "
                       r"continuation take 23 tokens, more than model.context = 16; shorten the "
                       r"item or raise model.context"):
        prompt_tokens(load_task(path), BYTES, context=16)


def test_more_shots_than_examples_is_one_clear_error(tmp_path):
    path = write_lines(tmp_path / "two.jsonl", *['{"prompt": "a", "answer": "b"}'] * 2)
    with pytest.raises(DataError, match=r"two.jsonl: evals.shots = 2 needs 3 items \(the examples "
                       r"come from the task's other items\) but the task has 2; lower evals.shots"):
        prompt_tokens(load_task(path), BYTES, context=16, shots=2)


def test_a_missing_task_file_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"evals.tasks: .*nope.jsonl: no such task file"):
        load_task(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    "tasks, message",
    [
        (["cpy"], r"demo.yaml: evals: unknown task 'cpy'; use one of copy, next_line, closing or "
                  r"the path of a .jsonl task file"),
        (["copy", "a/copy.jsonl"], r"demo.yaml: evals: tasks: copy listed twice"),
    ],
)
def test_unknown_or_repeated_task_names_are_config_errors(tasks, message):
    with pytest.raises(ConfigError, match=message):
        validate(RunSpec, {"evals": {"tasks": tasks}}, "demo.yaml")


# ----------------------------------------------------------------------------- config


def test_runs_without_tasks_keep_their_run_keys_and_params():
    plain = RunSpec()
    assert plain.run_key == "e64cbe139209924f"  # the default run's key before tasks existed
    assert plain.run_key == RunSpec(evals={"tasks": [], "n_items": 7}).run_key
    assert not [key for key in plain.flat_params() if key.startswith("evals.")]
    scored = RunSpec(evals={"tasks": ["copy"]})
    assert scored.run_key != plain.run_key
    assert scored.flat_params()["evals.tasks"] == ["copy"]
    assert scored.run_key != RunSpec(evals={"tasks": ["copy"], "n_items": 7}).run_key


def test_editing_a_task_file_changes_the_run_key(tmp_path):
    task = tmp_path / "arith.jsonl"
    task.write_text('{"prompt": "1+1=", "answer": "2"}\n')
    spec = RunSpec(evals={"tasks": [str(task)]})
    first = spec.run_key
    assert RunSpec(evals={"tasks": [str(task)]}).run_key == first  # same file, same run
    task.write_text('{"prompt": "1+2=", "answer": "3"}\n')
    assert spec.run_key != first  # a sweep re-scores instead of reusing stale scores
    task.write_text('{"prompt": "1+1=", "answer": "2"}\n')
    assert spec.run_key == first


# ----------------------------------------------------------------------------- in a run

SYNTHETIC = {"source": "synthetic", "eval_fraction": 0.2, "eval_tokens": 1024,
             "synthetic": {"tokens": 20_000, "alphabet": 8, "order": 1}}


def symbol_run(tmp_path, *items: dict, **evals) -> RunSpec:
    path = write_lines(tmp_path / "sym.jsonl", *map(json.dumps, items))
    return RunSpec(
        name="tiny", model={"n_layer": 1, "d_model": 16, "n_head": 2, "context": 16},
        data=SYNTHETIC, evals={"tasks": [str(path)], **evals},
        train={"tokens": 128 * 20, "batch_tokens": 128, "lr": 1e-2, "precision": "fp32",
               "eval_every": 10},
    )


def test_a_run_scores_its_tasks_at_the_end_and_optionally_at_evaluations(tmp_path):
    from scaling.training.loop import train

    torch.set_num_threads(1)
    items = [{"prompt": "\u0001\u0002\u0003", "answer": "\u0004\u0005"},
             {"prompt": "\u0002\u0003", "choices": ["\u0001", "\u0006"], "label": 1}]
    with pytest.raises(DataError, match="is a choice item"):
        train(symbol_run(tmp_path, *items))
    logged = []
    spec = symbol_run(tmp_path, items[0], items[0], every_eval=True)
    result = train(spec, log=lambda step, metrics: logged.append((step, metrics)))
    assert sorted(result.capabilities) == sorted(f"task/sym/{m}" for m in (
        "accuracy", "accuracy_se", "pass_rate", "neg_log_pass_rate", "nll", "items"))
    summary = result.summary()
    assert summary["task/sym/items"] == 2 and 0 < summary["perf/evals_s"] < result.wall_s
    assert [step for step, m in logged if "task/sym/nll" in m] == [10]  # the end: in the summary


def test_a_task_that_cannot_be_scored_fails_the_run_before_it_trains(tmp_path):
    from scaling.training.loop import train

    spec = symbol_run(tmp_path, {"prompt": "\u0001" * 20, "answer": "\u0002"})
    logged = []
    with pytest.raises(DataError, match=r"sym.jsonl: line 1: the prompt and its longest continuation"):
        train(spec, log=lambda step, metrics: logged.append(step))
    assert logged == []
