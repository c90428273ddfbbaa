"""One live call written to the store as it goes: its events, its audio, its summary.

The call hands over events and audio without waiting; every ``flush_seconds`` (0.3 s) what has
gathered is written in the store's own thread (one thread for all calls, so writes never overlap and
the event loop never waits on the disk). A crash loses at most 0.5 s: that, and the audio still in
the ingest's buffers (one 96 ms resampling block, one 20 ms telephony message); the end of the call writes
the rest and seals the recording.
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import Executor
from typing import Any

import numpy as np

from coach.audio.frames import SAMPLE_RATE, CallLayout
from coach.server.summary import CallSummary
from coach.store import CallRecord, CallStore, Silence

log = logging.getLogger("coach.recorder")


class CallRecorder:
    def __init__(self, store: CallStore, executor: Executor, record: CallRecord, layout: CallLayout, summary: CallSummary,
                 flush_seconds: float = 0.3) -> None:
        self.store = store
        self.call_id = record.call_id
        self.executor = executor
        self._layout = layout
        self._flush_seconds = flush_seconds
        self._events: list[dict[str, Any]] = []
        self._audio: list[np.ndarray] = []
        self._silence: list[Silence] = []
        self.summary = summary  # the call's, kept by whoever hands over its events: written with them
        self._received = 0.0  # seconds of call audio handed over
        self._read_until = 0.0  # the end of the customer's last final that was read and redacted
        self._muted: dict[int, float] = {}  # channel -> call time until which its audio is zeroed as it comes
        self._timer: asyncio.Task | None = None
        self.failed: str | None = None  # the store refused a write: the call goes on, unrecorded

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().create_task(self._flush_every(), name=f"record {self.call_id}")

    def event(self, message: dict[str, Any]) -> None:
        self._events.append(message)

    def _channel(self, speaker: str) -> int:
        return 0 if self._layout.recorded_channels == 1 or speaker == "agent" else 1

    def silence(self, speaker: str, start: float, end: float) -> None:
        """Personal data was said by ``speaker`` from ``start`` to ``end``: the kept recording gets
        silence there, on that party's channel (the next write does it, after the audio it covers)."""
        self._silence.append(Silence(self._channel(speaker), start, end))

    def mute(self, speaker: str, start: float, until: float) -> None:
        """Silence ``speaker`` from ``start`` (audio already taken: rewritten by the next write) until
        ``until`` (audio still to come: zeroed before it is written; ``math.inf``: to the end)."""
        channel = self._channel(speaker)
        if start < self._received:
            self._silence.append(Silence(channel, start, min(until, self._received)))
        self._muted[channel] = max(self._muted.get(channel, 0.0), until)

    def transcript(self, speaker: str, start: float, end: float, final: bool, redacted: bool, guarded: float | None) -> None:
        """A transcript as redaction left it: silence where it held personal data, the customer muted
        while a card, account, ID or birth date is being given (until ``guarded``), and how far the
        customer's speech has been read (for :meth:`unread`)."""
        if final and speaker in ("customer", "mixed"):
            self._read_until = max(self._read_until, end)
        if redacted:
            self.silence(speaker, start, end)
        if guarded is not None:
            self.mute("customer", start, guarded)

    def unread(self, since: float | None = None) -> None:
        """Redaction fails closed: the analysis stopped (failed, or the call was cut off), so the
        customer is silenced from the end of their last final that was read (or ``since``, if earlier:
        an utterance still waiting for its final) to the end of the call."""
        self.mute("customer", self._read_until if since is None else min(self._read_until, since), math.inf)

    def audio(self, block: np.ndarray) -> None:
        """``(samples, channels)`` as the call's layout has them; kept agent left, customer right."""
        kept = self._layout.recorded(block)
        start = self._received
        self._received += block.shape[0] / SAMPLE_RATE
        for channel, until in self._muted.items():
            if until > start:
                if kept.base is not None or kept is block:
                    kept = kept.copy()  # a view of the caller's audio, which the analysis still reads: never zero that
                samples = kept.shape[0] if math.isinf(until) else min(kept.shape[0], math.ceil((until - start) * SAMPLE_RATE))
                kept[:samples, channel] = 0.0
        self._audio.append(kept)

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)  # a write interval, not a synchronisation
            await self.flush()

    async def flush(self) -> None:
        """Write what has gathered (after any write still going)."""
        events, self._events = self._events, []
        audio = np.concatenate(self._audio) if self._audio else None
        silence, self._audio, self._silence = self._silence, [], []
        await self._write(self.store.append, self.call_id, events, audio, self.summary.row(), silence)

    async def end(self, error: str | None = None) -> None:
        """The call is over: write the rest and seal the recording."""
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
        await self.flush()
        await self._write(self.store.end, self.call_id, self.summary.row(), "ended", error)

    async def _write(self, method, *args) -> None:
        """In the store's one thread, so writes land in the order they were asked for."""
        writing = asyncio.get_running_loop().run_in_executor(self.executor, method, *args)
        try:
            await asyncio.shield(writing)  # a cancelled flush timer does not cancel a write under way
        except Exception as exc:  # a full disk must not end the call; say so once
            if self.failed is None:
                log.error("call %s: cannot write to the store (%s); the call goes on", self.call_id, exc)
            self.failed = f"{type(exc).__name__}: {exc}"
