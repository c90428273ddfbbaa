#!/usr/bin/env python3
"""Streaming transcription against its baselines, all measured in this one run.

    python benchmarks/asr_bench.py [--shared ../shared] [--out bench-out] [--limit N] [--variants ...]

Systems, each over the synthesized calls of ``shared/calls`` and the real Harper Valley calls:
- ``streaming``: the coach's pipeline (``coach analyze --jsonl``, in process), interims on;
- ``streaming-finals``: the same with interims off (``--no-interims``);
- ``streaming-30s``: finals only, every encoder window padded to 30 s (what sizing the window buys);
- ``offline``: ``WhisperModel.transcribe`` of each whole channel (beam 5, VAD), the accuracy reference;
- ``redecode``: whisper_streaming's approach (re-transcribe the last <=15 s every 1 s of audio, beam 5,
  word timestamps), cost only, on the first ``--redecode-seconds`` of one call.

WER comes from ``shared/tools/score_calls.py`` (the scorer CI and reviewers use); CPU is process CPU
time (all threads) per second of stereo call audio. Results: ``OUT/asr.json`` and a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.asr.scheduler import AsrScheduler  # noqa: E402
from coach.audio.files import call_layout, probe, read_blocks  # noqa: E402
from coach.models import load_text_analyzer, load_transcriber  # noqa: E402
from coach.config import Settings  # noqa: E402
from coach.pipeline import analyze_recording  # noqa: E402
from coach.playbook import PromptPolicy, load_playbook  # noqa: E402


def synth_calls(shared: Path, out: Path, limit: int | None) -> Path:
    """Synthesize shared/calls into OUT/calls once (needs festival voices and espeak-ng)."""
    target = out / "calls"
    target.mkdir(parents=True, exist_ok=True)
    scripts = sorted((shared / "calls").glob("*.json"))[:limit]
    for script in scripts:
        call_id = json.loads(script.read_text())["id"]
        if not (target / f"{call_id}.truth.json").exists():
            print(f"synthesizing {script.name}", file=sys.stderr)
            subprocess.run([sys.executable, str(shared / "tools" / "synth_call.py"), str(script), str(target)], check=True)
    return target


def truth_audio(truth_path: Path) -> tuple[str, Path]:
    truth = json.loads(truth_path.read_text())
    return truth["id"], (truth_path.parent / truth["audio"]).resolve()


DETECT_KEYS = ("micro_precision", "micro_recall", "lag_median", "lag_p90", "stop_sign_coverage", "deescalate_coverage",
               "sentiment_auc", "risk_auc")


def cpu() -> float:
    return time.process_time()


async def run_streaming(truths: list[Path], settings: Settings, transcriber, out_dir: Path, text=None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    scheduler = AsrScheduler(transcriber, settings.asr.worker_count)
    total_audio = total_cpu = 0.0
    lags: list[float] = []
    try:
        for truth_path in truths:
            call_id, audio = truth_audio(truth_path)
            layout = call_layout(probe(audio), 0)
            events: list[dict] = []
            began = cpu()
            policy = PromptPolicy(load_playbook(settings.playbook))  # as `coach analyze` runs it
            consumed = await analyze_recording(audio, layout, scheduler, settings.asr, lambda e: events.append(e.to_dict()),
                                               policy=policy, text=text if settings.text.enabled else None)
            total_cpu += cpu() - began
            total_audio += consumed
            lags += [e["at"] - e["end"] for e in events if e.get("final") and e.get("text")]
            with open(out_dir / f"{call_id}.jsonl", "w") as f:
                f.writelines(json.dumps(e) + "\n" for e in events)
    finally:
        scheduler.close()
    return {"cpu_per_audio_second": total_cpu / total_audio, "audio_seconds": total_audio,
            "finals_lag_median": statistics.median(lags), "finals_lag_p90": sorted(lags)[int(0.9 * (len(lags) - 1))]}


def stereo_channels(audio: Path):
    import numpy as np

    return np.concatenate(list(read_blocks(audio)))


def run_offline(truths: list[Path], whisper, out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    total_audio = total_cpu = 0.0
    for truth_path in truths:
        call_id, audio = truth_audio(truth_path)
        stereo = stereo_channels(audio)
        events = []
        began = cpu()
        for channel, speaker in enumerate(("agent", "customer")):
            segments, _ = whisper.transcribe(stereo[:, channel].copy(), language="en", beam_size=5, vad_filter=True)
            for seg in segments:  # the generator does the work
                events.append({"type": "transcript", "at": seg.end, "speaker": speaker, "start": seg.start,
                               "end": seg.end, "text": seg.text.strip(), "final": True})
        total_cpu += cpu() - began
        total_audio += stereo.shape[0] / 16000
        with open(out_dir / f"{call_id}.jsonl", "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in sorted(events, key=lambda e: e["end"]))
    return {"cpu_per_audio_second": total_cpu / total_audio, "audio_seconds": total_audio}


def run_redecode(truth_path: Path, whisper, seconds: float) -> dict:
    """whisper_streaming's LocalAgreement loop, cost only: every 1 s, re-transcribe the buffer."""
    _, audio = truth_audio(truth_path)
    stereo = stereo_channels(audio)[: int(seconds * 16000)]
    began = cpu()
    for channel in range(2):
        track = stereo[:, channel].copy()
        for t in range(1, int(seconds) + 1):
            buffer = track[max(0, (t - 15) * 16000) : t * 16000]
            segments, _ = whisper.transcribe(buffer, language="en", beam_size=5, word_timestamps=True,
                                             condition_on_previous_text=True)
            list(segments)
    return {"cpu_per_audio_second": (cpu() - began) / seconds, "audio_seconds": seconds}


def score(shared: Path, truth_dir: Path, stream_dir: Path) -> dict:
    out = subprocess.run([sys.executable, str(shared / "tools" / "score_calls.py"), str(truth_dir), str(stream_dir), "--json"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--limit", type=int, default=None, help="only the first N calls of each set")
    ap.add_argument("--sets", nargs="+", default=["synth", "harper"], choices=["synth", "harper"])
    ap.add_argument("--systems", nargs="*", default=["offline", "streaming", "streaming-finals", "streaming-30s", "redecode"])
    ap.add_argument("--redecode-seconds", type=float, default=30.0)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VAL,...",
                    help="an extra streaming system with other ASR settings, e.g. 'greedy:beam_size=1'")
    args = ap.parse_args()
    if not (args.shared / "tools" / "score_calls.py").exists():
        print(f"benchmarks need the shared measurement folder (calls, recordings, scorer): not found at {args.shared}; "
              "pass --shared DIR", file=sys.stderr)
        return 2
    variants = {}
    for spec in args.variant:
        name, _, pairs = spec.partition(":")
        variants[name] = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        args.systems.append(name)
    settings = Settings()
    transcriber = load_transcriber(settings)
    text = load_text_analyzer(settings)  # shared by every streaming system, as the server shares it
    sets = {}
    if "synth" in args.sets:
        sets["synth"] = synth_calls(args.shared, args.out, args.limit)
    if "harper" in args.sets:
        sets["harper"] = args.shared / "data" / "harper_valley" / "truth"
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
                     "settings": settings.asr.model_dump(), "sets": {}}
    for name, truth_dir in sets.items():
        truths = sorted(truth_dir.glob("*.truth.json"))[: args.limit]
        limited = args.out / f"truth-{name}"
        limited.mkdir(parents=True, exist_ok=True)
        for t in truths:  # the scorer reads a folder: give it just the calls measured
            data = json.loads(t.read_text())
            data["audio"] = str((t.parent / data["audio"]).resolve())
            (limited / t.name).write_text(json.dumps(data))
        res = results["sets"][name] = {"calls": len(truths)}
        for system in args.systems:
            print(f"[{name}] {system} ...", file=sys.stderr)
            stream_dir = args.out / "streams" / name / system
            if system == "streaming":
                r = asyncio.run(run_streaming(truths, settings, transcriber, stream_dir, text))
            elif system in ("streaming-finals", "streaming-30s"):
                finals = settings.model_copy(deep=True)
                finals.asr.interims = False
                if system == "streaming-30s":
                    finals.asr.window_margin = -1  # every encoder window padded to 30 s, as faster-whisper does
                r = asyncio.run(run_streaming(truths, finals, transcriber, stream_dir, text))
            elif system in variants:
                sv = settings.model_copy(deep=True)
                for key, value in variants[system].items():
                    group, _, key = key.rpartition(".")  # "beam_size" (speech) or "text.enabled"
                    target = getattr(sv, group or "asr")
                    current = getattr(target, key)
                    setattr(target, key, value.lower() in ("1", "true", "yes") if isinstance(current, bool) else type(current)(value))
                r = asyncio.run(run_streaming(truths, sv, transcriber, stream_dir, text))
            elif system == "offline":
                r = run_offline(truths, transcriber.whisper, stream_dir)
            elif system == "redecode":
                if name != "synth":
                    continue
                r = run_redecode(truths[0], transcriber.whisper, args.redecode_seconds)
            else:
                raise SystemExit(f"unknown system {system}")
            if system != "redecode":
                scores = score(args.shared, limited, stream_dir)
                r["wer"] = scores["wer"]
                if system != "offline":
                    r["detect"] = {k: scores[k] for k in DETECT_KEYS}
                    r["labels"] = scores.get("labels")
            res[system] = r
            print(f"[{name}] {system}: {json.dumps(r)}", file=sys.stderr)
        if "offline" in res:
            for system in [s for s in res if s not in ("calls", "offline")]:
                if system in res:
                    res[system]["cpu_vs_offline"] = res[system]["cpu_per_audio_second"] / res["offline"]["cpu_per_audio_second"]
                    if "wer" in res[system]:
                        res[system]["wer_vs_offline"] = res[system]["wer"] / res["offline"]["wer"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "asr.json").write_text(json.dumps(results, indent=1))
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    lines = [f"machine: {results['machine']}", "",
             "| set | system | WER | WER / offline | CPU-s per s | CPU / offline | finals lag median (p90) |",
             "|---|---|---|---|---|---|---|"]
    for name, res in results["sets"].items():
        for system, r in res.items():
            if system == "calls":
                continue
            fmt = lambda k, f="{:.3f}": f.format(r[k]) if k in r else "-"  # noqa: E731
            lag = f"{r['finals_lag_median']:.2f} s ({r['finals_lag_p90']:.2f} s)" if "finals_lag_median" in r else "-"
            lines.append(f"| {name} ({res['calls']} calls) | {system} | {fmt('wer')} | {fmt('wer_vs_offline', '{:.2f}x')} | "
                         f"{fmt('cpu_per_audio_second')} | {fmt('cpu_vs_offline', '{:.2f}x')} | {lag} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
