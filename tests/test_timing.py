"""Timing cues on synthetic voice-activity timelines: who speaks when, nothing else."""

import pytest

from coach.asr.endpointer import Endpointer, EndpointSettings
from coach.asr.vad import WINDOW_SECONDS
from coach.detect.timing import PartyActivity, TimingDetector


def run(agent_spans, customer_spans, seconds, said=()):
    """Speech spans (start, end) per party -> the signals the detector emits, in order.
    ``said``: (at, speaker, text) finals to hand to the detector as the call goes."""
    eps = {"agent": Endpointer(EndpointSettings(min_silence=0.7)), "customer": Endpointer(EndpointSettings(min_silence=0.7))}
    spans = {"agent": agent_spans, "customer": customer_spans}
    detector, signals, pending = TimingDetector(), [], sorted(said)
    for i in range(int(seconds / WINDOW_SECONDS)):
        t = (i + 0.5) * WINDOW_SECONDS
        now = (i + 1) * WINDOW_SECONDS
        for who, ep in eps.items():
            ep.update([0.9 if any(a <= t < b for a, b in spans[who]) else 0.05])
        while pending and pending[0][0] <= now:
            at, who, text = pending.pop(0)
            detector.heard(who, text, at)
        act = {w: PartyActivity(e.speaking, e.utterance_start, e.last_speech_end) for w, e in eps.items()}
        signals += detector.update(now, act["agent"], act["customer"])
    return signals


def labels(signals):
    return [s.label for s in signals]


def test_a_long_agent_monologue_is_flagged_once_while_the_agent_is_still_talking():
    # the agent talks from 5 s to 50 s with short breaths; the customer is silent
    agent = [(5 + 4 * k, 5 + 4 * k + 3.6) for k in range(11)]
    signals = run(agent, [(0.5, 4.0)], 55)
    (s,) = [x for x in signals if x.label == "over_explaining"]
    assert s.speaker == "agent" and s.at == pytest.approx(35.0, abs=0.5)  # 30 s into the turn
    assert s.at < 50  # on screen while the agent still talks


def test_a_customer_reply_resets_the_monologue():
    agent = [(5, 25), (28, 50)]  # 20 s, the customer answers, then 22 s more: never 30 s alone
    assert "over_explaining" not in labels(run(agent, [(25.5, 27.5)], 55))


def test_a_short_complete_answer_is_not_over_explaining():
    assert labels(run([(5, 15)], [(1, 4), (16, 20)], 25)) == []


def test_talking_over_the_customer_for_more_than_a_second_is_an_interruption():
    signals = run([(8.0, 13.0)], [(2.0, 10.0)], 15)  # 2 s of overlap at the start of the agent's turn
    (s,) = signals
    assert (s.label, s.speaker) == ("interruption", "agent")
    assert s.start == pytest.approx(8.0, abs=0.05) and s.at == pytest.approx(9.0, abs=0.3)


def test_a_backchannel_is_not_an_interruption():
    assert labels(run([(6.0, 6.4), (11, 14)], [(2.0, 10.0)], 15)) == []  # "mm-hm" in the middle


def test_answering_after_the_customer_finishes_is_not_an_interruption():
    assert labels(run([(10.5, 14.0)], [(2.0, 10.0)], 15)) == []


def test_ten_seconds_of_silence_is_dead_air_while_it_lasts():
    signals = run([(1, 5)], [(6, 9), (25, 27)], 30)
    (s,) = signals
    assert s.label == "dead_air" and s.at == pytest.approx(19.5, abs=0.1) and s.at < 25  # 10 s after the voice faded


def test_silence_after_a_hold_notice_is_not_dead_air():
    said = [(5.8, "agent", "Let me put you on a brief hold while I pull up your record.")]
    assert labels(run([(1, 5)], [(25, 27)], 30, said)) == []


def test_a_hold_notice_from_the_customer_does_not_excuse_the_agent():
    said = [(5.8, "customer", "Hold on, I'm not finished")]
    assert labels(run([(1, 5)], [(25, 27)], 30, said)) == ["dead_air"]
