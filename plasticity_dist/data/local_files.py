"""Local `.jsonl`, `.parquet` and `.txt` files as one contiguous share of their documents.

The files of a source, in sorted path order, are laid end to end as one byte range. A share of it (positions
[lo, hi) of that range) holds the documents that start inside it: jsonl lines and txt paragraphs where their
first byte lies, parquet row groups where their first row lies (rows are placed evenly over their file's
bytes). A reader seeks to its share, so every document of the source is read by exactly one share's reader,
and a reader that stops early reads no further.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from plasticity_dist.data.shares import ReadCount

LOCAL_SUFFIXES = (".jsonl", ".parquet", ".txt")
PARQUET_BATCH_ROWS = 32  # rows decoded at a time: what a reader that stops early has read past its need
BACKWARD_CHUNK = 4096


def text_of(record: dict[str, Any], text_field: str, where: str) -> str:
    """The text field of one record, with the fields that do exist named when it is missing."""
    if text_field not in record:
        raise ValueError(f"{where}: no text field {text_field!r}; fields: {', '.join(map(str, record)) or 'none'}")
    text = record[text_field]
    if not isinstance(text, str):
        raise ValueError(f"{where}: text field {text_field!r} holds {type(text).__name__}, not a string")
    return text


def local_files(path: Path) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"source {path} does not exist")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"source folder {path} holds no {', '.join(LOCAL_SUFFIXES)} files")
    return files


def parquet_file(path: Path, text_field: str) -> Any:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if text_field not in parquet.schema_arrow.names:
        raise ValueError(f"{path}: no text field {text_field!r}; fields: {', '.join(parquet.schema_arrow.names)}")
    return parquet


def _line_number(path: Path, offset: int) -> int:
    """The 1-based number of the line starting at byte `offset` (counted only to name a bad line)."""
    with open(path, "rb") as file:
        return file.read(offset).count(b"\n") + 1


def _lines_from(file: BinaryIO, start: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of every line of `file` that starts at or after byte `start`."""
    if start > 0:
        file.seek(start - 1)
        file.readline()  # the rest of the line that holds byte start - 1
    offset = file.tell()
    for line in iter(file.readline, b""):
        yield offset, line
        offset += len(line)


def _jsonl_texts(path: Path, start: int, stop: int, text_field: str, count: ReadCount) -> Iterator[str]:
    with open(path, "rb") as file:
        for offset, line in _lines_from(file, start):
            if offset >= stop:
                return
            if not line.strip():
                continue
            count.records += 1
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{path}:{_line_number(path, offset)}: not valid JSON: {error}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{_line_number(path, offset)}: expected a JSON object, got "
                                 f"{type(record).__name__}")
            text = record.get(text_field)
            yield text if isinstance(text, str) else text_of(record, text_field, f"{path}:{_line_number(path, offset)}")


def _line_before_is_blank(file: BinaryIO, start: int) -> bool:
    """Whether the line that holds byte start - 1 is blank (true at the start of the file)."""
    if start == 0:
        return True
    end = line_start = start - 1
    while line_start > 0:  # back to the previous newline, a chunk at a time
        chunk_start = max(0, line_start - BACKWARD_CHUNK)
        file.seek(chunk_start)
        newline = file.read(line_start - chunk_start).rfind(b"\n")
        if newline >= 0:
            line_start = chunk_start + newline + 1
            break
        line_start = chunk_start
    file.seek(line_start)
    head = file.read(end - line_start + 1)
    file.seek(start - 1)
    return not (head + file.readline()).strip()


def _txt_texts(path: Path, start: int, stop: int, _text_field: str, count: ReadCount) -> Iterator[str]:
    """Paragraphs (blocks of lines between blank lines) whose first line starts in [start, stop)."""
    with open(path, "rb") as file:
        previous_blank = _line_before_is_blank(file, start)
        block: list[bytes] = []
        for offset, line in _lines_from(file, start):
            blank = not line.strip()
            if block and blank:
                count.records += 1
                yield b"".join(block).decode("utf-8").replace("\r\n", "\n").rstrip("\n")
                block = []
            elif not blank and (block or previous_blank):
                if not block and offset >= stop:
                    return
                block.append(line)
            previous_blank = blank
        if block:
            count.records += 1
            yield b"".join(block).decode("utf-8").replace("\r\n", "\n").rstrip("\n")


def _parquet_texts(path: Path, start: int, stop: int, text_field: str, count: ReadCount,
                   whole_span: float) -> Iterator[str]:
    """The rows in [start, stop) of the file's bytes, row r placed at byte r * size // rows: a row group that
    spans at most `whole_span` bytes goes whole where its first row lies (no row of it is decoded twice), a
    larger one row by row (the reader of a later share decodes its rows before that share)."""
    parquet = parquet_file(path, text_field)
    rows, size = parquet.metadata.num_rows, path.stat().st_size

    def position(row: int) -> int:
        return row * size // max(rows, 1)

    group_end = 0
    for group in range(parquet.num_row_groups):
        group_start, group_end = group_end, group_end + parquet.metadata.row_group(group).num_rows
        whole = position(group_end) - position(group_start) <= whole_span
        if (position(group_start) if whole else position(group_end - 1)) < start or group_start == group_end:
            continue
        if position(group_start) >= stop:
            return
        row = group_start
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[group], columns=[text_field]):
            count.records += batch.num_rows
            for value in batch.column(0).to_pylist():
                row += 1
                if whole or start <= position(row - 1) < stop:
                    yield text_of({text_field: value}, text_field, str(path))
            if not whole and position(row) >= stop:
                return


TEXT_FORMATS: dict[str, Callable[[Path, int, int, str, ReadCount], Iterator[str]]] = {
    ".jsonl": _jsonl_texts, ".txt": _txt_texts,
}


def local_documents(files: list[Path], text_field: str, lo: int, hi: int, whole_span: float,
                    count: ReadCount) -> Iterator[str]:
    """The documents that start at bytes [lo, hi) of `files` laid end to end; parquet row groups of at most
    `whole_span` bytes go whole to the share where they start."""
    offset = 0
    for file in files:
        size = file.stat().st_size
        start, stop = max(lo - offset, 0), min(hi - offset, size)
        if start < stop and file.suffix == ".parquet":
            yield from _parquet_texts(file, start, stop, text_field, count, whole_span)
        elif start < stop:
            yield from TEXT_FORMATS[file.suffix](file, start, stop, text_field, count)
        offset += size
        if offset >= hi:
            return


def total_bytes(files: list[Path]) -> int:
    return sum(file.stat().st_size for file in files)
