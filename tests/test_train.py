"""One training run: accounting, schedule, accumulation, divergence, errors, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from scaling.config.run import RunSpec
from scaling.errors import ConfigError, DivergedError
from scaling.training.data import prepare_data
from scaling.training.hardware import device_name, resolve_precision
from scaling.training.loop import RunResult, load_model, lr_multiplier, train
from scaling.training.model import GPTConfig, model_counts

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cpu_auto_precision() -> str:
    """What precision 'auto' must pick on this CPU for a large model: bf16 where the CPU
    computes bf16 in hardware (the avx512_bf16 or amx_bf16 flags of /proc/cpuinfo), fp32
    elsewhere, as on the CI machine's AVX2 CPU (AVX-512 alone is not enough)."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        flags = set()
    return "bf16" if flags & {"avx512_bf16", "amx_bf16"} else "fp32"


SYNTHETIC = {"source": "synthetic", "eval_fraction": 0.2, "eval_tokens": 16_384,
             "synthetic": {"tokens": 100_000, "alphabet": 8, "order": 1}}


def tiny_spec(**train) -> RunSpec:
    # Evaluate only at the end unless a test asks for more: eval would otherwise dominate.
    settings = {"tokens": 32 * 16 * 40, "batch_tokens": 32 * 16, "lr": 1e-2, "precision": "fp32",
                "eval_every": 10_000}
    settings.update(train)
    return RunSpec(
        name="tiny",
        model={"n_layer": 2, "d_model": 32, "n_head": 2, "context": 32},
        data=SYNTHETIC,
        train=settings,
    )


class Recorder:
    """A log callback that keeps every call."""

    def __init__(self):
        self.calls: list[tuple[int, dict[str, float]]] = []

    def __call__(self, step, metrics):
        self.calls.append((step, dict(metrics)))

    def series(self, key):
        return [(step, m[key]) for step, m in self.calls if key in m]


@pytest.mark.slow
def test_training_reaches_the_synthetic_floor_and_accounts_for_its_compute():
    spec = tiny_spec(tokens=32 * 16 * 200, eval_every=50)
    recorder = Recorder()
    result = train(spec, recorder)
    floor = prepare_data(spec.data).entropy_rate  # 1.4999 nats: no model can do better
    assert result.status == "finished" and result.failure is None
    # 16k eval tokens: the sampling error of the mean loss is about 0.01 nats
    assert floor - 0.04 < result.final_eval_loss < floor + 0.05
    assert recorder.series("train/loss")[0][1] > floor + 0.4  # it started far above
    assert result.final_bpb == pytest.approx(result.final_eval_loss / math.log(2))

    counts = model_counts(GPTConfig(n_layer=2, d_model=32, n_head=2, context=32, vocab_size=8))
    assert (result.steps, result.tokens) == (200, 200 * 512)
    assert result.params == counts["params"] and result.params_total == counts["params_total"]
    assert result.flops == 6 * counts["params"] * result.tokens
    assert result.flops_exact == counts["flops_per_token_exact"] * result.tokens
    assert result.resumed_from_step == 0 and result.tokens_per_s > 0 and result.wall_s > 0

    assert [step for step, _ in recorder.series("eval/loss")] == [50, 100, 150, 200]
    assert recorder.series("eval/loss")[-1][1] == result.final_eval_loss
    logged = [m for _, m in recorder.calls if "train/loss" in m]
    assert set(logged[0]) == {"train/loss", "train/lr", "train/tokens", "perf/tokens_per_s",
                              "perf/flops_per_s", "perf/mfu"}
    assert [m["train/tokens"] for m in logged] == [512.0 * s for s, _ in recorder.series("train/loss")]
    assert all(0 < m["perf/mfu"] < 1 for m in logged)
    evaluations = [m for _, m in recorder.calls if "eval/loss" in m]
    assert [m["train/tokens"] for m in evaluations] == [512.0 * s for s in (50, 100, 150, 200)]

    summary = result.summary()
    assert summary == {
        "final/eval_loss": result.final_eval_loss, "final/bpb": result.final_bpb,
        "size/params": float(result.params), "size/params_total": float(result.params_total),
        "size/tokens": float(result.tokens), "size/flops": result.flops,
        "size/flops_exact": result.flops_exact,
        # the other conventions (tests/test_families.py checks their formulas)
        "size/params_kaplan": float(counts["params_kaplan"]),
        "size/deepseek_m": float(counts["deepseek_m"]),
        "size/flops_palm": float(counts["flops_per_token_palm"] * result.tokens),
        "size/flops_chinchilla": float(counts["flops_per_token_chinchilla"] * result.tokens),
    }
    assert all(type(value) is float for value in summary.values())


def test_only_whole_batches_are_trained_and_counted():
    result = train(tiny_spec(tokens=5000))  # 9 batches of 512 tokens, 392 left over
    assert (result.steps, result.tokens) == (9, 4608)


def test_schedule_warms_up_then_decays_to_the_floor_over_the_run():
    recorder = Recorder()
    train(tiny_spec(tokens=512 * 20, warmup=0.1, min_lr_ratio=0.1, log_every=1), recorder)
    lrs = [lr for _, lr in recorder.series("train/lr")]
    assert len(lrs) == 20
    assert lrs[:3] == pytest.approx([5e-3, 1e-2, 1e-2])  # 2 warmup steps
    assert lrs[-1] == pytest.approx(1e-3)  # cosine ends at 10% of the peak
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert lr_multiplier(6, 12, 2, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 9)))


def test_gradient_accumulation_matches_one_big_batch():
    # On the CPU in fp32, to 1e-5: a GPU's TF32 matmuls round differently per micro batch.
    whole, split = Recorder(), Recorder()
    a = train(tiny_spec(tokens=512 * 12, log_every=1, device="cpu"), whole)
    b = train(tiny_spec(tokens=512 * 12, log_every=1, micro_batch_tokens=128, device="cpu"), split)
    assert [x for _, x in split.series("train/loss")] == pytest.approx(
        [x for _, x in whole.series("train/loss")], abs=1e-5)
    assert b.final_eval_loss == pytest.approx(a.final_eval_loss, abs=1e-5)


def test_same_seed_same_result_other_seed_other_result():
    a, b = train(tiny_spec()), train(tiny_spec())
    c = train(tiny_spec(seed=1))
    assert a.final_eval_loss == b.final_eval_loss
    assert c.final_eval_loss != a.final_eval_loss


def test_bf16_autocast_trains_to_the_fp32_loss():
    fp32 = train(tiny_spec(precision="fp32"))
    bf16 = train(tiny_spec(precision="bf16"))
    assert bf16.final_eval_loss == pytest.approx(fp32.final_eval_loss, rel=0.02)
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    capability = torch.backends.cpu.get_cpu_capability()
    assert resolve_precision("auto", torch.device("cpu")) == cpu_auto_precision(), capability


def test_a_loss_far_above_its_minimum_stops_the_run_as_diverged():
    result = train(tiny_spec(lr=10.0, warmup=0.0, log_every=1))
    assert result.status == "diverged"
    assert "at step 2 is more than 3x its running minimum" in result.failure
    assert math.isnan(result.final_eval_loss) and result.steps == 2
    with pytest.raises(DivergedError, match=r"run diverged \(train/loss = .* at step 2"):
        result.summary()


def test_a_nan_loss_stops_the_run(monkeypatch):
    from scaling.training import model as model_module

    original = model_module.GPT.forward

    def poisoned(self, idx, targets=None):
        logits, loss = original(self, idx, targets)
        return logits, loss * float("nan")

    monkeypatch.setattr(model_module.GPT, "forward", poisoned)
    result = train(tiny_spec(log_every=1))
    assert (result.status, result.failure) == ("diverged", "train/loss = nan at step 1")


@pytest.mark.parametrize(
    ("train_settings", "message"),
    [
        ({"batch_tokens": 1000}, r"train.batch_tokens = 1000 is not a multiple of model.context = 32; use 992"),
        ({"batch_tokens": 16}, r"train.batch_tokens = 16 is not a multiple of model.context = 32; use 32"),
        ({"micro_batch_tokens": 96}, r"train.micro_batch_tokens = 96 must be a multiple of model.context = 32 that divides the 512"),
        ({"tokens": 100}, r"train.tokens = 100 is less than one batch of train.batch_tokens = 512"),
        ({"device": "tpu"}, r"train.device = 'tpu': use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_bad_run_settings_get_one_clear_error_and_write_nothing(tmp_path, train_settings, message):
    with pytest.raises(ConfigError, match=message):
        train(tiny_spec(checkpoint_every=1, **train_settings), checkpoint_dir=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when no GPU exists")
def test_asking_for_a_missing_gpu_is_an_error():
    with pytest.raises(ConfigError, match=r"train.device = 'cuda' but no CUDA GPU is visible"):
        train(tiny_spec(device="cuda"))


@pytest.mark.parametrize(
    ("name", "local_rank", "gpus", "expected"),
    [
        ("auto", 0, 0, "cpu"),
        ("auto", 0, 1, "cuda:0"),  # an index-less 'cuda' cannot be made the current device
        ("cuda", 0, 1, "cuda:0"),
        ("cuda", 3, 4, "cuda:3"),  # torchrun's local rank picks the GPU
        ("cuda:1", 0, 2, "cuda:1"),
        ("cpu", 1, 2, "cpu"),
    ],
)
def test_the_device_resolves_to_one_indexed_gpu_or_the_cpu(name, local_rank, gpus, expected):
    assert device_name(name, local_rank, gpus) == expected


@pytest.mark.parametrize(
    ("name", "gpus", "message"),
    [
        ("cuda:2", 2, r"train.device = 'cuda:2' but only 2 GPU\(s\) are visible \(cuda:0 to cuda:1\)"),
        ("cuda:x", 2, r"train.device = 'cuda:x': use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("cuda:0", 0, r"train.device = 'cuda:0' but no CUDA GPU is visible; use 'cpu'"),
        ("mps", 0, r"train.device = 'mps': use 'auto'"),
    ],
)
def test_a_device_that_is_not_there_is_one_clear_error(name, gpus, message):
    with pytest.raises(ConfigError, match=message):
        device_name(name, 0, gpus)


def test_a_vocabulary_smaller_than_the_data_is_refused():
    spec = tiny_spec().model_copy(update={"model": tiny_spec().model.model_copy(update={"vocab_size": 4})})
    with pytest.raises(ConfigError, match=r"model.vocab_size = 4 is smaller than the data's vocabulary of 8"):
        train(spec)


def test_ddp_batch_that_does_not_split_over_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match=r"is 16 sequences, which do not split over 3 processes"):
        train(tiny_spec())


def test_final_weights_reload_to_the_same_eval_loss(tmp_path):
    spec = tiny_spec()
    result = train(spec, checkpoint_dir=tmp_path)
    model, meta = load_model(tmp_path / "final.pt")
    assert meta["eval_loss"] == result.final_eval_loss
    assert meta["config"]["vocab_size"] == 8 and meta["spec"]["name"] == "tiny"
    data = prepare_data(spec.data)
    from scaling.training.data import eval_sequences

    batch = torch.from_numpy(__import__("numpy").stack(list(eval_sequences(data.eval, 32, 16_384))))
    with torch.no_grad():
        _, loss = model(batch[:, :-1], batch[:, 1:])
    assert loss.item() == pytest.approx(result.final_eval_loss, abs=1e-5)


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    train(tiny_spec(checkpoint_every=10), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"last.pt belongs to run [0-9a-f]{16}, not [0-9a-f]{16}"):
        train(tiny_spec(checkpoint_every=10, lr=2e-2), checkpoint_dir=tmp_path)


def test_a_finished_checkpoint_resumes_without_training_or_logging_again(tmp_path):
    first = train(tiny_spec(checkpoint_every=10), checkpoint_dir=tmp_path)
    recorder = Recorder()
    again = train(tiny_spec(checkpoint_every=10), recorder, checkpoint_dir=tmp_path)
    assert again.resumed_from_step == 40
    assert recorder.calls == [(40, {"perf/resume_step": 40.0})]  # the resume, nothing trained
    assert again.final_eval_loss == first.final_eval_loss and again.tokens == first.tokens


def test_the_seconds_spent_checkpointing_are_counted_and_logged(tmp_path, monkeypatch):
    import time

    from scaling.training import loop

    saved = loop._save_atomically

    def slow_save(payload, path):  # each write 30 ms slower: a disk that much slower
        time.sleep(0.03)
        saved(payload, path)

    monkeypatch.setattr(loop, "_save_atomically", slow_save)
    plain = train(tiny_spec(checkpoint_every=10))  # no checkpoint directory: nothing written
    assert plain.checkpoint_s == 0 and plain.timing()["perf/checkpoint_s"] == 0
    result = train(tiny_spec(checkpoint_every=10), checkpoint_dir=tmp_path)  # 4 of last.pt, final.pt
    assert 5 * 0.03 <= result.checkpoint_s < result.wall_s
    assert result.timing() == {"perf/wall_s": result.wall_s, "perf/mean_tokens_per_s": result.tokens_per_s,
                               "perf/resumed_from_step": 0.0, "perf/checkpoint_s": result.checkpoint_s}


def test_run_result_is_a_plain_record():
    result = RunResult("finished", None, 1.0, 2.0, 3, 4, 5, 6.0, 7.0, 8, 9.0, 10.0)
    assert result.to_dict()["resumed_from_step"] == 0 and result.to_dict()["checkpoint_s"] == 0


def test_auto_precision_on_cpu_keeps_small_models_in_fp32():
    """bf16 autocast measured slower than fp32 below 100K parameters on CPU; auto follows that."""
    from scaling.training.hardware import CPU_BF16_MIN_PARAMS

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, CPU_BF16_MIN_PARAMS - 1) == "fp32"
    assert resolve_precision("auto", cpu, CPU_BF16_MIN_PARAMS) == cpu_auto_precision()
    assert resolve_precision("auto", cpu, None) == cpu_auto_precision()  # None counts as large
    assert resolve_precision("bf16", cpu, 10) == "bf16"
