"""What a call amounts to so far, in one place: the board's line (``/ws/board`` in live-api.md) and
what its stored row says (risk, every label, prompts, duration).

It is counted from the call's messages as they go out (redacted, as the readers and the store get
them): the live call keeps one for its board line and hands it to its recorder for the store; ``coach
analyze --store`` keeps one the same way; a call that only the database knows (sealed by another
node of a cluster) gets one from its stored row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coach.bus import Message

RECENT_SIGNALS = 5  # labels shown per call on the board


@dataclass
class CallSummary:
    call_id: str
    agent_id: str | None
    started_at: float
    state: str = "live"  # "live", "ended" or "interrupted"
    risk: int = 0
    labels: list[str] = field(default_factory=list)  # every signal's label, in order of first appearance
    recent: list[str] = field(default_factory=list)  # the last RECENT_SIGNALS signals' labels
    prompts: int = 0
    prompt: str | None = None  # the last prompt's title
    duration: float = 0.0  # seconds of call audio read so far

    def take(self, message: Message) -> bool:
        """Count one outgoing message in: True if the board's line changed."""
        if "at" in message:
            self.duration = max(self.duration, float(message["at"]))
        kind = message.get("type")
        if kind == "signal":
            if message["label"] not in self.labels:
                self.labels.append(message["label"])
            self.recent = (self.recent + [message["label"]])[-RECENT_SIGNALS:]
        elif kind == "prompt":
            self.prompts += 1
            self.prompt = message.get("title")
        elif kind == "risk":
            self.risk = int(message["score"])
        else:
            return False
        return True

    def board(self) -> Message:
        """The board's line for the call."""
        return {"type": "call", "call_id": self.call_id, "agent_id": self.agent_id, "state": self.state, "risk": self.risk,
                "started_at": round(self.started_at, 3), "signals": list(self.recent), "prompt": self.prompt}

    def row(self) -> dict[str, Any]:
        """What the store's row of the call is brought up to."""
        return {"risk": self.risk, "labels": list(self.labels), "prompts": self.prompts, "duration": self.duration}

    @classmethod
    def of(cls, record) -> CallSummary:
        """A stored call's (:class:`coach.store.CallRecord`): its last prompt is not kept."""
        return cls(record.call_id, record.agent_id, record.started_at, record.state, record.risk, list(record.labels),
                   record.labels[-RECENT_SIGNALS:], record.prompts, None, record.duration)
