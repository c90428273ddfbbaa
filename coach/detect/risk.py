"""Call risk, 0-100: what a team lead sorts the live board by.

Each signal adds its weight; the weight fades with a half-life of ``half_life`` seconds, so a call
that recovers drifts back down. The signals still weighing most are reported as the drivers.
Weights follow the field: what makes a supervisor listen in (legal threats, abuse, a request for a
manager, a customer about to leave, an agent denying a manager exists) weighs most. A customer
segment heard as clearly negative adds weight too (driver ``negative_sentiment``), in proportion
to how negative it is, so a call that sours without a trigger phrase still climbs the board.
"""

from __future__ import annotations

from dataclasses import dataclass

from coach.events import RiskEvent, SignalEvent, TranscriptEvent

WEIGHTS = {
    "legal_or_public_threat": 35, "abuse": 35, "escalation_request": 30, "no_manager_lie": 30,
    "churn_threat": 30, "not_listening": 20, "dismissive_phrase": 15, "blame_language": 15,
    "over_explaining": 15, "repeat_contact": 12, "interruption": 10, "dead_air": 8,
}
NEGATIVE_SENTIMENT = "negative_sentiment"
SENTIMENT_WEIGHT = 15  # a customer segment at sentiment -1
SENTIMENT_FLOOR = -0.3  # milder than this adds nothing


@dataclass
class _Weight:
    label: str
    at: float
    weight: float


class RiskMeter:
    def __init__(self, half_life: float = 120.0, step: int = 5) -> None:
        self.half_life = half_life
        self.step = step  # a fading score is re-sent when it has moved this much
        self._weights: list[_Weight] = []
        self._sent = 0

    def score(self, now: float) -> tuple[int, list[str]]:
        live = [(w.label, w.weight * 0.5 ** ((now - w.at) / self.half_life)) for w in self._weights]
        total = min(100.0, sum(value for _, value in live))
        drivers: dict[str, float] = {}
        for label, value in live:
            drivers[label] = drivers.get(label, 0.0) + value
        ranked = [label for label, value in sorted(drivers.items(), key=lambda kv: -kv[1]) if value >= 1.0]
        return round(total), ranked

    def on_signals(self, signals: list[SignalEvent]) -> list[RiskEvent]:
        added = [s for s in signals if s.label in WEIGHTS]
        if not added:
            return []
        for s in added:
            self._weights.append(_Weight(s.label, s.at, WEIGHTS[s.label] * s.score))
        return self._send(added[-1].at, force=True)

    def on_sentiment(self, event: TranscriptEvent) -> list[RiskEvent]:
        """A final customer segment with its sentiment: clearly negative ones add to the risk."""
        if event.speaker != "customer" or event.sentiment is None or event.sentiment >= SENTIMENT_FLOOR:
            return []
        weight = SENTIMENT_WEIGHT * (SENTIMENT_FLOOR - event.sentiment) / (1 + SENTIMENT_FLOOR)
        self._weights.append(_Weight(NEGATIVE_SENTIMENT, event.at, weight))
        return self._send(event.at)

    def on_time(self, now: float) -> list[RiskEvent]:
        """As the call goes on, the score fades; send it when it has moved by ``step``."""
        if not self._weights:
            return []
        self._weights = [w for w in self._weights if now - w.at < 10 * self.half_life]  # faded to nothing
        return self._send(now)

    def _send(self, now: float, force: bool = False) -> list[RiskEvent]:
        score, drivers = self.score(now)
        if score == self._sent or (not force and abs(score - self._sent) < self.step and score != 0):
            return []
        self._sent = score
        return [RiskEvent(now, score, drivers)]
