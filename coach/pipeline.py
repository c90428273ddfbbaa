"""One call through the stages: per-party audio -> VAD and ASR -> transcript events -> a sink.

``coach analyze`` and the live server run the same :class:`CallPipeline`; only the source that
pushes audio and the sink that takes events differ. In ``lockstep`` mode (recordings) every ASR
job is awaited before more audio is pushed, so ``at`` is the same on any machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from coach.asr.scheduler import AsrScheduler
from coach.asr.streaming import Conversation, PartyTranscriber
from coach.asr.vad import StreamingVad
from coach.audio.frames import SAMPLE_RATE, CallLayout
from coach.background import Background
from coach.config import AsrSettings
from coach.detect.timing import PartyActivity, TimingDetector
from coach.detect.risk import RiskMeter
from coach.detect.sentiment import CallMood
from coach.detect.text import TextAnalyzer
from coach.detect.triggers import TriggerDetector
from coach.detect.custom import CustomSignals, MeaningBank
from coach.events import Event, SignalEvent, TranscriptEvent
from coach.playbook import PromptPolicy
from coach.textguard import MAX_TEXT_CHARS, bounded

T = TypeVar("T")


class CallPipeline:
    def __init__(
        self,
        layout: CallLayout,
        scheduler: AsrScheduler,
        settings: AsrSettings,
        emit: Callable[[Event], None],
        vad_executor: Executor,
        vad_factory: Callable[[], StreamingVad] = StreamingVad,
        policy: PromptPolicy | None = None,
        text: TextAnalyzer | None = None,
        due_offset: float = 0.0,
        meaning: Sequence[MeaningBank] = (),
    ) -> None:
        self.layout = layout
        self.consumed = 0.0  # seconds of call audio taken in
        self._emit = emit
        self._vad_executor = vad_executor
        self.vads = {speaker: vad_factory() for speaker, _ in layout.parties}
        self.conversation = Conversation(settings.context_words)  # both parties' last words: context for the next
        self.parties = {
            speaker: PartyTranscriber(speaker, scheduler, settings, self._transcribed, self._clock, self.conversation, due_offset)
            for speaker, _ in layout.parties
        }
        # timing cues need to know who is who: not on a mono (mixed) recording
        self.timing = TimingDetector() if {"agent", "customer"} <= self.parties.keys() else None
        # built-in rules the playbook switched off: patterns and vetoes are left out of the detector,
        # which also drops a label's meaning; a timing cue is dropped here as it fires
        self.off = policy.playbook.off() if policy is not None else frozenset()
        self.triggers = TriggerDetector(self.off)
        # the team's own signals, from the playbook (coach/detect/custom.py)
        self.custom = CustomSignals(policy.playbook.custom_signals()) if policy is not None else None
        self.meaning = tuple(meaning) if text is not None and self.custom is not None else ()  # its signals' examples, embedded
        self._own = {bank.label for bank in self.meaning}
        self.risk = RiskMeter()
        self.policy = policy
        self.text = text  # sentiment and trigger similarity; None: phrase rules only
        self.mood = CallMood(text.mood_carry if text is not None else 0.0)
        self._reading: asyncio.Task | None = None  # the last final being read: finals go out in order
        self.background = Background()  # finals being read by the text models

    def _clock(self) -> float:
        return self.consumed

    @property
    def caught_up_to(self) -> float:
        """Call audio through the pipeline: taken in, and every utterance that ended before it final."""
        due = [since for party in self.parties.values() if (since := party.final_due_since) is not None]
        return min([self.consumed, *due])

    async def push(self, block: np.ndarray) -> None:
        """Take ``(samples, channels)`` float32 audio at 16 kHz, in call order."""
        self._raise_failure()
        self.consumed += block.shape[0] / SAMPLE_RATE
        audio = self.layout.split(block)
        loop = asyncio.get_running_loop()
        speech = await loop.run_in_executor(self._vad_executor, self._voice_activity, audio)  # one hop for all parties
        for speaker, samples in audio.items():
            self.parties[speaker].take(samples, speech[speaker])
        for risk in self.risk.on_time(self.consumed):
            self._emit(risk)
        if self.custom is not None and self.custom.pending:
            self._signalled(self.custom.tick(self.consumed, self._speech_waiting()))
        if self.timing:
            agent = self._activity("agent")
            self._signalled(self.timing.update(self.consumed, agent, self._activity("customer")))
            if self.policy:
                for cleared in self.policy.on_activity(self.consumed, agent.speaking):
                    self._emit(cleared)
        elif self.policy:  # a mono call: a stop sign (of a playbook signal) comes down when the line goes quiet
            speaking = any(party.endpointer.speaking for party in self.parties.values())
            for cleared in self.policy.on_activity(self.consumed, speaking):
                self._emit(cleared)

    def _signalled(self, signals: list[SignalEvent]) -> None:
        if self.off:
            signals = [s for s in signals if s.rule not in self.off]
        for signal in signals:
            self._emit(signal)
        if self.policy and signals:
            for prompt in self.policy.on_signals(signals):
                self._emit(prompt)
        for risk in self.risk.on_signals(signals):
            self._emit(risk)

    def _activity(self, speaker: str) -> PartyActivity:
        ep = self.parties[speaker].endpointer
        return PartyActivity(ep.speaking, ep.utterance_start, ep.last_speech_end)

    def _transcribed(self, event: TranscriptEvent) -> None:
        if len(event.text) > MAX_TEXT_CHARS:  # no speech is this long: a stand-in or a hostile model output
            event = replace(event, text=bounded(event.text))
        if not event.final:
            self._emit(event)
            # the phrase rules read interims too, so a prompt need not wait for the final; similarity
            # (the trigger heads) reads only the whole utterance decoded at a pause, as its final will
            # be: on a chunk's greedy, partial sentence it raised false alarms
            self._signalled(self.triggers.on_transcript(event))
            if self.custom is not None:
                self._signalled(self.custom.on_transcript(event))
            if event.whole and self.text is not None:
                self.background.spawn(self._read_whole(event))
            return
        if self.custom is not None:
            self.custom.heard_final(event)  # a compliance phrase counts from now, not once the text models have read it
        if self.text is None or not event.text:
            self._final(event, [])
        else:  # the final goes out with its sentiment, read off the loop in the text model's executor
            self._reading = self.background.spawn(self._read_final(event, self._reading))

    def _raise_failure(self) -> None:
        """A model call that failed in the background fails the call here, in its own task."""
        stages = [self.background, *(party.background for party in self.parties.values())]
        failure = next((stage.failure for stage in stages if stage.failure is not None), None)
        if failure is not None:
            raise failure

    async def _read_whole(self, event: TranscriptEvent) -> None:
        reading = await self.text.read(event.speaker, event.text, self.meaning)
        built_in, own = self._split(reading.matches)
        if built_in:  # a label found here is not raised again by the final
            self._signalled(self.triggers.on_transcript(replace(event, at=self.consumed), built_in))
        if own and self.custom is not None:
            self._signalled(self.custom.on_transcript(replace(event, at=self.consumed), own))

    async def _read_final(self, event: TranscriptEvent, before: asyncio.Task | None) -> None:
        reading = await self.text.read(event.speaker, event.text, self.meaning)
        if before is not None:
            await asyncio.wait({before})
        built_in, _ = self._split(reading.matches)
        dissatisfied = event.speaker == "customer" and self.triggers.raised_by(event, built_in)
        sentiment = None if reading.sentiment is None else self.mood.update(event.speaker, reading.sentiment, dissatisfied)
        self._final(replace(event, at=self.consumed, sentiment=sentiment), reading.matches)

    def _split(self, matches) -> tuple[list, list]:
        """Matches by meaning: of the built-in trigger heads, and of the playbook's own signals."""
        return [m for m in matches if m.label not in self._own], [m for m in matches if m.label in self._own]

    def _final(self, event: TranscriptEvent, matches) -> None:
        self._emit(event)
        if self.timing:
            self.timing.heard(event.speaker, event.text, event.at)
        built_in, own = self._split(matches)
        self._signalled(self.triggers.on_transcript(event, built_in))
        if self.custom is not None:
            self._signalled(self.custom.on_transcript(event, own))
        for risk in self.risk.on_sentiment(event):
            self._emit(risk)

    def _speech_waiting(self) -> float | None:
        """Where the earliest speech not yet final began (an open utterance, or one waiting for its final)."""
        starts = [party.endpointer.utterance_start for party in self.parties.values() if party.endpointer.utterance_start is not None]
        starts += [since for party in self.parties.values() if (since := party.final_due_from) is not None]
        return min(starts, default=None)

    def _voice_activity(self, audio: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {speaker: self.vads[speaker].feed(samples) for speaker, samples in audio.items()}

    def pending(self) -> list[asyncio.Task]:
        """Transcriptions and readings asked for and not yet emitted."""
        return [t for party in self.parties.values() for t in party.pending] + list(self.background.tasks)

    async def drain(self) -> None:
        """Wait until every transcription asked for so far has been emitted."""
        while pending := [t for party in self.parties.values() for t in party.pending] + list(self.background.tasks):
            done, _ = await asyncio.wait(pending)  # a cancelled interim is fine; a failed job is not
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()
        self._raise_failure()

    async def finish(self) -> None:
        """The call ended: finalise open utterances and wait for every result."""
        for party in self.parties.values():
            party.finish()
        await self.drain()
        if self.custom is not None and self.custom.pending:
            self._signalled(self.custom.close(self.consumed))

    async def aclose(self) -> None:
        await asyncio.gather(*(party.aclose() for party in self.parties.values()))
        await self.background.cancel()


async def iterate_in_thread(blocks: Iterator[T]) -> AsyncIterator[T]:
    """Pull a blocking iterator (file decoding) from a worker thread, one item at a time."""
    done = object()
    while (item := await asyncio.to_thread(next, blocks, done)) is not done:
        yield item  # type: ignore[misc]


async def analyze_recording(
    path: Path,
    layout: CallLayout,
    scheduler: AsrScheduler,
    settings: AsrSettings,
    emit: Callable[[Event], None],
    on_progress: Callable[[float], None] | None = None,
    frame_seconds: float = 0.096,
    policy: PromptPolicy | None = None,
    text: TextAnalyzer | None = None,
    on_audio: Callable[[np.ndarray], None] | None = None,
) -> float:
    """Run a recording through a :class:`CallPipeline` frame by frame, as if live, in lockstep
    with the ASR. ``on_audio`` sees every block of audio (16 kHz) as it is read. Returns the
    seconds of audio consumed."""
    from coach.audio.files import read_blocks

    async def blocks():
        async for block in iterate_in_thread(read_blocks(path)):
            if on_audio is not None:
                on_audio(block)
            yield block

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad") as vad_executor:
        meaning = await text.banks(policy.playbook.meaning_inputs()) if text is not None and policy is not None else ()
        pipeline = CallPipeline(layout, scheduler, settings, emit, vad_executor, policy=policy, text=text, meaning=meaning)
        await feed_in_lockstep(pipeline, blocks(), on_progress, frame_seconds)
    return pipeline.consumed


async def feed_in_lockstep(
    pipeline: CallPipeline,
    blocks: AsyncIterator[np.ndarray],
    on_progress: Callable[[float], None] | None = None,
    frame_seconds: float = 0.096,
) -> None:
    """Push blocks frame by frame, waiting for every transcription before the next frame, then end the call."""
    frame = int(frame_seconds * SAMPLE_RATE)
    try:
        async for block in blocks:
            for i in range(0, block.shape[0], frame):
                await pipeline.push(block[i : i + frame])
                await pipeline.drain()
            if on_progress:
                on_progress(pipeline.consumed)
        await pipeline.finish()
    finally:
        await pipeline.aclose()
