"""Public prompts nobody on the team wrote, labelled blind by the rubric: a check the corpus cannot give.

    python -m zeta_dev.classifier.public [--fastchat DIR] [--arena-hard DIR] [--self-instruct DIR]
                                         [--personas DIR] [--out DIR]

Every request of the corpus was written by someone who read LABELLING.md and the judgement calls; a user's
traffic was not. This scores the shipped classifier on six public sets of prompts written by others:

- ``mtbench``: the first turns of MT-bench's 80 questions, and ``vicuna``: Vicuna-bench's 80 questions, from
  lm-sys/FastChat (Apache-2.0; ``fastchat/llm_judge/data/{mt_bench,vicuna_bench}/question.jsonl``);
- ``arenahard1``: the 500 prompts of Arena-Hard v0.1, and ``arenahard2``: the 750 of Arena-Hard v2.0 (hard
  coding and maths prompts and creative writing), real users' prompts from Chatbot Arena, from
  lmarena/arena-hard-auto (Apache-2.0; ``data/arena-hard-v{0.1,2.0}/question.jsonl``);
- ``selfinstruct``: the 252 user-oriented instructions of self-instruct's human evaluation (tasks motivated by
  apps such as Gmail, Grammarly, GitHub or Wolfram Alpha, each an instruction and usually its input), from
  yizhongw/self-instruct (Apache-2.0; ``human_eval/user_oriented_instructions.jsonl``; its authors ask that it
  never be trained on). The prompt is the instruction, then a blank line and the input when there is one;
- ``personas``: 300 of the prompts people contributed to f/awesome-chatgpt-prompts (CC0-1.0; ``prompts.csv``),
  most of them setting the assistant up in a role ("I want you to act as ...") before their first request. Its
  id is the first 10 hex digits of the prompt's SHA-256 (`prompt_id`), since rows move between versions; the
  300 were drawn, before any was labelled or scored, from the distinct prompts of type TEXT up to 6,000
  characters at 50a97c07 (2026-03-20; 1,146 of them): ``random.Random(20261207).sample(sorted(ids), 300)``.

The labels (``dev/corpus/public/labels.jsonl``: ids, task type and complexity, no prompt text) were given by
annotators who read only the prompts, LABELLING.md and the w5/w6 judgement calls: not the sets' own
categories, not the model, not its answers. The prompts stay in their repositories: this command reads them
from the checkouts you name, scoring the sets they hold (FastChat at 0e6d3e4b, arena-hard-auto at 196f6b82,
self-instruct at 0b26ccaa, awesome-chatgpt-prompts at 50a97c07 were used; another version works as long as
every labelled id of its sets is in it, else it says which are missing), writes them in the corpus's format to ``--out``
(one group per prompt) and prints the learned model's figures on them beside the keyword classifier's
(`evaluate.unseen`). Nothing shipped trains, calibrates or is tuned on them: they are never in dev/corpus's top
level, where training reads (``--train-part``, a diagnostic, fits throwaway weights on part of them). The router's second opinion on them: ``python -m zeta_dev.classifier.second_opinion
--evaluate --unseen mtbench,vicuna,arenahard1,arenahard2 --corpus build/public``; routing them: ``python -m
bench.bench_routing --corpus build/public --split all``. Results: docs/classifier-rounds.md, docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeta_operator.router import model as runtime

from . import corpus, evaluate, train

LABELS = corpus.CORPUS / "public" / "labels.jsonl"
OUT = corpus.CORPUS.parents[1] / "build" / "public"


@dataclass(frozen=True)
class Source:
    """One public set: which checkout holds it, where, and how a line gives its id and prompt."""

    checkout: str
    """``fastchat``, ``arena-hard``, ``self-instruct`` or ``personas``: the option naming the checkout."""
    path: str
    key: str
    """The field whose value, after ``<source>-``, is the id in the labels file; ``""`` for a CSV file of
    prompts, whose ids are their hashes (`prompt_id`)."""

    def entries(self, text: str) -> Iterator[tuple[str, str]]:
        """(id after ``<source>-``, prompt) for each prompt of the set's file; NotAQuestion names a line that
        is not one."""
        if not self.key:
            yield from _csv_entries(text)
            return
        # Not splitlines(): a prompt may hold a raw U+2028 or form feed, which JSON leaves unescaped.
        for n, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    yield str(row[self.key]), self.prompt(row)
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    raise NotAQuestion(n, e) from None

    def prompt(self, row: Mapping[str, Any]) -> str:
        if "turns" in row:
            return str(row["turns"][0])
        if "instruction" in row:
            given = str(row["instances"][0]["input"]).strip() if row["instances"] else ""
            return str(row["instruction"]).strip() + (f"\n\n{given}" if given else "")
        return str(row["prompt"])


SOURCES = {
    "mtbench": Source("fastchat", "fastchat/llm_judge/data/mt_bench/question.jsonl", "question_id"),
    "vicuna": Source("fastchat", "fastchat/llm_judge/data/vicuna_bench/question.jsonl", "question_id"),
    "arenahard1": Source("arena-hard", "data/arena-hard-v0.1/question.jsonl", "uid"),
    "arenahard2": Source("arena-hard", "data/arena-hard-v2.0/question.jsonl", "uid"),
    "selfinstruct": Source("self-instruct", "human_eval/user_oriented_instructions.jsonl", "id"),
    "personas": Source("personas", "prompts.csv", ""),
}


def prompt_id(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:10]


def _csv_entries(text: str) -> Iterator[tuple[str, str]]:
    """awesome-chatgpt-prompts' ``prompts.csv`` (columns act, prompt, for_devs, type, contributor): its text
    prompts (not those written for image models) by `prompt_id`."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))  # some prompts are over the default 128 KiB
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if row.get("type", "TEXT") == "TEXT":
                yield prompt_id(row["prompt"]), row["prompt"]
    except (csv.Error, KeyError, TypeError) as e:
        raise NotAQuestion(reader.line_num, e) from None


class NotAQuestion(Exception):
    def __init__(self, line: int, error: Exception) -> None:
        super().__init__(f"{line}: {type(error).__name__}: {error}")
        self.line, self.error = line, error


class PublicError(Exception):
    """A checkout lacks a set, or a labelled prompt; the message says which."""


def sources_in(checkouts: Mapping[str, Path]) -> list[str]:
    """The sets these checkouts hold (by option name: ``fastchat``, ``arena-hard``, ...)."""
    return [name for name, source in SOURCES.items() if source.checkout in checkouts]


def prompts(checkouts: Mapping[str, Path]) -> dict[str, str]:
    """Every prompt of the sets the checkouts hold, by labels-file id (``<source>-<id>``)."""
    out: dict[str, str] = {}
    for name in sources_in(checkouts):
        source = SOURCES[name]
        path = checkouts[source.checkout] / source.path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise PublicError(
                f"{name}: cannot read {path} ({e.strerror}): is --{source.checkout} a checkout?"
            ) from None
        try:
            for key, prompt in source.entries(text):
                out[f"{name}-{key}"] = prompt
        except NotAQuestion as e:
            raise PublicError(
                f"{path}:{e.line}: not a {name} question ({type(e.error).__name__}: {e.error})"
            ) from None
    return out


def labelled(
    labels: Sequence[Mapping[str, Any]], texts: Mapping[str, str]
) -> dict[str, list[dict[str, Any]]]:
    """Corpus rows per source: each label joined with its prompt. PublicError names labels without one."""
    missing = [str(label["id"]) for label in labels if label["id"] not in texts]
    if missing:
        raise PublicError(
            f"{len(missing)} labelled prompts are not in the checkouts (another version?): {', '.join(missing[:5])}"
        )
    rows: dict[str, list[dict[str, Any]]] = {}
    for n, label in enumerate(labels, 1):
        source = source_of(label)
        rows.setdefault(source, []).append(
            {
                "id": label["id"],
                "group": f"{source}-g{n:04d}",
                "source": source,
                "messages": [{"role": "user", "content": texts[label["id"]]}],
                "task": label["task"],
                "complexity": label["complexity"],
            }
        )
    return rows


def read_labels(path: Path = LABELS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def source_of(label: Mapping[str, Any]) -> str:
    return str(label["id"]).split("-", 1)[0]


def write(out: Path, rows: Mapping[str, list[dict[str, Any]]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for source, source_rows in rows.items():
        # ASCII-escaped, so that corpus.load's splitlines() cannot cut a prompt at a raw line separator.
        text = "".join(json.dumps(r) + "\n" for r in source_rows)
        (out / f"{source}.jsonl").write_text(text, encoding="utf-8")


def trained_with_part(public: Sequence[corpus.Request]) -> tuple[runtime.LearnedModel, list[corpus.Request]]:
    """Diagnostic, never shipped: weights trained as `train.build` trains them on the corpus plus the public
    prompts of the train split (by their group's hash, as the corpus splits), and the rest of the public
    prompts, which that training never saw, to score them on. Does traffic like a user's, in training, carry
    to more of it? (About 16 minutes on 2 cores.)"""
    fit = [r for r in public if r.split == "train"]
    payload = train.build([*corpus.load(), *fit])
    model = runtime.parse(gzip.compress(payload), source="corpus + the public train part")
    return model, [r for r in public if r.split != "train"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.public", description=__doc__)
    parser.add_argument("--fastchat", type=Path, help="a checkout of lm-sys/FastChat")
    parser.add_argument("--arena-hard", type=Path, help="a checkout of lmarena/arena-hard-auto")
    parser.add_argument("--self-instruct", type=Path, help="a checkout of yizhongw/self-instruct")
    parser.add_argument("--personas", type=Path, help="a checkout of f/awesome-chatgpt-prompts")
    parser.add_argument("--out", type=Path, default=OUT, help="where the joined requests are written")
    parser.add_argument("--weights", type=Path, default=runtime.WEIGHTS_FILE)
    parser.add_argument(
        "--train-part",
        action="store_true",
        help="diagnostic: also train on the public prompts of the train split and score both weights on the "
        "others (`trained_with_part`; nothing is written but --out)",
    )
    args = parser.parse_args(argv)
    given = {
        "fastchat": args.fastchat,
        "arena-hard": args.arena_hard,
        "self-instruct": args.self_instruct,
        "personas": args.personas,
    }
    checkouts = {option: path for option, path in given.items() if path is not None}
    if not checkouts:
        parser.error("name at least one checkout: --fastchat, --arena-hard, --self-instruct or --personas")
    sources = sources_in(checkouts)
    try:
        chosen = [label for label in read_labels() if source_of(label) in sources]
        rows = labelled(chosen, prompts(checkouts))
    except PublicError as e:
        parser.exit(2, f"error: {e}\n")
    write(args.out, rows)
    # --out may also hold sets an earlier run wrote: only those named now are scored and trained on.
    public = [r for r in corpus.load(args.out) if r.source in sources]
    shipped = runtime.load(args.weights)
    print(evaluate.unseen(public, sources, shipped))
    if args.train_part:
        with_part, rest = trained_with_part(public)
        print(
            f"\nThe {len(rest)} public prompts outside the train split, by weights trained without and with the others:"
        )
        for m in (shipped, with_part):
            print(f"\n{m.source}:\n")
            print(evaluate.unseen(rest, sources, m))


if __name__ == "__main__":
    main()
