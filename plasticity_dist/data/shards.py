"""The on-disk token shard format: one module that writes, reads, describes and verifies it.

A dataset folder holds `manifest.json` and `shard-000000.tar`, ... Each tar member is one block of packed
sequences: the `.npy` bytes of a (rows, seq_len + 1) array of little-endian token ids (uint16 when the
vocabulary fits, else uint32), compressed as one zstd frame with a content checksum, named
`<block index>.npy.zst`. Tars are written with a fixed mtime and owner, so equal input gives equal bytes.

The manifest lists, per shard, its bytes, sha256, rows, tokens (ids stored: rows * (seq_len + 1)) and its
blocks as `[data offset in the tar, rows, compressed bytes]`, so a reader can fetch any block directly.
`fingerprint` hashes seq_len, the tokenizer and every shard's sha256: a loader state names the data it saw.

zstd level 3, from `bench/zstd_levels.py` (1 MiB blocks): ratios byte-level 4.5 / 4.8 / 5.4 and BPE-8k
1.54 / 1.67 / 1.77 at levels 1 / 3 / 9; level 9 writes 4-5x slower than level 3, level 1 saves little
time for 6-8% larger shards, and decoding runs at 0.5-0.9 GB/s at every level.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from plasticity_dist.common.fileio import atomic_write_json, fsync_dir

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ZSTD_LEVEL = 3
BLOCK_SUFFIX = ".npy.zst"


class ShardError(ValueError):
    """Bad or corrupt shard data; the message names the file (and the block)."""


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def encode_block(rows: np.ndarray) -> bytes:
    """The `.npy` bytes of `rows` as one zstd frame, fed to zstd straight from the array (no `.npy` copy)."""
    rows = np.ascontiguousarray(rows)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(rows))
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    frame = compressor.compressobj(size=header.tell() + rows.nbytes)
    return frame.compress(header.getvalue()) + frame.compress(rows.reshape(-1).view(np.uint8)) + frame.flush()


def decode_block(payload: bytes, *, rows: int, row_len: int, dtype: np.dtype, where: str,
                 decompressor: zstandard.ZstdDecompressor | None = None) -> np.ndarray:
    """The block's (rows, row_len) array; raises ShardError naming `where` when it is not exactly that."""
    try:
        raw = (decompressor or zstandard.ZstdDecompressor()).decompress(payload)
        length_bytes = 2 if raw[6:7] == b"\x01" else 4  # .npy format 1.0 or 2.0
        header_end = 8 + length_bytes + int.from_bytes(raw[8:8 + length_bytes], "little")
        shape, fortran_order, stored_dtype = _parse_npy_header(raw[:header_end])
    except (zstandard.ZstdError, ValueError) as error:
        raise ShardError(f"{where}: cannot decode ({error})") from None
    if shape != (rows, row_len) or stored_dtype != dtype or fortran_order:
        raise ShardError(f"{where}: holds a {shape} {stored_dtype} array, manifest says ({rows}, {row_len}) {dtype}")
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(rows, row_len)


@functools.lru_cache(maxsize=64)
def _parse_npy_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of an .npy header; cached, as a dataset's blocks share a few headers."""
    stream = io.BytesIO(header)
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    parsed = read_header(stream)
    if stream.tell() != len(header):
        raise ValueError("the .npy header length does not match its contents")
    return parsed


@dataclass(frozen=True)
class BlockInfo:
    offset: int  # of the member's data in the tar
    rows: int
    size: int  # compressed bytes


@dataclass(frozen=True)
class ShardInfo:
    name: str
    bytes: int
    sha256: str
    rows: int
    tokens: int
    blocks: tuple[BlockInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "rows": self.rows,
                "tokens": self.tokens, "blocks": [[b.offset, b.rows, b.size] for b in self.blocks]}


@dataclass(frozen=True)
class Manifest:
    tokenizer: str
    vocab_size: int
    eot_id: int
    seq_len: int
    source: str
    split: str  # "train" or "val"
    args: dict[str, Any]  # the preprocessing arguments that shape the data
    shards: tuple[ShardInfo, ...]

    @property
    def dtype(self) -> str:
        return token_dtype(self.vocab_size).name

    @property
    def row_len(self) -> int:
        return self.seq_len + 1

    @property
    def rows(self) -> int:
        return sum(shard.rows for shard in self.shards)

    @property
    def fingerprint(self) -> str:
        identity = {"seq_len": self.seq_len, "tokenizer": self.tokenizer, "shards": [s.sha256 for s in self.shards]}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION, "tokenizer": self.tokenizer, "vocab_size": self.vocab_size,
            "eot_id": self.eot_id, "dtype": self.dtype, "seq_len": self.seq_len, "row_len": self.row_len,
            "compression": f"zstd-{ZSTD_LEVEL}", "source": self.source, "split": self.split, "args": self.args,
            "totals": {"shards": len(self.shards), "blocks": sum(len(s.blocks) for s in self.shards),
                       "rows": self.rows, "tokens": self.rows * self.row_len,
                       "bytes": sum(s.bytes for s in self.shards)},
            "fingerprint": self.fingerprint,
            "shards": [shard.to_json() for shard in self.shards],
        }


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise ShardError(f"{where}: missing key '{key}'")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ShardError(f"{where}: key '{key}' must be {kind.__name__}, got {value!r}")
    return value


def shard_from_json(data: Any, where: str, row_len: int) -> ShardInfo:
    if not isinstance(data, dict):
        raise ShardError(f"{where}: must be an object")
    blocks = []
    for index, block in enumerate(_require(data, "blocks", list, where)):
        if not (isinstance(block, list) and len(block) == 3 and all(type(v) is int and v >= 0 for v in block)):
            raise ShardError(f"{where}: key 'blocks[{index}]' must be [offset, rows, size], got {block!r}")
        blocks.append(BlockInfo(*block))
    shard = ShardInfo(
        name=_require(data, "name", str, where), bytes=_require(data, "bytes", int, where),
        sha256=_require(data, "sha256", str, where), rows=_require(data, "rows", int, where),
        tokens=_require(data, "tokens", int, where), blocks=tuple(blocks),
    )
    if shard.rows != sum(b.rows for b in shard.blocks) or shard.tokens != shard.rows * row_len:
        raise ShardError(f"{where}: rows/tokens disagree with its blocks")
    return shard


def manifest_from_json(data: Any, where: str) -> Manifest:
    """Validate a manifest's JSON; every error names `where` and the key."""
    if not isinstance(data, dict):
        raise ShardError(f"{where}: not a JSON object")
    version = _require(data, "format_version", int, where)
    if version != FORMAT_VERSION:
        raise ShardError(f"{where}: key 'format_version' is {version}, this reader knows {FORMAT_VERSION}")
    seq_len = _require(data, "seq_len", int, where)
    shards = tuple(
        shard_from_json(shard, f"{where} shards[{index}]", seq_len + 1)
        for index, shard in enumerate(_require(data, "shards", list, where))
    )
    manifest = Manifest(
        tokenizer=_require(data, "tokenizer", str, where), vocab_size=_require(data, "vocab_size", int, where),
        eot_id=_require(data, "eot_id", int, where), seq_len=seq_len, source=_require(data, "source", str, where),
        split=_require(data, "split", str, where), args=_require(data, "args", dict, where), shards=shards,
    )
    if _require(data, "dtype", str, where) != manifest.dtype:
        raise ShardError(f"{where}: key 'dtype' is {data['dtype']}, vocab_size {manifest.vocab_size} needs {manifest.dtype}")
    if _require(data, "fingerprint", str, where) != manifest.fingerprint:
        raise ShardError(f"{where}: key 'fingerprint' does not match the shards listed (edited or corrupt manifest)")
    if not shards or manifest.rows == 0:
        raise ShardError(f"{where}: key 'shards' lists no rows")
    return manifest


def read_manifest(dataset_dir: str | Path) -> Manifest:
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such manifest (is {dataset_dir} a preprocessed dataset?)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ShardError(f"{path}: not valid JSON ({error})") from None
    return manifest_from_json(data, str(path))


def write_manifest(dataset_dir: str | Path, manifest: Manifest) -> None:
    atomic_write_json(Path(dataset_dir) / MANIFEST_NAME, manifest.to_json())


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


class ShardWriter:
    """Writes one shard's blocks to `<name>.tmp`; `finish()` fsyncs, renames it into place and describes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp_path = path.with_name(path.name + ".tmp")
        self.handle = open(self.tmp_path, "wb")
        self.tar = tarfile.open(fileobj=self.handle, mode="w", format=tarfile.USTAR_FORMAT)
        self.blocks: list[BlockInfo] = []
        self.row_len: int | None = None

    def add_block(self, rows: np.ndarray) -> None:
        payload = encode_block(rows)
        info = tarfile.TarInfo(f"{len(self.blocks):06d}{BLOCK_SUFFIX}")
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
            len(payload), 0, 0o644, 0, 0, "", "")
        header_bytes = len(info.tobuf(self.tar.format, self.tar.encoding, self.tar.errors))
        self.blocks.append(BlockInfo(self.tar.offset + header_bytes, len(rows), len(payload)))
        self.row_len = rows.shape[1]
        self.tar.addfile(info, io.BytesIO(payload))

    def finish(self) -> ShardInfo:
        self.tar.close()
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp_path, self.path)
        fsync_dir(self.path.parent)
        rows = sum(block.rows for block in self.blocks)
        return ShardInfo(self.path.name, self.path.stat().st_size, _sha256_file(self.path), rows,
                         rows * (self.row_len or 0), tuple(self.blocks))


class BlockReader:
    """Random access to a dataset's blocks by (shard, block), via the manifest's offsets; safe across fork."""

    def __init__(self, dataset_dir: str | Path, manifest: Manifest) -> None:
        self.dir = Path(dataset_dir)
        self.manifest = manifest
        self.dtype = np.dtype(manifest.dtype)
        self.fds: dict[int, int] = {}
        self.decompressor: zstandard.ZstdDecompressor | None = None
        for shard in manifest.shards:  # a truncated or missing shard fails here, before any training
            path = self.dir / shard.name
            size = path.stat().st_size if path.is_file() else None
            if size != shard.bytes:
                raise ShardError(f"{path}: {'missing' if size is None else f'{size} bytes'}, manifest says {shard.bytes} bytes")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "fds": {}, "decompressor": None}

    def read(self, shard_index: int, block_index: int) -> np.ndarray:
        shard = self.manifest.shards[shard_index]
        block = shard.blocks[block_index]
        where = f"{self.dir / shard.name} block {block_index}"
        if shard_index not in self.fds:
            self.fds[shard_index] = os.open(self.dir / shard.name, os.O_RDONLY)
        payload = os.pread(self.fds[shard_index], block.size, block.offset)
        if len(payload) != block.size:
            raise ShardError(f"{where}: truncated ({len(payload)} of {block.size} bytes)")
        self.decompressor = self.decompressor or zstandard.ZstdDecompressor()
        return decode_block(payload, rows=block.rows, row_len=self.manifest.row_len, dtype=self.dtype,
                            where=where, decompressor=self.decompressor)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class _HashingReader:
    """A read-only file wrapper that hashes every byte read through it; named by its file in messages (the
    tar reader appends its file object's repr to its errors)."""

    def __init__(self, handle: Any, path: Path) -> None:
        self.handle, self.path, self.digest = handle, path, hashlib.sha256()

    def __repr__(self) -> str:
        return str(self.path)

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data

    def hexdigest_of_rest(self) -> str:
        while self.read(1 << 22):
            pass
        return self.digest.hexdigest()


def iter_shard_blocks(dataset_dir: str | Path, manifest: Manifest, shard_index: int,
                      check_sha256: bool = False) -> Iterator[np.ndarray]:
    """Stream one shard's blocks in file order (webdataset tar streaming), checked against the manifest."""
    from webdataset.tariterators import tar_file_iterator  # imported here: webdataset imports torch

    shard = manifest.shards[shard_index]
    path = Path(dataset_dir) / shard.name
    dtype = np.dtype(manifest.dtype)
    decompressor = zstandard.ZstdDecompressor()
    with open(path, "rb") as handle:
        reader = _HashingReader(handle, path)
        members = tar_file_iterator(reader)
        for index, block in enumerate(shard.blocks):
            where = f"{path} block {index}"
            try:
                member = next(members)
            except StopIteration:
                raise ShardError(f"{where}: missing (the tar ends after {index} blocks)") from None
            except (tarfile.TarError, OSError) as error:
                raise ShardError(f"{where}: unreadable tar ({error})") from None
            if member["fname"] != f"{index:06d}{BLOCK_SUFFIX}" or len(member["data"]) != block.size:
                raise ShardError(f"{where}: member {member['fname']} of {len(member['data'])} bytes, "
                                 f"manifest says {index:06d}{BLOCK_SUFFIX} of {block.size} bytes")
            yield decode_block(member["data"], rows=block.rows, row_len=manifest.row_len, dtype=dtype,
                               where=where, decompressor=decompressor)
        if check_sha256 and reader.hexdigest_of_rest() != shard.sha256:
            raise ShardError(f"{path}: sha256 differs from the manifest")


def verify_dataset(dataset_dir: str | Path) -> Manifest:
    """Decode every block and check shapes, ids, counts and hashes; raises ShardError at the first bad one."""
    manifest = read_manifest(dataset_dir)
    for shard_index, shard in enumerate(manifest.shards):
        path = Path(dataset_dir) / shard.name
        for block_index, rows in enumerate(iter_shard_blocks(dataset_dir, manifest, shard_index, check_sha256=True)):
            if rows.size and int(rows.max()) >= manifest.vocab_size:
                raise ShardError(f"{path} block {block_index}: token id {int(rows.max())} >= vocab_size {manifest.vocab_size}")
    return manifest
