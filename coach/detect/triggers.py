"""Trigger phrases in what a party said: explainable rules, each signal with its evidence and the id
of the pattern that fired.

The rules are data, not code: ``models/rules.yaml`` holds, for each built-in label, its speaker, its
patterns and its vetoes, each with an id (``churn_threat.exit_fee``), and the lines each must fire
on and stay quiet on (the tests read them: ``tests/test_rules.py``). A pattern is a regular
expression over one party's final transcript; a veto silences the label for the hard negatives ("your
manager helped me last week" is not a request for one; "I don't want to cancel" is not a churn
threat) and for the apologies and corrections of a call that use a trigger's own words ("sorry I
called you a clown"). The matched words are the evidence shown to QA and team leads; the pattern's id
goes with the signal (``rule``), so ``coach report`` gives QA's precision per pattern and a team can
switch one off in its playbook (``switched_off:``).

Rules catch the phrasings a contact centre hears every day; the indirect ones ("is there anyone
who can actually do something?") are caught by meaning (``coach/detect/exemplars.py``), as
``<label>.meaning``: the detector takes both, a rule first, and a label's veto silences both.

The file is the project's, not a team's (a team writes phrases, never regular expressions: see
``coach/detect/custom.py``); it is checked as it loads all the same: every pattern must keep the
rule of ``coach/textguard.py`` (no backtracking quantifier inside a repeated group) and capture
nothing, and every id is unique.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from coach.defaults import RULES as RULES_FILE
from coach.detect.exemplars import ExemplarMatch
from coach.errors import CoachError
from coach.events import SignalEvent, TranscriptEvent
from coach.textguard import backtracking_nests

RULE_SCORE = 0.8
MEANING = "meaning"  # the id of a label's trigger heads: "<label>.meaning"
_SLUG = re.compile(r"[a-z][a-z0-9_]{1,39}")


class RulesError(CoachError):
    """The rules file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Pattern:
    """One pattern or veto of the rules file, with the lines that test it."""

    id: str  # "<label>.<slug>"
    label: str
    speaker: str
    veto: bool
    regex: re.Pattern[str]
    fires: tuple[str, ...]  # a pattern: lines it fires on; a veto: lines a pattern matches that it silences
    quiet: tuple[str, ...]  # a pattern: lines its label stays quiet on
    note: str = ""
    misfires: tuple[str, ...] = ()  # near misses it is known to fire on: why a team might switch it off


@dataclass(frozen=True)
class Rule:
    """A label's patterns that are switched on, joined as one expression of alternatives (one pass
    over the text, and the same match as before they were data), and its vetoes likewise.

    Which pattern matched: the joined expression's match starts where the leftmost of them does, and
    there the first of them, in order, that matches is the one the alternation took. So the id comes
    from trying them in order at that one place, only once the line has matched (a capturing group
    per alternative made every line half as slow again)."""

    label: str
    speaker: str  # "customer" or "agent"
    pattern: re.Pattern[str] | None
    patterns: tuple[Pattern, ...]  # the joined alternatives, in order
    veto: re.Pattern[str] | None = None
    vetoes: tuple[Pattern, ...] = ()

    def vetoed(self, text: str) -> str | None:
        """The id of the veto that silences this label on ``text``, if one does."""
        if self.veto is None or (match := self.veto.search(text)) is None:
            return None
        return _which(self.vetoes, text, match)

    def search(self, text: str) -> tuple[re.Match[str], str] | None:
        """The words that match a pattern, and that pattern's id, vetoes aside."""
        if self.pattern is None or (match := self.pattern.search(text)) is None:
            return None
        return match, _which(self.patterns, text, match)

    def find(self, text: str) -> tuple[re.Match[str], str] | None:
        """The words that fire this rule and the pattern's id, unless a veto says otherwise."""
        found = self.search(text)
        return None if found is None or self.vetoed(text) else found


def _which(patterns: tuple[Pattern, ...], text: str, match: re.Match[str]) -> str:
    start = match.start()
    for p in patterns:
        if p.regex.match(text, start) is not None:
            return p.id
    raise AssertionError(f"no alternative matches where the joined expression did: {match.group(0)!r}")  # pragma: no cover


def _joined(patterns: list[Pattern]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p.regex.pattern})" for p in patterns), re.IGNORECASE)


@dataclass(frozen=True)
class RuleBook:
    """The built-in rules as loaded: every pattern and veto, and the rules with some switched off."""

    patterns: tuple[Pattern, ...]
    labels: tuple[tuple[str, str], ...]  # (label, speaker), in file order
    # ids of patterns taken out of the file, and why: a playbook that switched one off still loads
    retired: dict[str, str] = field(default_factory=dict, compare=False)
    _compiled: dict = field(default_factory=dict, compare=False, repr=False)

    def ids(self) -> list[str]:
        """Every id a playbook may switch off: the patterns, the vetoes, and each label's meaning."""
        return [p.id for p in self.patterns] + [f"{label}.{MEANING}" for label, _ in self.labels]

    @functools.cached_property
    def _switchable(self) -> frozenset[str]:
        """The ids that change the compiled rules: patterns and vetoes."""
        return frozenset(p.id for p in self.patterns)

    def rules(self, off: frozenset[str] = frozenset()) -> tuple[Rule, ...]:
        """One :class:`Rule` a label, without the patterns and vetoes in ``off``; compiled once per
        set of them switched off (a handful of playbooks: the cache is small and bounded)."""
        off = frozenset(off & self._switchable)
        if (cached := self._compiled.get(off)) is not None:
            return cached
        if len(self._compiled) >= 32:
            self._compiled.clear()
        out = []
        for label, speaker in self.labels:
            mine = [p for p in self.patterns if p.label == label and p.id not in off]
            patterns, vetoes = [p for p in mine if not p.veto], [p for p in mine if p.veto]
            out.append(Rule(label, speaker, _joined(patterns), tuple(patterns), _joined(vetoes), tuple(vetoes)))
        return self._compiled.setdefault(off, tuple(out))


def _lines(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(line, str) and line.strip() for line in value):
        raise RulesError(f"{where}: a list of lines")
    return tuple(value)


def load_rules(path: Path = RULES_FILE) -> RuleBook:
    """Read and check a rules file: one readable line for the first problem."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: cannot read the rules: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"words", "signals", "retired"} or not isinstance(data.get("signals"), dict):
        raise RulesError(f"{path}: expected `words:`, `signals:` and `retired:` only")
    words, retired = data.get("words") or {}, data.get("retired") or {}
    if not isinstance(words, dict) or not all(isinstance(k, str) and k.isupper() and isinstance(v, str) for k, v in words.items()):
        raise RulesError(f"{path}: words: NAME: expression, each NAME in capitals")
    if not isinstance(retired, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in retired.items()):
        raise RulesError(f"{path}: retired: id: why it was taken out")
    patterns: list[Pattern] = []
    labels: list[tuple[str, str]] = []
    for label, spec in data["signals"].items():
        if not isinstance(spec, dict) or set(spec) - {"speaker", "patterns", "vetoes"} or spec.get("speaker") not in ("agent", "customer"):
            raise RulesError(f"{path}: {label}: needs speaker (agent or customer), patterns, and optionally vetoes")
        labels.append((label, spec["speaker"]))
        for key in ("patterns", "vetoes"):
            for item in spec.get(key) or ():
                patterns.append(_pattern(path, label, spec["speaker"], key == "vetoes", item, words))
    seen: set[str] = set()
    for p in patterns:
        if p.id in seen or p.id in retired:
            raise RulesError(f"{path}: {p.id} is written twice" if p.id in seen else f"{path}: {p.id} is retired: give the pattern a new id")
        seen.add(p.id)
    book = RuleBook(tuple(patterns), tuple(labels), dict(retired))
    try:
        book.rules()  # each label's patterns, joined: an expression that cannot be joined is refused here
    except re.error as exc:
        raise RulesError(f"{path}: a label's patterns cannot be joined into one expression ({exc})") from None
    return book


def _pattern(path: Path, label: str, speaker: str, veto: bool, item, words: dict[str, str]) -> Pattern:
    lines_key = "silences" if veto else "fires"
    known = {"id", "note", "match", lines_key} | (set() if veto else {"quiet", "misfires"})
    if not isinstance(item, dict) or set(item) - known or not _SLUG.fullmatch(str(item.get("id", ""))):
        raise RulesError(f"{path}: {label}: each of its {'vetoes' if veto else 'patterns'} has an id "
                         f"(lower-case letters, digits, _) and {', '.join(sorted(known - {'id'}))}")
    where = f"{path}: {label}.{item['id']}"
    match = item.get("match")
    alternatives = [match] if isinstance(match, str) else match
    if not alternatives or not all(isinstance(a, str) and a for a in alternatives):
        raise RulesError(f"{where}: match is an expression or a list of alternatives")
    source = "|".join(alternatives)
    for name, value in words.items():
        source = source.replace("{" + name + "}", value)
    if (left := re.search(r"\{[A-Z_]+\}", source)) is not None:
        raise RulesError(f"{where}: {left.group(0)} is not one of the words ({', '.join(words) or 'none written'})")
    try:
        regex = re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise RulesError(f"{where}: not a valid expression ({exc})") from None
    if regex.groups:
        raise RulesError(f"{where}: a pattern captures nothing: write (?:...) for its groups")
    if nests := backtracking_nests(regex):
        raise RulesError(f"{where}: could backtrack without end on hostile text ({nests[0]})")
    return Pattern(f"{label}.{item['id']}", label, speaker, veto, regex, _lines(item.get(lines_key, []), f"{where}: {lines_key}"),
                   () if veto else _lines(item.get("quiet", []), f"{where}: quiet"), str(item.get("note", "")),
                   () if veto else _lines(item.get("misfires", []), f"{where}: misfires"))


@functools.cache
def built_in() -> RuleBook:
    """The rules the coach ships (``models/rules.yaml``), loaded once."""
    return load_rules(RULES_FILE)


def __getattr__(name: str):
    if name == "RULES":  # the built-in rules, all on (the benchmarks' name for them)
        return built_in().rules()
    raise AttributeError(name)


def rule_flags(speaker: str, text: str, rules: Iterable[Rule] | None = None) -> bool:
    """True when a phrase rule would flag this line of ``speaker``."""
    return any(r.speaker == speaker and r.find(text) for r in (built_in().rules() if rules is None else rules))


class TriggerDetector:
    """Transcripts in, trigger signals out: one per label per utterance, a rule's or an exemplar's.

    Interims are read too, so a trigger fires as soon as its words are heard, not when the party has
    finished; a label signalled on an interim is not signalled again by the utterance's final.
    ``off``: the ids a playbook switched off (a pattern, a veto, or ``<label>.meaning``).
    """

    def __init__(self, off: Iterable[str] = (), book: RuleBook | None = None) -> None:
        self.off = frozenset(off)
        self.rules = (book or built_in()).rules(self.off)
        self._by_label = {rule.label: rule for rule in self.rules}
        self._fired: dict[str, set[str]] = {}  # labels signalled so far, per open utterance
        self._closed: deque[str] = deque(maxlen=64)  # utterances whose final was read: late interims are stale

    def raised_by(self, event: TranscriptEvent, matches: list[ExemplarMatch] = ()) -> bool:
        """True when this line carries a trigger (a rule of its party's, or an exemplar match that its
        label's veto allows), whether or not it was signalled already on an interim."""
        return bool(self._detect(event, matches))

    def on_transcript(self, event: TranscriptEvent, matches: list[ExemplarMatch] = ()) -> list[SignalEvent]:
        if event.id in self._closed:
            return []
        fired = self._fired.setdefault(event.id, set())
        signals = [s for s in self._detect(event, matches) if s.label not in fired]
        fired.update(s.label for s in signals)
        if event.final:  # the utterance is over
            del self._fired[event.id]
            self._closed.append(event.id)
        return signals

    def _detect(self, event: TranscriptEvent, matches: list[ExemplarMatch]) -> list[SignalEvent]:
        signals = []
        for rule in self.rules:
            if rule.speaker != event.speaker or (found := rule.find(event.text)) is None:
                continue
            match, pattern_id = found
            signals.append(SignalEvent(event.at, rule.label, event.speaker, event.start, event.end, RULE_SCORE,
                                       match.group(0).strip(), pattern_id))
        fired = {s.label for s in signals}
        for m in matches:
            rule_id = f"{m.label}.{MEANING}"
            rule = self._by_label.get(m.label)
            if m.label in fired or rule_id in self.off or (rule is not None and rule.vetoed(event.text)):
                continue
            fired.add(m.label)
            signals.append(SignalEvent(event.at, m.label, event.speaker, event.start, event.end, m.score, m.evidence, rule_id))
        return signals
