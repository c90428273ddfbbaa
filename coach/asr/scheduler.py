"""The ASR scheduler: one shared speech model, its own executor, and a queue ordered by urgency.

Every party of every call submits here. Finals go before interims, and among equals the job whose
audio ended first goes first, so no call starves another. The model runs in a dedicated executor
sized to it (``workers`` threads, each using ``cpu_threads``), never on the event loop. With more
than one worker, interims never hold every worker: one is kept for finals, which the prompts wait on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from coach.asr.transcriber import DecodeOptions, Transcription


class Transcriber(Protocol):
    def transcribe(self, audio: np.ndarray, options: DecodeOptions, context: str = "") -> Transcription: ...


@dataclass(order=True)
class _Job:
    priority: tuple[int, float, int]
    audio: np.ndarray = field(compare=False)
    options: DecodeOptions = field(compare=False)
    context: str = field(compare=False)
    future: asyncio.Future = field(compare=False)
    queued_at: float = field(compare=False, default=0.0)


class AsrScheduler:
    """``shed_interims_after``: under load, an interim that has waited this long (s) is dropped, not run:
    its words are stale, and the final will carry them (the first step of degrading gracefully). None:
    never (``coach analyze`` runs in lockstep, where dropping would make the output machine-dependent)."""

    def __init__(self, transcriber: Transcriber, workers: int = 1, shed_interims_after: float | None = None,
                 clock=time.monotonic) -> None:
        self.transcriber = transcriber
        self.workers = workers
        self.shed_interims_after = shed_interims_after
        self.interims_shed = 0
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr")
        self._queue: list[_Job] = []
        self._running = 0
        self._interims_running = 0
        self._interim_slots = max(1, workers - 1)
        self._seq = itertools.count()
        # for /metrics: model time spent and audio transcribed (their ratio is the real-time factor)
        self.busy_seconds = 0.0
        self.audio_seconds = 0.0
        self._tally = threading.Lock()  # workers add to the two figures above

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def running(self) -> int:
        return self._running

    async def transcribe(
        self, audio: np.ndarray, options: DecodeOptions, *, final: bool, audio_end: float, context: str = ""
    ) -> Transcription:
        loop = asyncio.get_running_loop()
        job = _Job((0 if final else 1, audio_end, next(self._seq)), audio, options, context, loop.create_future(), self._clock())
        heapq.heappush(self._queue, job)
        self._pump(loop)
        return await job.future  # cancelling the caller cancels the job if it has not started

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._running < self.workers and self._queue:
            interim = self._queue[0].priority[0] == 1  # finals sort first: an interim on top means no final waits
            if interim and self._interims_running >= self._interim_slots and not self._queue[0].future.cancelled():
                break
            job = heapq.heappop(self._queue)
            if job.future.cancelled():
                continue
            if interim and self.shed_interims_after is not None and self._clock() - job.queued_at > self.shed_interims_after:
                self.interims_shed += 1
                job.future.cancel()  # the party's interim is skipped; its final is not
                continue
            self._running += 1
            self._interims_running += interim
            work = loop.run_in_executor(self._executor, self._timed, job)
            work.add_done_callback(lambda done, job=job: self._finished(loop, job, done))

    def _timed(self, job: _Job) -> Transcription:
        """In a worker thread: the model call, timed."""
        started = time.perf_counter()
        try:
            return self.transcriber.transcribe(job.audio, job.options, job.context)
        finally:
            with self._tally:
                self.busy_seconds += time.perf_counter() - started
                self.audio_seconds += job.audio.size / 16000

    def _finished(self, loop: asyncio.AbstractEventLoop, job: _Job, done: asyncio.Future) -> None:
        self._running -= 1
        self._interims_running -= job.priority[0] == 1
        if not job.future.done():
            if done.cancelled():
                job.future.cancel()
            elif done.exception() is not None:
                job.future.set_exception(done.exception())
            else:
                job.future.set_result(done.result())
        self._pump(loop)

    def close(self) -> None:
        for job in self._queue:
            job.future.cancel()
        self._queue.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
