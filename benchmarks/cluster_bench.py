"""Cluster mode on one box (issue 30): three nodes, a node killed, and a 1,000-call floor's traffic.

    python benchmarks/cluster_bench.py --rate-from bench-out/example.jsonl [--calls 10] [--kills 3]
        [--floor 1000] [--floor-seconds 30] [--json bench-out/cluster.json]

1. **Three nodes** (``coach serve`` with the stand-in models, one throwaway PostgreSQL and Redis):
   ``--calls`` calls streamed in real time to node A. Every board summary is read on A (where it is
   made) and on C; each call's events are read on A and on B. Reported: the delay from A to C of
   each summary (a risk change on A seen on C's board), the delay from A to B of each event, and
   what B or C never got.
2. **A node killed** (``kill -9``) mid-call, ``--kills`` times: the time from the kill until C's
   board shows the call ``interrupted``, and the events A had published that the database lacks
   (at most the flush window is allowed).
3. **A floor of ``--floor`` calls**: the event rate of a real call (the ``coach analyze --jsonl``
   output given in ``--rate-from``: events and bytes per second of call audio) times the floor,
   replayed for ``--floor-seconds`` through Redis (each call's stream and the board stream, as a node
   publishes them) and through PostgreSQL (each call's flush every 0.3 s, as the recorder writes it,
   from ten writer threads standing for ten nodes). Reported: the latency of each, and the CPU of
   redis-server and of PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live import ADMIN  # noqa: E402
from tests.services import Node, fresh_database, postgres, redis_server  # noqa: E402
from tests.test_server import ESCALATION, _twilio_media, _twilio_start  # noqa: E402


def pct(values, q) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of these processes and their children so far."""
    total = 0.0
    for pid in pids:
        for task in _family(pid):
            try:
                fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError):
                pass
    return total


def _family(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *(int(p) for child in out for p in _family(int(child)))]


# ---- 1. three nodes ----
async def _read(url: str, into: list, stop: asyncio.Event | None = None) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(url, max_size=None) as ws:
        try:
            while True:
                recv = asyncio.ensure_future(ws.recv())
                waits = {recv} if stop is None else {recv, asyncio.ensure_future(stop.wait())}
                done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                if recv not in done:
                    return
                into.append((time.monotonic(), recv.result()))
        except ConnectionClosed:
            return


async def _stream(node: Node, call_id: str, audio: np.ndarray, cut_at: float | None = None) -> None:
    """Stream ``audio`` to ``node`` in real time as a Twilio call (to ``cut_at`` s only, then hold the socket open)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    try:
        async with connect(f"{node.ws}/ws/twilio") as ws:
            await ws.send(_twilio_start(call_id, ADMIN))
            started = time.monotonic()
            for i, chunk in enumerate(_twilio_media(audio)):
                at = (i // 2) * 0.02
                if cut_at is not None and at >= cut_at:
                    await asyncio.Event().wait()  # the node is killed meanwhile
                if (delay := started + at - time.monotonic()) > 0:
                    await asyncio.sleep(delay)  # real time, as a phone call arrives
                await ws.send(chunk)
            await ws.send(json.dumps({"event": "stop"}))
            async for _ in ws:
                pass
    except (ConnectionClosed, OSError):
        pass


async def three_nodes(start, calls: int) -> dict:
    a, b, c = await asyncio.to_thread(start, "A", "B", "C")
    audio = np.concatenate([ESCALATION] * 3)  # about 25 s, three escalations
    boards: dict[str, list] = {"A": [], "C": []}
    stop = asyncio.Event()
    board_tasks = [asyncio.create_task(_read(f"{n.ws}/ws/board?token={ADMIN}", boards[n.name], stop)) for n in (a, c)]
    await asyncio.sleep(0.5)  # the board readers connected (their first messages are the calls so far)
    events: dict[str, dict[str, list]] = {}
    readers = []
    streams = []
    for i in range(calls):
        call_id = f"T{i}-{random.randrange(10**6)}"
        events[call_id] = {"A": [], "B": []}
        streams.append(asyncio.create_task(_stream(a, call_id, audio)))
        await asyncio.sleep(0.3)  # the call is live before its readers join (they replay it from its start)
        readers += [asyncio.create_task(_read(f"{n.ws}/ws/calls/{call_id}?token={ADMIN}", events[call_id][n.name])) for n in (a, b)]
        await asyncio.sleep(1.0)  # calls start a second apart
    await asyncio.gather(*streams)
    await asyncio.wait_for(asyncio.gather(*readers), 60)
    await asyncio.sleep(2.0)  # the last summaries reach C's board
    stop.set()
    await asyncio.gather(*board_tasks)
    for node in (a, b, c):
        node.stop()
    on_a = {}
    for t, text in boards["A"]:
        on_a.setdefault(text, t)
    board_delays = [t - on_a[text] for t, text in boards["C"] if text in on_a]
    missing_on_c = sum(1 for text in on_a if text not in {x for _, x in boards["C"]})
    event_delays, lost, differ = [], 0, 0
    for call in events.values():
        sent, got = call["A"], call["B"]
        lost += max(0, len(sent) - len(got))
        differ += sum(1 for (_, x), (_, y) in zip(sent, got) if x != y)
        event_delays += [tb - ta for (ta, _), (tb, _) in zip(sent, got)]
    return {
        "calls": calls, "board_summaries": len(on_a), "board_delay_p50": pct(board_delays, 50), "board_delay_p95": pct(board_delays, 95),
        "board_missing_on_c": missing_on_c, "events": sum(len(c["A"]) for c in events.values()),
        "event_delay_p50": pct(event_delays, 50), "event_delay_p95": pct(event_delays, 95), "event_delay_max": pct(event_delays, 100),
        "events_lost_on_b": lost, "events_different_on_b": differ,
    }


# ---- 2. a node killed ----
async def kills(start, times: int) -> dict:
    (c,) = await asyncio.to_thread(start, "C")
    detect, lost_counts = [], []
    for k in range(times):
        (a,) = await asyncio.to_thread(start, f"A{k}")
        call_id = f"KILL{k}-{random.randrange(10**6)}"
        published, board = [], []
        stop = asyncio.Event()
        board_task = asyncio.create_task(_read(f"{c.ws}/ws/board?token={ADMIN}", board, stop))
        stream = asyncio.create_task(_stream(a, call_id, np.concatenate([ESCALATION] * 3), cut_at=12.0))
        await asyncio.sleep(0.3)
        reader = asyncio.create_task(_read(f"{a.ws}/ws/calls/{call_id}?token={ADMIN}", published))
        await asyncio.sleep(12.5)  # mid-call: 12 s of it sent
        killed = time.monotonic()
        a.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(a.proc.wait)
        seen = None
        while seen is None and time.monotonic() - killed < 60:
            for t, text in board:
                summary = json.loads(text)
                if summary["call_id"] == call_id and summary["state"] == "interrupted":
                    seen = t
            await asyncio.sleep(0.05)  # polling what the board reader has collected
        detect.append(None if seen is None else seen - killed)
        stop.set()
        for task in (stream, reader):
            task.cancel()
        await asyncio.gather(board_task, stream, reader, return_exceptions=True)
        kept = await asyncio.to_thread(c.get, f"/api/calls/{call_id}")
        kept_texts = {json.dumps({k: v for k, v in e.items() if k != "seq"}, sort_keys=True) for e in kept["events"]}
        sent = [json.loads(text) for _, text in published if json.loads(text)["type"] != "call"]
        lost_counts.append(sum(1 for e in sent if json.dumps(e, sort_keys=True) not in kept_texts))
    c.stop()
    return {"kills": times, "interrupted_seen_after": [round(d, 2) if d is not None else None for d in detect],
            "events_lost": lost_counts}


# ---- 3. a floor's traffic ----
def call_rate(jsonl: Path) -> dict:
    events = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    seconds = max(float(e.get("end", e.get("at", 0.0))) for e in events)
    summaries = sum(1 for e in events if e["type"] in ("signal", "prompt", "risk"))  # each changes the board's line
    return {"seconds": round(seconds, 1), "events_per_second": len(events) / seconds,
            "bytes_per_event": sum(len(json.dumps(e)) + 60 for e in events) / len(events),  # + call_id and ts, as the server stamps them
            "summaries_per_second": summaries / seconds, "events": events}


async def floor_redis(url: str, pid: int, calls: int, rate: dict, seconds: float, nodes: int = 10) -> dict:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    body = "x" * int(rate["bytes_per_event"])
    summary = json.dumps({"type": "call", "call_id": "C" * 20, "agent_id": "agent-1", "state": "live", "risk": 40,
                          "started_at": time.time(), "signals": ["escalation_request"], "prompt": "Acknowledge"})
    readers = [redis.Redis.from_url(url) for _ in range(nodes)]
    stop = asyncio.Event()

    async def follow(reader) -> None:  # each node follows the board stream
        last = "$"
        while not stop.is_set():
            got = await reader.xread({"coach:board": last}, count=500, block=200)
            for _, entries in got or ():
                last = entries[-1][0]

    followers = [asyncio.create_task(follow(r)) for r in readers]
    tick, latencies, sent = 0.1, [], 0
    carry_e = carry_s = 0.0
    cpu0, t0 = cpu_seconds([pid]), time.monotonic()
    while time.monotonic() - t0 < seconds:
        carry_e += calls * rate["events_per_second"] * tick
        carry_s += calls * rate["summaries_per_second"] * tick
        n_e, n_s = int(carry_e), int(carry_s)
        carry_e, carry_s = carry_e - n_e, carry_s - n_s
        started = time.monotonic()
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(n_e):
                pipe.xadd(f"coach:call:F{random.randrange(calls)}", {"m": body, "n": "1", "node": "bench"}, maxlen=5000, approximate=True)
            for _ in range(n_s):
                pipe.xadd("coach:board", {"m": summary, "node": "bench"}, maxlen=10000, approximate=True)
            await pipe.execute()
        latencies.append(time.monotonic() - started)
        sent += n_e + n_s
        await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))  # the floor's pace
    wall = time.monotonic() - t0
    cpu = cpu_seconds([pid]) - cpu0
    stop.set()
    await asyncio.gather(*followers)
    memory = (await client.info("memory"))["used_memory"]
    for r in (client, *readers):
        await r.aclose()
    return {"messages_per_second": round(sent / wall, 1), "batch_latency_p50": pct(latencies, 50), "batch_latency_p95": pct(latencies, 95),
            "redis_cpu_share_of_a_core": round(cpu / wall, 3), "redis_memory_mb": round(memory / 2**20, 1), "board_followers": nodes}


def floor_postgres(url: str, pid: int, calls: int, rate: dict, seconds: float, folder: Path, writers: int = 10) -> dict:
    from coach.store import CallRecord, open_store

    event = next(e for e in rate["events"] if e["type"] == "transcript")
    per_writer = calls // writers
    latencies: list[float] = []
    done = [0]
    lock = threading.Lock()
    stores = [open_store(folder / f"node{w}", url) for w in range(writers)]
    for w, store in enumerate(stores):
        for i in range(per_writer):
            store.begin(CallRecord(f"F{w}-{i}", "agent-1", "live", "live", time.time(), node=f"node{w}"))
    deadline = time.monotonic() + seconds
    cpu0, t0 = cpu_seconds([pid]), time.monotonic()

    def writer(store, w: int) -> None:
        """One node: each of its calls flushes every 0.3 s (its events since, if any, and its summary)."""
        carry = 0.0
        risk = 0
        while time.monotonic() < deadline:
            round_start = time.monotonic()
            for i in range(per_writer):
                carry += rate["events_per_second"] * 0.3
                n = int(carry)
                carry -= n
                risk = (risk + n) % 100
                started = time.monotonic()
                store.append(f"F{w}-{i}", [event] * n, None, {"risk": risk // 10 * 10, "labels": [], "prompts": 0,
                                                               "duration": time.monotonic() - t0})
                with lock:
                    latencies.append(time.monotonic() - started)
                    done[0] += 1
            time.sleep(max(0.0, 0.3 - (time.monotonic() - round_start)))  # the recorder's flush interval

    threads = [threading.Thread(target=writer, args=(store, w)) for w, store in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    cpu = cpu_seconds([pid]) - cpu0
    for store in stores:
        store.close()
    return {"flushes_per_second": round(done[0] / wall, 1), "flushes_needed_per_second": round(calls / 0.3, 1),
            "flush_latency_p50": pct(latencies, 50), "flush_latency_p95": pct(latencies, 95),
            "postgres_cpu_share_of_a_core": round(cpu / wall, 3), "writers": writers}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate-from", type=Path, required=True, help="`coach analyze --jsonl` output of a real call")
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--floor", type=int, default=1000)
    ap.add_argument("--floor-seconds", type=float, default=30.0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["nodes", "kills", "floor"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out: dict = {"machine": f"{cpu_model()}, {os.cpu_count()} cores"}
    print(out["machine"], flush=True)
    rate = call_rate(args.rate_from)
    out["call_rate"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in rate.items() if k != "events"}
    print("a real call:", out["call_rate"], flush=True)
    with postgres() as server_url:
        port = server_url.split("@")[1].split("/")[0].split(":")[1]
        pg_pid = min(int(p) for p in subprocess.run(["pgrep", "-f", "--", f"-p {port} "], capture_output=True, text=True).stdout.split())
        with tempfile.TemporaryDirectory() as tmp, redis_server() as redis:
            shared = Path(tmp) / "shared"
            database = fresh_database(server_url)
            nodes: list[Node] = []

            def start(*names: str) -> list[Node]:
                started = [Node(name, shared, database, redis.url) for name in names]
                nodes.extend(started)
                for node in started:
                    node.wait_up()
                return started

            try:
                if "nodes" not in args.skip:
                    out["three_nodes"] = await three_nodes(start, args.calls)
                    print("three nodes:", out["three_nodes"], flush=True)
                if "kills" not in args.skip:
                    out["kill"] = await kills(start, args.kills)
                    print("kill -9:", out["kill"], flush=True)
            finally:
                for node in nodes:
                    node.stop()
            if "floor" not in args.skip:
                out["floor_redis"] = await floor_redis(redis.url, redis.proc.pid, args.floor, rate, args.floor_seconds)
                print(f"{args.floor} calls through Redis:", out["floor_redis"], flush=True)
                out["floor_postgres"] = await asyncio.to_thread(floor_postgres, fresh_database(server_url), pg_pid, args.floor, rate,
                                                                args.floor_seconds, Path(tmp) / "floor")
                print(f"{args.floor} calls through PostgreSQL:", out["floor_postgres"], flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
