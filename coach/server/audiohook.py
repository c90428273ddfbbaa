"""Call audio in from Genesys Cloud: AudioHook Monitor, protocol version 2 (``/ws/audiohook``).

Genesys is the client. It upgrades with ``Audiohook-Organization-Id``, ``-Session-Id``,
``-Correlation-Id`` and ``X-API-KEY`` (signed with an HTTP message signature when the integration
has a client secret), sends ``open``, and after our ``opened`` streams headerless PCMU frames, the
channels interleaved in the order we chose. Text messages are numbered both ways (``seq``, with
``serverseq``/``clientseq`` echoing the peer's last). The brief of the protocol, with its sources, is
``../shared/research/genesys-audiohook.md``.

- ``external`` is the customer and ``internal`` the agent (or whatever the customer hears: IVR
  prompts, hold music, a conference's mix). The call id is the ``conversationId``; a conversation
  streamed again after its session ended (a dropped connection) goes on as ``ID.2``, ``ID.3``... The
  agent id is ``customConfig``'s ``agent_id`` (or ``agentId``), which the integration sets for all of
  its calls; else none (the participant of a session is the customer).
- A refusal of any kind is a ``disconnect`` (``unauthorized`` or ``error``, with a short ``info``);
  the client then closes the session (we answer its ``close`` with ``closed``). The socket is closed
  by us only when the client does not do so in time.
- The probe (an all-zero conversation id) gets ``opened`` and ``closed`` and makes no call.
- The customer's secure pause (``paused`` ... ``resumed``) and audio the client ``discarded`` stay
  in the call's timeline as silence (never past the time the session has lasted), so that every
  time in the call is a time in the conversation; that silence is not dead air.
- A call ends, with everything received, on ``close``, on a refusal, or when the client vanishes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from coach.audio.frames import CallLayout
from coach.audio.telephony import MULAW_RATE, Resampler, mulaw_decode
from coach.server.auth import Principal, TokenStore
from coach.server.calls import CallExists, CallKept, CallRefused, CallRegistry, LiveCall

log = logging.getLogger("coach.audiohook")

VERSION = "2"
MAX_TEXT = 65_535  # characters: the protocol's largest text message
MAX_AUDIO = 65_536  # bytes: the largest audio frame taken (4 s of stereo PCMU; Genesys sends 100-200 ms)
OPEN_WITHIN = 5.0  # s: Genesys gives up on an open transaction after 5 s; ours must come first
CLOSE_WITHIN = 10.0  # s: after our disconnect or closed, the client has this long to close
GAP_SLACK = 30.0  # s: gaps may take a call's timeline this far ahead of the time its session has lasted, no further
FEED_QUEUE = 300  # items (audio frames, gaps) between the reader and the call: 30 s of 100 ms frames
MAX_SEGMENTS = 20  # sessions of one conversation kept as calls of their own (ID, ID.2, ...)
PROBE_ID = "00000000-0000-0000-0000-000000000000"
PARTIES = {"external": "customer", "internal": "agent"}
SIGNED = ("@request-target", "@authority", "audiohook-organization-id", "audiohook-session-id", "audiohook-correlation-id", "x-api-key")
SIGNATURE_SKEW = 3.0  # s of clock difference allowed, as Genesys's reference server allows
SIGNATURE_AGE = 10.0  # s: the longest a signature is good for after it was made
# ISO 8601 durations as AudioHook writes them: seconds only ("PT12.34S"); no nested quantifier
DURATION = re.compile(r"PT(\d{1,9}(?:\.\d{1,9})?)S")
CLIENT_TYPES = {"open", "ping", "update", "paused", "resumed", "discarded", "close", "error"}


class Refused(Exception):
    """End the session with ``disconnect{reason, info}``."""

    def __init__(self, reason: str, info: str) -> None:
        super().__init__(info)
        self.reason, self.info = reason, info


class Gone(Exception):
    """The client closed the socket, or the session is over."""


@dataclass(frozen=True)
class Access:
    """How AudioHook sessions are let in: ``api_key`` (besides any ingest token as the X-API-KEY) and
    ``client_secret`` (base64; when set, every session must be signed with it)."""

    api_key: str | None = None
    client_secret: str | None = None


# ---- the HTTP message signature of the upgrade ----
def signature_base(components: dict[str, str], params: str) -> str:
    """The signed text: one ``"name": value`` line per covered component, then the parameters as sent."""
    lines = [f'"{name}": {components[name]}' for name in SIGNED]
    return "\n".join([*lines, f'"@signature-params": {params}'])


def signature_valid(headers: dict[str, str], target: str, authority: str, secret: str, now: float | None = None) -> bool:
    """Whether ``Signature``/``Signature-Input`` sign this upgrade with ``secret`` (base64), label
    ``sig1``, covering the six components AudioHook signs, made in the last 10 s and not expired."""
    now = time.time() if now is None else now
    try:
        key = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        return False
    given_input, given_signature = headers.get("signature-input", ""), headers.get("signature", "")
    if not given_input or not given_signature or len(given_input) > 2000 or len(given_signature) > 500:
        return False
    params = _dictionary_member(given_input, "sig1")
    signature = _dictionary_member(given_signature, "sig1")
    if params is None or signature is None or not (signature.startswith(":") and signature.endswith(":")):
        return False
    covered, fields = _inner_list(params)
    if covered != list(SIGNED) or fields is None or not set(fields) <= {"alg", "created", "expires", "keyid", "nonce"}:
        return False
    try:
        created, expires = int(fields.get("created", "")), int(fields.get("expires", ""))
        mac = base64.b64decode(signature[1:-1], validate=True)
    except (ValueError, binascii.Error):
        return False
    api_key = headers.get("x-api-key", "")
    nonce = fields.get("nonce", "")
    if fields.get("keyid") != f'"{api_key}"' or len(nonce) < 24 or nonce[0] != '"' or nonce[-1] != '"':  # 22 characters or more
        return False
    if created > now + SIGNATURE_SKEW or expires < now - SIGNATURE_SKEW or now - created > SIGNATURE_AGE + SIGNATURE_SKEW:
        return False
    components = {"@request-target": target, "@authority": authority.lower(),
                  **{name: " ".join(headers.get(name, "").split()) for name in SIGNED[2:]}}
    expected = hmac.new(key, signature_base(components, params).encode(), hashlib.sha256).digest()
    return hmac.compare_digest(expected, mac)


def _dictionary_member(text: str, name: str) -> str | None:
    """The raw value of member ``name`` of an RFC 8941 dictionary (split at top-level commas)."""
    depth, quoted, start, members = 0, False, 0, []
    for i, ch in enumerate(text):
        if quoted:
            quoted = ch != '"' or text[i - 1] == "\\"
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            members.append(text[start:i])
            start = i + 1
    members.append(text[start:])
    for member in members:
        key, sep, value = member.strip().partition("=")
        if sep and key == name:
            return value
    return None


def _inner_list(value: str) -> tuple[list[str], dict[str, str] | None]:
    """``("a" "b");k=v;k2="w"`` -> (["a", "b"], {"k": "v", "k2": '"w"'}) (parameter values raw)."""
    if not value.startswith("("):
        return [], None
    end = value.find(")")
    if end < 0:
        return [], None
    items = value[1:end].split()
    if any(len(item) < 2 or item[0] != '"' or item[-1] != '"' for item in items):
        return [], None
    fields: dict[str, str] = {}
    for part in value[end + 1 :].split(";")[1:]:
        key, sep, raw = part.partition("=")
        if not sep or key in fields:
            return [], None
        fields[key] = raw
    return [item[1:-1] for item in items], fields


def _uuid(value: object) -> str | None:
    if not isinstance(value, str) or len(value) != 36:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _duration(value: object) -> float | None:
    match = DURATION.fullmatch(value) if isinstance(value, str) and len(value) <= 24 else None
    return float(match.group(1)) if match else None


def _choose(offers: object) -> dict | None:
    """The offered media entry to take, unmodified: stereo PCMU at 8 kHz (either order) first, else one
    party alone; None if no entry can be heard."""
    if not isinstance(offers, list):
        return None
    usable = [o for o in offers[:16] if isinstance(o, dict) and o.get("type") == "audio" and o.get("format") == "PCMU"
              and o.get("rate") == MULAW_RATE and isinstance(o.get("channels"), list) and 1 <= len(o["channels"]) <= 2
              and all(c in PARTIES for c in o["channels"]) and len(set(o["channels"])) == len(o["channels"])]
    return max(usable, key=lambda o: len(o["channels"]), default=None)


class AudioHookSession:
    """One AudioHook session on one websocket. Its reader answers every control message at once
    (a ``pong`` is never held up by the analysis); the audio, and the gaps the client reports, go
    in order through a bounded queue to its feeder, which hands them to the call."""

    def __init__(self, registry: CallRegistry, tokens: TokenStore, access: Access, max_bytes: int, idle_timeout: float | None = None,
                 public_url: str | None = None) -> None:
        self.registry = registry
        self.tokens = tokens
        self.access = access
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.public_url = public_url  # the address Genesys was given, as it signs it (behind a proxy)
        self.session_id = PROBE_ID
        self.seq = 0  # our last message's seq
        self.client_seq = 0  # the client's last message's seq
        self.state = "opening"  # -> "open" (or "probe") -> "closing"
        self.paused = False  # the client paused the stream (its secure pause)
        self.call: LiveCall | None = None
        self.channels: list[str] = []
        self.resampler: Resampler | None = None
        self.position = 0.0  # seconds of the conversation taken in (audio, and the gaps kept as silence)
        self.opened_at = 0.0  # loop time of our opened
        self.stray_frames = 0  # audio frames that came while the stream was paused (a race with the pause): dropped
        self._carry = b""
        self._work: asyncio.Queue = asyncio.Queue(FEED_QUEUE)  # ("audio", bytes) | ("gap", seconds) | None at the end
        self._feeder: asyncio.Task | None = None
        self._ending: asyncio.Task | None = None  # the call's end, begun when the session was refused
        self.ws: WebSocket | None = None

    # ---- the session ----
    async def serve(self, ws: WebSocket) -> None:
        self.ws = ws
        await ws.accept()
        headers = {k.lower(): v for k, v in ws.headers.items()}
        self.session_id = headers.get("audiohook-session-id", "") if _uuid(headers.get("audiohook-session-id")) else PROBE_ID
        try:
            try:
                await self._open(headers, ws)
                while True:
                    frame = await self._receive(self.idle_timeout)
                    if isinstance(frame, bytes):
                        await self._audio(frame)
                    elif await self._message(frame):
                        break  # the client's close, answered
            except Refused as exc:
                log.warning("audiohook session %s refused: %s", self._name, exc.info)
                counters = self.registry.services.counters
                if exc.reason == "unauthorized":
                    counters.refused["audiohook"] += 1
                else:
                    counters.errors["ingest"] += 1
                await self._refuse(exc)
            except (Gone, WebSocketDisconnect):
                raise
            except Exception:  # a bug of ours: this call ends with what it sent, no other call notices
                log.exception("audiohook session %s failed", self._name)
                self.registry.services.counters.errors["ingest"] += 1
                await self._refuse(Refused("error", "internal error: the call is ended with what was sent"))
        except (Gone, WebSocketDisconnect):
            if self.state == "open":
                log.info("audiohook session %s: the client went away", self._name)
        finally:
            await self._end()

    @property
    def _name(self) -> str:
        return self.call.call_id if self.call else f"(session {self.session_id[:8]})"

    async def _open(self, headers: dict[str, str], ws: WebSocket) -> None:
        """The first message is ``open``: checked, then answered with ``opened``, or refused."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OPEN_WITHIN
        frame = await self._receive(None, deadline=deadline)
        if isinstance(frame, bytes):
            raise Refused("error", "audio before opened")
        if _uuid(headers.get("audiohook-organization-id")) is None or _uuid(headers.get("audiohook-session-id")) is None:
            first = _loose(frame)  # the refusal answers the open as it came, whatever its headers lacked
            self.session_id = first["id"] if _uuid(first.get("id")) else PROBE_ID
            self.client_seq = _seq(first.get("seq"))
            raise Refused("unauthorized", "the upgrade must carry Audiohook-Organization-Id and Audiohook-Session-Id (UUIDs)")
        message = self._envelope(frame)
        if message["type"] != "open":
            raise Refused("error", f"the first message must be open, not {message['type']}")
        params = message["parameters"]
        try:  # opened must reach Genesys within its 5 s: what we wait on (a token lookup, the store) gets less
            async with asyncio.timeout_at(deadline - 0.5):
                sender = await self._authorise(headers, ws)
                if _uuid(params.get("organizationId")) != _uuid(headers.get("audiohook-organization-id")):
                    raise Refused("unauthorized", "organizationId is not the upgrade's Audiohook-Organization-Id")
                conversation = _uuid(params.get("conversationId"))
                if conversation is None:
                    raise Refused("error", "open.parameters.conversationId must be a UUID")
                media = _choose(params.get("media"))
                if media is None:
                    raise Refused("error", "no offered media can be heard: PCMU at 8000 Hz, external and/or internal")
                if conversation == PROBE_ID:  # Genesys testing the integration: no call
                    self.state = "probe"
                    await self._send("opened", {"media": [media]})
                    log.info("audiohook probe answered (correlation %s)", _uuid(headers.get("audiohook-correlation-id")))
                    return
                custom = params.get("customConfig") if isinstance(params.get("customConfig"), dict) else {}
                agent_id = custom.get("agent_id", custom.get("agentId"))
                agent_id = str(agent_id)[:128] if isinstance(agent_id, (str, int)) and str(agent_id) else None
                self.channels = list(media["channels"])
                layout = CallLayout(tuple((PARTIES[c], i) for i, c in enumerate(self.channels)))
                self.call = await self._start(conversation, agent_id, layout, sender)
        except TimeoutError:
            raise Refused("error", "the call could not be opened in time: try again") from None
        self.resampler = Resampler(MULAW_RATE, len(self.channels), block=768)
        self.state = "open"
        self.opened_at = loop.time()
        self._feeder = loop.create_task(self._feeding(), name=f"audiohook feed {self.call.call_id}")
        await self._send("opened", {"media": [media]})
        log.info("audiohook call %s opened (%s; correlation %s)", self.call.call_id, "+".join(self.channels),
                 _uuid(headers.get("audiohook-correlation-id")))

    async def _start(self, conversation: str, agent_id: str | None, layout: CallLayout, sender: Principal) -> LiveCall:
        """The conversation's call. A conversation that was streamed before and ended (Genesys opens a
        new session after a dropped connection) goes on as a new segment: ``ID.2``, ``ID.3``..."""
        who = sender.token_id or sender.name or sender.role
        for segment in range(1, MAX_SEGMENTS + 1):
            call_id = conversation if segment == 1 else f"{conversation}.{segment}"
            try:
                return await self.registry.start(call_id, agent_id, layout, sender=who)
            except CallKept:
                continue
            except CallExists as exc:  # live: the earlier session is still open (Genesys retries later)
                raise Refused("error", str(exc)[:200]) from None
            except CallRefused as exc:  # at capacity, or this key's limit: Genesys retries later
                raise Refused("error", str(exc)[:200]) from None
        raise Refused("error", f"conversation {conversation} was streamed {MAX_SEGMENTS} times already")

    async def _authorise(self, headers: dict[str, str], ws: WebSocket) -> Principal:
        """The X-API-KEY is an ingest token, or the key the admin configured; with a client secret
        configured, the upgrade must be signed with it."""
        key = headers.get("x-api-key", "")
        if not key or len(key) > 512:
            raise Refused("unauthorized", "X-API-KEY is required")
        if self.access.client_secret is not None:
            target, authority = self._signed_address(ws, headers)
            if not signature_valid(headers, target, authority, self.access.client_secret):
                raise Refused("unauthorized", "the upgrade is not signed with the configured client secret")
        if self.access.api_key is not None and hmac.compare_digest(key.encode(), self.access.api_key.encode()):
            return Principal("ingest", name="audiohook")
        principal = await self.tokens.authenticate(key)
        if principal is None or not principal.can_ingest:
            raise Refused("unauthorized", "X-API-KEY is not an ingest token or the configured AudioHook key")
        return principal

    def _signed_address(self, ws: WebSocket, headers: dict[str, str]) -> tuple[str, str]:
        """``@request-target`` and ``@authority`` as Genesys signed them: the request's own path and
        Host, or behind a proxy, the public address Genesys was given (``COACH_SERVER__PUBLIC_URL``)."""
        raw = ws.scope.get("raw_path") or ws.scope.get("path", "").encode()
        query = ws.scope.get("query_string") or b""
        target = raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        if not self.public_url:
            return target, headers.get("host", "")
        public = urlsplit(self.public_url)
        default = {"wss": 443, "https": 443, "ws": 80, "http": 80}.get(public.scheme)
        authority = (public.hostname or "") + (f":{public.port}" if public.port and public.port != default else "")
        return public.path.rstrip("/") + target, authority

    async def _message(self, frame: str) -> bool:
        """One text message after ``opened``: True when it was the client's ``close`` (answered)."""
        message = self._envelope(frame)
        kind, params = message["type"], message["parameters"]
        if kind == "ping":
            await self._send("pong", {})
        elif kind == "close":
            self.state = "closing"
            await self._send("closed", {})
            return True
        elif kind == "update":
            await self._send("updated", {})
        elif kind == "paused":
            self.paused = True
        elif kind in ("resumed", "discarded"):
            self.paused = self.paused and kind != "resumed"
            await self._gap(params, kind)
        elif kind == "error":  # the client's fault report: it closes next
            code = params.get("code")
            log.warning("audiohook session %s: the client reported error %s", self._name, code if isinstance(code, int) else "?")
        elif kind == "open":
            raise Refused("error", "a second open in one session")
        return False

    async def _audio(self, frame: bytes) -> None:
        if self.state == "probe":
            raise Refused("error", "audio in a connection probe")
        if self.state != "open" or self.call is None:
            raise Refused("error", "audio outside an open stream")
        if self.paused:  # sent before the client's pause took effect: not part of the call
            self.stray_frames += 1
            if self.stray_frames == 1:
                log.info("audiohook call %s: audio after the client paused is dropped", self._name)
            return
        data = self._carry + frame
        width = len(self.channels)
        usable = len(data) - len(data) % width
        self._carry = data[usable:]
        if usable:
            self.position += usable / width / MULAW_RATE
            await self._work.put(("audio", data[:usable]))

    async def _gap(self, params: dict, what: str) -> None:
        """Audio the conversation had and we did not get (a pause, or audio the client discarded):
        silence in its place in the call's timeline, never past the time the session has lasted."""
        start, discarded = _duration(params.get("start", f"PT{self.position:.3f}S")), _duration(params.get("discarded"))
        if start is None or discarded is None:
            raise Refused("error", f"{what}: start and discarded must be durations (PT<seconds>S)")
        lasted = asyncio.get_running_loop().time() - self.opened_at
        seconds = max(0.0, min(start + discarded - self.position, lasted + GAP_SLACK - self.position))
        if seconds > 0 and self.call is not None:
            self.position += seconds
            await self._work.put(("gap", seconds))

    async def _feeding(self) -> None:
        """The call's intake, in order: audio and gaps. A failure here drops the rest (the reader goes on
        answering the client) and ends the call with what it took."""
        failed = False
        while (item := await self._work.get()) is not None:
            if failed:
                continue
            kind, value = item
            try:
                if kind == "audio":
                    await self.call.feed(self.resampler(mulaw_decode(value)))
                else:
                    until = self.call.received + value
                    self.call.excuse_silence(until)
                    samples = int(round(value * MULAW_RATE))
                    for start in range(0, samples, MULAW_RATE * 10):  # ten seconds at a time
                        size = min(MULAW_RATE * 10, samples - start)
                        await self.call.feed(self.resampler(np.zeros(size * len(self.channels), np.float32)))
            except Exception:
                log.exception("audiohook call %s: its audio could not be taken in; the rest is dropped", self._name)
                self.registry.services.counters.errors["ingest"] += 1
                failed = True

    # ---- messages ----
    def _envelope(self, frame: str) -> dict:
        """A client message, checked as the protocol says: JSON object within 64 KB, version 2, this
        session's id, the next seq, a serverseq we sent, a known type, parameters an object."""
        if len(frame) > MAX_TEXT:
            raise Refused("error", f"a text message over {MAX_TEXT} characters")
        try:
            message = json.loads(frame)
        except (ValueError, RecursionError):
            raise Refused("error", "malformed JSON") from None
        if not isinstance(message, dict):
            raise Refused("error", "a message must be a JSON object")
        if message.get("version") != VERSION:
            raise Refused("error", "version must be \"2\"")
        if not isinstance(message.get("id"), str) or _uuid(message["id"]) != _uuid(self.session_id):
            raise Refused("error", "id is not this session's id")
        seq, serverseq = message.get("seq"), message.get("serverseq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq != self.client_seq + 1:
            raise Refused("error", f"seq must be {self.client_seq + 1}")
        self.client_seq = seq
        if not isinstance(serverseq, int) or isinstance(serverseq, bool) or not 0 <= serverseq <= self.seq:
            raise Refused("error", f"serverseq must be a seq we sent (0..{self.seq})")
        if message.get("type") not in CLIENT_TYPES:
            raise Refused("error", "unknown message type")
        if not isinstance(message.get("parameters"), dict):
            raise Refused("error", "parameters must be an object")
        return message

    async def _send(self, kind: str, parameters: dict) -> None:
        self.seq += 1
        await self.ws.send_text(json.dumps({"version": VERSION, "id": self.session_id, "type": kind, "seq": self.seq,
                                            "clientseq": self.client_seq, "parameters": parameters}))

    async def _receive(self, idle: float | None, deadline: float | None = None, late: str = "no open within 5 s of connecting") -> str | bytes:
        loop = asyncio.get_running_loop()
        when = None if idle is None else loop.time() + idle
        if deadline is not None:
            when = deadline if when is None else min(when, deadline)
        try:
            async with asyncio.timeout_at(when):
                message = await self.ws.receive()
        except TimeoutError:
            if deadline is not None and loop.time() >= deadline:
                raise Refused("error", late) from None
            raise Refused("error", f"nothing received for {idle:g} s") from None
        if message["type"] == "websocket.disconnect":
            raise Gone
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
            if len(data) > min(self.max_bytes, MAX_AUDIO):
                raise Refused("error", f"an audio frame over {min(self.max_bytes, MAX_AUDIO)} bytes")
        return data

    async def _refuse(self, refused: Refused) -> None:
        """``disconnect``, then the client's close transaction: its first ``close`` gets ``closed``;
        anything else it sends is not read into the call. The socket is ours to close only if the
        client has not closed it ``CLOSE_WITHIN`` after the disconnect."""
        await self._send("disconnect", {"reason": refused.reason, "info": refused.info[:200]})
        self.state = "disconnecting"
        self._ending = asyncio.get_running_loop().create_task(self._end_call())  # no more audio comes: the call ends now
        deadline = asyncio.get_running_loop().time() + CLOSE_WITHIN
        answered = False
        try:
            while True:
                frame = await self._receive(None, deadline=deadline, late="no close after the disconnect")
                message = _loose(frame) if isinstance(frame, str) and not answered else {}
                if message.get("type") == "close" and message.get("id") == self.session_id:
                    self.client_seq = max(self.client_seq, _seq(message.get("seq")))
                    await self._send("closed", {})
                    answered = True
        except Refused:  # it did not close in time
            pass

    async def _end(self) -> None:
        """The call ends with what was received; the socket closes if the client has not closed it."""
        try:
            await (self._ending or self._end_call())
        finally:
            try:
                await self.ws.close(1000)
            except (RuntimeError, WebSocketDisconnect):
                pass

    async def _end_call(self) -> None:
        try:
            if self._feeder is not None:
                await self._work.put(None)  # after everything taken so far
                await self._feeder
            if self.call is not None:
                if self.resampler is not None:
                    await self.call.feed(self.resampler.flush())
                await self.call.end()
        except Exception:
            log.exception("audiohook call %s could not end cleanly; cancelling it", self._name)
            if self.call is not None:
                await self.call.cancel()


def _loose(frame: str) -> dict:
    """A message read without its checks (to answer one that is refused): {} if it is no JSON object."""
    try:
        message = json.loads(frame) if len(frame) <= MAX_TEXT else None
    except (ValueError, RecursionError):
        return {}
    return message if isinstance(message, dict) else {}


def _seq(value: object) -> int:
    """A message's ``seq`` as sent, if it is a positive integer (else 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def sign(headers: dict[str, str], target: str, authority: str, secret: str, now: float | None = None) -> dict[str, str]:
    """``Signature-Input`` and ``Signature`` for an upgrade to ``target`` at ``authority`` carrying
    ``headers`` (the AudioHook headers, lower-case names), as Genesys signs it (``coach simulate``)."""
    created = int(time.time() if now is None else now)
    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    params = (f"({' '.join(f'{chr(34)}{name}{chr(34)}' for name in SIGNED)});keyid=\"{headers['x-api-key']}\";"
              f'nonce="{nonce}";alg="hmac-sha256";created={created};expires={created + 30}')
    components = {"@request-target": target, "@authority": authority.lower(), **{name: headers[name] for name in SIGNED[2:]}}
    mac = hmac.new(base64.b64decode(secret), signature_base(components, params).encode(), hashlib.sha256).digest()
    return {"signature-input": f"sig1={params}", "signature": f"sig1=:{base64.b64encode(mac).decode()}:"}
