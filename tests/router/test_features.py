"""The fast paths of `features` against the regular expressions that define the features: the shipped weights
were trained on these definitions, so a fast path that differed would silently change every prediction."""

from __future__ import annotations

import re
import zlib

from hypothesis import example, given
from hypothesis import strategies as st

from zeta_operator.router import features

# ASCII (the byte-table path), and any text (the regular-expression path), lines and code symbols favoured.
ASCII = st.text(st.sampled_from([chr(c) for c in range(128)] + ["\n", " ", "{", "1"]), max_size=700)
ANY_TEXT = st.text(max_size=400) | st.text(st.characters(max_codepoint=0x3100), max_size=400)


def defined(turn: str) -> tuple[list[str], list[str], list[str], int]:
    text = turn.lower()
    words = re.findall(r"\w+", text)
    return (
        list(dict.fromkeys(words)),
        list(dict.fromkeys(run[:8] for run in re.findall(r"[^\w\s]+", text))),
        list(dict.fromkeys(re.findall(r"\w+", features.instruction(text)))),
        len(words),
    )


@given(ASCII | ANY_TEXT)
@example("Fix this ->>>>>>>>>>>> and ->>>>>>>>>>>!\n" + "x = 1;\n" * 60 + "Why?")
@example("\u0130stanbul 12 \u5feb\u901f\uff1f 3a4")
def test_a_turn_splits_into_the_tokens_the_regular_expressions_define(turn: str) -> None:
    t = features.split_turn(turn)
    assert (t.words, t.symbols, t.instruction, t.word_count) == defined(turn)


@given(ASCII | ANY_TEXT)
@example("12 apples, 3 pears and 0.5 kg of x1y22")
def test_structure_counts_what_the_regular_expressions_define(turn: str) -> None:
    assert features._numbers(turn) == len(re.findall(r"\d+", turn))
    assert features._code_chars(turn) == len(turn) - len(
        turn.translate(str.maketrans("", "", "{}();=<>[]_#/\\*&|$"))
    )


@given(ASCII | ANY_TEXT)
@example("Then write it with getUserName() and parse_args, y et und with AND,then")
@example("\u0130stanbul and then x.y( z")
def test_the_shape_of_the_ask_counts_what_the_regular_expressions_define(turn: str) -> None:
    conjunctions = r"\b(?:and|und|y|et|with|then)\b"
    identifiers = r"(?<!\w)(?:[a-z]++_[a-z0-9_]++|[a-z]++[A-Z][A-Za-z]++|\w++\.\w++\()"
    assert features._head_words_and_conjunctions(turn) == (
        len(re.findall(r"\w+", turn)),
        len(re.findall(conjunctions, turn.lower())),
    )
    assert features._identifiers(turn) == len(re.findall(identifiers, turn))


@given(st.text(st.characters(max_codepoint=127), max_size=40) | st.text(max_size=40))
@example("x" * 50)
def test_a_word_hashes_to_the_buckets_of_its_definition(word: str) -> None:
    def bucket(text: str, namespace: int) -> int:
        return zlib.crc32(text.encode("utf-8", "surrogatepass"), namespace) & (features.BUCKETS - 1)

    padded = "<" + word[: features.MAX_NGRAM_WORD] + ">"
    grams = [padded[i : i + n] for n in features.NGRAMS for i in range(len(padded) - n + 1)]
    expected = [bucket(word, features.NS_WORD)] + [bucket(g, features.NS_CHAR) for g in grams]
    assert features.word_buckets(word) == expected
