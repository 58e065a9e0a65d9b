"""`synthetic:LANG` generation plus byte tokenization against bare `ByteTokenizer.encode`, one core.

For each language: tokens/s of `iter_documents("synthetic:LANG")` encoded with the byte tokenizer, and
tokens/s of encoding the same documents again when they are already generated; `ratio` is the first over
the second (how much of the bare tokenizer's speed survives generating the text too). Times are this
process's CPU seconds (it runs on one core), so other load on the machine does not skew them.
"""

from __future__ import annotations

import argparse
import itertools
import time

from plasticity_dist.data.sources import iter_documents
from plasticity_dist.data.tokenizer import ByteTokenizer

LANGS = ("en", "zh", "fr", "ja", "es", "de", "pt", "ru", "vi")


def generate_and_encode(lang: str, documents: int, tokenizer: ByteTokenizer) -> tuple[list[str], int, float]:
    """The documents, their token count, and the seconds spent generating and encoding them."""
    texts, tokens = [], 0
    start = time.process_time()
    for text in itertools.islice(iter_documents(f"synthetic:{lang}", seed=1), documents):
        tokens += len(tokenizer.encode(text))
        texts.append(text)
    return texts, tokens, time.process_time() - start


def encode_only(texts: list[str], tokenizer: ByteTokenizer) -> float:
    start = time.process_time()
    for text in texts:
        tokenizer.encode(text)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=20_000, help="documents per language")
    args = parser.parse_args()
    tokenizer = ByteTokenizer()
    next(iter_documents("synthetic:en"))  # warm-up: imports
    all_tokens = all_generated_s = all_bare_s = 0.0
    for lang in LANGS:
        texts, tokens, generated_s = generate_and_encode(lang, args.documents, tokenizer)
        bare_s = encode_only(texts, tokenizer)
        all_tokens += tokens
        all_generated_s += generated_s
        all_bare_s += bare_s
        print(f"{lang}_synthetic_tokens_per_s: {tokens / generated_s:,.0f}")
        print(f"{lang}_bare_encode_tokens_per_s: {tokens / bare_s:,.0f}")
    print(f"synthetic_tokens_per_s: {all_tokens / all_generated_s:,.0f}")
    print(f"bare_encode_tokens_per_s: {all_tokens / all_bare_s:,.0f}")
    print(f"ratio_synthetic_to_bare_encode: {all_bare_s / all_generated_s:.3f}")


if __name__ == "__main__":
    main()
