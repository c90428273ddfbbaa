"""Live call audio as telephony sends it: G.711 mu-law or 16-bit PCM, any rate, 1 or 2 channels.

Decoded to float32 and resampled to 16 kHz chunk by chunk (the resampler keeps its state between
chunks, so there are no clicks at chunk seams). :class:`TrackAligner` turns Twilio's two tracks,
which arrive as separate 20 ms messages, into one stereo timeline.
"""

from __future__ import annotations

import numpy as np

from coach.audio.frames import SAMPLE_RATE

MULAW_RATE = 8_000


def _mulaw_table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + 0x84 << exponent) - 0x84
    return (np.where(code & 0x80, -magnitude, magnitude) / 32768.0).astype(np.float32)


_MULAW = _mulaw_table()
# highest set bit of (biased magnitude >> 7), for encoding
_EXPONENT = np.array([0] + [int(np.log2(i)) for i in range(1, 256)], dtype=np.int32)


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes -> float32 samples in [-1, 1]."""
    return _MULAW[np.frombuffer(data, dtype=np.uint8)]


def mulaw_encode(samples: np.ndarray) -> bytes:
    """float32 samples in [-1, 1] -> G.711 mu-law bytes (what a telephone network sends)."""
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = _EXPONENT[(magnitude >> 7) & 0xFF]
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def pcm16_decode(data: bytes) -> np.ndarray:
    """Little-endian signed 16-bit samples -> float32 in [-1, 1]."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def pcm16_encode(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()


class Resampler:
    """Interleaved float32 audio at ``rate`` -> ``(samples, channels)`` at ``target`` Hz, chunk by chunk.

    ``block``: input samples (per channel) gathered before they are resampled, so that a stream of
    20 ms telephony messages costs one resampler call per pipeline frame, not one per message."""

    def __init__(self, rate: int, channels: int, target: int = SAMPLE_RATE, block: int = 0) -> None:
        import av

        self.rate = rate
        self.channels = channels
        self.block = block
        self._layout = "mono" if channels == 1 else "stereo"
        self._resampler = None if rate == target else av.AudioResampler(format="flt", layout=self._layout, rate=target)
        self._held: list[np.ndarray] = []
        self._held_samples = 0

    def __call__(self, interleaved: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return interleaved.reshape(-1, self.channels)
        self._held.append(interleaved)
        self._held_samples += interleaved.size // self.channels
        if self._held_samples < max(1, self.block):
            return np.zeros((0, self.channels), np.float32)
        return self._resample()

    def flush(self) -> np.ndarray:
        """What the resampler still holds at the end of the call."""
        if self._resampler is None:
            return np.zeros((0, self.channels), np.float32)
        held = self._resample() if self._held_samples else np.zeros((0, self.channels), np.float32)
        return np.concatenate([held, self._collect(self._resampler.resample(None))])

    def _resample(self) -> np.ndarray:
        import av

        audio = np.concatenate(self._held) if len(self._held) > 1 else self._held[0]
        self._held, self._held_samples = [], 0
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1), format="flt", layout=self._layout
        )
        frame.sample_rate = self.rate
        return self._collect(self._resampler.resample(frame))

    def _collect(self, frames) -> np.ndarray:
        parts = [out.to_ndarray().reshape(-1, self.channels) for out in frames]
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)


class GapTooLong(ValueError):
    """A chunk's timestamp leaves a longer gap than any call has."""


class TrackAligner:
    """Tracks that arrive as separate timed chunks -> one timeline, one channel per track.

    Each chunk is placed at its timestamp (a gap is filled with silence; a late or duplicate chunk
    is dropped). Audio is released up to where both tracks have arrived, or, when one track stops
    sending (a muted leg), up to ``max_skew`` seconds behind the other, so the call never stalls.
    """

    def __init__(self, tracks: tuple[str, ...], rate: int, max_skew: float = 0.5, max_gap: float = 60.0) -> None:
        self.tracks = tracks
        self.rate = rate
        self.max_skew = int(max_skew * rate)
        self.max_gap = int(max_gap * rate)  # a chunk stamped further ahead is refused, not filled with silence
        self._buffers: dict[str, list[np.ndarray]] = {t: [] for t in tracks}
        self._ends = dict.fromkeys(tracks, 0)  # samples received (or filled) per track, from the call start
        self._released = 0  # samples of the timeline already given out

    def add(self, track: str, samples: np.ndarray, timestamp_ms: float | None = None) -> np.ndarray:
        """Take a chunk of one track; return ``(samples, tracks)`` of the timeline now complete."""
        end = self._ends[track]
        start = end if timestamp_ms is None else int(round(timestamp_ms * self.rate / 1000))
        if start < end:  # overlaps what this track already has: keep only the new part
            samples = samples[end - start :]
            start = end
        if start - end > self.max_gap:
            raise GapTooLong(f"a {track} chunk is stamped {(start - end) / self.rate:.0f} s after the track's last audio "
                             f"(at most {self.max_gap / self.rate:.0f} s of silence is filled in)")
        if start > end:
            self._buffers[track].append(np.zeros(start - end, np.float32))
        if samples.size:
            self._buffers[track].append(samples.astype(np.float32, copy=False))
        self._ends[track] = start + samples.size
        return self._release(self._ready())

    def _ready(self) -> int:
        ends = self._ends.values()
        return max(min(ends), max(ends) - self.max_skew)

    def flush(self) -> np.ndarray:
        """Everything received, the shorter track padded with silence (the call ended)."""
        return self._release(max(self._ends.values()))

    def _release(self, upto: int) -> np.ndarray:
        count = upto - self._released
        if count <= 0:
            return np.zeros((0, len(self.tracks)), np.float32)
        columns = [self._take(track, count) for track in self.tracks]
        self._released = upto
        return np.stack(columns, axis=1)

    def _take(self, track: str, count: int) -> np.ndarray:
        have = np.concatenate(self._buffers[track]) if self._buffers[track] else np.zeros(0, np.float32)
        if have.size < count:  # this track is behind (silent leg): it is silence up to here
            self._ends[track] += count - have.size
            have = np.concatenate([have, np.zeros(count - have.size, np.float32)])
        self._buffers[track] = [have[count:]] if have.size > count else []
        return have[:count]
