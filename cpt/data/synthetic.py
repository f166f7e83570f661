"""Embedded corpora: seeded synthetic "languages" a tiny model can learn, and forget, in minutes.

A language is a lexicon of pseudo-words, each in one of a few word classes, and a grammar:
a Markov chain over classes (the word order) and, per topic, a small set of likely successors
for every (previous word, next class) pair. A document picks one topic and walks the chain.
So the next word is nearly determined by the previous one *and the topic*: the token-level
entropy given the context is far below the unigram entropy, and a change of topic mixture
(weak shift) or of lexicon and word order (strong shift) moves the conditional distribution a
model has learned — which is what makes forgetting and adaptation measurable.

Everything is a pure function of (language, topic weights, split seed, chunk index): a stream
is generated in fixed-size chunks, so asking for more text extends it without changing the
beginning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from cpt.data.mixture import stable_seed

# Lexicon styles. "en" and "de" differ in their letters, so a BPE trained on "en" splits "de"
# words into more pieces, as GPT-NeoX's Pile tokenizer does with German.
_STYLES = {
    "en": {
        "onsets": ["b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "w",
                   "br", "cl", "st", "tr", "pl", "gr", "sh", "th"],
        "vowels": ["a", "e", "i", "o", "u", "ea", "ou", "ai"],
        "codas": ["", "", "n", "r", "s", "t", "l", "nd", "st", "ng"],
        "capitalise_class": None,
    },
    "de": {
        "onsets": ["b", "d", "f", "g", "h", "k", "l", "m", "n", "r", "s", "t", "w", "z",
                   "sch", "pf", "kr", "str", "ch", "gl"],
        "vowels": ["a", "e", "i", "o", "u", "ä", "ö", "ü", "ei", "au", "ie"],
        "codas": ["", "n", "r", "t", "ch", "ck", "tz", "ng", "nst", "ß"],
        "capitalise_class": 1,  # nouns are capitalised, as in German
    },
}

N_CLASSES = 6  # word classes; class 0 is the sentence end "."
WORDS_PER_CLASS = 120
N_TOPICS = 6
SUCCESSORS = 4  # candidate next words per (word, next class, topic)
SUCCESSOR_WEIGHTS = np.array([0.55, 0.25, 0.12, 0.08])
CHUNK_DOCS = 256  # documents per generation chunk (the unit of determinism)
MEAN_DOC_WORDS = 160


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic dataset is; every field enters its fingerprint."""

    language: str  # lexicon style and grammar: "en" or "de"
    topic_weights: tuple[float, ...]  # mixture over the language's N_TOPICS topics
    split: int  # independent stream of the same distribution (disjoint splits of one corpus)


class Language:
    """Lexicon + grammar, a pure function of its style name."""

    def __init__(self, style: str):
        if style not in _STYLES:
            raise ValueError(f"unknown synthetic language {style!r}")
        s = _STYLES[style]
        rng = np.random.default_rng(stable_seed("language", style))
        words, seen = [], {"."}
        while len(words) < (N_CLASSES - 1) * WORDS_PER_CLASS:
            n_syll = rng.choice([1, 2, 2, 3])
            w = "".join(rng.choice(s["onsets"]) + rng.choice(s["vowels"]) for _ in range(n_syll))
            w += rng.choice(s["codas"])
            if w not in seen:
                seen.add(w)
                words.append(w)
        cap = s["capitalise_class"]
        self.words = ["."] + [
            w.capitalize() if cap is not None and 1 + i // WORDS_PER_CLASS == cap else w
            for i, w in enumerate(words)
        ]
        self.word_class = np.array([0] + [1 + i // WORDS_PER_CLASS for i in range(len(words))])
        # Word order: each class is followed by one of 2 classes (plus, rarely, a sentence end).
        trans = np.zeros((N_CLASSES, N_CLASSES))
        for c in range(N_CLASSES):
            nxt = rng.choice(np.arange(1, N_CLASSES), size=2, replace=False)
            trans[c, nxt] = [0.6, 0.3] if c else [0.7, 0.3]
            if c:
                trans[c, 0] = 0.1
        self.class_trans = trans / trans.sum(1, keepdims=True)
        # Zipf-like preference inside a class, so topics reuse frequent words.
        ranks = np.arange(1, WORDS_PER_CLASS + 1)
        zipf = 1.0 / ranks
        zipf /= zipf.sum()
        n_words = len(self.words)
        self.successors = np.zeros((n_words, N_CLASSES, N_TOPICS, SUCCESSORS), dtype=np.int32)
        for c in range(1, N_CLASSES):
            members = np.flatnonzero(self.word_class == c)
            for t in range(N_TOPICS):
                order = rng.permutation(members)  # each topic prefers different words
                self.successors[:, c, t, :] = np.stack(
                    [rng.choice(order, size=SUCCESSORS, replace=False, p=zipf) for _ in range(n_words)]
                )
        self.successors[:, 0, :, :] = 0  # the sentence end is the word "."


_LANGUAGES: dict[str, Language] = {}


def language(style: str) -> Language:
    if style not in _LANGUAGES:
        _LANGUAGES[style] = Language(style)
    return _LANGUAGES[style]


def _chunk(spec: SyntheticSpec, index: int) -> list[str]:
    """CHUNK_DOCS documents, a pure function of (spec, index)."""
    lang = language(spec.language)
    rng = np.random.default_rng(stable_seed("chunk", spec, index))
    weights = np.asarray(spec.topic_weights, dtype=float)
    topics = rng.choice(N_TOPICS, size=CHUNK_DOCS, p=weights / weights.sum())
    lengths = rng.geometric(1.0 / MEAN_DOC_WORDS, size=CHUNK_DOCS) + 8
    n_steps = int(lengths.max())
    prev = np.zeros(CHUNK_DOCS, dtype=np.int64)  # every document starts after a "."
    cls = np.zeros(CHUNK_DOCS, dtype=np.int64)
    cum_trans = np.cumsum(lang.class_trans, axis=1)
    cum_succ = np.cumsum(SUCCESSOR_WEIGHTS)
    out = np.zeros((CHUNK_DOCS, n_steps), dtype=np.int64)
    for step in range(n_steps):
        nxt_cls = (rng.random(CHUNK_DOCS)[:, None] > cum_trans[cls]).sum(1)
        nxt_cls = np.minimum(nxt_cls, N_CLASSES - 1)
        pick = np.minimum((rng.random(CHUNK_DOCS)[:, None] > cum_succ).sum(1), SUCCESSORS - 1)
        word = lang.successors[prev, nxt_cls, topics, pick]
        out[:, step] = word
        prev, cls = word, nxt_cls
    docs = []
    for d in range(CHUNK_DOCS):
        text = " ".join(lang.words[w] for w in out[d, : lengths[d]])
        docs.append(text.replace(" .", ".").strip(". ") + ".")
    return docs


def documents(spec: SyntheticSpec, start_chunk: int = 0) -> Iterator[str]:
    """An endless, deterministic stream of documents."""
    index = start_chunk
    while True:
        yield from _chunk(spec, index)
        index += 1
