"""Call audio in: Twilio Media Streams (``/ws/twilio``) and the generic stream (``/ws/audio``).

Both end the same way: the sender's ``stop``, a closed socket or a protocol error all finish the
call with the audio received so far, so nothing that arrived is lost. Bad input gets a close code
and a reason the sender can read, and a log line here; other calls never notice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import re
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from coach.audio.frames import CallLayout
from coach.audio.telephony import MULAW_RATE, GapTooLong, Resampler, TrackAligner, mulaw_decode, pcm16_decode
from coach.server.auth import Principal, TokenStore
from coach.server.calls import CallExists, CallRefused, CallRegistry, LiveCall, TooManyCalls
from coach.server.guards import TOO_MANY

log = logging.getLogger("coach.ingest")

# websocket close codes (4000-4999 are the application's own)
BAD_INPUT = 4400
UNAUTHENTICATED = 4401
FORBIDDEN = 4403
NOT_FOUND = 4404
CALL_EXISTS = 4409
TRY_AGAIN_LATER = 1013  # the server is at capacity
TOO_BIG = 1009
IDLE = 4408  # the sender went quiet
INTERNAL_ERROR = 1011

# before a stream is authenticated (its start or header), it gets this many frames and seconds
FRAMES_BEFORE_START = 8  # Twilio sends "connected", then "start"
START_WITHIN = 10.0

TWILIO_TRACKS = {"inbound": "customer", "outbound": "agent"}
CALL_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class StreamRefused(Exception):
    """Close the stream with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _authorise(tokens: TokenStore, token: str | None) -> Principal:
    principal = await tokens.authenticate(token)
    if principal is None:
        raise StreamRefused(UNAUTHENTICATED, "missing, unknown, expired or revoked token")
    if not principal.can_ingest:
        raise StreamRefused(FORBIDDEN, f"a {principal.role} token cannot send call audio (needs ingest or admin)")
    return principal


def _check_call_id(call_id: object) -> str:
    if not isinstance(call_id, str) or not CALL_ID.match(call_id):
        raise StreamRefused(BAD_INPUT, "call id must be 1-128 letters, digits or ._:@-")
    return call_id


async def _start_call(registry: CallRegistry, call_id: str, agent_id: str | None, layout: CallLayout, sender: Principal) -> LiveCall:
    try:
        return await registry.start(call_id, agent_id, layout, sender=sender.token_id or sender.name or sender.role)
    except CallExists as exc:
        raise StreamRefused(CALL_EXISTS, str(exc)) from None
    except TooManyCalls as exc:
        raise StreamRefused(TOO_MANY, str(exc)) from None
    except CallRefused as exc:
        raise StreamRefused(TRY_AGAIN_LATER, str(exc)) from None


async def _receive(ws: WebSocket, max_bytes: int, idle_timeout: float | None = None, deadline: float | None = None) -> str | bytes | None:
    """The next frame, or None when the sender closed the socket. ``deadline`` (loop time): a stream
    not yet authenticated must have started by then, however many frames it sends meanwhile."""
    loop = asyncio.get_running_loop()
    when = None if idle_timeout is None else loop.time() + idle_timeout
    if deadline is not None:
        when = deadline if when is None else min(when, deadline)
    try:
        async with asyncio.timeout_at(when):  # no task per frame, as wait_for would make
            message = await ws.receive()
    except TimeoutError:
        if deadline is not None and loop.time() >= deadline:
            raise StreamRefused(BAD_INPUT, "no start within the time allowed after connecting") from None
        raise StreamRefused(IDLE, f"nothing received for {idle_timeout:g} s: the call is ended with what was sent") from None
    if message["type"] == "websocket.disconnect":
        return None
    data = message.get("text")
    if data is None:
        data = message.get("bytes") or b""
    if len(data) > max_bytes:
        raise StreamRefused(TOO_BIG, f"frame of {len(data)} bytes is over the {max_bytes}-byte limit")
    return data


def _json(frame: str | bytes, what: str) -> dict:
    if isinstance(frame, bytes):
        raise StreamRefused(BAD_INPUT, f"expected a JSON text frame ({what}), got binary")
    try:
        message = json.loads(frame)
    except ValueError:
        raise StreamRefused(BAD_INPUT, f"malformed JSON ({what})") from None
    except RecursionError:
        raise StreamRefused(BAD_INPUT, f"JSON nested too deeply ({what})") from None
    if not isinstance(message, dict):
        raise StreamRefused(BAD_INPUT, f"expected a JSON object ({what})")
    return message


async def _finish(ws: WebSocket, call: LiveCall | None, code: int = 1000, reason: str = "", last_words=None) -> None:
    """End the stream's call whatever happened: ``last_words`` (the audio still in the ingest's
    buffers) first, then the call's end, then the socket's close. Each step runs even when the one
    before it raised, so no call is ever left live (and counted against admission) by a failure."""
    try:
        if call is not None and last_words is not None:
            await last_words()
    except Exception:
        log.exception("stream %s: the audio still buffered could not be taken in", call.call_id if call else "?")
    finally:
        try:
            if call is not None:
                await call.end()
        except Exception:
            log.exception("call %s could not end cleanly; cancelling it", call.call_id if call else "?")
            await call.cancel()
        finally:
            try:
                await ws.close(code, reason[:120])
            except (RuntimeError, WebSocketDisconnect):  # the sender is already gone
                pass


RESAMPLE_BLOCK = 768  # 8 kHz samples: one 96 ms pipeline frame (the pipeline waits for a whole frame anyway)


class TwilioStream:
    """One Twilio Media Stream: ``connected``, ``start``, ``media``..., ``stop``."""

    def __init__(
        self, registry: CallRegistry, tokens: TokenStore, max_bytes: int, idle_timeout: float | None = None, signed: Principal | None = None,
        signed_call: str | None = None,
    ) -> None:
        self.registry = registry
        self.tokens = tokens
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.signed = signed  # Twilio's signature on the request was checked: no token needed
        self.signed_call = signed_call  # the call the URL names (its signature is good for that call only)
        self.call: LiveCall | None = None
        self.tracks: tuple[str, ...] = ()
        self.aligner: TrackAligner | None = None
        self.resampler: Resampler | None = None

    async def serve(self, ws: WebSocket, query_token: str | None) -> None:
        await ws.accept()
        code, reason = 1000, "call ended"
        try:
            deadline = asyncio.get_running_loop().time() + START_WITHIN
            frames = ignored = 0
            while (frame := await _receive(ws, self.max_bytes, self.idle_timeout, None if self.call else deadline)) is not None:
                if self.call is None:  # not authenticated yet: a few frames, within START_WITHIN, must bring the start
                    frames += 1
                    if frames > FRAMES_BEFORE_START:
                        raise StreamRefused(BAD_INPUT, f"no start in the first {FRAMES_BEFORE_START} frames")
                message = _json(frame, "Twilio sends JSON text frames")
                event = message.get("event")
                if event == "start":
                    await self._start(message, query_token)
                elif event == "media":
                    await self._media(message)
                elif event == "stop":
                    break
                elif event in ("connected", "mark", "dtmf"):
                    continue
                else:
                    ignored += 1
                    if ignored == 1:  # its type and size only: nothing a client sends is written out
                        log.warning("twilio stream %s: ignored an unknown event (%s, a %d-byte frame); later ones are counted",
                                    self._name, type(event).__name__, len(frame))
            if ignored > 1:
                log.info("twilio stream %s: %d unknown events ignored in all", self._name, ignored)
        except StreamRefused as refused:
            code, reason = refused.code, refused.reason
            log.warning("twilio stream %s refused: %s", self._name, reason)
            self.registry.services.counters.errors["ingest"] += 1
        except WebSocketDisconnect:
            log.info("twilio stream %s: the sender went away", self._name)
        except Exception:  # a bug of ours: this call ends with what it sent, no other call notices
            code, reason = INTERNAL_ERROR, "internal error: the call is ended with what was sent"
            log.exception("twilio stream %s failed", self._name)
            self.registry.services.counters.errors["ingest"] += 1
        finally:
            await _finish(ws, self.call, code, reason, self._last_words)

    async def _last_words(self) -> None:
        if self.aligner is not None and self.call is not None and self.resampler is not None:
            await self._feed(self.aligner.flush())
            await self.call.feed(self.resampler.flush())

    @property
    def _name(self) -> str:
        return self.call.call_id if self.call else "(not started)"

    async def _start(self, message: dict, query_token: str | None) -> None:
        if self.call is not None:
            raise StreamRefused(BAD_INPUT, "a second start on one stream")
        start = message.get("start")
        if not isinstance(start, dict):
            raise StreamRefused(BAD_INPUT, "start event without a start object")
        params = start.get("customParameters") or {}
        if not isinstance(params, dict):
            raise StreamRefused(BAD_INPUT, "start.customParameters must be an object")
        sender = self.signed or await _authorise(self.tokens, query_token or params.get("token"))
        call_id = _check_call_id(start.get("callSid") or message.get("streamSid"))
        if self.signed_call is not None and call_id != self.signed_call:
            raise StreamRefused(UNAUTHENTICATED if self.signed else BAD_INPUT, "the start's callSid is not the call the URL names")
        media = start.get("mediaFormat") or {"encoding": "audio/x-mulaw", "sampleRate": MULAW_RATE, "channels": 1}
        if not isinstance(media, dict) or (media.get("encoding"), media.get("sampleRate"), media.get("channels")) != ("audio/x-mulaw", MULAW_RATE, 1):
            raise StreamRefused(BAD_INPUT, f"Twilio streams are 8 kHz mono mu-law; got {json.dumps(media)[:80]}")
        tracks = start.get("tracks") or ["inbound", "outbound"]
        if (not isinstance(tracks, list) or not tracks or any(not isinstance(t, str) or t not in TWILIO_TRACKS for t in tracks)
                or len(set(tracks)) != len(tracks)):
            raise StreamRefused(BAD_INPUT, "start.tracks must be inbound and/or outbound")
        # the agent first, as on a stereo recording
        self.tracks = tuple(sorted(tracks, key=lambda t: TWILIO_TRACKS[t] != "agent"))
        layout = CallLayout(tuple((TWILIO_TRACKS[t], i) for i, t in enumerate(self.tracks)))
        agent_id = params.get("agent_id")
        self.aligner = TrackAligner(self.tracks, MULAW_RATE)
        self.resampler = Resampler(MULAW_RATE, len(self.tracks), block=RESAMPLE_BLOCK)
        self.call = await _start_call(self.registry, call_id, str(agent_id) if agent_id is not None else None, layout, sender)

    async def _media(self, message: dict) -> None:
        if self.call is None or self.aligner is None:
            raise StreamRefused(BAD_INPUT, "media before start")
        media = message.get("media")
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            raise StreamRefused(BAD_INPUT, "media event without a payload")
        track = media.get("track", self.tracks[0])
        if track not in self.tracks:
            return  # a track the start did not announce: not ours to hear
        try:
            payload = base64.b64decode(media["payload"], validate=True)
            timestamp = float(media["timestamp"]) if media.get("timestamp") is not None else None
        except (binascii.Error, ValueError, TypeError):
            raise StreamRefused(BAD_INPUT, "media payload is not base64 or its timestamp is not a number") from None
        if timestamp is not None and not (math.isfinite(timestamp) and 0 <= timestamp):
            raise StreamRefused(BAD_INPUT, f"media timestamp {timestamp} is not a time in the call (ms)")
        try:
            block = self.aligner.add(track, mulaw_decode(payload), timestamp)
        except GapTooLong as exc:
            raise StreamRefused(BAD_INPUT, str(exc)) from None
        await self._feed(block)

    async def _feed(self, block: np.ndarray) -> None:
        if block.shape[0] and self.call is not None and self.resampler is not None:
            await self.call.feed(self.resampler(block.ravel()))


class AudioHeader(BaseModel):
    """The first frame of ``/ws/audio``."""

    model_config = ConfigDict(extra="ignore")

    call_id: str = Field(pattern=CALL_ID.pattern)
    agent_id: str | None = Field(None, max_length=128)
    sample_rate: int = Field(ge=8000, le=48000)
    channels: Literal[1, 2]
    encoding: Literal["pcm_s16le", "mulaw"]
    agent_channel: Literal[0, 1] = 0
    token: str | None = None


class AudioStream:
    """The generic stream: a JSON header, binary frames of interleaved samples, ``{"event": "stop"}``."""

    def __init__(self, registry: CallRegistry, tokens: TokenStore, max_bytes: int, idle_timeout: float | None = None) -> None:
        self.registry = registry
        self.tokens = tokens
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.call: LiveCall | None = None

    async def serve(self, ws: WebSocket, query_token: str | None) -> None:
        await ws.accept()
        code, reason = 1000, "call ended"
        try:
            frame = await _receive(ws, self.max_bytes, self.idle_timeout, asyncio.get_running_loop().time() + START_WITHIN)
            if frame is None:
                return
            header = self._header(_json(frame, "the first frame is the stream header"))
            sender = await _authorise(self.tokens, query_token or header.token)
            layout = CallLayout.mono() if header.channels == 1 else CallLayout.stereo(header.agent_channel)
            width = header.channels * (2 if header.encoding == "pcm_s16le" else 1)
            decode = pcm16_decode if header.encoding == "pcm_s16le" else mulaw_decode
            resampler = Resampler(header.sample_rate, header.channels)
            self.call = await _start_call(self.registry, header.call_id, header.agent_id, layout, sender)
            carry = b""  # a frame may end mid-sample; the rest comes with the next
            ignored = 0
            while (frame := await _receive(ws, self.max_bytes, self.idle_timeout)) is not None:
                if isinstance(frame, bytes):
                    data = carry + frame
                    usable = len(data) - len(data) % width
                    carry = data[usable:]
                    if usable:
                        await self.call.feed(resampler(decode(data[:usable])))
                    continue
                event = _json(frame, "control frame").get("event")
                if event == "stop":
                    break
                ignored += 1
                if ignored == 1:  # its type and size only: nothing a client sends is written out
                    log.warning("audio stream %s: ignored an unknown control frame (%s, %d bytes); later ones are counted",
                                header.call_id, type(event).__name__, len(frame))
            await self.call.feed(resampler.flush())
        except StreamRefused as refused:
            code, reason = refused.code, refused.reason
            log.warning("audio stream %s refused: %s", self.call.call_id if self.call else "(no header)", reason)
            self.registry.services.counters.errors["ingest"] += 1
        except WebSocketDisconnect:
            log.info("audio stream %s: the sender went away", self.call.call_id if self.call else "(no header)")
        except Exception:  # a bug of ours: this call ends with what it sent, no other call notices
            code, reason = INTERNAL_ERROR, "internal error: the call is ended with what was sent"
            log.exception("audio stream %s failed", self.call.call_id if self.call else "(no header)")
            self.registry.services.counters.errors["ingest"] += 1
        finally:
            await _finish(ws, self.call, code, reason)

    @staticmethod
    def _header(message: dict) -> AudioHeader:
        try:
            return AudioHeader.model_validate(message)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "header"
            raise StreamRefused(BAD_INPUT, f"bad stream header: {where}: {first['msg']}") from None
