"""Per-party audio at 16 kHz: which channel belongs to whom."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class CallLayout:
    """Which channel of the call audio each party speaks on."""

    parties: tuple[tuple[str, int], ...]  # (speaker, channel index)

    @classmethod
    def stereo(cls, agent_channel: int = 0) -> "CallLayout":
        return cls((("agent", agent_channel), ("customer", 1 - agent_channel)))

    @classmethod
    def mono(cls) -> "CallLayout":
        return cls((("mixed", 0),))

    def split(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """``(samples, channels)`` -> one contiguous float32 array per speaker."""
        return {speaker: np.ascontiguousarray(block[:, channel], dtype=np.float32) for speaker, channel in self.parties}
