"""The quality ladder: what live transcription gives up, one rung at a time, when calls fall behind.

A prompt that comes 10 s late is worse than a slightly misheard one that comes in time. So when
the speech model falls behind, the coach gives up quality before time, in steps, each taken only
while the one before is not enough, and given back as the lag recovers:

0. ``full``: interims, finals decoded with the beam (``AsrSettings.beam_size``).
1. ``fewer_interims``: chunks of an open utterance are not transcribed on their own; their words
   come with the next decode (an interim still goes out at each pause, from the final's early decode).
2. ``greedy_finals``: finals decoded greedily (beam 1): about half the decoder's work.
3. ``batched_finals``: a final that would be decoded alone waits up to ``batch_wait`` for others
   (of any call) to decode with it: a decoding step reads the decoder's weights once for the batch.
4. ``bounded_pieces``: a long final is decoded in pieces cut at its quietest moments, each short
   enough that no decode holds a worker for much more than a second, and a looping result is cut,
   not decoded again in a 30 s window.

Beyond the top rung, new calls are refused (admission: ``ServerSettings.refuse_lag``).

The lag it reads is how long finals wait for the model past the moment their audio was due: the
wait of each final as a worker takes it up, and the wait of the most overdue one still queued.
Decode time itself is not lag (a lone call on a slow box is not helped by any rung), only waiting.
Pure logic with an injected clock; the scheduler calls it on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

RUNGS = ("full", "fewer_interims", "greedy_finals", "batched_finals", "bounded_pieces")
FULL, FEWER_INTERIMS, GREEDY_FINALS, BATCHED_FINALS, BOUNDED_PIECES = range(len(RUNGS))


@dataclass(frozen=True)
class LadderSettings:
    climb_at: float = 0.5  # s: a final waiting this long for the model takes the next rung
    settle_at: float = 0.2  # s: finals waiting less than this, for ``recover`` s, give a rung back
    hold: float = 1.5  # s: the least time on a rung before the next climb (its effect must show)
    recover: float = 6.0  # s of calm before a rung is given back (and between rungs given back)
    top: int = BOUNDED_PIECES  # the highest rung taken (0: never degrade)


class QualityLadder:
    def __init__(self, settings: LadderSettings = LadderSettings(), clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self.rung = FULL
        self._changed = clock()
        self._calm_since: float | None = clock()
        self.climbs = 0  # rungs taken, since start
        self.descents = 0  # rungs given back

    @property
    def name(self) -> str:
        return RUNGS[self.rung]

    @property
    def at_top(self) -> bool:
        return self.rung >= self.settings.top

    def observe(self, wait: float) -> int:
        """A final's wait (s) for the model past its due time (as a worker takes it up, or the most
        overdue one still queued). Returns the rung now."""
        now = self._clock()
        s = self.settings
        if wait >= s.climb_at:
            self._calm_since = None
            if self.rung < s.top and now - self._changed >= s.hold:
                self.rung += 1
                self.climbs += 1
                self._changed = now
            return self.rung
        if wait >= s.settle_at:
            self._calm_since = None  # neither behind enough to climb nor calm enough to come down
            return self.rung
        if self._calm_since is None:
            self._calm_since = now
        calm = now - max(self._calm_since, self._changed)
        if self.rung > FULL and calm >= s.recover:
            down = min(self.rung, int(calm // s.recover))  # a long quiet spell gives back a rung per ``recover``
            self.rung -= down
            self.descents += down
            self._changed = now
        return self.rung
