"""Corpus preparation at size: throughput, peak memory and time to the first step.

Prints JSON lines, each with the baseline measured in the same run and the ratio:

- ``prepare_bytes``: `scaling data prepare` with byte tokens on S MB of text (a directory of
  ~1 MB files), against the limit of the same machine: reading the same files and writing their
  bytes as uint16 with numpy, no tokenizer (goal: >= 50% of it). Peak resident memory of the
  whole process tree (goal: <= 1 GB and flat as S grows).
- ``prepare_bpe``: the same with a BPE tokenizer.json and K workers, against the tokenizers
  library's own ``encode_batch`` on the same text with K threads (goal: >= 80% of it).
- ``first_step``: seconds from ``train()`` called on the prepared corpus to its first optimizer
  step, in a worker process that has trained a run before (goal: < 2 s); beside it the time to
  open the corpus alone and the process's first run (which pays torch's lazy imports, on a
  synthetic corpus).

The corpus is generated on the fly from the embedded corpus's files, shuffled with a seed and
concatenated until S MB, so nothing large is committed.

    python benchmarks/data_prepare.py --sizes 100,300,1000 --bpe-size 100 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from scaling.training.sources import EMBEDDED_CORPUS


def make_corpus(directory: Path, megabytes: int, seed: int = 0) -> int:
    """Write ``megabytes`` MB of text as ~1 MB files of shuffled standard-library sources."""
    with tarfile.open(EMBEDDED_CORPUS, "r:xz") as archive:
        texts = [archive.extractfile(m).read() for m in archive if m.isfile() and m.size]
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    written, index, target = 0, 0, megabytes * 1_000_000
    while written < target:
        chunk, size = [], 0
        while size < 1_000_000:
            text = texts[int(rng.integers(len(texts)))]
            chunk.append(text)
            size += len(text)
        (directory / f"part-{index:05d}.txt").write_bytes(b"".join(chunk))
        written, index = written + size, index + 1
    return written


def run_measured(code: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS of the process tree in MB, stdout) of ``python -c code``."""
    started = time.perf_counter()
    process = psutil.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                           env={**os.environ, **(env or {})})
    peak = 0.0
    while process.poll() is None:
        try:
            tree = [process] + process.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()) / 1e6)
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    out = process.stdout.read().decode()
    if process.returncode:
        raise SystemExit(f"benchmark step failed ({process.returncode}): {code}")
    return seconds, peak, out


PREPARE = """
import sys, time
from pathlib import Path
from scaling.config.run import DataConfig
from scaling.training.preparation import prepare_corpus
from scaling.training.sources import open_source
started = time.perf_counter()
source = open_source(DataConfig(source={source!r}, glob="*.txt"))
prepare_corpus(source, Path({out!r}), tokenizer={tokenizer!r}, workers={workers})
print(time.perf_counter() - started)
"""

BYTES_LIMIT = """
import time
import numpy as np
from pathlib import Path
started = time.perf_counter()
with open({out!r}, "wb") as handle:
    for path in sorted(Path({source!r}).glob("*.txt")):
        np.frombuffer(path.read_bytes(), dtype=np.uint8).astype(np.uint16).tofile(handle)
print(time.perf_counter() - started)
"""

ENCODE_BATCH = """
import time
from pathlib import Path
from tokenizers import Tokenizer
tok = Tokenizer.from_file({tokenizer!r})
texts = [p.read_text() for p in sorted(Path({source!r}).glob("*.txt"))]
t = time.perf_counter()
for i in range(0, len(texts), 16):
    tok.encode_batch(texts[i:i + 16])
print(time.perf_counter() - t)
"""

FIRST_STEP = """
import time, json
from scaling.config.run import RunSpec
from scaling.training.data import prepare_data
from scaling.training.loop import train

def spec(source):
    return RunSpec.model_validate({{"data": {{"source": source, "eval_tokens": 4096}},
        "model": {{"n_layer": 1, "d_model": 16, "n_head": 1, "context": 32}},
        "train": {{"tokens": 2048, "batch_tokens": 256, "precision": "fp32", "device": "cpu"}}}})

def first_step(source):
    first = []
    started = time.perf_counter()
    train(spec(source), progress=lambda step, steps, metrics: first.append(time.perf_counter()))
    return first[0] - started

cold = first_step("synthetic")  # the process's first run: pays torch's own lazy imports
warm = first_step({source!r})  # the same process, the prepared corpus, never opened before
started = time.perf_counter()
prepare_data(spec({source!r}).data)
opened = time.perf_counter() - started
from scaling.training import data
data._PREPARED.clear()
started = time.perf_counter()
prepare_data(spec({source!r}).data)
reopened = time.perf_counter() - started
print(json.dumps({{"cold_first_run": cold, "warm": warm, "open_s": reopened}}))
"""


def line(**payload) -> None:
    print(json.dumps(payload), flush=True)


def bytes_case(work: Path, megabytes: int, repeats: int) -> None:
    """Ours and the limit alternately, ``repeats`` times each (the files hot in the page cache
    for both), the best of each."""
    import shutil

    source = work / f"text-{megabytes}"
    total = make_corpus(source, megabytes)
    ours, limits, peaks, limit_peaks, walls = [], [], [], [], []
    for _ in range(repeats):
        _, limit_peak, out = run_measured(BYTES_LIMIT.format(source=str(source), out=str(work / "limit.bin")))
        limits.append(float(out.strip().splitlines()[-1]))
        limit_peaks.append(limit_peak)
        (work / "limit.bin").unlink()
        target = work / f"bytes-{megabytes}"
        shutil.rmtree(target, ignore_errors=True)
        wall, peak, out = run_measured(PREPARE.format(
            source=str(source), out=str(target), tokenizer="bytes", workers=1))
        ours.append(float(out.strip().splitlines()[-1]))
        peaks.append(peak)
        walls.append(wall)
    best, limit = min(ours), min(limits)
    line(benchmark="prepare_bytes", megabytes=round(total / 1e6), repeats=repeats,
         seconds=round(best, 2), all_seconds=[round(x, 2) for x in ours],
         wall_seconds_with_startup=round(min(walls), 2), mb_per_s=round(total / best / 1e6, 1),
         limit_seconds=round(limit, 2), all_limit_seconds=[round(x, 2) for x in limits],
         limit_mb_per_s=round(total / limit / 1e6, 1), ratio=round(limit / best, 3),
         peak_rss_mb=round(max(peaks)), limit_peak_rss_mb=round(max(limit_peaks)), goal_ratio=0.5)


def bpe_case(work: Path, megabytes: int, workers: int) -> None:
    source = work / f"text-{megabytes}"
    if not source.exists():
        make_corpus(source, megabytes)
    total = sum(p.stat().st_size for p in source.glob("*.txt"))
    trained = work / "bpe-trained"
    _, _, out = run_measured(PREPARE.format(source=str(source), out=str(trained), tokenizer="bpe",
                                            workers=workers))
    train_s = float(out.strip().splitlines()[-1])
    tokenizer = str(trained / "tokenizer.json")
    _, peak, out = run_measured(PREPARE.format(source=str(source), out=str(work / "bpe-json"),
                                               tokenizer=tokenizer, workers=workers))
    ours = float(out.strip().splitlines()[-1])
    env = {"RAYON_NUM_THREADS": str(workers), "TOKENIZERS_PARALLELISM": "true"}
    _, _, out = run_measured(ENCODE_BATCH.format(tokenizer=tokenizer, source=str(source)), env)
    encode = float(out.strip())
    line(benchmark="prepare_bpe", megabytes=round(total / 1e6), workers=workers, seconds=round(ours, 2),
         mb_per_s=round(total / ours / 1e6, 2), encode_batch_seconds=round(encode, 2),
         encode_batch_mb_per_s=round(total / encode / 1e6, 2), ratio=round(encode / ours, 3),
         with_bpe_training_seconds=round(train_s, 2), peak_rss_mb=round(peak), goal_ratio=0.8)


def first_step_case(work: Path, megabytes: int) -> None:
    prepared = work / f"bytes-{megabytes}"
    _, _, out = run_measured(FIRST_STEP.format(source=str(prepared)))
    measured = json.loads(out.strip().splitlines()[-1])
    line(benchmark="first_step", megabytes=megabytes, seconds=round(measured["warm"], 3),
         open_corpus_seconds=round(measured["open_s"], 4),
         process_first_run_seconds=round(measured["cold_first_run"], 3), goal_seconds=2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000", help="MB of text for the byte cases")
    parser.add_argument("--bpe-size", type=int, default=100, help="MB of text for the BPE case (0: skip)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of the byte cases")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        work = Path(folder)
        os.environ["SCALING_CACHE_DIR"] = str(work / "cache")
        for megabytes in sizes:
            bytes_case(work, megabytes, args.repeats)
        if sizes:
            first_step_case(work, max(sizes))
        if args.bpe_size:
            bpe_case(work, args.bpe_size, args.workers)


if __name__ == "__main__":
    main()
