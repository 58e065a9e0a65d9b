"""Tokenizers: a byte-level one (offline default, covers every script) and any Hugging Face tokenizer.

Both expose the same small interface; `name` is the id a shard manifest records, so a dataset can be
matched to the tokenizer that made it. `encode_documents` is what preprocessing packs: one array of ids,
each document followed by end-of-text, built without per-token Python objects where the tokenizer allows.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Protocol

import numpy as np

BYTE_SPEC = "byte"
HF_PREFIX = "hf:"
END_OF_TEXT = "<|endoftext|>"  # the end-of-text token of the tokenizers we write (exported byte, trained BPE)


class Tokenizer(Protocol):
    name: str
    vocab_size: int
    eot_id: int

    def encode(self, text: str) -> list[int]: ...

    def encode_documents(self, texts: list[str], dtype: np.dtype) -> np.ndarray: ...


def _end_each_document(ids: np.ndarray, lengths: list[int], eot_id: int) -> np.ndarray:
    """`ids` of documents of `lengths`, back to back, with end-of-text inserted after each document."""
    return np.insert(ids, np.cumsum(lengths, dtype=np.int64), eot_id)


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255 and an end-of-text id 256."""

    name = BYTE_SPEC
    vocab_size = 257
    eot_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_documents(self, texts: list[str], dtype: np.dtype) -> np.ndarray:
        encoded = [text.encode("utf-8") for text in texts]
        ids = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(dtype)
        return _end_each_document(ids, [len(document) for document in encoded], self.eot_id)

    def decode(self, ids: Any) -> str:
        """Ids back to text; end-of-text ids are dropped."""
        array = np.asarray(ids, dtype=np.int64)
        return array[array != self.eot_id].astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face tokenizer from a local folder or hub name; its eos token ends each document."""

    def __init__(self, path_or_name: str) -> None:
        from transformers import AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(path_or_name)
        except (OSError, ValueError) as error:
            tried = "local folder" if Path(path_or_name).is_dir() else "no such local folder; tried as a hub name"
            raise ValueError(f"cannot load tokenizer {path_or_name!r} ({tried}): {error}") from None
        if self._tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {path_or_name!r} has no eos token to use as end-of-text")
        self.name = HF_PREFIX + path_or_name
        self.vocab_size = len(self._tokenizer)
        self.eot_id = int(self._tokenizer.eos_token_id)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def encode_documents(self, texts: list[str], dtype: np.dtype) -> np.ndarray:
        documents = self._tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        lengths = [len(document) for document in documents]
        ids = np.fromiter(itertools.chain.from_iterable(documents), dtype=dtype, count=sum(lengths))
        return _end_each_document(ids, lengths, self.eot_id)

    def decode(self, ids: Any) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)


def load_tokenizer(spec: str) -> Tokenizer:
    """`byte` gives the byte tokenizer; anything else (optionally `hf:`-prefixed, as a manifest records
    it) is a Hugging Face tokenizer folder or hub name."""
    if spec == BYTE_SPEC:
        return ByteTokenizer()
    return HFTokenizer(spec.removeprefix(HF_PREFIX))
