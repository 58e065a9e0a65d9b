"""Text sources for preprocessing: each yields document texts, optionally one partition of them.

Source forms:
- `hf:DATASET[:CONFIG][@SPLIT]`: a `datasets` dataset (split `train` by default), streamed from the hub or
  read from a local folder (parquet/json files, or a folder written by `save_to_disk`).
- `corpus:[SET/]LANG`: a study language's real hub corpus, looked up in `configs/corpora.yaml`.
- a `.jsonl`, `.parquet` or `.txt` file, or a folder of them (read recursively in sorted path order). In a
  `.txt` file a document is a block of lines separated by blank lines.
- `synthetic:LANG`: the offline generator of `synthetic.py`, endless.

Partitions split a finite source into disjoint parts whose union is every document exactly once, so that
array jobs can build independent shards: local files and `save_to_disk` folders deal document i to
partition i mod n; streamed `hf:` sources use `datasets`' own split (whole files when their count is a
multiple of n, else every n-th document). A range of partitions is read in one pass as their union, so a
consumer can give its parts unequal shares of the source. For `synthetic:` each partition is an
independent stream, and a range of partitions is the stream of its first.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from plasticity_dist.data.synthetic import check_language, synthetic_documents

LOCAL_SUFFIXES = (".jsonl", ".parquet", ".txt")
CORPORA_PATH = Path(__file__).resolve().parents[2] / "configs" / "corpora.yaml"
DEFAULT_SPLIT = "train"

# (partitions, num_partitions) -> the documents of those partitions
Reader = Callable[[range, int], Iterator[str]]


def iter_documents(
    source: str, *, text_field: str = "text", partition: int | range = 0, num_partitions: int = 1, seed: int = 0
) -> Iterator[str]:
    """Document texts of `source` in partition `partition` of `num_partitions`, or in a range of them.

    The source is checked now (form, files, fields where a schema names them); a source that turns out to
    hold no document at all raises once iteration reaches its end. `seed` matters only for `synthetic:`.
    """
    partitions = range(partition, partition + 1) if isinstance(partition, int) else partition
    if not (partitions and partitions.step == 1 and 0 <= partitions.start and partitions.stop <= num_partitions):
        raise ValueError(f"partition {partition} is not in [0, num_partitions={num_partitions})")
    reader = _reader(source, text_field, seed)
    return _documents(source, reader, partitions, num_partitions)


def _reader(source: str, text_field: str, seed: int) -> Reader:
    kind, _, rest = source.partition(":")
    if kind == "synthetic":
        check_language(rest)
        return lambda partitions, _num_partitions: synthetic_documents(rest, seed, partitions.start)
    if kind == "corpus":
        hf_source, corpus_text_field = corpus_source(rest)
        return _reader(hf_source, corpus_text_field, seed)
    if kind == "hf":
        return _hf_reader(source, rest, text_field)
    path = Path(source).expanduser()
    if path.suffix in LOCAL_SUFFIXES or path.is_dir():
        return _local_reader(path, text_field)
    raise ValueError(
        f"unknown source {source!r}: expected hf:DATASET[:CONFIG][@SPLIT], corpus:LANG, synthetic:LANG, "
        f"or a {'/'.join(LOCAL_SUFFIXES)} file or folder"
    )


def _documents(source: str, reader: Reader, partitions: range, num_partitions: int) -> Iterator[str]:
    count = 0
    for text in reader(partitions, num_partitions):
        count += 1
        yield text
    if count == 0 and next(reader(range(1), 1), None) is None:
        raise ValueError(f"source {source!r} holds no documents")


def _text(record: dict[str, Any], text_field: str, where: str) -> str:
    """The text field of one record, with the fields that do exist named when it is missing."""
    if text_field not in record:
        raise ValueError(f"{where}: no text field {text_field!r}; fields: {', '.join(map(str, record)) or 'none'}")
    text = record[text_field]
    if not isinstance(text, str):
        raise ValueError(f"{where}: text field {text_field!r} holds {type(text).__name__}, not a string")
    return text


# Local files: each format yields raw items cheaply; only the items of the wanted partition are decoded.


def _jsonl_items(path: Path, _text_field: str) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield number, line


def _jsonl_text(item: tuple[int, str], path: Path, text_field: str) -> str:
    number, line = item
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{number}: not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
    return _text(record, text_field, f"{path}:{number}")


def _parquet_items(path: Path, text_field: str) -> Iterator[Any]:
    for batch in _parquet_file(path, text_field).iter_batches(columns=[text_field], batch_size=1024):
        yield from batch.column(0).to_pylist()


def _parquet_file(path: Path, text_field: str) -> Any:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if text_field not in parquet.schema_arrow.names:
        raise ValueError(f"{path}: no text field {text_field!r}; fields: {', '.join(parquet.schema_arrow.names)}")
    return parquet


def _parquet_text(value: Any, path: Path, text_field: str) -> str:
    return _text({text_field: value}, text_field, str(path))


def _txt_items(path: Path, _text_field: str) -> Iterator[str]:
    block: list[str] = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                block.append(line)
            elif block:
                yield "".join(block).rstrip("\n")
                block = []
    if block:
        yield "".join(block).rstrip("\n")


def _txt_text(paragraph: str, _path: Path, _text_field: str) -> str:
    return paragraph


LOCAL_FORMATS: dict[str, tuple[Callable[[Path, str], Iterator[Any]], Callable[[Any, Path, str], str]]] = {
    ".jsonl": (_jsonl_items, _jsonl_text),
    ".parquet": (_parquet_items, _parquet_text),
    ".txt": (_txt_items, _txt_text),
}


def _local_files(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"source {path} does not exist")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"source folder {path} holds no {', '.join(LOCAL_SUFFIXES)} files")
    return files


def _local_reader(path: Path, text_field: str) -> Reader:
    files = _local_files(path)
    for file in files:
        if file.suffix == ".parquet":
            _parquet_file(file, text_field)  # a missing field fails now, not mid-run
    return partial(_local_documents, files, text_field)


def _local_documents(files: list[Path], text_field: str, partitions: range, num_partitions: int) -> Iterator[str]:
    index = 0
    for file in files:
        items, decode = LOCAL_FORMATS[file.suffix]
        for item in items(file, text_field):
            if index % num_partitions in partitions:
                yield decode(item, file, text_field)
            index += 1


# Hugging Face datasets


def _hf_reader(source: str, spec: str, text_field: str) -> Reader:
    dataset_name, _, split = spec.partition("@")
    dataset_name, _, config = dataset_name.partition(":")
    if not dataset_name:
        raise ValueError(f"source {source!r} names no dataset; expected hf:DATASET[:CONFIG][@SPLIT]")
    dataset = _load_hf(source, dataset_name, config or None, split or DEFAULT_SPLIT)
    columns = dataset.column_names  # None for a stream whose features are not known up front
    if columns is not None and text_field not in columns:
        raise ValueError(f"source {source!r}: no text field {text_field!r}; fields: {', '.join(columns)}")
    return partial(_hf_documents, source, dataset, text_field)


def _load_hf(source: str, dataset_name: str, config: str | None, split: str) -> Any:
    """A local `save_to_disk` folder, else `datasets.load_dataset(..., streaming=True)`."""
    import datasets

    path = Path(dataset_name).expanduser()
    if dataset_name.startswith(("/", ".", "~")) and not path.exists():
        raise FileNotFoundError(f"source {source!r}: folder {path} does not exist")
    if path.is_dir():
        try:
            saved = datasets.load_from_disk(str(path))
        except FileNotFoundError:  # not written by save_to_disk: a folder of data files
            pass
        else:
            if config is not None:
                raise ValueError(f"source {source!r}: a dataset saved with save_to_disk has no configs")
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise ValueError(f"source {source!r}: no split {split!r}; splits: {', '.join(saved)}")
                return saved[split]
            return saved
    try:
        return datasets.load_dataset(dataset_name, name=config, split=split, streaming=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load source {source!r}: {error}") from None


def _hf_documents(source: str, dataset: Any, text_field: str, partitions: range, num_partitions: int) -> Iterator[str]:
    import datasets
    from datasets.distributed import split_dataset_by_node

    if dataset.column_names is not None:
        dataset = dataset.select_columns([text_field])
    if isinstance(dataset, datasets.Dataset):  # saved to disk: row i in partition i mod n, as for local files
        records = dataset.select([row for row in range(len(dataset)) if row % num_partitions in partitions])
    elif dataset.num_shards % num_partitions == 0:  # whole files per partition: read only this range's files
        records = itertools.chain.from_iterable(
            split_dataset_by_node(dataset, rank=rank, world_size=num_partitions) for rank in partitions)
    else:  # every n-th record, as `split_dataset_by_node` deals them, in one pass for the whole range
        records = (record for number, record in enumerate(dataset) if number % num_partitions in partitions)
    for record in records:
        yield _text(record, text_field, f"source {source!r}")


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
