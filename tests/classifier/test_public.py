"""The public prompts' labels (dev/corpus/public) are valid, carry no prompt text and never reach training; the
command joins them with the prompts of the sets' own files and refuses a checkout that lacks one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from zeta_dev.classifier import corpus, public


def fields(checkout: str, text: str) -> dict[str, Any]:
    """A question of that repository's shape whose prompt is ``text``."""
    if checkout == "fastchat":
        return {"turns": [text, "a second turn"]}
    if checkout == "self-instruct":
        return {"instruction": text, "instances": [{"input": "", "output": "an answer"}]}
    return {"prompt": text}


def checkouts(tmp_path: Path, *, drop: str = "") -> dict[str, Path]:
    """The six sets' files, laid out as in the four repositories, holding two prompts each (the personas' CSV
    also one for image models, which is not a chat prompt)."""
    roots = {
        "fastchat": tmp_path / "FastChat",
        "arena-hard": tmp_path / "arena-hard-auto",
        "self-instruct": tmp_path / "self-instruct",
        "personas": tmp_path / "awesome-chatgpt-prompts",
    }
    for name, source in public.SOURCES.items():
        path = roots[source.checkout] / source.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "personas":
            path.write_text(
                "act,prompt,for_devs,type,contributor\n"
                'Poet,"I want you to act as a poet, ""rhyming"".\nMy first request is a limerick.",FALSE,TEXT,a\n'
                "Painter,A watercolour of a harbour,FALSE,IMAGE,b\n"
                "Linux Terminal,I want you to act as a linux terminal. My first command is pwd,TRUE,TEXT,c\n"
            )
            continue
        rows = [
            {source.key: key, **fields(source.checkout, f"{name} prompt {key}")}
            for key in ("1", "2")
            if f"{name}-{key}" != drop
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return roots


def test_the_committed_labels_are_valid_and_hold_no_prompt() -> None:
    labels = public.read_labels()
    ids = [label["id"] for label in labels]
    assert len(ids) == len(set(ids)) == 1962
    assert {i.split("-", 1)[0] for i in ids} == set(public.SOURCES)
    assert all(label["task"] in corpus.TASKS and label["complexity"] in (1, 2, 3, 4, 5) for label in labels)
    assert all(set(label) <= {"id", "task", "complexity", "note"} for label in labels)


def test_the_second_blind_labels_are_of_labelled_prompts() -> None:
    second = public.read_labels(public.LABELS.with_name("second.jsonl"))
    ids = [label["id"] for label in second]
    assert len(ids) == len(set(ids)) == 552 and set(ids) <= {label["id"] for label in public.read_labels()}
    assert all(label["task"] in corpus.TASKS and label["complexity"] in (1, 2, 3, 4, 5) for label in second)


def test_training_never_reads_them() -> None:
    assert public.LABELS.parent != corpus.CORPUS
    assert not {r.source for r in corpus.load()} & set(public.SOURCES)


def test_labels_are_joined_with_their_prompts_in_the_corpus_format(tmp_path: Path) -> None:
    labels = [
        {"id": "mtbench-2", "task": "chat", "complexity": 2},
        {"id": "arenahard2-1", "task": "code", "complexity": 4, "note": "hard"},
    ]
    rows = public.labelled(labels, public.prompts(checkouts(tmp_path)))
    public.write(tmp_path / "out", rows)
    loaded = {r.id: r for r in corpus.load(tmp_path / "out")}
    assert set(loaded) == {"mtbench-2", "arenahard2-1"}
    assert loaded["mtbench-2"].view.last_user == "mtbench prompt 2"  # the first turn only
    assert loaded["arenahard2-1"].view.last_user == "arenahard2 prompt 1"
    joined = loaded["arenahard2-1"]
    assert (joined.source, joined.task, joined.complexity) == ("arenahard2", "code", 4)


def test_an_instruction_is_followed_by_its_input() -> None:
    given = {"id": "9", "instruction": " Fix the grammar. ", "instances": [{"input": "me and him goes\n"}]}
    alone = {"id": "8", "instruction": "Name three rivers.", "instances": [{"input": "", "output": "x"}]}
    source = public.SOURCES["selfinstruct"]
    assert source.prompt(given) == "Fix the grammar.\n\nme and him goes"
    assert source.prompt(alone) == "Name three rivers."


def test_the_personas_are_the_text_prompts_of_the_csv_by_their_hash(tmp_path: Path) -> None:
    poet = 'I want you to act as a poet, "rhyming".\nMy first request is a limerick.'
    read = public.prompts({"personas": checkouts(tmp_path)["personas"]})
    assert read == {
        f"personas-{public.prompt_id(poet)}": poet,  # quoted field, its newline and quotes kept
        f"personas-{public.prompt_id('I want you to act as a linux terminal. My first command is pwd')}": (
            "I want you to act as a linux terminal. My first command is pwd"
        ),
    }
    assert public.prompt_id(poet) == hashlib.sha256(poet.encode()).hexdigest()[:10]


def test_a_csv_without_prompts_is_named(tmp_path: Path) -> None:
    roots = checkouts(tmp_path)
    (roots["personas"] / "prompts.csv").write_text("act,text\nPoet,a poem\n")
    with pytest.raises(public.PublicError, match=r"prompts.csv:2: not a personas question \(KeyError"):
        public.prompts({"personas": roots["personas"]})


def test_only_the_sets_of_the_checkouts_named_are_read(tmp_path: Path) -> None:
    roots = checkouts(tmp_path)
    named = {"self-instruct": roots["self-instruct"]}
    assert public.sources_in(named) == ["selfinstruct"]
    assert set(public.prompts(named)) == {"selfinstruct-1", "selfinstruct-2"}
    (roots["fastchat"] / public.SOURCES["mtbench"].path).unlink()  # not named, so never opened
    assert public.prompts(named)["selfinstruct-2"] == "selfinstruct prompt 2"


def test_a_prompt_holding_a_raw_line_separator_stays_whole(tmp_path: Path) -> None:
    """JSON leaves U+2028 and form feeds unescaped; Arena-Hard has both. Read or written by splitlines(), such a
    prompt was cut in two (and its line no longer parsed)."""
    roots = checkouts(tmp_path)
    path = roots["arena-hard"] / public.SOURCES["arenahard2"].path
    text = "first part\u2028second part\x0cthird"
    path.write_text(json.dumps({"uid": "9", "prompt": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = public.labelled([{"id": "arenahard2-9", "task": "chat", "complexity": 1}], public.prompts(roots))
    public.write(tmp_path / "out", rows)
    (joined,) = corpus.load(tmp_path / "out")
    assert joined.view.last_user == text


def test_a_corrupt_line_is_named(tmp_path: Path) -> None:
    roots = checkouts(tmp_path)
    path = roots["fastchat"] / public.SOURCES["vicuna"].path
    path.write_text(path.read_text() + '{"question_id": 3, "turns": [\n')
    with pytest.raises(public.PublicError, match=r"vicuna_bench/question.jsonl:3: not a vicuna question"):
        public.prompts(roots)


def test_a_label_whose_prompt_is_missing_is_named(tmp_path: Path) -> None:
    texts = public.prompts(checkouts(tmp_path, drop="vicuna-2"))
    with pytest.raises(public.PublicError, match="vicuna-2"):
        public.labelled([{"id": "vicuna-2", "task": "chat", "complexity": 1}], texts)


def test_a_checkout_without_the_set_is_refused(tmp_path: Path) -> None:
    roots = checkouts(tmp_path)
    (roots["arena-hard"] / public.SOURCES["arenahard1"].path).unlink()
    with pytest.raises(public.PublicError, match=r"arenahard1: cannot read .*--arena-hard"):
        public.prompts(roots)


def test_no_checkout_named_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        public.main([])
    assert exited.value.code == 2
    assert "name at least one checkout" in capsys.readouterr().err
