"""What the learned classifier sees of a request: hashed n-grams of the last user turn and its structure.

The router (per request, `model.LearnedModel`) and the training code (``dev/zeta_dev/classifier``) both call
these functions, so a model always sees the features it was trained on. `FEATURES_VERSION` names this
definition; a weights file made for another one is refused.

- **Tokens** of the last user turn, lower-cased: every distinct word (``\\w+``, any script) as ``w:<word>``,
  every distinct run of symbols (``();``, ``=>``, ``{``) as ``p:<run>``, and the words of the `instruction`
  again as ``i:<word>``. (Pairs of neighbouring words added nothing in cross-validation on the train split,
  task 81.4% with and 81.3% without, tier 81.8% both, and cost a hash per word: left out.) A word token hashes to its own bucket and to the buckets of the character
  3- and 4-grams of ``<word>``: typos and inflections share most of them, and scripts without spaces (Chinese,
  Japanese) come out as long "words" whose n-grams still carry meaning. Hashing (crc32, stable across
  processes, unlike ``hash``) keeps the model a fixed size whatever the vocabulary.
- **Structure**, named bins: size of the turn, words, lines, list items, questions, sentences, numbers, code
  symbols and code-like lines, a code fence, how much of the turn is pasted material after the instruction,
  a system prompt, history. These carry most of the complexity signal, which a word list cannot.

Everything is bounded by the window of `payload.PromptView.last_user`.
"""

from __future__ import annotations

import bisect
import re
import zlib
from dataclasses import dataclass

from .payload import PromptView

FEATURES_VERSION = "zeta-features-3"
HASH_BITS = 17
BUCKETS = 1 << HASH_BITS
NGRAMS = (3, 4)
INSTRUCTION_CHARS = 300
"""Of the first and the last line of a turn, what counts as the instruction (see `instruction`)."""
MAX_NGRAM_WORD = 32
"""Longer words (a run of CJK text, a base64 blob) contribute n-grams of their first characters only."""

_WORD = re.compile(r"\w+")
_SYMBOLS = re.compile(r"[^\w\s]+")
_DIGITS = re.compile(r"\d+")
_CODE_CHARS = "{}();=<>[]_#/\\*&|$"
_DROP_CODE_CHARS = str.maketrans("", "", _CODE_CHARS)
_LIST_MARKS = ("- ", "* ", "\u2022 ", "+ ")
_MASK = BUCKETS - 1
# crc32(prefix + text) == crc32(text, crc32(prefix)): the namespaces cost no string concatenation.
NS_WORD = zlib.crc32(b"w:")
NS_SYMBOL = zlib.crc32(b"p:")
NS_CHAR = zlib.crc32(b"c:")
NS_INSTRUCTION = zlib.crc32(b"i:")


@dataclass(frozen=True, slots=True)
class TurnTokens:
    """The distinct tokens of a lower-cased turn, in first-seen order (the order changes no feature)."""

    words: list[str]
    symbols: list[str]
    """Runs of symbols, at most 8 characters each."""
    instruction: list[str]
    """The distinct words of the `instruction`."""
    word_count: int
    """Words with repeats."""


def split_turn(turn: str) -> TurnTokens:
    text = turn.lower()
    words = _WORD.findall(text)
    return TurnTokens(
        words=list(dict.fromkeys(words)),
        symbols=list(dict.fromkeys(run[:8] for run in _SYMBOLS.findall(text))),
        instruction=list(dict.fromkeys(_WORD.findall(instruction(text)))),
        word_count=len(words),
    )


def instruction(turn: str) -> str:
    """The first and the last line of a turn (each cut to INSTRUCTION_CHARS): where people put the ask
    around pasted material. Their words count again, apart, so that a short ask next to a long document or
    log is not drowned by it (every word of the turn has the same weight otherwise)."""
    first_end = turn.find("\n")
    if first_end == -1:
        return turn[:INSTRUCTION_CHARS]
    last = turn[turn.rfind("\n") + 1 :]
    return turn[: min(first_end, INSTRUCTION_CHARS)] + "\n" + last[-INSTRUCTION_CHARS:]


def tokens(turn: str) -> list[str]:
    """The distinct tokens of a turn with their namespace: ``w:`` word, ``p:`` symbols, ``i:`` instruction
    word."""
    t = split_turn(turn)
    return ["w:" + w for w in t.words] + ["p:" + s for s in t.symbols] + ["i:" + w for w in t.instruction]


def word_buckets(word: str) -> list[int]:
    """The buckets of a word: itself and the character 3- and 4-grams of ``<word>``."""
    buckets = [_crc(word, NS_WORD)]
    padded = "<" + word[:MAX_NGRAM_WORD] + ">"
    for n in NGRAMS:
        buckets.extend(_crc(padded[i : i + n], NS_CHAR) for i in range(len(padded) - n + 1))
    return buckets


def symbol_bucket(symbols: str) -> int:
    return _crc(symbols, NS_SYMBOL)


def token_buckets(token: str) -> list[int]:
    """The hash buckets of one namespaced token (see `tokens`)."""
    kind, text = token[:2], token[2:]
    if kind == "w:":
        return word_buckets(text)
    namespace = {"p:": NS_SYMBOL, "i:": NS_INSTRUCTION}[kind]
    return [_crc(text, namespace)]


def bucket_of(text: str, namespace: int) -> int:
    """The bucket of ``text`` in a namespace (``NS_*``)."""
    return _crc(text, namespace)


def _crc(text: str, namespace: int) -> int:
    # surrogatepass: a JSON body may carry lone surrogates ("\ud800"), which strict UTF-8 cannot encode.
    return zlib.crc32(text.encode("utf-8", "surrogatepass"), namespace) & _MASK


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


def structure(view: PromptView, *, words: int | None = None) -> list[str]:
    """Named structural features of the last user turn (one bin per measure, and a few crosses).

    ``words``: the turn's word count when the caller has it (`TurnTokens.word_count`)."""
    turn = view.last_user
    lines = turn.split("\n")
    chars = view.last_user_chars
    code_percent = 100 * (len(turn) - len(turn.translate(_DROP_CODE_CHARS))) // max(1, len(turn))
    items, code_lines = _line_shapes(lines)
    questions = turn.count("?") + turn.count("\uff1f")  # and the full-width one (Chinese, Japanese)
    measures = (
        ("chars", chars),
        ("words", len(_WORD.findall(turn)) if words is None else words),
        ("lines", len(lines) - 1),
        ("items", items),
        ("questions", questions),
        ("sentences", _sentences(turn)),
        ("numbers", len(_DIGITS.findall(turn))),
        ("code", code_percent),
        ("codelines", code_lines),
        ("pasted", _pasted(turn, chars)),
        ("history", view.history),
    )
    names = [_NAMES[name][_bin(value, _BINS[name])] for name, value in measures]
    names.append("fence:1" if "```" in turn else "fence:0")
    names.append("system:1" if view.system else "system:0")
    size = _bin(chars, _BINS["chars"])
    names.append(f"chars*items:{size}:{_bin(items, _BINS['items'])}")
    names.append(f"chars*questions:{size}:{_bin(questions, _BINS['questions'])}")
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


def _bin(value: int, edges: tuple[int, ...]) -> int:
    return bisect.bisect_right(edges, value)


_NAMES = {name: [f"{name}:{i}" for i in range(len(edges) + 1)] for name, edges in _BINS.items()}
"""Built once: formatting sixteen names per request costs more than computing the measures."""


def _line_shapes(lines: list[str]) -> tuple[int, int]:
    """(list items, lines that look like code: indented, or ending like a statement or a block opener)."""
    items = code = 0
    for line in lines:
        s = line.lstrip()
        if s.startswith(_LIST_MARKS) or (s[:1].isdigit() and s[1:3].startswith((".", ")", ". "))):
            items += 1
        if line.startswith(("    ", "\t")) or line.rstrip().endswith((";", "{", "}", "):", ")")):
            code += 1
    return items, code


def _sentences(turn: str) -> int:
    return turn.count(". ") + turn.count("? ") + turn.count("! ") + turn.count("。") + turn.count(".\n") + 1


def _pasted(turn: str, chars: int) -> int:
    """Characters after the first paragraph: pasted material (a document, code, a log) next to the ask."""
    first = turn.find("\n\n")
    if first == -1:
        first = turn.find("\n")
    return 0 if first == -1 else max(0, chars - first)
