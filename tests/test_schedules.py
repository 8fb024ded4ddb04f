"""Learning-rate schedules: cosine, warmup-stable-decay and constant, in the trainer and the run key."""

from __future__ import annotations

import math

import pytest

from scaling.config.run import RunSpec, TrainConfig
from scaling.training.loop import lr_multiplier, train


def test_wsd_holds_then_decays_to_the_floor_in_each_shape():
    # 100 steps, 5 of warmup, the last 20 decaying to 0.1
    for shape, first in (("linear", 0.95), ("cosine", 0.5 * (1 + math.cos(math.pi / 20))),
                         ("1-sqrt", 1 - math.sqrt(1 / 20))):
        values = [lr_multiplier(s, 100, 5, 0.1, "wsd", 20, shape) for s in range(100)]
        assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
        assert values[5:80] == [1.0] * 75
        assert values[80] == pytest.approx(0.1 + 0.9 * first)
        assert values[99] == pytest.approx(0.1)
        assert all(a >= b for a, b in zip(values[79:], values[80:], strict=False))
    halfway = lr_multiplier(89, 100, 5, 0.0, "wsd", 20, "1-sqrt")  # progress 10/20
    assert halfway == pytest.approx(1 - math.sqrt(0.5))


def test_constant_holds_after_warmup_and_cosine_is_unchanged():
    assert [lr_multiplier(s, 10, 2, 0.1, "constant") for s in range(10)] == [0.5] + [1.0] * 9
    assert lr_multiplier(6, 12, 2, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 9)))


def test_the_schedule_enters_the_run_key_only_where_it_changes_the_run():
    plain = RunSpec()
    assert plain.run_key == "e64cbe139209924f"  # the cosine default keeps the key it always had
    unused = RunSpec(train={"decay_fraction": 0.5, "decay_shape": "linear"})
    assert unused.run_key == plain.run_key  # decay settings do nothing to a cosine run
    wsd = RunSpec(train={"schedule": "wsd"})
    keys = {plain.run_key, wsd.run_key, RunSpec(train={"schedule": "constant"}).run_key,
            RunSpec(train={"schedule": "wsd", "decay_fraction": 0.1}).run_key,
            RunSpec(train={"schedule": "wsd", "decay_shape": "linear"}).run_key}
    assert len(keys) == 5
    assert wsd.flat_params()["train.schedule"] == "wsd"


def test_a_wsd_run_logs_the_learning_rate_it_trains_with():
    spec = RunSpec.model_validate({
        "data": {"source": "synthetic", "synthetic": {"tokens": 20_000, "alphabet": 8},
                 "eval_tokens": 512},
        "model": {"n_layer": 1, "d_model": 8, "n_head": 1, "context": 16},
        "train": {"tokens": 40 * 64, "batch_tokens": 64, "lr": 0.01, "schedule": "wsd",
                  "decay_fraction": 0.25, "decay_shape": "linear", "warmup": 0.1,
                  "min_lr_ratio": 0.0, "log_every": 1, "precision": "fp32", "device": "cpu"},
    })
    logged: dict[int, float] = {}

    def log(step, metrics):
        if "train/lr" in metrics:
            logged[step] = metrics["train/lr"]

    assert train(spec, log).status == "finished"
    expected = {s: 0.01 * lr_multiplier(s - 1, 40, 4, 0.0, "wsd", 10, "linear") for s in logged}
    assert logged == pytest.approx(expected)
    assert max(logged.values()) == pytest.approx(0.01) and min(logged.values()) < 0.001


def test_bad_schedule_settings_are_refused():
    from scaling.config.run import validate
    from scaling.errors import ConfigError

    with pytest.raises(ConfigError, match="schedule"):
        validate(TrainConfig, {"schedule": "step"})
    with pytest.raises(ConfigError, match="decay_fraction"):
        validate(TrainConfig, {"decay_fraction": 0})
