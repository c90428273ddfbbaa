"""Call risk: up with what goes wrong, down as the call recovers, with the reasons."""

from coach.detect.risk import RiskMeter
from coach.events import SignalEvent


def signal(label, at):
    return SignalEvent(at, label, "customer", at - 2, at, 1.0, "evidence")


def test_a_quiet_call_has_no_risk():
    meter = RiskMeter()
    assert meter.on_time(60.0) == [] and meter.score(60.0) == (0, [])


def test_risk_rises_with_each_signal_and_names_the_heaviest_first():
    meter = RiskMeter()
    (first,) = meter.on_signals([signal("repeat_contact", 10.0)])
    (second,) = meter.on_signals([signal("escalation_request", 20.0)])
    assert 0 < first.score < second.score <= 100
    assert second.drivers == ["escalation_request", "repeat_contact"]


def test_risk_is_capped_at_100():
    meter = RiskMeter()
    events = meter.on_signals([signal(label, 5.0) for label in ("abuse", "legal_or_public_threat", "churn_threat", "escalation_request")])
    assert events[-1].score == 100


def test_risk_fades_as_the_call_recovers_and_is_resent_in_steps():
    meter = RiskMeter(half_life=60.0, step=5)
    (up,) = meter.on_signals([signal("escalation_request", 0.0)])
    sent = [e for t in range(1, 301) for e in meter.on_time(float(t))]
    assert sent and all(a.score > b.score for a, b in zip(sent, sent[1:]))  # only ever down
    assert all(abs(a.score - b.score) >= 5 or b.score == 0 for a, b in zip([up, *sent], sent))  # no flood
    assert sent[-1].score - meter.score(300.0)[0] < 5  # the board is never a step behind the truth
