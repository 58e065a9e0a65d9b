"""`plasticity-dist preprocess` and `verify`: exact packing, byte-identical output, resume, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from plasticity_dist.cli import main
from plasticity_dist.data.loader import ShardLoader
from plasticity_dist.data.preprocess import PreprocessArgs, ShardJob, plan_jobs
from plasticity_dist.data.shards import BlockReader, read_manifest, shard_name
from plasticity_dist.data.tokenizer import ByteTokenizer

SEQ_LEN = 31
SMALL = ["--seq-len", str(SEQ_LEN), "--rows-per-block", "8", "--shard-tokens", "1024"]  # 32 rows per shard


def preprocess(source: str, out: Path, tokens: int, *extra: str) -> int:
    return main(["preprocess", "--source", source, "--out", str(out), "--tokens", str(tokens), *SMALL, *extra])


def dataset_bytes(out: Path) -> dict[str, bytes]:
    """Every file a dataset consists of (shards, manifests, completion markers), by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def expected_shard_tokens(job: ShardJob, args: PreprocessArgs, count: int) -> np.ndarray:
    """The first `count` ids of a shard's documents, each followed by end-of-text."""
    tokenizer, ids = ByteTokenizer(), []
    for text in job.documents(args):
        ids += tokenizer.encode(text) + [tokenizer.eot_id]
        if len(ids) >= count:
            return np.array(ids[:count])
    raise AssertionError("source too short")


def assert_round_trip(out: Path, source: str, **options) -> None:
    manifest = read_manifest(out)
    reader = BlockReader(out, manifest)
    args = PreprocessArgs(**manifest.args)
    assert (args.source, args.text_field, args.seed) == (source, options.get("text_field", "text"),
                                                         options.get("seed", 0))
    jobs = [job for job in plan_jobs(args) if job.split == "train"]
    for index, (shard, job) in enumerate(zip(manifest.shards, jobs, strict=True)):
        stored = np.concatenate([reader.read(index, block) for block in range(len(shard.blocks))]).ravel()
        np.testing.assert_array_equal(stored, expected_shard_tokens(job, args, shard.tokens))


def document_numbers(dataset: Path) -> set[str]:
    """The numbers of the `document N:` texts a dataset holds."""
    manifest = read_manifest(dataset)
    reader = BlockReader(dataset, manifest)
    text = ByteTokenizer().decode(np.concatenate([
        reader.read(s, b).ravel() for s, shard in enumerate(manifest.shards) for b in range(len(shard.blocks))]))
    return {word.rstrip(":") for word in text.split("document ")[1:] for word in [word.split()[0]]}


@pytest.fixture
def jsonl_source(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    with open(path, "w") as handle:
        for number in range(400):
            handle.write(json.dumps({"body": f"document {number}: " + "naïve café " * (number % 7), "id": number}) + "\n")
    return path


def test_jsonl_round_trip_is_exact_and_cut_at_whole_sequences(tmp_path: Path, jsonl_source: Path, capsys) -> None:
    out = tmp_path / "out"
    assert preprocess(str(jsonl_source), out, 3000, "--text-field", "body") == 0
    manifest = read_manifest(out)
    assert manifest.rows == 3000 // (SEQ_LEN + 1) and manifest.rows * (SEQ_LEN + 1) <= 3000
    assert [s.rows for s in manifest.shards] == [32, 32, 29] and manifest.tokenizer == "byte"
    assert manifest.args["text_field"] == "body" and manifest.source == str(jsonl_source)
    assert_round_trip(out, str(jsonl_source), text_field="body")
    assert "93 sequences, 2,976 tokens" in capsys.readouterr().out.strip().splitlines()[-1]


def test_parquet_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": [f"parquet row {i} " * (1 + i % 5) for i in range(300)]}), source)
    assert preprocess(str(source), tmp_path / "out", 2048) == 0
    assert_round_trip(tmp_path / "out", str(source))


def test_synthetic_round_trip_with_a_validation_split_of_unseen_documents(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert preprocess("synthetic:ja", out, 4096, "--val-tokens", "1500", "--seed", "5") == 0
    assert_round_trip(out, "synthetic:ja", seed=5)
    val = read_manifest(out / "val")
    assert val.split == "val" and val.rows == 1500 // (SEQ_LEN + 1)
    assert main(["verify", str(out)]) == 0


def _parquet_files(jsonl: Path, folder: Path) -> str:
    """The records of `jsonl` in three parquet files, as a streamed `hf:` source."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    folder.mkdir()
    for number, start in enumerate(range(0, len(records), 150)):
        pq.write_table(pa.Table.from_pylist(records[start:start + 150]), folder / f"{number}.parquet")
    return f"hf:{folder}"


def _saved_to_disk(jsonl: Path, folder: Path) -> str:
    datasets.Dataset.from_list([json.loads(line) for line in jsonl.read_text().splitlines()]).save_to_disk(str(folder))
    return f"hf:{folder}"


HELD_OUT_SOURCES: dict[str, Callable[[Path, Path], str]] = {
    "jsonl": lambda jsonl, _folder: str(jsonl), "hf streamed files": _parquet_files, "hf save_to_disk": _saved_to_disk,
}


@pytest.mark.parametrize("kind", HELD_OUT_SOURCES)
def test_validation_documents_are_held_out_of_training(tmp_path: Path, jsonl_source: Path, kind: str) -> None:
    out = tmp_path / "out"
    source = HELD_OUT_SOURCES[kind](jsonl_source, tmp_path / "source")
    assert preprocess(source, out, 2048, "--text-field", "body", "--val-tokens", "1024") == 0
    assert document_numbers(out) and document_numbers(out / "val")
    assert not document_numbers(out) & document_numbers(out / "val")


ONE_SHARD_EACH = ["--seq-len", str(SEQ_LEN), "--rows-per-block", "8", "--shard-tokens", "1e6", "--val-tokens", "1024"]


@pytest.fixture
def txt_corpus(tmp_path: Path) -> tuple[Path, int]:
    """A .txt corpus of 18,251 byte tokens (end-of-text included), 5% more than 16,384 training plus 1,024
    validation tokens, in 230 paragraphs of 37 to 107 bytes."""
    documents = [f"document {number}: " + "grüne Wiese " * (2 + number % 7) for number in range(230)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(documents) + "\n")
    return path, sum(len(document.encode()) + 1 for document in documents)


def test_a_corpus_just_large_enough_for_training_and_validation_tokens_makes_both_splits(
        tmp_path: Path, txt_corpus: tuple[Path, int]) -> None:
    source, source_tokens = txt_corpus
    assert source_tokens == 18_251
    out = tmp_path / "out"
    assert main(["preprocess", "--source", str(source), "--out", str(out), "--tokens", "16384", *ONE_SHARD_EACH]) == 0
    assert read_manifest(out).rows == 512 and read_manifest(out / "val").rows == 32
    assert_round_trip(out, str(source))
    assert not document_numbers(out) & document_numbers(out / "val")
    assert main(["verify", str(out)]) == 0


def test_a_too_small_corpus_reports_the_sequences_packed_and_the_tokens_it_holds(
        tmp_path: Path, txt_corpus: tuple[Path, int], capsys) -> None:
    source, source_tokens = txt_corpus
    error = _error_of(capsys, "preprocess", "--source", str(source), "--out", str(tmp_path / "out"),
                      "--tokens", "20480", *ONE_SHARD_EACH)
    jobs = plan_jobs(PreprocessArgs(str(source), 20480, seq_len=SEQ_LEN, rows_per_block=8, shard_tokens=10**6,
                                    val_tokens=1024))
    train = next(job for job in jobs if job.split == "train")
    documents = list(train.documents(PreprocessArgs(str(source), 20480, seq_len=SEQ_LEN)))
    packed = sum(len(document.encode()) + 1 for document in documents) // (SEQ_LEN + 1)
    assert 500 < packed < 640
    assert f"ran out after {len(documents)} documents ({packed} of 640 sequences)" in error
    # the source's size estimated from the share this shard read, not by tokenizing all of it
    estimate = int(re.search(r"the source holds about ([\d,]+), and --tokens plus --val-tokens need 21,504",
                             error).group(1).replace(",", ""))
    assert abs(estimate - source_tokens) < 0.03 * source_tokens


def test_same_arguments_give_identical_bytes_for_any_workers_and_array_split(tmp_path: Path) -> None:
    arguments = ("synthetic:fr", 6000, "--val-tokens", "1000")
    assert preprocess(*arguments[:1], tmp_path / "one", *arguments[1:]) == 0
    reference = dataset_bytes(tmp_path / "one")
    assert len([name for name in reference if name.endswith(".tar")]) == 7
    assert preprocess(arguments[0], tmp_path / "again", *arguments[1:]) == 0
    assert dataset_bytes(tmp_path / "again") == reference
    assert preprocess(arguments[0], tmp_path / "two", *arguments[1:], "--workers", "2") == 0
    assert dataset_bytes(tmp_path / "two") == reference
    assert preprocess(arguments[0], tmp_path / "two", *arguments[1:], "--workers", "2") == 0  # nothing left to build
    assert dataset_bytes(tmp_path / "two") == reference
    for index in range(3):
        assert not (tmp_path / "array" / "manifest.json").exists()
        assert preprocess(arguments[0], tmp_path / "array", *arguments[1:], "--shard-index", str(index),
                          "--num-shards", "3") == 0
    assert dataset_bytes(tmp_path / "array") == reference


@pytest.mark.parametrize("workers", ["1", "2"])  # 1: a shard is made durable on a thread while the next is packed
def test_preprocess_killed_mid_run_then_rerun_ends_byte_identical(tmp_path: Path, workers: str) -> None:
    arguments = ["synthetic:de", "400000", "--seq-len", "255", "--shard-tokens", "25000", "--rows-per-block", "16"]
    assert main(["preprocess", "--source", arguments[0], "--out", str(tmp_path / "clean"), "--tokens", *arguments[1:]]) == 0
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "plasticity_dist.cli", "preprocess", "--source", arguments[0], "--out", str(out),
               "--tokens", *arguments[1:], "--workers", workers]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(out.glob(".progress/shard-*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the whole job, workers included, as a scheduler would
    process.wait()
    finished = len(list(out.glob(".progress/shard-*.json")))
    assert 0 < finished < 16 and not (out / "manifest.json").exists()
    assert main(["preprocess", "--source", arguments[0], "--out", str(out), "--tokens", *arguments[1:]]) == 0
    clean, resumed = dataset_bytes(tmp_path / "clean"), dataset_bytes(out)
    assert {name: data for name, data in resumed.items() if ".tmp" not in name} == clean  # killed mid-write


def _fsynced_path(fd: int, out: Path) -> str:
    """The file or folder behind `fd`, relative to `out`, with the pid of a temporary name dropped."""
    return re.sub(r"\.tmp\d+$", ".tmp", str(Path(os.readlink(f"/proc/self/fd/{fd}")).relative_to(out)))


def test_one_worker_packs_the_next_shard_while_the_last_is_made_durable(tmp_path: Path, monkeypatch) -> None:
    """Every shard's tar is fsynced, renamed and its folder fsynced, then its completion marker the same way, in
    build order; meanwhile the next shard is packed (the first tar's fsync waits for the second shard's file)."""
    out, events, overlapped = tmp_path / "data", [], []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        path = _fsynced_path(fd, out)
        if path == f"{shard_name(0)}.tmp":
            deadline = time.monotonic() + 10
            while not (out / f"{shard_name(1)}.tmp").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            overlapped.append((out / f"{shard_name(1)}.tmp").exists())
        real_fsync(fd)
        events.append(("fsync", path))

    def replace(source: str | Path, target: str | Path) -> None:
        real_replace(source, target)
        events.append(("rename", str(Path(target).relative_to(out))))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert preprocess("synthetic:ru", out, 4096) == 0
    assert overlapped == [True]
    shards = len(read_manifest(out).shards)
    written = [(".progress/.args.json.tmp", ".progress/args.json", ".progress")]
    for index in range(shards):
        marker = shard_name(index).replace(".tar", ".json")
        written += [(f"{shard_name(index)}.tmp", shard_name(index), "."),
                    (f".progress/.{marker}.tmp", f".progress/{marker}", ".progress")]
    written.append((".manifest.json.tmp", "manifest.json", "."))
    assert events == [event for tmp, final, folder in written
                      for event in [("fsync", tmp), ("rename", final), ("fsync", folder)]]


def test_a_disk_error_while_a_shard_is_made_durable_fails_the_run_and_a_rerun_completes_it(
        tmp_path: Path, monkeypatch) -> None:
    assert preprocess("synthetic:ru", tmp_path / "clean", 4096) == 0
    out, real_fsync = tmp_path / "data", os.fsync

    def fsync(fd: int) -> None:
        if _fsynced_path(fd, out) == f"{shard_name(2)}.tmp":
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        preprocess("synthetic:ru", out, 4096)
    assert sorted(path.name for path in out.glob(".progress/shard-*.json")) == ["shard-000000.json", "shard-000001.json"]
    monkeypatch.undo()
    assert preprocess("synthetic:ru", out, 4096) == 0
    assert {name: data for name, data in dataset_bytes(out).items() if ".tmp" not in name} == dataset_bytes(tmp_path / "clean")


def test_rerun_with_other_arguments_is_refused(tmp_path: Path, capsys) -> None:
    assert preprocess("synthetic:es", tmp_path, 1024) == 0
    error = _error_of(capsys, "preprocess", "--source", "synthetic:es", "--out", str(tmp_path), "--tokens", "2048", *SMALL)
    assert "args.json" in error and "other arguments {'tokens': (1024, 2048)}" in error


def _error_of(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    return error


def test_empty_source_and_missing_text_field_name_the_source(tmp_path: Path, jsonl_source: Path, capsys) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert str(empty) in _error_of(capsys, "preprocess", "--source", str(empty), "--out", str(tmp_path / "a"),
                                   "--tokens", "1000", *SMALL)
    error = _error_of(capsys, "preprocess", "--source", str(jsonl_source), "--out", str(tmp_path / "b"),
                      "--tokens", "1000", *SMALL)
    assert str(jsonl_source) in error and "'text'" in error
    short = _error_of(capsys, "preprocess", "--source", str(jsonl_source), "--out", str(tmp_path / "c"),
                      "--tokens", "1e6", "--text-field", "body", *SMALL)
    assert str(jsonl_source) in short and "ran out" in short


@pytest.fixture
def verified_dataset(tmp_path: Path) -> Path:
    assert preprocess("synthetic:pt", tmp_path / "data", 4096) == 0
    return tmp_path / "data"


def test_verify_names_the_first_bad_shard_and_block(verified_dataset: Path, capsys) -> None:
    assert main(["verify", str(verified_dataset)]) == 0
    assert "OK" in capsys.readouterr().out
    shard = read_manifest(verified_dataset).shards[2]
    path = verified_dataset / shard_name(2)
    data = bytearray(path.read_bytes())
    data[shard.blocks[1].offset + 20] ^= 0x01
    path.write_bytes(bytes(data))
    assert f"{shard_name(2)} block 1" in _error_of(capsys, "verify", str(verified_dataset))
    path.write_bytes(bytes(data[:shard.blocks[3].offset]))
    assert f"{shard_name(2)} block 1" in _error_of(capsys, "verify", str(verified_dataset))


def test_verify_completes_an_array_job_whose_manifest_is_missing(verified_dataset: Path, capsys) -> None:
    (verified_dataset / "manifest.json").unlink()
    assert main(["verify", str(verified_dataset)]) == 0
    (verified_dataset / "manifest.json").unlink()
    (verified_dataset / ".progress" / "shard-000001.json").unlink()
    assert "incomplete" in _error_of(capsys, "verify", str(verified_dataset))


def test_dataset_of_another_tokenizer_is_refused_by_the_loader(verified_dataset: Path) -> None:
    with pytest.raises(ValueError, match=f"{verified_dataset}/manifest.json: tokenizer is byte .*expected hf:gpt2"):
        ShardLoader([verified_dataset], seq_len=SEQ_LEN, micro_batch_size=2, global_batch_size=2, token_budget=64,
                    rank=0, world_size=1, seed=0, task=0, tokenizer="hf:gpt2")


def reading_accounts(dataset: Path) -> dict[str, int]:
    """The completion markers' reading accounts of a dataset, summed over its shards."""
    markers = [json.loads(path.read_text())["reading"] for path in sorted(dataset.glob(".progress/shard-*.json"))]
    return {key: sum(marker[key] for marker in markers) for key in markers[0]}


@pytest.mark.parametrize("form", ["jsonl", "parquet"])
def test_the_source_is_read_once_however_many_shards_are_built(tmp_path: Path, jsonl_source: Path, form: str) -> None:
    source, decoded_at_once = jsonl_source, 1
    if form == "parquet":  # row groups of 2 documents (under 1/8 of a shard's share: each read whole by one shard)
        decoded_at_once = 2
        lines = [json.loads(line) for line in jsonl_source.read_text().splitlines()]
        source = tmp_path / "docs.parquet"
        pq.write_table(pa.table({"body": [line["body"] for line in lines]}), source, row_group_size=2)
    documents = len(jsonl_source.read_text().splitlines())
    for shard_tokens in ("8192", "1024"):  # 2 shards, then 13
        out = tmp_path / f"{form}-{shard_tokens}"
        assert main(["preprocess", "--source", str(source), "--out", str(out), "--tokens", "13000", "--seq-len",
                     str(SEQ_LEN), "--rows-per-block", "8", "--shard-tokens", shard_tokens, "--text-field", "body"]) == 0
        accounts, shards = reading_accounts(out), len(read_manifest(out).shards)
        assert accounts["source_records_read"] <= min(documents, accounts["documents_read"] + shards * decoded_at_once)
        assert accounts["documents_read"] - accounts["documents_used"] <= shards  # a shard stops where it is full
    assert shards == 13


def test_same_arguments_give_identical_bytes_for_any_array_split_of_a_jsonl_source(
        tmp_path: Path, jsonl_source: Path) -> None:
    arguments = ("--tokens", "6000", "--val-tokens", "1000", "--text-field", "body", *SMALL)
    assert main(["preprocess", "--source", str(jsonl_source), "--out", str(tmp_path / "one"), *arguments]) == 0
    for index in range(3):
        assert main(["preprocess", "--source", str(jsonl_source), "--out", str(tmp_path / "array"), *arguments,
                     "--shard-index", str(index), "--num-shards", "3", "--workers", "2"]) == 0
    assert dataset_bytes(tmp_path / "array") == dataset_bytes(tmp_path / "one")
    assert_round_trip(tmp_path / "one", str(jsonl_source), text_field="body")


def test_a_corpus_downloaded_with_hf_download_preprocesses_offline(tmp_path: Path, monkeypatch) -> None:
    """The layout `hf download --repo-type dataset HuggingFaceFW/fineweb-2 --include 'data/vie_Latn/train/*'
    --include README.md --local-dir DIR` leaves (the dataset card with its configs, the parquet files, hf's
    download metadata), read as `hf:DIR:vie_Latn` without a network."""
    root = tmp_path / "fineweb-2"
    train = root / "data" / "vie_Latn" / "train"
    train.mkdir(parents=True)
    for number in range(4):
        texts = [f"tài liệu {number}.{i}: " + "xin chào " * (i % 9) for i in range(60)]
        pq.write_table(pa.table({"text": texts, "id": [f"{number}.{i}" for i in range(60)]}),
                       train / f"{number:03d}_00000.parquet", row_group_size=15)
        metadata = root / ".cache" / "huggingface" / "download" / "data" / "vie_Latn" / "train"
        metadata.mkdir(parents=True, exist_ok=True)
        (metadata / f"{number:03d}_00000.parquet.metadata").write_text("0123abcd\n1700000000.0\n")
    (root / "README.md").write_text("---\nconfigs:\n- config_name: vie_Latn\n  data_files:\n  - split: train\n"
                                    "    path: data/vie_Latn/train/*\n---\n")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "vi"
    assert preprocess(f"hf:{root}:vie_Latn", out, 4096) == 0
    assert len(read_manifest(out).shards) == 4
    assert_round_trip(out, f"hf:{root}:vie_Latn")
    accounts = reading_accounts(out)
    assert accounts["source_records_read"] == accounts["documents_read"] <= 1.05 * accounts["documents_used"]
