"""The playbook (``models/playbook.yaml``) and the prompt policy that turns signals into prompts.

A team edits the playbook: for each signal, the prompt's kind (``stop_sign`` or ``deescalate``),
title, text, priority and cooldown; and under ``signals:``, signals of its own, from phrases, with
no code (``coach/detect/custom.py``); under ``switched_off:``, the ids of built-in rules that misfire
for the team (a pattern of ``models/rules.yaml``, ``<label>.meaning``, or a timing cue). ``coach playbook check`` validates it with readable errors; a
running server picks up an edited playbook and keeps the old one while the new one is invalid.

The policy keeps the sidebar calm: a prompt is not shown again within its cooldown, signals that
arrive together are shown highest priority first, and there is one stop sign at a time, cleared
once the agent stops talking (a new, more urgent stop sign replaces it).
"""

from __future__ import annotations

import difflib
import functools
import itertools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coach.detect.custom import CustomSignal, compile_phrase
from coach.defaults import PLAYBOOK, SIGNALS, TIMING_RULES
from coach.errors import CoachError
from coach.events import PromptClearedEvent, PromptEvent, SignalEvent

DEFAULT_PLAYBOOK = PLAYBOOK
STOP_SIGN_LONGEST = 30.0  # seconds a stop sign stays if the agent never stops talking


class PlaybookError(CoachError):
    """The playbook cannot be used; the message says where and why."""


class PromptRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["stop_sign", "deescalate"]
    title: str = Field(min_length=1, max_length=60)
    text: str = Field(min_length=1, max_length=400)
    priority: int = Field(ge=0, le=1000)
    cooldown: float = Field(ge=0, le=3600)


class SignalRule(BaseModel):
    """A team's own signal (``signals:`` in the playbook)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    speaker: Literal["agent", "customer", "any"]
    kind: Literal["said", "not_said"] = "said"
    phrases: list[str] = Field(default_factory=list, max_length=100)
    examples: list[str] = Field(default_factory=list, max_length=100, description="lines that carry the signal, matched by meaning")
    not_: list[str] = Field(default_factory=list, alias="not", max_length=100, description="near misses that must not fire")
    threshold: float | None = Field(None, ge=0.3, le=0.95, description="similarity to the nearest example that fires (default: calibrated)")
    within: float | None = Field(None, gt=0, le=3600, description="not_said: seconds from the call's start")

    @field_validator("examples", "not_")
    @classmethod
    def _lines(cls, lines: list[str]) -> list[str]:
        for line in lines:
            if not line.strip() or len(line) > 300:
                raise ValueError(f"an example must be a line of 1-300 characters, not {line[:40]!r}")
        return lines

    @field_validator("phrases")
    @classmethod
    def _safe(cls, phrases: list[str]) -> list[str]:
        for phrase in phrases:
            compile_phrase(phrase)  # UnsafePhrase (a ValueError) says which and why
        return phrases

    @model_validator(mode="after")
    def _complete(self) -> "SignalRule":
        if not self.phrases and not self.examples:
            raise ValueError("a signal needs phrases or examples")
        if self.not_ and not self.examples:
            raise ValueError("not examples need examples to be the near misses of")
        if self.kind == "not_said" and (self.examples or not self.phrases):
            raise ValueError("a not_said signal is written with phrases only")
        if self.kind == "not_said" and self.within is None:
            raise ValueError("a not_said signal needs within: the seconds from the call's start by which it must be said")
        if self.kind == "said" and self.within is not None:
            raise ValueError("within is for not_said signals only")
        return self

    def compiled(self, label: str) -> CustomSignal:
        return CustomSignal(label, self.speaker, tuple(compile_phrase(p) for p in self.phrases), self.kind, self.within or 0.0)


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signals: dict[str, SignalRule] = Field(default_factory=dict, max_length=50)
    prompts: dict[str, PromptRule]
    switched_off: list[str] = Field(default_factory=list, max_length=500,
                                    description="built-in rules this team does without: churn_threat.exit_fee, churn_threat.meaning, dead_air.timing")

    @field_validator("switched_off")
    @classmethod
    def _known_rules(cls, ids: list[str]) -> list[str]:
        known = built_in_rule_ids()
        unknown = [i for i in ids if i not in known and i not in retired_rule_ids()]  # a retired id is taken, and does nothing
        if unknown:
            hints = []
            for rule_id in unknown[:5]:
                near = difflib.get_close_matches(str(rule_id), known, n=1)
                hints.append(f"{rule_id!r}" + (f" (did you mean {near[0]}?)" if near else ""))
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise ValueError(f"unknown rule {', '.join(hints)}{more}: `coach playbook check --rules` lists them")
        return ids

    @field_validator("signals")
    @classmethod
    def _own_names(cls, signals: dict[str, SignalRule]) -> dict[str, SignalRule]:
        for label in signals:
            if label in SIGNALS:
                raise ValueError(f"{label!r} is a built-in signal: give the team's own signal another name")
            if not (2 <= len(label) <= 40 and label[0].isascii() and label[0].isalpha() and label.islower()
                    and all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in label)):
                raise ValueError(f"signal name {label!r}: lower-case letters, digits and _ only, starting with a letter (2-40 characters)")
        return signals

    @model_validator(mode="after")
    def _known_signals(self) -> "Playbook":
        known = (*SIGNALS, *self.signals)
        for label in self.prompts:
            if label not in known:
                near = difflib.get_close_matches(label, known, n=1)
                hint = f" (did you mean {near[0]}?)" if near else f" (known: {', '.join(known)})"
                raise ValueError(f"a prompt for unknown signal {label!r}{hint}")
        return self

    def off(self) -> frozenset[str]:
        """The ids of the built-in rules switched off."""
        return frozenset(self.switched_off)

    def custom_signals(self) -> list[CustomSignal]:
        return [rule.compiled(label) for label, rule in self.signals.items()]

    def meaning_inputs(self) -> list[tuple[str, str, list[str], list[str], float | None]]:
        """``(label, speaker, examples, not examples, threshold)`` of the signals written with examples."""
        return [(label, r.speaker, r.examples, r.not_, r.threshold) for label, r in self.signals.items() if r.examples]


def built_in_rule_ids() -> list[str]:
    """Every id a playbook may switch off: the built-in patterns and vetoes, each trigger label's
    meaning, and the timing cues."""
    from coach.detect.triggers import built_in

    return [*built_in().ids(), *TIMING_RULES]


def retired_rule_ids() -> dict[str, str]:
    """Ids of built-in patterns taken out of the rules file, and why: a playbook written before still loads."""
    from coach.detect.triggers import built_in

    return built_in().retired


class DuplicateKey(ValueError):
    pass


def _unique_mapping(loader, node, deep=False):
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise DuplicateKey(f"{key!r} is written twice (line {key_node.start_mark.line + 1}): the second would replace the first")
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


@functools.cache
def _unique_loader():
    """A YAML SafeLoader that refuses a key written twice in one mapping."""
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        pass

    UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
    return UniqueKeys


def load_playbook(path: Path = DEFAULT_PLAYBOOK) -> Playbook:
    import yaml

    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_unique_loader())  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as exc:
        raise PlaybookError(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except DuplicateKey as exc:
        raise PlaybookError(f"{path}: {exc}") from None
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read the playbook ({exc.strerror}); set COACH_PLAYBOOK to its path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlaybookError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    try:
        book = Playbook.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'playbook'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise PlaybookError("\n".join(f"{path}: {problem}" for problem in problems)) from None  # one line each
    from coach.detect.triggers import built_in

    built_in().rules(book.off())  # compiled here, off the event loop, not by the first call that uses it
    return book


class PromptPolicy:
    """Signals in, prompts out: cooldowns, priority, one stop sign at a time."""

    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook
        self._last_shown: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._stop_sign: PromptEvent | None = None
        self._agent_talked = False  # since the stop sign went up

    def on_signals(self, signals: list[SignalEvent]) -> list[PromptEvent | PromptClearedEvent]:
        out: list[PromptEvent | PromptClearedEvent] = []
        rules = [(self.playbook.prompts[s.label], s) for s in signals if s.label in self.playbook.prompts]
        for rule, signal in sorted(rules, key=lambda pair: -pair[0].priority):
            if signal.at - self._last_shown.get(signal.label, float("-inf")) < rule.cooldown:
                continue
            if rule.kind == "stop_sign" and self._stop_sign is not None:
                if rule.priority <= self._stop_sign.priority:
                    continue  # one stop sign at a time
                out.append(self._clear(signal.at))
            prompt = PromptEvent(signal.at, rule.kind, rule.title, rule.text, [signal.label], rule.priority, next(self._ids))
            self._last_shown[signal.label] = signal.at
            if rule.kind == "stop_sign":
                self._stop_sign, self._agent_talked = prompt, False
            out.append(prompt)
        return out

    def on_activity(self, now: float, agent_speaking: bool) -> list[PromptClearedEvent]:
        """The stop sign comes down once the agent has stopped talking (or after a while regardless)."""
        if self._stop_sign is None:
            return []
        self._agent_talked |= agent_speaking
        if (self._agent_talked and not agent_speaking) or now - self._stop_sign.at >= STOP_SIGN_LONGEST:
            return [self._clear(now)]
        return []

    def _clear(self, now: float) -> PromptClearedEvent:
        assert self._stop_sign is not None
        cleared = PromptClearedEvent(now, self._stop_sign.id, self._stop_sign.kind)
        self._stop_sign = None
        return cleared
