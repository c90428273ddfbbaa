"""``coach simulate``: play recordings into a running server as live calls, paced in real time.

A recording (agent left, customer right) is sent the way telephony sends it: through
``/ws/twilio`` as two 8 kHz mu-law tracks in 20 ms messages, or through ``/ws/audio`` as 16 kHz
PCM frames. For demos, tests and load: several calls can play at once, and the sender reports when
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
    via: Literal["twilio", "audio"] = "twilio",
    call_id: str | None = None,
    agent_id: str = "agent-1",
    speed: float = 1.0,
    on_sent: Callable[[float, float], None] | None = None,
) -> SimulatedCall:
    """Stream ``audio`` (16 kHz, 1 or 2 channels) as one live call; returns when the server closed it.

    ``speed`` 1.0 is real time; 0 sends as fast as the server takes it. ``on_sent(audio_seconds,
    wall_time)`` is called after each message.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

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


async def simulate(
    server: str, recordings: list[Path], *, token: str, via: Literal["twilio", "audio"] = "twilio", speed: float = 1.0,
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
