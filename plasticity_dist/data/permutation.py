"""Permutations of the token ids: the control problem's tasks, a lookup applied where batches are built.

A permutation is named by one seed (`TaskSpec.permutation`, `Task.permutation`) and drawn over the data's whole
vocabulary, end-of-text included, so the same seed gives the same map on every rank, worker and resume. Which
seed each task and probe has is the curriculum's business (study/curriculum.py).
"""

from __future__ import annotations

import functools

import numpy as np

_MAP = 13  # first entropy word of a permutation's generator, apart from the loader's streams


@functools.lru_cache(maxsize=64)
def token_permutation(seed: int, vocab_size: int) -> np.ndarray:
    """The map `new_id = table[old_id]` over `vocab_size` ids (int64, read-only)."""
    table = np.random.default_rng(np.random.SeedSequence([_MAP, seed])).permutation(vocab_size).astype(np.int64)
    table.flags.writeable = False
    return table


def permute_ids(ids: np.ndarray, seed: int | None, vocab_size: int) -> np.ndarray:
    """`ids` under permutation `seed` as a new int64 array (`seed` None: the ids widened unchanged)."""
    if seed is None:
        return ids.astype(np.int64)
    return token_permutation(seed, vocab_size)[ids]
