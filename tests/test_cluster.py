"""Cluster mode (issue 30): real ``coach serve`` nodes (stand-in models) sharing a throwaway PostgreSQL
and Redis: a call streamed to one node is read from another and seen on the board of a third; a node
killed mid-call is marked interrupted by the others; Redis restarted under a live call."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect

from tests.live import ADMIN, PHRASES, free_port
from tests.services import Node, fresh_database, redis_server
from tests.test_server import ESCALATION, _twilio_media, _twilio_start, finals, read_all

@pytest.fixture
def cluster(tmp_path, postgres_server):
    """Starts nodes by name on one fresh database, one Redis, and one shared data folder."""
    database = fresh_database(postgres_server)
    nodes: list[Node] = []
    with redis_server() as redis:

        def start(*names: str) -> list[Node]:
            started = [Node(name, tmp_path / "shared", database, redis.url) for name in names]
            nodes.extend(started)
            for node in started:
                node.wait_up()
            return started

        start.redis = redis
        try:
            yield start
        finally:
            for node in nodes:
                node.stop()


async def _until(condition, what: str, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while not (found := await asyncio.to_thread(condition)):
        assert time.monotonic() < deadline, f"{what} did not happen in {seconds:g} s"
        await asyncio.sleep(0.1)  # polling another process for a condition, with a deadline
    return found


async def _board_until(board, condition) -> dict:
    """Read board messages until one meets ``condition``."""
    while True:
        summary = json.loads(await asyncio.wait_for(board.recv(), 60))
        if condition(summary):
            return summary


def _stored(node: Node, call_id: str):
    try:
        return node.get(f"/api/calls/{call_id}")
    except urllib.error.HTTPError:
        return None


async def test_a_call_on_one_node_is_read_from_another_and_on_the_board_of_a_third(cluster):
    a, b, c = await asyncio.to_thread(cluster, "A", "B", "C")
    lead = (await asyncio.to_thread(a.post, "/api/tokens", {"role": "lead"}))["token"]  # issued on A, good on B and C
    ingest = (await asyncio.to_thread(c.post, "/api/tokens", {"role": "ingest"}))["token"]
    chunks = list(_twilio_media(ESCALATION))
    async with connect(f"{c.ws}/ws/board?token={lead}") as board, connect(f"{a.ws}/ws/twilio") as sender:
        await sender.send(_twilio_start("X1", ingest))
        for chunk in chunks[: len(chunks) // 3]:
            await sender.send(chunk)
        await _board_until(board, lambda s: s["call_id"] == "X1" and s["state"] == "live")  # A's call, on C's board
        async with connect(f"{b.ws}/ws/twilio") as twin:  # the same call id on another node: refused
            await twin.send(_twilio_start("X1", ingest))
            await read_all(twin)
        assert twin.close_code == 4409
        async with connect(f"{b.ws}/ws/calls/X1?token={lead}") as reader:  # read from B while A streams it
            for chunk in chunks[len(chunks) // 3 :]:
                await sender.send(chunk)
            await sender.send(json.dumps({"event": "stop"}))
            events = await read_all(reader)
        risky = await _board_until(board, lambda s: s["call_id"] == "X1" and s["state"] == "ended")
    assert reader.close_code == 1000
    assert finals(events) == [PHRASES[300], PHRASES[400], PHRASES[500]]  # from the start, in order, nothing twice
    assert any(e["type"] == "signal" and e["label"] == "escalation_request" for e in events)
    assert events[0]["type"] == "call" and events[-1]["type"] == "call" and events[-1]["state"] == "ended"
    assert risky["risk"] > 0 and "escalation_request" in risky["signals"]
    stored = await _until(lambda: (s := _stored(c, "X1")) and s["state"] == "ended" and s, "the call kept as ended")
    assert stored["has_audio"] and [e["text"] for e in stored["events"] if e["type"] == "transcript"] == finals(events)
    audio = urllib.request.Request(f"{b.url}/api/calls/X1/audio", headers={"Authorization": f"Bearer {lead}"})
    assert len(await asyncio.to_thread(lambda: urllib.request.urlopen(audio, timeout=10).read())) > 1000  # any node replays it


async def test_a_node_killed_mid_call_shows_interrupted_on_another_nodes_board(cluster):
    a, c = await asyncio.to_thread(cluster, "A", "C")
    chunks = list(_twilio_media(ESCALATION))
    async with connect(f"{c.ws}/ws/board?token={ADMIN}") as board, connect(f"{a.ws}/ws/twilio") as sender:
        await sender.send(_twilio_start("K1", ADMIN))
        for chunk in chunks:
            await sender.send(chunk)
        # the customer's request is in the shared database: what the crash must not lose
        await _until(lambda: (s := _stored(c, "K1")) and "escalation_request" in s["labels"], "the signal stored")
        a.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(a.proc.wait)
        summary = await _board_until(board, lambda s: s["call_id"] == "K1" and s["state"] != "live")
    assert summary["state"] == "interrupted"
    kept = await asyncio.to_thread(_stored, c, "K1")
    assert kept["state"] == "interrupted" and kept["has_audio"] and "stopped during the call" in kept["error"]
    assert PHRASES[500] in [e.get("text") for e in kept["events"]]
    async with connect(f"{c.ws}/ws/calls/K1?token={ADMIN}") as reader:  # its events replay from the database
        replayed = await read_all(reader)
    assert PHRASES[500] in finals(replayed)


async def test_redis_restarted_under_a_live_call_the_call_goes_on_and_readers_catch_up(cluster):
    a, b = await asyncio.to_thread(cluster, "A", "B")
    chunks = list(_twilio_media(ESCALATION))
    third = len(chunks) // 3
    async with connect(f"{a.ws}/ws/twilio") as sender:
        await sender.send(_twilio_start("R1", ADMIN))
        for chunk in chunks[:third]:
            await sender.send(chunk)
        await _until(lambda: _stored(b, "R1"), "the call stored")
        async with connect(f"{b.ws}/ws/calls/R1?token={ADMIN}") as reader:
            reading = asyncio.create_task(read_all(reader))
            await asyncio.to_thread(cluster.redis.stop)
            for chunk in chunks[third:]:  # the call goes on while Redis is away
                await sender.send(chunk)
            await _until(lambda: PHRASES[500] in [e.get("text") for e in _stored(b, "R1")["events"]], "the call analysed meanwhile")
            await asyncio.to_thread(cluster.redis.start)
            await sender.send(json.dumps({"event": "stop"}))
            events = await asyncio.wait_for(reading, 60)
    assert finals(events) == [PHRASES[300], PHRASES[400], PHRASES[500]]  # what was said while Redis was away came after
    assert events[-1]["type"] == "call" and events[-1]["state"] == "ended"
    assert (await asyncio.to_thread(_stored, b, "R1"))["state"] == "ended"  # not taken for dead by B meanwhile


async def test_a_node_restarted_under_the_same_name_seals_the_calls_its_crash_cut_off(cluster):
    (a,) = await asyncio.to_thread(cluster, "A")
    async with connect(f"{a.ws}/ws/twilio") as sender:
        await sender.send(_twilio_start("S1", ADMIN))
        for chunk in list(_twilio_media(ESCALATION))[:200]:
            await sender.send(chunk)
        await _until(lambda: _stored(a, "S1"), "the call stored")
        a.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(a.proc.wait)
    (again,) = await asyncio.to_thread(cluster, "A")  # the same name, as a container restarted keeps it
    kept = await _until(lambda: (s := _stored(again, "S1")) and s["state"] != "live" and s, "the call sealed")
    assert kept["state"] == "interrupted" and "lost the call" in kept["error"]


def test_postgresql_unreachable_at_start_is_one_line(tmp_path):
    port = free_port()
    env = {**os.environ, "COACH_SERVER__DATABASE_URL": f"postgresql://coach:secret@127.0.0.1:{port}/calls", "COACH_ADMIN_TOKEN": ADMIN}
    out = subprocess.run([sys.executable, "-m", "coach", "serve", "--port", str(free_port()), "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode != 0 and len(lines) == 1, out.stderr
    assert f"cannot use PostgreSQL at 127.0.0.1:{port}/calls" in lines[0] and "secret" not in out.stderr + out.stdout
