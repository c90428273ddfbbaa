"""One party's live transcript: voice activity -> utterances -> interim and final transcript events.

While a party speaks, an interim hypothesis of the open utterance is asked for about every
``interim_every`` seconds (never two at once for one party); when the utterance ends, its final.
Results come back from the shared :class:`AsrScheduler` and are emitted with ``at`` = the call
audio consumed at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from coach.asr.endpointer import Endpointer, EndpointSettings, SpeechEnded, SpeechStarted
from coach.asr.scheduler import AsrScheduler
from coach.asr.transcriber import DecodeOptions, Transcription
from coach.asr.vad import StreamingVad
from coach.audio.frames import SAMPLE_RATE
from coach.config import AsrSettings
from coach.events import TranscriptEvent

MIN_INTERIM_SPEECH = 1.0  # seconds of speech before the first interim


class RollingAudio:
    """The recent audio of one party, addressed by call time in seconds."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._start = 0  # sample index of the first kept sample
        self._size = 0

    @property
    def end(self) -> float:
        return (self._start + self._size) / SAMPLE_RATE

    def append(self, samples: np.ndarray) -> None:
        self._chunks.append(samples)
        self._size += samples.size

    def slice(self, t0: float, t1: float) -> np.ndarray:
        data = self._compact()
        i0 = max(0, int(t0 * SAMPLE_RATE) - self._start)
        i1 = max(i0, min(data.size, int(t1 * SAMPLE_RATE) - self._start))
        return data[i0:i1].copy()

    def forget_before(self, t: float) -> None:
        drop = int(t * SAMPLE_RATE) - self._start
        if drop <= 0:
            return
        data = self._compact()
        drop = min(drop, data.size)
        self._chunks = [data[drop:]]
        self._start += drop
        self._size -= drop

    def _compact(self) -> np.ndarray:
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)]
        return self._chunks[0]


def accept(result: Transcription) -> bool:
    """False for what Whisper makes up from noise: no speech and no confidence, or nothing at all."""
    if not result.text:
        return False
    return not (result.no_speech_prob > 0.6 and result.avg_logprob < -1.0)


class PartyTranscriber:
    def __init__(
        self,
        speaker: str,
        scheduler: AsrScheduler,
        settings: AsrSettings,
        emit: Callable[[TranscriptEvent], None],
        clock: Callable[[], float],
        vad: StreamingVad,
        vad_executor: Executor,
    ) -> None:
        self.speaker = speaker
        self.settings = settings
        self._scheduler = scheduler
        self._emit = emit
        self._clock = clock
        self._vad = vad
        self._vad_executor = vad_executor
        self.endpointer = Endpointer(
            EndpointSettings(
                threshold=settings.vad_threshold,
                min_speech=settings.min_speech,
                min_silence=settings.min_silence,
                max_utterance=settings.max_utterance,
                hard_max_utterance=settings.hard_max_utterance,
            )
        )
        self.audio = RollingAudio()
        self._utterances = 0
        self._current: str | None = None  # id of the open utterance
        self._interim_due = 0.0
        self._interim_pending: asyncio.Task | None = None
        self._shown_interim: set[str] = set()
        self._finalised: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._final = DecodeOptions(settings.beam_size, settings.window_margin, settings.language)
        self._interim = DecodeOptions(settings.interim_beam_size, settings.window_margin, settings.language)

    @property
    def pending(self) -> set[asyncio.Task]:
        return self._tasks

    async def feed(self, samples: np.ndarray) -> None:
        """Take the next frame of this party's audio (16 kHz float32)."""
        self.audio.append(samples)
        loop = asyncio.get_running_loop()
        probabilities = await loop.run_in_executor(self._vad_executor, self._vad.feed, samples)
        for change in self.endpointer.update(probabilities):
            if isinstance(change, SpeechStarted):
                self._utterances += 1
                self._current = f"{self.speaker}-{self._utterances}"
                self._interim_due = change.start + MIN_INTERIM_SPEECH
            else:
                self._finalise(change)
        self._maybe_interim()
        self._forget_old_audio()

    def finish(self) -> None:
        """The call ended: close the open utterance, if any."""
        start = self.endpointer.utterance_start
        if start is not None and self._current is not None:
            self._finalise(SpeechEnded(start, max(start, self.endpointer.last_speech_end)))

    def _finalise(self, ended: SpeechEnded) -> None:
        utterance = self._current or f"{self.speaker}-{self._utterances}"
        self._current = None
        self._finalised.add(utterance)
        pad = self.settings.speech_pad
        audio = self.audio.slice(ended.start - pad, ended.end + pad)
        self._spawn(self._transcribe(utterance, ended.start, ended.end, audio, final=True))

    def _maybe_interim(self) -> None:
        s = self.settings
        if not (s.interims and self.endpointer.speaking and self._current):
            return
        now = self.audio.end
        if now < self._interim_due or (self._interim_pending and not self._interim_pending.done()):
            return
        start = self.endpointer.utterance_start or 0.0
        self._interim_due = now + s.interim_every
        audio = self.audio.slice(start - s.speech_pad, now)
        self._interim_pending = self._spawn(self._transcribe(self._current, start, now, audio, final=False))

    async def _transcribe(self, utterance: str, start: float, end: float, audio: np.ndarray, *, final: bool) -> None:
        options = self._final if final else self._interim
        result = await self._scheduler.transcribe(audio, options, final=final, audio_end=end)
        if not final and utterance in self._finalised:
            return  # the final is on its way; this interim is stale
        ok = accept(result)
        if final and not ok and utterance in self._shown_interim:
            ok, result = True, Transcription("", result.avg_logprob, result.no_speech_prob, 0.0, result.window)
        if not ok:
            return
        if not final:
            self._shown_interim.add(utterance)
        else:
            self._shown_interim.discard(utterance)
        self._emit(TranscriptEvent(self._clock(), self.speaker, utterance, start, end, result.text, final))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _forget_old_audio(self) -> None:
        # jobs hold copies of their audio: keep only the open utterance and a pre-roll
        keep_from = self.audio.end - 2.0
        start = self.endpointer.utterance_start
        if start is not None:
            keep_from = min(keep_from, start - self.settings.speech_pad)
        self.audio.forget_before(keep_from)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
