"""``/api/playbook``: the playbook in use, whether the last edit of its file was taken, a sentence
tried against it ("would this fire, and why?"), and each signal's precision from QA's reviews. The
admin page (``/playbook``) reads these."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from coach.detect.triggers import MEANING, TriggerDetector, built_in
from coach.defaults import TIMING_RULES
from coach.server.auth import Principal
from coach.server.deps import Caller, State
from coach.textguard import MAX_TEXT_CHARS

router = APIRouter(prefix="/api/playbook")


def _leads(who: Principal) -> None:
    if not who.sees_every_call:
        raise HTTPException(403, "lead, qa or admin tokens only")


@router.get("")
async def active_playbook(server: State, who: Caller) -> dict:
    """The playbook calls start with now: its signals and prompts, its file, when it was loaded, and
    the problems of the file's last edit if it was refused (the one in use stays)."""
    _leads(who)
    watch = server.playbook
    return {"path": str(watch.path), "loaded_at": round(watch.loaded_at, 3), "error": watch.error,
            **watch.active.model_dump(mode="json", exclude_none=True, by_alias=True),
            "built_in": _built_in_rules(watch.active.off())}


def _built_in_rules(off: frozenset[str]) -> list[dict]:
    """Every built-in rule a playbook may switch off, whether it is on, and an example line of each."""
    book = built_in()
    out = [{"id": p.id, "label": p.label, "speaker": p.speaker, "kind": "veto" if p.veto else "pattern",
            "on": p.id not in off, "example": p.fires[0] if p.fires and not p.veto else None,
            "silences": p.fires[0] if p.fires and p.veto else None, "misfires_on": p.misfires[0] if p.misfires else None,
            "note": p.note or None} for p in book.patterns]
    out += [{"id": f"{label}.{MEANING}", "label": label, "speaker": speaker, "kind": "meaning", "on": f"{label}.{MEANING}" not in off,
             "example": None, "note": "the trigger heads: lines like the label's, by meaning"} for label, speaker in book.labels]
    out += [{"id": rule_id, "label": rule_id.split(".")[0], "speaker": "call" if rule_id.startswith("dead_air") else "agent",
             "kind": "timing", "on": rule_id not in off, "example": None, "note": None} for rule_id in TIMING_RULES]
    return out


class Trial(BaseModel):
    speaker: Literal["agent", "customer"]
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


@router.post("/try")
async def try_sentence(body: Trial, server: State, who: Caller) -> dict:
    """What one line of ``speaker`` would raise, and why: the built-in phrase rules (and their vetoes),
    the trigger heads by meaning (when the text models are loaded), and the playbook's own signals;
    each with the prompt it would show."""
    _leads(who)
    book = server.playbook.active
    off = book.off()
    found = []
    everything = {rule.label: rule for rule in built_in().rules()}  # nothing switched off
    detector = TriggerDetector(off)
    vetoing = {rule.label: rule for rule in detector.rules}
    for rule in detector.rules:
        if rule.speaker != body.speaker or (hit := rule.search(body.text)) is None:
            continue
        match, rule_id = hit
        veto = rule.vetoed(body.text)
        why = None if veto is None else f"its veto {veto} matched (a taken-back or negated use)"
        if veto is None and (silenced := everything[rule.label].vetoed(body.text)) is not None:
            why = f"fires because its veto {silenced} is switched off in this playbook"
        found.append({"label": rule.label, "by": "built-in phrase rule", "rule": rule_id, "evidence": match.group(0).strip(),
                      "fires": veto is None, "why_not": why})
    patterns = {p.id: p for p in built_in().patterns}
    for rule_id in sorted(off):  # what a pattern switched off would have said
        pattern = patterns.get(rule_id)
        if pattern is not None and not pattern.veto and pattern.speaker == body.speaker and (match := pattern.regex.search(body.text)):
            found.append({"label": pattern.label, "by": "built-in phrase rule", "rule": rule_id, "evidence": match.group(0).strip(),
                          "fires": False, "why_not": "switched off in this playbook"})
    text_models, meaning = server.registry.services.text, server.registry.services.meaning
    if text_models is not None:  # one read: the built-in heads, and the playbook's own examples
        reading = await text_models.read(body.speaker, body.text, meaning)
        own = {bank.label for bank in meaning}
        for m in reading.matches:
            rule_id = f"{m.label}.examples" if m.label in own else f"{m.label}.{MEANING}"
            veto = None if m.label in own or m.label not in vetoing else vetoing[m.label].vetoed(body.text)
            why = "switched off in this playbook" if rule_id in off else None if veto is None else f"its veto {veto} matched"
            found.append({"label": m.label, "by": "playbook examples (meaning)" if m.label in own else "meaning (trigger heads)",
                          "rule": rule_id, "evidence": m.evidence, "fires": why is None, "why_not": why})
    for signal in book.custom_signals():
        if signal.hears(body.speaker) and (phrase := signal.match(body.text)) is not None:
            said = signal.kind == "said"
            found.append({"label": signal.label, "by": "playbook phrase" if said else "playbook phrase (counts as said in time)",
                          "rule": f"{signal.label}.{'phrase' if said else 'not_said'}", "evidence": phrase.text, "fires": said,
                          "why_not": None if said else f"a not_said signal: saying it within {signal.within:g} s keeps it quiet"})
    for item in found:
        rule = book.prompts.get(item["label"])
        item["prompt"] = None if rule is None or not item["fires"] else {"kind": rule.kind, "title": rule.title}
    return {"speaker": body.speaker, "signals": found}


@router.get("/precision")
async def precision(server: State, who: Caller) -> list[dict]:
    """Each signal's flags, QA verdicts and precision (right / reviewed), as `coach report` gives them,
    and under ``rules`` the same for each rule that raised them."""
    _leads(who)
    from coach.report import build_report

    report = (await server.in_store(build_report, server.store)).to_dict()
    return [{**label, "rules": [r for r in report["rules"] if r["label"] == label["label"]]} for label in report["labels"]]
