"""Utterances and chunks from voice-activity timelines (32 ms windows of speech probability)."""

import pytest

from coach.asr.endpointer import Endpointer, EndpointSettings, SpeechEnded, SpeechHalted, SpeechPaused, SpeechStarted
from coach.asr.vad import WINDOW_SECONDS


def timeline(*spans: tuple[float, float]) -> list[float]:
    """(probability, seconds) spans -> one probability per 32 ms window."""
    out: list[float] = []
    for p, seconds in spans:
        out += [p] * round(seconds / WINDOW_SECONDS)
    return out


def run(probs, **settings):
    ep = Endpointer(EndpointSettings(**settings))
    events = []
    for i, p in enumerate(probs):
        for e in ep.update([p]):
            events.append(((i + 1) * WINDOW_SECONDS, e))
    return events


def test_one_utterance_opens_after_min_speech_and_closes_after_min_silence():
    events = run(timeline((0, 1.0), (0.9, 2.0), (0, 1.0)), min_silence=0.5)
    (t_open, started), (t_close, ended) = [(t, e) for t, e in events if not isinstance(e, SpeechPaused)]
    assert isinstance(started, SpeechStarted) and started.start == pytest.approx(1.0, abs=0.04)
    assert t_open == pytest.approx(1.25, abs=0.05)  # confirmed after min_speech
    assert isinstance(ended, SpeechEnded) and ended.end == pytest.approx(3.0, abs=0.04)
    assert t_close == pytest.approx(3.5, abs=0.05)  # announced min_silence after the speech ended
    assert not ended.cut


def test_a_click_shorter_than_min_speech_is_not_an_utterance():
    assert run(timeline((0, 1.0), (0.9, 0.1), (0, 2.0))) == []


def test_a_dip_shorter_than_min_silence_keeps_the_utterance_open():
    events = run(timeline((0.9, 1.0), (0.1, 0.3), (0.9, 1.0), (0, 1.0)), min_silence=0.5)
    utterances = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert len(utterances) == 1 and utterances[0].end == pytest.approx(2.3, abs=0.04)


def test_hysteresis_keeps_speech_open_between_the_two_thresholds():
    events = run(timeline((0.9, 1.0), (0.4, 1.0), (0.0, 1.0)), threshold=0.5, min_silence=0.5)
    ended = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert ended[0].end == pytest.approx(2.0, abs=0.04)  # 0.4 >= 0.5 - 0.15 counts as speech going on


def test_a_short_word_wavering_about_the_threshold_is_an_utterance():
    # a quiet "hi": 0.1 s over the threshold, a dip just under it, 0.1 s over again, 0.1 s trailing off
    hi = timeline((0.0, 1.0), (0.66, 0.1), (0.45, 0.03), (0.62, 0.1), (0.4, 0.1), (0.0, 1.0))
    ended = [e for _, e in run(hi, threshold=0.5, min_speech=0.25, min_silence=0.5) if isinstance(e, SpeechEnded)]
    assert len(ended) == 1 and ended[0].start == pytest.approx(1.0, abs=0.04)
    # the same under the off threshold is noise, not speech
    murmur = timeline((0.0, 1.0), (0.66, 0.1), (0.2, 0.03), (0.62, 0.1), (0.2, 0.1), (0.0, 1.0))
    assert run(murmur, threshold=0.5, min_speech=0.25, min_silence=0.5) == []


def test_chunks_are_cut_at_short_pauses_once_long_enough():
    probs = timeline((0.9, 1.0), (0.0, 0.2), (0.9, 1.0), (0.0, 0.2), (0.9, 1.0), (0, 1.0))
    events = run(probs, min_chunk=1.5, chunk_pause=0.15, min_silence=0.5)
    paused = [e for _, e in events if isinstance(e, SpeechPaused)]
    # the first pause comes after only 1 s of chunk: no cut; the second after 2.2 s: cut in its middle
    assert paused[0].start == pytest.approx(0.0, abs=0.04) and paused[0].end == pytest.approx(2.28, abs=0.04)
    ended = next(e for _, e in events if isinstance(e, SpeechEnded))
    assert len(paused) == 1 and ended.end > paused[0].end  # the rest (1 s) is too short for another chunk


def test_speech_without_pauses_is_chunked_at_max_chunk():
    events = run(timeline((0.9, 10.0), (0, 1.0)), max_chunk=4.0, min_chunk=1.5)
    cuts = [e for _, e in events if isinstance(e, SpeechPaused)]
    assert len(cuts) >= 2
    assert all(c.end - c.start <= 4.0 + 1e-6 for c in cuts)
    assert all(a.end == b.start for a, b in zip(cuts, cuts[1:]))  # chunks meet: no audio twice, none lost


def test_run_on_utterance_is_cut_at_the_first_pause_after_max_utterance():
    probs = timeline((0.9, 6.0), (0.0, 0.2), (0.9, 6.0), (0.0, 0.2), (0.9, 3.0), (0, 1.0))
    events = run(probs, max_utterance=10.0, min_silence=0.5)
    ended = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert ended[0].cut and ended[0].end == pytest.approx(12.2, abs=0.05)
    assert not ended[-1].cut and ended[-1].end == pytest.approx(15.4, abs=0.05)


def test_hard_max_cuts_even_without_a_pause():
    events = run(timeline((0.9, 30.0), (0, 1.0)), max_utterance=15.0, hard_max_utterance=20.0)
    ended = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert ended[0].cut and ended[0].end - ended[0].start == pytest.approx(20.0, abs=0.05)


def test_a_short_pause_announces_a_halt_once_before_the_utterance_ends():
    probs = timeline((0.9, 1.0), (0.0, 0.5), (0.9, 1.0), (0.0, 1.0))
    events = run(probs, early_pause=0.4, min_silence=0.7)
    halts = [(t, e) for t, e in events if isinstance(e, SpeechHalted)]
    # one halt per pause: at the 0.5 s dip (the party went on) and at the end (the party had finished)
    assert [round(e.end, 1) for _, e in halts] == [1.0, 2.5]
    assert [round(t - e.end, 2) for t, e in halts] == [pytest.approx(0.4, abs=0.04)] * 2
    ended = [(t, e) for t, e in events if isinstance(e, SpeechEnded)]
    assert len(ended) == 1 and ended[0][1].end == halts[-1][1].end and ended[0][0] > halts[-1][0]


def test_no_halt_when_the_early_pause_is_not_shorter_than_the_endpoint():
    events = run(timeline((0.9, 1.0), (0.0, 1.0)), early_pause=0.7, min_silence=0.7)
    assert not any(isinstance(e, SpeechHalted) for _, e in events)
