#!/usr/bin/env python3
"""Probe (issue 3): are the trigger turns the detector misses badly heard? Word error rate of each
labelled trigger turn, caught against missed. Prints numbers and labels only, never call text.

    python benchmarks/probes/missed_turns_wer.py bench-out/calls bench-out/s-a/streams/synth/streaming
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from word_errors import wer, words  # noqa: E402  (benchmarks/word_errors.py)

TRIGGERS = {"abuse", "blame_language", "churn_threat", "dismissive_phrase", "escalation_request",
            "legal_or_public_threat", "no_manager_lie", "not_listening", "repeat_contact"}


def calls_heard(calls: Path, streams: Path):
    """Per call: its labelled turns, and the finals and signals of its stream."""
    for truth_path in sorted(calls.glob("*.truth.json")):
        turns = json.loads(truth_path.read_text())["turns"]
        events = [json.loads(x) for x in (streams / truth_path.name.replace(".truth.json", ".jsonl")).open()]
        finals = [e for e in events if e["type"] == "transcript" and e.get("final")]
        yield turns, finals, [e for e in events if e["type"] == "signal"]


def main(calls: Path, streams: Path) -> int:
    caught, missed = [], []
    for turns, finals, signals in calls_heard(calls, streams):
        for turn in turns:
            heard = " ".join(f["text"] for f in finals
                             if f["speaker"] == turn["speaker"] and f["start"] < turn["end"] and f["end"] > turn["start"])
            rate = wer(words(turn["text"]), words(heard))
            for label in set(turn["labels"]) & TRIGGERS:
                hit = any(s["label"] == label and s["start"] < turn["end"] + 1 and s["end"] > turn["start"] - 1 for s in signals)
                (caught if hit else missed).append((label, rate))
    for name, rows in (("caught", caught), ("missed", missed)):
        rates = [r for _, r in rows]
        if rates:
            print(f"{name}: {len(rows)} turn labels, WER mean {statistics.mean(rates):.3f} median {statistics.median(rates):.3f}")
    print("missed:", ", ".join(f"{label} {rate:.2f}" for label, rate in sorted(missed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
