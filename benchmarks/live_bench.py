"""End-to-end latency of the live service with real websocket clients (issue 4).

Starts ``coach serve`` (real models) as its own process, plays recordings into it through
``/ws/twilio`` in real time, one call alone and then several at once, and reads each call's
``/ws/calls/{id}``. A prompt's latency is the wall time from the moment the sender had sent the
audio that completes its trigger (the end of the words for a phrase; the 30th second of a
monologue, the 10th of a silence, the first second of overlap for the timing cues) to the moment
the prompt arrived. Signals are timed the same way. The server's CPU time is read from /proc.

    python benchmarks/live_bench.py --recordings 'bench-out/calls/*.wav' --concurrency 1,4 --limit 4

Where a recording has its truth beside it (``NAME.truth.json``, as ``shared/tools/synth_call.py``
writes it), each round also gives: the share of labelled moments whose signal reached the call's
reader within 4 s of the turn's end (of the threshold's crossing, for the timing cues), the word error
rate of the stored finals against the script, and how many finals were decoded on each rung of the
quality ladder (``coach/asr/ladder.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import glob
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.simulate import load_recording, play_call  # noqa: E402
from word_errors import edit_distance, words  # noqa: E402  (benchmarks/word_errors.py)

# seconds into the span at which a timing cue's threshold is crossed
TIMING_THRESHOLD = {"over_explaining": 30.0, "dead_air": 10.0, "interruption": 1.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url: str, admin: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def get(url: str, token: str) -> dict | str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body) if resp.headers.get_content_type() == "application/json" else body


def metrics(base: str, token: str) -> dict[str, float]:
    """The server's /metrics, unlabelled series only."""
    values = {}
    for line in get(base + "/metrics", token).splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            values[name] = float(value)
    return values


async def watch_lag(base: str, token: str, worst: list[float]) -> None:
    """Until cancelled: the largest lag of any live call, read from /metrics every second."""
    while True:
        try:
            seen = await asyncio.to_thread(metrics, base, token)
            worst[0] = max(worst[0], seen.get("coach_call_lag_max_seconds", 0.0))
        except OSError:
            pass
        await asyncio.sleep(1.0)  # a sampling period, not synchronisation


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"coach serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)  # the server is loading its models
    raise SystemExit("coach serve did not come up")


IN_TIME = 4.0  # s after the turn's end (the threshold's crossing): a moment delivered later is late


def read_truth(recording: Path) -> list[dict] | None:
    path = recording.with_name(recording.name.removesuffix(".wav") + ".truth.json")
    return json.loads(path.read_text())["turns"] if path.exists() else None


def completing_audio(signal: dict) -> float:
    """Call-audio second at which the trigger was complete."""
    if signal["label"] in TIMING_THRESHOLD:
        return min(signal["end"], signal["start"] + TIMING_THRESHOLD[signal["label"]])
    return signal["end"]


async def one_call(base: str, ws_base: str, audio, ingest: str, reader_token: str, call_id: str, agent: str, streams: Path | None = None,
                   truth: list[dict] | None = None, recording: str = "", via: str = "twilio") -> dict:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    sent_audio: list[float] = []  # audio seconds sent, in order
    sent_wall: list[float] = []

    def on_sent(seconds: float, wall: float) -> None:
        sent_audio.append(seconds)
        sent_wall.append(wall)

    arrivals: list[tuple[float, dict]] = []
    if via == "audiohook":  # a Genesys conversation id is a UUID
        call_id = str(uuid.uuid5(uuid.NAMESPACE_URL, call_id))
    sender = asyncio.create_task(play_call(base, audio, token=ingest, call_id=call_id, agent_id=agent, speed=1.0, on_sent=on_sent, via=via))
    while True:  # join as soon as the call exists (a late join would replay, so nothing is missed)
        async with connect(f"{ws_base}/ws/calls/{call_id}?token={reader_token}", max_size=None) as ws:
            try:
                async for message in ws:
                    arrivals.append((time.time(), json.loads(message)))
            except ConnectionClosed:
                pass
            if ws.close_code != 4404 or sender.done():
                break
        await asyncio.sleep(0.05)
    played = await sender
    if played.closed[0] == 1013:  # refused: the server was too far behind to take another call
        return {"call_id": call_id, "recording": recording, "seconds": 0.0, "refused": True, "prompts": [], "signals": [], "final_latency": [], "lost": 0}
    stored = await asyncio.to_thread(get, f"{base}/api/calls/{call_id}", reader_token)
    received = {(e["type"], e.get("at"), e.get("ts")) for _, e in arrivals}
    lost = sum((e["type"], e.get("at"), e.get("ts")) not in received for e in stored["events"])

    def sent_at(audio_second: float) -> float | None:
        i = bisect.bisect_left(sent_audio, audio_second)
        return sent_wall[i] if i < len(sent_wall) else None

    prompts, signals, last_signal = [], [], {}
    for wall, event in arrivals:
        if event["type"] == "signal":
            last_signal[event["label"]] = event
            sent = sent_at(completing_audio(event))
            if sent is not None:
                signals.append({"label": event["label"], "latency": wall - sent})
        elif event["type"] == "prompt":
            trigger = last_signal.get(event["signals"][0])
            sent = sent_at(completing_audio(trigger)) if trigger else None
            if sent is not None:
                prompts.append({"kind": event["kind"], "label": event["signals"][0], "latency": wall - sent})
    if streams is not None:  # each event with the call audio the sender had sent when it arrived
        streams.mkdir(parents=True, exist_ok=True)
        with open(streams / f"{call_id}.jsonl", "w") as f:
            for wall, event in arrivals:
                sent = bisect.bisect_right(sent_wall, wall)
                f.write(json.dumps({"sent": round(sent_audio[sent - 1], 3) if sent else 0.0, **event}) + "\n")
    finals = [e for _, e in arrivals if e["type"] == "transcript" and e["final"] and e["text"]]
    final_lag = [wall - sent_at(e["end"]) for wall, e in arrivals if e in finals and sent_at(e["end"]) is not None]
    final_detail = [{"speaker": e["speaker"], "seconds": round(e["end"] - e["start"], 1), "latency": round(wall - sent_at(e["end"]), 2)}
                    for wall, e in arrivals if e in finals and sent_at(e["end"]) is not None]
    rungs: dict[str, int] = {}
    for e in finals:
        rungs[str(e.get("rung"))] = rungs.get(str(e.get("rung")), 0) + 1
    out = {"call_id": call_id, "recording": recording, "seconds": len(audio) / 16000, "refused": False, "prompts": prompts, "signals": signals,
           "final_latency": final_lag, "finals": final_detail, "lost": lost, "kept": len(stored["events"]), "rungs": rungs}
    if truth is not None:
        out.update(judged(truth, arrivals, sent_at, [e for e in stored["events"] if e["type"] == "transcript" and e["final"]]))
    return out


def judged(truth: list[dict], arrivals: list[tuple[float, dict]], sent_at, finals: list[dict]) -> dict:
    """Against the call's script: each labelled moment, in time or not (a signal of its label about
    this turn's speech reached the reader by 4 s after the turn was complete), and the
    word errors of the stored finals, per party. ``moments_caught``: those whose signal came at all
    (by the end of the call), so that what was late is told apart from what was missed."""
    moments, in_time, caught, detail = 0, 0, 0, []
    signals = [(wall, e) for wall, e in arrivals if e["type"] == "signal"]
    for i, turn in enumerate(truth):
        for label in turn["labels"]:
            start, end = turn["start"], turn["end"]
            if label == "dead_air":  # the silence before the turn, as the scorer reads it
                start, end = max((t["end"] for t in truth[:i]), default=0.0), turn["start"]
            opened, complete = sent_at(start), sent_at(completing_audio({"label": label, "start": start, "end": end}))
            if opened is None or complete is None:
                continue
            moments += 1
            came = [wall for wall, e in signals if e["label"] == label and (label == "dead_air" or e["speaker"] == turn["speaker"])
                    and e["start"] < end + 1 and e["end"] > start - 1 and opened <= wall]  # about this turn's speech (or silence)
            caught += bool(came)
            in_time += any(wall <= complete + IN_TIME for wall in came)
            detail.append({"label": label, "delay": round(min(came) - complete, 2) if came else None})
    errors = ref_words = 0
    for speaker in ("agent", "customer"):
        ref = words(" ".join(t["text"] for t in truth if t["speaker"] == speaker))
        hyp = words(" ".join(e["text"] for e in sorted(finals, key=lambda e: e["start"]) if e["speaker"] == speaker))
        errors, ref_words = errors + edit_distance(ref, hyp), ref_words + len(ref)
    return {"moments": moments, "moments_in_time": in_time, "moments_caught": caught, "moment_delays": detail, "word_errors": errors, "script_words": ref_words}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# The naive baseline (issue 6): the same pipeline with what lets one model serve many calls turned
# off: every job decoded alone in a padded 30 s window, no early decode of finals, interims never
# deferred or shed, and no call refused however far behind the calls are.
SYSTEMS = {
    "coach": {},
    "coach-cut12": {"COACH_ASR__MAX_UTTERANCE": "12", "COACH_ASR__HARD_MAX_UTTERANCE": "14"},
    "naive": {
        "COACH_SERVER__MAX_BATCH": "1", "COACH_ASR__WINDOW_MARGIN": "-1", "COACH_ASR__EARLY_PAUSE": "0",
        "COACH_SERVER__SHED_INTERIMS_AFTER": "1e9", "COACH_SERVER__REFUSE_LAG": "1e9", "COACH_SERVER__LADDER_TOP": "0",
    },
    "coach-no-ladder": {"COACH_SERVER__LADDER_TOP": "0"},  # the coach as before issue 29: every final at full quality
    "coach-eager": {"COACH_SERVER__LADDER_CLIMB_AT": "0.25"},  # the ladder taken at half the wait
    "coach-audiohook": {},  # the coach, its calls sent through Genesys AudioHook instead of Twilio (issue 31)
}
VIA = {"coach-audiohook": "audiohook"}  # how a system's calls are sent (default: Twilio Media Streams)


async def one_round(n: int, args, audios, truths, names, base: str, ws_base: str, ingest: str, lead: str, pid: int, tag: str,
                    via: str = "twilio") -> dict:
    before = await asyncio.to_thread(metrics, base, lead)
    worst_lag = [0.0]
    watcher = asyncio.create_task(watch_lag(base, lead, worst_lag))
    cpu0, wall0, client0 = cpu_seconds(pid), time.monotonic(), time.process_time()
    if n == 1:  # one call at a time, through the first --single recordings
        calls = [await one_call(base, ws_base, a, ingest, lead, f"{tag}1x{i}", f"agent-{i}", args.streams, truths[i], names[i], via)
                 for i, a in enumerate(audios[: args.single])]
    else:  # n calls, each a different recording (while there are enough), starting args.stagger s apart
        async def staggered(i: int):
            await asyncio.sleep(i * args.stagger)
            k = i % len(audios)
            return await one_call(base, ws_base, audios[k], ingest, lead, f"{tag}{n}x{i}", f"agent-{i}", args.streams, truths[k], names[k], via)
        calls = await asyncio.gather(*(staggered(i) for i in range(n)))
    cpu, wall, client = cpu_seconds(pid) - cpu0, time.monotonic() - wall0, time.process_time() - client0
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    after = await asyncio.to_thread(metrics, base, lead)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    audio_seconds = sum(c["seconds"] for c in calls)
    prompt_lat = [p["latency"] for c in calls for p in c["prompts"]]
    signal_lat = [s["latency"] for c in calls for s in c["signals"]]
    final_lat = [x for c in calls for x in c["final_latency"]]
    batches = delta.get("coach_asr_batches_total", 0.0)
    moments = sum(c.get("moments", 0) for c in calls)
    in_time = sum(c.get("moments_in_time", 0) for c in calls)
    caught = sum(c.get("moments_caught", 0) for c in calls)
    script_words = sum(c.get("script_words", 0) for c in calls)
    rungs: dict[str, int] = {}
    for c in calls:
        for rung, k in c.get("rungs", {}).items():
            rungs[rung] = rungs.get(rung, 0) + k
    return {
        "moments": moments, "moments_in_time": in_time, "moments_caught": caught, "in_time_share": round(in_time / moments, 3) if moments else None,
        "wer": round(sum(c.get("word_errors", 0) for c in calls) / script_words, 4) if script_words else None,
        "finals_by_rung": dict(sorted(rungs.items())),
        "concurrent": n, "calls": len(calls), "refused": sum(c["refused"] for c in calls), "audio_seconds": round(audio_seconds, 1),
        "prompts": len(prompt_lat), "prompt_p50": pct(prompt_lat, 0.5), "prompt_p95": pct(prompt_lat, 0.95),
        "prompt_max": max(prompt_lat, default=None), "signals": len(signal_lat), "signal_p50": pct(signal_lat, 0.5),
        "signal_p95": pct(signal_lat, 0.95), "final_p50": pct(final_lat, 0.5), "final_p95": pct(final_lat, 0.95),
        "max_lag": round(worst_lag[0], 2), "events_kept": sum(c.get("kept", 0) for c in calls),
        "events_lost": sum(c["lost"] for c in calls), "readers_dropped": delta.get("coach_readers_dropped_total", 0.0),
        "server_cpu_per_audio_second": round(cpu / audio_seconds, 3) if audio_seconds else None,
        "cpu_busy": round(cpu / wall / (os.cpu_count() or 1), 2), "wall_seconds": round(wall, 1),
        "client_cpu_busy": round(client / wall / (os.cpu_count() or 1), 2),  # the simulated telephony and readers
        # the server's CPU less the speech model's: the event loop (audio, fan-out), VAD and text models
        "other_cpu_busy": round((cpu - delta.get("coach_asr_busy_seconds_total", 0.0)) / wall / (os.cpu_count() or 1), 2),
        "mean_batch": round(delta.get("coach_asr_batched_jobs_total", 0.0) / batches, 2) if batches else None,
        "interims_deferred": delta.get("coach_asr_interims_deferred_total", 0.0),
        "interims_shed": delta.get("coach_asr_interims_shed_total", 0.0),
        "detail": calls,
    }


async def run_system(name: str, concurrency: list[int], args, audios, truths, names) -> list[dict]:
    admin, port = secrets.token_urlsafe(16), free_port()
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    data = tempfile.mkdtemp(prefix="coach-live-bench-")
    env = {**os.environ, "COACH_ADMIN_TOKEN": admin, **SYSTEMS[name]}
    proc = subprocess.Popen([sys.executable, "-m", "coach", "serve", "--port", str(port), "--data-dir", data], env=env, stdout=subprocess.DEVNULL)
    rounds = []
    try:
        wait_healthy(base, proc)
        ingest = post(base + "/api/tokens", admin, {"role": "ingest"})["token"]
        lead = post(base + "/api/tokens", admin, {"role": "lead"})["token"]
        for k, n in enumerate(concurrency):  # a round's calls have ids of their own, so N may be played twice
            r = await one_round(n, args, audios, truths, names, base, ws_base, ingest, lead, proc.pid, f"{name[0].upper()}{k}-",
                                VIA.get(name, "twilio"))
            rounds.append(r)
            print(f"{name}, {n} at once: {r['prompts']} prompts p50 {fmt(r['prompt_p50'])} p95 {fmt(r['prompt_p95'])} "
                  f"max {fmt(r['prompt_max'])}; finals p50 {fmt(r['final_p50'])} p95 {fmt(r['final_p95'])}; "
                  f"largest lag {r['max_lag']} s; {r['events_lost']} of {r['events_kept']} events lost; "
                  f"{r['refused']} refused; CPU {r['server_cpu_per_audio_second']} s per s of call "
                  f"({r['cpu_busy']:.0%} of the cores; the callers {r['client_cpu_busy']:.0%}); mean batch {r['mean_batch']}; interims deferred "
                  f"{r['interims_deferred']:.0f}, shed {r['interims_shed']:.0f}; moments in time {r['moments_in_time']}/{r['moments']} (caught at all {r['moments_caught']}); "
                  f"WER {r['wer']}; finals by rung {r['finals_by_rung']}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return rounds


async def run(args) -> dict:
    recordings = sorted(Path(p) for pattern in args.recordings for p in glob.glob(pattern))[: args.limit or None]
    if not recordings:
        raise SystemExit(f"no recordings match {args.recordings}")
    audios = [load_recording(p) for p in recordings]
    truths, names = [read_truth(p) for p in recordings], [p.name for p in recordings]
    systems = {}
    for name in args.systems:
        concurrency = args.baseline_concurrency if name != "coach" and args.baseline_concurrency else args.concurrency
        systems[name] = await run_system(name, concurrency, args, audios, truths, names)
        same_audio_wer(systems[name])
    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "recordings": [str(p) for p in recordings], "systems": systems}


def same_audio_wer(rounds: list[dict]) -> None:
    """Each round's WER on the recordings the one-call round played, as a ratio to that round's
    (the same audio, alone and among N): ``wer_ratio_to_one_call``."""
    alone = next((r for r in rounds if r["concurrent"] == 1), None)
    if alone is None:
        return

    def rate(r: dict, played: set[str]) -> float | None:
        calls = [c for c in r["detail"] if c["recording"] in played and c.get("script_words")]
        total = sum(c["script_words"] for c in calls)
        return sum(c["word_errors"] for c in calls) / total if total else None

    played = {c["recording"] for c in alone["detail"]}
    base = rate(alone, played)
    for r in rounds:
        mine = rate(r, played)
        r["wer_same_audio"] = None if mine is None else round(mine, 4)
        r["wer_ratio_to_one_call"] = None if mine is None or not base else round(mine / base, 3)
        if r["wer_ratio_to_one_call"] is not None:
            print(f"  {r['concurrent']} at once: WER on the one-call recordings {mine:.3f}, {r['wer_ratio_to_one_call']:.2f}x alone", flush=True)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", nargs="+", default=[str(ROOT / "examples" / "example-call.wav")])
    parser.add_argument("--limit", type=int, default=0, help="use the first N recordings")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3])
    parser.add_argument("--single", type=int, default=3, help="with concurrency 1, play this many recordings one after another")
    parser.add_argument("--stagger", type=float, default=2.0, help="seconds between the starts of concurrent calls")
    parser.add_argument("--systems", type=lambda s: s.split(","), default=["coach"], help=f"of {', '.join(SYSTEMS)}")
    parser.add_argument("--baseline-concurrency", type=lambda s: [int(x) for x in s.split(",")], help="concurrency for the systems other than coach (default: the same)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "live.json")
    parser.add_argument("--streams", type=Path, help="write each call's events, with the audio sent when each arrived, here")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
