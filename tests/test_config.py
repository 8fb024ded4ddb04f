"""Run-level configuration: validation messages and the run key."""

from __future__ import annotations

import pytest

from scaling.config.run import ModelConfig, RunSpec, load_run_spec, load_yaml, validate
from scaling.errors import ConfigError


def test_head_count_must_divide_width_and_message_names_fix():
    with pytest.raises(ConfigError, match=r"run.yaml: model: n_head = 5 does not divide d_model = 64; pick a divisor such as 4 or 8"):
        validate(RunSpec, {"model": {"d_model": 64, "n_head": 5}}, "run.yaml")


def test_unknown_key_is_named_with_its_path():
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key train.learning_rate; remove it"):
        validate(RunSpec, {"train": {"learning_rate": 1e-3}}, "run.yaml")


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"train.tokens = 'many'"):
        validate(RunSpec, {"train": {"tokens": "many"}}, "run.yaml")


def test_window_larger_than_context():
    with pytest.raises(ConfigError, match=r"window = 300 is larger than context = 256"):
        validate(ModelConfig, {"attention": "alternating", "window": 300})


def test_alternating_needs_window():
    with pytest.raises(ConfigError, match=r"needs a window; set model.window"):
        validate(ModelConfig, {"attention": "alternating"})


def test_run_key_ignores_labels_and_execution_settings_but_not_results():
    base = RunSpec()
    relabelled = RunSpec(name="other", sweep="s", role="target", train={"device": "cuda", "checkpoint_every": 10})
    assert base.run_key == relabelled.run_key
    assert len(base.run_key) == 16
    assert RunSpec(train={"lr": 1e-3}).run_key != base.run_key
    assert RunSpec(model={"d_model": 64}).run_key != base.run_key


def test_flat_params_are_dotted():
    flat = RunSpec().flat_params()
    assert flat["model.d_model"] == 128
    assert flat["train.lr"] == 3e-3
    assert flat["data.synthetic.alphabet"] == 16
    assert "name" not in flat


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ invalid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match=r"missing.yaml: no such file"):
        load_yaml(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: the top level is a list"):
        load_yaml(listy)


def test_overrides_apply_dotted_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: tiny\nmodel:\n  d_model: 32\n  n_head: 2\n")
    spec = load_run_spec(path, {"train.lr": 1e-3, "model.n_layer": 2})
    assert (spec.name, spec.model.d_model, spec.model.n_layer, spec.train.lr) == ("tiny", 32, 2, 1e-3)
