#!/usr/bin/env python3
"""Probe (issue 3): a party's sentence cut in two by a pause ends one final and starts the next, and
neither half reads as the trigger it is. Would reading the seam (the last sentence of a party's
previous final joined to the first of its next) catch more, and at what cost in false alarms?

    python benchmarks/probes/bridge_finals.py bench-out/calls STREAMS_DIR [--gap 2.0]

For each final whose party's previous final ended at most ``--gap`` seconds before it started (no
other party's final between), the seam is read by the phrase rules and the trigger heads; a label
neither final signalled is counted as gained, true when a turn of that party with that label overlaps
the final, false otherwise. Prints counts only, never call text.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from coach.config import Settings  # noqa: E402
from coach.detect.exemplars import split_sentences  # noqa: E402
from coach.detect.triggers import TriggerDetector  # noqa: E402
from coach.events import TranscriptEvent  # noqa: E402
from coach.models import load_text_analyzer  # noqa: E402
from missed_turns_wer import calls_heard  # noqa: E402


def seam(before: str, after: str) -> str:
    last, first = split_sentences(before)[-1], split_sentences(after)[0]
    return f"{last.rstrip('.')} {first[:1].lower()}{first[1:]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("calls", type=Path)
    ap.add_argument("streams", type=Path)
    ap.add_argument("--gap", type=float, default=2.0)
    args = ap.parse_args()
    analyzer = load_text_analyzer(Settings())
    detector = TriggerDetector()
    seams = 0
    gained = Counter()
    for turns, finals, signals in calls_heard(args.calls, args.streams):
        finals = [f for f in finals if f["text"].strip()]
        for prev, final in zip(finals, finals[1:]):
            if prev["speaker"] != final["speaker"] or final["start"] - prev["end"] > args.gap:
                continue
            seams += 1
            text = seam(prev["text"], final["text"])
            speaker = final["speaker"]
            x = np.stack([e.embed([text]) for e in analyzer.trigger_encoders])
            seam_event = TranscriptEvent(final["at"], speaker, f"seam-{seams}", prev["start"], final["end"], text, True)
            labels = {s.label for s in detector.on_transcript(seam_event, analyzer.index.match(speaker, [text], x))}
            for label in labels:
                if any(s["label"] == label and s["speaker"] == speaker and prev["start"] - 0.5 <= s["start"] <= final["end"] for s in signals):
                    continue  # one of the two finals already signalled it
                true = any(label in t["labels"] and t["speaker"] == speaker and t["start"] < final["end"] and t["end"] > prev["start"]
                           for t in turns)
                gained[(label, true)] += 1
    print(f"seams read: {seams} (gap <= {args.gap} s)")
    for (label, true), n in sorted(gained.items()):
        print(f"  {label}: +{n} {'true' if true else 'false'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
