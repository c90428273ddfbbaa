"""Stand-ins for the models, so pipeline logic is tested in milliseconds."""

from __future__ import annotations

import numpy as np

from coach.asr.transcriber import DecodeOptions, Transcription
from coach.asr.vad import WINDOW

RATE = 16_000


class EnergyVad:
    """Speech probability 1.0 where a 32 ms window is louder than -40 dBFS, else 0.0."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        audio = np.concatenate([self._pending, samples])
        usable = audio.size - audio.size % WINDOW
        self._pending = audio[usable:]
        windows = audio[:usable].reshape(-1, WINDOW)
        return (np.sqrt((windows**2).mean(axis=1)) > 0.01).astype(np.float32)


class ToneTranscriber:
    """'Hears' a tone of f Hz as the word number f/100: 300 Hz says "w3". One word per 0.25 s of tone."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, DecodeOptions]] = []
        self.contexts: list[str] = []

    def transcribe(self, audio: np.ndarray, options: DecodeOptions, context: str = "") -> Transcription:
        self.calls.append((audio.size / RATE, options))
        self.contexts.append(context)
        words = []
        for i in range(0, audio.size - RATE // 4 + 1, RATE // 4):
            piece = audio[i : i + RATE // 4]
            if np.sqrt((piece**2).mean()) < 0.01:
                continue
            freq = np.argmax(np.abs(np.fft.rfft(piece))) * RATE / piece.size
            words.append(f"w{round(freq / 100)}")
        return Transcription(" ".join(words), -0.1, 0.01, 1.0, audio.size / RATE)


def tone(freq: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


class PhraseTranscriber:
    """'Hears' a tone as a scripted sentence: the loudest frequency (nearest 100 Hz) picks the phrase."""

    def __init__(self, phrases: dict[int, str]) -> None:
        self.phrases = phrases

    def transcribe(self, audio: np.ndarray, options: DecodeOptions, context: str = "") -> Transcription:
        loud = audio[np.abs(audio) > 0.05]
        if loud.size < RATE // 10:
            return Transcription("", -0.1, 0.01, 1.0, audio.size / RATE)
        spectrum = np.abs(np.fft.rfft(audio))
        freq = round(np.argmax(spectrum) * RATE / audio.size / 100) * 100
        return Transcription(self.phrases.get(freq, ""), -0.1, 0.01, 1.0, audio.size / RATE)


def stereo(*turns: tuple[str, np.ndarray]) -> np.ndarray:
    """Turns one after another, each on its party's channel (agent left, customer right)."""
    total = sum(audio.size for _, audio in turns)
    out = np.zeros((total, 2), np.float32)
    at = 0
    for speaker, audio in turns:
        out[at : at + audio.size, 0 if speaker == "agent" else 1] = audio
        at += audio.size
    return out
