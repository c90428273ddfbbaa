"""Timing cues from voice activity, emitted live: over-explaining, interruption, dead air.

A coach that waits for the transcript of a 40-second monologue has already missed it, so these
read only who is speaking when (the parties' endpointers), frame by frame:

- ``over_explaining``: the agent has held the floor for ``monologue`` seconds without the customer
  saying anything (pauses shorter than ``floor_gap`` do not end the agent's turn); emitted once per
  monologue, while the agent is still talking.
- ``interruption``: the agent starts speaking while the customer is, and both go on for at least
  ``overlap`` seconds (a brief "mm-hm" is not one).
- ``dead_air``: nobody has spoken for ``dead_air`` seconds, and the agent did not announce a hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from coach.events import SignalEvent

HOLD_NOTICE = re.compile(
    r"\b(on (a )?(brief |short |quick )?hold|hold (on|the line)|bear with me|(one|a|just a) (moment|minute|second|sec)"
    r"|give me (a|one) (moment|minute|second|sec)|while i (check|look|pull|find))\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TimingSettings:
    monologue: float = 30.0
    floor_gap: float = 3.0
    overlap: float = 1.0
    dead_air: float = 10.0
    # Silero marks the end of speech before the voice has faded: 0.28 s early at the median, 0.45 s
    # at p90 on the scripted calls (finals' ends against the scripts' turn ends). Silence counts from
    # the end of speech plus this, so "10 s of silence" is 10 s.
    speech_tail: float = 0.5
    hold_grace: float = 90.0  # a hold notice covers the silence that follows it for this long


@dataclass
class PartyActivity:
    """What the timing detector needs of one party at a moment: taken from its endpointer."""

    speaking: bool
    utterance_start: float | None
    last_speech_end: float  # end of the last 32 ms window heard as speech


class TimingDetector:
    def __init__(self, settings: TimingSettings = TimingSettings()) -> None:
        self.s = settings
        self._floor_start: float | None = None  # when the agent's current turn began
        self._floor_flagged = False
        self._interrupt_checked: float | None = None  # agent utterance start already judged
        self._silence_flagged_at: float | None = None
        self._hold_until = -1.0

    def heard(self, speaker: str, text: str, at: float) -> None:
        """A final transcript: an agent's hold notice excuses the silence after it."""
        if speaker == "agent" and HOLD_NOTICE.search(text):
            self._hold_until = at + self.s.hold_grace

    def excuse(self, until: float) -> None:
        """Silence up to call time ``until`` is not dead air, nor the ``dead_air`` seconds after it
        (the stream was paused: the customer gave card details on a secure line)."""
        self._hold_until = max(self._hold_until, until + self.s.dead_air)

    def update(self, now: float, agent: PartyActivity, customer: PartyActivity) -> list[SignalEvent]:
        return [
            *self._over_explaining(now, agent, customer),
            *self._interruption(now, agent, customer),
            *self._dead_air(now, agent, customer),
        ]

    def _over_explaining(self, now: float, agent: PartyActivity, customer: PartyActivity) -> list[SignalEvent]:
        customer_active = customer.speaking or (
            self._floor_start is not None and customer.last_speech_end > self._floor_start
        )
        if customer_active or (not agent.speaking and now - agent.last_speech_end >= self.s.floor_gap):
            self._floor_start, self._floor_flagged = None, False  # the agent's turn is over
        if agent.speaking and self._floor_start is None and not customer.speaking:
            self._floor_start = agent.utterance_start
        if self._floor_start is None or self._floor_flagged or not agent.speaking:
            return []
        held = now - self._floor_start
        if held < self.s.monologue:
            return []
        self._floor_flagged = True
        return [SignalEvent(now, "over_explaining", "agent", self._floor_start, now, min(1.0, held / (2 * self.s.monologue) + 0.5),
                            f"agent has talked for {held:.0f} s without the customer speaking", "over_explaining.timing")]

    def _interruption(self, now: float, agent: PartyActivity, customer: PartyActivity) -> list[SignalEvent]:
        start = agent.utterance_start
        if not agent.speaking or start is None or start == self._interrupt_checked:
            return []
        customer_began = customer.utterance_start
        talked_over = customer.speaking and customer_began is not None and customer_began < start
        if not talked_over:
            self._interrupt_checked = start  # the customer was not speaking when the agent began
            return []
        overlap = min(customer.last_speech_end, agent.last_speech_end) - start
        if overlap < self.s.overlap:
            if now - start > self.s.overlap + 1.0:
                self._interrupt_checked = start  # the customer stopped soon enough: a backchannel
            return []
        self._interrupt_checked = start
        return [SignalEvent(now, "interruption", "agent", start, now, min(1.0, 0.5 + overlap / 4),
                            f"agent started talking over the customer ({overlap:.1f} s of overlap)", "interruption.timing")]

    def _dead_air(self, now: float, agent: PartyActivity, customer: PartyActivity) -> list[SignalEvent]:
        if agent.speaking or customer.speaking:
            self._silence_flagged_at = None
            return []
        last_voice = max(agent.last_speech_end, customer.last_speech_end)
        if last_voice == 0.0 or self._silence_flagged_at == last_voice:
            return []  # nobody has spoken yet (ringing, a menu), or this silence was flagged already
        since = last_voice + self.s.speech_tail
        if now - since < self.s.dead_air:
            return []
        self._silence_flagged_at = last_voice
        if now <= self._hold_until:
            return []  # the agent said they were putting the customer on hold
        return [SignalEvent(now, "dead_air", "call", since, now, 0.9, f"nobody has spoken for {now - since:.0f} s", "dead_air.timing")]
