"""Trigger phrases in what a party said: explainable rules, each signal with its evidence.

Each rule is a regular expression over one party's final transcript, with optional vetoes for the
hard negatives ("your manager helped me last week" is not a request for one; "I don't want to
cancel" is not a churn threat) and for the apologies and corrections of a call that use a trigger's
own words ("I shouldn't have said there's no supervisor", "sorry I called you a clown"). The matched
words are the evidence shown to QA and team leads.

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


# a party taking back what they said ("sorry I called you a clown"): vetoes the trigger in its words
TAKEN_BACK = r"\b(?:sorry|apologi[sz]e|shouldn't have|shouldnae have|should not have|didn't mean to)\b"
SENIOR = r"(?:supervisor|manager|team ?lead(?:er)?|boss|superior|gaffer|director|someone (?:more )?senior|(?:somebody|someone) in management|head of [a-z ]+|complaints (?:lead|manager))"

RULES: tuple[Rule, ...] = (
    Rule("escalation_request", "customer", _rx(
        rf"\b(?:speak|talk|put me through|transfer me|connect me|get me|give me|i want|i'd like|i would like|i need|let me|a word with|put)\b[^.?!]{{0,30}}\b{SENIOR}",
        r"\b(?:anyone|anybody|someone|somebody)\b[^.?!]{0,25}\b(?:above you|higher(?: up)?|more senior|in charge)\b",
        r"\bescalate (?:this|it|my)\b|\b(?:want|like|need) (?:this|it) escalated\b",
        r"\b(?:whoever|the person|someone|somebody|the one)\b[^.?!]{0,30}\b(?:signs?(?: \w++){0,3} off|(?:is|'s) in charge|can authori[sz]e|makes? the decisions?|has the authority)\b",
        rf"\b(?:go|goes|going|pass|send|take|refer|bring)\b(?: (?:it|this|that))?(?: up)? to (?:your|a|the) {SENIOR}|{SENIOR}\b[^.?!]{{0,20}}\b(?:rings?|calls?|phones?) me\b",
        r"\b(?:further|higher) up\b(?! the (?:list|queue))|\bnext level\b|\bbeyond you\b|\bhighest level\b|\bescalation (?:route|process|path)\b|\bsend (?:it|this) up\b",
        r"\bwho(?:'s| is) your (?:boss|gaffer|manager|supervisor|superior|line manager)\b",
        rf"\b{SENIOR}[,.]? please\b|\b(?:pass|put|send|bump) me (?:up|higher)\b|\bup the (?:chain|ladder)\b",
    ), veto=_rx(rf"\b{SENIOR}\b[^.?!]{{0,15}}\b(?:called|helped|was|said|told|phoned|emailed|sorted)\b",
                 rf"\b(?:don't|do not) need (?:a|the|your|to speak to (?:a|the|your)) {SENIOR}", rf"\b(?:thank|thanks|thank-you)\b[^.?!]{{0,30}}\b{SENIOR}",
                 rf"\bmy (?:line |own )?{SENIOR}", r"\bno need to escalate\b|\b(?:said|promised) (?:they|he|she)(?:'d| would) escalate\b")),
    Rule("churn_threat", "customer", _rx(
        r"\b(?:i'm|i am|i'll be|we're|we are|i will be) (?:cancel+ing\b(?! (?:the|my) (?:appointment|order|booking))|leaving (?:you|this (?:company|bank|provider|network))|switching (?:providers?|suppliers?|banks?|to))",
        r"\b(?:cancel+(?:ing)?|terminat(?:e|ing)|unsubscrib(?:e|ing)(?: from)?|clos(?:e|ing)|end(?:ing)?|stop(?:ping)?) (?:my|the|this|our|your|all (?:my|our|the)|the whole|your whole) (?:accounts?|contract|subscription|service|policy|membership|plan|broadband|mortgage|agreement|donations?)\b",
        r"\b(?:i'm not|i am not|we're not|we are not|i won't be|we won't be|i will not be|we will not be) renewing\b|\b(?:i|we) (?:won't|will not) (?:be )?renew\b|\bwhy (?:should|would) i stay\b",
        r"\b(?:i'm|i am|we're|we are) leaving\b(?=[.,!?]| anyway| you\b| for good| then)",
        r"\b(?:go|going|shop|shopping|buy|buying|sign(?:ing)? up|look(?:ing)?|get|getting|take|taking)\b[^.?!]{0,25}\b(?:somewhere else|elsewhere|someone else|somebody else)\b",
        r"\b(?:go|going|shop|shopping|buy|buying|sign(?:ing)? up|look(?:ing)?(?: for)?|getting|using|transfer+(?:ing)?)\b[^.?!]{0,25}\b(?<!from )(?:another|a different|other) (?:company|firm|provider|supplier|store|shop|installer|insurer|bank|school|university|app|site|website|carrier|agency|retailer|courier|operator|network|service)s?\b",
        r"\b(?:my|the) last (?:order|one|purchase|booking|ticket|pass)\b[^.?!]{0,30}\b(?:with|from) (?:you|your)\b",
        r"\btak(?:e|ing) my (?:business|money|custom) (?:elsewhere|somewhere else)\b",
        r"\b(?:switch(?:ing|ed)?|mov(?:e|ing)|go(?:ing)?|jump(?:ing)?|shift(?:ing)?|transfer+(?:ing)?|tak(?:e|ing))\b[^.?!]{0,40}\b(?<!from )(?:another|a different|a new|a cheaper|one of the other|the other) (?:provider|supplier|bank|company|carrier|network|insurer|airline|operator|telco|lender|dealer(?:ship)?|credit union|gym)s?\b",
        r"\b(?:ready|about|going) to (?:sign (?:up )?with|switch|leave you|cancel)\b",
        r"\b(?:go|going|went) (?:to|with) (?:one of )?(?:the others|your competitors?|the competition(?! (?:and|commission|authority|bureau|watchdog|regulator|tribunal|ombudsman))|someone else|somebody else)\b|\bjump(?:ing)? ship\b",
        r"\b(?:move|moving|take|taking|shift|shifting|transfer+(?:ing)?) (?:my|our|the|everything|all)\b[^.?!]{0,30}\b(?:elsewhere|somewhere else|to (?:a|another) (?:bank|credit union|provider|supplier))\b",
        r"\b(?:i'm|i am|we're|we are) (?:done|finished|through) with (?:you|yous|your company|this (?:bank|company|provider|network|place|outfit))\b",
        r"\bnever (?:buy|shop|fly|bank|deal|book|order|stay|use)(?:ing)? (?:anything )?(?:from|with|at)? ?(?:you|this|your)\b[^.?!]{0,25}\bagain\b",
        r"\b(?:you've|you have|you just|you'll|you will|you're going to|you're about to) (?:lose|lost|losing) (?:a|me as a|my|our) (?:customer|business|custom)\b",
        r"\bport(?:ing)? (?:all )?(?:my|our|the) numbers?\b|\bpac code\b|\bcancell?ations? (?:line|department|team)\b|\b(?:through|over) to (?:cancell?ations|retentions)\b|\bretention (?:offer|team|department)\b",
        r"\b(?:is|are|'s|'re) (?:getting|having|going to get) my (?:money|business|custom)\b|\bmy (?:money|business|custom)(?:'ll| will)? (?:be )?going (?:down the road )?to\b",
        r"\bgiv(?:e|ing) (?:my|our|the) (?:custom|business|money)\b[^.?!]{0,15}\bto\b|\b(?:(?:one foot|halfway|half way|already) out the door|vote with my feet|shop around)\b",
        r"\b(?:i'm|i am|we're|we are) (?:off|gone|out)(?=\s*(?:[.!?]|$))|\b(?:or|then|and) (?:i|we)(?:'ll| will)? walk\b|\babout to walk\b|\bthat's (?:us|me) (?:finished|done|gone)\b",
        r"\b(?:i'll|i will|i'm|i am|we'll|we will|we're|i'd|gonna|going to)\b[^.?!]{0,40}\b(?<!from )(?:a different|another|some other) (?:company|firm|provider|supplier|store|shop|installer|insurer|bank|school|university|website|carrier|agency|retailer|courier|operator|network|lender|airline|gym|practice|nursery|garage|vet|optician|dentist|dealer|broker)\b",
        # round 4, from the misses on tune*.jsonl: ultimatums and the signs of a switch already under way
        r"\b(?:can|could|may as well) have my (?:account|business|custom|money|contract)\b(?! (?:number|details|reference|no\b))|\bout to tender\b",
        r"\b(?:give me|is there)(?: one| a| any)?(?: good)? reasons?\b[^.?!]{0,30}\b(?:to (?:stay|stick (?:around|with (?:you|it|this))|keep (?:you|paying))|not to (?:take|switch|leave|move))\b",
        r"\b(?:i|we)(?:'ll| will) be gone\b(?!\s+(?:for|until|till|from|on|over|between|most|all|a few|away|abroad))|\bnot tied to you\b|\b(?:i've|i have) got (?:other )?options\b(?!\s*(?:for|on|about|here))",
        r"\bor (?:the|my|this) (?:account|card|policy|contract|membership) gets (?:closed|cancell?ed)\b|\b(?:card|account)(?:'s| is) going in the bin\b",
        r"\bswitching (?:form|pack)\b|\b(?:quote|offer|deal|switch\w*)\b[^.?!]{0,20}\bin another tab\b|\bin no (?:rush|hurry) to (?:sign|renew|stay)\b|\bno rush to (?:sign|renew|stay)\b",
        r"\b(?:go|going) with (?:someone|somebody|a company|a firm|people) (?:who|that) (?:actually|can|will|does|do)\b|\b(?:goes|go|going) to (?:another|a different|a cheaper|one of the other|the other) (?:provider|supplier|bank|company|carrier|network|insurer|lender|operator)s?\b",
        r"\bsign(?:ed|ing)? (?:up )?with (?:someone|somebody) else\b|\b(?:refinanc\w+|pay(?:ing)?(?: more| less)?|bank(?:ing)?|spend(?:ing)?)\b[^.?!]{0,15}\belsewhere\b",
        r"\b(?:won't|will not|'ll not) (?:be keeping|see me|have me)\b|\b(?:won't|will not) be with you\b|\bhow (?:do )?i (?:leave|get out)\b|\bterminate (?:it|the|my)\b",
        r"\b(?:exit|early termination|redemption|early repayment) (?:fee|charge|penalty)\b|\bnotice period\b|\bget out early\b|\bcooling[- ]off\b|\bthis (?:is )?my notice\b",
    ), veto=_rx(r"\b(?:don't|do not|not) (?:want|going|trying|planning) to (?:cancel|leave|switch|close|move)\b",
                 r"\b(?:i'm|i am|we're|we are) not (?:leaving|cancell?ing|switching|going anywhere)\b")),
    Rule("repeat_contact", "customer", _rx(
        r"\b(?:this is|it's|that's) (?:the|my) (?:second|third|fourth|fifth|sixth|\d+(?:st|nd|rd|th)) (?:time|call)\b",
        r"\b(?:already|i've) (?:called|rung|rang|phoned|explained|told|been through|spoken|chatted|contacted|reported|raised|logged|lodged|complained|emailed)\b(?! me\b)|\b(?:already|i've|i have) written (?:to (?:you|your|the)|in\b|twice|before|several|three|a (?:letter|complaint)|an email)|\balready written\b",
        r"\b(?:raised|logged|log|lodged|reported|filed|complained|flagged|opened a case|brought (?:this|it) up|did the (?:whole )?complaint|emailed|was in touch|spoke to (?:someone|somebody|a|your)|went through|had a chat|called in|chatted)\b[^.?!]{0,40}\b(?:already|before|twice|three times|ago|since|back in|yesterday|a fortnight|last (?:week|month|time|monday|tuesday|wednesday|thursday|friday|saturday|sunday)|on (?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)|in (?:january|february|march|april|may|june|july|august|september|october|november|december)|at the start of)\b",
        r"\bhow many (?:more )?times (?:do|have|must|will|am) i\b|\b(?:second|third|fourth|fifth|\d+(?:st|nd|rd|th)) (?:call|time) (?:today|this week|this month)\b|\bcall number \w+\b|\bit's me again\b",
        r"\b(?:like|as) i (?:said|told|explained)(?: it)? to (?:your|the|a|whoever)\b|\bi gave (?:all )?(?:this|the (?:full |whole )?story|all the details|it all) to\b",
        r"\bno record of (?:my|the|our) (?:call|complaint|email|visit|conversation|report)\b|\b(?:is there not|isn't there|don't you have|do you not (?:have|keep)) (?:a |any )?notes?\b",
        r"\b(?:i'm|i am) (?:calling|ringing|phoning) back\b|\b(?:this is a|i'm|i am|just) follow(?:ing)?[ -]up\b|\bfollowing up on\b",
        r"\b(?:contacting|chasing|calling|ringing|phoning|emailing|following up)\b[^.?!]{0,30}\b(?:since|for (?:weeks|months|ages|days))\b|\bi'm chasing\b|\bi keep having to\b",
        r"\b(?:the )?last (?:two|three|few|couple of) times\b|\btold me\b[^.?!]{0,40}\b(?:would|'d|was going to) be (?:fixed|sorted|done|resolved|refunded)\b",
        r"\b(?:called|rang|phoned|contacted) (?:you|about this|before|last (?:week|month)|yesterday|on (?:monday|tuesday|wednesday|thursday|friday))\b",
        r"\b(?:called|rang|phoned|logged|reported|raised|emailed)\b[^.?!]{0,30}\bon the \d+(?:st|nd|rd|th)?\b",
        r"\b(?:called|rang|phoned) (?:about )?(?:this|it)[^.?!]{0,20}\bago\b",
        r"\bstart(?:ing)? (?:all )?(?:over|again|from scratch)\b|\brepeat(?:ing)? myself\b",
        r"\b(?:promised|told me|said) (?:someone|somebody|you|they|he|she)(?: would| was going to|'d) (?:call|ring|phone|get back|sort|fix)\b",
        r"\bsame (?:issue|problem|fault|charge|bill|thing) as (?:before|last (?:time|month|week))\b|\b(?:i'm )?back again\b|\bnot this again\b",
        r"\b(?:previous|old|existing|original) (?:case|ticket|reference|complaint)\b|\bshould be on (?:the|my) (?:account|file|notes|system)\b|\b(?:got|have) (?:it|that|this) on file\b",
        r"\bpassed (?:round|around|from pillar to post)\b|\btimes already\b|\bgoing on (?:since|for (?:weeks|months|ages))\b",
        r"\b(?:he|she|they|someone|somebody)(?:'d| would) (?:call|ring|phone|get back to) me\b[^.?!]{0,20}\b(?:didn't|never|did not|hasn't|haven't)\b",
        r"\bbeen (?:on|onto|on to|in touch with|on the phone to|through this with) (?:you|yous|your)\b|\bbeen through this\b",
        r"\bi keep (?:ringing|calling|phoning|chasing|contacting|emailing)\b|\b(?:week|month|day) after (?:week|month|day)\b",
        r"\b(?:every|each) (?:single )?(?:week|month|day|time) (?:i|we) (?:ring|call|phone|chase|contact)\b",
        r"\bhad this (?:exact |same |very )?conversation\b|\b(?:with|to|told) (?:the|your) (?:last|previous) (?:person|people|agent|advisor|guy|lady|one|\w+ people)\b",
    ), veto=_rx(r"\bto say (?:thanks|thank you)\b|\byou were (?:really |so |very )?(?:quick|great|helpful|brilliant|lovely)\b",
                 r"\bfirst time\b|\bnever (?:called|rung|rang|phoned|contacted)\b",
                 rf"{TAKEN_BACK}[^.?!]{{0,25}}\bcall(?:ed|ing) you\b")),
    Rule("abuse", "customer", _rx(
        r"\b(?:you|you people|you lot|your company|your staff|this company)\b(?:(?!\b(?:think|thinks|thought|treat\w*+) (?:i|i'm|me)\b)[^.?!]){0,20}\b(?:idiots?|morons?|useless|incompetent|stupid|pathetic|clowns|liars|thieves|crooks|scammers|a joke)\b",
        r"\b(?:f\w*ck (?:you|off)|screw you|go to hell|shut up|piss off|bloody idiot|damn idiots?)\b",
        r"\byou(?:'re| are)?(?: (?:a|an|such a|right|complete|total|bloody|(?>f\w*?cking)|little|stupid|useless|patronising|patronizing)){0,3} (?:eejit|git|shit|twat|muppet|tosser|wanker|plonker|prat|numpty|dickhead|arsehole|asshole|bastard|jobsworth|imbecile|cretin)s?\b",
    ), veto=_rx(rf"{TAKEN_BACK}[^.?!]{{0,20}}\b(?:call(?:ed|ing) you|swear(?:ing)? at you|snapp(?:ed|ing) at you)\b")),
    Rule("legal_or_public_threat", "customer", _rx(
        # a lawyer mentioned is not a threat ("my lawyer is handling the estate"): it needs the framing of one
        r"\b(?:hear from|speak to|talk to|call|calling|contact|contacting|get|getting|involve|involving|bring in|letter from|forward this to) (?:my|a|our) (?:lawyer|solicitor|attorney)s?\b",
        r"\b(?:lawyer|solicitor|attorney)s? (?:will|is going to|are going to|'ll)\b|\b(?:lawyer|solicitor|attorney)s? involved\b",
        r"\blegal action\b|\b(?:sue|suing)\b|\bsmall claims\b|\bsee you in court\b|\b(?:take|taking) (?:you|this|your company|the company)\b[^.?!]{0,15}\bto court\b",
        r"\b(?:ombudsman|regulator|trading standards|better business bureau|attorney general|consumer (?:board|protection|rights)|fair trading|watchdog|ofgem|ofcom|ofwat|cfpb|accc|ftc|fcc)\b",
        r"\b(?:complaint|report(?:ing)? (?:you|this)) (?:with|to) the\b",
        r"\b(?:post|posting|put|putting|share|sharing|write|writing|leave|leaving)\b[^.?!]{0,30}\b(?:online|everywhere|social media|twitter|facebook|tiktok|reddit|trustpilot|yelp|a review)\b",
        r"\b(?:go|going) to the (?:press|papers|news|media)\b|\btell (?:the whole (?:country|world|town)|everyone|everybody|all my (?:friends|followers))\b",
        r"\b(?:ring|call|calling|contact|write to|tell|go to|be on)\b[^.?!]{0,25}\b(?:radio|phone-in|call-in|news|papers|newspapers?|journalists?|reporters?|tv(?! (?:package|box|licen[cs]e|channels?|service|subscription|bundle|plan|guide|remote|signal|aerial)))\b|\b(?:is|'s|know|knows) a (?:journalist|reporter)\b",
        r"\b(?:take|taking|go|going|report|reporting|complain|complaining|escalate|escalating|contact|contacting|ring|ringing|write|writing)\b(?: (?:this|it|you|the matter|this matter))? to (?:the |my )?[a-z' ]{0,30}\b(?:adjudicator|commissioner|authority|ombudsman|regulator|tribunal|mp)\b",
        r"\bico\b|\btio\b|\bbreach of contract\b|\bto my (?:lawyer|solicitor|attorney)\b|\bwrit(?:e|ing) (?:this|it) up\b|\brecording this (?:whole )?call\b|\btagging\b",
        r"\b(?:they'll|they will|everyone will|people will) (?:all )?know about (?:this|it|you)\b|\b(?:see|read|find) (?:this|it) on (?:tiktok|twitter|facebook|instagram|youtube|reddit|the news)\b",
        r"\b(?:they'll|they will|he'll|she'll|you'll|you will) be hearing (?:from|about) (?:me|this|the \w+)\b|\binformation commissioner\b|\b(?:to|contact|contacting|call|ring|ringing) my mp\b|\b(?:one|1|zero)[- ]star\b|\bgo(?:ing|es)? viral\b",
        r"\b(?:going|go|goes|put|putting|post|posting)\b[^.?!]{0,20}\bon (?:trustpilot|google|twitter|x|facebook|tiktok|reddit|yelp|instagram|youtube|mumsnet|social media|the internet)\b|\bfollowers\b|\btagging you\b|\btell the whole of\b",
    )),
    Rule("not_listening", "customer", _rx(
        r"\b(?:you're not|you are not|you aren't|nobody's|no one is|you're not even) (?:listening|hearing)\b",
        r"\bnot hearing a word\b|\bwould you (?:just )?listen\b|\bare you (?:even |actually |really )?(?:listening|paying attention)\b",
        r"\b(?:just|please) listen\b|\blisten to (?:me|what i)\b|\bget a word in\b|\bspare me\b",
        r"(?<!won't )(?<!doesn't )(?<!didn't )\blet me (?:finish|speak|talk)\b(?! to)|\bi (?:wasn't|was not|haven't|have not) finished\b",
        r"\b(?:stop|quit) (?:talking|interrupting|reading|explaining|lecturing|saying|telling me|repeating|quoting)\b|\bjust stop\b",
        r"\b(?:don't|do not) need (?:the|a|your|this) (?:whole |full |long )?(?:explanation|lecture|speech|script|story|history lesson)\b",
        r"\b(?:don't|do not) need (?:it|them|that|those|the \w+(?: and \w+)?) (?:read|explained|recited)\b",
        r"\b(?:read|reading) (?:me )?(?:from )?(?:a|the|your) script\b|\bheard the (?:spiel|script|speech|patter|drill|lecture)\b|\bknow the (?:spiel|script|speech|patter|lecture)\b",
        r"\b(?:a|the) question i (?:didn't|did not|never) ask\b|\bi (?:didn't|did not|never) say\b[^.?!]{0,40}\bi said\b",
        r"\bwhat i'm (?:actually )?(?:telling|saying to) you\b|\bgone off on (?:one|a tangent)\b|\bcut to the chase\b",
        r"\bbrick wall\b|\b(?:did|have|do) you (?:even |actually |just )?(?:take in|register|hear|catch|get|understand) (?:a word|anything|what) i\b",
        r"\b(?:you can't|you cannot|you don't) hear me\b|\bactually (?:hear|listen to) me\b|\b(?:is|are) (?:anyone|anybody) (?:even |actually |really )?listening\b",
        r"\b(?:don't|do not) (?:need|want) (?:the|a|your|this|any) (?:whole |full |long )?(?:history|explanation|lecture|speech|script|spiel|story|run-?down)\b",
        r"\b(?:skip|drop|never mind|forget)\b[^.?!]{0,25}\b(?:script(?:ed)?|speech|spiel|lecture|reading (?:it|them|that) out)\b",
        r"\bnot let(?:ting)? me (?:explain|speak|finish|talk|answer)\b|\b(?:allow|let) me (?:to )?(?:complete|finish|make) my point\b|\b(?:missed|missing) (?:my|the) point\b",
        r"\b(?:cut|cutting|talk(?:ing)?|speak(?:ing)?) (?:across|over) me\b|\bwait for (?:me|people|someone) to finish\b",
    )),
    Rule("no_manager_lie", "agent", _rx(
        r"\bthere(?:'s| is) (?:no|nobody|no one|not anyone)\b[^.?!]{0,15}\b(?:manager|supervisor|higher|above me|more senior)\b",
        r"\b(?:i'm|i am) the (?:highest|most senior|top|last)\b[^.?!]{0,25}\b(?:go|get|level|person|there is)\b",
        r"\b(?:we|i) (?:don't|do not) have (?:a|any) (?:manager|supervisor)s?\b",
        r"\b(?:no one|nobody) (?:above|higher than|senior to) me\b",
    ), veto=_rx(r"\b(?:shouldn't|should not|should never) have (?:said|told you)\b|\bi was wrong (?:to|about|when)\b|\b(?:got|had) (?:something|that|it) wrong\b",
                 r"\b(?:we|i) do have (?:a |an )?(?:manager|supervisor|team lead(?:er)?)s?\b|\bthere (?:are|is) (?:a |an )?(?:manager|supervisor|team lead(?:er)?)s?\b(?! (?:here|available|free))")),
    Rule("dismissive_phrase", "agent", _rx(
        r"\bcalm down\b|\brelax\b|\btake a (?:deep )?breath\b|\bno need to (?:shout|swear|raise your voice|get (?:upset|angry|worked up))\b",
        r"\b(?:that's|that is|it's|it is) (?:our|the|company) policy\b|\bpolicy(?:'s| is) policy\b|\brules are rules\b",
        r"\bthere(?:'s| is) nothing (?:more |else )?(?:i|we) can (?:do|tell you|say|offer)\b|\bnothing (?:more |else )?i can (?:do|tell you)\b",
        r"\b(?:that's|that is|it's) not my (?:department|job|problem|responsibility)\b",
        r"\b(?:my|our) hands are tied\b",
        r"\b(?:isn't|is not|aren't|are not|not) (?:something|anything) (?:we|i) (?:deal with|handle|do|can touch)\b",
        r"\byou(?:'ll|'d| will| would) (?:have|need) to\b[^.?!]{0,30}\b(?:call|contact|ring|speak to|go to|write to|take it up with|make do)\b",
        r"\byou(?:'d| would) need (?:the|a|another) [a-z ]{0,20}(?:team|department)\b|\byou(?:'ll|'d| will| would| can| could| may| might| must| should)?(?: (?:have|need|want|ought) to| just| better)? take (?:that|it|this) up with\b|(?:^|(?<=[.!?]\s))take (?:that|it|this) up with\b",
        r"\b(?:that's|that is|it's) (?:just )?(?:how|the way) (?:the system|it|things|the process|our system) works?\b|\bthat's final\b",
        r"\b(?:i|we) (?:can't|cannot|can not|won't|will not|am not going to) (?:change|override|bend|break) (?:the|our|that|it)\b|\bwait your turn\b",
        r"\bjust the messenger\b|\babove my pay ?grade\b|\bout of my hands\b|\bend of (?:story|discussion)\b|\b(?:that's|it's) (?:just )?(?:the way|how) it is\b",
        r"\bi (?:don't|do not) (?:set|make) the (?:prices|rules|policy|policies)\b|\bnothing to do with (?:us|me)\b|\bnot my problem\b",
        r"\b(?:can't|cannot|don't) make (?:any |an )?exceptions?\b|\bnot going to (?:explain|repeat) (?:it|that|this|myself)\b",
        r"\b(?:it's|that's|it is|that is) (?:just |really |simply )?(?:the )?(?:terms and conditions|procedure|rules)(?=\s*(?:[.,!?]|$))",
    ), veto=_rx(r"\b(?:sorry|apologi[sz]e|shouldn't have|should not have|wrong of me)\b[^.?!]{0,40}\b(?:calm down|relax)\b",
                 r"\b(?:calm down|relax)\b[^.?!]{0,25}\b(?:wasn't|was not|isn't) (?:fair|right|ok|okay|on|helpful)\b",
                 # the spec's own "not it": what the agent can't do, then what they can
                 r"\b(?:can't|cannot|can not|unable to|not able to|won't be able to)\b[^.?!]{0,60}\bbut (?:here's |here is )?(?:what )?(?:i|we) (?:can|could|'ll|will)\b")),
    Rule("blame_language", "agent", _rx(
        r"\byou (?:should|shouldn't|should not|could) have\b(?! (?:to\b|received|got|gotten|had|been (?:sent|given|told|offered|notified|informed|contacted|charged)))",
        r"\byou (?:didn't|did not|failed to|forgot to|never) (?:submit|send|read|fill|pay|check|tell|follow|sign|provide|update|give|notify|register|keep)\w*\b",
        r"\byou're (?:wrong|mistaken|confused)\b|\byou are (?:wrong|mistaken)\b|\byou(?:'ve| have) (?:got (?:it|that|this) wrong|misunderstood|misread|mixed (?:up|them up))\b",
        r"\b(?:that's|it's|this is) (?:your|on your) (?:fault|problem|responsibility|mistake)\b|\b(?:that's|that is|it's) on you\b",
        r"\byou must have (?:misread|misunderstood|missed|made)\b|\byou(?:'re| are) (?:mixing|confusing) (?:up )?\w+",
        r"\bif you(?:'d| had) (?:\w+ )?(?:read|checked|called|submitted|paid|given|looked|told|sent|kept|followed|listened|provided|updated|filled)\b",
        r"\byou(?:'re| are| were) the one (?:who|that)\b|\byou (?:let|allowed) (?:the|your) \w+ (?:lapse|expire|run out)\b",
        r"\byou(?:'ve| have)? (?:\w+ed|did|made|signed|agreed|chose|ticked|set) (?:it|that|this|the \w+)? ?(?:\w+ )?yourself\b",
        r"\bdid you not (?:think|check|read|see|bother)\b|\b(?:that's|it's|this is) down to you\b|\bwhose fault\b|\byou(?:'ve| have)? caused\b",
        r"\byou keep (?:giving|getting|sending|putting|entering|doing)\b[^.?!]{0,20}\bwrong\b|\byou were (?:told|informed|warned|advised|notified)\b(?! (?:the wrong|wrong|incorrectly|otherwise|something different|it (?:was|would|'d|had)|that it (?:was|would|'d|had)|(?:we|they|someone) would))",
        r"\byou(?:'ve| have) (?:obviously|clearly) (?:not|never)\b|\byou (?:obviously|clearly) (?:didn't|haven't|did not|have not|never)\b",
    ), veto=_rx(r"\b(?:that's|that is|it's|it is|that was|it was) (?:on (?:us|me)|(?:my|our) (?:fault|mistake|error))\b")),
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

    def raised_by(self, event: TranscriptEvent, matches: list[ExemplarMatch] = ()) -> bool:
        """True when this line carries a trigger (a rule of its party's, or an exemplar match that its
        label's veto allows), whether or not it was signalled already on an interim."""
        return bool(self._detect(event, matches))

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
