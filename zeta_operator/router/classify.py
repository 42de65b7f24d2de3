"""Request -> (task type, complexity 1..5, priority 0..9, confidence) -> one task class of the routing table.

Order of evidence, strongest first:

1. explicit headers named by the table's classifier settings (task, complexity, priority); a bad value is a 400;
2. the request's ``model``, when it is one of the table's aliases (task type, optionally complexity);
3. the table's keyword rules on the prompt, first match wins, with their complexity bonus;
3b. the table's labelled examples (`examples.ExampleIndex`): an exact match decides what is still open, as a
   rule would; a near one weighs its task type against the model's and only ever pushes complexity up;
4. the learned model (`model.LearnedModel`): task type from the last user turn, complexity from what is asked
   and how (its structure), each with a calibrated probability. Task types the table has no class for are left
   out (the others' probabilities renormalised);
5. the table's default task type.

Headers and aliases are certain (confidence 1.0). A rule decides the task type with certainty; the model still
estimates the complexity, shifted up by the rule's bonus. `Classification.at_most` carries P(complexity <= k),
which the router uses to spill a request to a smaller model only when it is confident the request is simple
(`spill_floor`) and, for a follow-up, that the ask it follows was simple too.

The rule classifier (``zeta-router --classifier rules``, chosen explicitly by the router's operator, or for
a table's unit tests) replaces step 4 with the built-in vocabulary this module had before the learned model:
code fences, code syntax and vocabulary, summary and reasoning words (used only when the table has classes of
that task type). Its complexity starts at 1 and gains a level for a prompt over SHORT_TOKENS, another over
LONG_TOKENS, another over the table's ``longPromptTokens``, one per distinct "hard" word (at most two), plus
the rule's ``complexityBonus``. It has no calibrated confidence: it reports 1.0, as before.

Rules and the vocabulary work on the bounded window of `payload.PromptView` with plain substring search, so
their cost is bounded by (window size x keyword count) whatever the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache, partial

from ..api.common import COMPLEXITY_NAMES
from ..api.policy import ClassifierSettings
from ..api.table import TableClass
from . import features
from .examples import ExampleIndex, ExampleMatch, estimate, pushed_up
from .model import SIMPLE_MAX, LearnedModel, Prediction, spill_at_most
from .payload import BadRequest, PromptView

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

CODE_FENCE = "```"
CODE_SYNTAX = (
    "def ", "return ", "import ", "#include", "=>", "();", "){", ") {", "};", "print(", "console.log",
    "printf(", "func ", "public static", "self.", "!=", "==", "[]", "`",
)  # fmt: skip
"""Fragments that are rare in prose and common in code (each distinct one found scores 1)."""
CODE_WORDS_STRONG = (
    "python", "javascript", "typescript", "java", "golang", "rust", "kotlin", "c++", "c#", "bash", "sql",
    "regex", "dockerfile", "kubernetes", "git", "react", "node.js", "flask", "django", "compile", "compiler",
    "stack trace", "traceback", "script", "snippet", "refactor", "unit test", "one-liner", "code", "yaml",
)  # fmt: skip
"""Words (matched at a word start) that almost always mean programming (each scores 2)."""
CODE_WORDS = (
    "function", "method", "class", "variable", "bug", "debug", "exception", "error:", "api", "endpoint",
    "query", "deployment", "library", "module", "repository", "linux", "html", "css", "json", "hook",
)  # fmt: skip
"""Words that often mean programming (each scores 1)."""
SUMMARY_WORDS = (
    "summar", "tl;dr", "tldr", "key points", "takeaways", "condense", "recap", "shorten", "gist",
    "executive brief", "in one sentence", "action items", "main points", "abstract",
)  # fmt: skip
REASONING_WORDS = (
    "prove", "proof", "derive", "step by step", "show your work", "justify", "why does", "theorem",
    "probability", "solve", "equation", "integer", "fallacy", "logic", "how many", "calculate", "reasoning",
    "riddle", "puzzle", "lemma", "induction", "show that", "winning strategy", "think it through",
)  # fmt: skip
HARD_WORDS = (
    "distributed", "concurren", "thread-safe", "lock-free", "atomic", "consensus", "memory ordering",
    "linearizab", "compiler", "type checker", "parser", "clock skew", "rigorous", "theorem", "induction",
    "infinitely many", "planar", "architecture", "scalab", "fault toleran", "design and implement",
    "backwards compatible", "benchmarks", "snapshotting", "from scratch", "production-ready", "prove",
    "unit tests", "error recovery", "all integer", "generic over",
)  # fmt: skip
"""Vocabulary of demanding requests: each distinct hit adds to the complexity score."""

EMBEDDING_TASK = "embeddings"
"""Task type of /v1/embeddings requests unless a header or alias names another."""
SHORT_TOKENS = 24
"""A prompt above this (about two sentences) starts at complexity 2."""
LONG_TOKENS = 400
"""A prompt above this gains another level (before the table's longPromptTokens level)."""
CODE_THRESHOLD = 2
"""Code score (fence 3, strong word 2, syntax fragment or word 1) from which a request counts as code."""


LEVELS = 5
CERTAIN = (1.0,) * LEVELS


@dataclass(frozen=True, slots=True)
class Classification:
    task_class: TableClass
    task_type: str
    complexity: int
    priority: int
    tokens: int
    source: str
    """What decided the task type: header, alias, rule, example, model, heuristic (rule classifier),
    endpoint (embeddings) or default."""
    confidence: float = 1.0
    """Probability that the task type and the complexity tier (simple <= 2 < complex) are right: the product
    of the two calibrated probabilities (1.0 for what a header, an alias or a rule decided)."""
    at_most: tuple[float, ...] = CERTAIN
    """P(complexity <= k) for k = 1..5 (for a known complexity c: 0 below c, 1 from c)."""
    task_probabilities: tuple[tuple[str, float], ...] = ()
    """Every task type the classifier weighed, most likely first, with its probability; empty when the task
    type is certain (header, alias, rule, exact example, endpoint, rule classifier)."""
    earlier: Callable[[], tuple[float, ...]] | None = field(default=None, compare=False, repr=False)
    """For a follow-up the model estimated: P(complexity <= k) of the ask it follows (`spill_at_most`), predicted
    on first use and kept. On demand because it costs a second prediction, usually of a longer text, and only
    the spill gate reads it, and only when it could change the gate's answer (`spill_floor`)."""
    priority_from_header: bool = False
    """Whether a priority header set ``priority`` (it then stays when a second opinion changes the class)."""

    @property
    def earlier_at_most(self) -> tuple[float, ...] | None:
        return None if self.earlier is None else self.earlier()

    @property
    def simple_probability(self) -> float:
        return self.at_most[SIMPLE_MAX - 1]

    @property
    def spill_at_most(self) -> tuple[float, ...]:
        """What the spill gate relies on (`model.spill_at_most`)."""
        return spill_at_most(self.at_most, self.earlier_at_most)

    @property
    def spill_probability(self) -> float:
        return self.spill_at_most[SIMPLE_MAX - 1]


def certain(complexity: int) -> tuple[float, ...]:
    return tuple(1.0 if k >= complexity else 0.0 for k in range(1, LEVELS + 1))


def shifted(at_most: tuple[float, ...], levels: int) -> tuple[float, ...]:
    """P(complexity + levels <= k): the distribution moved up by a rule's bonus (down by a negative one)."""
    out = []
    for k in range(1, LEVELS + 1):
        source = k - levels
        out.append(1.0 if source >= LEVELS else 0.0 if source < 1 else at_most[source - 1])
    return tuple(out)


def plausible_tasks(cls: Classification, *, confidence: float) -> tuple[str, ...]:
    """The task types the request may really be: the most likely ones, in order, until together they hold at
    least ``confidence`` of the probability (the decided task type always first). A backend that lacks any of
    them is a bet against the classifier's own doubt, so the router keeps such a request on backends that serve
    all of them (`proxy.Forwarder._eligible`)."""
    plausible = [cls.task_type]
    mass = next((p for t, p in cls.task_probabilities if t == cls.task_type), 1.0)
    for task, p in cls.task_probabilities:
        if mass >= confidence - 1e-12:
            break
        if task != cls.task_type:
            plausible.append(task)
            mass += p
    return tuple(plausible)


def spill_floor(cls: Classification, *, protected_ceiling: int, offload_confidence: float) -> int:
    """The lowest complexity ceiling a backend may have to serve this request.

    A backend whose ceiling is at least ``protected_ceiling`` (the class's upper bound, or its preferred
    backends' ceiling when that is higher) keeps the request with the preferred backends or above. A smaller
    one may take it only if the classifier is at least ``offload_confidence`` sure that the request's
    complexity is within the backend's ceiling: P(complexity <= ceiling), and for a follow-up the same of the ask
    it follows (`Classification.spill_at_most`). Never below the estimate itself.
    """
    confident = _first_confident(cls.at_most, offload_confidence)
    if confident >= protected_ceiling or cls.earlier is None:
        # The ask it follows can only lower the probabilities (`spill_at_most`), i.e. raise ``confident``:
        # when the request alone does not clear the gate below the protected ceiling, nothing to predict.
        return max(cls.complexity, min(confident, protected_ceiling))
    confident = _first_confident(cls.spill_at_most, offload_confidence)
    return max(cls.complexity, min(confident, protected_ceiling))


def _first_confident(at_most: tuple[float, ...], offload_confidence: float) -> int:
    """The lowest k with P(complexity <= k) at least ``offload_confidence``."""
    return next((k for k, p in enumerate(at_most, 1) if p >= offload_confidence - 1e-12), LEVELS)


@dataclass(frozen=True, slots=True)
class _Rule:
    task_type: str
    keywords: tuple[str, ...]
    bonus: int


class Classifier:
    """Compiled once per routing table; `classify` is the per-request call."""

    def __init__(
        self,
        settings: ClassifierSettings,
        classes: list[TableClass],
        *,
        default_class: str | None,
        model: LearnedModel | None,
    ) -> None:
        """``model``: the learned model; None selects the rule classifier (built-in vocabulary)."""
        self._model = model
        self._task_header = settings.task_header
        self._complexity_header = settings.complexity_header
        self._priority_header = settings.priority_header
        self._default_task = settings.default_task_type
        self._long_prompt_tokens = settings.long_prompt_tokens
        self._aliases = {a.alias: (a.task_type, a.complexity) for a in settings.model_aliases}
        self._rules = tuple(
            _Rule(r.task_type, tuple(k.lower() for k in r.keywords), r.complexity_bonus)
            for r in settings.rules
        )
        self._by_task: dict[str, list[TableClass]] = {}
        for c in classes:
            self._by_task.setdefault(c.task_type, []).append(c)
        self._default = next((c for c in classes if c.name == default_class), None)
        self._examples = ExampleIndex.build(settings.examples)  # featurised here, once per table version
        self._model_tasks = tuple(t for t in (model.tasks if model else ()) if t in self._by_task)

    @property
    def aliases(self) -> list[str]:
        return list(self._aliases)

    def classify(
        self, headers: Mapping[str, str], model: str, prompt: PromptView, *, embedding: bool = False
    ) -> Classification:
        """Raises BadRequest for bad header values or when no class fits.

        ``embedding``: an /v1/embeddings request; its input is not a prompt, so no rule or heuristic applies:
        task type ``embeddings`` (unless a header or alias says otherwise), complexity 1."""
        task, complexity, priority = self._from_headers(headers)
        source = "header" if task else ""
        alias = self._aliases.get(model)
        if alias is not None:
            if task is None:
                task, source = alias[0], "alias"
            if complexity is None:
                complexity = alias[1]
        if embedding:
            task, source = (task, source) if task else (EMBEDDING_TASK, "endpoint")
            return self._classified(task, complexity or 1, priority, prompt, source)
        # The rules only decide the task type and the complexity bonus: with both known, skip the scan.
        rule = None if task is not None and complexity is not None else self._matching_rule(prompt.text, task)
        if task is None and rule is not None:
            task, source = rule.task_type, "rule"
        bonus = rule.bonus if rule is not None and rule.task_type == task else 0
        if task is not None and complexity is not None:
            return self._classified(task, complexity, priority, prompt, source)
        turn = match = None
        if self._examples is not None:
            turn = features.split_turn(prompt.last_user)  # split once, for the examples and the model
            match = self._examples.nearest(prompt.last_user, task=task, words=turn.words)
        if match is not None and match.exact:
            if task is None:
                task, source = match.task_type, "example"
            if complexity is None:
                complexity = max(1, min(LEVELS, match.complexity + bonus))
            return self._classified(task, complexity, priority, prompt, source)
        if self._model is None:
            return self._by_rules(task, complexity, priority, prompt, source, bonus, match)
        return self._by_model(task, complexity, priority, prompt, source, bonus, match, turn)

    def _by_model(
        self,
        task: str | None,
        complexity: int | None,
        priority: int | None,
        prompt: PromptView,
        source: str,
        bonus: int,
        match: ExampleMatch | None = None,
        turn: features.TurnTokens | None = None,
    ) -> Classification:
        """``match``: a near (not exact) example, or None; ``turn``: the split last user turn, if done."""
        assert self._model is not None
        prediction = self._model.predict(prompt, turn, earlier=False)
        task_p = 1.0
        ranked: tuple[tuple[str, float], ...] = ()
        if task is None:
            task, ranked, source = self._model_task(prediction, match)
            task_p = ranked[0][1]
        if complexity is not None:
            return self._classified(
                task, complexity, priority, prompt, source, confidence=task_p, task_probabilities=ranked
            )
        at_most = prediction.cumulative()
        if bonus:
            at_most = shifted(at_most, bonus)
        level = max(1, min(LEVELS, prediction.complexity_estimate() + bonus))
        if match is not None:
            at_most = pushed_up(at_most, match)
            level = max(level, estimate(at_most, simple_max=SIMPLE_MAX))
        simple = at_most[SIMPLE_MAX - 1]
        tier_p = simple if level <= SIMPLE_MAX else 1.0 - simple
        return self._classified(
            task,
            level,
            priority,
            prompt,
            source,
            confidence=task_p * tier_p,
            at_most=at_most,
            task_probabilities=ranked,
            earlier=None if prompt.earlier is None else cache(partial(self._model.at_most, prompt.earlier)),
        )

    def with_task_probabilities(
        self, cls: Classification, probabilities: Mapping[str, float], *, source: str
    ) -> Classification:
        """``cls``, which the model decided, with other task probabilities over the same task types (the
        second opinion's, `second_opinion.fold_in`): the most likely decides the task type and its class.
        The complexity and its probabilities, and so the spill gate, stay the model's; a priority header still
        wins."""
        # Sorting is stable: ties keep the given order.
        ranked = tuple(sorted(probabilities.items(), key=lambda tp: -tp[1]))
        task, task_p = ranked[0]
        tier_p = cls.confidence / cls.task_probabilities[0][1]
        task_class = self.resolve(task, cls.complexity)
        return replace(
            cls,
            task_class=task_class,
            task_type=task,
            priority=cls.priority if cls.priority_from_header else task_class.priority,
            source=source,
            confidence=task_p * tier_p,
            task_probabilities=ranked,
        )

    def _model_task(
        self, prediction: Prediction, match: ExampleMatch | None
    ) -> tuple[str, tuple[tuple[str, float], ...], str]:
        """The task types the table has classes for, most likely first, with their probabilities, and what
        decided the first; a near example's task type gets the match's weight against the model's
        (renormalised) probabilities."""
        tasks = self._model_tasks
        if tasks:
            total = sum(prediction.tasks[t] for t in tasks)
            p = {t: prediction.tasks[t] / total if total > 0 else 1.0 / len(tasks) for t in tasks}
            source = "model"
        else:  # no class serves a task type the model knows: the default task type stands in for it
            p, source = {self._default_task: 1.0}, "default"
        if match is not None:
            w = match.weight
            p = {t: (1.0 - w) * v for t, v in p.items()}
            p[match.task_type] = p.get(match.task_type, 0.0) + w
        matched = match.task_type if match is not None else None
        ranked = sorted(p.items(), key=lambda tp: (-tp[1], tp[0] != matched))  # stable: ties keep table order
        if match is not None and ranked[0][0] == match.task_type:
            source = "example"
        return ranked[0][0], tuple(ranked), source

    def _by_rules(
        self,
        task: str | None,
        complexity: int | None,
        priority: int | None,
        prompt: PromptView,
        source: str,
        bonus: int,
        match: ExampleMatch | None = None,
    ) -> Classification:
        """The rule classifier: built-in vocabulary and size for what headers, aliases and rules left open.
        A near example (``match``) with at least half weight decides the task type and raises complexity to
        its level; it never lowers it."""
        if match is not None and match.weight < 0.5:
            match = None
        if task is None:
            if match is not None:
                task, source = match.task_type, "example"
            else:
                task = self._builtin_task(prompt.text)
                source = "heuristic" if task else "default"
        task = task or self._default_task
        if complexity is None:
            complexity = self._estimate_complexity(prompt, bonus)
            if match is not None:
                complexity = max(complexity, match.complexity)
        return self._classified(task, complexity, priority, prompt, source)

    def _classified(
        self,
        task: str,
        complexity: int,
        priority: int | None,
        prompt: PromptView,
        source: str,
        *,
        confidence: float = 1.0,
        at_most: tuple[float, ...] | None = None,
        task_probabilities: tuple[tuple[str, float], ...] = (),
        earlier: Callable[[], tuple[float, ...]] | None = None,
    ) -> Classification:
        task_class = self.resolve(task, complexity)
        return Classification(
            task_class=task_class,
            task_type=task,
            complexity=complexity,
            priority=task_class.priority if priority is None else priority,
            tokens=prompt.tokens,
            source=source,
            confidence=confidence,
            at_most=certain(complexity) if at_most is None else at_most,
            task_probabilities=task_probabilities,
            earlier=earlier,
            priority_from_header=priority is not None,
        )

    def resolve(self, task: str, complexity: int) -> TableClass:
        """The first class of ``task`` whose range holds ``complexity``, else the nearest range above, else
        the nearest range below, else the default class; BadRequest when there is none.

        The task type outranks the default class: a summary harder than every summarize class is served by
        the hardest summarize class's backends that can take its complexity (the capability filter applies
        the request's complexity, never the class's), not by a chat class whose backends may not summarize."""
        candidates = self._by_task.get(task, [])
        for c in candidates:
            if c.complexity.min <= complexity <= c.complexity.max:
                return c
        above = [c for c in candidates if c.complexity.min > complexity]
        if above:
            return min(above, key=lambda c: c.complexity.min)
        if candidates:
            return max(candidates, key=lambda c: c.complexity.max)
        if self._default is not None:
            return self._default
        raise BadRequest(
            f"no task class for task type {task!r} at complexity {complexity}", code="no_task_class"
        )

    def _from_headers(self, headers: Mapping[str, str]) -> tuple[str | None, int | None, int | None]:
        task = headers.get(self._task_header)
        if task is not None:
            task = task.strip().lower()
            if not _NAME.fullmatch(task):
                raise BadRequest(
                    f"{self._task_header} must be a task type name such as chat or code",
                    code="invalid_header",
                )
        complexity = headers.get(self._complexity_header)
        priority = headers.get(self._priority_header)
        return (
            task,
            None if complexity is None else self._parse_complexity(complexity),
            None if priority is None else self._parse_priority(priority),
        )

    def _parse_complexity(self, text: str) -> int:
        value = text.strip().lower()
        if value.isdigit() and len(value) == 1 and 1 <= int(value) <= 5:
            return int(value)
        if value in COMPLEXITY_NAMES:
            return COMPLEXITY_NAMES[value]
        names = ", ".join(sorted(COMPLEXITY_NAMES))
        raise BadRequest(f"{self._complexity_header} must be 1 to 5 or one of {names}", code="invalid_header")

    def _parse_priority(self, text: str) -> int:
        value = text.strip()
        if len(value) == 1 and value.isdigit():
            return int(value)
        raise BadRequest(f"{self._priority_header} must be an integer from 0 to 9", code="invalid_header")

    def _matching_rule(self, text: str, task: str | None) -> _Rule | None:
        """The first rule with a keyword in the text (of ``task``'s rules only, when it is already known)."""
        for rule in self._rules:
            if task is not None and rule.task_type != task:
                continue
            if any(k in text and contains_word(text, k) for k in rule.keywords):
                return rule
        return None

    def _builtin_task(self, text: str) -> str | None:
        if "code" in self._by_task and code_score(text) >= CODE_THRESHOLD:
            return "code"
        if "summarize" in self._by_task and count_words(text, SUMMARY_WORDS):
            return "summarize"
        if "reasoning" in self._by_task and count_words(text, REASONING_WORDS):
            return "reasoning"
        return None

    def _estimate_complexity(self, prompt: PromptView, bonus: int) -> int:
        level = 1
        if prompt.tokens > SHORT_TOKENS:
            level += 1
        if prompt.tokens > LONG_TOKENS:
            level += 1
        if prompt.tokens > self._long_prompt_tokens:
            level += 1
        hard = count_words(prompt.text, HARD_WORDS)
        level += min(hard, 2)
        return max(1, min(5, level + bonus))


def code_score(text: str) -> int:
    score = 3 if CODE_FENCE in text else 0
    score += len([fragment for fragment in CODE_SYNTAX if fragment in text])
    return score + 2 * count_words(text, CODE_WORDS_STRONG) + count_words(text, CODE_WORDS)


def count_words(text: str, words: tuple[str, ...]) -> int:
    # ``w in text`` (one C-level scan each) rules out most words before the word-boundary check.
    hits = [w for w in words if w in text]
    return sum(1 for w in hits if contains_word(text, w)) if hits else 0


def contains_word(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` starting at a word boundary ("prove" is not found in "improve")."""
    if not word[0].isalnum():
        return word in text
    start = text.find(word)
    while start != -1:
        if start == 0 or not text[start - 1].isalnum():
            return True
        start = text.find(word, start + 1)
    return False
