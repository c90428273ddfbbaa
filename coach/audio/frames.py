"""Per-party audio at 16 kHz: which channel belongs to whom."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class CallLayout:
    """Which channel of the call audio each party speaks on."""

    parties: tuple[tuple[str, int], ...]  # (speaker, channel index)

    def __post_init__(self) -> None:
        speakers = [speaker for speaker, _ in self.parties]
        if not speakers or len(set(speakers)) != len(speakers) or not (set(speakers) <= {"agent", "customer"} or speakers == ["mixed"]):
            raise ValueError(f"a call is one mixed party, or the agent and/or the customer once each; got {speakers}")
        if any(channel < 0 for _, channel in self.parties):
            raise ValueError("channel indices are 0 or more")

    @property
    def recorded_channels(self) -> int:
        """Channels of the kept recording: 1 for a mixed call; else 2, agent left and customer right,
        a party the stream does not carry (a single-track stream) kept as silence."""
        return 1 if self.speakers == ("mixed",) else 2

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(speaker for speaker, _ in self.parties)

    @classmethod
    def stereo(cls, agent_channel: int = 0) -> "CallLayout":
        return cls((("agent", agent_channel), ("customer", 1 - agent_channel)))

    @classmethod
    def mono(cls) -> "CallLayout":
        return cls((("mixed", 0),))

    def split(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """``(samples, channels)`` -> one contiguous float32 array per speaker."""
        return {speaker: np.ascontiguousarray(block[:, channel], dtype=np.float32) for speaker, channel in self.parties}

    def recorded(self, block: np.ndarray) -> np.ndarray:
        """``(samples, channels)`` as received -> ``(samples, recorded_channels)`` as kept: mono for a
        mixed call, else agent left and customer right (silence for a party not carried)."""
        channels = dict(self.parties)
        if "mixed" in channels:
            return np.ascontiguousarray(block[:, channels["mixed"] : channels["mixed"] + 1], dtype=np.float32)
        out = np.zeros((block.shape[0], 2), np.float32)
        for column, speaker in enumerate(("agent", "customer")):
            if speaker in channels:
                out[:, column] = block[:, channels[speaker]]
        return out
