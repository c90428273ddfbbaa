#!/usr/bin/env python3
"""The trigger detector on single call lines, each labelled by hand: recall per label and false alarms.

    python benchmarks/lines_bench.py benchmarks/lines/tune.jsonl [--show]

A line is ``{"speaker": "customer"|"agent", "text": "...", "labels": [...]}``; ``labels`` is empty for
an ordinary line or a hard negative. Each line is read as one final segment, by the phrase rules
alone and by the rules with the trigger heads (the text models, as ``coach analyze`` runs them).
A false alarm is a label raised on a line that does not carry it.

The sets under ``benchmarks/lines/`` were written for the project by writers who saw the signal
definitions only (not the synthesized calls, the rules or the exemplars): ``tune*.jsonl`` may be
read line by line while improving the detector, and ``make train`` sets the trigger heads' thresholds
on them and on ``ordinary.jsonl`` (ordinary lines only: its table counts false alarms);
``heldout.jsonl`` and ``heldout2.jsonl`` (a fourth writer's lines, 315 of its 450 hard near-misses:
agents' apologies and friendly "you" lines, customers' stories, managers mentioned in passing,
ASR-like fragments) are only scored, to see whether a change generalises (do not read their misses
with ``--show``). So is ``heldout-calls/``: whole calls, one turn a line, by the writers of the calls
under ``models/data/calls/`` that ``make train`` learns from; most of their turns carry no trigger, so
their false alarms are what a call's ordinary speech raises.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.config import Settings  # noqa: E402
from coach.detect.triggers import RULES, TriggerDetector  # noqa: E402
from coach.events import TranscriptEvent  # noqa: E402
from coach.models import load_text_analyzer  # noqa: E402
from coach.train import read_calibration  # noqa: E402

TRIGGER_LABELS = sorted({rule.label for rule in RULES})


def read_lines(path: Path) -> list[dict]:
    """The set's lines (the reader `make train` calibrates with), each checked for a known speaker and labels."""
    try:
        lines = read_calibration([path])
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    for number, line in enumerate(lines, 1):
        unknown = set(line["labels"]) - set(TRIGGER_LABELS)
        if line["speaker"] not in ("customer", "agent") or unknown:
            raise SystemExit(f"{path}: line {number} (not counting blank ones): bad speaker or unknown labels {sorted(unknown)}")
    return lines


def detect(lines: list[dict], analyzer) -> list[set[str]]:
    found = []
    for i, line in enumerate(lines):
        event = TranscriptEvent(0.0, line["speaker"], f"line-{i}", 0.0, 1.0, line["text"], True)
        matches = analyzer.read_now(line["speaker"], line["text"]).matches if analyzer else []
        found.append({s.label for s in TriggerDetector().on_transcript(event, matches)})
    return found


def score(lines: list[dict], found: list[set[str]]) -> dict[str, dict[str, int]]:
    counts = {label: Counter() for label in TRIGGER_LABELS}
    for line, raised in zip(lines, found):
        truth = set(line["labels"])
        for label in TRIGGER_LABELS:
            if label in truth:
                counts[label]["tp" if label in raised else "fn"] += 1
            elif label in raised:
                counts[label]["fp"] += 1
    return counts


def ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}" if b else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sets", type=Path, nargs="+")
    ap.add_argument("--rules-only", action="store_true", help="skip the text models")
    ap.add_argument("--show", action="store_true", help="print each miss and false alarm (tuning sets only)")
    args = ap.parse_args()

    settings = Settings()
    analyzer = None if args.rules_only else load_text_analyzer(settings)
    systems = {"rules": None} if args.rules_only else {"rules": None, "rules+heads": analyzer}
    for path in args.sets:
        lines = read_lines(path)
        positives = sum(bool(line["labels"]) for line in lines)
        print(f"\n## {path.name}: {len(lines)} lines, {positives} with a label")
        results = {name: detect(lines, a) for name, a in systems.items()}
        table = {name: score(lines, found) for name, found in results.items()}
        head = " | ".join(f"{name} recall | {name} false alarms" for name in systems)
        print(f"| label | lines | {head} |\n|---|---|" + "---|---|" * len(systems))
        totals = {name: Counter() for name in systems}
        for label in TRIGGER_LABELS:
            cells = []
            for name in systems:
                c = table[name][label]
                totals[name].update(c)
                cells.append(f"{ratio(c['tp'], c['tp'] + c['fn'])} | {c['fp']}")
            n = table["rules"][label]["tp"] + table["rules"][label]["fn"]
            print(f"| {label} | {n} | " + " | ".join(cells) + " |")
        cells = []
        for name in systems:
            t = totals[name]
            cells.append(f"{ratio(t['tp'], t['tp'] + t['fn'])} (precision {ratio(t['tp'], t['tp'] + t['fp'])}) | {t['fp']}")
        print("| all | " + str(totals["rules"]["tp"] + totals["rules"]["fn"]) + " | " + " | ".join(cells) + " |")
        if args.show and "heldout" in (path.name + path.parent.name):
            print("  (misses of a held-out set are not shown)")
        elif args.show:
            final = results[list(systems)[-1]]
            for line, raised in zip(lines, final):
                truth = set(line["labels"])
                if raised != truth:
                    print(f"  {'MISS ' + ','.join(sorted(truth - raised)) if truth - raised else ''}"
                          f"{' FALSE ' + ','.join(sorted(raised - truth)) if raised - truth else ''}"
                          f" [{line['speaker']}] {line['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
