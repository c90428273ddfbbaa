"""The live service with the real models: generated speech through the telephone path
(16 kHz -> 8 kHz mu-law, both Twilio tracks) comes out as the right words from the right party."""

import json

import pytest
from websockets.asyncio.client import connect

from coach.simulate import load_recording, play_call
from tests.live import ADMIN, running_server

pytestmark = pytest.mark.model


async def test_a_twilio_call_is_transcribed_live_with_sentiment(short_call, tmp_path):
    path, _ = short_call
    async with running_server(tmp_path, real_models=True) as live:
        ingest = await live.token("ingest")
        played = await play_call(live.url, load_recording(path), token=ingest, call_id="REAL1", speed=2.0)
        assert played.closed == (1000, "call ended")
        async with connect(f"{live.ws}/ws/calls/REAL1?token={ADMIN}") as ws:
            events = [json.loads(m) async for m in ws]
    finals = [e for e in events if e["type"] == "transcript" and e["final"] and e["text"]]
    said = {who: " ".join(e["text"].lower() for e in finals if e["speaker"] == who) for who in ("agent", "customer")}
    assert "calling" in said["agent"] and "refund" in said["agent"]
    assert "order" in said["customer"] and "refund" in said["customer"]  # 8 kHz mu-law blurs more than that
    assert all(-1 <= e["sentiment"] <= 1 for e in finals)
    assert events[-1]["type"] == "call" and events[-1]["state"] == "ended"
