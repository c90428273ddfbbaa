"""A team's own signal, written from 5 examples (issue 32): the similarity threshold, and how such a
signal does on lines it was not written from.

    python benchmarks/custom_bench.py [--json bench-out/custom.json]

1. **Calibration** (on lines the project has read and tuned on, which is what calibration is for):
   each built-in label of `models/exemplars.yaml` is written as a team would write it, from its
   first 5 examples and first 5 near misses. It is then scored against the project's labelled
   lines (`benchmarks/lines/tune*.jsonl`, `ordinary.jsonl`, `narration.jsonl`; never the held-out
   sets) at each threshold. The threshold with the best mean F1 over the labels is the default.
2. **Held out:** two signals a team might write (`vulnerable_customer`, `cancellation_fee_asked`),
   from the 5 examples, 5 near misses and the phrases below. They were written from a team lead's
   description before any test line was seen. They are scored against lines by two writers who
   were given only that description (`benchmarks/lines/custom-heldout/`). Only counts are printed,
   never a line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.detect.custom import CustomSignal, compile_phrase, match_meaning, meaning_banks  # noqa: E402
from coach.detect.exemplars import load_exemplars, split_sentences  # noqa: E402

TEAM = {
    "vulnerable_customer": {
        "examples": ["My husband passed away last month and I don't know how any of this works.",
                     "I've just been diagnosed with cancer and I'm struggling to keep on top of things.",
                     "Honestly I can't afford to put the heating on, it's either that or eat.",
                     "I suffer from anxiety and phone calls like this really overwhelm me.",
                     "I'm caring for my mum full time so I can't work at the moment."],
        "not": ["Sorry I paid late, I was away on holiday.", "My dog was ill last week so I forgot to call.",
                "I had the flu a while back but I'm fine now.", "My neighbour's struggling with her bills too.",
                "I'm really busy with work so I missed the letter."],
        "phrases": ["passed away", "diagnosed with", "can't afford", "cannot afford", "bereave*", "terminal*", "disabilit*",
                    "domestic abuse", "carer", "mental health"],
    },
    "cancellation_fee_asked": {
        "examples": ["How much would it cost me to cancel my contract early?", "Is there an exit fee if I leave before the end of the term?",
                     "What's the early termination charge?", "If I walk away now, what do I have to pay?",
                     "Can I buy out the rest of my contract, and how much is that?"],
        "not": ["Why is there a late payment fee on my bill?", "I want to cancel my direct debit.", "When does my contract actually end?",
                "I'm going to cancel if this isn't sorted.", "What's the charge for paper bills?"],
        "phrases": ["exit fee*", "cancellation fee*", "cancellation charge*", "early termination", "termination fee*", "cost to cancel",
                    "penalty"],
    },
}
THRESHOLDS = [round(float(t), 2) for t in np.arange(0.40, 0.86, 0.02)]


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


class Embedder:
    """The text encoder the server reads with, sentences embedded once each."""

    def __init__(self) -> None:
        from coach.config import Settings
        from coach.models import load_text_analyzer

        self.analyzer = load_text_analyzer(Settings())
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for start in range(0, len(todo), 64):
            chunk = todo[start : start + 64]
            for text, vector in zip(chunk, self.analyzer.encoder.embed(chunk)):
                self.cache[text] = vector
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)


def best_similarity(embed: Embedder, bank, speaker: str, text: str) -> float:
    """The score a line gets: its best sentence's similarity to the nearest example, if nearer than any near miss."""
    sentences = split_sentences(text) or [text]
    found = match_meaning([replace(bank, threshold=-1.0)], speaker, sentences, embed(sentences))
    return found[0].score if found else -1.0


def figures(scores: list[float], truth: list[bool], threshold: float) -> dict:
    fired = [s >= threshold for s in scores]
    tp = int(sum(bool(f and t) for f, t in zip(fired, truth)))
    fp = int(sum(bool(f and not t) for f, t in zip(fired, truth)))
    positives = int(sum(truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"recall": round(recall, 3), "precision": round(precision, 3), "f1": round(f1, 3), "true": tp, "false_alarms": fp,
            "positives": positives, "negatives": len(truth) - positives}


def calibrate(embed: Embedder) -> dict:
    lines = []
    for name in ("tune.jsonl", "tune2.jsonl", "tune3.jsonl", "ordinary.jsonl", "narration.jsonl"):
        lines += [json.loads(x) for x in (ROOT / "benchmarks" / "lines" / name).read_text().splitlines() if x.strip()]
    sets = load_exemplars()
    per_label = {}
    for label, exemplars in sets.items():
        [bank] = meaning_banks([(label, exemplars.speaker, exemplars.examples[:5], exemplars.not_[:5], None)], embed)
        mine = [line for line in lines if line["speaker"] == exemplars.speaker]
        scores = [best_similarity(embed, bank, exemplars.speaker, line["text"]) for line in mine]
        truth = [label in line.get("labels", []) for line in mine]
        per_label[label] = {t: figures(scores, truth, t) for t in THRESHOLDS}
    mean_f1 = {t: round(float(np.mean([per_label[label][t]["f1"] for label in per_label])), 3) for t in THRESHOLDS}
    best = float(max(THRESHOLDS, key=lambda t: mean_f1[t]))
    return {"lines": len(lines), "labels": len(per_label), "mean_f1": mean_f1, "best": best,
            "at_best": {label: per_label[label][best] for label in per_label}}


def held_out(embed: Embedder, threshold: float) -> dict:
    folder = ROOT / "benchmarks" / "lines" / "custom-heldout"
    out = {}
    for path in sorted(folder.glob("*.jsonl")):
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        for label, team in TEAM.items():
            [bank] = meaning_banks([(label, "customer", team["examples"], team["not"], threshold)], embed)
            signal = CustomSignal(label, "customer", tuple(compile_phrase(p) for p in team["phrases"]))
            truth = [row["signal"] == label and row["positive"] for row in rows]
            meaning = [best_similarity(embed, bank, "customer", row["text"]) for row in rows]
            phrased = [signal.match(row["text"]) is not None for row in rows]
            out[f"{path.stem} {label}"] = {
                "examples": figures(meaning, truth, threshold),
                "phrases": figures([1.0 if p else -1.0 for p in phrased], truth, 0.0),
                "either": figures([1.0 if p or m >= threshold else -1.0 for p, m in zip(phrased, meaning)], truth, 0.0),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    embed = Embedder()
    result = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "encoder": str(embed.analyzer.encoder.name)}
    result["calibration"] = calibrate(embed)
    cal = result["calibration"]
    print(f"calibration on {cal['lines']} project lines, {cal['labels']} labels: best threshold {cal['best']} "
          f"(mean F1 {cal['mean_f1'][cal['best']]}); mean F1 by threshold: {cal['mean_f1']}", flush=True)
    result["held_out"] = held_out(embed, cal["best"])
    for name, row in result["held_out"].items():
        print(name, {k: (v["recall"], v["false_alarms"], v["negatives"]) for k, v in row.items()}, flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
