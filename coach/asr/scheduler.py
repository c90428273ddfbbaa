"""The ASR scheduler: one shared speech model, its own executor, and a queue ordered by urgency.

Every party of every call submits here. Finals go before interims, and among equals the job whose
audio ended first goes first, so no call starves another. The model runs in a dedicated executor
sized to it (``workers`` threads, each using ``cpu_threads``), never on the event loop. With more
than one worker, interims never hold every worker: one is kept for finals, which the prompts wait on.
Live, a :class:`~coach.asr.ladder.QualityLadder` reads how long finals wait and decides what quality
they give up to stay in time (fewer interims, greedy finals, finals held briefly to batch, long
finals in bounded pieces); each result says the rung it was decoded on.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from coach.asr.ladder import BATCHED_FINALS, BOUNDED_PIECES, FEWER_INTERIMS, GREEDY_FINALS, RUNGS, QualityLadder
from coach.asr.transcriber import SAMPLE_RATE, DecodeOptions, Transcription, encoder_window, joined, quiet_cuts

SAME_WINDOW = 1.5  # jobs batched together share the longest window: at most this times the shortest
LONG_CONTEXT = 20  # words: contexts at least this long may be cut to each other's length in a batch
BATCH_WAIT = 0.12  # s: on the ladder's batching rung, how long a lone final waits for company at most
PIECE_SECONDS = 8.0  # on the ladder's top rung, finals longer than this are decoded in pieces this long at most


log = logging.getLogger("coach.asr")


class Transcriber(Protocol):
    def transcribe(self, audio: np.ndarray, options: DecodeOptions, context: str = "") -> Transcription: ...

    # needed only with max_batch > 1
    def transcribe_batch(self, requests: list[tuple[np.ndarray, str]], options: DecodeOptions) -> list[Transcription]: ...


@dataclass(order=True)
class _Job:
    priority: tuple[int, float, int]
    audio: np.ndarray = field(compare=False)
    options: DecodeOptions = field(compare=False)  # as decoded: ``asked``, less what the ladder gives up
    context: str = field(compare=False)
    future: asyncio.Future = field(compare=False)
    queued_at: float = field(compare=False, default=0.0)
    rung: int | None = field(compare=False, default=None)  # the ladder's rung when a worker took it up
    held: bool = field(compare=False, default=False)  # held back once for company (the batching rung)
    group: int | None = field(compare=False, default=None)  # the pieces of one final: never decoded in one batch
    asked: DecodeOptions | None = field(compare=False, default=None)  # the options the party asked for

    def __post_init__(self) -> None:
        self.asked = self.asked or self.options

    @property
    def interim(self) -> bool:
        return self.priority[0] == 1

    @property
    def window(self) -> float:
        return encoder_window(self.audio.size / 16000, self.options)

    @property
    def context_kind(self) -> int:
        """Jobs decode together only with contexts of the same kind: none, short (exact length) or long."""
        words = len(self.context.split())
        return LONG_CONTEXT if words >= LONG_CONTEXT else words


class AsrScheduler:
    """``max_batch``: when jobs wait, a free worker takes up to this many that decode alike (same
    options, windows within 1.5x, contexts of a kind) as one batch: on a CPU a decoding step costs
    about the same for one utterance or eight, so many calls cost much less than one each. Jobs
    never wait to form a batch; a batch forms only from jobs already queued behind busy workers.
    1: every job alone (``coach analyze``, whose output must not depend on timing).

    ``shed_interims_after``: under load, an interim that has waited this long (s) is dropped, not run:
    its words are stale, and the final will carry them (the first step of degrading gracefully). None:
    never (``coach analyze`` runs in lockstep, where dropping would make the output machine-dependent).

    ``ladder``: live calls only; what finals give up as they fall behind (``coach/asr/ladder.py``). It
    shares ``clock``. None: every final at full quality, whatever the wait (``coach analyze``)."""

    def __init__(self, transcriber: Transcriber, workers: int = 1, shed_interims_after: float | None = None,
                 clock=time.monotonic, max_batch: int = 1, ladder: QualityLadder | None = None,
                 batch_wait: float = BATCH_WAIT, piece_seconds: float = PIECE_SECONDS) -> None:
        self.transcriber = transcriber
        self.workers = workers
        self.max_batch = max_batch
        self.shed_interims_after = shed_interims_after
        self.ladder = ladder
        self.batch_wait = batch_wait
        self.piece_seconds = piece_seconds
        self.finals_by_rung = [0] * len(RUNGS)  # finals' jobs taken up on each rung (pieces count one each)
        self.held_for_batch = 0  # finals held on the batching rung for company
        self.pieced = 0  # finals decoded in pieces
        self._wake: asyncio.TimerHandle | None = None
        self.interims_shed = 0
        self.interims_deferred = 0  # chunks whose interim was not asked for (counted by the parties)
        self.batches = 0  # model calls made, and the jobs they carried: their ratio is the mean batch size
        self.batched_jobs = 0
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

    def overdue(self) -> float:
        """How long (s) the most overdue waiting final has waited past the later of its queueing and
        its due time: the node's own backlog, which admission reads. A job of a call that sends faster
        than real time is due only when its audio would have arrived in real time, so such a sender
        does not make the node look full (live calls give each job its due time; see ``audio_end``)."""
        now = self._clock()
        waits = [now - max(job.queued_at, job.priority[1]) for job in self._queue if not job.interim and not job.future.done()]
        return max([0.0, *waits])

    @property
    def wants_interims(self) -> bool:
        """False while the model is falling behind (the oldest waiting job has waited half of
        ``shed_interims_after``): parties then ask for interims less often (the second step of
        degrading, before stale ones are shed). Always True when nothing is shed (``coach analyze``)."""
        if self.shed_interims_after is None:
            return True
        if self.ladder is not None and self.ladder.rung >= FEWER_INTERIMS:
            return False
        waiting = [job.queued_at for job in self._queue if not job.future.done()]
        return not waiting or self._clock() - min(waiting) <= self.shed_interims_after / 2

    async def transcribe(
        self, audio: np.ndarray, options: DecodeOptions, *, final: bool, audio_end: float, context: str = "",
        _group: int | None = None,
    ) -> Transcription:
        if final and _group is None and self.ladder is not None and self.ladder.rung >= BOUNDED_PIECES and audio.size > self.piece_seconds * SAMPLE_RATE:
            return await self._in_pieces(audio, options, audio_end, context)
        loop = asyncio.get_running_loop()
        job = _Job((0 if final else 1, audio_end, next(self._seq)), audio, options, context, loop.create_future(), self._clock(), group=_group)
        heapq.heappush(self._queue, job)
        self._pump(loop)
        return await job.future  # cancelling the caller cancels the job if it has not started

    async def _in_pieces(self, audio: np.ndarray, options: DecodeOptions, audio_end: float, context: str) -> Transcription:
        """A long final as pieces cut at its quietest moments, each its own job (due when its own audio
        was), so that no decode holds a worker long, other calls' finals go between them, and the
        pieces run on several workers at once (never in one batch with each other)."""
        bounds = [0, *quiet_cuts(audio, self.piece_seconds), audio.size]
        self.pieced += 1
        seconds, group = audio.size / SAMPLE_RATE, next(self._seq)
        async with asyncio.TaskGroup() as pieces:  # one piece failing cancels the others
            jobs = [pieces.create_task(self.transcribe(audio[a:b], options, final=True, audio_end=audio_end - (seconds - b / SAMPLE_RATE),
                                                       context=context, _group=group)) for a, b in zip(bounds, bounds[1:])]
        return joined([job.result() for job in jobs])

    def _effective(self, job: _Job) -> DecodeOptions:
        """A final's options on the ladder's rung now: greedy from its greedy rung, and loops cut
        rather than decoded again in 30 s on its top rung."""
        if job.interim or self.ladder is None:
            return job.options
        rung, options = self.ladder.rung, job.asked
        if rung >= GREEDY_FINALS and options.beam_size > 1:
            options = replace(options, beam_size=1)
        if rung >= BOUNDED_PIECES and options.retry_loops:
            options = replace(options, retry_loops=False)
        return options

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.ladder is not None:
            self.ladder.observe(self.overdue())
        held: list[_Job] = []  # lone finals waiting for company; the jobs behind them go on meanwhile
        while self._running < self.workers and (job := self._next()) is not None:
            if job.interim and self._interims_running >= self._interim_slots:
                heapq.heappush(self._queue, job)  # no final waits (they sort first): keep a worker for the next one
                break
            if not job.interim and self.ladder is not None:
                waited = self._clock() - max(job.queued_at, job.priority[1])
                self.ladder.observe(max(0.0, waited - self.batch_wait) if job.held else waited)  # holding is not lag
                job.options, job.rung = self._effective(job), self.ladder.rung
            companions = self._companions(job)
            if not companions and self._hold(job, loop):
                held.append(job)
                continue
            batch = [job, *companions]
            for other in companions:
                other.rung = job.rung
            if job.rung is not None:
                self.finals_by_rung[job.rung] += len(batch)
            self._running += 1
            self._interims_running += job.interim
            work = loop.run_in_executor(self._executor, self._timed, batch)
            work.add_done_callback(lambda done, batch=batch: self._finished(loop, batch, done))
        for job in held:
            heapq.heappush(self._queue, job)

    def _hold(self, job: _Job, loop: asyncio.AbstractEventLoop) -> bool:
        """On the batching rung, a final with no company waits for some until ``batch_wait`` after it
        was queued (never longer): True to hold it, with the scheduler woken when its wait is over."""
        if job.interim or job.group is not None or self.ladder is None or self.ladder.rung < BATCHED_FINALS or self.max_batch <= 1:
            return False  # (a piece of a long final goes at once: its company would be its own other pieces)
        until = job.queued_at + self.batch_wait
        if self._clock() >= until:
            return False
        self.held_for_batch += not job.held
        job.held = True
        if self._wake is None or self._wake.when() > loop.time() + (until - self._clock()):
            if self._wake is not None:
                self._wake.cancel()
            self._wake = loop.call_later(until - self._clock(), self._woken, loop)
        return True

    def _woken(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = None
        self._pump(loop)

    def _next(self) -> _Job | None:
        """The most urgent job still wanted (cancelled and stale ones are dropped on the way)."""
        while self._queue:
            job = heapq.heappop(self._queue)
            if job.future.cancelled():
                continue
            if job.interim and self.shed_interims_after is not None and self._clock() - job.queued_at > self.shed_interims_after:
                self.interims_shed += 1
                job.future.cancel()  # the party's interim is skipped; its final is not
                continue
            return job
        return None

    def _companions(self, first: _Job) -> list[_Job]:
        """Queued jobs that can be decoded in one batch with ``first``, most urgent first."""
        if self.max_batch <= 1:
            return []
        taken: list[_Job] = []
        low = high = first.window
        groups = {first.group}
        for job in sorted(self._queue):
            if len(taken) + 1 >= self.max_batch:
                break
            if job.future.cancelled() or self._effective(job) != first.options or job.context_kind != first.context_kind:
                continue
            if job.group is not None and job.group in groups:
                continue
            window = job.window
            if max(high, window) > SAME_WINDOW * min(low, window):
                continue
            low, high = min(low, window), max(high, window)
            groups.add(job.group)
            taken.append(job)
        for job in taken:
            job.options = first.options
        if taken:
            chosen = {id(job) for job in taken}
            self._queue = [job for job in self._queue if id(job) not in chosen]
            heapq.heapify(self._queue)
        return taken

    def _timed(self, batch: list[_Job]) -> list[Transcription | Exception]:
        """In a worker thread: the model call, timed. A batch that fails is done again one job at a
        time, so that one call's bad audio fails only that call."""
        started = time.perf_counter()
        try:
            if len(batch) == 1:
                return [self.transcriber.transcribe(batch[0].audio, batch[0].options, batch[0].context)]
            try:
                return self.transcriber.transcribe_batch([(job.audio, job.context) for job in batch], batch[0].options)
            except Exception:
                log.warning("a batch of %d failed; transcribing its jobs one by one", len(batch), exc_info=True)
            results: list[Transcription | Exception] = []
            for job in batch:
                try:
                    results.append(self.transcriber.transcribe(job.audio, job.options, job.context))
                except Exception as exc:
                    results.append(exc)
            return results
        finally:
            with self._tally:
                self.busy_seconds += time.perf_counter() - started
                self.audio_seconds += sum(job.audio.size for job in batch) / 16000
                self.batches += 1
                self.batched_jobs += len(batch)

    def _finished(self, loop: asyncio.AbstractEventLoop, batch: list[_Job], done: asyncio.Future) -> None:
        self._running -= 1
        self._interims_running -= batch[0].interim
        for i, job in enumerate(batch):
            if job.future.done():
                continue
            if done.cancelled():
                job.future.cancel()
            elif done.exception() is not None:
                job.future.set_exception(done.exception())
            elif isinstance(result := done.result()[i], Exception):
                job.future.set_exception(result)
            else:
                job.future.set_result(result if job.rung is None else replace(result, rung=job.rung))
        self._pump(loop)

    def close(self) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        for job in self._queue:
            job.future.cancel()
        self._queue.clear()
        self._executor.shutdown(wait=True, cancel_futures=True)
