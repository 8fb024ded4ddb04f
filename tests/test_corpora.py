"""Corpora at size: streaming preparation, shards used in place, content identity, bad input."""

from __future__ import annotations

import gzip
import json
import lzma
import os

import numpy as np
import pytest

from scaling.cli import main
from scaling.config.run import DataConfig, RunSpec
from scaling.errors import DataError
from scaling.training import data as data_module
from scaling.training import preparation
from scaling.training import sources as sources_module
from scaling.training.data import corpus_hash, pin_corpus, prepare_data, vocab_size
from scaling.training.preparation import prepare_corpus
from scaling.training.sources import open_source


@pytest.fixture(autouse=True)
def _fresh_memo(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "_PREPARED", {})


def write_corpus(directory, count=30, suffix=".txt"):
    directory.mkdir(parents=True)
    for i in range(count):
        text = "".join(f"file {i} line {j}: naïve café {i * j}\n" for j in range(40))
        (directory / f"doc{i:02d}{suffix}").write_text(text)
    return directory


def cli(capsys, *args):
    """(exit code, stdout, stderr) of the command line, through its error gate."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tokens_of(data):
    return np.asarray(data.train).tolist(), np.asarray(data.eval).tolist()


def test_compressed_files_give_the_same_corpus(tmp_path):
    plain = write_corpus(tmp_path / "plain")
    reference = prepare_data(DataConfig(source=str(plain), eval_fraction=0.2))
    for suffix, opener in ((".gz", gzip.open), (".xz", lzma.open)):
        folder = tmp_path / suffix.strip(".")
        folder.mkdir()
        for path in plain.iterdir():
            with opener(folder / (path.stem + ".txt"), "wb") as handle:  # names as the plain ones
                handle.write(path.read_bytes())
            os.rename(folder / (path.stem + ".txt"), folder / (path.name + suffix))
        # the document names carry the suffix, so compare tokens as a multiset per split
        data = prepare_data(DataConfig(source=str(folder), glob=f"*.txt{suffix}", eval_fraction=0.2))
        assert len(data.train) + len(data.eval) == len(reference.train) + len(reference.eval)
        assert sorted(np.asarray(data.train).tolist() + np.asarray(data.eval).tolist()) == sorted(
            sum(tokens_of(reference), []))


def test_zstd_jsonl_reads_every_record(tmp_path):
    import zstandard

    records = [json.dumps({"text": f"record {i} says hi"}) for i in range(25)]
    path = tmp_path / "docs.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress("\n".join(records).encode()))
    data = prepare_data(DataConfig(source=str(path)))
    assert data.manifest["source"]["kind"] == "jsonl"
    assert sum(data.manifest["documents"].values()) == 25
    assert len(data.train) + len(data.eval) == sum(len(f"record {i} says hi") for i in range(25))
    (tmp_path / "broken.jsonl.zst").write_bytes(b"not zstd at all")
    with pytest.raises(DataError, match=r"broken.jsonl.zst'.*check that the file is whole"):
        prepare_data(DataConfig(source=str(tmp_path / "broken.jsonl.zst")))


def test_jsonl_files_inside_a_directory_give_a_document_per_record(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    for shard in range(3):
        lines = [json.dumps({"body": f"shard {shard} record {i}"}) for i in range(10)]
        with gzip.open(folder / f"part-{shard}.jsonl.gz", "wt") as handle:
            handle.write("\n".join(lines) + "\n")
    data = prepare_data(DataConfig(source=str(folder), glob="*.jsonl.gz", text_field="body"))
    assert sum(data.manifest["documents"].values()) == 30
    names = data.manifest["eval_documents"]
    assert names and all(n.startswith("part-") and ".jsonl.gz:" in n for n in names)


def test_long_documents_stream_in_pieces_with_the_same_tokens_and_hash(tmp_path, monkeypatch):
    folder = write_corpus(tmp_path / "corpus", count=6)
    book = tmp_path / "book.txt"
    book.write_text("".join(f"para {i} é\n" * (i % 7 + 1) + "\n" for i in range(300)))
    whole = [prepare_data(DataConfig(source=str(p), eval_fraction=0.3)) for p in (folder, book)]
    data_module._PREPARED.clear()
    monkeypatch.setattr(sources_module, "PIECE_BYTES", 37)  # every document in many pieces
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path / "other-cache"))
    pieced = [prepare_data(DataConfig(source=str(p), eval_fraction=0.3)) for p in (folder, book)]
    for a, b in zip(whole, pieced, strict=True):
        assert a.corpus_hash == b.corpus_hash
        assert tokens_of(a) == tokens_of(b)
        assert a.manifest["documents"] == b.manifest["documents"]


def test_two_worker_processes_write_the_same_shards_as_one(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", count=12)
    source = open_source(DataConfig(source=str(corpus)))
    one = prepare_corpus(source, tmp_path / "one", tokenizer="bytes", workers=1)
    two = prepare_corpus(source, tmp_path / "two", tokenizer="bytes", workers=2)
    assert one["content_hash"] == two["content_hash"] and one["tokens"] == two["tokens"]
    for split in ("train", "eval"):
        for name in one["shards"][split]:
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_bpe_with_two_workers_matches_one(tmp_path, monkeypatch):
    monkeypatch.setattr(preparation, "TOKENIZER_BATCH_BYTES", 2000)  # several batches per worker
    corpus = write_corpus(tmp_path / "corpus", count=12)
    source = open_source(DataConfig(source=str(corpus)))
    one = prepare_corpus(source, tmp_path / "one", tokenizer="bpe", bpe_vocab_size=300, workers=1)
    tokenizer = str(tmp_path / "one" / "tokenizer.json")
    two = prepare_corpus(source, tmp_path / "two", tokenizer=tokenizer, workers=2)
    assert one["vocab_size"] == two["vocab_size"] == 300 and one["tokens"] == two["tokens"]
    assert one["bytes_per_token"] > 1.5
    for split in ("train", "eval"):
        a = np.concatenate([np.fromfile(tmp_path / "one" / n, np.uint16) for n in one["shards"][split]])
        b = np.concatenate([np.fromfile(tmp_path / "two" / n, np.uint16) for n in two["shards"][split]])
        np.testing.assert_array_equal(a, b)


def test_a_prepared_directory_is_used_in_place(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus")
    code, out, err = cli(capsys, "data", "prepare", corpus, "-o", tmp_path / "ready", "--output", "json")
    assert code == 0, err
    manifest = json.loads(out)
    assert manifest["format"] == "scaling-tokens/2" and manifest["dtype"] == "uint16"
    config = DataConfig(source=str(tmp_path / "ready"))
    data = prepare_data(config)
    assert data.path == tmp_path / "ready" and data.corpus_hash == manifest["content_hash"]
    assert not (tmp_path / "cache").exists()  # nothing copied into the cache
    assert isinstance(data.train.maps[0], np.memmap)
    assert vocab_size(config) == 256 and corpus_hash(config) == manifest["content_hash"]
    direct = prepare_data(DataConfig(source=str(corpus)))  # the same text through the cache
    assert direct.corpus_hash == data.corpus_hash and tokens_of(direct) == tokens_of(data)
    with pytest.raises(DataError, match=r"does not match the tokenizer 'bytes'.*leave data.tokenizer"):
        prepare_data(DataConfig(source=str(tmp_path / "ready"), tokenizer="bpe"))


def test_a_nanogpt_bin_is_used_in_place_and_its_identity_cached(tmp_path, monkeypatch):
    tokens = (np.arange(50_000) % 3000).astype(np.uint16)
    path = tmp_path / "train.bin"
    tokens.tofile(path)
    config = DataConfig(source=str(path), eval_fraction=0.1)
    data = prepare_data(config)
    assert data.train.paths == [path] and len(data.eval) == 5000 and data.vocab_size == 3000
    cached = list((tmp_path / "cache").rglob("*"))
    assert all(p.suffix == ".json" or p.is_dir() for p in cached)  # no tokens copied
    first = corpus_hash(config)
    data_module._PREPARED.clear()
    monkeypatch.setattr(data_module.np, "memmap", None)  # the record is cached: no reading
    assert corpus_hash(config) == first and vocab_size(config) == 3000
    monkeypatch.undo()
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path / "cache"))
    tokens[7] = 2999
    tokens.tofile(path)
    os.utime(path, ns=(1, 1))
    assert corpus_hash(config) != first  # an edited file is a new corpus


def test_a_uint32_bin_holds_ids_above_65535(tmp_path):
    tokens = np.array([0, 70_000, 5, 100_000] * 1000, dtype=np.uint32)
    tokens.tofile(tmp_path / "big.bin")
    data = prepare_data(DataConfig(source=str(tmp_path / "big.bin"), bin_dtype="uint32"))
    assert data.vocab_size == 100_001 and int(np.asarray(data.train).max()) == 100_000
    (tmp_path / "odd.bin").write_bytes(b"\x00" * 6)
    with pytest.raises(DataError, match=r"odd.bin' holds 6 bytes, not a whole number of uint32"):
        prepare_data(DataConfig(source=str(tmp_path / "odd.bin"), bin_dtype="uint32"))


def test_the_run_key_names_the_corpus_content(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    pinned = pin_corpus(DataConfig(source=str(corpus)))
    spec = RunSpec(data=pinned)
    assert pinned.content_hash == corpus_hash(DataConfig(source=str(corpus)))
    (corpus / "doc03.txt").write_text("other text entirely\n")
    data_module._PREPARED.clear()
    repinned = pin_corpus(DataConfig(source=str(corpus)))
    assert repinned.content_hash != pinned.content_hash
    assert RunSpec(data=repinned).run_key != spec.run_key  # same path, other data: another run
    # a run planned on the old data refuses to train on the new
    with pytest.raises(DataError, match=r"content hash is .*not the .* in data.content_hash"):
        prepare_data(pinned)
    with pytest.raises(DataError, match=r"data.content_hash = .* does not match the corpus"):
        pin_corpus(pinned)


def test_a_sweep_plan_pins_the_corpus_in_every_run_key(tmp_path):
    from scaling.sweeps.planning import expand, load_sweep

    corpus = write_corpus(tmp_path / "corpus")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"name: s\ndata: {{source: {corpus}}}\nmodel: {{n_layer: 1, n_head: 1, context: 16}}\n"
        "ladder: {tokens_per_param: [2], shapes: [{d_model: 8}, {d_model: 12}]}\n")
    specs = expand(load_sweep(sweep))
    expected = corpus_hash(DataConfig(source=str(corpus)))
    assert {s.data.content_hash for s in specs} == {expected}
    (corpus / "doc00.txt").write_text("edited\n")
    data_module._PREPARED.clear()
    again = expand(load_sweep(sweep))
    assert {s.run_key for s in again}.isdisjoint({s.run_key for s in specs})


def test_training_on_a_prepared_directory_records_its_hash(tmp_path, capsys):
    from scaling.training.loop import train

    corpus = write_corpus(tmp_path / "corpus", count=40)
    code, _, err = cli(capsys, "data", "prepare", corpus, "-o", tmp_path / "ready", "--eval-fraction", "0.3")
    assert code == 0, err
    spec = RunSpec.model_validate({
        "data": {"source": str(tmp_path / "ready"), "eval_tokens": 512},
        "model": {"n_layer": 1, "d_model": 8, "n_head": 1, "context": 16},
        "train": {"tokens": 1024, "batch_tokens": 128, "precision": "fp32", "device": "cpu"},
    })
    run = train(spec, checkpoint_dir=tmp_path / "ckpt")
    assert run.status == "finished"
    import torch

    final = torch.load(tmp_path / "ckpt" / "final.pt", weights_only=False)
    manifest = json.loads((tmp_path / "ready" / "manifest.json").read_text())
    assert final["data"]["corpus_hash"] == manifest["content_hash"]
    assert final["spec"]["data"]["content_hash"] == manifest["content_hash"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, r"no files match data.glob"),
        ({"a.txt": b"good text\n", "b.txt": b"caf\xe9\n"}, r"b.txt' is not UTF-8 text \(bad byte at offset 3\)"),
        ({"a.txt": b"", "b.txt": b""}, r"is empty; give a corpus with text"),
        ({"a.jsonl": b'{"text": "x"}\n{"body": "y"}\n'}, r"a.jsonl: line 2 has no text field 'text'"),
        ({"a.txt.gz": b"not gzip"}, r"a.txt.gz'.*check that the file is whole"),
    ],
)
def test_bad_corpora_fail_in_one_line_and_leave_nothing(tmp_path, capsys, files, message):
    folder = tmp_path / "src"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    pattern = "*.jsonl" if any(n.endswith(".jsonl") for n in files) else "*.txt*"
    out = tmp_path / "out" / "ready"
    code, stdout, err = cli(capsys, "data", "prepare", folder, "--glob", pattern, "-o", out)
    assert code != 0 and not stdout
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("ready:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert __import__("re").search(message, lines[0]), lines[0]
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_prepare_refuses_an_existing_output_and_a_missing_source(tmp_path, capsys):
    (tmp_path / "exists").mkdir()
    corpus = write_corpus(tmp_path / "corpus", count=3)
    code, _, err = cli(capsys, "data", "prepare", corpus, "-o", tmp_path / "exists")
    assert code != 0 and "exists; choose a new directory or pass --overwrite" in err
    code, _, err = cli(capsys, "data", "prepare", tmp_path / "nope", "-o", tmp_path / "x")
    assert code != 0 and "no such file or directory" in err
    code, _, err = cli(capsys, "data", "info", tmp_path / "exists")
    assert code != 0 and "not a readable manifest" in err


def test_prepare_reports_progress_as_plain_lines_in_a_log(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", count=5)
    code, out, err = cli(capsys, "data", "prepare", corpus, "-o", tmp_path / "ready")
    assert code == 0, err
    assert "done, 100% of" in err and "tokens" in err  # progress on stderr, plain lines
    assert "content hash" in out and "--set data.source=" in out
    code, out, _ = cli(capsys, "data", "info", tmp_path / "ready")
    assert code == 0 and "content hash" in out
