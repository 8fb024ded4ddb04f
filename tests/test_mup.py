"""muP + CompleteP: the base shape is the standard model, the table is applied, the coord
check separates the two parametrisations, and bad configs say what to do."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scaling.config.run import ModelConfig, RunSpec, TrainConfig, validate
from scaling.errors import ConfigError
from scaling.training.coordinates import coord_check, coord_slopes
from scaling.training.loop import ADAM_EPS, build_optimizer, train
from scaling.training.model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SYNTHETIC = {"source": "synthetic", "eval_fraction": 0.2, "eval_tokens": 4096,
             "synthetic": {"tokens": 50_000, "alphabet": 8, "order": 1}}


def spec(**model) -> RunSpec:
    shape = {"n_layer": 2, "d_model": 32, "n_head": 2, "context": 32, **model}
    train_settings = {"tokens": 512 * 6, "batch_tokens": 512, "lr": 1e-2, "precision": "fp32",
                      "log_every": 1, "warmup": 0.0}
    return RunSpec(name="tiny", model=shape, data=SYNTHETIC, train=train_settings)


def losses(run_spec: RunSpec) -> list[float]:
    seen = []
    train(run_spec, lambda step, metrics: seen.append(metrics.get("train/loss")))
    return [loss for loss in seen if loss is not None]


def test_at_the_base_shape_mup_is_the_standard_model_and_trains_the_same():
    standard = GPTConfig(n_layer=2, d_model=32, n_head=2, context=32, vocab_size=8)
    mup = GPTConfig(n_layer=2, d_model=32, n_head=2, context=32, vocab_size=8,
                    parametrization="mup", base_d_model=32, base_n_layer=2)
    torch.manual_seed(0)
    a = GPT(standard).state_dict()
    torch.manual_seed(0)
    b = GPT(mup).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    first = losses(spec())
    same = losses(spec(parametrization="mup", base_d_model=32, base_n_layer=2))
    assert len(first) == 6 and same == pytest.approx(first, rel=1e-6)


def test_a_wider_deeper_mup_model_applies_the_table():
    config = GPTConfig(n_layer=4, d_model=128, n_head=2, context=32, vocab_size=256,
                       parametrization="mup", base_d_model=32, base_n_layer=2)  # m_d 4, m_L 2
    torch.manual_seed(0)
    model = GPT(config)
    assert model.blocks[0].residual == 0.5 and model.output_scale == 0.25
    # 1/sqrt(d_head) at the base (d_head 16), then 1/d_head: sqrt(16) / 64
    assert model.blocks[0].attn.scale == pytest.approx(4 / 64)
    # hidden init std 0.02 / sqrt(m_d); GPT-2's residual init at the base depth
    assert float(model.blocks[0].mlp.fc.weight.detach().std()) == pytest.approx(0.01, rel=0.02)
    assert float(model.blocks[0].mlp.proj.weight.detach().std()) == pytest.approx(0.01 / 2, rel=0.02)
    assert float(model.wte.weight.detach().std()) == pytest.approx(0.02, rel=0.02)

    optimizer = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1), torch.device("cpu"))
    matrices, vectors, hidden = optimizer.param_groups
    assert matrices["lr"] == 1e-2 and matrices["weight_decay"] == 0.1
    assert vectors["lr"] == 1e-2 and vectors["weight_decay"] == 0.0
    # Adam lr 1/m_d (CompleteP's depth correction m_L^0 = 1), decay x m_d, eps / (m_d m_L)
    assert hidden["lr"] == pytest.approx(2.5e-3) and hidden["weight_decay"] == pytest.approx(0.4)
    assert hidden["eps"] == pytest.approx(ADAM_EPS / 8)
    assert len(hidden["params"]) == 4 * 4  # qkv, attention out, MLP in and out per block
    assert {id(p) for p in matrices["params"]} == {id(model.wte.weight), id(model.wpe.weight)}


def test_the_standard_optimizer_keeps_its_two_groups():
    model = GPT(GPTConfig(n_layer=1, d_model=16, n_head=2, context=8, vocab_size=16))
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3), torch.device("cpu"))
    assert len(optimizer.param_groups) == 2


def test_coord_check_activations_stay_flat_under_mup_and_grow_under_standard():
    table = coord_check(widths=(16, 32, 64, 128), depths=(1, 2, 4), steps=4, context=32)
    slopes = coord_slopes(table).set_index(["parametrization", "axis", "layer"]).sort_index()["slope"]
    # growth of log2(size) per doubling; measured: mup within +-0.2, standard up to 1.7
    assert slopes["mup", "width"].abs().max() < 0.35
    assert slopes["standard", "width"].max() > 1.0
    assert slopes["standard", "width", "logits"] > 0.6
    assert abs(slopes["mup", "depth", "residual"]) < 0.25
    assert slopes["standard", "depth", "residual"] > 0.5
    assert set(table["layer"]) == {"embedding", "attention", "mlp", "residual", "logits"}


def test_new_fields_enter_the_run_key_only_when_set():
    plain = RunSpec()
    assert "model.parametrization" not in plain.flat_params()
    assert plain.run_key == RunSpec(model={"parametrization": "standard"}).run_key
    mup = RunSpec(model={"parametrization": "mup", "base_d_model": 64, "base_n_layer": 2})
    assert mup.run_key != plain.run_key
    assert mup.flat_params()["model.base_d_model"] == 64


@pytest.mark.parametrize("model, message", [
    ({"parametrization": "mup"},
     r"run.yaml: model: parametrization = 'mup' needs the base shape the hyperparameters were "
     r"tuned at; set base_d_model and base_n_layer"),
    ({"parametrization": "mup", "base_d_model": 64},
     r"model: parametrization = 'mup' needs .*; set base_n_layer \(e.g. the smallest proxy's n_layer\)"),
    ({"parametrization": "mup", "d_model": 64, "base_d_model": 128, "base_n_layer": 2},
     r"model: base_d_model = 128 is larger than d_model = 64; .* use a base_d_model of at most 64"),
    ({"parametrization": "mup", "n_layer": 2, "base_d_model": 64, "base_n_layer": 4},
     r"model: base_n_layer = 4 is larger than n_layer = 2"),
    ({"base_d_model": 64},
     r"model: base_d_model = 64 has no effect with parametrization = 'standard'; set "
     r"parametrization: mup or remove it"),
    ({"parametrization": "mu-p"}, r"model.parametrization = 'mu-p': Input should be 'standard' or 'mup'"),
])
def test_bad_parametrizations_name_the_field_and_the_fix(model, message):
    with pytest.raises(ConfigError, match=message):
        validate(RunSpec, {"model": model}, "run.yaml")


def test_gpt_config_checks_the_base_shape_too():
    with pytest.raises(ConfigError, match=r"model.parametrization = 'mup' needs model.base_d_model"):
        GPTConfig(parametrization="mup")
    with pytest.raises(ConfigError, match=r"model.base_n_layer = 8 must be a positive integer of at most model.n_layer = 4"):
        GPTConfig(parametrization="mup", base_d_model=64, base_n_layer=8)
    with pytest.raises(ConfigError, match=r"model.parametrization = 'x': use 'standard' or 'mup'"):
        GPTConfig(parametrization="x")
    assert validate(ModelConfig, {"parametrization": "mup", "base_d_model": 64,
                                  "base_n_layer": 4}).base_d_model == 64
    assert math.isclose(GPTConfig(parametrization="mup", base_d_model=64, base_n_layer=2).mup.width, 2.0)


def test_check_coords_command_prints_the_slopes_and_writes_the_figure(capsys):
    from pathlib import Path

    from scaling.cli import main

    args = ["check-coords", "--widths", "16,32,64", "--depths", "1,2", "--steps", "3", "--plot", "c.png"]
    assert main(args + ["--output", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["slopes"]) == 2 * 2 * 5 and Path("c.png").read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 0
    assert "growth of log2(activation size) per doubling" in capsys.readouterr().out
    assert main(["check-coords", "--widths", "32"]) == 2  # a ConfigError's exit code
    assert "--widths '32': give two or more positive integers, e.g. '32,64,128'" in capsys.readouterr().err


def test_the_cpu_bf16_attention_path_uses_the_mup_scale():
    config = GPTConfig(n_layer=1, d_model=64, n_head=2, context=16, vocab_size=32,
                       parametrization="mup", base_d_model=16, base_n_layer=1)
    torch.manual_seed(0)
    attention = GPT(config).blocks[0].attn
    x = torch.randn(2, 16, 64)
    with torch.no_grad():
        attention.qkv.weight.normal_(0.0, 0.3)  # attention scores of order 1: the scale shows
        exact = attention(x)  # SDPA with the muP scale, fp32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            explicit = attention(x).float()  # the explicit matmul path
        attention.scale = None
        standard = attention(x)
    size = exact.abs().mean()
    assert (explicit - exact).abs().mean() < 0.02 * size  # bf16 rounding only
    assert (standard - exact).abs().mean() > 0.1 * size
