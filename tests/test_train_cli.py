"""The ``scaling train`` command: YAML and flags in, one result or one error line out."""

from __future__ import annotations

import json

import pytest

from scaling.cli import main

FLAGS = ["--set", "model.n_layer=1", "--set", "model.d_model=32", "--set", "model.n_head=2",
         "--set", "model.context=32", "--set", "data.source=synthetic",
         "--set", "data.synthetic.tokens=20000", "--set", "data.eval_tokens=2048",
         "--set", "train.tokens=5120", "--set", "train.batch_tokens=512"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_from_flags_prints_json_and_saves_final_weights(capsys, tmp_path):
    code = main(["train", *FLAGS, "--output", "json", "--checkpoint-dir", str(tmp_path / "ck")])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert (result["status"], result["steps"], result["tokens"]) == ("finished", 10, 5120)
    assert (tmp_path / "ck" / "final.pt").is_file()


def test_train_from_yaml_with_an_override_prints_a_table(capsys, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("name: cli\nmodel: {n_layer: 1, d_model: 32, n_head: 2, context: 32}\n"
                      "data: {source: synthetic, synthetic: {tokens: 20000}, eval_tokens: 2048}\n"
                      "train: {tokens: 5120, batch_tokens: 512}\n")
    assert main(["train", str(config), "--set", "train.tokens=2560"]) == 0
    out = capsys.readouterr().out
    assert "status  finished" in out and "steps  5" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.d_modle=64"], "unknown key model.d_modle; remove it or check its spelling"),
        (["--set", "model.n_head=5"], "n_head = 5 does not divide d_model = 32"),
        (["--set", "train.batch_tokens=500"], "train.batch_tokens = 500 is not a multiple of model.context = 32; use 512"),
        (["--set", "data.source=missing.txt"], "data.source = 'missing.txt': no such file or directory"),
        (["--set", "oops"], "--set 'oops': write it as KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, args, message):
    assert main(["train", *FLAGS, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_diverged_run_exits_non_zero_with_the_reason(capsys):
    code = main(["train", *FLAGS, "--set", "train.lr=10", "--set", "train.warmup=0",
                 "--set", "train.log_every=1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "error: run diverged: train/loss =" in captured.err and "lower train.lr" in captured.err


def test_help_has_an_example(capsys):
    assert main(["train", "--help"]) == 0
    assert "scaling train run.yaml --checkpoint-dir" in capsys.readouterr().out

