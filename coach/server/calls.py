"""Live calls: each one a :class:`CallPipeline` fed by its ingest websocket, publishing to its log.

A call is its own task: audio arrives on a bounded queue (a call that cannot keep up slows its own
sender, never another call), is gathered into frames and pushed through the pipeline; every event
goes to the call's log with ``call_id`` and ``ts`` added, and the call's summary to the board.
When the call ends (``stop``, a closed socket, an error) open utterances are finalised, every
result is awaited, and every task is cancelled and awaited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coach.asr.scheduler import AsrScheduler
from coach.asr.vad import StreamingVad
from coach.audio.frames import SAMPLE_RATE, CallLayout
from coach.bus import Board, CallLog, Message
from coach.config import AsrSettings, RedactionSettings
from coach.detect.text import TextAnalyzer
from coach.events import Event, PromptEvent, SignalEvent, TranscriptEvent
from coach.pipeline import CallPipeline
from coach.playbook import Playbook, PromptPolicy
from coach.redact import Redactor
from coach.server.metrics import ServiceCounters
from coach.server.recorder import CallRecorder
from coach.server.summary import CallSummary
from coach.store import CallExistsInStore, CallRecord, CallStore

log = logging.getLogger("coach.calls")

@dataclass
class CallServices:
    """What every call shares: the models (loaded once), their executors, the playbook."""

    scheduler: AsrScheduler
    asr: AsrSettings
    vad_executor: Executor
    playbook: Playbook
    text: TextAnalyzer | None = None
    vad_factory: Callable[[], StreamingVad] = StreamingVad
    frame_seconds: float = 0.096
    queue_seconds: float = 30.0  # audio a call may have waiting before its sender is slowed
    reader_limit: int = 1000  # messages a websocket reader may fall behind before it is dropped
    counters: ServiceCounters = field(default_factory=ServiceCounters)  # for /metrics
    redaction: RedactionSettings = field(default_factory=RedactionSettings)
    # redaction's regular expressions run here, never on the event loop (None: a thread of its own per call)
    redact_executor: Executor | None = None
    # the examples of the playbook's own signals, embedded by the text models (coach/detect/custom.py)
    meaning: tuple = ()
    # cluster mode: a call's id -> the mirror of its log to the other nodes (coach/server/cluster.py)
    mirror: Callable[[str], Callable[[int, Message | None], None]] | None = None


class CallRefused(Exception):
    """The server is at capacity: the caller should try again later."""


class TooManyCalls(CallRefused):
    """One sender (token) is streaming as many calls as it may."""


class CallExists(Exception):
    """A stream for this call id is already live, or a call with this id is already kept."""


class CallKept(CallExists):
    """A call with this id was streamed before, has ended, and is kept."""


class LiveCall:
    def __init__(
        self, call_id: str, agent_id: str | None, layout: CallLayout, services: CallServices, board: Board,
        recorder: CallRecorder | None = None, sender: str | None = None,
    ) -> None:
        self.call_id = call_id
        self.agent_id = agent_id
        self.sender = sender  # who streams it (a token id): for the per-token limit
        self.started_at = time.time() if recorder is None else recorder.summary.started_at
        self.summary = recorder.summary if recorder is not None else CallSummary(call_id, agent_id, self.started_at)
        self._started = time.monotonic()  # the scheduler's clock: this call's audio is due at _started + call time
        self._behind_allowed = services.queue_seconds  # seconds of audio its analysis may be behind before its intake waits
        self.ended_at: float | None = None
        self.state = "live"
        # redacted: what leads, QA, the store and the other nodes of a cluster get
        self.log = CallLog(services.reader_limit, services.mirror(call_id) if services.mirror is not None else None)
        redaction = services.redaction
        self.redactor = Redactor(redaction.context_seconds) if redaction.enabled else None
        self._silence_audio = redaction.silence_audio
        # the agent's own live view, with the words as said (never stored)
        self.raw_log = CallLog(services.reader_limit) if redaction.enabled and redaction.agent_view == "raw" else None
        self.received = 0.0  # seconds of audio taken in from the sender
        self._closing = False  # the call's end is under way (cancel() then waits for it, not cut it)
        self.error: str | None = None
        self._board = board
        self._counters = services.counters
        self.recorder = recorder
        self._frame = int(services.frame_seconds * SAMPLE_RATE)
        self._carry: list[np.ndarray] = []  # audio not yet a whole frame
        self._held = 0
        # whole frames waiting for the pipeline: at most queue_seconds of audio
        self._audio: asyncio.Queue[np.ndarray | None] = asyncio.Queue(max(2, int(services.queue_seconds / services.frame_seconds)))
        self.pipeline = CallPipeline(
            layout, services.scheduler, services.asr, self._emit, services.vad_executor,
            vad_factory=services.vad_factory, policy=PromptPolicy(services.playbook), text=services.text,
            due_offset=self._started, meaning=services.meaning,
        )
        # events leave in the order the pipeline made them, each redacted off the event loop first
        self._outbox: asyncio.Queue[tuple[Message, Event | None] | None] = asyncio.Queue()
        self._redact_executor = services.redact_executor
        line = self.summary.board()
        self._publish(self._stamp({**line, "at": 0.0}))  # the call's own stream opens with its summary
        board.publish(line)
        if recorder is not None:
            recorder.start()
        loop = asyncio.get_running_loop()
        self._publisher = loop.create_task(self._publishing(), name=f"publish {call_id}")
        self.task = loop.create_task(self._run(), name=f"call {call_id}")

    @property
    def queued_frames(self) -> int:
        return self._audio.qsize()

    @property
    def lag(self) -> float:
        """Seconds of received audio not yet through the pipeline: waiting to be taken in, or spoken
        in an utterance that ended and still waits for the model to make its final."""
        if self.error is not None:
            return 0.0  # no analysis to fall behind: the call is only recorded
        return max(0.0, self.received - self.pipeline.caught_up_to)

    async def feed(self, block: np.ndarray) -> None:
        """Take ``(samples, channels)`` float32 audio at 16 kHz, in any size; it goes to the pipeline
        in frames of about 0.1 s (one VAD hop each, not one per 20 ms telephony chunk). Waits while
        the call is far behind."""
        if self.state != "live" or block.shape[0] == 0:
            return
        self.received += block.shape[0] / SAMPLE_RATE
        if self.recorder is not None:
            self.recorder.audio(block)  # kept as received, whether or not the analysis keeps up
        self._carry.append(block)
        self._held += block.shape[0]
        if self._held < self._frame:
            return
        audio = np.concatenate(self._carry)
        whole = audio.shape[0] - audio.shape[0] % self._frame
        self._carry, self._held = [audio[whole:]], audio.shape[0] - whole
        for start in range(0, whole, self._frame):
            if self.state != "live" or self._closing:
                return  # the call ended while this sender waited
            await self._audio.put(audio[start : start + self._frame])

    def excuse_silence(self, until: float) -> None:
        """Silence to call time ``until`` is no dead air (the customer's secure pause): as a hold notice excuses it."""
        if self.pipeline.timing is not None:
            self.pipeline.timing.excuse(until)

    async def end(self) -> None:
        """The sender is done (or gone): finish the call with what was received."""
        if not self.task.done():
            if self._held:
                await self._audio.put(np.concatenate(self._carry))
                self._carry, self._held = [], 0
            await self._audio.put(None)
        await asyncio.shield(self.task)

    async def cancel(self) -> None:
        """The server is stopping: finish now, waiting for no more audio. A call already closing (its
        events going out, its recording being sealed) is let finish that, not cut short."""
        if not self._closing:
            self.task.cancel()
        await asyncio.gather(asyncio.shield(self.task), return_exceptions=True)

    async def _run(self) -> None:
        finished = False
        try:
            while (frame := await self._audio.get()) is not None:
                while self.lag > self._behind_allowed and (pending := self.pipeline.pending()):
                    # its analysis is far behind (a sender faster than real time, or a node too slow):
                    # this call's own intake waits for its own transcriptions, so its sender is slowed
                    # and the work it queues stays bounded; no other call waits
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                await self.pipeline.push(frame)
            await self.pipeline.finish()
            finished = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one call's failure must not touch another call
            log.exception("call %s failed", self.call_id)
            self._counters.errors["pipeline"] += 1
            self.error = f"{type(exc).__name__}: {exc}"
            error = self._stamp({"type": "error", "at": round(self.pipeline.consumed, 2),
                                 "message": "the call's analysis failed; its events so far are kept, and its audio to the end"})
            self._outbox.put_nowait((error, None))
            self._fail_closed()
            # the analysis is gone, the call is not: its audio is still taken in and recorded until it ends
            while await self._audio.get() is not None:
                pass
        finally:
            self._closing = True
            if not finished and self.error is None:
                self._fail_closed()  # cut off (the server stopping): what was never read is not kept
            await asyncio.shield(self._close())

    def _fail_closed(self) -> None:
        """With no transcript to say where personal data was, the customer's unread speech is not kept."""
        if self.recorder is not None and self._silence_audio and self.redactor is not None:
            self.recorder.unread(self.pipeline.caught_up_to)

    async def _close(self) -> None:
        """The call's end, each step whatever the one before did: events out, recording sealed, state
        ended, readers closed. Shielded: a server stopping meanwhile does not cut it short."""
        try:
            await self.pipeline.aclose()
        except Exception:
            log.exception("call %s: its pipeline did not close cleanly", self.call_id)
        self._outbox.put_nowait(None)
        await asyncio.gather(self._publisher, return_exceptions=True)  # every event out (redacted) before the seal
        try:
            if self.recorder is not None:
                await self.recorder.end(self.error)
                if self.recorder.failed:
                    self._counters.errors["store"] += 1
        except Exception:
            log.exception("call %s: its recording could not be sealed", self.call_id)
            self._counters.errors["store"] += 1
        finally:
            self.state = "ended"
            self.ended_at = time.time()
            while not self._audio.empty():  # a sender waiting to hand over audio is let go (feed sees the state)
                self._audio.get_nowait()
            self.summary.state = self.state
            line = self.summary.board()
            self._publish(self._stamp({**line, "at": round(self.pipeline.consumed, 2)}))
            self._board.publish(line)
            self.log.close()
            if self.raw_log is not None:
                self.raw_log.close()
            log.info("call %s ended after %.1f s of audio", self.call_id, self.pipeline.consumed)

    def _publish(self, message: Message, raw: Message | None = None) -> None:
        self.log.publish(message)
        if self.raw_log is not None:
            self.raw_log.publish(raw or message)

    def _emit(self, event: Event) -> None:
        """From the pipeline, on the loop: stamped now, redacted and sent by the publisher, in order."""
        self._outbox.put_nowait((self._stamp(event.to_dict()), event))

    async def _publishing(self) -> None:
        loop = asyncio.get_running_loop()
        while (item := await self._outbox.get()) is not None:
            raw, event = item
            try:
                if self.redactor is not None and raw.get("type") in ("transcript", "signal"):
                    message, spans, guarded = await loop.run_in_executor(self._redact_executor, self._redact, raw)
                else:
                    message, spans, guarded = raw, [], None
            except Exception:  # redaction failed closed: the text is withheld, never sent as said
                log.exception("call %s: redaction failed; the event's text is withheld", self.call_id)
                self._counters.errors["redaction"] += 1
                message, spans, guarded = _withheld(raw), [], None
                if self.recorder is not None and isinstance(event, TranscriptEvent):
                    # what it said is unknown (perhaps "can I take the card number"): the customer is
                    # silenced from it for as long as a topic it opened would last
                    self.recorder.mute(event.speaker, event.start, event.end)
                    self.recorder.mute("customer", event.start, event.end + self.redactor.context_seconds)
            try:
                self._deliver(message, raw, event, spans, guarded)
            except Exception:  # one event that cannot be delivered must not stop the rest
                log.exception("call %s: an event could not be delivered", self.call_id)
                self._counters.errors["publish"] += 1

    def _redact(self, raw: Message) -> tuple[Message, list, float | None]:
        """In the redaction thread: the event redacted, and until when (call time) a card, account or ID
        topic is open, if it is."""
        message, spans = self.redactor.event(raw)
        return message, spans, self.redactor.guarded_until(float(raw.get("end", raw.get("at", 0.0))))

    def _deliver(self, message: Message, raw: Message, event: Event | None, spans: list, guarded: float | None) -> None:
        if spans:
            self._counters.redactions += len(spans)
        self._publish(message, raw)
        changed = self.summary.take(message)
        if self.recorder is not None:
            self.recorder.event(message)
        if event is None:  # our own message (an error): kept, nothing else to tell
            return
        self._counters.events += 1
        if self.recorder is not None and self._silence_audio and isinstance(event, TranscriptEvent):
            self.recorder.transcript(event.speaker, event.start, event.end, event.final, bool(spans), guarded)
        if isinstance(event, SignalEvent):
            self._counters.signals[event.label] += 1
        elif isinstance(event, PromptEvent):
            self._counters.prompts[event.kind] += 1
        if changed:
            self._board.publish(self.summary.board())

    def _stamp(self, message: dict[str, Any]) -> Message:
        return {**message, "call_id": self.call_id, "ts": round(time.time(), 3)}


def _withheld(message: Message) -> Message:
    field = "text" if message.get("type") == "transcript" else "evidence"
    return {**message, field: "[withheld]"} if field in message else message


@dataclass
class CallRegistry:
    """Every live call, and the most recent ended ones (their logs replay to late readers)."""

    services: CallServices
    keep_ended: int = 200
    store: CallStore | None = None  # every call is kept here as it goes
    store_executor: Executor | None = None  # the store's one writer thread
    max_calls: int = 0  # 0: no limit
    max_calls_per_sender: int = 0  # live calls one token may stream at once; 0: no limit
    refuse_lag: float = 10.0  # new calls wait until no live call is this far behind
    board: Board = field(default_factory=Board)
    node_id: str | None = None  # cluster mode: this node's name, kept with each call it streams
    cluster: Any = None  # cluster mode: the node's coach.server.cluster.Cluster (readers of other nodes' calls)
    live: dict[str, LiveCall] = field(default_factory=dict)
    ended: OrderedDict[str, LiveCall] = field(default_factory=OrderedDict)
    _starting: dict[str, asyncio.Event] = field(default_factory=dict)  # call ids whose store row is being written

    async def start(self, call_id: str, agent_id: str | None, layout: CallLayout, sender: str | None = None) -> LiveCall:
        if call_id in self.live or call_id in self._starting:
            raise CallExists(f"call {call_id} is already streaming")
        # degrading under load: interims are shed first (the scheduler); then new calls are refused,
        # so the calls already live keep a bounded lag
        if self.max_calls and len(self.live) + len(self._starting) >= self.max_calls:
            raise CallRefused(f"at capacity ({self.max_calls} live calls): try again later")
        if self.max_calls_per_sender and sender is not None:
            streaming = sum(1 for c in self.live.values() if c.sender == sender)
            if streaming >= self.max_calls_per_sender:
                raise TooManyCalls(f"this token is already streaming {streaming} calls, its limit: end one first")
        behind = self.backlog()
        if behind > self.refuse_lag:
            raise CallRefused(f"overloaded (the speech model is {behind:.0f} s behind): try again later")
        recorder = None
        if self.store is not None:
            record = CallRecord(call_id, agent_id, "live", "live", time.time(), channels=layout.recorded_channels, node=self.node_id)
            started = self._starting[call_id] = asyncio.Event()  # held while the store answers
            try:
                await asyncio.get_running_loop().run_in_executor(self.store_executor, self.store.begin, record)
            except BaseException as exc:
                del self._starting[call_id]
                started.set()
                if isinstance(exc, CallExistsInStore) and exc.state == "live":
                    raise CallExists(f"call {call_id} is already streaming{' to another node' if exc.node != self.node_id else ''}") from None
                if isinstance(exc, CallExistsInStore):
                    raise CallKept(f"call {call_id} was taken before and is kept; use a new call id") from None
                raise
        try:
            if self.store is not None:
                recorder = CallRecorder(self.store, self.store_executor, record, layout, CallSummary(call_id, agent_id, record.started_at))
            self.ended.pop(call_id, None)
            call = LiveCall(call_id, agent_id, layout, self.services, self.board, recorder, sender)
        except BaseException:
            # a call that could not be set up holds no slot, and its store row is closed
            if self.store is not None:
                await asyncio.get_running_loop().run_in_executor(self.store_executor, self.store.end, call_id, {}, "ended", "could not start")
            raise
        finally:
            if call_id in self._starting:
                self._starting.pop(call_id).set()
        self.live[call_id] = call
        self.services.counters.calls_started += 1
        call.task.add_done_callback(lambda _: self._ended(call))
        log.info("call %s started (agent %s, %s)", call_id, agent_id, "+".join(s for s, _ in layout.parties))
        return call

    def room(self) -> str | None:
        """Why this node would refuse a new call now (None: it has room): for ``/readyz``."""
        if self.max_calls and len(self.live) + len(self._starting) >= self.max_calls:
            return f"at capacity ({self.max_calls} live calls)"
        behind = self.backlog()
        if behind > self.refuse_lag:
            return f"overloaded (the speech model is {behind:.0f} s behind)"
        return None

    def backlog(self) -> float:
        """The node's own backlog (s), which admission reads: how long the most overdue final has
        waited for the speech model. Not any one call's lag: a sender faster than real time queues
        work that is not yet due, and its intake waits for its own work once it is ``queue_seconds`` behind."""
        return self.services.scheduler.overdue()

    def _ended(self, call: LiveCall) -> None:
        self.services.counters.calls_ended += 1
        if self.live.get(call.call_id) is call:
            del self.live[call.call_id]
        self.ended[call.call_id] = call
        while len(self.ended) > self.keep_ended:
            _, old = self.ended.popitem(last=False)
            self.board.forget(old.call_id)

    def has(self, call_id: str) -> bool:
        """Whether the call is live or starting on this node."""
        return call_id in self.live or call_id in self._starting

    def get(self, call_id: str) -> LiveCall | None:
        return self.live.get(call_id) or self.ended.get(call_id)

    async def find(self, call_id: str) -> LiveCall | None:
        """The call, waiting for it if it is just starting (its store row being written)."""
        if call_id not in self.live and call_id in self._starting:
            await self._starting[call_id].wait()
        return self.get(call_id)

    async def aclose(self) -> None:
        await asyncio.gather(*(call.cancel() for call in list(self.live.values())))
        self.board.close()
