"""What the learned classifier sees of a request: hashed n-grams of the last user turn and its structure.

The router (per request, `model.LearnedModel`) and the training code (``dev/zeta_dev/classifier``) both call
these functions, so a model always sees the features it was trained on. `FEATURES_VERSION` names this
definition; a weights file made for another one is refused.

- **Tokens** of the last user turn, lower-cased: every distinct word (``\\w+``, any script) as ``w:<word>``,
  every distinct pair of neighbouring words as ``b:<w1> <w2>``, every distinct run of symbols (``();``,
  ``=>``, ``{``) as ``p:<run>``. A word token hashes to its own bucket and to the buckets of the character
  3- and 4-grams of ``<word>``: typos and inflections share most of them, and scripts without spaces (Chinese,
  Japanese) come out as long "words" whose n-grams still carry meaning. Hashing (crc32, stable across
  processes, unlike ``hash``) keeps the model a fixed size whatever the vocabulary.
- **Structure**, named bins: size of the turn, words, lines, list items, questions, sentences, numbers, code
  symbols and code-like lines, a code fence, how much of the turn is pasted material after the instruction,
  a system prompt, history. These carry most of the complexity signal, which a word list cannot.

Everything is bounded by the window of `payload.PromptView.last_user`.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Iterable

from .payload import PromptView

FEATURES_VERSION = "zeta-features-1"
HASH_BITS = 17
BUCKETS = 1 << HASH_BITS
NGRAMS = (3, 4)
MAX_NGRAM_WORD = 32
"""Longer words (a run of CJK text, a base64 blob) contribute n-grams of their first characters only."""

_WORD = re.compile(r"\w+")
_SYMBOLS = re.compile(r"[^\w\s]+")
_CODE_CHARS = "{}();=<>[]_#/\\*&|$"
_LIST_MARKS = ("- ", "* ", "• ", "+ ")


def tokens(turn: str) -> list[str]:
    """The distinct tokens of a turn, in first-seen order (the order does not change the features)."""
    text = turn.lower()
    words = _WORD.findall(text)
    seen: dict[str, None] = {}
    for w in words:
        seen["w:" + w] = None
    for first, second in itertools.pairwise(words):
        seen["b:" + first + " " + second] = None
    for run in _SYMBOLS.findall(text):
        seen["p:" + run[:8]] = None
    return list(seen)


def token_buckets(token: str) -> list[int]:
    """The hash buckets of one token: itself, and for a word its character n-grams."""
    buckets = [bucket(token)]
    if token.startswith("w:"):
        padded = "<" + token[2 : 2 + MAX_NGRAM_WORD] + ">"
        for n in NGRAMS:
            buckets.extend(bucket("c:" + padded[i : i + n]) for i in range(len(padded) - n + 1))
    return buckets


def bucket(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8", "surrogatepass")) & (BUCKETS - 1)


def text_buckets(turn: str) -> list[int]:
    """All buckets of a turn, with repeats (two words that share an n-gram count it twice)."""
    return [b for t in tokens(turn) for b in token_buckets(t)]


# --- structure ---------------------------------------------------------------------------------------------

_BINS: dict[str, tuple[int, ...]] = {
    "chars": (20, 60, 150, 400, 1000, 3000, 10000),
    "words": (3, 8, 16, 32, 64, 150, 400),
    "lines": (1, 3, 6, 15, 40, 100),
    "items": (1, 2, 3, 5, 8),
    "questions": (1, 2, 4),
    "sentences": (2, 3, 5, 9, 20),
    "numbers": (1, 3, 6, 12, 30),
    "code": (1, 3, 6, 12, 25),
    "codelines": (1, 3, 8, 20),
    "pasted": (1, 50, 200, 1000, 4000),
    "history": (1, 2, 4),
}
"""Upper-exclusive bin edges: a value below the first edge is bin 0."""


def structure(view: PromptView) -> list[str]:
    """Named structural features of the last user turn (one bin per measure, and a few crosses)."""
    turn = view.last_user
    lines = turn.split("\n")
    chars = view.last_user_chars
    words = len(_WORD.findall(turn))
    code_percent = 100 * sum(turn.count(c) for c in _CODE_CHARS) // max(1, len(turn))
    measures = {
        "chars": chars,
        "words": words,
        "lines": len(lines) - 1,
        "items": _list_items(lines),
        "questions": turn.count("?") + turn.count("\uff1f"),  # and the full-width one (Chinese, Japanese)
        "sentences": _sentences(turn),
        "numbers": len(re.findall(r"\d+", turn)),
        "code": code_percent,
        "codelines": _code_lines(lines),
        "pasted": _pasted(turn, chars),
        "history": view.history,
    }
    names = [f"{name}:{_bin(value, _BINS[name])}" for name, value in measures.items()]
    names.append(f"fence:{int('```' in turn)}")
    names.append(f"system:{int(view.system)}")
    size = _bin(chars, _BINS["chars"])
    names.append(f"chars*items:{size}:{_bin(measures['items'], _BINS['items'])}")
    names.append(f"chars*questions:{size}:{_bin(measures['questions'], _BINS['questions'])}")
    names.append(f"chars*code:{size}:{_bin(code_percent, _BINS['code'])}")
    return names


def all_structure_names() -> list[str]:
    """Every name `structure` can produce (the training code gives each a column)."""
    names = [f"{name}:{i}" for name, edges in _BINS.items() for i in range(len(edges) + 1)]
    names += ["fence:0", "fence:1", "system:0", "system:1"]
    size_bins = range(len(_BINS["chars"]) + 1)
    for cross in ("items", "questions", "code"):
        names += [f"chars*{cross}:{s}:{i}" for s in size_bins for i in range(len(_BINS[cross]) + 1)]
    return names


def _bin(value: int, edges: Iterable[int]) -> int:
    i = 0
    for edge in edges:
        if value < edge:
            return i
        i += 1
    return i


def _list_items(lines: list[str]) -> int:
    count = 0
    for line in lines:
        s = line.lstrip()
        if s.startswith(_LIST_MARKS) or (s[:1].isdigit() and s[1:3].startswith((".", ")", ". "))):
            count += 1
    return count


def _sentences(turn: str) -> int:
    return turn.count(". ") + turn.count("? ") + turn.count("! ") + turn.count("。") + turn.count(".\n") + 1


def _code_lines(lines: list[str]) -> int:
    """Lines that look like code: indented, or ending like a statement or a block opener."""
    return sum(
        1
        for line in lines
        if line.startswith(("    ", "\t")) or line.rstrip().endswith((";", "{", "}", "):", ")"))
    )


def _pasted(turn: str, chars: int) -> int:
    """Characters after the first paragraph: pasted material (a document, code, a log) next to the ask."""
    first = turn.find("\n\n")
    if first == -1:
        first = turn.find("\n")
    return 0 if first == -1 else max(0, chars - first)
