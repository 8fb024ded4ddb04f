"""``scaling data``: prepare a corpus into token shards once, and describe a prepared one.

The work is :func:`scaling.training.preparation.prepare_corpus`; this module reads the
options, shows the progress (a rich bar on a terminal, plain lines in a log file) and prints
the manifest.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from scaling.cli.options import emit_json, output_option

__all__ = ["data_group"]


@click.group("data")
def data_group() -> None:
    """Prepare corpora into token shards that runs use in place."""


def _progress_printer(label: str) -> tuple[Any, Any]:
    """(callback, stop) showing a preparation's progress on stderr."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
            TextColumn("{task.fields[tokens]} tokens"), TextColumn("{task.fields[speed]} MB/s"),
            TimeElapsedColumn(), console=Console(stderr=True),
        )
        task = bar.add_task(label, total=None, tokens="0", speed="-")

        def show(progress: Any) -> None:
            bar.start()
            elapsed = max(1e-9, time.perf_counter() - progress.started)
            bar.update(task, completed=progress.disk_bytes, total=progress.total_disk_bytes,
                       description=f"{label} ({progress.phase})",
                       tokens=f"{progress.tokens:,}", speed=f"{progress.text_bytes / elapsed / 1e6:.1f}")

        return show, bar.stop
    last = [0.0]

    def show_plain(progress: Any) -> None:  # a log file: a line every 10 s and at the end
        now = time.perf_counter()
        if now - last[0] < 10 and progress.phase != "done":
            return
        last[0] = now
        elapsed = max(1e-9, now - progress.started)
        share = progress.disk_bytes / max(1, progress.total_disk_bytes)
        click.echo(f"{label}: {progress.phase}, {share:.0%} of {progress.total_disk_bytes / 1e6:,.1f} MB "
                   f"read, {progress.tokens:,} tokens, {progress.text_bytes / elapsed / 1e6:.1f} MB/s",
                   err=True)

    return show_plain, lambda: None


@data_group.command("prepare")
@click.argument("source")
@click.option("-o", "--output-dir", "output_dir", required=True, type=click.Path(file_okay=False),
              help="The directory to create: token shards and manifest.json.")
@click.option("--tokenizer", default="bytes", show_default=True,
              help="'bytes' (vocab 256), 'bpe' (trained on a sample of the training documents) "
                   "or the path of a tokenizer.json.")
@click.option("--bpe-vocab-size", default=4096, show_default=True, type=click.IntRange(257, 1 << 20),
              help="Vocabulary of a BPE tokenizer trained here.")
@click.option("--glob", "pattern", default="**/*.txt", show_default=True,
              help="Files to read when SOURCE is a directory.")
@click.option("--text-field", default="text", show_default=True,
              help="Field holding the text of a .jsonl record.")
@click.option("--eval-fraction", default=0.02, show_default=True,
              type=click.FloatRange(0, 0.5, min_open=True, max_open=True),
              help="Share of documents held out for evaluation, chosen by a hash of each name.")
@click.option("--workers", default=None, type=click.IntRange(1, 256),
              help="Tokenizing processes [default: 1 for bytes, else one per core, at most 8].")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT_DIR if it exists.")
@output_option
def prepare_command(source: str, output_dir: str, tokenizer: str, bpe_vocab_size: int, pattern: str,
                    text_field: str, eval_fraction: float, workers: int | None, overwrite: bool,
                    output: str) -> None:
    """Tokenise SOURCE into token shards in OUTPUT_DIR, streaming, with bounded memory.

    SOURCE is a text file (documents are blocks separated by blank lines), a directory (each
    file matching --glob is a document; .jsonl files in it give a document per record), a
    .jsonl file, any of them .gz/.zst/.xz compressed, or 'python-stdlib' (the embedded
    corpus). Point a run's or sweep's data.source at OUTPUT_DIR to train on it in place.

    \b
    Example:
      scaling data prepare ~/corpus --glob '**/*.txt.gz' -o data/corpus-bytes
      scaling data prepare docs.jsonl.zst --tokenizer bpe --workers 8 -o data/docs-bpe
    """
    import shutil

    from scaling.config.run import DataConfig
    from scaling.errors import ConfigError
    from scaling.training.preparation import prepare_corpus
    from scaling.training.sources import open_source

    target = Path(output_dir)
    if target.exists() and not overwrite:
        raise ConfigError(
            f"--output-dir {output_dir!r} exists; choose a new directory or pass --overwrite"
        )
    corpus = open_source(DataConfig(source=source, glob=pattern, text_field=text_field))
    if workers is None:
        workers = 1 if tokenizer == "bytes" else max(1, min(8, os.cpu_count() or 1))
    show, stop = _progress_printer(target.name)
    started = time.perf_counter()
    staging = target.with_name(f".{target.name}.new-{os.getpid()}")
    try:
        manifest = prepare_corpus(corpus, staging, tokenizer=tokenizer, bpe_vocab_size=bpe_vocab_size,
                                  eval_fraction=eval_fraction, workers=workers, label=source,
                                  on_progress=show)
    finally:
        stop()
    if target.exists():
        shutil.rmtree(target)
    os.rename(staging, target)
    seconds = time.perf_counter() - started
    _print_manifest(target, manifest, seconds, output)


def _print_manifest(directory: Path, manifest: dict[str, Any], seconds: float | None,
                    output: str) -> None:
    if output == "json":
        emit_json({"path": str(directory), "seconds": seconds, **manifest})
        return
    docs, tokens, text = manifest["documents"], manifest["tokens"], manifest["bytes"]
    lines = [
        f"{directory}: {manifest['source'].get('kind')} corpus, tokenizer {manifest['tokenizer']} "
        f"(vocabulary {manifest['vocab_size']:,}, {manifest['dtype']} tokens)",
        f"  train: {docs['train']:,} documents, {tokens['train']:,} tokens, {text['train'] / 1e6:,.1f} MB",
        f"  eval:  {docs['eval']:,} documents, {tokens['eval']:,} tokens, {text['eval'] / 1e6:,.1f} MB "
        f"({manifest['bytes_per_token']:.3f} bytes per token)",
        f"  content hash {manifest['content_hash']}",
    ]
    if seconds is not None:
        rate = (text["train"] + text["eval"]) / max(seconds, 1e-9) / 1e6
        lines.append(f"  prepared in {seconds:.1f} s ({rate:.1f} MB/s of text)")
    lines.append(f"  train on it with: --set data.source={directory}")
    click.echo("\n".join(lines))


@data_group.command("info")
@click.argument("directory", type=click.Path(file_okay=False))
@output_option
def info_command(directory: str, output: str) -> None:
    """Describe a directory prepared by `scaling data prepare` (checks its shards)."""
    from scaling.training.shards import read_manifest

    path = Path(directory)
    if not path.is_dir():
        from scaling.errors import DataError

        raise DataError(f"{directory!r}: no such directory; give one made by `scaling data prepare`")
    _print_manifest(path, read_manifest(path), None, output)
