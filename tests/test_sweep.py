"""scaling.sweeps.queue: plans, bad input, and small sweeps end to end with the real trainer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import ladder_proxy_count, write_sweep

from scaling.cli import main
from scaling.config.run import ModelConfig
from scaling.errors import DataError, ConfigError, StorageError, TrackingError
from scaling.sweeps import tracking
from scaling.sweeps.planning import expand, load_sweep, plan
from scaling.sweeps.workers import run_sweep, status, worker
from scaling.training.model import GPTConfig, model_counts

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"


def _counts(n_layer, d_model, n_head, context, vocab=256):
    config = ModelConfig(n_layer=n_layer, d_model=d_model, n_head=n_head, context=context)
    return model_counts(GPTConfig.from_model_config(config, vocab))


TINY = {
    "name": "tiny",
    "data": {"eval_tokens": 512},
    "model": {"n_layer": 1, "n_head": 2, "context": 16},
    "train": {"batch_tokens": 64, "eval_every": 5},
    "ladder": {"tokens_per_param": [1], "shapes": [{"d_model": 8}, {"d_model": 12}]},
    "target": {"shape": {"d_model": 16}, "tokens_per_param": 1},
}


# ------------------------------------------------------------------------------ the plan --


def test_demo_is_a_ladder_of_every_listed_shape_and_a_far_larger_target():
    config = load_sweep(SWEEPS / "demo.yaml")
    specs = expand(config)
    proxies = [s for s in specs if s.role == "proxy"]
    (target,) = [s for s in specs if s.role == "target"]
    # one proxy per shape the file lists (eight at 20 tokens per parameter), none lost or doubled
    assert len(proxies) == ladder_proxy_count(SWEEPS / "demo.yaml")
    assert len({s.model.d_model for s in proxies}) == len(proxies)
    for spec in specs:  # tokens = 20 x N, N from the model's own count
        N = _counts(spec.model.n_layer, spec.model.d_model, spec.model.n_head, 64)["params"]
        assert spec.train.tokens == round(20 * N)
        assert (spec.model.n_layer, spec.model.context, spec.data.tokenizer) == (4, 64, "bytes")
    rows = {row["name"]: row for row in plan(config)}
    exact = sorted(rows[s.name]["C_exact"] for s in proxies)
    six_nd = sorted(rows[s.name]["C"] for s in proxies)
    assert exact[-1] / exact[0] >= 30 and six_nd[-1] / six_nd[0] >= 30
    assert rows[target.name]["C_exact"] / exact[-1] >= 20
    assert rows[target.name]["C"] / six_nd[-1] >= 20
    batches = [s.train.batch_tokens for s in sorted(proxies, key=lambda s: s.model.d_model)]
    assert batches == sorted(batches) and batches[0] < batches[-1]  # batch grows with size


def test_the_forecast_section_changes_no_run_and_defaults_to_gpt4():
    demo = load_sweep(SWEEPS / "demo.yaml")
    assert (demo.forecast.law, demo.forecast.fit_range) == ("gpt4", "auto")
    assert load_sweep(SWEEPS / "tpp10-cpu.yaml").forecast.law == "gpt4"  # no section: the default
    power = demo.model_copy(update={"forecast": type(demo.forecast)(law="power", fit_range="all")})
    # Runs are tagged with the config hash: how they are forecast is not part of it.
    assert power.config_hash == demo.config_hash
    assert [s.run_key for s in expand(power)] == [s.run_key for s in expand(demo)]


def test_quick_section_is_a_toy_version_with_its_own_experiment():
    config = load_sweep(SWEEPS / "demo.yaml", quick=True)
    assert config.name == "demo-quick"
    assert max(spec.train.tokens for spec in expand(config)) < 150_000
    with pytest.raises(ConfigError, match=r"sweep.yaml: no quick section; add 'quick:'"):
        load_sweep(write_sweep(TINY), quick=True)


def test_isoflop_tokens_come_from_budget_over_exact_flops_per_token():
    config = load_sweep(SWEEPS / "isoflop-cpu.yaml")
    specs = expand(config)
    assert len(specs) == 20
    for spec in specs:
        per_token = _counts(4, spec.model.d_model, 2, 128)["flops_per_token_exact"]
        budget = float(spec.name.split("-C")[1])
        assert spec.train.tokens == round(budget / per_token)
    for row in plan(config):
        assert row["C_exact"] == pytest.approx(float(row["name"].split("-C")[1]), rel=1e-5)


def test_gpt2_ladder_spans_10m_to_350m_and_a_1_3b_target():
    specs = expand(load_sweep(SWEEPS / "gpt2-ladder-gpu.yaml"), pin=False)  # its corpus is a GPU box's
    sizes = {s.name: _counts(s.model.n_layer, s.model.d_model, s.model.n_head, 1024, 50304) for s in specs}
    proxies = [sizes[s.name]["params"] for s in specs if s.role == "proxy"]
    (target,) = [sizes[s.name] for s in specs if s.role == "target"]
    assert 9e6 < min(proxies) < 12e6 and 2.5e8 < max(proxies) < 3.6e8
    assert 1.2e9 < target["params_total"] < 1.45e9


def test_ladder_seeds_repeat_every_run_with_its_own_seed():
    config = load_sweep(write_sweep({**TINY, "ladder": {**TINY["ladder"], "seeds": [0, 3]}}))
    proxies = [(spec.name, spec.train.seed) for spec in expand(config) if spec.role == "proxy"]
    assert proxies == [("d8-L1-1xN-s0", 0), ("d8-L1-1xN-s3", 3),
                       ("d12-L1-1xN-s0", 0), ("d12-L1-1xN-s3", 3)]
    assert len({spec.run_key for spec in expand(config)}) == 5  # 4 proxies + the target


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_sweep_file_plans_and_has_a_toy_version(path):
    config = load_sweep(path)
    quick = load_sweep(path, quick=True)
    assert quick.name == f"{config.name}-quick"  # its own experiment, never mixed with the real one
    assert plan(quick)
    if config.data.source.endswith(".bin"):  # a corpus that lives on the GPU machines
        with pytest.raises(DataError, match=r"no such file; give an existing .bin"):
            plan(config)
    else:
        assert plan(config)


def test_tune_file_plans_trials_per_shape():
    rows = plan(load_sweep(SWEEPS / "tune-lr-cpu.yaml"))
    assert [(row["name"], row["runs"]) for row in rows] == [
        ("d16-L4 (tune)", 8), ("d24-L4 (tune)", 8), ("d32-L4 (tune)", 8)]


# ------------------------------------------------------------------------------ bad input --

BAD = [
    ({"ladder": {"shapes": [{"d_model": 8}], "tokens_per_param": [1], "typo": 1}},
     r"bad.yaml: unknown key ladder.typo; remove it or check its spelling"),
    ({"ladder": {"shapes": [{"d_model": "wide"}], "tokens_per_param": [1]}},
     r"bad.yaml: ladder.shapes.0.d_model = 'wide': Input should be a valid integer"),
    ({"ladder": {"shapes": [{"d_model": 10, "n_head": 4}], "tokens_per_param": [1]}},
     r"bad.yaml: ladder.shapes.0: n_head = 4 does not divide d_model = 10; pick a divisor such as 2 or 5"),
    ({"ladder": {"shapes": [{"d_model": 8}], "tokens_per_param": [-20]}},
     r"bad.yaml: ladder.tokens_per_param.0 = -20: Input should be greater than 0"),
    ({"isoflop": {"shapes": [{"d_model": 8}], "budgets": [0]}},
     r"bad.yaml: isoflop.budgets.0 = 0: Input should be greater than 0"),
    ({"ladder": {"shapes": [{"d_model": 8}, {"d_model": 8}], "tokens_per_param": [1]}},
     r"bad.yaml: ladder.shapes.1 duplicates run d8-L1-1xN of ladder.shapes.0; remove one of them"),
    ({"ladder": {"shapes": [{"d_model": 8}]}},
     r"bad.yaml: ladder: no budget; set ladder.tokens_per_param \(e.g. \[20\]\) or ladder.tokens"),
    ({"isoflop": {"shapes": [{"d_model": 8}, {"d_model": 32}], "budgets": [3e7]}},
     r"bad.yaml: isoflop.budgets = 3e\+07 is too small for isoflop.shapes.1 \(d32-L1\): \d+ steps of 64 "
     r"tokens < min_steps = 10; raise the budget to at least [\d.e+]+ or drop the shape"),
    ({"tune": {"shapes": [{"d_model": 8}], "lr": [0.1, 0.01]}},
     r"bad.yaml: tune: lr = \[0.1, 0.01\] must satisfy 0 < low < high"),
    ({"tune": {"shapes": [{"d_model": 8}], "warmup": [0.5, 0.1]}},
     r"bad.yaml: tune: warmup = \[0.5, 0.1\] must satisfy 0 <= low < high < 1"),
    ({"tune": {"shapes": [{"d_model": 8}], "batch_tokens": [0]}},
     r"bad.yaml: tune: batch_tokens must list positive sizes"),
    ({"ladder": {"shapes": [{"d_model": 8}], "tokens_per_param": [1], "seeds": [0, 1, 0]}},
     r"bad.yaml: ladder: seeds = \[0, 1, 0\] repeats a seed; list each seed once"),
    ({}, r"bad.yaml: the sweep runs nothing; add a ladder, isoflop, tune or target section"),
    ({"ladder": {"shapes": [{"d_model": 8}], "tokens_per_param": [1]}, "forecast": {"law": "chinchilla"}},
     r"bad.yaml: forecast.law = 'chinchilla': Input should be 'gpt4' or 'power'"),
    ({"ladder": {"shapes": [{"d_model": 8}], "tokens_per_param": [1]}, "execution": {"max_retries": -1}},
     r"bad.yaml: execution.max_retries = -1: Input should be greater than or equal to 0"),
    ({"ladder": {"shapes": [{"d_model": 8}], "tokens_per_param": [1]}, "execution": {"retries": 3}},
     r"bad.yaml: unknown key execution.retries; remove it or check its spelling"),
]  # fmt: skip


@pytest.mark.parametrize(("section", "message"), BAD)
def test_invalid_sweep_file_is_one_line_exit_2_and_nothing_enqueued(section, message, capsys):
    base = {"name": "bad", "model": {"n_layer": 1, "n_head": 2, "context": 16}, "train": {"batch_tokens": 64}}
    path = write_sweep({**base, **section}, "bad.yaml")
    assert main(["sweep", "run", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("error: ") and __import__("re").search(message, error), error
    assert not Path("mlflow.db").exists() and not Path("optuna.journal").exists()


def test_same_run_under_two_names_and_unreadable_tokenizer_are_rejected():
    N = _counts(1, 8, 2, 16)["params"]
    same = {**TINY, "ladder": {"tokens_per_param": [1], "tokens": [N], "shapes": [{"d_model": 8}]}}
    with pytest.raises(ConfigError, match=rf"sweep.yaml: ladder.shapes.0 \(d8-L1-{N}tok\) is the same run as d8-L1-1xN; remove one of them"):
        load_sweep(write_sweep(same))
    missing = {**TINY, "data": {"tokenizer": "no/tokenizer.json"}}
    with pytest.raises(ConfigError, match=r"data.tokenizer = 'no/tokenizer.json' is not 'bytes', 'bpe' or a readable tokenizer.json; fix the path or set model.vocab_size"):
        load_sweep(write_sweep(missing))


def test_a_negative_max_retries_option_is_one_line_exit_2(capsys):
    assert main(["sweep", "run", str(write_sweep(TINY)), "--max-retries", "-1"]) == 2
    error = capsys.readouterr().err
    assert error == "error: --max-retries = -1: use 0 or more (default 2)\n"
    assert not Path("optuna.journal").exists()


def test_execution_settings_change_no_run_and_not_the_config_hash():
    plain = load_sweep(write_sweep(TINY))
    other = load_sweep(write_sweep({**TINY, "execution": {"max_retries": 5, "checkpoint_root": "/shared/ck"}}))
    assert (other.execution.max_retries, other.checkpoint_root) == (5, "/shared/ck")
    assert (plain.execution.max_retries, plain.checkpoint_root) == (2, "checkpoints")
    assert other.config_hash == plain.config_hash
    assert [s.run_key for s in expand(other)] == [s.run_key for s in expand(plain)]


def test_unknown_role_is_rejected():
    with pytest.raises(ConfigError, match=r"roles = \['proxies'\]: unknown role; use 'proxy' and/or 'target'"):
        run_sweep(write_sweep(TINY), roles=("proxies",))


def test_unreachable_tracking_or_storage_fails_before_training():
    from services import free_port

    path = write_sweep(TINY)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match=r"cannot reach the MLflow tracking server"):
        run_sweep(path, tracking_uri=url)
    database = f"postgresql+psycopg2://nobody@127.0.0.1:{free_port()}/optuna"
    with pytest.raises(StorageError, match=r"cannot open the Optuna storage postgresql\+psycopg2://.*; check the URL"):
        run_sweep(path, storage=database)
    with pytest.raises(StorageError, match=r"Optuna journal no/such/optuna.journal: folder .* does not exist"):
        run_sweep(path, storage="no/such/optuna.journal")
    assert not Path("checkpoints").exists() and not Path("mlflow.db").exists()


def test_worker_without_a_launched_sweep_says_to_start_it():
    path = write_sweep(TINY)
    with pytest.raises(StorageError, match=r"no study tiny/proxy in .*optuna.journal; start the sweep with 'scaling sweep run FILE' first"):
        worker(path)


def test_dry_run_prints_the_plan_and_trains_nothing(capsys):
    assert main(["sweep", "run", str(SWEEPS / "demo.yaml"), "--dry-run", "--output", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in printed["runs"]]
    assert names[0] == "d14-L4-20xN" and names[-1] == "target-d96-L4-20xN"
    assert printed["total_flops_exact"] == pytest.approx(sum(row["C_exact"] for row in printed["runs"]))
    # a dry run reads the corpus's identity: one whose data is not here fails in one line
    assert main(["sweep", "run", str(SWEEPS / "gpt2-ladder-gpu.yaml"), "--dry-run"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "data/openwebtext/train.bin': no such file" in error[0]
    assert not Path("mlflow.db").exists() and not Path("optuna.journal").exists()


# ------------------------------------------------------------------------ end to end runs --


@pytest.mark.slow
def test_roles_run_separately_each_once_and_a_rerun_reuses_everything():
    path = write_sweep(TINY)
    first = run_sweep(path, roles=("proxy",), threads=1)
    assert (first["done"], first["failed"], first["enqueued"]) == (2, 0, 2)
    assert tracking.runs_frame("tiny", role="target").empty
    second = run_sweep(path, roles=("target",), threads=1)
    assert (second["done"], second["enqueued"]) == (1, 1)
    again = run_sweep(path)
    assert (again["enqueued"], again["workers_started"], again["done"]) == (0, 0, 3)
    assert again["wall_s"] < 10
    frame = tracking.runs_frame("tiny", status=None)
    assert len(frame) == 3 and set(frame.status) == {"FINISHED"}
    assert sorted(frame.run_key) == sorted(spec.run_key for spec in expand(load_sweep(path)))
    assert set(frame.config_hash) == {load_sweep(path).config_hash}
    assert load_sweep(write_sweep({**TINY, "description": "edited"})).config_hash != frame.config_hash[0]
    assert list(frame.columns[: len(tracking.RUN_COLUMNS)]) == tracking.RUN_COLUMNS
    assert frame.loss.between(0, math.log(256) * 2).all() and (frame.bpb > 0).all()
    assert (frame.flops == 6 * frame.params * frame.tokens).all()
    rows = status(path)
    assert {row["state"] for row in rows} == {"COMPLETE"}
    assert {row["mlflow_run_id"] for row in rows} == set(frame.run_id)


@pytest.mark.slow
def test_tune_samples_lr_per_shape_and_tags_each_shapes_best(capsys):
    config = load_sweep(SWEEPS / "tune-lr-cpu.yaml", quick=True)
    summary = run_sweep(config, workers=2, threads=1)
    assert (summary["done"], summary["failed"]) == (9, 0)
    frame = tracking.runs_frame("tune-lr-cpu-quick")
    assert len(frame) == 9 and frame.lr.nunique() == 9
    assert frame.lr.between(3e-4, 3e-2).all()
    for shape, group in frame.groupby("tune"):
        assert len(group) == 3
        (best,) = group.loc[group.tune_best == 1.0, "loss"]
        assert best == group.loss.min(), shape
    assert run_sweep(config)["enqueued"] == 0  # trials are enqueued once, never topped up again
    assert main(["sweep", "status", str(SWEEPS / "tune-lr-cpu.yaml"), "--quick", "--output", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 9 and {row["state"] for row in rows} == {"COMPLETE"}
    # the lr law through the three shapes' optima, read from the tracked trials
    assert main(["fit", "--experiment", "tune-lr-cpu-quick", "--law", "lr", "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "lr: lr_opt(C) = a·C^b" in out and "fitted to the optima of 3 tuned shapes:" in out
