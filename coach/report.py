"""``coach report``: what QA's reviews say about the flags, and how calls went (issue 5).

The loop that tells a team which rules to tune: for each signal label, how many flags were raised,
how many QA reviewed, and the share they marked right (the flag's precision); the same for each rule
that raised them (a built-in pattern ``churn_threat.exit_fee``, a label's ``.meaning``, a timing cue,
a team's own signal), which a playbook can switch off; prompts per call; calls by their highest risk.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from coach.store import CallQuery, CallStore

RISK_BANDS = (("low (0-39)", 0, 40), ("mid (40-69)", 40, 70), ("high (70-100)", 70, 101))  # as the board colours them


NO_RULE = "-"  # a flag stored before signals carried the id of their rule


@dataclass
class LabelFigures:
    label: str
    rule: str | None = None  # per rule: the id; per label: None
    flags: int = 0
    reviewed: int = 0
    right: int = 0
    wrong: int = 0

    @property
    def precision(self) -> float | None:
        return self.right / self.reviewed if self.reviewed else None


@dataclass
class Report:
    calls: int = 0
    states: dict[str, int] = field(default_factory=dict)
    flagged: int = 0
    labels: list[LabelFigures] = field(default_factory=list)
    rules: list[LabelFigures] = field(default_factory=list)
    prompts_per_call: dict[str, float] = field(default_factory=dict)
    prompts_by_kind: dict[str, int] = field(default_factory=dict)
    risk_bands: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "states": self.states, "flagged": self.flagged,
            "labels": [_figures(f) for f in self.labels],
            "rules": [_figures(f) for f in self.rules],
            "prompts_per_call": self.prompts_per_call, "prompts_by_kind": self.prompts_by_kind, "risk_bands": self.risk_bands,
        }


def _figures(f: LabelFigures) -> dict[str, Any]:
    out = {**vars(f), "precision": None if f.precision is None else round(f.precision, 3)}
    if f.rule is None:
        del out["rule"]
    return out


def _ranked(figures) -> list[LabelFigures]:
    """Lowest precision first (the ones to tune), then unreviewed, the most flags first."""
    return sorted(figures, key=lambda f: (f.precision if f.precision is not None else 2.0, -f.flags, f.label, f.rule or ""))


def build_report(store: CallStore, since: float | None = None) -> Report:
    """Blocking: reads the whole store (calls started at or after ``since``)."""
    calls = []
    offset = 0
    while page := store.calls(CallQuery(since=since, limit=500, offset=offset)):
        calls += page
        offset += len(page)
    report = Report(calls=len(calls), states=dict(Counter(c.state for c in calls)), flagged=sum(c.flagged for c in calls))
    wanted = {c.call_id for c in calls}
    figures: dict[str, LabelFigures] = {}
    by_rule: dict[tuple[str, str], LabelFigures] = {}
    rule_of: dict[tuple[str, int], str] = {}  # (call, seq) of a flag -> the rule that raised it
    for call_id, signal in store.events_of_type("signal", since):
        if call_id in wanted:
            label, rule = signal["label"], signal.get("rule") or NO_RULE
            figures.setdefault(label, LabelFigures(label)).flags += 1
            by_rule.setdefault((label, rule), LabelFigures(label, rule)).flags += 1
            rule_of[(call_id, signal["seq"])] = rule
    latest: dict[tuple[str, int], Any] = {}
    for review in store.reviews():  # oldest first: a later verdict on the same flag replaces an earlier one
        if review.call_id in wanted:
            latest[(review.call_id, review.seq)] = review
    for review in latest.values():
        rule = rule_of.get((review.call_id, review.seq), NO_RULE)
        for f in (figures.setdefault(review.label, LabelFigures(review.label)),
                  by_rule.setdefault((review.label, rule), LabelFigures(review.label, rule))):
            f.reviewed += 1
            f.right += review.verdict == "right"
            f.wrong += review.verdict == "wrong"
    report.labels, report.rules = _ranked(figures.values()), _ranked(by_rule.values())
    prompts = [(call_id, p) for call_id, p in store.events_of_type("prompt", since) if call_id in wanted]
    per_call = Counter(call_id for call_id, _ in prompts)
    counts = [per_call.get(c.call_id, 0) for c in calls]
    if counts:
        report.prompts_per_call = {"mean": round(statistics.fmean(counts), 2), "median": statistics.median(counts), "max": max(counts)}
    report.prompts_by_kind = dict(Counter(p["kind"] for _, p in prompts))
    report.risk_bands = {name: sum(lo <= c.max_risk < hi for c in calls) for name, lo, hi in RISK_BANDS}
    return report


def format_report(report: Report) -> str:
    lines = [f"calls: {report.calls} ({', '.join(f'{n} {s}' for s, n in sorted(report.states.items())) or 'none'}), "
             f"flagged: {report.flagged}", ""]
    lines.append("flag precision by label (from QA reviews; lowest first: tune these)")
    lines += _table("label", [f.label for f in report.labels], report.labels)
    if not report.labels:
        lines.append("  (no flags yet)")
    lines.append("")
    if report.rules:
        lines.append("flag precision by rule (lowest first: a playbook's switched_off: takes one out)")
        lines += _table("rule", [f.rule if f.rule != NO_RULE else f"{f.label} (no rule id)" for f in report.rules], report.rules)
        lines.append("")
    if report.prompts_per_call:
        p = report.prompts_per_call
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.prompts_by_kind.items()))
        lines.append(f"prompts per call: mean {p['mean']}, median {p['median']}, max {p['max']} ({kinds or 'none'})")
    lines.append("calls by highest risk: " + ", ".join(f"{name} {n}" for name, n in report.risk_bands.items()))
    return "\n".join(lines)


def _table(column: str, names: list[str], figures: list[LabelFigures]) -> list[str]:
    """A precision table's lines: its header, then one row per label or rule."""
    width = max(24, *map(len, names)) if names else 24
    rows = [f"  {column:<{width}} {'flags':>6} {'reviewed':>9} {'right':>6} {'wrong':>6} {'precision':>10}"]
    for name, f in zip(names, figures):
        precision = "-" if f.precision is None else f"{f.precision:.2f}"
        rows.append(f"  {name:<{width}} {f.flags:>6} {f.reviewed:>9} {f.right:>6} {f.wrong:>6} {precision:>10}")
    return rows
