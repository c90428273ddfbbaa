"""The live service with real websocket clients against the running app (stand-in models).

Audio is tones that the stand-in speech model 'hears' as scripted sentences (tests/live.py), so
these run in seconds; the phrase rules, prompt policy and risk are the real ones.
"""

import asyncio
import base64
import json
import socket

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coach.audio.telephony import mulaw_encode, pcm16_encode
from coach.simulate import play_call
from tests.fakes import PhraseTranscriber, silence, stereo
from tests.live import ADMIN, PHRASES, running_server, said

ESCALATION = stereo(
    ("agent", said(300)), ("agent", silence(1.0)),
    ("customer", said(400)), ("customer", silence(1.0)),
    ("customer", said(500)), ("customer", silence(1.5)),
)


async def read_all(ws) -> list[dict]:
    """Every message until the server closes the stream."""
    out = []
    try:
        async for message in ws:
            out.append(json.loads(message))
    except ConnectionClosed:
        pass
    return out


def finals(events, speaker=None):
    return [e["text"] for e in events if e["type"] == "transcript" and e["final"] and speaker in (None, e["speaker"])]


@pytest.fixture
async def live(tmp_path):
    async with running_server(tmp_path) as server:
        yield server


async def test_twilio_call_gives_transcript_signal_prompt_and_risk_to_a_live_reader(live):
    ingest, lead = await live.token("ingest"), await live.token("lead")
    sending = asyncio.create_task(play_call(live.url, ESCALATION, token=ingest, via="twilio", call_id="CA100", agent_id="ana", speed=0))
    async with connect(f"{live.ws}/ws/board?token={lead}") as board:
        first = json.loads(await board.recv())
    assert first["call_id"] == "CA100" and first["agent_id"] == "ana"
    async with connect(f"{live.ws}/ws/calls/CA100?token={lead}") as ws:
        events = await read_all(ws)
    sent = await sending
    assert sent.closed == (1000, "call ended")
    # outbound = agent, inbound = customer
    assert finals(events, "agent") == [PHRASES[300]]
    assert finals(events, "customer") == [PHRASES[400], PHRASES[500]]
    signal = next(e for e in events if e["type"] == "signal")
    assert signal["label"] == "escalation_request" and "manager" in signal["evidence"]
    prompt = next(e for e in events if e["type"] == "prompt")
    assert prompt["kind"] == "deescalate" and prompt["signals"] == ["escalation_request"]
    assert any(e["type"] == "risk" and e["score"] > 0 for e in events)
    assert all(e["call_id"] == "CA100" and isinstance(e["ts"], float) for e in events)
    assert events[0]["type"] == "call" and events[-1] == {**events[-1], "type": "call", "state": "ended", "prompt": prompt["title"]}
    status, calls = await live.request("GET", "/api/calls?flagged=true", token=lead)
    assert status == 200 and [c["call_id"] for c in calls] == ["CA100"]


async def test_a_late_joiner_gets_the_same_events_in_the_same_order(live):
    ingest = await live.token("ingest")
    async with connect(f"{live.ws}/ws/board?token={ADMIN}") as board:
        sending = asyncio.create_task(play_call(live.url, ESCALATION, token=ingest, call_id="CA200", speed=0))
        await board.recv()  # the call is live
        async with connect(f"{live.ws}/ws/calls/CA200?token={ADMIN}") as early:
            during = await read_all(early)
    await sending
    async with connect(f"{live.ws}/ws/calls/CA200?token={ADMIN}") as late:
        after = await read_all(late)
    assert after == during and len(finals(after)) == 3
    status, call = await live.request("GET", "/api/calls/CA200")
    kept = [{k: v for k, v in e.items() if k != "seq"} for e in call["events"]]
    assert status == 200 and kept == [e for e in after if e["type"] != "call"]  # the store has every event
    assert [e["seq"] for e in call["events"]] == list(range(len(kept)))


async def test_generic_stream_stereo_at_44k1_with_the_agent_on_the_right(live):
    ingest = await live.token("ingest")
    t = np.arange(int(1.5 * 44100)) / 44100
    agent_line = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    audio = np.zeros((len(t) + 2 * 44100, 2), np.float32)
    audio[: len(t), 1] = agent_line  # agent_channel=1: right
    async with connect(f"{live.ws}/ws/audio?token={ingest}") as ws:
        await ws.send(json.dumps({"call_id": "G1", "agent_id": "bo", "sample_rate": 44100, "channels": 2, "encoding": "pcm_s16le", "agent_channel": 1}))
        data = pcm16_encode(audio.ravel())
        for i in range(0, len(data), 3001):  # odd sizes: frames that end mid-sample
            await ws.send(data[i : i + 3001])
        await ws.send(json.dumps({"event": "stop"}))
        await ws.wait_closed()
    async with connect(f"{live.ws}/ws/calls/G1?token={ADMIN}") as reader:
        events = await read_all(reader)
    assert finals(events, "agent") == [PHRASES[300]] and finals(events, "customer") == []


async def test_generic_stream_mono_mulaw_is_one_mixed_party(live):
    ingest = await live.token("ingest")
    audio = np.concatenate([said(600, 1.5)[::2], np.zeros(12000, np.float32)])  # 8 kHz
    async with connect(f"{live.ws}/ws/audio?token={ingest}") as ws:
        await ws.send(json.dumps({"call_id": "M1", "sample_rate": 8000, "channels": 1, "encoding": "mulaw"}))
        await ws.send(mulaw_encode(audio))
    # the sender closed without "stop": what arrived is still analysed and kept
    async with connect(f"{live.ws}/ws/calls/M1?token={ADMIN}") as reader:
        events = await read_all(reader)
    assert [(e["speaker"], e["text"]) for e in events if e["type"] == "transcript"] == [("mixed", PHRASES[600])]


async def test_a_sender_that_vanishes_mid_call_keeps_what_it_sent(live):
    ingest = await live.token("ingest")
    two_turns = stereo(("agent", said(300)), ("agent", silence(1.0)), ("customer", said(400)), ("customer", silence(1.0)))
    chunks = list(_twilio_media(two_turns))
    async with connect(f"{live.ws}/ws/twilio") as ws:
        await ws.send(_twilio_start("V1", ingest))
        for chunk in chunks[: len(chunks) * 3 // 4]:  # gone in the middle of the customer's turn
            await ws.send(chunk)
        assert (await live.request("GET", "/api/calls/V1"))[0] == 200  # the call has started
        ws.transport.abort()  # no stop, no close frame
    async with connect(f"{live.ws}/ws/calls/V1?token={ADMIN}") as reader:
        events = await read_all(reader)
    assert finals(events, "agent") == [PHRASES[300]]
    assert finals(events, "customer") == [PHRASES[400]]  # the turn cut off is finalised, not lost
    assert events[-1]["state"] == "ended"


async def test_agents_see_only_their_own_calls(live):
    ingest = await live.token("ingest")
    ana, bo = await live.token("agent", "ana"), await live.token("agent", "bo")
    await play_call(live.url, ESCALATION, token=ingest, call_id="A1", agent_id="ana", speed=0)
    await play_call(live.url, ESCALATION, token=ingest, call_id="B1", agent_id="bo", speed=0)
    async with connect(f"{live.ws}/ws/calls/A1?token={ana}") as ws:
        assert len(await read_all(ws)) > 3
    async with connect(f"{live.ws}/ws/calls/A1?token={bo}") as ws:
        await read_all(ws)
    assert ws.close_code == 4403
    async with connect(f"{live.ws}/ws/board?token={bo}") as ws:
        summaries = []
        while not summaries or summaries[-1]["call_id"] != "B1":
            summaries.append(json.loads(await ws.recv()))
    assert {s["call_id"] for s in summaries} == {"B1"}
    status, calls = await live.request("GET", "/api/calls", token=ana)
    assert status == 200 and [c["call_id"] for c in calls] == ["A1"]
    assert (await live.request("GET", "/api/calls/B1", token=ana))[0] == 403


@pytest.mark.parametrize("path", ["/ws/calls/X", "/ws/board"])
@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_readers_without_a_valid_token_are_refused(live, path, token):
    async with connect(f"{live.ws}{path}" + (f"?token={token}" if token else "")) as ws:
        await read_all(ws)
    assert ws.close_code == 4401


async def test_unknown_call_is_4404_and_revoked_or_wrong_role_tokens_are_refused(live):
    lead = await live.token("lead")
    async with connect(f"{live.ws}/ws/calls/nope?token={lead}") as ws:
        await read_all(ws)
    assert ws.close_code == 4404
    # a lead may read but not send audio
    async with connect(f"{live.ws}/ws/twilio") as ws:
        await ws.send(_twilio_start("R1", lead))
        await read_all(ws)
    assert ws.close_code == 4403
    _, tokens = await live.request("GET", "/api/tokens")
    await live.request("DELETE", f"/api/tokens/{tokens[0]['id']}")
    assert (await live.request("GET", "/api/calls", token=lead))[0] == 401
    assert (await live.request("GET", "/api/calls", token=None))[0] == 401
    assert (await live.request("POST", "/api/tokens", token=await live.token("qa"), body={"role": "lead"}))[0] == 403
    assert not any(lead in str(t) for t in (await live.request("GET", "/api/tokens"))[1])  # stored hashed, never shown again
    assert lead not in (live.app.state.settings.server.data_dir / "tokens.json").read_text()


@pytest.mark.parametrize(
    "frames, code, reason",
    [
        (["{not json"], 4400, "malformed JSON"),
        ([json.dumps({"event": "media", "media": {"track": "inbound", "payload": ""}})], 4400, "media before start"),
        ([b"\x00\x01"], 4400, "binary"),
        ([json.dumps({"event": "start", "start": {"callSid": "W1", "customParameters": {"token": "{ingest}"},
          "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1}}})], 4400, "8 kHz"),
        (["START", json.dumps({"event": "media", "media": {"track": "inbound", "payload": "%%%"}})], 4400, "base64"),
    ],
)
async def test_bad_twilio_input_gets_a_clear_close(live, frames, code, reason):
    ingest = await live.token("ingest")
    async with connect(f"{live.ws}/ws/twilio") as ws:
        for frame in frames:
            if frame == "START":
                frame = _twilio_start("W2", ingest)
            await ws.send(frame.replace("{ingest}", ingest) if isinstance(frame, str) else frame)
        await read_all(ws)
    assert ws.close_code == code and reason in ws.close_reason


@pytest.mark.parametrize(
    "header, reason",
    [
        ({"call_id": "H1", "sample_rate": 8000, "channels": 3, "encoding": "pcm_s16le"}, "channels"),
        ({"call_id": "H1", "sample_rate": 4000, "channels": 1, "encoding": "pcm_s16le"}, "sample_rate"),
        ({"call_id": "H1", "sample_rate": 8000, "channels": 1, "encoding": "opus"}, "encoding"),
        ({"call_id": "a/b", "sample_rate": 8000, "channels": 1, "encoding": "mulaw"}, "call_id"),
    ],
)
async def test_bad_generic_header_names_the_field(live, header, reason):
    ingest = await live.token("ingest")
    async with connect(f"{live.ws}/ws/audio?token={ingest}") as ws:
        await ws.send(json.dumps(header))
        await read_all(ws)
    assert ws.close_code == 4400 and reason in ws.close_reason


async def test_a_second_stream_with_a_live_call_id_is_refused_and_the_first_goes_on(live):
    ingest = await live.token("ingest")
    media = list(_twilio_media(ESCALATION))
    async with connect(f"{live.ws}/ws/twilio") as first:
        await first.send(_twilio_start("D1", ingest))
        await first.send(media[0])
        async with connect(f"{live.ws}/ws/twilio") as second:
            await second.send(_twilio_start("D1", ingest))
            await read_all(second)
        assert second.close_code == 4409
        for chunk in media[1:]:
            await first.send(chunk)
        await first.send(json.dumps({"event": "stop"}))
        await read_all(first)
    async with connect(f"{live.ws}/ws/calls/D1?token={ADMIN}") as reader:
        assert len(finals(await read_all(reader))) == 3


async def test_an_oversized_frame_is_refused_and_the_server_goes_on(tmp_path):
    async with running_server(tmp_path, max_message_bytes=4096) as live:
        ingest = await live.token("ingest")
        async with connect(f"{live.ws}/ws/audio?token={ingest}", max_size=None) as ws:
            await ws.send(json.dumps({"call_id": "O1", "sample_rate": 8000, "channels": 1, "encoding": "mulaw"}))
            await ws.send(b"\xff" * 8192)
            await read_all(ws)
        assert ws.close_code == 1009
        assert (await live.request("GET", "/healthz", token=None))[0] == 200


LONG = "I have been over this before and I will say it again so that it is on the record. " * 60  # ~5 kB


async def test_a_reader_that_stops_reading_does_not_delay_another(tmp_path):
    chatty = PhraseTranscriber({**PHRASES, 900: LONG})
    many_turns = stereo(*[turn for _ in range(120) for turn in (("customer", said(900, 0.4)), ("customer", silence(0.8)))])
    # 120 finals of 5 kB: more than the stalled socket's kernel buffers hold (16 kB send buffer here)
    async with running_server(tmp_path, transcriber=chatty, send_buffer=16384) as live:
        ingest = await live.token("ingest")
        async with connect(f"{live.ws}/ws/board?token={ADMIN}") as board:
            sending = asyncio.create_task(play_call(live.url, many_turns, token=ingest, call_id="S1", speed=0))
            await board.recv()
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", int(live.url.rsplit(":", 1)[1])))
            async with connect(f"{live.ws}/ws/calls/S1?token={ADMIN}", sock=sock, max_queue=1, close_timeout=0.2) as stalled:
                async with connect(f"{live.ws}/ws/calls/S1?token={ADMIN}") as reader:
                    events = await read_all(reader)
                    await sending
                # the whole call went through while one reader read nothing at all
                assert events[-1]["state"] == "ended" and len(finals(events)) == 120
                assert not stalled.transport.is_reading()


def _twilio_start(call_id: str, token: str) -> str:
    return json.dumps({"event": "start", "start": {
        "callSid": call_id, "tracks": ["inbound", "outbound"], "customParameters": {"token": token, "agent_id": "ana"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def _twilio_media(audio16k: np.ndarray):
    """20 ms media messages of both tracks (16 kHz stereo in, crudely decimated to 8 kHz)."""
    narrow = audio16k[::2]
    for i in range(0, narrow.shape[0], 160):
        for channel, track in ((0, "outbound"), (1, "inbound")):
            payload = base64.b64encode(mulaw_encode(narrow[i : i + 160, channel])).decode()
            yield json.dumps({"event": "media", "media": {"track": track, "timestamp": str(i // 8), "payload": payload}})


async def test_an_ended_call_is_kept_with_its_audio_seekable_and_qa_can_review_its_flags(live):
    ingest, qa = await live.token("ingest"), await live.token("qa")
    await play_call(live.url, ESCALATION, token=ingest, call_id="Q1", agent_id="ana", speed=0)
    status, call = await live.request("GET", "/api/calls/Q1", token=qa)
    assert status == 200 and call["state"] == "ended" and call["has_audio"] and call["flagged"]
    assert "escalation_request" in call["labels"] and call["max_risk"] > 0
    assert call["duration"] == pytest.approx(ESCALATION.shape[0] / 16000, abs=0.2)
    # the recording: FLAC, agent left and customer right, and a player may ask for any byte range
    def fetch(headers):
        import urllib.request

        req = urllib.request.Request(f"{live.url}/api/calls/Q1/audio", headers={"Authorization": f"Bearer {qa}", **headers})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()

    status, headers, whole = await asyncio.to_thread(fetch, {})
    assert status == 200 and headers["content-type"] == "audio/flac" and whole[:4] == b"fLaC"
    status, headers, part = await asyncio.to_thread(fetch, {"Range": "bytes=100-199"})
    assert status == 206 and part == whole[100:200] and headers["content-range"] == f"bytes 100-199/{len(whole)}"
    # an <audio src> sends no header: the token may come in the query, as for the websockets
    def fetch_query(token):
        import urllib.error
        import urllib.request

        req = urllib.request.Request(f"{live.url}/api/calls/Q1/audio?token={token}", headers={"Range": "bytes=0-3"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, b""

    assert await asyncio.to_thread(fetch_query, qa) == (206, b"fLaC")
    assert (await asyncio.to_thread(fetch_query, "not-a-token"))[0] == 401
    assert (await asyncio.to_thread(fetch_query, await live.token("agent", "bo")))[0] == 403
    from coach.audio.files import read_blocks

    path = live.app.state.coach.store.audio_path("Q1")
    audio = np.concatenate(list(read_blocks(path)))
    loud = np.abs(audio).max(axis=0)
    assert audio.shape[1] == 2 and loud[0] > 0.1 and loud[1] > 0.1
    first_customer = np.argmax(np.abs(audio[:, 1]) > 0.05) / 16000
    assert first_customer == pytest.approx(2.5, abs=0.1)  # the agent's 1.5 s turn and 1 s pause come first, on the left
    # QA marks the flag, with a note; who reviewed it is kept
    flag = next(e for e in call["events"] if e["type"] == "signal")
    status, review = await live.request("POST", "/api/calls/Q1/reviews", token=qa, body={"seq": flag["seq"], "verdict": "right", "note": "clear ask"})
    assert status == 201 and review["label"] == flag["label"] and review["reviewer"] == "qa token " + review["reviewer"].split()[-1]
    assert (await live.request("GET", "/api/calls/Q1", token=qa))[1]["reviews"][0]["note"] == "clear ask"
    transcript = next(e for e in call["events"] if e["type"] == "transcript")
    assert (await live.request("POST", "/api/calls/Q1/reviews", token=qa, body={"seq": transcript["seq"], "verdict": "wrong"}))[0] == 422
    assert (await live.request("POST", "/api/calls/Q1/reviews", token=ingest, body={"seq": flag["seq"], "verdict": "wrong"}))[0] == 403
    # filters: by label, by risk, by date
    assert [c["call_id"] for c in (await live.request("GET", "/api/calls?label=escalation_request", token=qa))[1]] == ["Q1"]
    assert (await live.request("GET", "/api/calls?label=abuse", token=qa))[1] == []
    assert (await live.request("GET", "/api/calls?min_risk=101", token=qa))[0] == 422
    assert (await live.request("GET", "/api/calls?since=2000-01-01", token=qa))[1][0]["call_id"] == "Q1"
    assert (await live.request("GET", "/api/calls?until=2000-01-01T00:00:00Z", token=qa))[1] == []
    # a kept call's id is not taken again
    replay = await play_call(live.url, ESCALATION, token=ingest, call_id="Q1", speed=0)
    assert replay.closed[0] == 4409


async def test_metrics_show_live_calls_their_lag_and_what_was_sent_in_prometheus_format(live):
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    ingest, lead = await live.token("ingest"), await live.token("lead")

    def scrape(token):
        req = urllib.request.Request(f"{live.url}/metrics", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers["content-type"], resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, None, ""

    def samples(text):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}

    async with connect(f"{live.ws}/ws/twilio") as ws:  # a call left open mid-way: live, with a lag figure
        await ws.send(_twilio_start("MET1", ingest))
        for chunk in list(_twilio_media(ESCALATION))[:50]:
            await ws.send(chunk)
        assert (await live.request("GET", "/api/calls/MET1"))[0] == 200
        status, kind, text = await asyncio.to_thread(scrape, lead)
        assert status == 200 and kind.startswith("text/plain")
        during = samples(text)
        assert during[("coach_live_calls", ())] == 1
        assert ("coach_call_lag_seconds", (("call_id", "MET1"),)) in during
        await ws.send(json.dumps({"event": "stop"}))
    await play_call(live.url, ESCALATION, token=ingest, call_id="MET2", speed=0)
    after = samples((await asyncio.to_thread(scrape, lead))[2])
    assert after[("coach_live_calls", ())] == 0 and after[("coach_calls_started_total", ())] == 2
    assert after[("coach_prompts_sent_total", (("kind", "deescalate"),))] >= 1
    assert after[("coach_signals_total", (("label", "escalation_request"),))] >= 1
    assert after[("coach_asr_audio_seconds_total", ())] > 0 and after[("coach_asr_busy_seconds_total", ())] > 0
    assert after[("coach_asr_batched_jobs_total", ())] >= after[("coach_asr_batches_total", ())] > 0
    assert 0 <= after[("coach_asr_rung", ())] <= 4  # the quality ladder, and the finals decoded on each rung
    assert sum(v for (name, _), v in after.items() if name == "coach_asr_finals_total") > 0
    stored = (await live.request("GET", "/api/calls/MET2"))[1]["events"]
    assert {"rung" in e for e in stored if e["type"] == "transcript" and e["final"]} == {True}
    assert (await asyncio.to_thread(scrape, ingest))[0] == 403
    assert (await asyncio.to_thread(scrape, "nope"))[0] == 401


async def test_beyond_max_calls_a_new_call_is_refused_with_try_again_later_and_the_live_one_goes_on(tmp_path):
    async with running_server(tmp_path, max_calls=1) as live:
        ingest = await live.token("ingest")
        assert await live.request("GET", "/readyz", token=None) == (200, {"status": "ready", "live_calls": 0, "max_calls": 1, "backlog_seconds": 0.0})
        async with connect(f"{live.ws}/ws/twilio") as first:
            await first.send(_twilio_start("CAP1", ingest))
            assert (await live.request("GET", "/api/calls/CAP1"))[0] == 200  # live
            status, ready = await live.request("GET", "/readyz", token=None)  # a load balancer sends the next call elsewhere
            assert status == 503 and ready["status"] == "full" and "at capacity" in ready["reason"]
            second = await play_call(live.url, ESCALATION, token=ingest, call_id="CAP2", speed=0)
            assert second.closed[0] == 1013 and "try again later" in second.closed[1]
            for chunk in _twilio_media(ESCALATION):
                await first.send(chunk)
            await first.send(json.dumps({"event": "stop"}))
        async with connect(f"{live.ws}/ws/calls/CAP1?token={ADMIN}") as reader:
            events = await read_all(reader)
        assert finals(events, "customer") == [PHRASES[400], PHRASES[500]]  # the live call was not disturbed
        assert (await live.request("GET", "/readyz", token=None))[0] == 200
        later = await play_call(live.url, ESCALATION, token=ingest, call_id="CAP3", speed=0)
        assert later.closed[0] == 1000  # room again once the first ended


async def test_a_malformed_request_body_gets_a_readable_422_even_with_values_json_cannot_carry(live):
    # found by fuzzing: the validation error echoed the input, and NaN made that response a server error
    status, body = await live.request("POST", "/api/tokens", body={"role": "lead", "ttl_seconds": {"x": float("nan")}})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "ttl_seconds"] and body["detail"][0]["msg"]
