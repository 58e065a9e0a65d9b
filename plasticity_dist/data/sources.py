"""Text sources for preprocessing: each yields document texts, optionally one partition of them.

Source forms:
- `hf:DATASET[:CONFIG][@SPLIT]`: a `datasets` dataset (split `train` by default), streamed from the hub or
  read from a local folder (parquet/json files, or a folder written by `save_to_disk`).
- `corpus:[SET/]LANG`: a study language's real hub corpus, looked up in `configs/corpora.yaml`.
- a `.jsonl`, `.parquet` or `.txt` file, or a folder of them (read recursively in sorted path order). In a
  `.txt` file a document is a block of lines separated by blank lines.
- `synthetic:LANG`: the offline generator of `synthetic.py`, endless.

Partitions split a finite source into contiguous shares whose union is every document exactly once, so that
array jobs build independent shards and each reads only its share: a range of partitions is one run of the
source (`shares.py`): of the bytes of local files laid end to end (`local_files.py`), of the rows of a
`save_to_disk` folder, or of the whole pieces (parquet row groups or files) of a stream (`hub.py`). A reader
seeks to its share and stops where its consumer stops, so a consumer can give its parts unequal shares of the
source. For `synthetic:` each partition is an independent stream, and a range of partitions is the stream of
its first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from plasticity_dist.data.hub import hf_documents, load_hf
from plasticity_dist.data.local_files import LOCAL_SUFFIXES, local_documents, local_files, parquet_file, total_bytes
from plasticity_dist.data.shares import ReadCount, share_bounds
from plasticity_dist.data.synthetic import check_language, synthetic_documents

CORPORA_PATH = Path(__file__).resolve().parents[2] / "configs" / "corpora.yaml"
DEFAULT_SPLIT = "train"

# (partitions, num_partitions, count) -> the documents of that share, counting the records read into `count`
Reader = Callable[[range, int, ReadCount], Iterator[str]]


class Documents(Iterator[str]):
    """Document texts of one share of a source; `records_read` counts what its reader took from the source so
    far (lines, paragraphs, parquet rows decoded, stream records), for preprocessing's accounts."""

    def __init__(self, source: str, reader: Reader, partitions: range, num_partitions: int) -> None:
        self.source, self.reader, self.count = source, reader, ReadCount()
        self.texts = reader(partitions, num_partitions, self.count)
        self.yielded = 0

    @property
    def records_read(self) -> int:
        return self.count.records

    def __next__(self) -> str:
        try:
            text = next(self.texts)
        except StopIteration:
            if self.yielded == 0 and next(self.reader(range(1), 1, ReadCount()), None) is None:
                raise ValueError(f"source {self.source!r} holds no documents") from None
            raise
        self.yielded += 1
        return text


def iter_documents(
    source: str, *, text_field: str = "text", partition: int | range = 0, num_partitions: int = 1, seed: int = 0,
    whole_group_partitions: int = 1,
) -> Documents:
    """Document texts of `source` in partition `partition` of `num_partitions`, or in a range of them (one
    contiguous share of the source). A local parquet row group that spans at most `whole_group_partitions`
    partitions goes whole to the share where it starts (so no share narrower than that is left empty), a
    wider one row by row; every reader of one plan must pass the same value.

    The source is checked now (form, files, fields where a schema names them); a source that turns out to
    hold no document at all raises once iteration reaches its end. `seed` matters only for `synthetic:`.
    """
    partitions = range(partition, partition + 1) if isinstance(partition, int) else partition
    if not (partitions and partitions.step == 1 and 0 <= partitions.start and partitions.stop <= num_partitions):
        raise ValueError(f"partition {partition} is not in [0, num_partitions={num_partitions})")
    return Documents(source, _reader(source, text_field, seed, whole_group_partitions), partitions, num_partitions)


def _reader(source: str, text_field: str, seed: int, whole_group_partitions: int = 1) -> Reader:
    kind, _, rest = source.partition(":")
    if kind == "synthetic":
        check_language(rest)
        return lambda partitions, _num_partitions, _count: synthetic_documents(rest, seed, partitions.start)
    if kind == "corpus":
        hf_source, corpus_text_field = corpus_source(rest)
        return _reader(hf_source, corpus_text_field, seed, whole_group_partitions)
    if kind == "hf":
        return _hf_reader(source, rest, text_field)
    path = Path(source).expanduser()
    if path.suffix in LOCAL_SUFFIXES or path.is_dir():
        return _local_reader(path, text_field, whole_group_partitions)
    raise ValueError(
        f"unknown source {source!r}: expected hf:DATASET[:CONFIG][@SPLIT], corpus:LANG, synthetic:LANG, "
        f"or a {'/'.join(LOCAL_SUFFIXES)} file or folder"
    )


def _local_reader(path: Path, text_field: str, whole_group_partitions: int) -> Reader:
    files = local_files(path)
    for file in files:
        if file.suffix == ".parquet":
            parquet_file(file, text_field)  # a missing field fails now, not mid-run
    size = total_bytes(files)

    def read(partitions: range, num_partitions: int, count: ReadCount) -> Iterator[str]:
        lo, hi = share_bounds(partitions, num_partitions, size)
        return local_documents(files, text_field, lo, hi, whole_group_partitions * size / num_partitions, count)

    return read


def _hf_reader(source: str, spec: str, text_field: str) -> Reader:
    dataset_name, _, split = spec.partition("@")
    dataset_name, _, config = dataset_name.partition(":")
    if not dataset_name:
        raise ValueError(f"source {source!r} names no dataset; expected hf:DATASET[:CONFIG][@SPLIT]")
    dataset = load_hf(source, dataset_name, config or None, split or DEFAULT_SPLIT)
    columns = dataset.column_names  # None for a stream whose features are not known up front
    if columns is not None and text_field not in columns:
        raise ValueError(f"source {source!r}: no text field {text_field!r}; fields: {', '.join(columns)}")

    def read(partitions: range, num_partitions: int, count: ReadCount) -> Iterator[str]:
        return hf_documents(source, dataset, text_field, partitions, num_partitions, count)

    return read


# Real corpora for the study languages


def _read_corpora(corpora_path: str | Path | None) -> tuple[Path, dict[str, Any]]:
    path = Path(corpora_path or CORPORA_PATH)
    if not path.is_file():
        raise FileNotFoundError(f"corpora file {path} does not exist")
    return path, yaml.safe_load(path.read_text())


def tokenizer_sample(corpora_path: str | Path | None = None) -> dict[str, Any]:
    """What the shared tokenizer is trained on, from the corpora file's `tokenizer` entry: `sources` (one
    `corpus:LANG` per language it names), `sample_bytes` per source and `vocab_size`."""
    path, corpora = _read_corpora(corpora_path)
    entry = corpora.get("tokenizer")
    if not isinstance(entry, dict) or not {"languages", "sample_bytes", "vocab_size"} <= set(entry):
        raise ValueError(f"{path}: no `tokenizer` entry with languages, sample_bytes and vocab_size")
    return {"sources": tuple(f"corpus:{lang}" for lang in entry["languages"]),
            "sample_bytes": int(float(entry["sample_bytes"])), "vocab_size": int(entry["vocab_size"])}


def corpus_source(name: str, corpora_path: str | Path | None = None) -> tuple[str, str]:
    """The `hf:` source and text field of corpus `[SET/]LANG` in `corpora_path` (default: CORPORA_PATH);
    without SET, the file's `default` set."""
    path, corpora = _read_corpora(corpora_path)
    corpus_set, _, lang = name.rpartition("/")
    corpus_set = corpus_set or corpora["default"]
    if corpus_set not in corpora["sets"]:
        raise ValueError(f"{path}: no corpus set {corpus_set!r}; sets: {', '.join(corpora['sets'])}")
    languages = corpora["sets"][corpus_set]
    if lang not in languages:
        known = ", ".join(languages)
        raise ValueError(f"{path}: corpus set {corpus_set!r} has no language {lang!r}; languages: {known}")
    entry = languages[lang]
    config = f":{entry['config']}" if entry.get("config") else ""
    return f"hf:{entry['dataset']}{config}@{entry.get('split', DEFAULT_SPLIT)}", entry.get("text_field", "text")
