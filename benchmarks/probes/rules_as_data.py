"""Probe (issue 32): the rules as data (models/rules.yaml) against the Python rules they replaced.

Loads ``coach/detect/triggers.py`` as it was at commit 4c7ad65 (from git), reads every line of
``benchmarks/lines/{tune,tune2,tune3,ordinary,narration}.jsonl`` as either speaker through both, and
prints how many readings differ in labels or evidence, then the cost per line of each, alternating
old and new twice in one run. Usage: python benchmarks/probes/rules_as_data.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from coach.detect.triggers import TriggerDetector  # noqa: E402
from coach.events import TranscriptEvent  # noqa: E402

BEFORE = "4c7ad65"


def old_detector():
    source = subprocess.run(["git", "show", f"{BEFORE}:coach/detect/triggers.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("triggers_before")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{BEFORE}:coach/detect/triggers.py", "exec"), module.__dict__)  # noqa: S102 (the project's own history)
    return module.TriggerDetector


def main() -> None:
    texts = [json.loads(line)["text"] for name in ("tune", "tune2", "tune3", "ordinary", "narration")
             for line in (ROOT / "benchmarks" / "lines" / f"{name}.jsonl").read_text().splitlines() if line.strip()]
    events = [TranscriptEvent(1.0, speaker, "x", 0.0, 1.0, text, True) for text in texts for speaker in ("agent", "customer")]
    Old = old_detector()
    differ = sum(sorted((s.label, s.evidence) for s in Old().on_transcript(e)) != sorted((s.label, s.evidence) for s in TriggerDetector().on_transcript(e))
                 for e in events)
    print(f"{len(events)} readings ({len(texts)} lines as either speaker): {differ} differ in labels or evidence")
    for name, make in (("before", Old), ("as data", TriggerDetector)) * 2:
        detector, start = make(), time.perf_counter()
        for _ in range(3):
            for e in events:
                detector.raised_by(e)
        print(f"{name:>8}: {(time.perf_counter() - start) / (3 * len(events)) * 1e6:.0f} us a reading")


if __name__ == "__main__":
    main()
