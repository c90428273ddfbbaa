#!/usr/bin/env python3
"""Probe (issue 3): what if a trigger label were raised only once per call, at its first sign?

The scripted calls label each trigger at most once per call, at the turn where it becomes evident,
so a label raised again later in the same call scores as a false alarm. This probe keeps only the
first signal of each trigger label in each call and scores again. Prints figures only, no call text.

    python benchmarks/probes/first_per_call.py streams STREAMS_DIR TRUTH_DIR
        the streams of ``asr_bench.py`` or ``replay_detectors.py``, scored with the shared scorer
    python benchmarks/probes/first_per_call.py lines SET.jsonl [SET.jsonl ...]
        whole calls written as labelled lines, each with a ``call`` key (lines in call order), read
        line by line as ``lines_bench.py`` reads them
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from missed_turns_wer import TRIGGERS  # noqa: E402

SCORER = ROOT.parent / "shared" / "tools" / "score_calls.py"
SHOWN = ("micro_precision:", "micro_recall:")


def first_signals(events: list[dict]) -> list[dict]:
    """The stream less every trigger signal whose label was already signalled earlier in the call."""
    seen, kept = set(), []
    for e in events:
        if e["type"] == "signal" and e["label"] in TRIGGERS:
            if e["label"] in seen:
                continue
            seen.add(e["label"])
        kept.append(e)
    return kept


def score_streams(streams: Path, truth: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(streams.glob("*.jsonl")):
            events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            (Path(tmp) / path.name).write_text("".join(json.dumps(e) + "\n" for e in first_signals(events)))
        for name, folder in (("every signal", streams), ("first per call", Path(tmp))):
            out = subprocess.run([sys.executable, str(SCORER), str(truth), str(folder)], capture_output=True,
                                 text=True, check=True).stdout
            figures = [line for line in out.splitlines() if line.startswith(SHOWN)]
            print(f"{name}: " + ", ".join(figures))


def score_lines(paths: list[Path]) -> None:
    from coach.config import Settings
    from coach.models import load_text_analyzer
    from lines_bench import TRIGGER_LABELS, detect, read_lines

    analyzer = load_text_analyzer(Settings())
    for path in paths:
        lines = read_lines(path)
        calls = [json.loads(raw)["call"] for raw in path.read_text().splitlines() if raw.strip()]
        found = detect(lines, analyzer)
        for name in ("every signal", "first per call"):
            tp = fp = fn = 0
            seen: set[tuple[str, str]] = set()
            for line, call, raised in zip(lines, calls, found):
                if name == "first per call":
                    raised = {label for label in raised if (call, label) not in seen}
                    seen |= {(call, label) for label in raised}
                truth = set(line["labels"])
                tp += len(truth & raised)
                fn += len(truth - raised)
                fp += len((raised - truth) & set(TRIGGER_LABELS))
            print(f"{path.name} {name}: recall {tp / max(1, tp + fn):.2f}, precision {tp / max(1, tp + fp):.2f}, "
                  f"false alarms {fp}, misses {fn}")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "streams":
        score_streams(Path(argv[1]), Path(argv[2]))
    elif len(argv) >= 2 and argv[0] == "lines":
        score_lines([Path(p) for p in argv[1:]])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
