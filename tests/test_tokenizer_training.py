"""`plasticity-dist tokenizer train` on small local files in four scripts (Latin, Cyrillic, Chinese characters,
Vietnamese diacritics): deterministic, every byte reachable, an equal sample of each source; then the
tokenizer makes datasets that verify, train a task and feed its probe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from plasticity_dist.cli import main as cli_main
from plasticity_dist.data.sources import corpus_source, iter_documents, tokenizer_sample
from plasticity_dist.data.tokenizer import load_tokenizer
from plasticity_dist.model.gpt import VOCAB_MULTIPLE
from plasticity_dist.study.config import PROBE_LANGUAGE, STUDY_LANGUAGES
from plasticity_dist.train.metrics import read_metrics
from runs import final_weights, tiny_overrides, train

LANGUAGES = ("en", "ru", "zh", "vi")
SAMPLE_BYTES = 40_000
VOCAB_SIZE = 600
FILE_BYTES = 400_000  # enough text for the sample and for the datasets below


@pytest.fixture(scope="module")
def text_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One local .jsonl file per language (text from the synthetic generators)."""
    folder = tmp_path_factory.mktemp("texts")
    files = {}
    for lang in LANGUAGES:
        size, lines = 0, []
        for text in iter_documents(f"synthetic:{lang}", seed=7):
            lines.append(json.dumps({"text": text}, ensure_ascii=False))
            size += len(text.encode())
            if size >= FILE_BYTES:
                break
        files[lang] = folder / f"{lang}.jsonl"
        files[lang].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def train_command(text_files: dict[str, Path], out: Path, vocab_size: int = VOCAB_SIZE,
                  sample_bytes: str = str(SAMPLE_BYTES)) -> list[str]:
    return ["tokenizer", "train", "--source", *map(str, text_files.values()), "--vocab-size", str(vocab_size),
            "--sample-bytes", sample_bytes, "--out", str(out)]


@pytest.fixture(scope="module")
def tokenizer_dir(text_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tokenizer") / "bpe"
    assert cli_main(train_command(text_files, out)) == 0
    return out


def test_the_same_arguments_give_byte_identical_files_from_an_equal_sample_of_each_source(
        tokenizer_dir: Path, text_files: dict[str, Path], tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert cli_main(train_command(text_files, again)) == 0
    files = sorted(path.name for path in tokenizer_dir.iterdir())
    assert {"tokenizer.json", "tokenizer_config.json", "training.json"} <= set(files)
    assert files == sorted(path.name for path in again.iterdir())
    for name in files:
        assert (tokenizer_dir / name).read_bytes() == (again / name).read_bytes(), name
    record = json.loads((tokenizer_dir / "training.json").read_text())
    taken = record["taken_bytes"]
    assert list(taken) == [str(path) for path in text_files.values()]
    assert all(SAMPLE_BYTES - 3 <= count <= SAMPLE_BYTES for count in taken.values())  # cut inside a character
    assert record["vocab_size_trained"] == VOCAB_SIZE


def test_every_byte_is_reachable_and_every_script_is_merged(
        tokenizer_dir: Path, text_files: dict[str, Path]) -> None:
    tokenizer = load_tokenizer(str(tokenizer_dir))
    assert tokenizer.vocab_size == VOCAB_SIZE
    unseen = ["مرحبا بالعالم", "emoji 🦜🚀", "control \x00\x07\x1b bytes", "ǅ ẞ Ω ﬁ", "Tiếng Việt ở đâu?"]
    for text in unseen:
        ids = tokenizer.encode(text)
        assert ids and tokenizer.decode(ids) == text
        assert tokenizer.eot_id not in ids
    for lang, path in text_files.items():
        # a document after the sampled ones: each script got merges of its own from its equal share
        text = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])["text"]
        bytes_per_token = len(text.encode()) / len(tokenizer.encode(text))
        assert bytes_per_token > 1.25, (lang, bytes_per_token)  # bytes: 1.0


def test_the_study_tokenizer_samples_every_study_language_and_the_probe_language() -> None:
    sample = tokenizer_sample()  # what `tokenizer train` without --source trains on (configs/corpora.yaml)
    languages = (*STUDY_LANGUAGES, PROBE_LANGUAGE)
    assert sorted(sample["sources"]) == sorted(f"corpus:{lang}" for lang in languages)
    assert all(corpus_source(lang)[0].startswith("hf:") for lang in languages)
    assert sample["vocab_size"] % VOCAB_MULTIPLE == 0 and sample["sample_bytes"] >= 10**8


def test_bad_arguments_stop_with_one_line(text_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert cli_main(train_command(text_files, tmp_path / "bpe", vocab_size=100)) == 2
    assert "--vocab-size 100 must be at least 257" in capsys.readouterr().err
    assert cli_main(train_command(text_files, tmp_path / "bpe", sample_bytes="1e9")) == 2
    assert "less than the --sample-bytes 1,000,000,000 taken from every source" in capsys.readouterr().err
    assert not (tmp_path / "bpe").exists()


def test_datasets_made_with_it_verify_train_a_task_and_feed_its_probe(
        tokenizer_dir: Path, text_files: dict[str, Path], tmp_path: Path) -> None:
    data_root = tmp_path / "data"
    for lang, tokens in (("en", 20_000), ("vi", 8_000)):
        assert cli_main(["preprocess", "--source", str(text_files[lang]), "--out", str(data_root / lang),
                         "--tokens", str(tokens), "--seq-len", "32", "--val-tokens", "2048",
                         "--tokenizer", str(tokenizer_dir)]) == 0
        assert cli_main(["verify", str(data_root / lang)]) == 0
        manifest = json.loads((data_root / lang / "manifest.json").read_text())
        assert (manifest["tokenizer"], manifest["vocab_size"]) == (f"hf:{tokenizer_dir}", VOCAB_SIZE)
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(data_root, **{
        "curriculum.tasks": "[{name: en}]", "probe.enabled": "true", "probe.dataset": "vi", "probe.tokens": 4096,
        "probe.eval_points": 3, "probe.eval_tokens": 2048, "probe.executor": "inline", "probe.baseline": "false",
        "launch.zero_stage": 1, "forgetting.val_tokens": 2048})
    finished = train(run_dir, overrides, processes=1)
    assert finished.returncode == 0, finished.stderr[-3000:]
    (result_path,) = (run_dir / "probes").glob("*.json")
    result = json.loads(result_path.read_text())
    assert len(result["val_losses"]) == 3 and math.isfinite(result["auc"])
    assert result["val_losses"][-1] < result["val_losses"][0]  # the probe learns Vietnamese
    (task_end,) = [record for record in read_metrics(run_dir / "metrics.jsonl") if record["event"] == "task_end"]
    assert task_end["val_loss"] < math.log(VOCAB_SIZE)  # trained: better than uniform over the vocabulary
    rows = final_weights(run_dir)["tok_emb.weight"].shape[0]
    assert rows % VOCAB_MULTIPLE == 0 and VOCAB_SIZE <= rows < VOCAB_SIZE + VOCAB_MULTIPLE
