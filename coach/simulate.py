"""``coach simulate``: play recordings into a running server as live calls, paced in real time.

A recording (agent left, customer right) is sent the way telephony sends it: through
``/ws/twilio`` as two 8 kHz mu-law tracks in 20 ms messages, through ``/ws/audiohook`` as Genesys
AudioHook sends it (``open``, 100 ms stereo PCMU frames, pings every 5 s, ``close``), or through
``/ws/audio`` as 16 kHz PCM frames. For demos, tests and load: several calls can play at once, and the sender reports when
each piece of audio went out, so a benchmark can time the prompts that come back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from coach.audio.frames import SAMPLE_RATE
from coach.audio.telephony import MULAW_RATE, Resampler, mulaw_encode, pcm16_encode
from coach.errors import CoachError

CHUNK_SECONDS = 0.02  # what Twilio sends per message


@dataclass
class SimulatedCall:
    call_id: str
    agent_id: str
    seconds: float = 0.0  # audio sent so far
    closed: tuple[int | None, str] | None = None  # the server's close code and reason


def load_recording(path: Path) -> np.ndarray:
    """The whole recording as ``(samples, channels)`` float32 at 16 kHz (blocking)."""
    from coach.audio.files import probe, read_blocks

    probe(path)
    blocks = list(read_blocks(path))
    if not blocks:
        raise CoachError(f"{path} holds no audio")
    return np.concatenate(blocks)


def ws_url(server: str, path: str, token: str | None = None) -> str:
    base = server.rstrip("/").replace("https://", "wss://").replace("http://", "ws://")
    if not base.startswith(("ws://", "wss://")):
        base = "ws://" + base
    return f"{base}{path}" + (f"?token={token}" if token else "")


async def play_call(
    server: str,
    audio: np.ndarray,
    *,
    token: str,
    via: Literal["twilio", "audio", "audiohook"] = "twilio",
    call_id: str | None = None,
    agent_id: str = "agent-1",
    speed: float = 1.0,
    on_sent: Callable[[float, float], None] | None = None,
    audiohook_secret: str | None = None,
) -> SimulatedCall:
    """Stream ``audio`` (16 kHz, 1 or 2 channels) as one live call; returns when the server closed it.

    ``speed`` 1.0 is real time; 0 sends as fast as the server takes it. ``on_sent(audio_seconds,
    wall_time)`` is called after each message. Through AudioHook the token is the ``X-API-KEY``,
    the call id a UUID (the conversation's), and ``audiohook_secret`` signs the upgrade.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    if via == "audiohook":
        call = SimulatedCall(call_id or str(uuid.uuid4()), agent_id)
        return await _play_audiohook(server, audio, call, token, speed, on_sent, audiohook_secret)
    call = SimulatedCall(call_id or f"SIM{uuid.uuid4().hex[:16]}", agent_id)
    messages = _twilio_messages(audio, call, token) if via == "twilio" else _audio_messages(audio, call)
    url = ws_url(server, f"/ws/{via}", None if via == "twilio" else token)
    async with connect(url, max_size=None, open_timeout=30, compression=None) as ws:  # as telephony platforms send
        started = time.monotonic()
        try:
            for seconds, message in messages:
                if speed > 0:
                    delay = started + seconds / speed - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)  # pacing: a live call arrives in real time
                await ws.send(message)
                call.seconds = seconds
                if on_sent:
                    on_sent(seconds, time.time())
            await ws.send(json.dumps({"event": "stop", "streamSid": call.call_id}))
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        call.closed = (ws.close_code, ws.close_reason or "")
    return call


def _twilio_messages(audio: np.ndarray, call: SimulatedCall, token: str):
    """(seconds of audio sent once this goes, message) for a Twilio Media Stream of both tracks."""
    tracks = ("outbound", "inbound") if audio.shape[1] == 2 else ("inbound",)  # agent left, customer right
    yield 0.0, json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    yield 0.0, json.dumps({
        "event": "start", "sequenceNumber": "1", "streamSid": f"MZ{call.call_id}",
        "start": {
            "callSid": call.call_id, "tracks": list(tracks),
            "customParameters": {"agent_id": call.agent_id, "token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": MULAW_RATE, "channels": 1},
        },
    })
    narrowband = Resampler(SAMPLE_RATE, audio.shape[1], MULAW_RATE)
    telephone = np.concatenate([narrowband(audio.ravel()), narrowband.flush()])
    step = int(CHUNK_SECONDS * MULAW_RATE)
    sequence = 2
    for index, start in enumerate(range(0, telephone.shape[0], step)):
        for channel, track in enumerate(tracks):
            payload = base64.b64encode(mulaw_encode(telephone[start : start + step, channel])).decode()
            yield (start + step) / MULAW_RATE, json.dumps({
                "event": "media", "sequenceNumber": str(sequence), "streamSid": f"MZ{call.call_id}",
                "media": {"track": track, "chunk": str(index + 1), "timestamp": str(int(start * 1000 / MULAW_RATE)), "payload": payload},
            })
            sequence += 1


def _audio_messages(audio: np.ndarray, call: SimulatedCall):
    """The generic stream: a header, then 16-bit PCM frames of interleaved samples."""
    yield 0.0, json.dumps({
        "call_id": call.call_id, "agent_id": call.agent_id, "sample_rate": SAMPLE_RATE,
        "channels": audio.shape[1], "encoding": "pcm_s16le", "agent_channel": 0,
    })
    step = int(CHUNK_SECONDS * SAMPLE_RATE)
    for start in range(0, audio.shape[0], step):
        yield (start + step) / SAMPLE_RATE, pcm16_encode(audio[start : start + step].ravel())


AUDIOHOOK_ORG = "5a7b3c1d-0000-4000-8000-00000000c0ac"  # the organisation ``coach simulate`` says it is
AUDIOHOOK_FRAME = 0.1  # s of audio per binary frame, as Genesys's own client sends


async def _play_audiohook(server: str, audio: np.ndarray, call: SimulatedCall, key: str, speed: float,
                          on_sent: Callable[[float, float], None] | None, secret: str | None) -> SimulatedCall:
    """One AudioHook Monitor session, as Genesys Cloud runs it: the customer (right) as external, the
    agent (left) as internal."""
    from urllib.parse import urlsplit

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from coach.server.audiohook import sign

    session = str(uuid.uuid4())
    headers = {"audiohook-organization-id": AUDIOHOOK_ORG, "audiohook-session-id": session,
               "audiohook-correlation-id": str(uuid.uuid4()), "x-api-key": key}
    url = ws_url(server, "/ws/audiohook")
    if secret:  # signed as the Host header reads: the port only when it is not the scheme's own
        parts = urlsplit(url)
        default = 443 if parts.scheme == "wss" else 80
        authority = (parts.hostname or "") + (f":{parts.port}" if parts.port and parts.port != default else "")
        headers |= sign(headers, parts.path, authority, secret)
    channels = ["external", "internal"] if audio.shape[1] == 2 else ["external"]
    offer = {"type": "audio", "format": "PCMU", "channels": channels, "rate": MULAW_RATE}
    narrowband = Resampler(SAMPLE_RATE, audio.shape[1], MULAW_RATE)
    telephone = np.concatenate([narrowband(audio.ravel()), narrowband.flush()])
    order = [1, 0] if audio.shape[1] == 2 else [0]  # external (customer, right) first
    numbers = {"seq": 0, "server": 0}
    got = {kind: asyncio.Event() for kind in ("opened", "closed", "disconnect")}
    disconnect: dict = {}

    async with connect(url, additional_headers=headers, max_size=None, open_timeout=30, compression=None,
                       user_agent_header="GenesysCloud-AudioHook-Client") as ws:

        async def send(kind: str, parameters: dict, position: float) -> None:
            numbers["seq"] += 1
            await ws.send(json.dumps({"version": "2", "id": session, "type": kind, "seq": numbers["seq"], "serverseq": numbers["server"],
                                      "position": f"PT{position:.2f}S", "parameters": parameters}))

        async def listen() -> None:
            async for text in ws:
                message = json.loads(text)
                numbers["server"] = message.get("seq", numbers["server"])
                if message.get("type") == "disconnect":
                    disconnect.update(message.get("parameters", {}))
                if message.get("type") in got:
                    got[message["type"]].set()

        listener = asyncio.create_task(listen())
        try:
            await send("open", {"organizationId": AUDIOHOOK_ORG, "conversationId": call.call_id,
                                "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
                                "media": [offer], "language": "en-US", "customConfig": {"agent_id": call.agent_id}}, 0.0)
            answers = [asyncio.create_task(got[kind].wait()) for kind in ("opened", "disconnect")]
            await asyncio.wait(answers, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            for task in answers:
                task.cancel()
            step, started, pinged = int(AUDIOHOOK_FRAME * MULAW_RATE), time.monotonic(), 0.0
            for start in range(0, telephone.shape[0] if got["opened"].is_set() else 0, step):
                if got["disconnect"].is_set():
                    break
                seconds = (start + step) / MULAW_RATE
                if speed > 0 and (delay := started + seconds / speed - time.monotonic()) > 0:
                    await asyncio.sleep(delay)  # pacing: a live call arrives in real time
                await ws.send(mulaw_encode(telephone[start : start + step][:, order].ravel()))
                call.seconds = min(seconds, telephone.shape[0] / MULAW_RATE)
                if on_sent:
                    on_sent(call.seconds, time.time())
                if call.seconds - pinged >= 5.0:
                    pinged = call.seconds
                    await send("ping", {}, call.seconds)
            await send("close", {"reason": "disconnect" if got["disconnect"].is_set() else "end"}, call.seconds)
            await asyncio.wait_for(got["closed"].wait(), 30)
        except ConnectionClosed:
            pass
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
    reason = f"disconnect: {disconnect.get('reason')}: {disconnect.get('info', '')}" if disconnect else "closed" if got["closed"].is_set() else ""
    call.closed = (ws.close_code, reason)
    return call


async def simulate(
    server: str, recordings: list[Path], *, token: str, via: Literal["twilio", "audio", "audiohook"] = "twilio", speed: float = 1.0,
    calls: int = 1, stagger: float = 2.0, agent_prefix: str = "agent", report: Callable[[str], None] = print,
) -> list[SimulatedCall]:
    """Play ``calls`` calls, cycling through ``recordings``, starting ``stagger`` seconds apart."""
    audios = [await asyncio.to_thread(load_recording, path) for path in recordings]

    async def one(index: int) -> SimulatedCall:
        await asyncio.sleep(index * stagger)
        audio = audios[index % len(audios)]
        agent = f"{agent_prefix}-{index + 1}"
        report(f"call {index + 1}: {recordings[index % len(recordings)].name} ({audio.shape[0] / SAMPLE_RATE:.0f} s) as {agent}")
        done = await play_call(server, audio, token=token, via=via, agent_id=agent, speed=speed)
        code, reason = done.closed or (None, "")
        report(f"call {index + 1} ({done.call_id}): sent {done.seconds:.0f} s, server closed it: {code} {reason}")
        return done

    return await asyncio.gather(*(one(i) for i in range(calls)))
