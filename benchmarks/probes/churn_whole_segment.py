#!/usr/bin/env python3
"""Probe (issue 3, not built): would reading churn on a whole multi-sentence customer segment, as well
as sentence by sentence, catch more churn without false alarms?

    python benchmarks/probes/churn_whole_segment.py benchmarks/lines/*.jsonl \
        --calls bench-out/calls --streams bench-out/s-a/streams/synth/streaming

For each line the detector (rules + heads) does not already flag as churn, and for each customer final
of the calls' streams with no churn signal on it, the whole text is read through the ensemble at
churn's calibrated threshold (plus a margin) and floor. Prints counts only: churn lines gained and new
false alarms per line set; true and false churn turns gained on the calls (from the truth files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from coach.config import Settings  # noqa: E402
from coach.detect.exemplars import mean_probabilities, mean_similarity, split_sentences  # noqa: E402
from coach.models import load_text_analyzer  # noqa: E402
from lines_bench import detect, read_lines  # noqa: E402
from missed_turns_wer import calls_heard  # noqa: E402

LABEL = "churn_threat"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", type=Path, nargs="+")
    ap.add_argument("--calls", type=Path, help="folder of the calls' *.truth.json")
    ap.add_argument("--streams", type=Path, help="folder of `coach analyze --jsonl` outputs, one per call")
    ap.add_argument("--margins", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.05, 0.1])
    args = ap.parse_args()
    analyzer = load_text_analyzer(Settings())
    index = analyzer.index
    head = index.heads["customer"]
    c = head.classes.index(LABEL)

    def fires(text: str, margin: float) -> bool:
        if len(split_sentences(text)) < 2:
            return False  # one sentence: already read whole
        x = np.stack([e.embed([text]) for e in analyzer.trigger_encoders])
        p = mean_probabilities(x, head.weights, head.bias)[0, c]
        nearest = mean_similarity(x, index._examples[LABEL]).max(axis=1)[0]
        return p >= head.thresholds[LABEL] + margin and nearest >= head.floors.get(LABEL, 0.0)

    for path in args.sets:
        lines = [line for line in read_lines(path) if line["speaker"] == "customer"]
        found = detect(lines, analyzer)
        positives = sum(LABEL in line["labels"] for line in lines)
        caught = sum(LABEL in line["labels"] and LABEL in f for line, f in zip(lines, found))
        for margin in args.margins:
            missed = [line for line, f in zip(lines, found) if LABEL not in f and fires(line["text"], margin)]
            gained = sum(LABEL in line["labels"] for line in missed)
            print(f"{path.name} margin {margin}: churn {caught}/{positives} -> +{gained}, new false alarms {len(missed) - gained}")
    if args.calls and args.streams:
        for margin in args.margins:
            gained = false = 0
            for turns, finals, signals in calls_heard(args.calls, args.streams):
                signalled = [e for e in signals if e["label"] == LABEL]
                for final in (e for e in finals if e["speaker"] == "customer"):
                    if any(s["start"] < final["end"] and s["end"] > final["start"] for s in signalled) or not fires(final["text"], margin):
                        continue
                    true = any(LABEL in t["labels"] and t["speaker"] == "customer" and t["start"] < final["end"] and t["end"] > final["start"]
                               for t in turns)
                    gained += true
                    false += not true
            print(f"calls margin {margin}: churn +{gained} true, +{false} false")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
