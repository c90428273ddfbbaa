"""Re-run the text detectors (sentiment, trigger rules and exemplars, risk) over the final segments of
streams already written by ``asr_bench.py``, without transcribing again, and score the result.

A quick loop for the detectors alone: the transcripts and the timing signals (which come from voice
activity) are kept as they were; trigger signals, sentiment and risk are recomputed. Prompts are not
(they need the live activity timeline): take coverage figures from ``asr_bench.py``.

    python benchmarks/replay_detectors.py bench-out/streams/synth/streaming-finals bench-out/truth-synth
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMING_LABELS = {"over_explaining", "interruption", "dead_air"}  # from voice activity: kept as they were
sys.path.insert(0, str(ROOT))

from coach.config import Settings  # noqa: E402
from coach.detect.exemplars import split_sentences  # noqa: E402
from coach.detect.risk import RiskMeter  # noqa: E402
from coach.detect.sentiment import CallMood  # noqa: E402
from coach.models import text_analyzer as load_text_analyzer  # noqa: E402
from coach.detect.triggers import TriggerDetector  # noqa: E402
from coach.events import SignalEvent, TranscriptEvent  # noqa: E402


def replay(stream: Path, analyzer, out: Path, carry: float, interims: str = "none") -> None:
    """``interims``: what reads the interim transcripts too. ``none``: nothing (finals only); ``rules``:
    the phrase rules, as the pipeline does; ``all``: rules and trigger heads on every interim;
    ``complete``: heads only on an interim's sentences before its last (which may still be going on);
    ``tail``: heads only on the interims that end where the utterance's final ends (the pause that
    ended it)."""
    events = [json.loads(line) for line in stream.read_text().splitlines()]
    triggers, risk, mood = TriggerDetector(), RiskMeter(), CallMood(carry)
    final_end = {e["id"]: e["end"] for e in events if e["type"] == "transcript" and e.get("final")}
    written = []
    for e in events:
        if e["type"] in ("risk", "prompt", "prompt_cleared") or (e["type"] == "signal" and e["label"] not in TIMING_LABELS):
            continue
        if e["type"] == "signal":
            written.append(e)
            written += [r.to_dict() for r in risk.on_signals([SignalEvent(**{k: v for k, v in e.items() if k != "type"})])]
            continue
        if e["type"] == "transcript" and not e.get("final") and e["text"] and interims != "none":
            written.append(e)
            interim = TranscriptEvent(e["at"], e["speaker"], e["id"], e["start"], e["end"], e["text"], False)
            matches = interim_matches(e, analyzer, interims, final_end)
            signals = triggers.on_transcript(interim, matches)
            written += [s.to_dict() for s in signals]
            written += [r.to_dict() for r in risk.on_signals(signals)]
            continue
        if e["type"] != "transcript" or not e.get("final") or not e["text"]:
            written.append(e)
            continue
        reading = analyzer.read_now(e["speaker"], e["text"]) if analyzer else None
        final = TranscriptEvent(e["at"], e["speaker"], e["id"], e["start"], e["end"], e["text"], True)
        if reading and reading.sentiment is not None:
            dissatisfied = e["speaker"] == "customer" and triggers.raised_by(final, reading.matches)
            final = replace(final, sentiment=mood.update(e["speaker"], reading.sentiment, dissatisfied))
        written.append(final.to_dict())
        signals = triggers.on_transcript(final, reading.matches if reading else [])
        written += [s.to_dict() for s in signals]
        written += [r.to_dict() for r in risk.on_signals(signals)]
        written += [r.to_dict() for r in risk.on_sentiment(final)]
    out.write_text("".join(json.dumps(e) + "\n" for e in written))


def interim_matches(e: dict, analyzer, interims: str, final_end: dict[str, float]) -> list:
    """The trigger heads' matches on an interim, as the ``interims`` mode of :func:`replay` reads it."""
    if analyzer is None or interims == "rules" or (interims == "tail" and e["end"] != final_end.get(e["id"])):
        return []
    matches = analyzer.read_now(e["speaker"], e["text"]).matches
    if interims == "complete":
        last = split_sentences(e["text"])[-1]
        matches = [m for m in matches if m.sentence != last]
    return matches


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("streams", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "replay")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--rules-only", action="store_true")
    ap.add_argument("--interims", choices=("none", "rules", "all", "complete", "tail"), default="none",
                    help="also read interims (see replay()): rules as the pipeline does, or rules and heads in one of three ways")
    args = ap.parse_args()
    settings = Settings()
    analyzer = None if args.rules_only else load_text_analyzer(settings.text, settings.models_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    for stream in sorted(args.streams.glob("*.jsonl")):
        replay(stream, analyzer, args.out / stream.name, settings.text.mood_carry, args.interims)
    subprocess.run([sys.executable, str(args.shared / "tools" / "score_calls.py"), str(args.truth), str(args.out)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
