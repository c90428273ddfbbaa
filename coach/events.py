"""Typed events of the analysis stream (``../shared/spec/analysis-output.md``) and their JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Speaker = Literal["agent", "customer", "mixed"]


def _wire(event: Any) -> dict[str, Any]:
    """An event as its JSON object: ``type`` first, times rounded to 10 ms."""
    out = asdict(event)
    for key in ("at", "start", "end"):
        if key in out:
            out[key] = round(out[key], 2)
    return {"type": out.pop("type"), **out}


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    """Words heard from one party. Interims (``final=False``) are replaced by later events of the same ``id``."""

    at: float  # seconds of call audio consumed when emitted
    speaker: Speaker
    id: str  # one utterance of one party, e.g. "customer-3"
    start: float
    end: float
    text: str
    final: bool
    sentiment: float | None = None
    # an interim that is the whole utterance so far, decoded as its final is (not a chunk's greedy
    # words): the trigger heads may read it. Internal: not part of the event stream.
    whole: bool = False
    # live finals: the rung of the quality ladder it was decoded on (coach/asr/ladder.py: 0 full
    # quality, 2 and up greedy); absent offline, where every final is decoded at full quality
    rung: int | None = None

    type: Literal["transcript"] = "transcript"

    def to_dict(self) -> dict[str, Any]:
        out = _wire(self)
        out.pop("whole")
        if not self.final or self.rung is None:
            out.pop("rung")
        if not self.final or self.sentiment is None:
            out.pop("sentiment")
        return out


@dataclass(frozen=True, slots=True)
class SignalEvent:
    """A moment that matters (a label of ``spec/signals.md``), about the speech from ``start`` to ``end``."""

    at: float
    label: str
    speaker: str  # who it is about; "call" for dead air
    start: float
    end: float
    score: float
    evidence: str
    # what fired it: a built-in pattern ("churn_threat.exit_fee", models/rules.yaml), a label's trigger
    # heads ("churn_threat.meaning"), a timing cue ("dead_air.timing"), or a team's own signal
    # ("competitor_mentioned.phrase"); QA's precision is reported per rule, and a playbook can switch
    # a built-in one off
    rule: str | None = None

    type: Literal["signal"] = "signal"

    def to_dict(self) -> dict[str, Any]:
        out = _wire(self)
        out["score"] = round(out["score"], 3)
        if out["rule"] is None:
            out.pop("rule")
        return out


@dataclass(frozen=True, slots=True)
class PromptEvent:
    """What the agent sees: a stop sign or a de-escalation prompt from the playbook."""

    at: float
    kind: str  # "stop_sign" or "deescalate"
    title: str
    text: str
    signals: list[str]
    priority: int
    id: int  # a later prompt_cleared event names it

    type: Literal["prompt"] = "prompt"

    def to_dict(self) -> dict[str, Any]:
        return _wire(self)


@dataclass(frozen=True, slots=True)
class PromptClearedEvent:
    """A prompt no longer applies (the agent stopped talking): take it off the screen."""

    at: float
    id: int
    kind: str

    type: Literal["prompt_cleared"] = "prompt_cleared"

    def to_dict(self) -> dict[str, Any]:
        return _wire(self)


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """The call's risk, 0-100, whenever it changes, with the signals that drive it (heaviest first)."""

    at: float
    score: int
    drivers: list[str]

    type: Literal["risk"] = "risk"

    def to_dict(self) -> dict[str, Any]:
        return _wire(self)


Event = TranscriptEvent | SignalEvent | PromptEvent | PromptClearedEvent | RiskEvent
