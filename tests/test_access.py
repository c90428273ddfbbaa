"""Who may connect, how often, and how long a quiet stream is kept open (issue 7).

Real websocket clients against the running app (stand-in models): the Origin check, the
connection rate, Twilio's request signature, calls per token, and the idle timeout.
"""

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coach.server.guards import RateLimiter, origin_allowed, twilio_signature, twilio_signature_valid
from tests.fakes import silence, stereo
from tests.live import ADMIN, PHRASES, running_server, said

TWILIO_AUTH = "twilio-auth-token-for-tests"


async def closed_with(ws) -> tuple[int, str]:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code, closed.rcvd.reason


def start_frame(call_id: str, token: str | None = None) -> str:
    params = {"agent_id": "ana", **({"token": token} if token else {})}
    return json.dumps({"event": "start", "start": {"callSid": call_id, "tracks": ["inbound", "outbound"], "customParameters": params}})


def test_origin_rules():
    assert origin_allowed(None, "coach.example:8000", [])  # telephony and scripts send no Origin
    assert origin_allowed("https://coach.example:8000", "coach.example:8000", [])  # the server's own pages
    assert not origin_allowed("https://evil.example", "coach.example:8000", [])
    assert origin_allowed("https://crm.example/", "coach.example:8000", ["https://crm.example"])
    assert not origin_allowed("null", "coach.example:8000", [])


def test_rate_limit_is_per_address_in_a_sliding_minute():
    now = [0.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")
    now[0] = 60.5
    assert limiter.allow("a")


def test_a_twilio_signature_matches_the_url_as_twilio_wrote_it():
    signed = twilio_signature(TWILIO_AUTH, "wss://coach.example.com/ws/twilio")
    # behind a TLS proxy the server sees ws:// and maybe the port
    assert twilio_signature_valid(TWILIO_AUTH, signed, ["ws://coach.example.com/ws/twilio"])
    assert twilio_signature_valid(TWILIO_AUTH, signed, ["ws://coach.example.com:443/ws/twilio"])
    assert not twilio_signature_valid(TWILIO_AUTH, signed, ["ws://coach.example.com/ws/audio"])
    assert not twilio_signature_valid("another-token", signed, ["wss://coach.example.com/ws/twilio"])


async def test_a_page_from_another_origin_cannot_open_a_websocket_but_the_servers_own_pages_can(tmp_path):
    async with running_server(tmp_path, allowed_origins=["https://crm.example"]) as live:
        async with connect(f"{live.ws}/ws/board?token={ADMIN}", origin="https://evil.example") as ws:
            code, reason = await closed_with(ws)
        assert code == 4403 and "origin" in reason
        for origin in (live.url, "https://crm.example"):
            async with connect(f"{live.ws}/ws/board?token={ADMIN}", origin=origin) as ws:
                await ws.send("{}")  # the reader is open: it waits for calls
                assert ws.state.name == "OPEN"
        metrics = live.app.state.coach.counters.refused
        assert metrics["origin"] == 1


async def test_too_many_connections_from_one_address_are_refused_with_4429_and_429(tmp_path):
    async with running_server(tmp_path, connections_per_minute=5) as live:
        codes = []
        for _ in range(3):
            async with connect(f"{live.ws}/ws/calls/nope?token={ADMIN}") as ws:
                codes.append((await closed_with(ws))[0])
        statuses = [(await live.request("GET", "/api/calls"))[0] for _ in range(3)]
        assert codes == [4404, 4404, 4404] and statuses == [200, 200, 429]
        async with connect(f"{live.ws}/ws/board?token={ADMIN}") as ws:
            assert (await closed_with(ws))[0] == 4429
        status, _ = await asyncio.to_thread(_get_page, live.url + "/sidebar")
        assert status == 200  # pages are not counted


def _get_page(url):
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read()


async def test_a_twilio_stream_signed_with_the_auth_token_needs_no_coach_token_and_a_bad_signature_is_refused(tmp_path):
    call = stereo(("agent", said(300)), ("agent", silence(1.0)))
    async with running_server(tmp_path, twilio_auth_token=TWILIO_AUTH) as live:
        url = f"{live.ws}/ws/twilio/SIG1"  # a signed URL names its call
        good = twilio_signature(TWILIO_AUTH, url.replace("ws://", "wss://"))
        async with connect(url, additional_headers={"X-Twilio-Signature": good}) as ws:
            await ws.send(start_frame("SIG1"))
            from coach.simulate import SimulatedCall, _twilio_messages

            for _, message in _twilio_messages(call, SimulatedCall("SIG1", "ana"), ""):
                if json.loads(message)["event"] == "media":
                    await ws.send(message)
            await ws.send(json.dumps({"event": "stop"}))
            assert await closed_with(ws) == (1000, "call ended")
        status, kept = await live.request("GET", "/api/calls/SIG1")
        assert status == 200 and [e["text"] for e in kept["events"] if e["type"] == "transcript"] == [PHRASES[300]]
        bad = twilio_signature("someone-else", url)
        async with connect(url, additional_headers={"X-Twilio-Signature": bad}) as ws:
            code, reason = await closed_with(ws)
        assert code == 4401 and "Signature" in reason
        async with connect(url) as ws:  # no signature and no token
            await ws.send(start_frame("SIG2"))
            assert (await closed_with(ws))[0] == 4401


async def test_one_token_streams_at_most_its_limit_of_calls_at_once(tmp_path):
    async with running_server(tmp_path, max_calls_per_token=1, stream_idle_timeout=30) as live:
        ingest, other = await live.token("ingest"), await live.token("ingest")
        async with connect(f"{live.ws}/ws/twilio") as first:
            await first.send(start_frame("T1", ingest))
            async with connect(f"{live.ws}/ws/board?token={ADMIN}") as board:
                assert json.loads(await board.recv())["call_id"] == "T1"
            async with connect(f"{live.ws}/ws/twilio") as second:
                await second.send(start_frame("T2", ingest))
                code, reason = await closed_with(second)
            assert code == 4429 and "limit" in reason
            async with connect(f"{live.ws}/ws/twilio") as third:  # another token may
                await third.send(start_frame("T3", other))
                await third.send(json.dumps({"event": "stop"}))
                assert (await closed_with(third))[0] == 1000
            await first.send(json.dumps({"event": "stop"}))
            assert (await closed_with(first))[0] == 1000


async def test_a_stream_that_goes_quiet_is_ended_with_what_it_sent(tmp_path):
    async with running_server(tmp_path, stream_idle_timeout=0.5) as live:
        ingest = await live.token("ingest")
        turn = stereo(("agent", said(300)), ("agent", silence(1.0)))
        from coach.simulate import SimulatedCall, _twilio_messages

        async with connect(f"{live.ws}/ws/twilio") as ws:
            for _, message in _twilio_messages(turn, SimulatedCall("Q1", "ana"), ingest):
                if json.loads(message)["event"] != "stop":
                    await ws.send(message)
            code, reason = await closed_with(ws)  # no stop, no close: the sender just went quiet
        assert code == 4408 and "nothing received" in reason
        status, kept = await live.request("GET", "/api/calls/Q1")
        assert kept["state"] == "ended" and [e["text"] for e in kept["events"] if e["type"] == "transcript"] == [PHRASES[300]]
        assert kept["duration"] == pytest.approx(turn.shape[0] / 16000, abs=0.1)
