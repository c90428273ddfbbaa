#!/usr/bin/env python3
"""Probe (issue 3): how far below its threshold does each missed trigger turn of the calls sit?

    python benchmarks/probes/missed_turns_margin.py bench-out/calls STREAMS_DIR

For every labelled trigger turn with no signal of its label in the scorer's window, the finals of
that speaker overlapping the turn are read again through the ensemble: the label's best mean
probability over their sentences, over each whole final, and over all of them joined (the turn read
as one), against the label's threshold; the nearest-example similarity against its floor; and the
class the best sentence goes to instead. Prints numbers and labels only, never call text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from coach.config import Settings  # noqa: E402
from coach.detect.exemplars import mean_probabilities, mean_similarity, split_sentences  # noqa: E402
from coach.models import load_text_analyzer  # noqa: E402
from missed_turns_wer import TRIGGERS, calls_heard  # noqa: E402

TAIL = 4.0  # the scorer's window: a turn's start to its end plus this


def main(calls: Path, streams: Path) -> int:
    analyzer = load_text_analyzer(Settings())
    index = analyzer.index

    def read(speaker: str, label: str, texts: list[str]) -> tuple[float, float, str]:
        head = index.heads[speaker]
        x = np.stack([e.embed(texts) for e in analyzer.trigger_encoders])
        p = mean_probabilities(x, head.weights, head.bias)
        c = head.classes.index(label)
        i = int(p[:, c].argmax())
        nearest = float(mean_similarity(x, index._examples[label]).max(axis=1)[i])
        return float(p[i, c]), nearest, head.classes[int(p[i].argmax())]

    print("label | finals | sentences | p sentence (threshold) | p final | p joined | nearest (floor) | best sentence's class")
    for turns, finals, signals in calls_heard(calls, streams):
        for turn in turns:
            for label in sorted(set(turn["labels"]) & TRIGGERS):
                if any(s["label"] == label and turn["start"] <= s["at"] <= turn["end"] + TAIL
                       and s.get("speaker", turn["speaker"]) == turn["speaker"] for s in signals):
                    continue
                heard = [f["text"] for f in finals if f["speaker"] == turn["speaker"]
                         and f["start"] < turn["end"] and f["end"] > turn["start"]]
                sentences = [s for text in heard for s in split_sentences(text)]
                if not sentences:
                    print(f"{label} | 0 | 0 | - | - | - | - | -")
                    continue
                head = index.heads[turn["speaker"]]
                p_sent, nearest, cls = read(turn["speaker"], label, sentences)
                p_final, _, _ = read(turn["speaker"], label, heard)
                p_joined, _, _ = read(turn["speaker"], label, [" ".join(heard)])
                print(f"{label} | {len(heard)} | {len(sentences)} | {p_sent:.3f} ({head.thresholds[label]:.3f}) | "
                      f"{p_final:.3f} | {p_joined:.3f} | {nearest:.3f} ({head.floors.get(label, 0.0):.3f}) | {cls}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
