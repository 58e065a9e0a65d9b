"""`plasticity-dist tokenizer train`: one shared byte-level BPE (Hugging Face `tokenizers`) for every language.

- An equal sample of each source: its first documents up to `sample_bytes` UTF-8 bytes (the last one cut at a
  character boundary), so every language weighs the same in the merges whatever its documents' lengths; a
  source that holds less is refused, naming how much it has.
- Every byte is reachable: the 256 byte symbols of the byte-level alphabet are in the vocabulary before any
  merge, so any text encodes without an unknown token. `<|endoftext|>` is the one special token.
- Deterministic: the sources are read in the order given, and `tokenizers` breaks ties between equally
  frequent merges by the pair's ids, which follow the sorted alphabet; the same arguments give byte-identical
  files. `training.json` records the arguments and the bytes taken from each source.
- The output folder loads with `AutoTokenizer.from_pretrained(DIR)`, so `preprocess --tokenizer DIR` uses it.
  It is written to `<out>.tmp` and renamed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from plasticity_dist.common.fileio import atomic_write_json
from plasticity_dist.common.logging import get_logger
from plasticity_dist.data.sources import iter_documents
from plasticity_dist.data.tokenizer import END_OF_TEXT

log = get_logger()
BYTE_ALPHABET_SIZE = 256
TRAINING_RECORD = "training.json"


@dataclass(frozen=True)
class TokenizerTrainingArgs:
    """What determines the tokenizer's files (recorded in `training.json`)."""

    sources: tuple[str, ...]
    vocab_size: int
    sample_bytes: int = 100_000_000  # per source
    text_field: str = "text"
    seed: int = 0  # of synthetic sources

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("--source: name at least one source")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"--source names a source twice: {', '.join(self.sources)}")
        minimum = BYTE_ALPHABET_SIZE + 1
        if self.vocab_size < minimum:
            raise ValueError(f"--vocab-size {self.vocab_size} must be at least {minimum} (256 bytes and end-of-text)")
        if self.sample_bytes < 1:
            raise ValueError(f"--sample-bytes {self.sample_bytes} must be at least 1")


def sample_documents(source: str, sample_bytes: int, text_field: str = "text", seed: int = 0) -> Iterator[str]:
    """The first documents of `source` holding exactly `sample_bytes` UTF-8 bytes (less only where the last
    document is cut inside a character)."""
    left = sample_bytes
    for text in iter_documents(source, text_field=text_field, seed=seed):
        encoded = text.encode("utf-8")
        if len(encoded) >= left:
            yield encoded[:left].decode("utf-8", errors="ignore")
            return
        left -= len(encoded)
        yield text
    raise ValueError(f"source {source!r} holds {sample_bytes - left:,} bytes of text, less than the "
                     f"--sample-bytes {sample_bytes:,} taken from every source")


def _counted(documents: Iterator[str], source: str, taken: dict[str, int]) -> Iterator[str]:
    for text in documents:
        taken[source] = taken.get(source, 0) + len(text.encode("utf-8"))
        yield text


def train_tokenizer(args: TokenizerTrainingArgs, out: str | Path) -> Path:
    """Train the shared tokenizer on an equal sample of every source and write it to `out`; returns `out`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = Path(out)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    taken: dict[str, int] = {}
    samples = (text for source in args.sources
               for text in _counted(sample_documents(source, args.sample_bytes, args.text_field, args.seed),
                                    source, taken))
    tokenizer.train_from_iterator(samples, trainer)
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT)
    wrapped.save_pretrained(staging)
    atomic_write_json(staging / TRAINING_RECORD, {**asdict(args), "taken_bytes": taken,
                                                  "vocab_size_trained": tokenizer.get_vocab_size()})
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    log.info(f"tokenizer of {tokenizer.get_vocab_size():,} tokens from {len(args.sources)} sources "
             f"({args.sample_bytes:,} bytes each) → {out}")
    return out

