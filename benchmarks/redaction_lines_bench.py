#!/usr/bin/env python3
"""Redaction recall and false redactions on transcript snippets written for the bench (issue 27).

    python benchmarks/redaction_lines_bench.py benchmarks/redaction/dev.jsonl benchmarks/redaction/heldout.jsonl [--show]

Each snippet is a few finals of a call, as a speech recogniser writes them, with the personal data in
each marked by its writer (``benchmarks/redaction/README.md``). The finals go through one call's
:class:`coach.redact.Redactor` in order, as the server's would (each final 3 s after the last).

- A piece of personal data is **caught** when none of its words survives: every letter or digit run
  in it, but for a few joining words ("of", "the", "and", "at", "dot", "sign", ...), lies inside a
  redaction. A datum read over several finals (a card in groups) is caught when every piece is.
- **False redactions**: redactions that touch no personal data, counted over every final of the
  "ordinary" snippets (calls about money, dates, usage, counts), and over the other finals too.

No models, no ../shared: seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.redact import Redactor  # noqa: E402

WORD = re.compile(r"[A-Za-z0-9]+")
JOINING = {"of", "the", "and", "at", "dot", "sign", "symbol", "on", "in", "then", "uh", "um", "is", "it", "s", "its", "dash",
           "hyphen", "underscore", "space", "all", "lower", "case", "lowercase", "capital", "that", "for", "as", "end", "month"}
KINDS = ("card", "expiry", "security_code", "account", "sort_code", "iban", "dob", "email", "phone", "id")


def covered(text: str, spans) -> list[bool]:
    mask = [False] * len(text)
    for span in spans:
        for i in range(span.start, span.end):
            mask[i] = True
    return mask


def run(path: Path, show: bool) -> dict:
    items: dict[str, dict] = {}
    ordinary_finals = ordinary_flagged = ordinary_spans = 0
    other_false = 0
    misses: list[str] = []
    false_lines: list[str] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        snippet = json.loads(line)
        redactor = Redactor()
        at = 0.0
        for turn in snippet["turns"]:
            at += 3.0
            text = turn["text"]
            message = {"type": "transcript", "speaker": turn["speaker"], "text": text, "final": True, "start": at - 2.5, "end": at, "at": at}
            redacted, spans = redactor.event(message)
            mask = covered(text, spans)
            pii_mask = [False] * len(text)
            for piece in turn["pii"]:
                start = text.find(piece["text"])
                if start < 0:
                    raise SystemExit(f"{path}: {snippet['id']}: {piece['text']!r} is not in its turn")
                for i in range(start, start + len(piece["text"])):
                    pii_mask[i] = True
                left = [m.group() for m in WORD.finditer(piece["text"])
                        if m.group().lower() not in JOINING and not all(mask[start + m.start() : start + m.end()])]
                item = items.setdefault(piece["item"], {"kind": piece["kind"], "caught": True, "id": snippet["id"]})
                if left:
                    item["caught"] = False
                    misses.append(f"{snippet['id']} {piece['kind']}: {text!r} -> {redacted.get('text', text)!r} (left: {' '.join(left)})")
            stray = [s for s in spans if not any(pii_mask[s.start : s.end])]
            if snippet["kind"] == "ordinary":
                ordinary_finals += 1
                ordinary_flagged += bool(spans)
                ordinary_spans += len(spans)
            else:
                other_false += len(stray)
            if stray:
                false_lines.append(f"{snippet['id']}: {text!r} -> {redacted.get('text', text)!r}")
    by_kind: dict[str, Counter] = defaultdict(Counter)
    for item in items.values():
        by_kind[item["kind"]]["items"] += 1
        by_kind[item["kind"]]["caught"] += item["caught"]
    if show:
        print(f"## {path}: missed\n" + "\n".join(misses) + "\n## false redactions\n" + "\n".join(false_lines) + "\n")
    return {"by_kind": by_kind, "ordinary_finals": ordinary_finals, "ordinary_flagged": ordinary_flagged,
            "ordinary_spans": ordinary_spans, "other_false": other_false}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--show", action="store_true", help="print every miss and false redaction (not for held-out sets)")
    args = parser.parse_args()
    results = {path: run(path, args.show) for path in args.sets}
    names = [path.stem for path in args.sets]
    print("| data | " + " | ".join(f"{n}: caught / said (recall)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for kind in KINDS:
        cells = []
        for path in args.sets:
            c = results[path]["by_kind"].get(kind, Counter())
            cells.append(f"{c['caught']} / {c['items']} ({c['caught'] / c['items']:.2f})" if c["items"] else "-")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    cells = []
    for path in args.sets:
        totals = Counter()
        for c in results[path]["by_kind"].values():
            totals.update(c)
        cells.append(f"{totals['caught']} / {totals['items']} ({totals['caught'] / max(1, totals['items']):.3f})")
    print("| **all** | " + " | ".join(cells) + " |")
    print("| false redactions: ordinary finals with any | " + " | ".join(
        f"{results[p]['ordinary_flagged']} of {results[p]['ordinary_finals']} ({results[p]['ordinary_spans']} redactions)" for p in args.sets) + " |")
    print("| false redactions: in the other finals | " + " | ".join(str(results[p]["other_false"]) for p in args.sets) + " |")


if __name__ == "__main__":
    main()
