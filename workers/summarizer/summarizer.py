"""Extractive summarizer: keep the sentences whose words the text uses most.

``{text, max_sentences=3}`` -> ``{"summary": str, "sentences": int}``. Sentences
are scored by the summed frequency of their non-stopwords; the best ones are
kept in their original order. Deterministic: ties go to the earlier sentence.
Long texts report progress once per chunk of sentences.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from pyhall_mcp.errors import WorkerError

MAX_SENTENCES = 50
CHUNK = 200  # sentences scored between two progress reports

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_STOPWORDS = """a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very
    was we were what when where which while who whom why will with would you your yours
    yourself yourselves"""
STOPWORDS = frozenset(_STOPWORDS.split())


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_BREAK.split(text) if part.strip()]


def content_words(sentence: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(sentence)) if w not in STOPWORDS]


def run(
    arguments: dict[str, Any],
    context: Any,
    progress: Callable[..., None],
) -> dict[str, Any]:
    text = arguments.get("text")
    limit = arguments.get("max_sentences", 3)
    if not isinstance(text, str):
        raise WorkerError("text must be a string")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SENTENCES:
        raise WorkerError(f"max_sentences must be an integer from 1 to {MAX_SENTENCES}")

    sentences = split_sentences(text)
    if len(sentences) <= limit:
        return {"summary": " ".join(sentences), "sentences": len(sentences)}

    words = [content_words(sentence) for sentence in sentences]
    frequency = Counter(word for sentence_words in words for word in sentence_words)
    total = len(sentences)
    scores: list[int] = []
    for start in range(0, total, CHUNK):
        scores.extend(sum(frequency[w] for w in chunk) for chunk in words[start : start + CHUNK])
        if total > CHUNK:
            done = min(start + CHUNK, total)
            progress(done, total, f"scored {done} of {total} sentences")

    best = sorted(range(total), key=lambda i: (-scores[i], i))[:limit]
    kept = [sentences[i] for i in sorted(best)]
    return {"summary": " ".join(kept), "sentences": len(kept)}
