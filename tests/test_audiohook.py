"""Genesys AudioHook Monitor in (issue 31), driven by a client written here from the protocol brief
(../shared/research/genesys-audiohook.md), not by the server's own code: a whole call, the probe,
pause and resume, signed and badly signed sessions, and bad input, each refused with its documented
``disconnect`` while the server and other calls go on and what was received is kept."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coach.audio.telephony import mulaw_encode
from tests.fakes import silence, stereo
from tests.live import ADMIN, PHRASES, running_server, said
from tests.test_server import ESCALATION, finals, read_all

ORG = "d7934305-0972-4844-938e-9060eef73d05"
ZERO = "00000000-0000-0000-0000-000000000000"
STEREO = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}
OFFERS = [STEREO, {**STEREO, "channels": ["external"]}, {**STEREO, "channels": ["internal"]}]
SECRET = base64.b64encode(b"the integration's client secret!").decode()
COVERED = ("@request-target", "@authority", "audiohook-organization-id", "audiohook-session-id", "audiohook-correlation-id", "x-api-key")


def sign_upgrade(headers: dict, target: str, authority: str, secret: str, created: int, expires: int | None = None,
                 nonce: str = "bm9uY2Utb2YtdGhlLXRlc3Q=") -> dict:
    """The HTTP message signature as the brief's section 2 describes it."""
    lowered = {k.lower(): v for k, v in headers.items()}
    params = ("(" + " ".join(f'"{c}"' for c in COVERED) + f');keyid="{lowered["x-api-key"]}";nonce="{nonce}";alg="hmac-sha256";'
              f"created={created};expires={created + 30 if expires is None else expires}")
    values = {"@request-target": target, "@authority": authority, **{c: lowered[c] for c in COVERED[2:]}}
    base = "\n".join([*(f'"{c}": {values[c]}' for c in COVERED), f'"@signature-params": {params}'])
    mac = base64.b64encode(hmac.new(base64.b64decode(secret), base.encode(), hashlib.sha256).digest()).decode()
    return {"Signature-Input": f"sig1={params}", "Signature": f"sig1=:{mac}:"}


def test_the_tests_own_signer_gives_the_documented_example():
    headers = {"Audiohook-Organization-Id": ORG, "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
               "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d", "X-API-KEY": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"}
    signed = sign_upgrade(headers, "/api/v1/voicebiometrics/ws", "audiohook.example.com", "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=",
                          1641013200, 3282026430, nonce="VGhpc0lzQVVuaXF1ZU5vbmNl")
    assert signed["Signature"] == "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"


def test_the_server_verifies_the_documented_example():
    from coach.server.audiohook import signature_valid

    headers = {"audiohook-organization-id": ORG, "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
               "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d", "x-api-key": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
               "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
                                  '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
                                  'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
               "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"}
    secret = "TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU="
    target, host = "/api/v1/voicebiometrics/ws", "audiohook.example.com"
    assert signature_valid(headers, target, host, secret, now=1641013201)
    assert not signature_valid(headers, target, host, secret, now=1641013260)  # too old
    swapped = {**headers, "audiohook-session-id": headers["audiohook-correlation-id"], "audiohook-correlation-id": headers["audiohook-session-id"]}
    assert not signature_valid(swapped, target, host, secret, now=1641013201)
    assert not signature_valid(headers, target, host, base64.b64encode(b"another secret").decode(), now=1641013201)


class Hook:
    """The Genesys side of one session: numbered messages, the server's numbers checked."""

    def __init__(self, ws, session: str) -> None:
        self.ws, self.session, self.seq, self.server_seq, self.position = ws, session, 0, 0, 0.0

    async def send(self, kind: str, parameters: dict | None = None, **overrides) -> None:
        self.seq += 1
        message = {"version": "2", "id": self.session, "type": kind, "seq": self.seq, "serverseq": self.server_seq,
                   "position": f"PT{self.position:.2f}S", "parameters": {} if parameters is None else parameters, **overrides}
        await self.ws.send(json.dumps(message))

    async def recv(self) -> dict:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        assert message["version"] == "2" and message["id"] == self.session and isinstance(message["parameters"], dict)
        assert message["seq"] == self.server_seq + 1, "the server's seq goes up by one"
        self.server_seq = message["seq"]
        assert message["clientseq"] <= self.seq and "position" not in message
        return message

    async def audio(self, stereo16k: np.ndarray, frame_ms: int = 100, ping_every: int = 0) -> None:
        """Customer (right) as external, agent (left) as internal, interleaved; 8 kHz PCMU."""
        narrow = stereo16k[::2]
        step = 8 * frame_ms
        for n, i in enumerate(range(0, narrow.shape[0], step)):
            block = narrow[i : i + step]
            frame = np.empty(block.shape[0] * 2, np.uint8)
            frame[0::2] = np.frombuffer(mulaw_encode(block[:, 1]), np.uint8)
            frame[1::2] = np.frombuffer(mulaw_encode(block[:, 0]), np.uint8)
            await self.ws.send(frame.tobytes())
            self.position += block.shape[0] / 8000
            if ping_every and n % ping_every == ping_every - 1:
                await self.send("ping")
                pong = await self.recv()
                assert pong["type"] == "pong" and pong["clientseq"] == self.seq

    async def open(self, conversation: str, media=None, custom: dict | None = None, org: str = ORG) -> dict:
        participant = {"id": str(uuid.uuid4()), "ani": "+441234567890", "aniName": "", "dnis": "+448000000000"}
        if conversation == ZERO:
            participant = {"id": ZERO, "ani": "", "aniName": "", "dnis": ""}
        params = {"organizationId": org, "conversationId": conversation, "participant": participant,
                  "media": OFFERS if media is None else media, "language": "en-US"}
        if custom is not None:
            params["customConfig"] = custom
        await self.send("open", params)
        return await self.recv()

    async def close(self) -> dict:
        await self.send("close", {"reason": "end"})
        return await self.recv()


def hook_headers(key: str, session: str, org: str = ORG) -> dict:
    return {"Audiohook-Organization-Id": org, "Audiohook-Session-Id": session, "Audiohook-Correlation-Id": str(uuid.uuid4()),
            "X-API-KEY": key, "User-Agent": "GenesysCloud-AudioHook-Client"}


def session(live, key: str, headers: dict | None = None, session_id: str | None = None):
    session_id = session_id or str(uuid.uuid4())
    return connect(f"{live.ws}/ws/audiohook", additional_headers=headers or hook_headers(key, session_id)), session_id


async def _stored(live, call_id: str, token: str = ADMIN) -> dict:
    status, call = await live.request("GET", f"/api/calls/{call_id}", token=token)
    assert status == 200, call
    return call


async def _ended(live, call_id: str) -> dict:
    """The call once it has ended (its end is sealed just after the session closes)."""
    for _ in range(400):  # polled, with a bound
        status, call = await live.request("GET", f"/api/calls/{call_id}")
        if status == 200 and call["state"] != "live":
            return call
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_id} did not end")


@pytest.fixture
async def live(tmp_path):
    async with running_server(tmp_path, audiohook_api_key="genesys-integration-key") as server:
        yield server


async def test_a_whole_call_through_audiohook_is_a_call_like_any_other(live):
    ingest = await live.token("ingest")
    conversation = str(uuid.uuid4())
    opener, sid = session(live, ingest)
    async with opener as ws:
        hook = Hook(ws, sid)
        opened = await hook.open(conversation, custom={"agent_id": "ana"})
        assert opened["type"] == "opened" and opened["seq"] == 1 and opened["clientseq"] == 1
        assert opened["parameters"]["media"] == [STEREO]  # exactly one offer, unmodified
        await hook.audio(ESCALATION, frame_ms=100, ping_every=20)
        closed = await hook.close()
        assert closed["type"] == "closed" and closed["parameters"] == {} and closed["clientseq"] == hook.seq
    async with connect(f"{live.ws}/ws/calls/{conversation}?token={ADMIN}") as reader:
        events = await read_all(reader)
    assert finals(events, "agent") == [PHRASES[300]] and finals(events, "customer") == [PHRASES[400], PHRASES[500]]
    assert any(e["type"] == "signal" and e["label"] == "escalation_request" for e in events)
    await _ended(live, conversation)
    agent = await live.token("agent", "ana")  # the agent id came from customConfig
    call = await _stored(live, conversation, agent)
    assert call["state"] == "ended" and call["has_audio"] and call["agent_id"] == "ana"


async def test_the_connection_probe_is_answered_and_makes_no_call(live):
    opener, sid = session(live, "genesys-integration-key")  # the key the admin configured
    async with opener as ws:
        hook = Hook(ws, sid)
        opened = await hook.open(ZERO)
        assert opened["type"] == "opened" and opened["parameters"]["media"] == [STEREO]
        closed = await hook.close()
        assert (closed["type"], closed["seq"], closed["clientseq"], closed["parameters"]) == ("closed", 2, 2, {})
    status, calls = await live.request("GET", "/api/calls")
    assert status == 200 and calls == []


async def test_a_secure_pause_stays_in_the_timeline_and_pings_are_answered_meanwhile(live):
    conversation = str(uuid.uuid4())
    first, second = stereo(("agent", said(300)), ("agent", silence(1.0))), stereo(("customer", said(400)), ("customer", silence(1.5)))
    opener, sid = session(live, "genesys-integration-key")
    async with opener as ws:
        hook = Hook(ws, sid)
        await hook.open(conversation, media=[{**STEREO, "channels": ["internal", "external"]}, STEREO])  # the order as offered
        await hook.audio(first[:, ::-1])  # (internal first: the channels swapped to match)
        await hook.send("paused")
        await hook.send("ping")
        assert (await hook.recv())["type"] == "pong"
        hook.position += 20.0  # longer than the dead air a silence is flagged at (10 s)
        await hook.send("resumed", {"start": f"PT{hook.position - 20.0:.2f}S", "discarded": "PT20.00S"})
        await hook.audio(second[:, ::-1])
        await hook.close()
    async with connect(f"{live.ws}/ws/calls/{conversation}?token={ADMIN}") as reader:
        events = await read_all(reader)
    customer = [e for e in events if e["type"] == "transcript" and e["final"] and e["speaker"] == "customer"]
    assert [e["text"] for e in customer] == [PHRASES[400]] and finals(events, "agent") == [PHRASES[300]]
    assert customer[0]["start"] >= first.shape[0] / 16000 + 20.0 - 0.5  # after the 20 s the customer's pause held back
    assert not any(e["type"] == "signal" and e["label"] == "dead_air" for e in events)  # a secure pause is no dead air


async def test_a_conversation_streamed_again_after_a_dropped_session_goes_on_as_its_next_segment(live):
    conversation = str(uuid.uuid4())
    for part in (300, 400):
        opener, sid = session(live, "genesys-integration-key")
        async with opener as ws:
            hook = Hook(ws, sid)
            assert (await hook.open(conversation))["type"] == "opened"
            await hook.audio(stereo(("agent" if part == 300 else "customer", said(part)), ("agent", silence(1.0))))
            if part == 300:
                ws.transport.abort()  # the connection drops; Genesys opens a new session for the conversation
            else:
                await hook.close()
        await _ended(live, conversation if part == 300 else f"{conversation}.2")
    first, second = await _stored(live, conversation), await _stored(live, f"{conversation}.2")
    assert [e["text"] for e in first["events"] if e["type"] == "transcript"] == [PHRASES[300]]
    assert [e["text"] for e in second["events"] if e["type"] == "transcript"] == [PHRASES[400]]


async def test_a_signed_session_opens_and_a_badly_signed_one_is_unauthorized(tmp_path):
    async with running_server(tmp_path, audiohook_client_secret=SECRET) as live:
        ingest = await live.token("ingest")
        host = live.url.removeprefix("http://")
        for secret, expected in ((SECRET, "opened"), (base64.b64encode(b"not the secret").decode(), "disconnect"), (None, "disconnect")):
            sid = str(uuid.uuid4())
            headers = hook_headers(ingest, sid)
            if secret is not None:
                headers |= sign_upgrade(headers, "/ws/audiohook", host, secret, int(time.time()))
            async with connect(f"{live.ws}/ws/audiohook", additional_headers=headers) as ws:
                hook = Hook(ws, sid)
                answer = await hook.open(str(uuid.uuid4()))
                assert answer["type"] == expected
                if expected == "disconnect":
                    assert answer["parameters"]["reason"] == "unauthorized"
                closed = await hook.close()
                assert closed["type"] == "closed"


async def _refused(live, steps, key: str = "genesys-integration-key", headers: dict | None = None) -> tuple[dict, str]:
    """Run ``steps(hook)``; expect a disconnect, answer it with close, and get closed. The conversation id used."""
    conversation = str(uuid.uuid4())
    opener, sid = session(live, key, headers)
    if headers is not None:
        sid = headers.get("Audiohook-Session-Id", sid)
    async with opener as ws:
        hook = Hook(ws, sid)
        disconnect = await steps(hook, conversation)
        assert disconnect["type"] == "disconnect", disconnect
        await hook.send("close", {"reason": "disconnect"})
        assert (await hook.recv())["type"] == "closed"
    return disconnect["parameters"], conversation


async def test_bad_input_gets_its_documented_disconnect_and_nothing_else_is_disturbed(live):
    other = str(uuid.uuid4())  # a healthy call, streaming throughout
    opener, sid = session(live, "genesys-integration-key")
    async with opener as ws:
        healthy = Hook(ws, sid)
        await healthy.open(other)
        await healthy.audio(stereo(("agent", said(300)), ("agent", silence(1.0))))

        async def no_open(hook, conversation):
            await hook.send("ping")
            return await hook.recv()

        async def media_first(hook, conversation):
            await hook.ws.send(b"\xff" * 1600)
            return await hook.recv()

        async def not_offered(hook, conversation):
            return await hook.open(conversation, media=[{**STEREO, "format": "L16", "rate": 16000}])

        async def wrong_seq(hook, conversation):
            await hook.open(conversation)
            await hook.audio(stereo(("customer", said(400)), ("customer", silence(1.0))))
            hook.seq += 1  # one skipped
            await hook.send("ping")
            return await hook.recv()

        async def unknown_type(hook, conversation):
            await hook.open(conversation)
            await hook.send("dance")
            return await hook.recv()

        async def oversized(hook, conversation):
            await hook.open(conversation)
            await hook.send("update", {"language": "x" * 70_000})
            return await hook.recv()

        async def big_audio(hook, conversation):
            await hook.open(conversation)
            await hook.ws.send(b"\xff" * 100_000)
            return await hook.recv()

        async def wrong_id(hook, conversation):
            await hook.open(conversation)
            await hook.send("ping", id=str(uuid.uuid4()))
            return await hook.recv()

        async def malformed(hook, conversation):
            await hook.open(conversation)
            await hook.ws.send("{not json")
            return await hook.recv()

        async def serverseq_ahead(hook, conversation):
            await hook.open(conversation)
            await hook.send("ping", serverseq=9)
            return await hook.recv()

        for steps, reason in ((no_open, "error"), (media_first, "error"), (not_offered, "error"), (wrong_seq, "error"),
                              (unknown_type, "error"), (oversized, "error"), (big_audio, "error"), (wrong_id, "error"), (malformed, "error"),
                              (serverseq_ahead, "error")):
            params, conversation = await _refused(live, steps)
            assert params["reason"] == reason and params.get("info"), steps.__name__
            if steps is wrong_seq:  # what it sent before the fault is kept
                kept = await _ended(live, conversation)
                assert kept["state"] == "ended" and kept["has_audio"] and PHRASES[400] in [e.get("text") for e in kept["events"]]

        async def just_open(hook, conversation):
            return await hook.open(conversation)

        params, _ = await _refused(live, just_open, key="not-a-key")
        assert params["reason"] == "unauthorized"
        sid = str(uuid.uuid4())
        params, _ = await _refused(live, just_open, headers=hook_headers("genesys-integration-key", sid, org=str(uuid.uuid4())))
        assert params["reason"] == "unauthorized"  # the open's organization is not the upgrade's
        params, _ = await _refused(live, just_open, headers={"X-API-KEY": "genesys-integration-key"})
        assert params["reason"] == "unauthorized"  # no session or organization headers

        async def twice(hook, conversation):
            return await hook.open(other)

        params, _ = await _refused(live, twice)
        assert params["reason"] == "error" and "already streaming" in params["info"]
        await healthy.audio(stereo(("customer", said(500)), ("customer", silence(1.5))), ping_every=5)  # it went on meanwhile
        await healthy.close()
    async with connect(f"{live.ws}/ws/calls/{other}?token={ADMIN}") as reader:
        assert finals(await read_all(reader)) == [PHRASES[300], PHRASES[500]]


async def test_a_client_that_vanishes_mid_call_leaves_what_it_sent_kept(live):
    conversation = str(uuid.uuid4())
    opener, sid = session(live, "genesys-integration-key")
    async with opener as ws:
        hook = Hook(ws, sid)
        await hook.open(conversation)
        await hook.audio(stereo(("customer", said(500)), ("customer", silence(1.5))))
        ws.transport.abort()  # the network drops: no close, no close frame
    call = await _ended(live, conversation)  # the server sees the socket go and ends the call
    assert call["state"] == "ended" and PHRASES[500] in [e.get("text") for e in call["events"]]
    with pytest.raises(ConnectionClosed):
        await ws.recv()


async def test_coach_simulate_plays_a_call_through_audiohook_signed(tmp_path):
    from coach.simulate import play_call

    async with running_server(tmp_path, audiohook_client_secret=SECRET) as live:
        ingest = await live.token("ingest")
        played = await play_call(live.url, ESCALATION, token=ingest, via="audiohook", agent_id="ana", speed=0, audiohook_secret=SECRET)
        assert played.closed[1] == "closed"
        call = await _ended(live, played.call_id)
        assert call["agent_id"] == "ana" and "escalation_request" in call["labels"]
        refused = await play_call(live.url, ESCALATION, token=ingest, via="audiohook", speed=0)  # not signed
        assert refused.closed[1].startswith("disconnect: unauthorized")
