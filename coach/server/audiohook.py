"""Call audio in from Genesys Cloud: AudioHook Monitor, protocol version 2 (``/ws/audiohook``).

Genesys is the client. It upgrades with ``Audiohook-Organization-Id``, ``-Session-Id``,
``-Correlation-Id`` and ``X-API-KEY`` (signed with an HTTP message signature when the integration
has a client secret), sends ``open``, and after our ``opened`` streams headerless PCMU frames, the
channels interleaved in the order we chose. Text messages are numbered both ways (``seq``, with
``serverseq``/``clientseq`` echoing the peer's last). The brief of the protocol, with its sources, is
``../shared/research/genesys-audiohook.md``.

- ``external`` is the customer and ``internal`` the agent. The call id is the ``conversationId``,
  and the agent id comes from ``customConfig`` (``agent_id`` or ``agentId``), else the participant's id.
- A refusal of any kind is a ``disconnect`` (``unauthorized`` or ``error``, with a short ``info``);
  the client then closes the session (we answer its ``close`` with ``closed``). The socket is closed
  by us only when the client does not do so in time.
- The probe (an all-zero conversation id) gets ``opened`` and ``closed`` and makes no call.
- The customer's secure pause (``paused`` ... ``resumed``) and audio the client ``discarded`` stay
  in the call's timeline as silence, so that every time in the call is a time in the conversation.
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

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from coach.audio.frames import CallLayout
from coach.audio.telephony import MULAW_RATE, Resampler, mulaw_decode
from coach.server.auth import Principal, TokenStore
from coach.server.calls import CallExists, CallRefused, CallRegistry, LiveCall

log = logging.getLogger("coach.audiohook")

VERSION = "2"
MAX_TEXT = 65_535  # characters: the protocol's largest text message
MAX_AUDIO = 65_536  # bytes: the largest audio frame taken (4 s of stereo PCMU; Genesys sends 100-200 ms)
OPEN_WITHIN = 5.0  # s: Genesys gives up on an open transaction after 5 s; ours must come first
CLOSE_WITHIN = 10.0  # s: after our disconnect or closed, the client has this long to close
MAX_GAP = 3600.0  # s: the longest pause or discarded stretch kept as silence in the call's timeline
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
    if fields.get("keyid") != f'"{api_key}"' or len(fields.get("nonce", "")) < 2:
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
    """One AudioHook session on one websocket."""

    def __init__(self, registry: CallRegistry, tokens: TokenStore, access: Access, max_bytes: int, idle_timeout: float | None = None) -> None:
        self.registry = registry
        self.tokens = tokens
        self.access = access
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.session_id = PROBE_ID
        self.seq = 0  # our last message's seq
        self.client_seq = 0  # the client's last message's seq
        self.state = "opening"  # -> "open" (or "probe") -> "closing"
        self.paused = False  # the client paused the stream (its secure pause)
        self.call: LiveCall | None = None
        self.channels: list[str] = []
        self.resampler: Resampler | None = None
        self.position = 0.0  # seconds of the conversation heard (audio, pauses and what was discarded)
        self._carry = b""
        self._ending: asyncio.Task | None = None  # the call's end, begun when the session was refused
        self.ws: WebSocket | None = None

    # ---- the session ----
    async def serve(self, ws: WebSocket) -> None:
        self.ws = ws
        await ws.accept()
        headers = {k.lower(): v for k, v in ws.headers.items()}
        self.session_id = _uuid(headers.get("audiohook-session-id")) or PROBE_ID
        refused: Refused | None = None
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
                refused = exc
                log.warning("audiohook session %s refused: %s", self._name, exc.info)
                self.registry.services.counters.errors["ingest"] += 1
                await self._refuse(exc)
        except (Gone, WebSocketDisconnect):
            if refused is None and self.state not in ("closing", "probe-closed"):
                log.info("audiohook session %s: the client went away", self._name)
        except Exception:  # a bug of ours: this call ends with what it sent, no other call notices
            log.exception("audiohook session %s failed", self._name)
            self.registry.services.counters.errors["ingest"] += 1
            try:
                await self._send("disconnect", {"reason": "error", "info": "internal error"})
            except Exception:
                pass
        finally:
            await self._end()

    @property
    def _name(self) -> str:
        return self.call.call_id if self.call else f"(session {self.session_id[:8]})"

    async def _open(self, headers: dict[str, str], ws: WebSocket) -> None:
        """The first message is ``open``: checked, then answered with ``opened``, or refused."""
        frame = await self._receive(None, deadline=asyncio.get_running_loop().time() + OPEN_WITHIN)
        if isinstance(frame, bytes):
            raise Refused("error", "audio before opened")
        if _uuid(headers.get("audiohook-organization-id")) is None or _uuid(headers.get("audiohook-session-id")) is None:
            first = _loose(frame)  # the refusal answers the open as it came, whatever its headers lacked
            self.session_id = _uuid(first.get("id")) or PROBE_ID
            self.client_seq = first["seq"] if isinstance(first.get("seq"), int) and not isinstance(first.get("seq"), bool) else 0
            raise Refused("unauthorized", "the upgrade must carry Audiohook-Organization-Id and Audiohook-Session-Id (UUIDs)")
        message = self._envelope(frame)
        if message["type"] != "open":
            raise Refused("error", f"the first message must be open, not {message['type']}")
        params = message["parameters"]
        sender = await self._authorise(headers, ws)
        if params.get("organizationId") != headers.get("audiohook-organization-id"):
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
            log.info("audiohook probe from organization %s answered", params.get("organizationId"))
            return
        participant = params.get("participant") if isinstance(params.get("participant"), dict) else {}
        custom = params.get("customConfig") if isinstance(params.get("customConfig"), dict) else {}
        agent_id = custom.get("agent_id", custom.get("agentId", participant.get("id")))
        agent_id = str(agent_id)[:128] if isinstance(agent_id, (str, int)) and str(agent_id) else None
        self.channels = list(media["channels"])
        layout = CallLayout(tuple((PARTIES[c], i) for i, c in enumerate(self.channels)))
        self.resampler = Resampler(MULAW_RATE, len(self.channels), block=768)
        try:
            self.call = await self.registry.start(conversation, agent_id, layout, sender=sender.token_id or sender.name or sender.role)
        except CallExists as exc:
            raise Refused("error", str(exc)[:200]) from None
        except CallRefused as exc:  # at capacity, or this key's limit: Genesys retries later
            raise Refused("error", str(exc)[:200]) from None
        self.state = "open"
        await self._send("opened", {"media": [media]})
        log.info("audiohook call %s opened (%s)", conversation, "+".join(self.channels))

    async def _authorise(self, headers: dict[str, str], ws: WebSocket) -> Principal:
        """The X-API-KEY is an ingest token, or the key the admin configured; with a client secret
        configured, the upgrade must be signed with it."""
        key = headers.get("x-api-key", "")
        if not key or len(key) > 512:
            raise Refused("unauthorized", "X-API-KEY is required")
        if self.access.client_secret is not None:
            target = ws.scope.get("path", "") + (f"?{ws.scope['query_string'].decode('latin-1')}" if ws.scope.get("query_string") else "")
            if not signature_valid(headers, target, headers.get("host", ""), self.access.client_secret):
                raise Refused("unauthorized", "the upgrade is not signed with the configured client secret")
        if self.access.api_key is not None and hmac.compare_digest(key.encode(), self.access.api_key.encode()):
            return Principal("ingest", name="audiohook")
        principal = await self.tokens.authenticate(key)
        if principal is None or not principal.can_ingest:
            raise Refused("unauthorized", "X-API-KEY is not an ingest token or the configured AudioHook key")
        return principal

    async def _message(self, frame: str) -> bool:
        """One text message after ``opened``: True when it was the client's ``close`` (answered)."""
        message = self._envelope(frame)
        kind, params = message["type"], message["parameters"]
        if kind == "ping":
            await self._send("pong", {})
        elif kind == "close":
            self.state = "closing" if self.state == "open" else "probe-closed"
            await self._send("closed", {})
            return True
        elif kind == "update":
            await self._send("updated", {})
        elif kind == "paused":
            self.paused = True
        elif kind == "resumed":
            self.paused = False
            await self._gap(params.get("discarded"), "resumed")
        elif kind == "discarded":
            await self._gap(params.get("discarded"), "discarded")
        elif kind == "error":  # the client's fault report: it closes next
            code = params.get("code")
            log.warning("audiohook session %s: the client reported error %s", self._name, code if isinstance(code, int) else "?")
        elif kind == "open":
            raise Refused("error", "a second open in one session")
        return False

    async def _audio(self, frame: bytes) -> None:
        if self.state == "probe":
            raise Refused("error", "audio in a connection probe")
        if self.state != "open" or self.call is None or self.resampler is None:
            raise Refused("error", "audio outside an open stream")
        if self.paused:
            raise Refused("error", "audio while the stream is paused")
        data = self._carry + frame
        width = len(self.channels)
        usable = len(data) - len(data) % width
        self._carry = data[usable:]
        if usable:
            self.position += usable / width / MULAW_RATE
            await self.call.feed(self.resampler(mulaw_decode(data[:usable])))

    async def _gap(self, value: object, what: str) -> None:
        """Audio the conversation had and we did not get: silence in its place in the call's timeline."""
        seconds = _duration(value)
        if seconds is None:
            raise Refused("error", f"{what}.discarded must be a duration (PT<seconds>S)")
        if seconds > MAX_GAP:
            raise Refused("error", f"{what}: a gap of {seconds:.0f} s is over the {MAX_GAP:.0f} s kept")
        if seconds and self.call is not None and self.resampler is not None:
            self.position += seconds
            samples = int(round(seconds * MULAW_RATE))
            for start in range(0, samples, MULAW_RATE * 10):  # ten seconds at a time
                size = min(MULAW_RATE * 10, samples - start)
                await self.call.feed(self.resampler(np.zeros(size * len(self.channels), np.float32)))

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
        if message.get("id") != self.session_id:
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

    async def _receive(self, idle: float | None, deadline: float | None = None) -> str | bytes:
        loop = asyncio.get_running_loop()
        when = None if idle is None else loop.time() + idle
        if deadline is not None:
            when = deadline if when is None else min(when, deadline)
        try:
            async with asyncio.timeout_at(when):
                message = await self.ws.receive()
        except TimeoutError:
            if deadline is not None and loop.time() >= deadline:
                raise Refused("error", f"no open within {OPEN_WITHIN:g} s of connecting") from None
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
        """``disconnect``, then the client's close transaction: its ``close`` gets ``closed``; anything
        else it sends meanwhile is not read into the call. The socket is ours to close only if the
        client does not close it in time."""
        await self._send("disconnect", {"reason": refused.reason, "info": refused.info[:200]})
        self.state = "disconnecting"
        self._ending = asyncio.get_running_loop().create_task(self._end_call())  # no more audio comes: the call ends now
        deadline = asyncio.get_running_loop().time() + CLOSE_WITHIN
        try:
            while True:
                frame = await self._receive(None, deadline=deadline)
                if isinstance(frame, str) and _close_of(frame, self.session_id):
                    self.client_seq = max(self.client_seq, _seq_of(frame))
                    await self._send("closed", {})
                    deadline = asyncio.get_running_loop().time() + CLOSE_WITHIN  # now the client closes the socket
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


def _close_of(frame: str, session_id: str) -> bool:
    message = _loose(frame)
    return message.get("type") == "close" and message.get("id") == session_id


def _seq_of(frame: str) -> int:
    seq = _loose(frame).get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else 0


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
