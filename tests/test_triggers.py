"""Trigger phrases: each label fires on a fresh phrasing and stays quiet on its hard negative."""

import pytest

from coach.detect.triggers import TriggerDetector
from coach.events import TranscriptEvent


def labels(speaker, text):
    event = TranscriptEvent(10.0, speaker, f"{speaker}-1", 7.0, 9.5, text, True)
    return {s.label for s in TriggerDetector().on_transcript(event)}


@pytest.mark.parametrize(
    "speaker, text, label",
    [
        ("customer", "Honestly, just get me your supervisor right now.", "escalation_request"),
        ("customer", "Is there anybody higher up I could have a word with?", "escalation_request"),
        ("customer", "I'd like this escalated, today.", "escalation_request"),
        ("customer", "Forget it, I'm closing the account and taking my money elsewhere.", "churn_threat"),
        ("customer", "I'm seriously thinking of moving to a different insurer.", "churn_threat"),
        ("customer", "This is the fourth time I've phoned about the same thing.", "repeat_contact"),
        ("customer", "I've already been through all of this with your colleague.", "repeat_contact"),
        ("customer", "You lot are completely useless.", "abuse"),
        ("customer", "Expect a letter from my solicitor.", "legal_or_public_threat"),
        ("customer", "I'll be leaving a review on Trustpilot about this.", "legal_or_public_threat"),
        ("customer", "Please, just let me finish a sentence.", "not_listening"),
        ("customer", "I don't need the whole history lesson.", "not_listening"),
        ("agent", "I'm afraid there's nobody higher than me here.", "no_manager_lie"),
        ("agent", "Sir, you need to calm down.", "dismissive_phrase"),
        ("agent", "Refunds aren't something we handle on this line.", "dismissive_phrase"),
        ("agent", "You should have checked the terms before booking.", "blame_language"),
        ("agent", "You didn't send us the signed form.", "blame_language"),
        # the everyday frames of each label, not only its textbook phrase
        ("customer", "Could you bump me up to whoever is above you, please?", "escalation_request"),
        ("customer", "Fine. I'm finished with this bank, I'll be moving my savings elsewhere.", "churn_threat"),
        ("customer", "Carry on like this and you're going to lose a customer.", "churn_threat"),
        ("customer", "I keep phoning and nothing ever changes.", "repeat_contact"),
        ("customer", "I reported the leak on the 4th and again last week.", "repeat_contact"),
        ("customer", "Honestly, are you even paying attention to me?", "not_listening"),
        ("customer", "Right, I'll be writing to the ombudsman tonight.", "legal_or_public_threat"),
        ("agent", "Look, rules are rules, I can't change that.", "dismissive_phrase"),
        ("agent", "If you'd read the email you would know the date moved.", "blame_language"),
        ("customer", "We won't be renewing in June, I can promise you that.", "churn_threat"),
        ("customer", "Maybe I'll just look for another provider then.", "churn_threat"),
        ("customer", "How many times do I have to explain the same fault?", "repeat_contact"),
        ("customer", "Like I said to your colleague on the chat, the box arrived crushed.", "repeat_contact"),
        ("customer", "It's like talking to a brick wall.", "not_listening"),
        ("customer", "You keep talking over me.", "not_listening"),
        ("customer", "Fine, I'm taking this to the energy ombudsman.", "legal_or_public_threat"),
        ("customer", "This is getting a one-star review from me.", "legal_or_public_threat"),
        ("agent", "Honestly, it's out of my hands.", "dismissive_phrase"),
        ("agent", "Whose fault is that, though? You picked the cheapest option.", "blame_language"),
        ("customer", "Fine, the supermarket down the road is getting my business from now on.", "churn_threat"),
        ("customer", "What's the exit fee on this plan? I'm asking for a reason.", "churn_threat"),
        ("customer", "Sort it by Monday or I'm gone.", "churn_threat"),
        ("customer", "At this point the other broadband companies can have my business.", "churn_threat"),
        ("customer", "When my term's up the car insurance goes to another insurer, simple as that.", "churn_threat"),
        ("customer", "Give me one reason to keep paying you every month.", "churn_threat"),
        ("customer", "Waive the charge or my membership gets cancelled, your call.", "churn_threat"),
        ("customer", "We're not tied to you, you know, there are plenty of suppliers.", "churn_threat"),
        ("customer", "I've got the switching pack from the new bank right here.", "churn_threat"),
        ("customer", "Can this be passed to your director, please?", "escalation_request"),
        ("customer", "Is there a next level I can take this to?", "escalation_request"),
        ("customer", "It's the same fault as last month, the boiler again.", "repeat_contact"),
        ("customer", "I'll be writing this up for the local paper's consumer page.", "legal_or_public_threat"),
        ("customer", "Honestly, I've got one foot out the door already.", "churn_threat"),
        ("agent", "You'd need to take it up with the airline, not us.", "dismissive_phrase"),
        ("agent", "I can't change the rules for one customer.", "dismissive_phrase"),
        ("agent", "You were told at the time that the deposit was non-refundable.", "blame_language"),
    ],
)
def test_a_fresh_phrasing_fires(speaker, text, label):
    assert label in labels(speaker, text)


@pytest.mark.parametrize(
    "speaker, text",
    [
        ("customer", "Your manager called me last week and was great."),
        ("customer", "I don't want to cancel, I just want the fee gone."),
        ("customer", "I called to set up a new account."),
        ("customer", "Damn, that's a lot of money."),
        ("agent", "My supervisor is in a meeting; can she call you back at three?"),
        ("agent", "I can't do that, but here is what I can do."),
        ("agent", "I understand you've been waiting a long time."),
        ("customer", "Hi, I'd like to check my balance please."),
        ("customer", "My attorney is the executor of my father's will, so he sent the papers."),
        ("customer", "I'm not trying to close my account, I just want the charge explained."),
        ("customer", "The form keeps freezing, it won't let me finish the payment."),
        ("customer", "Let me talk to my wife about it and I'll ring back."),
        ("customer", "If you keep sending me letters I'll pay it, I just need a week."),
        ("agent", "You should have received a text with the new date."),
        ("customer", "I rang last week just to say thanks, you were brilliant."),
        ("customer", "I don't need a manager, I just need the reference number."),
        ("customer", "I'm leaving for work in ten minutes, can we be quick?"),
        ("customer", "Is there a cancellation fee if I move my delivery slot?"),
        ("customer", "What's the early termination fee? I'm not leaving, I just want to know."),
        ("customer", "Can the engineer be moved higher up the list?"),
        ("customer", "This is my first time calling, I've never phoned you before."),
        ("customer", "No need to escalate it, you've sorted it."),
        ("customer", "I'd like to open a new bank account, please."),
        ("customer", "You can have my account number, it's four four two one."),
        ("customer", "I'll be gone for two weeks, can you hold the post till the 20th?"),
        ("customer", "What happens to my points if the account gets closed?"),
        ("customer", "I've got your website open in another tab, which page is it?"),
        ("customer", "I've got options on my plan I never use, can you take them off?"),
        ("customer", "Is there a reason to keep the old direct debit?"),
        # what a call's ordinary speech says in the same words: apologies, corrections, everyday idiom
        ("agent", "You shouldn't have to chase us for this."),
        ("agent", "I'm sorry, you were told the wrong date by my colleague."),
        ("agent", "I can't change the tariff myself, but I can ask billing to review it today."),
        ("agent", "I was wrong to say there's no manager here; my team leader can ring you at four."),
        ("agent", "Apologies for telling you to calm down earlier, that wasn't fair of me."),
        ("agent", "The courier has the parcel now, so our depot can take it up with them."),
        ("customer", "Sorry I called you a muppet earlier, it's been a long day."),
        ("customer", "I'm out the door at seven every morning, so evenings suit me."),
        ("customer", "I've written the reference down, thanks."),
        ("customer", "I'm moving my savings from another bank to you this month."),
        ("customer", "I'm calling about my TV package, the sports channels have gone."),
        ("customer", "Yes, I know the drill, date of birth first."),
    ],
)
def test_a_hard_negative_stays_quiet(speaker, text):
    assert labels(speaker, text) == set()


def test_a_rule_only_hears_its_own_party():
    assert labels("agent", "I want to speak to your supervisor") == set()  # an agent quoting a customer
    assert labels("customer", "calm down") == set()


def test_the_evidence_is_the_words_that_matched():
    event = TranscriptEvent(10.0, "customer", "customer-1", 7.0, 9.5, "Right. Put me through to a manager, now.", True)
    (signal,) = TriggerDetector().on_transcript(event)
    assert signal.evidence == "Put me through to a manager" and signal.at == 10.0


def test_the_competition_authority_is_a_regulator_not_a_competitor():
    assert labels("customer", "I'm going to the Competition and Markets Authority with this.") == {"legal_or_public_threat"}


def test_leaving_a_review_is_a_public_threat_not_churn():
    assert labels("customer", "I'll be leaving a review on Trustpilot about this.") == {"legal_or_public_threat"}
    assert labels("customer", "I'm cancelling the appointment for Tuesday.") == set()


def test_a_trigger_heard_in_an_interim_fires_once_for_the_whole_utterance():
    detector = TriggerDetector()
    interim = TranscriptEvent(4.0, "customer", "customer-2", 1.0, 3.5, "I want to speak to your manager", False)
    final = TranscriptEvent(4.8, "customer", "customer-2", 1.0, 4.1, "I want to speak to your manager. Now.", True)
    [signal] = detector.on_transcript(interim)
    assert signal.label == "escalation_request" and signal.at == 4.0  # before the final
    assert detector.on_transcript(final) == []  # the same utterance: not again
    assert detector.on_transcript(interim) == []  # a late interim of a finished utterance is stale
    again = TranscriptEvent(9.0, "customer", "customer-3", 6.0, 8.5, "Get me a manager", True)
    assert [s.label for s in detector.on_transcript(again)] == ["escalation_request"]  # a new utterance fires anew
