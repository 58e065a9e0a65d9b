"""zstd level 1/3/9 on byte-level and BPE token blocks: compression ratio, write and decode speed, each
against level 3 (the level `shards.py` uses) measured in the same run."""

from __future__ import annotations

import io
import itertools
import sys
import time

import numpy as np
import zstandard
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from plasticity_dist.data.sources import iter_documents
from plasticity_dist.data.tokenizer import ByteTokenizer

LEVELS, SEQ_LEN, ROWS = (1, 3, 9), 2048, 255  # the default block at seq_len 2048


def blocks_of(ids: list[int]) -> list[np.ndarray]:
    """Every whole default-sized block in `ids`."""
    count = len(ids) // (ROWS * (SEQ_LEN + 1))
    return list(np.array(ids[:count * ROWS * (SEQ_LEN + 1)], dtype="<u2").reshape(count, ROWS, SEQ_LEN + 1))


def token_blocks() -> dict[str, list[np.ndarray]]:
    documents = list(itertools.islice(iter_documents("synthetic:en"), 30_000))
    byte_ids = ByteTokenizer().encode_documents(documents, np.dtype(np.uint16)).tolist()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(documents[:5000], trainers.BpeTrainer(vocab_size=8192, special_tokens=["<eot>"]))
    bpe_ids = list(itertools.chain.from_iterable(e.ids + [0] for e in bpe.encode_batch(documents)))
    return {"byte": blocks_of(byte_ids), "bpe": blocks_of(bpe_ids)}


def measure(blocks: list[np.ndarray], level: int) -> tuple[float, float, float]:
    """(compression ratio, compress MB/s, decompress MB/s) over `blocks` as .npy payloads."""
    raw = [io.BytesIO() for _ in blocks]
    for buffer, block in zip(raw, blocks):
        np.save(buffer, block)
    payloads = [buffer.getvalue() for buffer in raw]
    size = sum(map(len, payloads))
    compressor, decompressor = zstandard.ZstdCompressor(level=level, write_checksum=True), zstandard.ZstdDecompressor()
    started = time.perf_counter()
    frames = [compressor.compress(payload) for payload in payloads]
    compress_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(5):
        for frame in frames:
            decompressor.decompress(frame)
    decompress_s = (time.perf_counter() - started) / 5
    return size / sum(map(len, frames)), size / compress_s / 1e6, size / decompress_s / 1e6


def main() -> int:
    for kind, blocks in token_blocks().items():
        results = {level: measure(blocks, level) for level in LEVELS}
        base = results[3]
        for level, (ratio, write, read) in results.items():
            print(f"{kind}_level{level}_ratio: {ratio:.3f} ({ratio / base[0]:.3f}x level 3)")
            print(f"{kind}_level{level}_compress_MB_per_s: {write:,.0f} ({write / base[1]:.2f}x level 3)")
            print(f"{kind}_level{level}_decompress_MB_per_s: {read:,.0f} ({read / base[2]:.2f}x level 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
