"""The coach's own data, named: where its default files live, and its built-in signals.

Data, not code: settings (``coach/config.py``) name their defaults from here, so reading the settings
imports no detector, and the detectors take the files they are given.
"""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent / "models"
PLAYBOOK = MODELS / "playbook.yaml"
EXEMPLARS = MODELS / "exemplars.yaml"
RULES = MODELS / "rules.yaml"  # the built-in phrase rules, with their ids and test lines
TRIGGER_HEADS = MODELS / "heads" / "triggers.json"
SENTIMENT_HEAD = MODELS / "heads" / "sentiment.json"
UTTERANCES = (MODELS / "data" / "sentiment.csv", MODELS / "data" / "ordinary.csv")
# Single call lines by writers who saw only the signal definitions (benchmarks/lines/tune*.jsonl):
# the trigger thresholds are set on them; benchmarks/lines/heldout.jsonl is never trained or set on.
CALIBRATION = tuple(MODELS.parent / "benchmarks" / "lines" / f"{name}.jsonl" for name in ("tune", "tune2", "tune3", "ordinary"))
# Whole scripted calls by writers who saw only the signal definitions (models/data/calls/*.jsonl, one
# turn a line, in call order): the trigger adapters learn from every turn, a labelled turn as its label and
# every other turn as `none` (a call is mostly turns that carry no trigger). benchmarks/lines/heldout-calls
# holds other calls by the same writers that are never trained or set on.
TRAINING_LINES = tuple(sorted((MODELS / "data" / "calls").glob("*.jsonl")))

# the built-in signals (spec/signals.md), and those of them read from what a party says (phrase rules
# and trigger heads; the others come from timing)
SIGNALS = (
    "escalation_request", "churn_threat", "repeat_contact", "abuse", "legal_or_public_threat", "not_listening",
    "no_manager_lie", "dismissive_phrase", "blame_language", "over_explaining", "interruption", "dead_air",
)
TRIGGER_LABELS = ("abuse", "blame_language", "churn_threat", "dismissive_phrase", "escalation_request", "legal_or_public_threat",
                  "no_manager_lie", "not_listening", "repeat_contact")
# the timing cues' rule ids (coach/detect/timing.py): a playbook may switch one off like a pattern
TIMING_RULES = ("over_explaining.timing", "interruption.timing", "dead_air.timing")
