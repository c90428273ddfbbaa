"""One party's live transcript: voice activity -> utterances and chunks -> interim and final events.

While a party speaks, each chunk of the open utterance (cut at a short pause, 3-6 s long) is
transcribed once and the interim hypothesis grows by its words; when the utterance ends, its final
follows. The final's decode starts early, at a shorter pause (``early_pause``) than the one that
ends an utterance: its text goes out as an interim at once (so triggers are read before the
endpointer is sure), and becomes the final if the party says nothing more. Results come back from
the shared :class:`AsrScheduler` and are emitted with ``at`` = the call audio consumed at that moment.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from coach.asr.endpointer import Endpointer, EndpointSettings, SpeechEnded, SpeechHalted, SpeechPaused, SpeechStarted
from coach.asr.scheduler import AsrScheduler
from coach.asr.transcriber import DecodeOptions, Transcription
from coach.audio.frames import SAMPLE_RATE
from coach.background import Background
from coach.config import AsrSettings
from coach.events import TranscriptEvent


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


MIN_TAIL = 0.3  # seconds: less speech than this after the last chunk is not decoded on its own
SHORT_UTTERANCE = 2.0  # seconds: a noise burst is short, and Whisper makes words of it with little confidence


def accept(result: Transcription, seconds: float) -> bool:
    """False for what Whisper makes up from noise: nothing, no speech and no confidence, or a short
    burst heard with little confidence."""
    if not result.text:
        return False
    if result.no_speech_prob > 0.6 and result.avg_logprob < -1.0:
        return False
    return not (seconds < SHORT_UTTERANCE and result.avg_logprob < -1.0)


class Conversation:
    """The last words said in the call, in order, for Whisper's previous-text prompt."""

    def __init__(self, max_words: int = 40) -> None:
        self.max_words = max_words
        self._said: deque[tuple[str, str]] = deque(maxlen=max_words)  # (speaker, text): enough for max_words

    def add(self, speaker: str, text: str) -> None:
        if text:
            self._said.append((speaker, text))

    def recent(self, speaker: str | None = None) -> str:
        """The last ``max_words`` words, of everyone or of one speaker."""
        words: list[str] = []
        for who, text in reversed(self._said):
            if speaker is None or who == speaker:
                words[:0] = text.split()
                if len(words) >= self.max_words:
                    break
        return " ".join(words[-self.max_words :])


@dataclass
class _Utterance:
    id: str
    start: float
    chunk_from: float  # where the chunk being spoken now began
    text: str = ""  # the chunks transcribed so far, joined in order
    last_chunk: asyncio.Task | None = None  # the next chunk's result waits for this one
    chunks: list[asyncio.Task] = field(default_factory=list)
    finalised: bool = False
    shown_end: float = 0.0  # where the last interim shown ended (0: none shown); an older, shorter one is not shown after it
    early: asyncio.Task | None = None  # the final's decode, started at a pause, of the speech up to early_end
    early_end: float = -1.0
    rung: int | None = None  # join mode: the highest rung its chunks were decoded on


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


class PartyTranscriber:
    """Interims are built from chunks (stretches of speech cut at short pauses), each transcribed
    once. The final is either those chunks joined (``final_mode="join"``: every word decoded once) or
    a fresh decode of the whole utterance (``"redecode"``: more context, more CPU)."""

    def __init__(
        self,
        speaker: str,
        scheduler: AsrScheduler,
        settings: AsrSettings,
        emit: Callable[[TranscriptEvent], None],
        clock: Callable[[], float],
        conversation: Conversation | None = None,
        due_offset: float = 0.0,
    ) -> None:
        self.speaker = speaker
        # added to call time to order this party's jobs among every call's: 0 for a recording (call
        # time), the call's start on the monotonic clock for a live call (when its audio was due)
        self.due_offset = due_offset
        self.conversation = conversation or Conversation(settings.context_words)
        self.settings = settings
        self._scheduler = scheduler
        self._emit = emit
        self._clock = clock
        self.endpointer = Endpointer(
            EndpointSettings(
                threshold=settings.vad_threshold,
                min_speech=settings.min_speech,
                min_silence=settings.min_silence,
                max_utterance=settings.max_utterance,
                hard_max_utterance=settings.hard_max_utterance,
                chunk_pause=settings.chunk_pause,
                min_chunk=settings.min_chunk,
                max_chunk=settings.max_chunk,
                early_pause=settings.early_pause if settings.final_mode == "redecode" else 0.0,
            )
        )
        self.audio = RollingAudio()
        self._count = 0
        self._open: _Utterance | None = None
        self.background = Background()  # its transcriptions; a failed one is raised by the pipeline
        self._awaiting: dict[str, float] = {}  # utterances ended and not yet final: id -> where they ended
        self._awaiting_from: dict[str, float] = {}  # the same: id -> where they began
        self._join_mode = settings.final_mode == "join"
        self._final = DecodeOptions(settings.beam_size, settings.window_margin, settings.language, settings.min_window)
        if self._join_mode:  # chunks are the final text: decoded as finals are
            self._chunk = self._tail = replace(self._final, window_margin=settings.chunk_margin)
        else:  # chunks are cheap interims, windowed tightly (chunk + margin)
            self._chunk = replace(
                self._final, beam_size=settings.interim_beam_size, window_margin=settings.chunk_margin, min_window=2.0,
                retry_loops=False,
            )

    def _due(self, end: float) -> float:
        """When a job for audio ending at call time ``end`` is due: for a recording, that call time; live,
        when it would have arrived in real time, or when it did arrive if later (a sender behind real
        time does not jump the queue with audio long overdue)."""
        return end if not self.due_offset else max(self.due_offset + end, time.monotonic())

    @property
    def pending(self) -> set[asyncio.Task]:
        return self.background.tasks

    @property
    def final_due_from(self) -> float | None:
        """Where the earliest utterance that ended and still waits for its final began (None: none waits)."""
        return min(self._awaiting_from.values(), default=None)

    @property
    def final_due_since(self) -> float | None:
        """Where the oldest utterance that ended and still waits for its final ended (None: none waits)."""
        return min(self._awaiting.values(), default=None)

    def take(self, samples: np.ndarray, probabilities: np.ndarray) -> None:
        """Take the next frame of this party's audio (16 kHz float32) and its speech probabilities."""
        self.audio.append(samples)
        for change in self.endpointer.update(probabilities):
            if isinstance(change, SpeechStarted):
                self._count += 1
                self._open = _Utterance(f"{self.speaker}-{self._count}", change.start, change.start)
            elif isinstance(change, SpeechPaused):
                self._chunk_done(change.start, change.end)
            elif isinstance(change, SpeechHalted):
                self._decode_early(change)
            else:
                self._finalise(change)
        self._forget_old_audio()

    def finish(self) -> None:
        """The call ended: close the open utterance, if any."""
        start = self.endpointer.utterance_start
        if start is not None and self._open is not None:
            self._finalise(SpeechEnded(start, max(start, self.endpointer.last_speech_end)))

    def _clip(self, start: float, end: float, utt: _Utterance | None = None) -> np.ndarray:
        """Audio of [start, end], padded at the utterance's outer edges only (chunks meet exactly)."""
        pad = self.settings.speech_pad
        first = utt is None or start <= utt.start
        last = utt is None
        return self.audio.slice(start - pad if first else start, end + pad if last else end)

    def _chunk_done(self, start: float, end: float) -> None:
        utt = self._open
        if utt is None or not (self._join_mode or self.settings.interims):
            return
        if not self._join_mode and not self._scheduler.wants_interims:
            self._scheduler.interims_deferred += 1  # under load: this chunk's words go with the next chunk
            return
        start, utt.chunk_from = utt.chunk_from, end
        prev = utt.last_chunk
        task = self.background.spawn(self._transcribe_chunk(utt, start, end, self._clip(start, end, utt), prev))
        utt.last_chunk = task
        utt.chunks.append(task)

    async def _transcribe_chunk(self, utt: _Utterance, start: float, end: float, audio: np.ndarray, prev) -> None:
        context = ""
        if self._join_mode:  # final text: the words before it, this utterance's included, are its context
            if prev is not None:
                await asyncio.wait({prev})
            context = self._context(utt.text)
        result = await self._scheduler.transcribe(audio, self._chunk, final=self._join_mode, audio_end=self._due(end), context=context)
        if prev is not None:
            await asyncio.wait({prev})  # keep the chunks in spoken order
        if accept(result, audio.size / SAMPLE_RATE):
            utt.text = _join(utt.text, result.text)
        if result.rung is not None:
            utt.rung = max(utt.rung or 0, result.rung)
        if self.settings.interims:
            self._show(utt, end, utt.text)

    def _show(self, utt: _Utterance, end: float, text: str, whole: bool = False) -> None:
        """Emit an interim of ``utt`` up to ``end``, unless its final or a longer interim went out already."""
        if utt.finalised or not text or end < utt.shown_end:
            return
        utt.shown_end = end
        self._emit(TranscriptEvent(self._clock(), self.speaker, utt.id, utt.start, end, text, False, whole=whole))

    def _decode_early(self, halted: SpeechHalted) -> None:
        """The party paused: decode the utterance so far as its final would be decoded."""
        utt = self._open
        if utt is None:
            return
        if utt.early is not None:
            utt.early.cancel()  # the party went on after the last pause: that decode is stale
        for chunk in utt.chunks:
            chunk.cancel()  # a chunk's interim not yet decoded: the whole decode below covers its words
        if self.settings.interims and utt.chunks and halted.end - utt.chunk_from >= MIN_TAIL:
            # a long utterance: its whole decode takes a while, so the words since the last chunk are
            # decoded on their own first (greedy, a short window) and shown after the chunks heard so far
            tail = self.audio.slice(utt.chunk_from, halted.end + self.settings.speech_pad)
            self.background.spawn(self._early_tail(utt, halted.end, tail))
        audio = self._clip(halted.start, halted.end)
        utt.early, utt.early_end = self.background.spawn(self._early_decode(utt, halted.end, audio, len(utt.chunks))), halted.end

    async def _early_tail(self, utt: _Utterance, end: float, audio: np.ndarray) -> None:
        result = await self._scheduler.transcribe(audio, self._chunk, final=True, audio_end=self._due(end))  # urgent: a prompt may wait on it
        if accept(result, audio.size / SAMPLE_RATE):
            self._show(utt, end, _join(utt.text, result.text))

    async def _early_decode(self, utt: _Utterance, end: float, audio: np.ndarray, chunks: int) -> tuple[str, int | None]:
        result = await self._scheduler.transcribe(audio, self._final, final=True, audio_end=self._due(end), context=self._context())
        text = result.text if accept(result, audio.size / SAMPLE_RATE) else ""
        if text and len(utt.chunks) == chunks and utt.chunk_from >= end:
            utt.text = text  # the party may go on: later chunks add to this (the chunks it covers were cancelled)
        if self.settings.interims:
            self._show(utt, end, text, whole=True)  # the whole utterance so far, better than its chunks
        return text, result.rung

    def _finalise(self, ended: SpeechEnded) -> None:
        utt = self._open or _Utterance(f"{self.speaker}-{self._count}", ended.start, ended.start)
        self._open = None
        utt.finalised = True
        self._awaiting[utt.id] = ended.end
        self._awaiting_from[utt.id] = ended.start
        if self._join_mode and utt.chunks:
            tail = self._clip(utt.chunk_from, ended.end) if ended.end - utt.chunk_from >= 0.1 else None
            self.background.spawn(self._final_from_chunks(utt, ended, tail))
            return
        for chunk in utt.chunks:  # a fresh decode of the whole utterance replaces them
            chunk.cancel()
        if utt.early is not None and utt.early_end == ended.end and utt.start == ended.start:
            self.background.spawn(self._final_from_early(utt, ended, utt.early))  # nothing said since: it is the final
            return
        if utt.early is not None:
            utt.early.cancel()
        self.background.spawn(self._final_redecode(utt, ended, self._clip(ended.start, ended.end)))

    async def _final_from_early(self, utt: _Utterance, ended: SpeechEnded, early: asyncio.Task) -> None:
        self._emit_final(utt, ended, *await early)

    async def _final_from_chunks(self, utt: _Utterance, ended: SpeechEnded, tail: np.ndarray | None) -> None:
        await asyncio.wait({utt.last_chunk})
        text, rung = "", utt.rung
        if tail is not None:
            result = await self._scheduler.transcribe(
                tail, self._tail, final=True, audio_end=self._due(ended.end), context=self._context(utt.text)
            )
            text = result.text if accept(result, tail.size / SAMPLE_RATE) else ""
            rung = max((r for r in (rung, result.rung) if r is not None), default=None)
        self._emit_final(utt, ended, _join(utt.text, text), rung)

    async def _final_redecode(self, utt: _Utterance, ended: SpeechEnded, audio: np.ndarray) -> None:
        result = await self._scheduler.transcribe(
            audio, self._final, final=True, audio_end=self._due(ended.end), context=self._context()
        )
        self._emit_final(utt, ended, result.text if accept(result, audio.size / SAMPLE_RATE) else "", result.rung)

    def _context(self, so_far: str = "") -> str:
        """The last words before this audio: the call's (or the party's) and ``so_far`` of this utterance."""
        mode = self.settings.context
        if mode == "none":
            return ""
        words = _join(self.conversation.recent(self.speaker if mode == "party" else None), so_far).split()
        return " ".join(words[-self.settings.context_words :])

    def _emit_final(self, utt: _Utterance, ended: SpeechEnded, text: str, rung: int | None = None) -> None:
        self._awaiting.pop(utt.id, None)
        self._awaiting_from.pop(utt.id, None)
        self.conversation.add(self.speaker, text)
        if text or utt.shown_end:  # an empty final withdraws an interim that turned out to be noise
            self._emit(TranscriptEvent(self._clock(), self.speaker, utt.id, ended.start, ended.end, text, True, rung=rung))

    def _forget_old_audio(self) -> None:
        # jobs hold copies of their audio: keep only the open utterance and a pre-roll
        keep_from = self.audio.end - 2.0
        start = self.endpointer.utterance_start
        if start is not None:
            keep_from = min(keep_from, start - self.settings.speech_pad)
        self.audio.forget_before(keep_from)

    async def aclose(self) -> None:
        await self.background.cancel()
