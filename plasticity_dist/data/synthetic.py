"""Offline synthetic text in the nine study languages (`synthetic:LANG`).

Every language renders one shared world (`synthetic_world.py`): a pool of concepts (nouns, adjectives,
verbs, names) with shared Zipfian frequencies and shared document topics, written as sentences built from
one shared set of roles (subject or a name, verb, object with an optional count, optional adjectives and
relation phrase). What differs per language is data in `LANGUAGES`: the script and syllable inventory its
words are drawn from, word lengths, affixes, articles with noun gender, spacing, casing and word order.
What is shared beyond the world, as between natural languages: Arabic numerals, Latin punctuation outside
Chinese and Japanese, proper names (transliterated into other scripts), and cognates between the
Latin-script languages (each writes a share of the concepts from a common root through its own sound
changes and with its own affixes). So a model transfers the world and some surface forms between
languages but must learn most of each language's words anew.

Speed: a language's word forms are built once (cached); documents are then sampled in bulk with numpy as
arrays of form ids, and each document is one `str.join` over the forms.
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from plasticity_dist.data.synthetic_world import (
    NUM_ADJECTIVES,
    NUM_NAMES,
    NUM_NOUNS,
    NUM_TOPICS,
    NUM_VERBS,
    NUMBER_PROBS,
    NUMBERS,
    World,
    proto_syllables,
    sound_changes,
    world,
    write_name,
)

TOPIC_SHARE = 0.5  # probability that a noun, adjective or verb comes from the document's topic
ADJECTIVE_PROB, RELATION_PROB, DEFINITE_PROB = 0.35, 0.4, 0.6
NAME_PROB, COUNT_PROB = 0.25, 0.15  # a name as the subject; a number before the object
COGNATE_KEEP = 0.7  # chance that a language keeps a proto sound it has (else its regular change)
END_PROBS = (0.86, 0.06, 0.08)  # statement, exclamation, question
MEAN_SENTENCES = 16  # per document (geometric)
DOCS_PER_CHUNK = 256


def _cjk_sample(seed: int, count: int) -> tuple[str, ...]:
    """`count` distinct CJK unified ideographs (U+4E00..U+9FA5), a fixed sample per seed."""
    offsets = np.random.default_rng(seed).choice(0x9FA6 - 0x4E00, size=count, replace=False)
    return tuple(chr(0x4E00 + int(offset)) for offset in offsets)


def _with_tones(vowels: str) -> tuple[str, ...]:
    """Vietnamese vowels under each of the six tones (level, grave, acute, hook, tilde, dot below), each
    repeated by its rough share of Vietnamese syllables (level a third, tilde a twentieth)."""
    tones = {"": 8, "\u0300": 4, "\u0301": 4, "\u0309": 2, "\u0303": 1, "\u0323": 4}
    return tuple(
        unicodedata.normalize("NFC", vowel + tone)
        for vowel in vowels.split() for tone, weight in tones.items() for _ in range(weight)
    )


@dataclass(frozen=True)
class LanguageSpec:
    """How one language writes the shared world.

    A word is 1..len(syllables) syllables (weights `syllables`), each an onset, nucleus and coda drawn
    uniformly (repeat an item to weight it), joined by `syllable_sep`, plus a suffix of its word class.
    `layout` orders a sentence's slots: S/O/R nouns (R: relation phrase noun), Sa/Oa adjectives, V verb,
    P relation word, Sd/Od/Rd articles (by definiteness and the noun's gender), N a count of the object
    (no object article then), E end mark; any other item is a literal word (a particle). A name replaces
    the subject (and its article and adjective) in NAME_PROB of the sentences, written in `name_script`
    except for a `latin_names` share of the mentions kept in Latin script (as web text keeps many).
    `cognate_share`: the share of concepts written from the shared proto-language root.
    """

    script: str
    onsets: tuple[str, ...]
    nuclei: tuple[str, ...]
    codas: tuple[str, ...]
    syllables: tuple[float, ...]
    layout: str
    relations: tuple[str, ...]
    syllable_sep: str = ""
    word_sep: str = " "
    ends: tuple[str, str, str] = (".", "!", "?")
    articles: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # (definite, indefinite), one per gender
    suffixes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # word class -> suffixes
    cased: bool = True  # capitalize each sentence's first word
    capitalize_nouns: bool = False
    name_script: str = "Latin"
    latin_names: float = 0.0
    cognate_share: float = 0.0


_SLOTS = frozenset("S O R Sa Oa V P Sd Od Rd N E".split())
_CJK_ENDS = ("。", "！", "？")

LANGUAGES: dict[str, LanguageSpec] = {
    "en": LanguageSpec(
        script="Latin",
        onsets=("", "", *"b c d f g h l m n p r s t t w y th sh ch st tr br pl gr wh".split()),
        nuclei=tuple("a a e e e i i o o u ea ee oo ou ai ow".split()),
        codas=("", "", *"n t s r d l ng ck st nd ll".split()),
        syllables=(0.5, 0.35, 0.15),
        layout="Sd Sa S V N Od Oa O P Rd R E",
        relations=tuple("in on with from to for under near".split()),
        articles=(("the",), ("a",)),
        suffixes={"verb": ("s", "ed", "")},
        cognate_share=0.4,
    ),
    "zh": LanguageSpec(
        script="Han",
        onsets=("",),
        nuclei=_cjk_sample(seed=1, count=2500),
        codas=("",),
        syllables=(0.3, 0.6, 0.1),
        word_sep="",
        ends=_CJK_ENDS,
        layout="Sa S P R V N Oa O E",
        relations=tuple("在 从 对 向 给 跟 为 于".split()),
        suffixes={"adj": ("的",)},
        cased=False,
        name_script="Han",
        latin_names=0.3,
    ),
    "fr": LanguageSpec(
        script="Latin",
        onsets=("", *"b c d f g j l l m n p r r s t v ch qu pr tr gr pl".split()),
        nuclei=tuple("a a e e i o u é é è ê â ou oi au eau an on in".split()),
        codas=("", "", "", *"n r s t x l".split()),
        syllables=(0.3, 0.45, 0.25),
        layout="Sd S Sa V N Od O Oa P Rd R E",
        relations=tuple("dans sur avec de pour sous près chez".split()),
        articles=(("le", "la"), ("un", "une")),
        suffixes={"verb": ("e", "ent", "ait"), "adj": ("", "e")},
        cognate_share=0.5,
    ),
    "ja": LanguageSpec(
        script="Kanji and kana",
        onsets=("",),
        nuclei=_cjk_sample(seed=2, count=2000),
        codas=("",),
        syllables=(0.45, 0.55),
        word_sep="",
        ends=_CJK_ENDS,
        layout="Sa S は R P N Oa O を V E",
        relations=tuple("に で から まで と へ より ほど".split()),
        suffixes={"verb": ("る", "う", "く", "す", "む", "ます", "った"), "adj": ("い", "な")},
        cased=False,
        name_script="katakana",
        latin_names=0.3,
    ),
    "es": LanguageSpec(
        script="Latin",
        onsets=("", *"b c d f g j l ll m n ñ p r rr s t v ch qu pr tr".split()),
        nuclei=tuple("a a a e e i o o u á é í ó ú ue ie".split()),
        codas=("", "", "", "", *"n s r l".split()),
        syllables=(0.1, 0.4, 0.35, 0.15),
        layout="Sd S Sa V N Od O Oa P Rd R E",
        relations=tuple("en sobre con de para bajo cerca según".split()),
        articles=(("el", "la"), ("un", "una")),
        suffixes={"verb": ("a", "e", "an"), "noun": ("o", "a", "")},
        cognate_share=0.5,
    ),
    "de": LanguageSpec(
        script="Latin",
        onsets=("", *"b d f g h k l m n p r s t w z sch st sp pf kr tr br".split()),
        nuclei=tuple("a a e e e i o u ä ö ü ei au ie eu".split()),
        codas=("", *"n n r t st ch ck nd ng tz ß ss".split()),
        syllables=(0.15, 0.35, 0.3, 0.2),
        layout="Sd Sa S V P Rd R N Od Oa O E",
        relations=tuple("in auf mit von zu für unter über".split()),
        articles=(("der", "die", "das"), ("ein", "eine", "ein")),
        suffixes={"verb": ("t", "et"), "adj": ("e", "en")},
        capitalize_nouns=True,
        cognate_share=0.3,
    ),
    "pt": LanguageSpec(
        script="Latin",
        onsets=("", *"b c d f g j l lh m n nh p r s t v ç x qu pr tr".split()),
        nuclei=tuple("a a e e i o o u ã õ á é ê ó ô ão".split()),
        codas=("", "", "", *"s r m l".split()),
        syllables=(0.15, 0.45, 0.3, 0.1),
        layout="Sd S Sa V N Od O Oa P Rd R E",
        relations=tuple("em sobre com de para sob perto após".split()),
        articles=(("o", "a"), ("um", "uma")),
        suffixes={"verb": ("a", "e", "am"), "noun": ("o", "a", "ção")},
        cognate_share=0.5,
    ),
    "ru": LanguageSpec(
        script="Cyrillic",
        onsets=("", *"б в г д ж з к л м н н п р с с т т ф х ц ч ш щ".split()),
        nuclei=tuple("а а е е и и о о о у ы э ю я ё".split()),
        codas=("", "", "", *"й н т с в л ль ст".split()),
        syllables=(0.15, 0.4, 0.3, 0.15),
        layout="Sa S V N Oa O P R E",
        relations=tuple("в на с из к для под около".split()),
        suffixes={"verb": ("ет", "ит", "ает"), "adj": ("ый", "ая", "ое", "ий")},
        name_script="Cyrillic",
        latin_names=0.3,
    ),
    "vi": LanguageSpec(
        script="Latin with Vietnamese diacritics",
        onsets=("", *"b c ch d đ g gh h kh l m n ng nh ph qu r s t th tr v x".split()),
        nuclei=_with_tones("a ă â e ê i o ô ơ u ư y ia ươ uô"),
        codas=("", "", "", *"c ch m n ng nh p t i o u".split()),
        syllables=(0.55, 0.45),
        syllable_sep=" ",
        layout="S Sa V N O Oa P R E",
        relations=tuple("trong trên với từ đến cho dưới gần".split()),
        cognate_share=0.3,  # loanwords, written syllable by syllable
    ),
}


def _words(spec: LanguageSpec, rng: np.random.Generator, word_class: str, count: int, seen: set[str]) -> list[str]:
    """`count` new distinct words, shortest first (frequent concepts get short words, as in real text)."""
    suffixes = spec.suffixes.get(word_class, ("",))
    inventories = (spec.onsets, spec.nuclei, spec.codas)
    length_probs = np.asarray(spec.syllables) / sum(spec.syllables)
    words: list[str] = []
    while len(words) < count:
        batch = 2 * (count - len(words))
        lengths = rng.choice(len(length_probs), size=batch, p=length_probs) + 1
        picks = [rng.integers(len(items), size=(batch, len(length_probs))) for items in inventories]
        suffix_ids = rng.integers(len(suffixes), size=batch)
        for i in range(batch):
            syllables = (
                "".join(items[pick[i, s]] for items, pick in zip(inventories, picks)) for s in range(lengths[i])
            )
            word = spec.syllable_sep.join(syllables) + suffixes[suffix_ids[i]]
            if word not in seen and len(words) < count:
                seen.add(word)
                words.append(word)
    words.sort(key=len)
    return words


@cache
def _sound_changes(lang: str) -> list[dict[str, str]]:
    spec = LANGUAGES[lang]
    return sound_changes((spec.onsets, spec.nuclei, spec.codas), seed=zlib.crc32(f"{lang} cognates".encode()),
                         keep=COGNATE_KEEP)


def _with_cognates(lang: str, word_class: str, words: list[str]) -> list[str]:
    """`words` (one per concept) with the language's cognate share of the concepts written from their roots."""
    spec, shared = LANGUAGES[lang], world()
    cognates = np.flatnonzero(shared.cognacy[word_class] < spec.cognate_share)
    if cognates.size == 0:
        return words
    onsets, nuclei, codas = _sound_changes(lang)
    suffixes = spec.suffixes.get(word_class, ("",))
    suffix_ids = np.random.default_rng(zlib.crc32(f"{lang} {word_class} suffixes".encode())).integers(
        len(suffixes), size=cognates.size)
    words = list(words)
    for concept, suffix_id in zip(cognates.tolist(), suffix_ids.tolist()):
        syllables = proto_syllables(shared.roots[word_class], concept)
        words[concept] = spec.syllable_sep.join(onsets[o] + nuclei[n] + codas[c] for o, n, c in syllables)
        words[concept] += suffixes[suffix_id]
    return words


@dataclass(frozen=True)
class _Lexicon:
    """One language's word forms as one table, with the offset of each kind of slot in it."""

    forms: np.ndarray  # object array of str; the second half holds the sentence-initial (capitalized) forms
    offsets: dict[str, int]
    genders: np.ndarray  # per noun concept
    empty: int


def _capitalized(form: str, sep: str) -> str:
    word = form[len(sep):] if form.startswith(sep) else form
    return form[: len(form) - len(word)] + word[:1].upper() + word[1:]


@cache
def _lexicon(lang: str) -> _Lexicon:
    spec = LANGUAGES[lang]
    rng = np.random.default_rng(zlib.crc32(lang.encode()))
    seen: set[str] = set()
    nouns = _with_cognates(lang, "noun", _words(spec, rng, "noun", NUM_NOUNS, seen))
    if spec.capitalize_nouns:
        nouns = [noun[:1].upper() + noun[1:] for noun in nouns]
    names = world().roots["name"]
    blocks = {
        "noun": nouns,
        "adj": _with_cognates(lang, "adj", _words(spec, rng, "adj", NUM_ADJECTIVES, seen)),
        "verb": _with_cognates(lang, "verb", _words(spec, rng, "verb", NUM_VERBS, seen)),
        "name": [write_name(proto_syllables(names, name), spec.name_script) for name in range(NUM_NAMES)],
        "latin_name": [write_name(proto_syllables(names, name), "Latin") for name in range(NUM_NAMES)],
        "number": list(NUMBERS),
        "relation": list(spec.relations),
        "article": [article for definite in spec.articles for article in definite],
        "literal": [item for item in spec.layout.split() if item not in _SLOTS],  # last: up to "end"
    }
    forms, offsets = [], {}
    for kind, words in blocks.items():
        offsets[kind] = len(forms)
        forms.extend(spec.word_sep + word for word in words)
    offsets["end"] = len(forms)
    forms.extend(spec.ends)
    forms.append("")
    capitalized = [_capitalized(form, spec.word_sep) for form in forms] if spec.cased else forms
    genders = rng.integers(max(len(spec.articles[0]), 1), size=NUM_NOUNS)
    return _Lexicon(np.array(forms + capitalized, dtype=object), offsets, genders, empty=len(forms) - 1)


def _zipf_or_topic(rng: np.random.Generator, world: World, word_class: str, topic: np.ndarray) -> np.ndarray:
    """One concept id per sentence: the document topic's with probability TOPIC_SHARE, else Zipfian."""
    members = world.topics[word_class]
    from_topic = members[topic, rng.integers(members.shape[1], size=topic.size)]
    from_zipf = np.searchsorted(world.cdf[word_class], rng.random(topic.size))
    return np.where(rng.random(topic.size) < TOPIC_SHARE, from_topic, from_zipf)


def _sentence_slots(lang: str, rng: np.random.Generator, topic: np.ndarray) -> np.ndarray:
    """Form ids of shape (sentences, slots) for sentences whose document topics are `topic`."""
    shared, lexicon, spec = world(), _lexicon(lang), LANGUAGES[lang]
    n, offsets, empty = topic.size, lexicon.offsets, lexicon.empty
    nouns = {role: _zipf_or_topic(rng, shared, "noun", topic) for role in "SOR"}
    has_relation = rng.random(n) < RELATION_PROB
    columns: dict[str, np.ndarray] = {
        "V": offsets["verb"] + _zipf_or_topic(rng, shared, "verb", topic),
        "P": np.where(has_relation, offsets["relation"] + rng.integers(len(spec.relations), size=n), empty),
        "E": offsets["end"] + rng.choice(3, size=n, p=END_PROBS),
    }
    for role, concept in nouns.items():
        present = has_relation if role == "R" else True
        columns[role] = np.where(present, offsets["noun"] + concept, empty)
        if spec.articles[0]:
            definite = rng.random(n) < DEFINITE_PROB
            article = np.where(definite, 0, len(spec.articles[0])) + lexicon.genders[concept]
            columns[role + "d"] = np.where(present, offsets["article"] + article, empty)
    for role in ("Sa", "Oa"):
        adjective = offsets["adj"] + _zipf_or_topic(rng, shared, "adj", topic)
        columns[role] = np.where(rng.random(n) < ADJECTIVE_PROB, adjective, empty)
    is_name = rng.random(n) < NAME_PROB
    name_block = np.where(rng.random(n) < spec.latin_names, offsets["latin_name"], offsets["name"])
    columns["S"] = np.where(is_name, name_block + _zipf_or_topic(rng, shared, "name", topic), columns["S"])
    has_count = rng.random(n) < COUNT_PROB
    columns["N"] = np.where(has_count, offsets["number"] + rng.choice(len(NUMBERS), size=n, p=NUMBER_PROBS), empty)
    for role, dropped in (("Sd", is_name), ("Sa", is_name), ("Od", has_count)):
        if role in columns:
            columns[role] = np.where(dropped, empty, columns[role])
    literals = iter(range(offsets["literal"], offsets["end"]))
    layout = spec.layout.split()
    slots = np.stack([columns[item] if item in _SLOTS else np.full(n, next(literals)) for item in layout], axis=1)
    if spec.cased:
        first = np.argmax(slots != empty, axis=1)
        slots[np.arange(n), first] += len(lexicon.forms) // 2
    return slots


def check_language(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown synthetic language {lang!r}; choose one of: {', '.join(LANGUAGES)}")


def synthetic_documents(lang: str, seed: int = 0, stream: int = 0) -> Iterator[str]:
    """An endless stream of documents in `lang`, fixed by (lang, seed, stream); streams are independent."""
    check_language(lang)
    return _documents(lang, seed, stream)


def _documents(lang: str, seed: int, stream: int) -> Iterator[str]:
    rng = np.random.default_rng([seed, stream, zlib.crc32(lang.encode())])
    forms = _lexicon(lang).forms
    while True:
        sentences = rng.geometric(1 / MEAN_SENTENCES, size=DOCS_PER_CHUNK)
        topic = np.repeat(rng.integers(NUM_TOPICS, size=DOCS_PER_CHUNK), sentences)
        slots = _sentence_slots(lang, rng, topic)
        words = forms[slots.ravel()].tolist()
        bounds = np.concatenate([[0], np.cumsum(sentences)]) * slots.shape[1]
        for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            yield "".join(words[start:stop]).lstrip()
