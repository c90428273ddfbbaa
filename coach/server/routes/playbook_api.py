"""``/api/playbook``: the playbook in use, whether the last edit of its file was taken, a sentence
tried against it ("would this fire, and why?"), and each signal's precision from QA's reviews. The
admin page (``/playbook``) reads these."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from coach.detect.triggers import RULES
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
            **watch.active.model_dump(mode="json", exclude_none=True, by_alias=True)}


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
    found = []
    for rule in RULES:
        if rule.speaker != body.speaker:
            continue
        match = rule.pattern.search(body.text)
        if match is not None:
            vetoed = rule.vetoed(body.text)
            found.append({"label": rule.label, "by": "built-in phrase rule", "evidence": match.group(0).strip(), "fires": not vetoed,
                          "why_not": "its veto matched (a taken-back or negated use)" if vetoed else None})
    text_models, meaning = server.registry.services.text, server.registry.services.meaning
    if text_models is not None:  # one read: the built-in heads, and the playbook's own examples
        reading = await text_models.read(body.speaker, body.text, meaning)
        own = {bank.label for bank in meaning}
        for m in reading.matches:
            found.append({"label": m.label, "by": "playbook examples (meaning)" if m.label in own else "meaning (trigger heads)",
                          "evidence": m.evidence, "fires": True, "why_not": None})
    for signal in book.custom_signals():
        if signal.hears(body.speaker) and (phrase := signal.match(body.text)) is not None:
            found.append({"label": signal.label, "by": "playbook phrase" if signal.kind == "said" else "playbook phrase (counts as said in time)",
                          "evidence": phrase.text, "fires": signal.kind == "said", "why_not": None if signal.kind == "said" else
                          f"a not_said signal: saying it within {signal.within:g} s keeps it quiet"})
    for item in found:
        rule = book.prompts.get(item["label"])
        item["prompt"] = None if rule is None or not item["fires"] else {"kind": rule.kind, "title": rule.title}
    return {"speaker": body.speaker, "signals": found}


@router.get("/precision")
async def precision(server: State, who: Caller) -> list[dict]:
    """Each signal's flags, QA verdicts and precision (right / reviewed), as `coach report` gives them."""
    _leads(who)
    from coach.report import build_report

    report = await server.in_store(build_report, server.store)
    return report.to_dict()["labels"]
