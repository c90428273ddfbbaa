"""Cluster mode: several ``coach serve`` nodes as one coach, through Redis and a shared database (issue 30).

Each node streams its own calls and writes them to the shared database (PostgreSQL), and mirrors
what it publishes to Redis: each call's messages to a bounded stream of that call
(``coach:call:{id}``), the board's summaries to one board stream (``coach:board``). So any node
serves any call: a reader of a call live on another node gets that call's stream (from its start,
then live, until it ends), and every node's board follows the board stream.

Nodes heartbeat (``coach:node:{id}``, expiring after ``node_timeout``). A node whose heartbeat has
been missing for longer than two beats is dead (a Redis restart loses every heartbeat for less than
one beat): the first node to see it takes the job (``coach:reaping:{id}``), seals each of its live
calls as ``interrupted`` with what the dead node had flushed, and says so on the board and on the
call's stream.

Publishing never waits for Redis: messages go to a bounded outbox that one task sends in batches,
in order. While Redis is away they wait there (past ``outbox_limit`` the oldest are dropped, and
counted: the database still has them) and go when it is back, so readers on other nodes catch up;
each call message carries its place in the call's log, so one sent twice is read once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from coach.bus import Board, Message, encode
from coach.errors import CoachError
from coach.server.summary import CallSummary

log = logging.getLogger("coach.cluster")

BOARD = "coach:board"
ENDED_TTL = 120  # s: a call's stream is kept this long after it ends, for its readers on other nodes (later ones read the database)
AFTER_ALL = 10**9  # the place in a call's log of the summary a reaper adds: after anything its node sent


class ClusterError(CoachError):
    """Redis cannot be reached, or the settings cannot make a cluster: one line that says why."""


def call_key(call_id: str) -> str:
    return f"coach:call:{call_id}"


def node_key(node_id: str) -> str:
    return f"coach:node:{node_id}"


@dataclass
class ClusterCounters:
    published: int = 0  # messages sent to Redis
    dropped: int = 0  # messages dropped from a full outbox while Redis was away
    remote_readers: int = 0  # readers served a call live on another node
    interrupted: int = 0  # calls of dead nodes sealed by this node


class Cluster:
    """This node's part in the cluster. ``store`` (shared) and ``store_executor`` are the node's own;
    ``board`` is its board, which this fills with the other nodes' calls."""

    def __init__(
        self, url: str, node_id: str, board: Board, store, store_executor: Executor, *, heartbeat: float = 1.5,
        node_timeout: float = 6.0, stream_events: int = 5000, board_events: int = 10000, outbox_limit: int = 100_000,
        keep_ended: int = 200, local: Callable[[str], bool] = lambda call_id: False,
    ) -> None:
        import redis.asyncio as redis

        self._errors = (redis.RedisError, OSError)
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=max(10.0, 2 * node_timeout))
        # the heartbeat's own connection, with timeouts under a beat: a stuck call on the shared one
        # must not let this node's heartbeat lapse
        self._beats = redis.Redis.from_url(url, socket_connect_timeout=heartbeat, socket_timeout=heartbeat)
        self.local = local  # whether a call id is live (or starting) on this node
        self.where = describe_redis(url)
        self.node_id = node_id
        self.board = board
        self.store = store
        self.store_executor = store_executor
        self.heartbeat = heartbeat
        self.node_timeout = node_timeout
        self.stream_events = stream_events
        self.board_events = board_events
        self.outbox_limit = outbox_limit
        self.keep_ended = keep_ended
        self.counters = ClusterCounters()
        self.started_at = time.time()
        self._outbox: deque[tuple[int, str, dict[str, str], bool]] = deque()  # (number, key, fields, ends the stream)
        self._numbers = itertools.count()
        self._wake = asyncio.Event()
        self._board_from = "0-0"
        self._remote_ended: OrderedDict[str, None] = OrderedDict()
        self._missing_since: dict[str, float] = {}  # nodes whose heartbeat was missing: since when
        self._tasks: list[asyncio.Task] = []
        self.away: str | None = None  # why Redis cannot be reached now (None: it can)

    # ---- start and stop ----
    async def start(self) -> None:
        try:
            await self.redis.ping()
            await self._beat()
            await self._load_board()
        except self._errors as exc:
            await self.redis.aclose()
            await self._beats.aclose()
            raise ClusterError(f"cannot reach Redis at {self.where}: {_reason(exc)}") from None
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(job(), name=f"cluster {job.__name__}")
                       for job in (self._publishing, self._heartbeating, self._following_board, self._reaping)]
        log.info("node %s joined the cluster at %s", self.node_id, self.where)

    async def aclose(self) -> None:
        """Send what is waiting (for a few seconds at most), stop every task, leave the cluster."""
        if self._outbox and self.away is None:
            self._wake.set()
            try:
                await asyncio.wait_for(self._drained(), 5.0)
            except TimeoutError:
                log.warning("%d message(s) not sent to Redis before stopping", len(self._outbox))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.redis.delete(node_key(self.node_id))  # left, not dead: its calls were ended here
        except self._errors:
            pass
        await self.redis.aclose()
        await self._beats.aclose()

    async def _drained(self) -> None:
        while self._outbox:
            await asyncio.sleep(0.05)  # the publisher empties the outbox; waited for with a deadline

    @property
    def waiting(self) -> int:
        """Messages not yet sent to Redis."""
        return len(self._outbox)

    # ---- out: what this node publishes ----
    def mirror_call(self, call_id: str):
        """The mirror of one call's log (``coach.bus.CallLog``): its messages, then its end, to its stream."""
        key = call_key(call_id)

        def mirror(place: int, message: Message | None) -> None:
            if message is None:
                self._queue(key, {"end": "1", "n": str(place), "node": self.node_id}, True)
            else:
                self._queue(key, {"m": encode(message), "n": str(place), "node": self.node_id}, False)

        return mirror

    def mirror_board(self, summary: Message) -> None:
        """The mirror of this node's board: each summary it publishes, to the board stream."""
        self._queue(BOARD, {"m": encode(summary), "node": self.node_id}, False)

    def _queue(self, key: str, fields: dict[str, str], ends: bool) -> None:
        if len(self._outbox) >= self.outbox_limit:
            self._outbox.popleft()
            self.counters.dropped += 1
        self._outbox.append((next(self._numbers), key, fields, ends))
        self._wake.set()

    async def _publishing(self) -> None:
        pause = 0.2
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                batch = list(itertools.islice(self._outbox, 500))
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for _, key, fields, ends in batch:
                            pipe.xadd(key, fields, maxlen=self.board_events if key == BOARD else self.stream_events, approximate=True)
                            if ends:
                                pipe.expire(key, ENDED_TTL)
                        await pipe.execute()
                except self._errors as exc:
                    self._away(exc)
                    await asyncio.sleep(pause)  # Redis is away: try again, less often the longer it stays away
                    pause = min(2.0, pause * 2)
                    continue
                self._back()
                pause = 0.2
                last = batch[-1][0]
                while self._outbox and self._outbox[0][0] <= last:  # (the oldest may have been dropped meanwhile)
                    self._outbox.popleft()
                self.counters.published += len(batch)

    def _away(self, exc: BaseException) -> None:
        if self.away is None:
            self.away = _reason(exc)
            log.warning("Redis at %s is away (%s): this node's messages wait for it", self.where, self.away)

    def _back(self) -> None:
        if self.away is not None:
            log.warning("Redis at %s is back", self.where)
            self.away = None

    # ---- in: a call live on another node ----
    async def follow(self, call_id: str) -> AsyncIterator[str]:
        """The messages (JSON text) of a call live on another node, from its start, until it ends.
        If its stream lacks its start (trimmed, or lost with a Redis restart), the events its node
        has written to the database come first."""
        self.counters.remote_readers += 1
        loop = asyncio.get_running_loop()
        key, last, seen = call_key(call_id), "0-0", -1
        backfilled: set[str] | None = None  # the stored events sent first, to skip in the stream
        idle, ending = 0, False
        while True:
            try:
                got = await self.redis.xread({key: last}, count=500, block=None if ending else int(self.heartbeat * 1000))
            except self._errors:
                await asyncio.sleep(0.5)  # Redis is away: read on from the same place when it is back
                continue
            if not got:
                if ending:
                    return  # the call ended and its stream has nothing more
                idle += 1
                if idle % 3 == 0:  # quiet for a few beats: is it still live? (its end may have been lost with a Redis restart)
                    record = await loop.run_in_executor(self.store_executor, self.store.call, call_id)
                    ending = record is None or record.state != "live"  # one more look at the stream, then stop
                continue
            idle = 0
            for entry, fields in got[0][1]:
                last = entry
                if b"end" in fields:
                    return
                try:
                    place, text = int(fields[b"n"]), fields[b"m"].decode()
                except (KeyError, ValueError, UnicodeDecodeError):
                    log.warning("skipped a malformed entry in %s", key)
                    continue
                if place <= seen:  # sent twice (a retry after Redis went away mid-batch)
                    continue
                if backfilled is None:
                    backfilled = set()
                    if place > 0:  # the stream starts after the call did
                        for event in await loop.run_in_executor(self.store_executor, self.store.events, call_id):
                            event.pop("seq", None)
                            backfilled.add(_canonical(event))
                            yield encode(event)
                seen = place
                if backfilled and _canonical(json.loads(text)) in backfilled:
                    continue
                yield text

    # ---- the board: every node's calls ----
    async def _load_board(self) -> None:
        """The floor as it is: the latest summary of each call in the board stream, and every call
        the database has live that the stream no longer holds."""
        entries = await self.redis.xrevrange(BOARD, count=self.board_events)
        latest: dict[str, Message] = {}
        for entry, fields in reversed(entries):
            self._board_from = entry.decode()
            if (summary := _summary(fields, self.node_id)) is not None:
                latest[summary["call_id"]] = summary
        for summary in latest.values():
            self._absorb(summary)
        loop = asyncio.get_running_loop()
        for call_id, node in await loop.run_in_executor(self.store_executor, self.store.live_calls):
            if call_id not in self.board.calls and node != self.node_id:
                record = await loop.run_in_executor(self.store_executor, self.store.call, call_id)
                if record is not None:
                    self._absorb(CallSummary.of(record).board())

    async def _following_board(self) -> None:
        while True:
            try:
                got = await self.redis.xread({BOARD: self._board_from}, count=500, block=int(self.heartbeat * 1000))
            except self._errors:
                await asyncio.sleep(0.5)  # Redis is away: read on from the same place when it is back
                continue
            for entry, fields in got[0][1] if got else ():
                self._board_from = entry.decode()
                if (summary := _summary(fields, self.node_id)) is not None:
                    self._absorb(summary)

    def _absorb(self, summary: Message) -> None:
        self.board.absorb(summary)
        if summary.get("state") != "live":
            self._remote_ended[summary["call_id"]] = None
            self._remote_ended.move_to_end(summary["call_id"])
            while len(self._remote_ended) > self.keep_ended:
                old, _ = self._remote_ended.popitem(last=False)
                self.board.forget(old)

    # ---- heartbeats, and the calls of nodes that died ----
    async def _beat(self, first: bool = True) -> None:
        key, value, ttl = node_key(self.node_id), json.dumps({"since": round(self.started_at, 3)}), int(self.node_timeout * 1000)
        if first or not await self._beats.set(key, value, px=ttl, xx=True):
            if not first:
                log.warning("this node's heartbeat had lapsed (Redis restarted, or this node stalled): if it stayed away longer "
                            "than COACH_SERVER__NODE_TIMEOUT, another node may have sealed its live calls as interrupted")
            await self._beats.set(key, value, px=ttl)

    async def _heartbeating(self) -> None:
        while True:
            try:
                await self._beat(first=False)
            except self._errors:
                pass  # the publisher says when Redis is away and back
            await asyncio.sleep(self.heartbeat)  # the heartbeat's period

    async def _reaping(self) -> None:
        while True:
            try:
                await self.reap()
            except self._errors:
                pass  # Redis is away: nobody can tell who is alive; try again next beat
            except Exception:
                log.exception("could not check the other nodes' calls")
            await asyncio.sleep(self.heartbeat)  # the check's period

    async def reap(self) -> list[str]:
        """Seal the live calls of every node that is dead, and this node's own calls that the
        database still has live and this node does not (a restart under the same name, a failed
        end): the ids of the calls sealed here. Calls of nodes with no name (a node outside the
        cluster) are left to that node. The board's lines of calls that ended without their last
        summary reaching it are brought up to date."""
        loop = asyncio.get_running_loop()
        live = await loop.run_in_executor(self.store_executor, self.store.live_calls)
        now = time.monotonic()
        sealed: list[str] = []
        own = [call_id for call_id, node in live if node == self.node_id and not self.local(call_id)]
        if own:
            sealed += await self._seal(own, self.node_id, "this node lost the call (it restarted, or could not end it); kept up to what it had written")
        nodes = {node for _, node in live if node is not None and node != self.node_id}
        self._missing_since = {node: since for node, since in self._missing_since.items() if node in nodes}
        for node in nodes:
            if await self.redis.exists(node_key(node)):
                self._missing_since.pop(node, None)
                continue
            since = self._missing_since.setdefault(node, now)
            if now - since < 2 * self.heartbeat + 1.0:
                continue  # missing for less than two beats: perhaps only a Redis restart
            claim = f"coach:reaping:{node}"
            if not await self.redis.set(claim, self.node_id, nx=True, ex=60) and await self.redis.get(claim) != self.node_id.encode():
                continue  # another node is sealing them
            sealed += await self._seal([c for c, n in live if n == node], node,
                                       f"its node ({node}) stopped during the call; kept up to what it had written")
            await self.redis.delete(claim)
            self._missing_since.pop(node, None)
        await self._refresh_board({call_id for call_id, _ in live})
        return sealed

    async def _seal(self, call_ids: list[str], node: str, why: str) -> list[str]:
        """Mark the calls interrupted and say so on every board and on their streams first; then
        seal their recordings."""
        loop = asyncio.get_running_loop()
        marked = []
        for call_id in call_ids:
            try:
                record = await loop.run_in_executor(self.store_executor, self.store.interrupt, call_id, why, node, False)
            except Exception:
                log.exception("could not mark call %s interrupted", call_id)
                continue
            if record is None:
                continue  # ended (or taken over) meanwhile
            summary = CallSummary.of(record).board()
            self.board.publish(summary)  # here, and to every node's board
            mirror = self.mirror_call(call_id)
            mirror(AFTER_ALL, {**summary, "at": round(record.duration, 2), "ts": round(time.time(), 3)})
            mirror(AFTER_ALL + 1, None)
            self.counters.interrupted += 1
            marked.append(call_id)
        for call_id in marked:
            try:
                await loop.run_in_executor(self.store_executor, self.store.seal, call_id)
            except Exception:
                log.exception("could not seal the recording of call %s", call_id)
        return marked

    async def _refresh_board(self, live: set[str]) -> None:
        """A call the board shows live that the database has not live ended without its last
        summary reaching this node (lost while Redis was away): show it as stored."""
        loop = asyncio.get_running_loop()
        for call_id in [c for c, summary in self.board.calls.items() if summary.get("state") == "live" and c not in live]:
            if self.local(call_id):
                continue
            record = await loop.run_in_executor(self.store_executor, self.store.call, call_id)
            if record is not None and record.state != "live":
                self._absorb(CallSummary.of(record).board())


def describe_redis(url: str) -> str:
    """Where ``url`` points, without its password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"
    except ValueError:
        return "the configured Redis URL (unreadable)"


def _summary(fields: dict, own_node: str) -> Message | None:
    """The board summary in a board stream entry, unless this node sent it or it is malformed."""
    try:
        if fields.get(b"node", b"").decode() == own_node:
            return None
        summary = json.loads(fields[b"m"])
        return summary if isinstance(summary, dict) and isinstance(summary.get("call_id"), str) else None
    except (KeyError, ValueError, UnicodeDecodeError):
        log.warning("skipped a malformed board entry")
        return None


def _canonical(message: Message) -> str:
    return json.dumps(message, sort_keys=True)


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
