"""The shard format: deterministic tars, manifest validation, random and streaming reads, corruption found."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from plasticity_dist.data.shards import (
    MANIFEST_NAME, BlockReader, Manifest, ShardError, ShardWriter, iter_shard_blocks, read_manifest, shard_name,
    verify_dataset, write_manifest,
)

SEQ_LEN = 8


def numbered_rows(count: int, seq_len: int = SEQ_LEN, first: int = 0) -> np.ndarray:
    """Rows whose first token is their index (unique), then a fixed ramp: easy to trace through a loader."""
    rows = np.tile(np.arange(seq_len + 1, dtype=np.uint16), (count, 1))
    rows[:, 0] = np.arange(first, first + count)
    return rows


def write_dataset(out: Path, rows: np.ndarray, rows_per_block: int, rows_per_shard: int,
                  tokenizer: str = "test", vocab_size: int = 1 << 16) -> Manifest:
    """A real dataset folder (tars + manifest) holding `rows` in file order."""
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for index, shard_start in enumerate(range(0, len(rows), rows_per_shard)):
        writer = ShardWriter(out / shard_name(index))
        shard_rows = rows[shard_start:shard_start + rows_per_shard]
        for block_start in range(0, len(shard_rows), rows_per_block):
            writer.add_block(shard_rows[block_start:block_start + rows_per_block])
        shards.append(writer.finish())
    manifest = Manifest(tokenizer=tokenizer, vocab_size=vocab_size, eot_id=0, seq_len=rows.shape[1] - 1,
                        source="test", split="train", args={}, shards=tuple(shards))
    write_manifest(out, manifest)
    return manifest


def test_written_dataset_reads_back_by_offset_and_by_streaming(tmp_path: Path) -> None:
    rows = numbered_rows(50)
    manifest = write_dataset(tmp_path, rows, rows_per_block=7, rows_per_shard=21)
    assert read_manifest(tmp_path) == manifest
    assert [s.rows for s in manifest.shards] == [21, 21, 8] and manifest.dtype == "uint16"
    reader = BlockReader(tmp_path, manifest)
    by_offset = [reader.read(s, b) for s, shard in enumerate(manifest.shards) for b in range(len(shard.blocks))]
    streamed = [block for s in range(3) for block in iter_shard_blocks(tmp_path, manifest, s, check_sha256=True)]
    np.testing.assert_array_equal(np.concatenate(by_offset), rows)
    np.testing.assert_array_equal(np.concatenate(streamed), rows)
    assert verify_dataset(tmp_path) == manifest


def test_shards_are_byte_identical_and_plain_tars(tmp_path: Path) -> None:
    rows = numbered_rows(30)
    write_dataset(tmp_path / "a", rows, 4, 16)
    write_dataset(tmp_path / "b", rows, 4, 16)
    for name in (shard_name(0), shard_name(1), MANIFEST_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with tarfile.open(tmp_path / "a" / shard_name(0)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == [f"{i:06d}.npy.zst" for i in range(4)]
    assert {(m.mtime, m.uid, m.gid, m.uname) for m in members} == {(0, 0, 0, "")}


def test_vocabulary_beyond_uint16_is_stored_as_uint32(tmp_path: Path) -> None:
    rows = numbered_rows(5).astype(np.uint32) + 70_000
    manifest = write_dataset(tmp_path, rows, 2, 5, vocab_size=100_000)
    assert manifest.dtype == "uint32"
    np.testing.assert_array_equal(BlockReader(tmp_path, manifest).read(0, 2), rows[4:])


def _edit_manifest(path: Path, edit) -> None:
    data = json.loads((path / MANIFEST_NAME).read_text())
    edit(data)
    (path / MANIFEST_NAME).write_text(json.dumps(data))


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.pop("seq_len"), "missing key 'seq_len'"),
    (lambda d: d.update(vocab_size="257"), "key 'vocab_size' must be int"),
    (lambda d: d.update(format_version=99), "key 'format_version' is 99"),
    (lambda d: d["shards"][0].update(sha256="0" * 64), "key 'fingerprint' does not match"),
    (lambda d: d["shards"][1]["blocks"].append([0, 1]), "shards[1]: key 'blocks[2]'"),
    (lambda d: d["shards"][0].update(rows=3), "shards[0]: rows/tokens disagree"),
])
def test_bad_manifest_is_refused_naming_file_and_key(tmp_path: Path, edit, key: str) -> None:
    write_dataset(tmp_path, numbered_rows(20), 5, 10)
    _edit_manifest(tmp_path, edit)
    with pytest.raises(ShardError, match=f"{MANIFEST_NAME}.*{key}".replace("[", r"\[").replace("]", r"\]")):
        read_manifest(tmp_path)


def test_missing_manifest_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        read_manifest(tmp_path)


def test_truncated_tar_is_named_by_verify_and_by_the_reader(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, numbered_rows(40), 5, 20)
    path = tmp_path / shard_name(1)
    path.write_bytes(path.read_bytes()[:manifest.shards[1].blocks[2].offset + 10])
    with pytest.raises(ShardError, match=f"{shard_name(1)} block 2") as error:
        verify_dataset(tmp_path)
    assert " object at 0x" not in str(error.value)  # names files and blocks, never object reprs
    with pytest.raises(ShardError, match=f"{shard_name(1)}: .* bytes, manifest says"):
        BlockReader(tmp_path, manifest)


def test_flipped_byte_in_a_zstd_frame_is_named(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, numbered_rows(40), 5, 20)
    block = manifest.shards[0].blocks[3]
    path = tmp_path / shard_name(0)
    data = bytearray(path.read_bytes())
    data[block.offset + block.size // 2] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=f"{shard_name(0)} block 3: cannot decode"):
        verify_dataset(tmp_path)
    with pytest.raises(ShardError, match=f"{shard_name(0)} block 3: cannot decode"):
        BlockReader(tmp_path, manifest).read(0, 3)


def test_ids_outside_the_vocabulary_fail_verify(tmp_path: Path) -> None:
    write_dataset(tmp_path, numbered_rows(12), 4, 12, vocab_size=10)
    with pytest.raises(ShardError, match=f"{shard_name(0)} block 2: token id 11 >= vocab_size 10"):
        verify_dataset(tmp_path)
