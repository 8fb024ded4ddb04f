"""Corpora, tokenizers, the token cache, the synthetic source's entropy and batches."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from scaling.config.run import DataConfig, SyntheticConfig
from scaling.errors import DataError
from scaling.training import data as data_module
from scaling.training import preparation
from scaling.training import sources as sources_module
from scaling.training.data import (
    ByteTokenizer,
    JsonTokenizer,
    cache_dir,
    corpus_hash,
    eval_sequences,
    prepare_data,
    sample_batch,
)
from scaling.training.preparation import is_eval_document
from scaling.training.sources import EMBEDDED_CORPUS, EMBEDDED_HASH, MarkovSource


@pytest.fixture(autouse=True)
def _fresh_memo(tmp_path, monkeypatch):
    """A private cache per test, and no in-process memo carried between tests."""
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "_PREPARED", {})


def write_corpus(directory, count=40):
    directory.mkdir()
    for i in range(count):
        (directory / f"doc{i:02d}.txt").write_text(f"document {i} says hello number {i * 7}\n" * 20)
    return directory


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SCALING_CACHE_DIR", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.delenv("SCALING_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "scaling"


def test_directory_corpus_splits_by_document_and_records_what_it_read(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    data = prepare_data(DataConfig(source=str(corpus), eval_fraction=0.2))
    manifest = data.manifest
    names = sorted(f"doc{i:02d}.txt" for i in range(40))
    held = [n for n in names if is_eval_document(n, 0.2)]
    assert manifest["eval_documents"] == held and 0 < len(held) < 40
    assert manifest["documents"] == {"train": 40 - len(held), "eval": len(held)}
    sizes = {n: (corpus / n).stat().st_size for n in names}
    # bytes tokenizer: exactly one token per byte, and the splits hold exactly their documents
    assert data.bytes_per_token == 1.0
    assert len(data.eval) == sum(sizes[n] for n in held) == manifest["bytes"]["eval"]
    assert len(data.train) + len(data.eval) == sum(sizes.values())
    eval_text = bytes(np.asarray(data.eval, dtype=np.uint8)).decode()
    train_text = bytes(np.asarray(data.train, dtype=np.uint8)).decode()
    for name in held:  # every held-out document's unique line is absent from train
        number = int(name[3:5])
        assert f"document {number} says" in eval_text
        assert f"document {number} says" not in train_text
    # the content hash is SHA-256 over name, NUL, text, NUL of every document in order
    hasher = hashlib.sha256()
    for name in names:
        hasher.update(name.encode() + b"\x00" + (corpus / name).read_bytes() + b"\x00")
    assert data.corpus_hash == hasher.hexdigest()
    assert data.bits_per_byte(math.log(2)) == pytest.approx(1.0)


def test_cache_is_reused_and_keyed_by_content(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    first = prepare_data(DataConfig(source=str(corpus)))
    stamp = (first.path / "train-00000.bin").stat().st_mtime_ns
    data_module._PREPARED.clear()
    again = prepare_data(DataConfig(source=str(corpus)))
    assert again.path == first.path and (again.path / "train-00000.bin").stat().st_mtime_ns == stamp
    (corpus / "doc00.txt").write_text("changed text\n")
    data_module._PREPARED.clear()
    changed = prepare_data(DataConfig(source=str(corpus)))
    assert changed.corpus_hash != first.corpus_hash and changed.path != first.path


def test_a_cached_corpus_is_not_read_again_at_run_start(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus")
    first = prepare_data(DataConfig(source=str(corpus)))
    data_module._PREPARED.clear()

    def no_reading(*args, **kwargs):
        raise AssertionError("the corpus was read again")

    monkeypatch.setattr(sources_module, "_open_binary", no_reading)
    again = prepare_data(DataConfig(source=str(corpus)))
    assert again.corpus_hash == first.corpus_hash
    assert corpus_hash(DataConfig(source=str(corpus))) == first.corpus_hash


def test_a_crash_while_writing_leaves_no_cache_entry(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus")

    def crash(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(preparation, "_encode", crash)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        prepare_data(DataConfig(source=str(corpus)))
    assert list((tmp_path / "cache").iterdir()) == []  # neither an entry nor a temporary


def test_text_file_documents_are_blank_line_separated_blocks(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("".join(f"paragraph {i}\nline two\n\n" for i in range(50)))
    data = prepare_data(DataConfig(source=str(path), eval_fraction=0.1))
    assert sum(data.manifest["documents"].values()) == 50
    assert len(data.train) + len(data.eval) == len(path.read_bytes())
    held = [f"book.txt#{i}" for i in range(50) if is_eval_document(f"book.txt#{i}", 0.1)]
    assert data.manifest["eval_documents"] == held


def test_jsonl_reads_the_configured_field(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"body": f"text number {i}"}) for i in range(30)))
    data = prepare_data(DataConfig(source=str(path), text_field="body"))
    assert len(data.train) + len(data.eval) == sum(len(f"text number {i}") for i in range(30))
    with pytest.raises(DataError, match=r"line 1 has no text field 'text'; set data.text_field"):
        data_module._PREPARED.clear()
        prepare_data(DataConfig(source=str(path)))


def test_jsonl_line_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(DataError, match=r"docs.jsonl: line 2 is not JSON"):
        prepare_data(DataConfig(source=str(path)))


def test_nanogpt_bin_with_and_without_val_file(tmp_path):
    tokens = (np.arange(10_000) % 1000).astype(np.uint16)
    path = tmp_path / "train.bin"
    tokens.tofile(path)
    data = prepare_data(DataConfig(source=str(path), eval_fraction=0.1))
    assert (len(data.train), len(data.eval), data.vocab_size) == (9000, 1000, 1000)
    assert math.isnan(data.bytes_per_token)
    np.testing.assert_array_equal(np.asarray(data.eval), tokens[9000:])
    tokens[:500].tofile(tmp_path / "val.bin")
    data_module._PREPARED.clear()
    with_val = prepare_data(DataConfig(source=str(path)))
    assert (len(with_val.train), len(with_val.eval)) == (10_000, 500)


def test_bpe_is_trained_locally_on_the_training_split(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    data = prepare_data(DataConfig(source=str(corpus), tokenizer="bpe", bpe_vocab_size=300))
    assert data.vocab_size == 300
    assert (data.path / "tokenizer.json").is_file()
    assert data.bytes_per_token > 1.5  # merges make tokens longer than a byte
    text = "document 3 says hello number 21\n"
    assert data.tokenizer.decode(data.tokenizer.encode(text)) == text
    # the saved file works as a user's tokenizer.json, with the same vocabulary
    user = JsonTokenizer(data.path / "tokenizer.json")
    assert user.encode(text) == data.tokenizer.encode(text)
    data_module._PREPARED.clear()
    reused = prepare_data(DataConfig(source=str(corpus), tokenizer=str(data.path / "tokenizer.json")))
    np.testing.assert_array_equal(np.asarray(reused.train), np.asarray(data.train))


def test_byte_tokenizer_round_trips_unicode():
    tokenizer = ByteTokenizer()
    text = "naïve — ünïcödé\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer.encode(text)) == len(text.encode())


def test_markov_entropy_rate_matches_the_two_state_closed_form():
    source = MarkovSource(SyntheticConfig(alphabet=2, order=1, seed=3))
    p01, p10 = source.transition[0, 1], source.transition[1, 0]

    def h(p):
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))

    pi0 = p10 / (p01 + p10)
    assert source.entropy_rate == pytest.approx(pi0 * h(p01) + (1 - pi0) * h(p10), rel=1e-10)


def test_markov_entropy_rate_matches_the_empirical_conditional_entropy():
    config = SyntheticConfig(alphabet=4, order=2, concentration=0.5, seed=1)
    source = MarkovSource(config)
    symbols = source.generate(300_000).astype(np.int64)
    history = symbols[:-2] * 4 + symbols[1:-1]
    counts = np.zeros((16, 4))
    np.add.at(counts, (history, symbols[2:]), 1)
    conditional = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        plug_in = -np.nansum(counts * np.log(conditional)) / counts.sum()
    assert plug_in == pytest.approx(source.entropy_rate, abs=0.01)
    frequency = np.bincount(history, minlength=16) / len(history)
    np.testing.assert_allclose(frequency, source.stationary, atol=0.01)


def test_synthetic_source_is_seeded_and_exposes_its_floor():
    config = DataConfig(source="synthetic", synthetic={"tokens": 20_000, "alphabet": 8, "seed": 5})
    data = prepare_data(config)
    assert data.vocab_size == 8 and len(data.train) + len(data.eval) == 20_000
    assert data.entropy_rate == pytest.approx(MarkovSource(config.synthetic).entropy_rate)
    assert 0 < data.entropy_rate < math.log(8)
    np.testing.assert_array_equal(
        np.concatenate([data.train, data.eval]), MarkovSource(config.synthetic).generate(20_000)
    )


def test_synthetic_source_too_many_histories_is_refused():
    with pytest.raises(DataError, match=r"alphabet \*\* order = 4294967296 histories.*lower"):
        MarkovSource(SyntheticConfig(alphabet=256, order=4))


def test_batches_depend_only_on_seed_and_step():
    tokens = np.arange(1000, dtype=np.uint16)
    a = sample_batch(tokens, 16, 4, seed=0, step=7)
    assert a.shape == (4, 17) and a.dtype == np.int64
    np.testing.assert_array_equal(a, sample_batch(tokens, 16, 4, seed=0, step=7))
    assert not np.array_equal(a, sample_batch(tokens, 16, 4, seed=0, step=8))
    assert np.all(np.diff(a, axis=1) == 1)  # contiguous windows of the stream
    with pytest.raises(DataError, match=r"training split has 10 tokens.*smaller model.context"):
        sample_batch(tokens[:10], 16, 4, seed=0, step=0)


def test_eval_sequences_are_fixed_non_overlapping_windows():
    tokens = np.arange(100, dtype=np.uint16)
    windows = list(eval_sequences(tokens, context=10, max_tokens=45))
    assert len(windows) == 4
    assert [int(w[0]) for w in windows] == [0, 10, 20, 30] and len(windows[0]) == 11
    with pytest.raises(DataError, match=r"eval split has 5 tokens.*raise data.eval_fraction"):
        list(eval_sequences(tokens[:5], context=10, max_tokens=100))


def test_the_embedded_corpus_is_the_recorded_one():
    """The default corpus ships in the package: its content is checked against the hash
    recorded beside it, so the demo's corpus is the same on every machine."""
    import tarfile

    hasher, names = hashlib.sha256(), []
    with tarfile.open(EMBEDDED_CORPUS, "r:xz") as archive:
        for member in archive:
            text = archive.extractfile(member).read()
            text.decode("utf-8")
            names.append(member.name)
            hasher.update(member.name.encode() + b"\x00" + text + b"\x00")
    assert hasher.hexdigest() == EMBEDDED_HASH
    assert len(names) == 1786 and names == sorted(names)
    assert {"os.py", "json/decoder.py", "test/test_os.py"} <= set(names)


@pytest.mark.slow
def test_python_stdlib_is_the_default_corpus():
    data = prepare_data(DataConfig())
    assert data.corpus_hash == EMBEDDED_HASH
    assert sum(data.manifest["documents"].values()) == 1758  # 28 files are empty
    assert data.vocab_size == 256 and len(data.train) + len(data.eval) == 31_512_078
    assert data.manifest["source"]["kind"] == "embedded"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, r"missing.txt': no such file or directory"),
        ("empty.txt", b"", r"empty.txt' is empty"),
        ("blob.txt", b"\x00\x01binary", r"blob.txt' is a binary file, not text"),
        ("latin.txt", b"caf\xe9\n\nmore\n",
         r"latin.txt' is not UTF-8 text \(bad byte at offset 3\); convert it"),
        ("one.txt", b"a single paragraph\n", r"has 1 document\(s\); need at least 2"),
        ("odd.bin", b"\x01\x02\x03", r"odd.bin' holds 3 bytes, not a whole number of uint16"),
        ("nope.bin", None, r"nope.bin': no such file; give an existing .bin"),
    ],
)
def test_unusable_corpora_get_one_clear_error_and_no_cache(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        prepare_data(DataConfig(source=str(path)))
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_empty_directory_glob_is_named(tmp_path):
    (tmp_path / "docs").mkdir()
    with pytest.raises(DataError, match=r"no files match data.glob = '\*\*/\*.txt'"):
        prepare_data(DataConfig(source=str(tmp_path / "docs")))


def test_missing_tokenizer_file_is_named(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    with pytest.raises(DataError, match=r"data.tokenizer = 'nope.json': no such file"):
        prepare_data(DataConfig(source=str(corpus), tokenizer="nope.json"))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match=r"not a readable tokenizer.json"):
        JsonTokenizer(tmp_path / "bad.json")


def test_a_vocabulary_above_65536_gets_uint32_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = {f"w{i}": i for i in range(70_000)}
    big = Tokenizer(models.WordLevel(words, unk_token="w0"))
    big.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    big.save(str(tmp_path / "big.json"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"d{i}.txt").write_text(f"w69999 w{i} w65536 w1\n")
    data = prepare_data(DataConfig(source=str(corpus), tokenizer=str(tmp_path / "big.json")))
    assert data.manifest["dtype"] == "uint32" and data.vocab_size == 70_000
    tokens = np.concatenate([np.asarray(data.train), np.asarray(data.eval)])
    assert tokens.dtype == np.uint32 and sorted(set(tokens.tolist())) == [0, 1, 2, 65536, 69999]


def test_tokenizer_cannot_apply_to_synthetic_or_bin(tmp_path):
    with pytest.raises(DataError, match=r"cannot apply to the synthetic source"):
        prepare_data(DataConfig(source="synthetic", tokenizer="bpe"))
    np.arange(100, dtype=np.uint16).tofile(tmp_path / "t.bin")
    with pytest.raises(DataError, match=r"cannot apply to a .bin source"):
        prepare_data(DataConfig(source=str(tmp_path / "t.bin"), tokenizer="bpe"))


def test_the_plan_and_the_trainer_share_one_vocabulary_on_a_small_bpe_corpus(tmp_path):
    """A small corpus learns fewer merges than asked for: the plan's vocabulary (and so its N,
    C and the logged model.vocab_size) is the one the trained tokenizer has, not bpe_vocab_size."""
    from scaling.config.run import ModelConfig
    from scaling.sweeps.planning import model_vocab_size
    from scaling.training.data import vocab_size

    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n\n".join(f"line {i} of a very small corpus" for i in range(40)))
    config = DataConfig(source=str(corpus), tokenizer="bpe", bpe_vocab_size=4096)
    trained = prepare_data(config).vocab_size
    assert trained < 4096
    assert vocab_size(config) == trained
    model = ModelConfig(n_layer=1, d_model=8, n_head=1, context=16)
    assert model_vocab_size(model, config) == trained
    assert model_vocab_size(model.model_copy(update={"vocab_size": 5000}), config) == 5000
    assert vocab_size(DataConfig(source=str(corpus))) == 256
