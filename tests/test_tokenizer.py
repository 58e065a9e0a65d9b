"""Tokenizers: byte round trips in every script, a locally trained BPE through load_tokenizer, bad specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plasticity_dist.data.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer

TEXTS = [
    "Hello, world.", "Xin chào thế giới, tiếng Việt có dấu.", "你好，世界。", "こんにちは世界", "Привет, мир", "",
]


def _save_bpe(folder: Path, *, eos_token: str | None) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(TEXTS * 4, trainer)
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos_token).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_bpe(tmp_path_factory.mktemp("bpe"), eos_token="<|endoftext|>")


def assert_documents_end_with_eot(tokenizer) -> None:
    """`encode_documents` is `encode` of each text followed by end-of-text, in the dtype asked for."""
    expected = [i for text in TEXTS for i in tokenizer.encode(text) + [tokenizer.eot_id]]
    for dtype in (np.uint16, np.uint32):
        ids = tokenizer.encode_documents(TEXTS, np.dtype(dtype))
        assert ids.dtype == dtype and ids.tolist() == expected


def test_byte_tokenizer_round_trips_every_script() -> None:
    tokenizer = load_tokenizer("byte")
    assert isinstance(tokenizer, ByteTokenizer)
    assert (tokenizer.name, tokenizer.vocab_size, tokenizer.eot_id) == ("byte", 257, 256)
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert all(0 <= i < 256 for i in ids)
        assert tokenizer.decode(ids) == text
    assert_documents_end_with_eot(tokenizer)
    assert tokenizer.decode(tokenizer.encode("ạ") + [tokenizer.eot_id] + tokenizer.encode("ố")) == "ạố"


def test_hf_tokenizer_from_local_folder_round_trips_vietnamese(bpe_folder: Path) -> None:
    tokenizer = load_tokenizer(str(bpe_folder))
    assert isinstance(tokenizer, HFTokenizer)
    assert tokenizer.name == f"hf:{bpe_folder}"
    assert tokenizer.eot_id == 0  # the first special token
    assert 256 < tokenizer.vocab_size <= 320
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert tokenizer.eot_id not in ids
        assert tokenizer.decode(ids) == text
    vietnamese = "Xin chào thế giới"
    assert len(tokenizer.encode(vietnamese)) < len(vietnamese.encode())  # merges were learned
    assert_documents_end_with_eot(tokenizer)


def test_manifest_name_loads_the_same_tokenizer(bpe_folder: Path) -> None:
    tokenizer = load_tokenizer(str(bpe_folder))
    again = load_tokenizer(tokenizer.name)
    assert (again.name, again.vocab_size, again.eot_id) == (tokenizer.name, tokenizer.vocab_size, tokenizer.eot_id)


def test_tokenizer_without_eos_is_refused_by_name(tmp_path: Path) -> None:
    folder = _save_bpe(tmp_path / "no-eos", eos_token=None)
    with pytest.raises(ValueError, match=f"tokenizer '{folder}' has no eos token"):
        load_tokenizer(str(folder))


def test_missing_tokenizer_folder_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=f"cannot load tokenizer '{missing}' \\(no such local folder"):
        load_tokenizer(str(missing))
