#!/usr/bin/env python3
"""Reliability figures for docs/reliability.md (issue 7): fuzzing and injected faults.

    python benchmarks/reliability_bench.py [--examples 1000] [--rounds 5]

- **Fuzzing**: hypothesis inputs for /ws/twilio (single-track starts among them), /ws/audio, every
  REST route, tokenless floods, and transcripts built to trip regular expressions (a stand-in model
  that says them), against the real app (stand-in models) while a bystander call streams in real
  time (tests/fuzzing.py): inputs tried, server errors, whether the bystander came out whole, log
  bytes per byte a tokenless client sent.
- **Faults**, each ``--rounds`` times, with two healthy calls streaming beside the faulted one:
  a sender that vanishes mid-call, a sender that goes quiet, an exception in the faulted call's
  analysis, and the server killed (SIGKILL) mid-call and restarted. (A reader that stops reading is
  tests/test_server.py's; a slow client is dropped without delaying any other.)
  For each: calls surviving (the healthy ones with every utterance and no error), events lost
  (finals of the faulted call that a live reader saw, or that were complete before the fault,
  missing from the store), and audio seconds lost (sent but not in the stored recording), beyond
  the store's 0.5 s flush window.

Stand-in models (tones heard as sentences) make it fast and exact: what is measured is the
service's handling of faults, not the speech model.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.audio.telephony import mulaw_encode  # noqa: E402
from coach.simulate import play_call  # noqa: E402
from tests.fakes import silence, stereo  # noqa: E402
from tests.test_faults import POISON, FailingTranscriber  # noqa: E402
from tests.live import ADMIN, PHRASES, free_port, running_server, said  # noqa: E402

FLUSH_WINDOW = 0.5  # the recorder writes every 0.5 s: a crash may lose that much
TURNS = [300, 400, 700, 600]  # agent, customer, agent, customer


def call_audio(turns=TURNS) -> np.ndarray:
    parts = []
    for i, freq in enumerate(turns):
        who = "agent" if i % 2 == 0 else "customer"
        parts += [(who, said(freq)), (who, silence(1.0))]
    return stereo(*parts)


TURN_SECONDS = 2.5  # each turn: 1.5 s said, 1.0 s silence


def media_messages(audio: np.ndarray):
    narrow = audio[::2]
    for i in range(0, narrow.shape[0], 160):
        for channel, track in ((0, "outbound"), (1, "inbound")):
            payload = base64.b64encode(mulaw_encode(narrow[i : i + 160, channel])).decode()
            yield (i + 160) / 8000, json.dumps({"event": "media", "media": {"track": track, "timestamp": str(i // 8), "payload": payload}})


def start_message(call_id: str, token: str) -> str:
    return json.dumps({"event": "start", "start": {"callSid": call_id, "tracks": ["inbound", "outbound"], "customParameters": {"token": token, "agent_id": "ana"}}})


def finals(events) -> list[str]:
    return [e["text"] for e in events if e["type"] == "transcript" and e["final"]]


async def kept(live_request, call_id: str) -> dict:
    status, body = await live_request("GET", f"/api/calls/{call_id}")
    return body if status == 200 else {"events": [], "duration": 0.0, "error": f"HTTP {status}"}


async def healthy_ok(live, call_ids) -> int:
    expected = [PHRASES[f] for f in TURNS]
    ok = 0
    for call_id in call_ids:
        record = await kept(live.request, call_id)
        ok += finals(record["events"]) == expected and record.get("error") is None and not any(e["type"] == "error" for e in record["events"])
    return ok


async def send_partly(live, call_id: str, token: str, audio: np.ndarray, upto: float, then: str) -> float:
    """Send ``upto`` seconds of the call (paced 4x real time), then vanish or go quiet. Returns seconds sent."""
    from websockets.asyncio.client import connect

    sent = 0.0
    async with connect(f"{live.ws}/ws/twilio", compression=None) as ws:
        await ws.send(start_message(call_id, token))
        started = time.monotonic()
        for seconds, message in media_messages(audio):
            if seconds > upto:
                break
            await ws.send(message)
            sent = seconds
            delay = started + seconds / 4 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing
        if then == "vanish":
            ws.transport.abort()
            return sent
        try:  # quiet: wait for the server to end it
            while True:
                await ws.recv()
        except Exception:
            pass
    return sent


async def fault_round(kind: str, data_dir: Path, index: int) -> dict:
    audio = call_audio()
    options = {"stream_idle_timeout": 1.0} if kind == "quiet" else {}
    model = FailingTranscriber({**PHRASES, POISON: "POISON"})
    async with running_server(data_dir, transcriber=model, **options) as live:
        ingest = await live.token("ingest")
        healthy = [f"H{index}-{i}" for i in range(2)]
        faulted = f"F{index}-{kind}"
        tasks = [play_call(live.url, audio, token=ingest, call_id=c, speed=4.0) for c in healthy]
        upto = 2 * TURN_SECONDS + 0.75  # two whole turns, then half of the third
        expected_finals = [PHRASES[f] for f in TURNS[:2]]
        if kind in ("vanish", "quiet"):
            tasks.append(send_partly(live, faulted, ingest, audio, upto, kind))
            sent_seconds = upto
        elif kind == "exception":
            poisoned = call_audio([300, 400, POISON, 600])
            tasks.append(play_call(live.url, poisoned, token=ingest, call_id=faulted, speed=4.0))
            sent_seconds = poisoned.shape[0] / 16000
        await asyncio.gather(*tasks, return_exceptions=True)
        survived = await healthy_ok(live, healthy)
        record = await kept(live.request, faulted)
        got = finals(record["events"])
        lost_events = sum(1 for text in expected_finals if text not in got)
        audio_lost = max(0.0, sent_seconds - float(record.get("duration") or 0.0))
    return {"kind": kind, "calls": 3, "survived": survived, "healthy": 2, "events_lost": lost_events, "audio_lost": audio_lost, "audio_lost_beyond": max(0.0, audio_lost - 0.1)}


def kill_round(data_dir: Path, index: int) -> dict:
    """The server killed mid-call (SIGKILL) and restarted: what a live reader saw, and the audio sent,
    against what the restarted server kept."""
    from tests.test_store import _get, _start_server

    port = free_port()
    audio = call_audio()
    proc = _start_server(data_dir, port)
    seen: list = []
    sent = {"seconds": 0.0}
    calls = [f"K{index}-{i}" for i in range(3)]

    async def go():
        from websockets.asyncio.client import connect

        async def stream(call_id):
            async with connect(f"ws://127.0.0.1:{port}/ws/twilio", compression=None) as ws:
                await ws.send(start_message(call_id, ADMIN))
                started = time.monotonic()
                for seconds, message in media_messages(audio):
                    await ws.send(message)
                    if call_id == calls[0]:
                        sent["seconds"] = seconds
                    delay = started + seconds - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)  # real time

        async def read(call_id):
            await asyncio.sleep(0.3)
            async with connect(f"ws://127.0.0.1:{port}/ws/calls/{call_id}?token={ADMIN}") as ws:
                async for message in ws:
                    seen.append(json.loads(message))

        tasks = [asyncio.create_task(stream(c)) for c in calls] + [asyncio.create_task(read(calls[0]))]
        await asyncio.sleep(2 * TURN_SECONDS + 0.9 + 0.3 * index)  # mid-call, at a different point each round
        proc.send_signal(signal.SIGKILL)
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(go())
    proc.wait()
    proc = _start_server(data_dir, port)
    try:
        record = _get(f"http://127.0.0.1:{port}/api/calls/{calls[0]}")
        others = [_get(f"http://127.0.0.1:{port}/api/calls/{c}") for c in calls[1:]]
    finally:
        proc.terminate()
        proc.wait()
    seen_finals = finals(seen)
    kept_finals = finals(record["events"])
    lost_events = sum(1 for text in seen_finals if text not in kept_finals)
    audio_lost = max(0.0, sent["seconds"] - float(record["duration"]))
    survived = sum(o["state"] == "interrupted" and finals(o["events"])[:1] == [PHRASES[300]] for o in others)
    return {"kind": "kill", "calls": 3, "survived": survived + (record["state"] == "interrupted"), "healthy": 3,
            "events_lost": lost_events, "audio_lost": audio_lost, "audio_lost_beyond": max(0.0, audio_lost - FLUSH_WINDOW)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="fuzzed inputs per protocol")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each fault")
    parser.add_argument("--skip-fuzz", action="store_true")
    args = parser.parse_args()

    if not args.skip_fuzz:
        from tests.fuzzing import PROTOCOLS, TrapTranscriber, fuzz_all, server_in_thread

        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            trap = TrapTranscriber()
            with server_in_thread(Path(tmp), connections_per_minute=0, transcriber=trap) as (live, loop):
                tally, (whole, state) = fuzz_all(live, loop, examples=args.examples, strict=False, trap=trap)
            print(f"\n## Fuzzing ({time.monotonic() - started:.0f} s)\n")
            print("| protocol | inputs tried | server errors | outcomes |")
            print("|---|---|---|---|")
            for protocol in PROTOCOLS:
                errors = sum(1 for e in tally.server_errors if e.startswith(protocol))
                outcomes = ", ".join(f"{k.split(' ', 1)[1]}: {n}" for k, n in sorted(tally.outcomes.items()) if k.startswith(protocol))
                print(f"| {protocol} | {tally.tried[protocol]} | {errors} | {outcomes} |")
            print(f"\nBystander call: {'whole' if whole else 'DISTURBED'} ({state})")
            print(f"Tokenless floods: {tally.flood_bytes / 1e6:.1f} MB sent, {tally.flood_log_bytes} bytes logged "
                  f"({tally.flood_log_bytes / max(1, tally.flood_bytes):.2e} log bytes per byte sent)")
            for error in tally.server_errors[:10]:
                print("  error:", error)

    rows = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            for kind in ("vanish", "quiet", "exception"):
                rows[kind].append(asyncio.run(fault_round(kind, Path(tmp) / f"{kind}-{index}", index)))
            rows["kill"].append(kill_round(Path(tmp) / f"kill-{index}", index))
    print("\n## Faults\n")
    print("| fault | injected | calls surviving | events lost | audio lost (s) | beyond the flush window (s) |")
    print("|---|---|---|---|---|---|")
    for kind, results in rows.items():
        survived = sum(r["survived"] for r in results)
        healthy = sum(r["healthy"] for r in results)
        print(f"| {kind} | {len(results)} | {survived} of {healthy} | {sum(r['events_lost'] for r in results)} | "
              f"{max(r['audio_lost'] for r in results):.2f} max | {sum(r['audio_lost_beyond'] for r in results):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
