"""What the learned classifier sees of a request: hashed n-grams of the last user turn and its structure, and
the words of the turns before it.

The router (per request, `model.LearnedModel`) and the training code (``dev/zeta_dev/classifier``) both call
these functions, so a model always sees the features it was trained on. `FEATURES_VERSION` names this
definition; a weights file made for another one is refused.

- **Tokens** of the last user turn, lower-cased: every distinct word (``\\w+``, any script) as ``w:<word>``,
  every distinct run of symbols (``();``, ``=>``, ``{``) as ``p:<run>``, and the words of the `instruction`
  again as ``i:<word>``, a block of their own that the model normalises by its own count (`text_buckets`), so
  that a long paste does not drown the ask. (Pairs of neighbouring words added nothing in cross-validation on
  the train split, task 81.4% with and 81.3% without, tier 81.8% both, and cost a hash per word: left out.)
  A word token hashes to its own bucket and to the buckets of the character
  3- and 4-grams of ``<word>``: typos and inflections share most of them, and scripts without spaces (Chinese,
  Japanese) come out as long "words" whose n-grams still carry meaning. Hashing (crc32, stable across
  processes, unlike ``hash``) keeps the model a fixed size whatever the vocabulary.
- **Structure**, named bins: size of the turn, words, lines, list items, questions, sentences, numbers, code
  symbols and code-like lines, a code fence, how much of the turn is pasted material after the instruction,
  a system prompt, history. These carry most of the complexity signal, which a word list cannot.
- **Shape of the ask** (`ask_shape`): the size of the first paragraph (where the ask is) and how many
  clauses it strings together (commas, conjunctions), against the size of what follows it; identifiers
  (``snake_case``, ``camelCase``, ``obj.call(``) and the mean line length (code without fences); a system
  prompt crossed with the history. Out of fold on the train split (`zeta_dev.classifier.select`) they
  raised the tier, not the task type: training gives them to the complexity head only
  (`zeta_dev.classifier.train.Hyper` has the table).
- **Context** (`context_words`): the distinct words of the user turn before the last one (``u:``), of the
  assistant turn before the last user turn (``a:``) and of the system prompt (``s:``, at half weight), each
  cut to `payload.CONTEXT_CHARS` and normalised by its own count, one bucket per word. A follow-up ("yes
  please show me", "now do it in Rust", "shorter") says little of what the conversation is about; the turns
  before it do. Nor does a user turn that is only material, when an operator's system prompt holds the
  standing instruction ("Translate each support ticket into English"). The task type still comes mainly
  from the last turn (its words count through their n-grams and the instruction block as well, the
  context's through one bucket each). The system prompt's block did not help out of fold at 3,621 training
  requests; at 33,459, with the writers of operator prompts among them, it did (dev/corpus/README.md,
  "Context").

Everything is bounded by the window of `payload.PromptView.last_user` and `payload.CONTEXT_CHARS`.
"""

from __future__ import annotations

import bisect
import re
import zlib
from dataclasses import dataclass

from .payload import PromptView

FEATURES_VERSION = "zeta-features-5"
HASH_BITS = 17
"""The train split's words and n-grams fill about 129,000 of the 131,072 buckets, so many share one. Four times
as many (19 bits, 332,000 of them used) gained little out of fold on the train split (23,531 requests, the 5
group folds of `select`, the shipped heads; 2026-12-04): task type 84.2% -> 84.4% (+0.19 points, SE 0.08),
tier 84.2% -> 84.3% (+0.11, SE 0.08), simple requests passing the 1% gate 39.5% -> 39.8%, for text weights
four times the size (the file would go from 3.8 MB to about 8) and a fit 2.5 times as long. Collisions are not
what holds the classifier back; 17 stays."""
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
_LIST_MARKS = ("- ", "* ", "\u2022 ", "+ ")
_MASK = BUCKETS - 1
# crc32(prefix + text) == crc32(text, crc32(prefix)): the namespaces cost no string concatenation.
NS_WORD = zlib.crc32(b"w:")
NS_SYMBOL = zlib.crc32(b"p:")
NS_CHAR = zlib.crc32(b"c:")
NS_INSTRUCTION = zlib.crc32(b"i:")
NS_PREVIOUS_USER = zlib.crc32(b"u:")
NS_PREVIOUS_ASSISTANT = zlib.crc32(b"a:")
NS_SYSTEM = zlib.crc32(b"s:")
CONTEXT_NAMESPACES = (NS_PREVIOUS_USER, NS_PREVIOUS_ASSISTANT, NS_SYSTEM)
"""The context blocks (`context_words`), in order: the previous user turn's words, the assistant's, the system
prompt's."""
CONTEXT_WEIGHTS = (1.0, 1.0, 0.5)
"""Per context block, its words count ``weight / sqrt(their count)`` (the turn's words 1 / sqrt(theirs)). The
system prompt's half, as it was tried out of fold (dev/corpus/README.md, "Context")."""


@dataclass(frozen=True, slots=True)
class TurnTokens:
    """The distinct tokens of a lower-cased turn, in first-seen order (the order changes no feature)."""

    words: list[str]
    symbols: list[str]
    """Runs of symbols, at most 8 characters each."""
    instruction: list[str]
    """The distinct words of the `instruction`: the very list ``words`` when the instruction is the whole turn
    (then the model adds each word's two rows at once)."""
    word_count: int
    """Words with repeats."""


def split_turn(turn: str) -> TurnTokens:
    """The regular expressions ``_WORD`` and ``_SYMBOLS`` over the lower-cased turn. Most turns are ASCII: for
    them, byte tables built from the same expressions give the same tokens several times faster."""
    if turn.isascii():
        raw = turn.encode()
        words = raw.translate(_ASCII_WORDS).decode().split()
        runs = raw.translate(_ASCII_SYMBOLS).decode().split()
        text = turn  # lower-casing keeps the length and the lines of ASCII text
    else:
        text = turn.lower()
        words = _WORD.findall(text)
        runs = _SYMBOLS.findall(text)
    distinct = list(dict.fromkeys(words))
    symbols = dict.fromkeys(runs)
    if max(map(len, symbols), default=0) > 8:
        symbols = dict.fromkeys(run[:8] for run in symbols)
    if len(text) <= INSTRUCTION_CHARS and "\n" not in text:
        instruction_words = distinct  # the instruction is the whole turn
    elif text is turn:
        instruction_words = list(dict.fromkeys(_ascii_words(instruction(turn))))
    else:
        instruction_words = list(dict.fromkeys(_WORD.findall(instruction(text))))
    return TurnTokens(
        words=distinct, symbols=list(symbols), instruction=instruction_words, word_count=len(words)
    )


def _ascii_words(text: str) -> list[str]:
    """``_WORD.findall(text.lower())`` for ASCII ``text``."""
    return text.encode().translate(_ASCII_WORDS).decode().split()


def _ascii_table(pattern: str, *, lower: bool = False) -> bytes:
    """A `bytes.translate` table for ASCII text, made from the regular expression it stands for: the
    characters ``pattern`` matches are kept (lower-cased if ``lower``), every other byte becomes a space."""
    matches = re.compile(pattern).fullmatch
    return bytes(
        (ord(chr(code).lower()) if lower else code) if code < 128 and matches(chr(code)) else 32
        for code in range(256)
    )


_ASCII_WORDS = _ascii_table(r"\w", lower=True)
"""``split()`` after it gives ``_WORD.findall`` of the lower-cased text."""
_ASCII_SYMBOLS = _ascii_table(r"[^\w\s]")
"""``split()`` after it gives ``_SYMBOLS.findall`` of the text."""


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
    raw = word.encode("utf-8", "surrogatepass")
    if len(raw) == len(word):  # ASCII: the n-grams of the encoded word are the encoded n-grams (one encode)
        crc = zlib.crc32
        padded_raw = b"<" + raw[:MAX_NGRAM_WORD] + b">"
        buckets = [crc(raw, NS_WORD) & _MASK]
        for n in NGRAMS:
            buckets.extend(
                crc(padded_raw[i : i + n], NS_CHAR) & _MASK for i in range(len(padded_raw) - n + 1)
            )
        return buckets
    buckets = [_crc(word, NS_WORD)]
    padded = "<" + word[:MAX_NGRAM_WORD] + ">"
    for n in NGRAMS:
        buckets.extend(_crc(padded[i : i + n], NS_CHAR) for i in range(len(padded) - n + 1))
    return buckets


WORD_BUCKET_CACHE_SIZE = 20_000
"""Distinct words whose buckets `cached_word_buckets` keeps (cleared when full: a miss costs a few us)."""
_word_bucket_cache: dict[str, tuple[int, ...]] = {}


def cached_word_buckets(word: str) -> tuple[int, ...]:
    """`word_buckets`, kept: a policy's examples compare every request word by word (`examples`), and the
    learned model reads the buckets of a word it has not summed yet from here before hashing it itself."""
    hit = _word_bucket_cache.get(word)
    if hit is None:
        hit = tuple(word_buckets(word))
        if len(_word_bucket_cache) >= WORD_BUCKET_CACHE_SIZE:
            _word_bucket_cache.clear()
        _word_bucket_cache[word] = hit
    return hit


def known_word_buckets(word: str) -> tuple[int, ...] | list[int]:
    """The buckets of ``word``: from `cached_word_buckets`' store when it has them, else hashed (not stored)."""
    hit = _word_bucket_cache.get(word)
    return word_buckets(word) if hit is None else hit


def symbol_bucket(symbols: str) -> int:
    return _crc(symbols, NS_SYMBOL)


def token_buckets(token: str) -> list[int]:
    """The hash buckets of one namespaced token (see `tokens`; ``u:``, ``a:`` and ``s:``: a word of the previous
    user turn, of the assistant turn and of the system prompt, `context_words`)."""
    kind, text = token[:2], token[2:]
    if kind == "w:":
        return word_buckets(text)
    namespace = {
        "p:": NS_SYMBOL,
        "i:": NS_INSTRUCTION,
        "u:": NS_PREVIOUS_USER,
        "a:": NS_PREVIOUS_ASSISTANT,
        "s:": NS_SYSTEM,
    }[kind]
    return [_crc(text, namespace)]


def bucket_of(text: str, namespace: int) -> int:
    """The bucket of ``text`` in a namespace (``NS_*``)."""
    return _crc(text, namespace)


def _crc(text: str, namespace: int) -> int:
    # surrogatepass: a JSON body may carry lone surrogates ("\ud800"), which strict UTF-8 cannot encode.
    return zlib.crc32(text.encode("utf-8", "surrogatepass"), namespace) & _MASK


def text_buckets(turn: str) -> tuple[list[int], list[int]]:
    """The buckets of a turn, with repeats (two words that share an n-gram count it twice), in two blocks
    that the model normalises apart: the words and symbol runs of the whole turn, and the `instruction`
    words."""
    t = split_turn(turn)
    text = [b for w in t.words for b in word_buckets(w)] + [symbol_bucket(s) for s in t.symbols]
    return text, [bucket_of(w, NS_INSTRUCTION) for w in t.instruction]


def context_words(view: PromptView) -> tuple[list[str], list[str], list[str]]:
    """The distinct words of the request's context, per block of `CONTEXT_NAMESPACES`: the previous user turn's,
    the previous assistant turn's and the system prompt's (each already cut to `payload.CONTEXT_CHARS`)."""
    return (
        distinct_words(view.previous_user),
        distinct_words(view.previous_assistant),
        distinct_words(view.system_prompt),
    )


def distinct_words(text: str) -> list[str]:
    """``split_turn(text).words`` without the symbol runs and the instruction: the distinct lower-cased words."""
    words = _ascii_words(text) if text.isascii() else _WORD.findall(text.lower())
    return list(dict.fromkeys(words))


def context_buckets(view: PromptView) -> tuple[list[int], ...]:
    """The buckets of `context_words`, one block per namespace (a word hashes to one bucket: no n-grams)."""
    return tuple(
        [bucket_of(w, ns) for w in words]
        for ns, words in zip(CONTEXT_NAMESPACES, context_words(view), strict=True)
    )


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
    return [_ALL_NAMES[i] for i in structure_indices(view, words=words)]


def structure_indices(view: PromptView, *, words: int | None = None) -> list[int]:
    """`structure` as positions in `all_structure_names` (what the model looks its weights up by)."""
    turn = view.last_user
    chars = view.last_user_chars
    code_percent = 100 * _code_chars(turn) // max(1, len(turn))
    lines = turn.split("\n")
    items, code_lines = _line_shapes(lines)
    questions = turn.count("?") + turn.count("\uff1f")  # and the full-width one (Chinese, Japanese)
    at = bisect.bisect_right
    size = at(_CHARS, chars)
    items_bin = at(_ITEMS, items)
    questions_bin = at(_QUESTIONS, questions)
    code_bin = at(_CODE, code_percent)
    return [
        _FIRST["chars"] + size,
        _FIRST["words"] + at(_BINS["words"], len(_WORD.findall(turn)) if words is None else words),
        _FIRST["lines"] + at(_BINS["lines"], len(lines) - 1),
        _FIRST["items"] + items_bin,
        _FIRST["questions"] + questions_bin,
        _FIRST["sentences"] + at(_BINS["sentences"], _sentences(turn)),
        _FIRST["numbers"] + at(_BINS["numbers"], _numbers(turn)),
        _FIRST["code"] + code_bin,
        _FIRST["codelines"] + at(_BINS["codelines"], code_lines),
        _FIRST["pasted"] + at(_BINS["pasted"], _pasted(turn, chars)),
        _FIRST["history"] + at(_BINS["history"], view.history),
        _FIRST["fence"] + ("```" in turn),
        _FIRST["system"] + bool(view.system),
        _FIRST["chars*items"] + size * (len(_ITEMS) + 1) + items_bin,
        _FIRST["chars*questions"] + size * (len(_QUESTIONS) + 1) + questions_bin,
        _FIRST["chars*code"] + size * (len(_CODE) + 1) + code_bin,
        *_ask_shape_indices(view, lines),
    ]


def all_structure_names() -> list[str]:
    """Every name `structure` can produce (the training code gives each a column)."""
    return list(_ALL_NAMES)


def _all_structure_names() -> tuple[str, ...]:
    names = [f"{name}:{i}" for name, edges in _BINS.items() for i in range(len(edges) + 1)]
    names += ["fence:0", "fence:1", "system:0", "system:1"]
    size_bins = range(len(_BINS["chars"]) + 1)
    for cross in ("items", "questions", "code"):
        names += [f"chars*{cross}:{s}:{i}" for s in size_bins for i in range(len(_BINS[cross]) + 1)]
    names += [f"{name}:{i}" for name, edges in _ASK_BINS.items() for i in range(len(edges) + 1)]
    names += [f"system*history:{s}:{i}" for s in (0, 1) for i in range(len(_BINS["history"]) + 1)]
    names += [f"head*rest:{h}:{r}" for h in range(len(_HEAD_CHARS) + 1) for r in range(len(_REST_CHARS) + 1)]
    return tuple(names)


_ASK_BINS: dict[str, tuple[int, ...]] = {
    "headwords": (4, 8, 14, 24, 40, 70, 120),
    "headclauses": (1, 2, 4, 7),
    "headands": (1, 2, 3, 5),
    "identifiers": (1, 3, 8, 20),
    "linelength": (20, 40, 80, 160, 400),
}
_HEAD_CHARS = (40, 120, 300)
_REST_CHARS = (1, 200, 1500)
ASK_SHAPE_MEASURES = (*_ASK_BINS, "system*history", "head*rest")
"""The measures `ask_shape` adds (the training code gives them to the complexity head only)."""
_CLAUSE_MARKS = (",", ";", "\u3001", "\uff0c")  # and the Chinese/Japanese commas
_CONJUNCTION = re.compile(r"\b(?:and|und|y|et|with|then)\b")
"""Words that join one requirement to the next (English, German, Spanish, French): how many asks one
sentence strings together."""
_IDENTIFIER = re.compile(r"(?<!\w)(?:[a-z]++_[a-z0-9_]++|[a-z]++[A-Z][A-Za-z]++|\w++\.\w++\()")
"""At the start of a word only, and possessive: otherwise every position inside every word is tried again
(five times the cost of a plain word scan instead of one and a half, measured on the corpus)."""


def ask_shape(view: PromptView, lines: list[str]) -> list[str]:
    """How much the ask (the first paragraph) asks for, against the material after it, and how code-like
    the turn is without fences. ``lines``: the turn split at newlines."""
    return [_ALL_NAMES[i] for i in _ask_shape_indices(view, lines)]


def _ask_shape_indices(view: PromptView, lines: list[str]) -> list[int]:
    turn = view.last_user
    end = turn.find("\n\n")
    if end == -1:
        end = turn.find("\n")
    head = turn if end == -1 else turn[:end]
    filled = sum(1 for line in lines if line.strip())
    at = bisect.bisect_right
    history = at(_BINS["history"], view.history)
    head_words, head_ands = _head_words_and_conjunctions(head)
    return [
        _FIRST["headwords"] + at(_ASK_BINS["headwords"], head_words),
        _FIRST["headclauses"] + at(_ASK_BINS["headclauses"], sum(map(head.count, _CLAUSE_MARKS))),
        _FIRST["headands"] + at(_ASK_BINS["headands"], head_ands),
        _FIRST["identifiers"] + at(_ASK_BINS["identifiers"], _identifiers(turn)),
        _FIRST["linelength"] + at(_ASK_BINS["linelength"], len(turn) // max(1, filled)),
        _FIRST["system*history"] + bool(view.system) * (len(_BINS["history"]) + 1) + history,
        _FIRST["head*rest"]
        + at(_HEAD_CHARS, len(head)) * (len(_REST_CHARS) + 1)
        + at(_REST_CHARS, len(turn) - len(head)),
    ]


def _head_words_and_conjunctions(head: str) -> tuple[int, int]:
    """``len(_WORD.findall(head))`` and ``len(_CONJUNCTION.findall(head.lower()))``. ``\\b...\\b`` matches
    a conjunction only as a whole run of word characters, so for ASCII text (where lower-casing changes no
    character's class) both counts come from one split of the head into words by a byte table."""
    if not head.isascii():
        return len(_WORD.findall(head)), len(_CONJUNCTION.findall(head.lower()))
    words = _ascii_words(head)
    return len(words), sum(map(_CONJUNCTION_WORDS.__contains__, words))


_CONJUNCTION_WORDS = frozenset(("and", "und", "y", "et", "with", "then"))
"""The words of ``_CONJUNCTION``."""
_CAMEL = re.compile(r"[a-z][A-Z]")


def _identifiers(turn: str) -> int:
    """``len(_IDENTIFIER.findall(turn))``. Each of its three forms needs a ``_``, a lower-case letter
    followed by a capital, or a ``(``: a turn with none of them (most prose) has no identifier, found
    without the costlier scan."""
    if "_" not in turn and "(" not in turn and _CAMEL.search(turn) is None:
        return 0
    return len(_IDENTIFIER.findall(turn))


_ALL_NAMES = _all_structure_names()
_FIRST: dict[str, int] = {}
for _i, _name in enumerate(_ALL_NAMES):
    _FIRST.setdefault(_name.split(":")[0], _i)
"""Position of each measure's bin 0 in `_ALL_NAMES`."""
_CHARS, _ITEMS, _QUESTIONS, _CODE = _BINS["chars"], _BINS["items"], _BINS["questions"], _BINS["code"]
_CODE_BYTES = _CODE_CHARS.encode()
_ASCII_DIGITS = bytes(49 if code < 128 and _DIGITS.fullmatch(chr(code)) else 48 for code in range(256))
"""Digits become ``1``, all else ``0``: a run of digits starts at a ``01`` or at the start."""


def _code_chars(turn: str) -> int:
    """How many characters of the turn are in ``_CODE_CHARS``."""
    if turn.isascii():
        raw = turn.encode()
        return len(raw) - len(raw.translate(None, _CODE_BYTES))
    return sum(map(turn.count, _CODE_CHARS))


def _numbers(turn: str) -> int:
    """``len(_DIGITS.findall(turn))``: runs of digits."""
    if turn.isascii():
        digits = turn.encode().translate(_ASCII_DIGITS)
        return digits.count(b"01") + digits.startswith(b"1")
    return len(_DIGITS.findall(turn))


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
