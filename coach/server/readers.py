"""Events out: ``/ws/calls/{call_id}`` (one call, replayed from its start) and ``/ws/board``.

Each reader has a writer task fed by its own bounded queue, and a send timeout: a client that
stops reading is closed (``4408``), and neither the call nor any other reader waits for it.
In a cluster, a call live on another node is read from its Redis stream (``coach/server/cluster.py``),
and the board holds every node's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from starlette.websockets import WebSocket, WebSocketDisconnect

from coach.bus import Subscription
from coach.server.auth import TokenStore
from coach.server.calls import CallRegistry
from coach.server.ingest import FORBIDDEN, NOT_FOUND, UNAUTHENTICATED

log = logging.getLogger("coach.readers")

TOO_SLOW = 4408


async def call_events(ws: WebSocket, call_id: str, token: str | None, registry: CallRegistry, tokens: TokenStore, send_timeout: float) -> None:
    await ws.accept()
    principal = await tokens.authenticate(token)
    call = await registry.find(call_id)
    if principal is None:
        return await _refuse(ws, UNAUTHENTICATED, "missing, unknown, expired or revoked token")
    if call is None:
        return await _replay_kept(ws, call_id, principal, registry, send_timeout)
    if not principal.can_view(call.agent_id):
        return await _refuse(ws, FORBIDDEN, "an agent sees only their own calls")
    # the agent's own live view may keep the words as said (settings.redaction.agent_view)
    log_ = call.raw_log if call.raw_log is not None and principal.role == "agent" else call.log
    reader = log_.subscribe()
    try:
        await _pump(ws, _messages(reader), send_timeout, "call ended", registry.services.counters, reader)
    finally:
        log_.unsubscribe(reader)


async def board(ws: WebSocket, token: str | None, registry: CallRegistry, tokens: TokenStore, send_timeout: float) -> None:
    await ws.accept()
    principal = await tokens.authenticate(token)
    if principal is None:
        return await _refuse(ws, UNAUTHENTICATED, "missing, unknown, expired or revoked token")
    if principal.role == "ingest":
        return await _refuse(ws, FORBIDDEN, "an ingest token cannot read calls")
    accept = None if principal.sees_every_call else (lambda summary: principal.can_view(summary.get("agent_id")))
    reader = registry.board.subscribe(accept)
    try:
        await _pump(ws, _messages(reader), send_timeout, "server stopping", registry.services.counters, reader)
    finally:
        registry.board.unsubscribe(reader)


async def _replay_kept(ws: WebSocket, call_id: str, principal, registry: CallRegistry, send_timeout: float) -> None:
    """A call no longer in memory (an older one, or from before a restart): its kept events, then close."""
    store = registry.store
    loop = asyncio.get_running_loop()
    record = None if store is None else await loop.run_in_executor(registry.store_executor, store.call, call_id)
    if record is None:
        return await _refuse(ws, NOT_FOUND, f"no call {call_id[:60]}")
    if not principal.can_view(record.agent_id):
        return await _refuse(ws, FORBIDDEN, "an agent sees only their own calls")
    if record.state == "live" and registry.cluster is not None and record.node != registry.node_id:
        # live on another node: its stream, from the start, until it ends
        return await _pump(ws, registry.cluster.follow(call_id), send_timeout, "call ended", registry.services.counters)
    events = await loop.run_in_executor(registry.store_executor, store.events, call_id)
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect, TimeoutError):
        for event in events:
            await asyncio.wait_for(ws.send_text(json.dumps(event)), send_timeout)
        await ws.close(1000, f"call {record.state}")


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    log.info("reader refused (%d): %s", code, reason)
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await ws.close(code, reason)


async def _messages(reader: Subscription) -> AsyncIterator[str]:
    while (message := await reader.get()) is not None:
        yield message


async def _pump(ws: WebSocket, messages: AsyncIterator[str], send_timeout: float, done_reason: str, counters=None,
                reader: Subscription | None = None) -> None:
    """Send the messages until they end, the client leaves, or it falls behind (``reader``: it was
    dropped for falling behind its topic)."""

    async def write() -> tuple[int, str]:
        async for message in messages:
            try:
                await asyncio.wait_for(ws.send_text(message), send_timeout)
            except TimeoutError:
                return TOO_SLOW, f"not reading: no send completed in {send_timeout:g} s"
        if reader is not None and reader.dropped:
            return TOO_SLOW, "fell too far behind"
        return 1000, done_reason

    async def wait_for_leave() -> None:
        while (await ws.receive())["type"] != "websocket.disconnect":
            pass  # readers send nothing we need

    writer, leaving = asyncio.create_task(write()), asyncio.create_task(wait_for_leave())
    try:
        await asyncio.wait({writer, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (writer, leaving):
            task.cancel()
        results = await asyncio.gather(writer, leaving, return_exceptions=True)
    code, reason = results[0] if isinstance(results[0], tuple) else (None, "")
    if code is not None:
        if code == TOO_SLOW:
            log.warning("dropped a slow reader: %s", reason)
            if counters is not None:
                counters.readers_dropped += 1
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await ws.close(code, reason)
