"""The playbook (``models/playbook.yaml``) and the prompt policy that turns signals into prompts.

A team edits the playbook: for each signal, the prompt's kind (``stop_sign`` or ``deescalate``),
title, text, priority and cooldown. ``coach playbook check`` validates it with readable errors.

The policy keeps the sidebar calm: a prompt is not shown again within its cooldown, signals that
arrive together are shown highest priority first, and there is one stop sign at a time, cleared
once the agent stops talking (a new, more urgent stop sign replaces it).
"""

from __future__ import annotations

import difflib
import itertools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from coach.errors import CoachError
from coach.events import PromptClearedEvent, PromptEvent, SignalEvent

SIGNALS = (
    "escalation_request", "churn_threat", "repeat_contact", "abuse", "legal_or_public_threat", "not_listening",
    "no_manager_lie", "dismissive_phrase", "blame_language", "over_explaining", "interruption", "dead_air",
)
DEFAULT_PLAYBOOK = Path(__file__).resolve().parent.parent / "models" / "playbook.yaml"
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


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompts: dict[str, PromptRule]

    @field_validator("prompts")
    @classmethod
    def _known_signals(cls, prompts: dict[str, PromptRule]) -> dict[str, PromptRule]:
        for label in prompts:
            if label not in SIGNALS:
                near = difflib.get_close_matches(label, SIGNALS, n=1)
                hint = f" (did you mean {near[0]}?)" if near else f" (known: {', '.join(SIGNALS)})"
                raise ValueError(f"unknown signal {label!r}{hint}")
        return prompts


def load_playbook(path: Path = DEFAULT_PLAYBOOK) -> Playbook:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read the playbook ({exc.strerror}); set COACH_PLAYBOOK to its path") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlaybookError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    try:
        return Playbook.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise PlaybookError(f"{path}: " + "; ".join(problems)) from None


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
