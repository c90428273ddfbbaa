"""The call bus: each call's ordered event log, fanned out to any number of readers.

Publishing never waits. Every reader has its own bounded queue; a reader that falls so far behind
that its queue fills is dropped (its websocket is closed), so a slow or vanished client never
stalls the call or another client. A reader that joins late first gets the log so far.
Each message is turned into JSON once, however many readers it goes to.

A topic may have a ``mirror``: it is handed every message published (and None when a call's log
closes), so that a cluster can copy them to Redis for the other nodes (``coach/server/cluster.py``).
A mirror must not wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("coach.bus")

Message = dict[str, Any]
_CLOSED = None  # put on a reader's queue when the stream ends


def encode(message: Message) -> str:
    return json.dumps(message, ensure_ascii=False)


class Subscription:
    """One reader: the messages to send (as JSON text), in order, until the stream ends or the reader is dropped."""

    def __init__(self, limit: int, accept: Callable[[Message], bool] | None = None) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(limit)
        self.accept = accept  # None: every message; else only those it accepts (an agent's own calls)
        self.dropped = False  # fell behind: the reader should be closed

    def offer(self, message: Message | None, text: str | None = None) -> bool:
        """Queue ``message`` (``text`` is its JSON, if already made); None ends the stream."""
        if self.dropped:
            return False
        if message is not None and self.accept is not None and not self.accept(message):
            return True
        try:
            self.queue.put_nowait(None if message is None else text or encode(message))
            return True
        except asyncio.QueueFull:
            self.dropped = True
            # make room for the end-of-stream marker so the reader's loop wakes up and stops
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_CLOSED)
            return False

    async def get(self) -> str | None:
        """The next message as JSON text, or None when the stream has ended or this reader was dropped."""
        return await self.queue.get()


class Topic:
    """A stream of messages with readers. ``history`` keeps what a late reader must see first."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.readers: set[Subscription] = set()
        self.closed = False

    def history(self) -> Iterable[Message]:
        return ()

    def subscribe(self, accept: Callable[[Message], bool] | None = None) -> Subscription:
        backlog = list(self.history())
        reader = Subscription(self.limit + len(backlog) + 1, accept)
        for message in backlog:
            reader.offer(message)
        if self.closed:
            reader.offer(_CLOSED)
        else:
            self.readers.add(reader)
        return reader

    def unsubscribe(self, reader: Subscription) -> None:
        self.readers.discard(reader)

    def _fan_out(self, message: Message) -> None:
        text = encode(message) if self.readers else None
        for reader in list(self.readers):
            if not reader.offer(message, text):
                log.warning("a reader fell %d messages behind and was dropped", self.limit)
                self.readers.discard(reader)

    def close(self) -> None:
        self.closed = True
        for reader in self.readers:
            reader.offer(_CLOSED)
        self.readers.clear()


class CallLog(Topic):
    """One call's events in emission order; a late reader gets all of them first. ``mirror`` gets
    each message with its place in the log, and ``(len, None)`` when the log closes."""

    def __init__(self, limit: int = 1000, mirror: Callable[[int, Message | None], None] | None = None) -> None:
        super().__init__(limit)
        self.events: list[Message] = []
        self.mirror = mirror

    def history(self) -> Iterable[Message]:
        return self.events

    def publish(self, message: Message) -> None:
        self.events.append(message)
        self._fan_out(message)
        if self.mirror is not None:
            self.mirror(len(self.events) - 1, message)

    def close(self) -> None:
        if self.mirror is not None and not self.closed:
            self.mirror(len(self.events), None)
        super().close()


class Board(Topic):
    """The lead board: the latest summary of each call; a new reader gets every call's summary.
    ``mirror`` gets each summary this node publishes (not those absorbed from other nodes)."""

    def __init__(self, limit: int = 1000, mirror: Callable[[Message], None] | None = None) -> None:
        super().__init__(limit)
        self.calls: dict[str, Message] = {}
        self.mirror = mirror

    def history(self) -> Iterable[Message]:
        return list(self.calls.values())

    def publish(self, summary: Message) -> None:
        if self.absorb(summary) and self.mirror is not None:
            self.mirror(summary)

    def absorb(self, summary: Message) -> bool:
        """Show ``summary`` (a call of this node, or of another): False if it changes nothing."""
        if self.calls.get(summary["call_id"]) == summary:
            return False
        self.calls[summary["call_id"]] = summary
        self._fan_out(summary)
        return True

    def forget(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
