"""What the synthetic languages share, as natural languages do: one world and some surface forms.

The world: concept frequencies (Zipfian) and document topics, the same in every language. The shared
surface forms: Arabic numerals (counts and years) in every script; proper names, written as they are in
the Latin-script languages and transliterated syllable by syllable elsewhere; and cognates, one
proto-language root per concept that each Latin-script language (Vietnamese included, as loanwords)
writes through its own regular sound changes for its `cognate_share` of the concepts, the same concepts
in every language (the ones whose `cognacy` draw lies below the share), as an international vocabulary.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np

WORLD_SEED = 20240601  # fixes the shared concept frequencies, topics, roots and names
NUM_NOUNS, NUM_ADJECTIVES, NUM_VERBS, NUM_NAMES = 2000, 400, 500, 300
NUM_TOPICS = 64
# word class -> (concepts, concepts per topic); names are a class of their own (a topic has its people)
WORD_CLASSES = {
    "noun": (NUM_NOUNS, 40), "adj": (NUM_ADJECTIVES, 12), "verb": (NUM_VERBS, 15), "name": (NUM_NAMES, 6)
}

# The proto-language: syllables of onset, nucleus and coda (repeat an item to weight it), 1..3 per root.
PROTO_ONSETS = ("", "b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "pr", "tr")
PROTO_NUCLEI = ("a", "e", "i", "o", "u")
PROTO_CODAS = ("", "", "", "n", "r", "s", "l", "t")
PROTO_SYLLABLES = (0.3, 0.45, 0.25)
NAME_SYLLABLES = (0.0, 0.7, 0.3)

# Counts 2..99 (weight 1/n, as counts are in text) and years 1900..2025, each half of the numbers.
NUMBERS = tuple(str(count) for count in range(2, 100)) + tuple(str(year) for year in range(1900, 2026))
_COUNT_WEIGHTS = 1.0 / np.arange(2, 100)
NUMBER_PROBS = np.concatenate([0.5 * _COUNT_WEIGHTS / _COUNT_WEIGHTS.sum(), np.full(126, 0.5 / 126)])


@dataclass(frozen=True)
class Roots:
    """Proto-language words of one class: (onset, nucleus, coda) ids per syllable, `lengths` syllables used."""

    syllables: np.ndarray  # (count, max syllables, 3) ids into PROTO_ONSETS, PROTO_NUCLEI, PROTO_CODAS
    lengths: np.ndarray  # (count,), ascending: frequent concepts get short roots


@dataclass(frozen=True)
class World:
    """Shared by every language: concept frequencies (cumulative, by class), topic members, roots."""

    cdf: dict[str, np.ndarray]
    topics: dict[str, np.ndarray]  # class -> (NUM_TOPICS, members) concept ids
    roots: dict[str, Roots]  # class -> one root per concept ("name": the names themselves)
    cognacy: dict[str, np.ndarray]  # class -> a uniform draw per concept: cognate where below the share


def _roots(rng: np.random.Generator, count: int, length_weights: tuple[float, ...]) -> Roots:
    probs = np.asarray(length_weights) / sum(length_weights)
    lengths = np.sort(rng.choice(len(probs), size=count, p=probs) + 1)
    sizes = (len(PROTO_ONSETS), len(PROTO_NUCLEI), len(PROTO_CODAS))
    syllables = np.stack([rng.integers(size, size=(count, len(probs))) for size in sizes], axis=2)
    return Roots(syllables, lengths)


@cache
def world() -> World:
    rng = np.random.default_rng(WORLD_SEED)
    cdf, topics, roots, cognacy = {}, {}, {}, {}
    for word_class, (count, topic_size) in WORD_CLASSES.items():
        weights = 1.0 / (np.arange(count) + 2.7)  # Zipf-Mandelbrot over concept rank
        cdf[word_class] = np.cumsum(weights) / weights.sum()
        topics[word_class] = np.stack([rng.choice(count, size=topic_size, replace=False) for _ in range(NUM_TOPICS)])
    for word_class, (count, _) in WORD_CLASSES.items():
        roots[word_class] = _roots(rng, count, NAME_SYLLABLES if word_class == "name" else PROTO_SYLLABLES)
        cognacy[word_class] = rng.random(count)
    return World(cdf, topics, roots, cognacy)


def proto_syllables(roots: Roots, concept: int) -> list[tuple[str, str, str]]:
    """The (onset, nucleus, coda) strings of one concept's root."""
    ids = roots.syllables[concept, : roots.lengths[concept]]
    return [(PROTO_ONSETS[o], PROTO_NUCLEI[n], PROTO_CODAS[c]) for o, n, c in ids.tolist()]


# How a script writes a Latin-script name: letter by letter (Cyrillic) or a character per syllable (Han,
# katakana), always the same way, as transliteration is.
_CYRILLIC = dict(zip("abcdefghilmnoprstuv", "абкдефгхилмнопрстув"))
_KATAKANA_CODAS = {"": "", "n": "ン", "r": "ル", "s": "ス", "l": "ル", "t": "ト"}


def _syllable_id(onset: str, nucleus: str) -> int:
    return PROTO_ONSETS.index(onset) * len(PROTO_NUCLEI) + PROTO_NUCLEI.index(nucleus)


@cache
def _han_syllables() -> tuple[str, ...]:
    """One Han character per proto syllable (onset, nucleus, coda), as Chinese transliterates names."""
    count = len(PROTO_ONSETS) * len(PROTO_NUCLEI) * len(set(PROTO_CODAS))
    offsets = np.random.default_rng(WORLD_SEED + 1).choice(0x9FA6 - 0x4E00, size=count, replace=False)
    return tuple(chr(0x4E00 + int(offset)) for offset in offsets)


def write_name(syllables: list[tuple[str, str, str]], script: str) -> str:
    """A name in `script`: "Latin" as is, "Cyrillic" letter by letter, "Han" and "katakana" per syllable."""
    if script == "Latin":
        return "".join("".join(syllable) for syllable in syllables).capitalize()
    if script == "Cyrillic":
        return "".join(_CYRILLIC[char] for syllable in syllables for char in "".join(syllable)).capitalize()
    if script == "Han":
        codas = sorted(set(PROTO_CODAS))
        return "".join(_han_syllables()[_syllable_id(o, n) * len(codas) + codas.index(c)] for o, n, c in syllables)
    if script == "katakana":  # U+30A2.. (86 katakana), the coda as its own kana
        return "".join(chr(0x30A2 + _syllable_id(o, n) % 86) + _KATAKANA_CODAS[c] for o, n, c in syllables)
    raise ValueError(f"no way to write names in script {script!r}")


def _base_letters(item: str) -> str:
    return "".join(char for char in unicodedata.normalize("NFD", item) if not unicodedata.combining(char))


def sound_changes(inventories: tuple[tuple[str, ...], ...], seed: int, keep: float) -> list[dict[str, str]]:
    """A language's regular sound changes: per proto onset, nucleus and coda, one item of the language's
    inventory (repeats weight it): with probability `keep` one written with the same base letters where the
    language has one (proto "e" may become French "é", Vietnamese "ể"), else any; no onset or coda stays
    none (a change alters sounds, it does not close every open syllable)."""
    rng = np.random.default_rng(seed)
    changes = []
    for proto, own in zip((PROTO_ONSETS, PROTO_NUCLEI, PROTO_CODAS), inventories):
        change = {}
        for item in dict.fromkeys(proto):
            same = [candidate for candidate in own if _base_letters(candidate) == item]
            candidates = same if same and (not item or rng.random() < keep) else own
            change[item] = candidates[rng.integers(len(candidates))]
        changes.append(change)
    return changes
