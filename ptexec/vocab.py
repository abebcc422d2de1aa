"""Word lists shared by the generated tasks and the tiny model's tokenizer.

The generated text-classification tasks (:mod:`ptexec.tasks`) are written in a synthetic
vocabulary of pronounceable two-syllable pseudo-words; the tiny GPT-2's word-level tokenizer
(:mod:`ptexec.models`) knows exactly these words plus the label words, digits and a few English
words used in templates and task descriptions, so the tiny model needs no download.
"""

from __future__ import annotations

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"

#: Label names of the generated tasks, class i -> LABEL_WORDS[i].
LABEL_WORDS: tuple[str, ...] = (
    "red",
    "blue",
    "green",
    "gold",
    "gray",
    "pink",
    "teal",
    "navy",
)

#: English words the tiny tokenizer knows (templates, descriptions, label names of the real
#: data sets), so that TEXT initialisation and label words mean something to it.
ENGLISH_WORDS: tuple[str, ...] = (
    "a",
    "about",
    "answer",
    "answer:",
    "business",
    "by",
    "category",
    "class",
    "classify",
    "entertainment",
    "for",
    "is",
    "it",
    "label",
    "label:",
    "last",
    "negative",
    "neutral",
    "news",
    "of",
    "politics",
    "positive",
    "sentiment",
    "sport",
    "sports",
    "tech",
    "text",
    "text:",
    "the",
    "this",
    "topic",
    "tweet",
    "what",
    "which",
    "word",
)

DIGITS: tuple[str, ...] = tuple(str(i) for i in range(10))


def synthetic_words(n: int) -> tuple[str, ...]:
    """The first ``n`` synthetic pseudo-words (at most 4900), in a fixed order."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    limit = len(syllables) ** 2
    if not 0 <= n <= limit:
        raise ValueError(f"synthetic vocabulary has {limit} words, asked for {n}")
    words: list[str] = []
    # Interleave so that the first words are spread over the syllable space.
    for i in range(n):
        a, b = divmod((i * 2311) % limit, len(syllables))
        words.append(syllables[a] + syllables[b])
    return tuple(words)
