"""Does preprocessing read its source once, however many shards it writes? (issue 25)

For each source form (a local jsonl file, a local parquet file, a folder of many parquet files read through
`hf:` streaming) the same token count is preprocessed into 3 shards (the baseline) and into 40, with one
worker, in this process. Printed per form and shard count: wall seconds, records the shard jobs took from the
source (jsonl lines, parquet rows decoded, stream records delivered by `datasets`, which decodes whole
arrow batches beneath) and documents packed into the shards (the completion markers' `reading` accounts),
then the ratios against the targets:
records read <= 1.05 x records used, and 40-shard seconds <= 1.2 x 3-shard seconds.

At 2e7 tokens a 40-shard run's shards hold 5e5 tokens, about 270 times fewer than a study's (~1.3e8, built
in seconds to minutes each), so a cost paid once per shard (opening its share, fsyncs, thread starts) shows
here as it never would in a study. A run takes a second or two, which the load of other processes on a small
shared machine can move by a third or more; so each shard count runs `--repeats` times, interleaved with the
other, every run is printed, and the time ratio is that of the medians.

    .venv/bin/python bench/preprocess_scaling.py [--tokens 20000000] [--repeats 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from plasticity_dist.data.hub import load_hf
from plasticity_dist.data.preprocess import PreprocessArgs, plan_jobs, preprocess
from plasticity_dist.data.sources import iter_documents

SEQ_LEN = 255
ROWS_PER_BLOCK = 16
SHARD_COUNTS = (3, 40)  # baseline first
SOURCE_SLACK = 1.5  # the source holds this many times the tokens asked for
READ_TARGET, TIME_TARGET = 1.05, 1.2
REPEATS = 3
# The local parquet file's row groups: under a quarter of a 40-shard share at the default tokens, so each goes
# whole to one shard (a wider group is split by rows, and shards then decode the rows before their share).
# The folder's files hold 4 row groups each, the pieces `hf:` streams are resharded into.
ROW_GROUP_ROWS = 256
FOLDER_FILES = 60


def documents(tokens: int, seed: int = 0) -> list[str]:
    """Documents of 8 to 200 random words, about 600 bytes on average (byte tokenizer: bytes + 1 tokens each),
    `tokens` in all."""
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=int(n))) for n in rng.integers(2, 10, 5000)]
    texts, total = [], 0
    while total < tokens:
        text = " ".join(words[i] for i in rng.integers(0, len(words), int(rng.integers(8, 200))))
        texts.append(text)
        total += len(text.encode()) + 1
    return texts


def write_sources(work: Path, texts: list[str]) -> dict[str, str]:
    """The three source forms, holding the same documents."""
    jsonl = work / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    parquet = work / "docs.parquet"
    pq.write_table(pa.table({"text": texts}), parquet, row_group_size=ROW_GROUP_ROWS)
    folder = work / "hub-like"
    folder.mkdir()
    per_file = len(texts) // FOLDER_FILES  # equal files, as a hub corpus's are (the few left over are dropped)
    for number in range(FOLDER_FILES):
        pq.write_table(pa.table({"text": texts[number * per_file:(number + 1) * per_file]}),
                       folder / f"{number:05d}.parquet", row_group_size=math.ceil(per_file / 4))
    return {"jsonl": str(jsonl), "parquet": str(parquet), "hf_parquet_folder": f"hf:{folder}"}


def shard_settings(tokens: int, shards: int) -> PreprocessArgs:
    """Arguments whose plan has exactly `shards` training shards for `tokens` tokens."""
    rows = tokens // (SEQ_LEN + 1)
    shard_rows = math.ceil(rows / shards / ROWS_PER_BLOCK) * ROWS_PER_BLOCK
    return PreprocessArgs("", tokens, seq_len=SEQ_LEN, rows_per_block=ROWS_PER_BLOCK,
                          shard_tokens=shard_rows * (SEQ_LEN + 1))


def run(source: str, tokens: int, shards: int, out: Path) -> dict[str, float]:
    settings = shard_settings(tokens, shards)
    args = PreprocessArgs(source, tokens, seq_len=SEQ_LEN, rows_per_block=ROWS_PER_BLOCK,
                          shard_tokens=settings.shard_tokens)
    planned = len(plan_jobs(args))
    if planned != shards:
        raise SystemExit(f"bench/preprocess_scaling.py: the plan has {planned} shards, not {shards}")
    load_hf.cache_clear()  # each run opens its stream afresh, as a new process would
    started = time.perf_counter()
    preprocess(args, out)
    seconds = time.perf_counter() - started
    markers = [json.loads(path.read_text())["reading"] for path in sorted(out.glob(".progress/shard-*.json"))]
    return {"seconds": seconds, "records_read": sum(marker["source_records_read"] for marker in markers),
            "records_used": sum(marker["documents_used"] for marker in markers)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20_000_000,
                        help="tokens to preprocess (default 2e7), rounded to whole shards of whole blocks")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"runs per source form and shard count, interleaved (default {REPEATS})")
    parser.add_argument("--work", help="folder for sources and outputs (default: a temporary one, removed)")
    options = parser.parse_args()
    if options.repeats < 1:
        parser.error(f"--repeats {options.repeats} must be at least 1")
    unit = math.lcm(*SHARD_COUNTS) * ROWS_PER_BLOCK * (SEQ_LEN + 1)  # every shard count divides the rows evenly
    tokens = max(1, round(options.tokens / unit)) * unit
    work = Path(options.work or tempfile.mkdtemp(prefix="preprocess-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    texts = documents(int(tokens * SOURCE_SLACK))
    sources = write_sources(work, texts)
    print(f"tokens: {tokens}")
    print(f"source_documents: {len(texts)}")
    met = True
    try:
        for form, source in sources.items():
            next(iter_documents(source))  # imports and first-use setup, outside the timed runs
            results: dict[int, list[dict[str, float]]] = {shards: [] for shards in SHARD_COUNTS}
            for _ in range(options.repeats):
                for shards in SHARD_COUNTS:
                    out = work / f"{form}-{shards}"
                    shutil.rmtree(out, ignore_errors=True)  # else the run resumes the last one's finished shards
                    results[shards].append(run(source, tokens, shards, out))
            for shards, runs in results.items():
                seconds = [result["seconds"] for result in runs]
                worst = max(runs, key=lambda each: each["records_read"] / each["records_used"])
                ratio = worst["records_read"] / worst["records_used"]
                print(f"{form}_{shards}_shards_seconds: {statistics.median(seconds):.2f} "
                      f"(median of {', '.join(f'{value:.2f}' for value in seconds)})")
                print(f"{form}_{shards}_shards_records_read: {worst['records_read']}")
                print(f"{form}_{shards}_shards_records_used: {worst['records_used']}")
                print(f"{form}_{shards}_shards_read_per_used: {ratio:.3f} (target <= {READ_TARGET})")
                met &= ratio <= READ_TARGET
            baseline, many = (statistics.median(result["seconds"] for result in results[shards])
                              for shards in SHARD_COUNTS)
            print(f"{form}_seconds_{SHARD_COUNTS[1]}_vs_{SHARD_COUNTS[0]}_shards: {many / baseline:.3f} "
                  f"(target <= {TIME_TARGET})")
            met &= many / baseline <= TIME_TARGET
    finally:
        if not options.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"targets_met: {'yes' if met else 'no'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
