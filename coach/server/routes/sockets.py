"""The websockets: call audio in (``/ws/twilio``, ``/ws/audiohook``, ``/ws/audio``) and events out (``/ws/calls/{id}``,
``/ws/board``). Every connection passes the origin and rate checks first."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket

from coach.server import readers
from coach.server.audiohook import Access, AudioHookSession
from coach.server.auth import Principal
from coach.server.deps import State
from coach.server.guards import TOO_MANY, origin_allowed, twilio_signature_valid
from coach.server.ingest import FORBIDDEN, UNAUTHENTICATED, AudioStream, TwilioStream
from coach.server.state import ServerState

log = logging.getLogger("coach.server")

router = APIRouter()


async def refuse(ws: WebSocket, state: ServerState, code: int, reason: str, why: str) -> None:
    # logged before any token is checked: our own words only, nothing the client wrote (the route's
    # pattern, not its path; the refusal's kind, not a reason that may quote a header)
    route = getattr(ws.scope.get("route"), "path", "websocket")
    log.warning("refused %s from %s (%d): %s", route, ws.client.host if ws.client else "?", code, why)
    state.counters.refused[why] += 1
    await ws.accept()
    await ws.close(code, reason[:120])


async def admitted(ws: WebSocket, state: ServerState) -> bool:
    """Origin and rate checks, before anything else: a refusal gets its close code and a log line."""
    limits = state.settings.server
    origin = ws.headers.get("origin")
    if not origin_allowed(origin, ws.headers.get("host"), limits.allowed_origins):
        await refuse(ws, state, FORBIDDEN, f"origin {origin[:60]} may not open this server's websockets", "origin")
        return False
    if not state.rate.allow(ws.client.host if ws.client else None):
        await refuse(ws, state, TOO_MANY, f"over {limits.connections_per_minute} connections a minute from this address: try again later", "rate")
        return False
    return True


# ---- audio in ----
@router.websocket("/ws/twilio")
async def twilio(ws: WebSocket, state: State, token: str | None = None) -> None:
    await twilio_stream(ws, state, token, None)


@router.websocket("/ws/twilio/{call_sid}")
async def twilio_call(ws: WebSocket, state: State, call_sid: str, token: str | None = None) -> None:
    """The URL names its call (``wss://host/ws/twilio/{CallSid}``, written by the TwiML webhook):
    Twilio's signature over it is good for that call alone."""
    await twilio_stream(ws, state, token, call_sid)


async def twilio_stream(ws: WebSocket, state: ServerState, token: str | None, named_call: str | None) -> None:
    if not await admitted(ws, state):
        return
    settings, limits = state.settings, state.settings.server
    twilio_token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    signed = None
    signature = ws.headers.get("x-twilio-signature")
    if twilio_token and signature is not None:
        query = f"?{ws.url.query}" if ws.url.query else ""
        # behind a proxy, the URL Twilio signed is the public one, never one built from the client's Host
        urls = [limits.public_url.rstrip("/") + ws.url.path + query] if limits.public_url else [str(ws.url)]
        if not twilio_signature_valid(twilio_token, signature, urls):
            return await refuse(ws, state, UNAUTHENTICATED, "X-Twilio-Signature does not sign this URL with the configured auth token", "signature")
        # A signature over a URL that names no call is the same for every call: one leaked header
        # would stream forever. Only a URL that names its call (Twilio's <Stream> url takes no query
        # string, so in its path) stands in for a token, and for that call only; a bare one still
        # needs a token, as an unsigned stream does.
        if named_call is not None:
            signed = Principal("ingest", name="twilio")
    stream = TwilioStream(state.registry, state.tokens, limits.max_message_bytes, limits.stream_idle_timeout, signed, named_call)
    await stream.serve(ws, token)


@router.websocket("/ws/audiohook")
async def audiohook(ws: WebSocket, state: State) -> None:
    """Genesys Cloud AudioHook Monitor (protocol 2): ``coach/server/audiohook.py``."""
    if not await admitted(ws, state):
        return
    settings, limits = state.settings, state.settings.server
    access = Access(settings.audiohook_api_key.get_secret_value() if settings.audiohook_api_key else None,
                    settings.audiohook_client_secret.get_secret_value() if settings.audiohook_client_secret else None)
    await AudioHookSession(state.registry, state.tokens, access, limits.max_message_bytes, limits.stream_idle_timeout,
                           limits.public_url).serve(ws)


@router.websocket("/ws/audio")
async def audio(ws: WebSocket, state: State, token: str | None = None) -> None:
    limits = state.settings.server
    if await admitted(ws, state):
        await AudioStream(state.registry, state.tokens, limits.max_message_bytes, limits.stream_idle_timeout).serve(ws, token)


# ---- events out ----
@router.websocket("/ws/calls/{call_id}")
async def call_events(ws: WebSocket, state: State, call_id: str, token: str | None = None) -> None:
    if await admitted(ws, state):
        await readers.call_events(ws, call_id, token, state.registry, state.tokens, state.settings.server.send_timeout)


@router.websocket("/ws/board")
async def board(ws: WebSocket, state: State, token: str | None = None) -> None:
    if await admitted(ws, state):
        await readers.board(ws, token, state.registry, state.tokens, state.settings.server.send_timeout)
