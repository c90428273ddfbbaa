"""Cutting one party's speech into utterances from voice-activity probabilities.

Pure logic on a stream of 32 ms speech probabilities, so it is tested on synthetic timelines.
An utterance opens after ``min_speech`` of speech and closes after ``min_silence`` of silence;
``early_pause`` of silence before that, it is announced as halted (the party may have finished: its
words so far can be read while the endpointer waits to be sure). A run-on utterance is cut at the
first short pause after ``max_utterance`` seconds, or at ``hard_max_utterance`` whatever happens.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from coach.asr.vad import WINDOW_SECONDS


@dataclass(frozen=True)
class EndpointSettings:
    threshold: float = 0.5
    min_speech: float = 0.25
    min_silence: float = 0.5
    max_utterance: float = 15.0
    hard_max_utterance: float = 25.0
    cut_pause: float = 0.15  # the pause that ends a run-on utterance
    # chunks: stretches of an open utterance, cut at short pauses, transcribed as the party speaks
    chunk_pause: float = 0.15  # a pause this long inside speech may end a chunk...
    min_chunk: float = 1.5  # ...once the chunk is this long
    max_chunk: float = 4.0  # a chunk is cut at its quietest moment if it runs this long without a pause
    early_pause: float = 0.0  # silence that announces SpeechHalted; 0 (or >= min_silence): never

    @property
    def off_threshold(self) -> float:
        return max(0.01, self.threshold - 0.15)


@dataclass(frozen=True)
class SpeechStarted:
    start: float


@dataclass(frozen=True)
class SpeechPaused:
    """A chunk of the open utterance is complete. ``start`` and ``end`` are cut points (the middle of
    a pause, or the quietest moment): consecutive chunks share them, so no audio is heard twice."""

    start: float
    end: float


@dataclass(frozen=True)
class SpeechHalted:
    """The party has been silent ``early_pause`` seconds: the utterance from ``start`` to ``end`` may be
    over. Either :class:`SpeechEnded` with the same ``end`` follows, or speech goes on."""

    start: float
    end: float


@dataclass(frozen=True)
class SpeechEnded:
    start: float
    end: float  # end of the last speech window
    cut: bool = False  # True when cut for length; the party is still talking


class Endpointer:
    def __init__(self, settings: EndpointSettings, start_time: float = 0.0) -> None:
        self.settings = settings
        self._t = start_time  # end time of the last window seen
        self._speaking = False
        self._candidate: float | None = None  # start of speech not yet long enough
        self._candidate_speech = 0.0
        self._start = 0.0
        self._last_speech_end = 0.0
        self._chunk_start = 0.0
        self._halted_at: float | None = None  # the speech end last announced as halted
        self._recent: deque[tuple[float, float]] = deque(maxlen=round(1.0 / WINDOW_SECONDS))  # the last second

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def utterance_start(self) -> float | None:
        return self._start if self._speaking else None

    @property
    def last_speech_end(self) -> float:
        return self._last_speech_end

    def update(self, probabilities) -> list[SpeechStarted | SpeechPaused | SpeechHalted | SpeechEnded]:
        s = self.settings
        events: list[SpeechStarted | SpeechPaused | SpeechHalted | SpeechEnded] = []
        for p in probabilities:
            begin, self._t = self._t, self._t + WINDOW_SECONDS
            self._recent.append((self._t, float(p)))  # (window end, probability)
            if not self._speaking:
                # speech opens at the threshold and, once open, counts on down to the off threshold
                # (the hysteresis of an open utterance): a short "hi" wavers about the threshold
                if p >= s.threshold or (self._candidate is not None and p >= s.off_threshold):
                    if self._candidate is None:
                        self._candidate, self._candidate_speech = begin, 0.0
                    self._candidate_speech += WINDOW_SECONDS
                    self._last_speech_end = self._t
                    if self._candidate_speech >= s.min_speech - 1e-9:
                        self._speaking, self._start = True, self._candidate
                        self._chunk_start = self._start
                        self._candidate = None
                        events.append(SpeechStarted(self._start))
                elif self._candidate is not None and self._t - self._last_speech_end >= s.min_silence:
                    self._candidate = None  # a click or a breath, not speech
                continue
            if p >= s.off_threshold:  # hysteresis: speech goes on until p drops below this
                self._last_speech_end = self._t
            silence = self._t - self._last_speech_end
            length = self._last_speech_end - self._start
            if silence >= s.min_silence - 1e-9:
                events.append(SpeechEnded(self._start, self._last_speech_end))
                self._speaking = False
                continue
            if 0 < s.early_pause <= silence + 1e-9 and self._halted_at != self._last_speech_end:
                self._halted_at = self._last_speech_end
                events.append(SpeechHalted(self._start, self._last_speech_end))
            if (length >= s.max_utterance and silence >= s.cut_pause) or self._t - self._start >= s.hard_max_utterance:
                end = self._last_speech_end if silence > 0 else self._t
                events.append(SpeechEnded(self._start, end, cut=True))
                self._start = self._chunk_start = end  # the party goes on talking: a new utterance starts here
                events.append(SpeechStarted(self._start))
            elif (chunk := self._chunk_cut(silence)) is not None:
                events.append(SpeechPaused(self._chunk_start, chunk))
                self._chunk_start = chunk
        return events

    def _chunk_cut(self, silence: float) -> float | None:
        """Where the open chunk should end now, if it should."""
        s = self.settings
        length = self._last_speech_end - self._chunk_start
        if silence >= s.chunk_pause - 1e-9 and length >= s.min_chunk:
            return self._last_speech_end + silence / 2  # the middle of the pause: no word on either side is split
        if self._t - self._chunk_start >= s.max_chunk:
            # no pause: cut where the voice was weakest in the last second, most likely between words
            quietest_end, _ = min(self._recent, key=lambda item: item[1])
            return max(self._chunk_start + s.min_chunk, quietest_end - WINDOW_SECONDS / 2)
        return None
