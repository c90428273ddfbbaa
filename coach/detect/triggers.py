"""Trigger phrases in what a party said: explainable rules, each signal with its evidence.

Each rule is a regular expression over one party's final transcript, with optional vetoes for the
hard negatives ("your manager helped me last week" is not a request for one; "I don't want to
cancel" is not a churn threat). The matched words are the evidence shown to QA and team leads.

Rules catch the phrasings a contact centre hears every day; the indirect ones ("is there anyone
who can actually do something?") are caught by meaning (``coach/detect/exemplars.py``): the
detector takes both, a rule first, and a label's veto silences both.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from coach.detect.exemplars import ExemplarMatch
from coach.events import SignalEvent, TranscriptEvent

RULE_SCORE = 0.8


@dataclass(frozen=True)
class Rule:
    label: str
    speaker: str  # "customer" or "agent"
    pattern: re.Pattern[str]
    veto: re.Pattern[str] | None = None

    def vetoed(self, text: str) -> bool:
        return self.veto is not None and self.veto.search(text) is not None

    def find(self, text: str) -> re.Match[str] | None:
        """The words that fire this rule, unless its veto says otherwise."""
        match = self.pattern.search(text)
        return None if match is None or self.vetoed(text) else match


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


SENIOR = r"(?:supervisor|manager|team ?lead(?:er)?|boss|superior|someone (?:more )?senior|head of [a-z ]+)"

RULES: tuple[Rule, ...] = (
    Rule("escalation_request", "customer", _rx(
        rf"\b(?:speak|talk|put me through|transfer me|get me|give me|i want|i'd like|i would like|i need|let me)\b[^.?!]{{0,30}}\b{SENIOR}",
        r"\b(?:anyone|anybody|someone|somebody)\b[^.?!]{0,25}\b(?:above you|higher(?: up)?|more senior|in charge)\b",
        r"\bescalate (?:this|it|my)\b|\b(?:want|like|need) (?:this|it) escalated\b",
        r"\bwhoever\b[^.?!]{0,30}\b(?:signs? off|is in charge|can authori[sz]e|makes? the decisions?)\b",
    ), veto=_rx(rf"\b{SENIOR}\b[^.?!]{{0,15}}\b(?:called|helped|was|said|told|phoned|emailed|sorted)\b")),
    Rule("churn_threat", "customer", _rx(
        r"\b(?:i'm|i am|i'll be|we're|we are|i will be) (?:cancel+ing\b(?! (?:the|my) (?:appointment|order|booking))|closing (?:my|the|our) account|leaving (?:you|this (?:company|bank|provider|network))|switching (?:providers?|suppliers?|banks?|to))",
        r"\bcancel+(?:ing)? (?:my|the|this|our) (?:account|contract|subscription|service|policy|membership|plan)\b",
        r"\btak(?:e|ing) my (?:business|money|custom) (?:elsewhere|somewhere else)\b",
        r"\b(?:switch|switching|move|moving|go|going)\b[^.?!]{0,20}\b(?:another|a different|a new|a cheaper) (?:provider|supplier|bank|company|carrier|network|insurer|airline)\b",
        r"\b(?:ready|about|going) to (?:sign (?:up )?with|switch|leave you|cancel)\b|\bready to sign it\b",
    ), veto=_rx(r"\b(?:don't|do not|not) (?:want|going|trying|planning) to (?:cancel|leave|switch)\b")),
    Rule("repeat_contact", "customer", _rx(
        r"\b(?:this is|it's|that's) (?:the|my) (?:second|third|fourth|fifth|sixth|\d+(?:st|nd|rd|th)) (?:time|call)\b",
        r"\b(?:already|i've) (?:called|rung|rang|phoned|explained|told|been through|spoken|chatted|contacted|reported)\b",
        r"\b(?:called|rang|phoned|contacted) (?:you|about this|before|last (?:week|month)|yesterday|on (?:monday|tuesday|wednesday|thursday|friday))\b",
        r"\b(?:called|rang|phoned) (?:about )?(?:this|it)[^.?!]{0,20}\bago\b",
        r"\bstart(?:ing)? (?:all )?(?:over|again|from scratch)\b|\brepeat(?:ing)? myself\b",
        r"\b(?:promised|told me|said) (?:someone|somebody|you|they) would (?:call|ring|phone|get back)\b",
    )),
    Rule("abuse", "customer", _rx(
        r"\b(?:you|you people|you lot|your company|your staff|this company)\b[^.?!]{0,20}\b(?:idiots?|morons?|useless|incompetent|stupid|pathetic|clowns|liars|thieves|crooks|scammers|a joke)\b",
        r"\b(?:f\w*ck (?:you|off)|screw you|go to hell|shut up|piss off|bloody idiot|damn idiots?)\b",
    )),
    Rule("legal_or_public_threat", "customer", _rx(
        # a lawyer mentioned is not a threat ("my lawyer is handling the estate"): it needs the framing of one
        r"\b(?:hear from|speak to|talk to|call|calling|contact|contacting|get|getting|involve|involving|bring in|letter from|forward this to) (?:my|a|our) (?:lawyer|solicitor|attorney)s?\b",
        r"\b(?:lawyer|solicitor|attorney)s? (?:will|is going to|are going to|'ll)\b|\b(?:lawyer|solicitor|attorney)s? involved\b",
        r"\blegal action\b|\b(?:sue|suing)\b|\bsmall claims\b|\bsee you in court\b",
        r"\b(?:ombudsman|regulator|trading standards|better business bureau|attorney general|consumer (?:board|protection|rights))\b",
        r"\b(?:complaint|report(?:ing)? (?:you|this)) (?:with|to) the\b",
        r"\b(?:post|posting|put|putting|share|sharing|write|writing|leave|leaving)\b[^.?!]{0,30}\b(?:online|everywhere|social media|twitter|facebook|tiktok|reddit|trustpilot|yelp|a review)\b",
        r"\b(?:go|going) to the (?:press|papers|news|media)\b",
    )),
    Rule("not_listening", "customer", _rx(
        r"\b(?:you're not|you are not|you aren't|nobody's|no one is|you're not even) (?:listening|hearing)\b",
        r"\bnot hearing a word\b|\bwould you (?:just )?listen\b|\bare you even listening\b",
        r"\blet me (?:finish|speak|talk)\b|\bi (?:wasn't|was not|haven't|have not) finished\b",
        r"\b(?:stop|quit) (?:talking|interrupting|reading|explaining|lecturing)\b",
        r"\b(?:don't|do not) need (?:the|a|your|this) (?:whole |full |long )?(?:explanation|lecture|speech|script|story|history lesson)\b",
        r"\b(?:read|reading) (?:me )?(?:from )?(?:a|the|your) script\b",
    )),
    Rule("no_manager_lie", "agent", _rx(
        r"\bthere(?:'s| is) (?:no|nobody|no one|not anyone)\b[^.?!]{0,15}\b(?:manager|supervisor|higher|above me|more senior)\b",
        r"\b(?:i'm|i am) the (?:highest|most senior|top|last)\b[^.?!]{0,25}\b(?:go|get|level|person|there is)\b",
        r"\b(?:we|i) (?:don't|do not) have (?:a|any) (?:manager|supervisor)s?\b",
        r"\b(?:no one|nobody) (?:above|higher than|senior to) me\b",
    )),
    Rule("dismissive_phrase", "agent", _rx(
        r"\bcalm down\b",
        r"\b(?:that's|that is|it's|it is) (?:our|the|company) policy\b",
        r"\bthere(?:'s| is) nothing (?:more )?(?:i|we) can do\b|\bnothing (?:more )?i can do\b",
        r"\b(?:that's|that is|it's) not my (?:department|job|problem|responsibility)\b",
        r"\b(?:my|our) hands are tied\b",
        r"\b(?:isn't|is not|aren't|are not|not) something (?:we|i) (?:deal with|handle|do)\b",
        r"\byou(?:'ll|'d| will| would) (?:have|need) to\b[^.?!]{0,30}\b(?:call|contact|ring|speak to|go to|write to|take it up with)\b",
        r"\byou(?:'d| would) need (?:the|a|another) [a-z ]{0,20}(?:team|department)\b",
    )),
    Rule("blame_language", "agent", _rx(
        r"\byou (?:should|shouldn't|should not|could) have\b",
        r"\byou (?:didn't|did not|failed to|forgot to|never) (?:submit|send|read|fill|pay|check|tell|follow|sign|provide|update|give|notify|register|keep)\w*\b",
        r"\byou're (?:wrong|mistaken|confused)\b|\byou are (?:wrong|mistaken)\b",
        r"\b(?:that's|it's|this is) (?:your|on your) (?:fault|problem|responsibility|mistake)\b",
        r"\byou must have (?:misread|misunderstood|missed|made)\b",
        r"\bif you had (?:read|checked|called|submitted|paid)\b",
    )),
)


def rule_flags(speaker: str, text: str, rules: tuple[Rule, ...] = RULES) -> bool:
    """True when a phrase rule would flag this line of ``speaker``."""
    return any(r.speaker == speaker and r.find(text) for r in rules)


class TriggerDetector:
    """Transcripts in, trigger signals out: one per label per utterance, a rule's or an exemplar's.

    Interims are read too, so a trigger fires as soon as its words are heard, not when the party has
    finished; a label signalled on an interim is not signalled again by the utterance's final.
    """

    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        self.rules = rules
        self._vetoing = {rule.label: rule for rule in rules if rule.veto is not None}
        self._fired: dict[str, set[str]] = {}  # labels signalled so far, per open utterance
        self._closed: deque[str] = deque(maxlen=64)  # utterances whose final was read: late interims are stale

    def on_transcript(self, event: TranscriptEvent, matches: list[ExemplarMatch] = ()) -> list[SignalEvent]:
        if event.id in self._closed:
            return []
        fired = self._fired.setdefault(event.id, set())
        signals = [s for s in self._detect(event, matches) if s.label not in fired]
        fired.update(s.label for s in signals)
        if event.final:  # the utterance is over
            del self._fired[event.id]
            self._closed.append(event.id)
        return signals

    def _detect(self, event: TranscriptEvent, matches: list[ExemplarMatch]) -> list[SignalEvent]:
        signals = []
        for rule in self.rules:
            if rule.speaker != event.speaker:
                continue
            match = rule.find(event.text)
            if match is None:
                continue
            signals.append(SignalEvent(event.at, rule.label, event.speaker, event.start, event.end, RULE_SCORE,
                                       match.group(0).strip()))
        fired = {s.label for s in signals}
        for m in matches:
            rule = self._vetoing.get(m.label)
            if m.label in fired or (rule is not None and rule.vetoed(event.text)):
                continue
            fired.add(m.label)
            signals.append(SignalEvent(event.at, m.label, event.speaker, event.start, event.end, m.score, m.evidence))
        return signals
