"""The quality ladder: live finals give up quality, one rung at a time, before they give up time.

The ladder alone with an injected clock, then the scheduler on each rung with a stand-in model."""

import asyncio
import threading

import numpy as np

from coach.asr.ladder import BATCHED_FINALS, BOUNDED_PIECES, FULL, GREEDY_FINALS, LadderSettings, QualityLadder
from coach.asr.scheduler import AsrScheduler
from coach.asr.transcriber import DecodeOptions, Transcription, quiet_cuts
from coach.events import TranscriptEvent

RATE = 16000


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_ladder_climbs_a_rung_at_a_time_while_finals_wait_and_stops_at_its_top():
    clock = Clock()
    ladder = QualityLadder(LadderSettings(climb_at=0.5, hold=1.5, top=BOUNDED_PIECES), clock)
    assert ladder.observe(0.1) == FULL
    clock.now += 2
    assert ladder.observe(0.8) == 1
    assert ladder.observe(3.0) == 1  # its effect has not had time to show: no second rung at once
    clock.now += 1.0
    assert ladder.observe(3.0) == 1
    for rung in (2, 3, 4, 4, 4):
        clock.now += 1.5
        assert ladder.observe(3.0) == rung
    assert ladder.name == "bounded_pieces" and ladder.at_top and ladder.climbs == 4


def test_the_ladder_gives_rungs_back_only_after_a_calm_spell():
    clock = Clock()
    ladder = QualityLadder(LadderSettings(climb_at=0.5, settle_at=0.2, hold=1.0, recover=6.0), clock)
    for _ in range(3):
        clock.now += 1.0
        ladder.observe(1.0)
    assert ladder.rung == 3
    clock.now += 5.0
    assert ladder.observe(0.05) == 3  # calm from now on
    clock.now += 5.0
    assert ladder.observe(0.3) == 3  # not behind, not calm either: the calm spell starts again
    clock.now += 1.0
    assert ladder.observe(0.0) == 3
    clock.now += 5.9
    assert ladder.observe(0.0) == 3
    clock.now += 0.2
    assert ladder.observe(0.0) == 2  # six calm seconds: one rung back
    clock.now += 6.0
    assert ladder.observe(0.1) == 1
    clock.now += 60.0  # a quiet minute between calls: back to full quality at once
    assert ladder.observe(0.0) == FULL and ladder.descents == 3


def test_a_ladder_with_top_zero_never_degrades():
    clock = Clock()
    ladder = QualityLadder(LadderSettings(top=0), clock)
    for _ in range(5):
        clock.now += 5
        assert ladder.observe(30.0) == FULL


class RecordingTranscriber:
    """Answers at once (or when the gate opens); remembers each model call: its jobs' contexts and options."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gated: bool = False) -> None:
        self.loop = loop
        self.calls: list[tuple[list[str], DecodeOptions]] = []
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def transcribe(self, audio, options, context=""):
        return self.transcribe_batch([(audio, context)], options)[0]

    def transcribe_batch(self, requests, options):
        self.calls.append(([c for _, c in requests], options))
        self.loop.call_soon_threadsafe(self.started.put_nowait, "+".join(c for _, c in requests))
        self.gate.wait()
        return [Transcription(context or f"{audio.size / RATE:.1f}s", -0.2, 0.01, 1.0, 10.0) for audio, context in requests]


def at_rung(rung: int, clock: Clock) -> QualityLadder:
    """A ladder taken to ``rung`` the way a backlog takes it: finals waiting a second, hold after hold."""
    ladder = QualityLadder(LadderSettings(climb_at=0.5, hold=1.0), clock)
    while ladder.rung < rung:
        clock.now += 1.0
        ladder.observe(1.0)
    return ladder


async def until(condition, turns: int = 1000) -> None:
    """Let the loop run until ``condition()`` holds (the tasks have queued their jobs); fail, not hang."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the jobs never queued")


def speech(seconds: float) -> np.ndarray:
    return (0.1 * np.sin(np.arange(int(seconds * RATE)) * 0.3)).astype(np.float32)


def two_pauses() -> np.ndarray:
    """15.8 s of speech with pauses at 5.0-5.2 s and 11.7-11.8 s."""
    return np.concatenate([speech(5.0), np.zeros(3200, np.float32), speech(6.5), np.zeros(1600, np.float32), speech(4.0)])


def final(scheduler: AsrScheduler, clock: Clock, context: str = "", seconds: float = 2) -> asyncio.Task:
    """A final of ``seconds`` of speech, due now, sent to ``scheduler`` in a task of its own."""
    return asyncio.create_task(scheduler.transcribe(speech(seconds), DecodeOptions(), final=True, audio_end=clock.now, context=context))


async def test_a_backlog_of_finals_takes_the_ladder_up_and_a_drained_queue_brings_it_back():
    clock = Clock()
    model = RecordingTranscriber(asyncio.get_running_loop(), gated=True)
    ladder = QualityLadder(LadderSettings(climb_at=0.5, hold=1.0, recover=3.0), clock)
    scheduler = AsrScheduler(model, workers=1, max_batch=1, shed_interims_after=1.0, clock=clock, ladder=ladder)
    try:
        busy = final(scheduler, clock, "busy", seconds=1)
        assert await model.started.get() == "busy"
        assert scheduler.wants_interims
        waiting = []
        for i in range(4):  # a final of another call each second, all behind the busy worker
            clock.now += 1.0
            waiting.append(asyncio.create_task(scheduler.transcribe(speech(1), DecodeOptions(), final=True, audio_end=clock.now, context=f"f{i}")))
            await until(lambda: scheduler.queued >= i + 1)
        assert ladder.rung >= 2 and not scheduler.wants_interims  # interims first, then the beam, given up
        taken = ladder.rung
        model.gate.set()
        results = await asyncio.gather(busy, *waiting)
        assert [r.rung for r in results[1:]] == [taken] * 4
        assert all(options.beam_size == 1 for _, options in model.calls[1:])  # the waiting finals went greedy
        clock.now += 10.0
        await scheduler.transcribe(speech(1), DecodeOptions(), final=True, audio_end=clock.now, context="calm")
        assert ladder.rung == FULL and scheduler.wants_interims
        assert model.calls[-1][1].beam_size == 5
    finally:
        model.gate.set()
        scheduler.close()


async def test_on_full_quality_finals_keep_their_beam_and_say_rung_zero():
    clock = Clock()
    model = RecordingTranscriber(asyncio.get_running_loop())
    scheduler = AsrScheduler(model, workers=1, clock=clock, ladder=QualityLadder(clock=clock))
    try:
        result = await scheduler.transcribe(speech(2), DecodeOptions(beam_size=5), final=True, audio_end=clock.now)
        interim = await scheduler.transcribe(speech(2), DecodeOptions(beam_size=1), final=False, audio_end=clock.now)
        assert result.rung == 0 and model.calls[0][1].beam_size == 5
        assert interim.rung is None  # only finals carry it
        assert scheduler.finals_by_rung[0] == 1
    finally:
        scheduler.close()


async def test_offline_finals_are_never_degraded_however_long_they_wait():
    model = RecordingTranscriber(asyncio.get_running_loop(), gated=True)
    clock = Clock()
    scheduler = AsrScheduler(model, workers=1, clock=clock)  # coach analyze: no ladder
    try:
        busy = asyncio.create_task(scheduler.transcribe(speech(1), DecodeOptions(), final=True, audio_end=0, context="busy"))
        assert await model.started.get() == "busy"
        late = asyncio.create_task(scheduler.transcribe(speech(1), DecodeOptions(), final=True, audio_end=1, context="late"))
        await until(lambda: scheduler.queued >= 1)
        clock.now += 60
        model.gate.set()
        assert (await busy).rung is None and (await late).rung is None and model.calls[1][1] == DecodeOptions()
    finally:
        model.gate.set()
        scheduler.close()


async def test_on_the_batching_rung_a_lone_final_waits_for_company_and_decodes_with_it():
    clock = Clock()
    model = RecordingTranscriber(asyncio.get_running_loop())
    scheduler = AsrScheduler(model, workers=2, max_batch=8, clock=clock, ladder=at_rung(BATCHED_FINALS, clock), batch_wait=0.12)
    try:
        first = final(scheduler, clock, "a")
        await until(lambda: scheduler.queued >= 1)
        assert model.started.empty()  # held: another call's final may be due
        clock.now += 0.05
        second = final(scheduler, clock, "b")
        assert await asyncio.wait_for(model.started.get(), 10) == "a+b"  # one model call for both
        assert [r.text for r in await asyncio.gather(first, second)] == ["a", "b"]
        assert scheduler.held_for_batch == 1 and scheduler.batched_jobs == 2 and scheduler.batches == 1
    finally:
        scheduler.close()


async def test_on_the_batching_rung_a_lone_final_is_never_held_past_its_window():
    clock = Clock()
    model = RecordingTranscriber(asyncio.get_running_loop())
    scheduler = AsrScheduler(model, workers=2, max_batch=8, clock=clock, ladder=at_rung(BATCHED_FINALS, clock), batch_wait=0.12)
    try:
        lone = final(scheduler, clock, "lone")
        await until(lambda: scheduler.queued >= 1)
        assert model.started.empty()
        clock.now += 0.12  # its window is over: the wake-up at its end sends it alone
        assert (await asyncio.wait_for(lone, 10)).text == "lone"
        assert model.calls == [(["lone"], model.calls[0][1])] and scheduler.batches == 1
    finally:
        scheduler.close()


async def test_below_the_batching_rung_a_lone_final_goes_at_once():
    clock = Clock()
    model = RecordingTranscriber(asyncio.get_running_loop(), gated=True)
    scheduler = AsrScheduler(model, workers=2, max_batch=8, clock=clock, ladder=at_rung(GREEDY_FINALS, clock))
    try:
        lone = final(scheduler, clock, "lone")
        assert await asyncio.wait_for(model.started.get(), 10) == "lone"  # nothing advanced the clock: it was not held
        model.gate.set()
        await lone
        assert scheduler.held_for_batch == 0
    finally:
        model.gate.set()
        scheduler.close()


def test_a_long_turn_is_cut_at_its_quiet_moments_into_bounded_pieces():
    audio = two_pauses()
    cuts = quiet_cuts(audio, 8.0)
    bounds = [0, *cuts, audio.size]
    assert all(b - a <= 8 * RATE for a, b in zip(bounds, bounds[1:]))
    assert len(cuts) == 2
    assert 5.0 * RATE <= cuts[0] <= 5.2 * RATE  # inside the first pause, not in a word
    assert 11.7 * RATE <= cuts[1] <= 11.8 * RATE  # inside the second
    assert quiet_cuts(speech(7.9), 8.0) == []


async def test_on_the_top_rung_a_long_final_is_decoded_in_pieces_and_joined_in_order():
    clock = Clock()
    model = RecordingTranscriber(asyncio.get_running_loop())
    scheduler = AsrScheduler(model, workers=1, max_batch=8, clock=clock, ladder=at_rung(BOUNDED_PIECES, clock))
    audio = two_pauses()
    try:
        result = await scheduler.transcribe(audio, DecodeOptions(beam_size=5), final=True, audio_end=clock.now)
        lengths = [float(word[:-1]) for word in result.text.split()]
        # cut in the two pauses (at 5.1 s and 11.75 s), in spoken order, every second decoded once
        assert np.allclose(lengths, [5.1, 6.6, 4.1], atol=0.11), lengths
        # the two pieces queued behind the first were not decoded as one batch: a worker each, in turn
        assert [len(contexts) for contexts, _ in model.calls] == [1, 1, 1]
        assert scheduler.held_for_batch == 0
        assert all(options.beam_size == 1 and not options.retry_loops for _, options in model.calls)
        assert result.rung == BOUNDED_PIECES and scheduler.pieced == 1
        short = final(scheduler, clock, seconds=3)
        await until(lambda: scheduler.queued >= 1)  # a short final is whole (held for company, as on the rung below)
        clock.now += 0.12
        assert (await asyncio.wait_for(short, 10)).text == "3.0s" and scheduler.pieced == 1
    finally:
        scheduler.close()


async def test_a_held_final_does_not_hold_up_the_jobs_behind_it():
    clock = Clock()
    model = RecordingTranscriber(asyncio.get_running_loop())
    scheduler = AsrScheduler(model, workers=2, max_batch=8, clock=clock, ladder=at_rung(BATCHED_FINALS, clock), batch_wait=0.12)
    try:
        held = final(scheduler, clock, "a")
        await until(lambda: scheduler.queued >= 1)
        interim = asyncio.create_task(scheduler.transcribe(speech(2), DecodeOptions(beam_size=1, window_margin=2.0, retry_loops=False),
                                                           final=False, audio_end=clock.now, context="i"))  # as chunks decode: not the final's company
        assert await asyncio.wait_for(model.started.get(), 10) == "i"  # a free worker takes it while the final waits
        await interim
        assert not held.done()
        clock.now += 0.12
        assert (await asyncio.wait_for(held, 10)).text == "a"
    finally:
        scheduler.close()


def test_a_long_turn_cut_near_its_end_leaves_no_sliver():
    audio = np.concatenate([speech(7.98), np.zeros(320, np.float32), speech(0.05)])  # quietest just before 8 s
    cuts = quiet_cuts(audio, 8.0)
    assert cuts and all(b - a >= 2.0 * RATE for a, b in zip([0, *cuts], [*cuts, audio.size]))


def test_a_final_event_says_the_rung_it_was_decoded_on_and_an_offline_one_does_not():
    live = TranscriptEvent(3.0, "customer", "customer-1", 1.0, 2.5, "hello", True, rung=2).to_dict()
    offline = TranscriptEvent(3.0, "customer", "customer-1", 1.0, 2.5, "hello", True).to_dict()
    interim = TranscriptEvent(3.0, "customer", "customer-1", 1.0, 2.5, "hel", False, rung=2).to_dict()
    assert live["rung"] == 2 and "rung" not in offline and "rung" not in interim
