"""Typed events of the analysis stream (``../shared/spec/analysis-output.md``) and their JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Speaker = Literal["agent", "customer", "mixed"]


def _round(value: float) -> float:
    return round(value, 2)


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

    type: Literal["transcript"] = "transcript"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("at", "start", "end"):
            out[key] = _round(out[key])
        if not self.final or self.sentiment is None:
            out.pop("sentiment")
        return {"type": out.pop("type"), **out}


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

    type: Literal["signal"] = "signal"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("at", "start", "end"):
            out[key] = _round(out[key])
        out["score"] = round(out["score"], 3)
        return {"type": out.pop("type"), **out}


Event = TranscriptEvent | SignalEvent
