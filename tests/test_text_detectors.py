"""Sentiment labels, exemplar matching, training and the pipeline's text step, with fake embeddings."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from coach.asr.scheduler import AsrScheduler
from coach.audio.frames import CallLayout
from coach.config import AsrSettings
from coach.detect.exemplars import ExemplarIndex, ExemplarSet, SpeakerHead, split_sentences
from coach.detect.risk import RiskMeter
from coach.detect.sentiment import SentimentHead, label_values
from coach.detect.text import TextAnalyzer, TextReading
from coach.errors import ModelError
from coach.events import TranscriptEvent
from coach.pipeline import CallPipeline, feed_in_lockstep
from coach.train import auc, best_thresholds, fit_softmax, taught_lines, trigger_training_lines
from tests.fakes import EnergyVad, ToneTranscriber, silence, tone
from tests.test_pipeline import blocks_of, stereo


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A toy sentence embedding: hashed words, unit length."""
    out = np.zeros((len(texts), 64), np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().replace("?", " ").replace(".", " ").replace(",", " ").split():
            out[i, sum(map(ord, word)) % 64] += 1.0
        out[i] /= max(np.linalg.norm(out[i]), 1e-9)
    return out


@pytest.mark.parametrize(
    "labels, expected",
    [
        ({0: "negative", 1: "neutral", 2: "positive"}, [-1, 0, 1]),
        ({0: "NEG", 1: "POS"}, [-1, 1]),
        ({0: "1 star", 1: "2 stars", 2: "3 stars", 3: "4 stars", 4: "5 stars"}, [-1, -0.5, 0, 0.5, 1]),
        ({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, [-1, 0, 1]),
        ({0: "anger", 1: "joy", 2: "neutral", 3: "sadness"}, [-1, 1, 0, -1]),
    ],
)
def test_any_classifiers_labels_map_to_a_sentiment_value(labels, expected):
    assert label_values(labels).tolist() == pytest.approx(expected)


def test_a_classifier_with_no_sentiment_labels_is_refused_clearly():
    with pytest.raises(ModelError, match="cannot tell which labels"):
        label_values({0: "sports", 1: "politics"})


def test_sentences_of_a_segment_keep_short_replies_with_the_sentence_before():
    assert split_sentences("No. Not at all. I want a manager. Now!") == ["No. Not at all.", "I want a manager. Now!"]
    assert split_sentences("Is there anyone above you? Honestly.") == ["Is there anyone above you? Honestly."]
    # a title is no sentence end: the hard negative stays whole instead of leaving "...my branch, Mr." alone
    assert split_sentences("Right, thanks for that. The manager at my branch, Mr. Patel, sorted it out. Dr. Shah agreed with him.") == [
        "Right, thanks for that.", "The manager at my branch, Mr. Patel, sorted it out.", "Dr. Shah agreed with him."]


SETS = {
    "escalation_request": ExemplarSet.model_validate({
        "speaker": "customer",
        "examples": ["put your supervisor on the phone", "I want to talk to someone above you"],
        "not": ["your supervisor called me last week"],
    }),
    "churn_threat": ExemplarSet.model_validate({"speaker": "customer", "examples": ["I am cancelling my account"]}),
}


def prototype_head(background: list[str], floor: float = 0.3) -> SpeakerHead:
    """A head whose classes are the mean embeddings of their lines: enough to test the matching rules."""
    groups = {"none": SETS["escalation_request"].not_ + background}
    groups.update({label: s.examples for label, s in SETS.items()})
    weights = np.stack([bag_of_words(lines).mean(axis=0) * 8 for lines in groups.values()])
    labels = [label for label in groups if label != "none"]
    return SpeakerHead(list(groups), weights[None], np.zeros((1, len(groups)), np.float32), dict.fromkeys(labels, 0.5), dict.fromkeys(labels, floor))


def one_member(texts: list[str]) -> np.ndarray:
    return bag_of_words(texts)[None]


def test_a_sentence_fires_the_label_its_head_gives_with_the_nearest_example_as_evidence():
    index = ExemplarIndex(SETS, {"customer": prototype_head(["my account number is four two"])}, [bag_of_words])
    sentences = ["Right.", "Can I talk to someone above you please"]
    matches = index.match("customer", sentences, one_member(sentences))
    assert [m.label for m in matches] == ["escalation_request"]
    assert matches[0].sentence == sentences[1] and matches[0].exemplar == "I want to talk to someone above you"
    assert "someone above you" in matches[0].evidence and 0.5 <= matches[0].score <= 1


def test_a_near_miss_or_a_line_like_no_example_stays_quiet():
    index = ExemplarIndex(SETS, {"customer": prototype_head([])}, [bag_of_words])
    near_miss = ["your supervisor called me last week"]
    assert index.match("customer", near_miss, one_member(near_miss)) == []
    assert index.match("agent", ["put your supervisor on the phone"], one_member(["put your supervisor on the phone"])) == []
    strict = ExemplarIndex(SETS, {"customer": prototype_head([], floor=0.99)}, [bag_of_words])
    unlike = ["can I talk to someone above you please"]  # the head says yes; no example is that close
    assert strict.match("customer", unlike, one_member(unlike)) == []


def ensemble(*heads: SpeakerHead) -> SpeakerHead:
    return SpeakerHead(heads[0].classes, np.concatenate([h.weights for h in heads]), np.concatenate([h.bias for h in heads]),
                       heads[0].thresholds, heads[0].floors)


def test_a_label_fires_on_the_members_mean_so_one_member_alone_is_outvoted():
    sure = prototype_head([])
    never = SpeakerHead(sure.classes, np.zeros_like(sure.weights), np.array([[9.0, 0.0, 0.0]], np.float32), sure.thresholds, sure.floors)
    sentence = ["can I talk to someone above you please"]
    assert [m.label for m in ExemplarIndex(SETS, {"customer": sure}, [bag_of_words]).match("customer", sentence, one_member(sentence))] == ["escalation_request"]
    two = np.stack([bag_of_words(sentence)] * 2)
    agreeing = ExemplarIndex(SETS, {"customer": ensemble(sure, sure)}, [bag_of_words, bag_of_words]).match("customer", sentence, two)
    assert [m.label for m in agreeing] == ["escalation_request"]
    assert ExemplarIndex(SETS, {"customer": ensemble(sure, never)}, [bag_of_words, bag_of_words]).match("customer", sentence, two) == []


def test_trigger_heads_from_before_the_ensemble_ask_for_make_train(tmp_path):
    from coach.detect.exemplars import load_heads

    single = {"adapter": "triggers-adapter.npz", "speakers": {"customer": {"classes": ["none", "abuse"], "weights": [[0.0], [1.0]],
                                                                            "bias": [0.0, 0.0], "thresholds": {"abuse": 0.5}, "floors": {"abuse": 0.5}}}}
    (tmp_path / "triggers.json").write_text(json.dumps(single))
    with pytest.raises(ModelError, match="unreadable .*run `make train`"):
        load_heads(tmp_path / "triggers.json")


def test_heads_and_encoders_of_different_ensembles_are_refused_clearly():
    with pytest.raises(ModelError, match="2 members, the encoders 1: run `make train`"):
        ExemplarIndex(SETS, {"customer": ensemble(prototype_head([]), prototype_head([]))}, [bag_of_words])


def test_training_is_deterministic_and_separates_the_classes():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-1, 1, (30, 8)), rng.normal(0, 1, (30, 8)), rng.normal(1, 1, (30, 8))])
    y = np.repeat([0, 1, 2], 30)
    w1, b1 = fit_softmax(x, y, 3, 1e-3, steps=300)
    w2, b2 = fit_softmax(x, y, 3, 1e-3, steps=300)
    assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    head = SentimentHead(w1.astype(np.float32), b1.astype(np.float32))
    assert auc(-head.score(x.astype(np.float32)), y == 0) > 0.9


def test_a_label_gets_the_threshold_with_most_recall_at_90_percent_precision_or_none():
    truth = np.array([True] * 10 + [False] * 10)
    probability = np.array([0.9] * 9 + [0.3] + [0.6] * 2 + [0.1] * 8)
    nearest = np.ones(20)
    one_sentence_each = np.arange(20)
    threshold, floor, precision, recall = best_thresholds(probability, nearest, one_sentence_each, truth)
    assert 0.6 < threshold <= 0.9 and precision == 1.0 and recall == 0.9  # 0.3 would catch all ten at 10/12 precision
    confused = np.array([0.9] * 20)  # a label its head cannot tell from its near-misses
    assert best_thresholds(confused, nearest, one_sentence_each, truth)[0] > 1  # switched off: its phrase rules speak for it


def test_a_line_fires_when_any_of_its_sentences_does():
    truth = np.array([True, False])
    owner = np.array([0, 0, 1, 1])  # two sentences a line: the first line's second sentence carries it
    probability = np.array([0.1, 0.95, 0.1, 0.2])
    threshold, _, precision, recall = best_thresholds(probability, np.ones(4), owner, truth)
    assert threshold <= 0.95 and (precision, recall) == (1.0, 1.0)
    noisy = np.array([0.1, 0.95, 0.96, 0.1])  # the ordinary line has a sentence as sure: no threshold keeps 90%
    assert best_thresholds(noisy, np.ones(4), owner, truth)[0] > 1


def test_other_writers_lines_train_as_their_label_or_as_none():
    from coach.detect.exemplars import ExemplarSet

    sets = {"churn_threat": ExemplarSet(speaker="customer", examples=["I'm leaving you."], **{"not": ["I'm leaving at six."]}),
            "blame_language": ExemplarSet(speaker="agent", examples=["You should have read it."]),
            "repeat_contact": ExemplarSet(speaker="customer", examples=["I've called three times."])}
    lines = [
        {"speaker": "customer", "text": "Give the car insurance to someone else, then.", "labels": ["churn_threat"]},
        {"speaker": "customer", "text": "I'm leaving for work soon.", "labels": []},  # a near-miss by another writer
        {"speaker": "agent", "text": "You never sent the form.", "labels": ["blame_language"]},
        {"speaker": "customer", "text": "Manager, now, or I close the account.", "labels": ["churn_threat", "escalation_request"]},
        {"speaker": "customer", "text": "I'm off, and you'll hear from my lawyer.", "labels": ["churn_threat", "blame_language"]},
        {"speaker": "customer", "text": "Third call, and I'm cancelling.", "labels": ["churn_threat", "repeat_contact"]},
    ]
    texts, y, kept_out = trigger_training_lines(sets, {"customer": [], "agent": []}, lines)
    taught = dict(zip(texts, y.tolist()))
    assert taught["Give the car insurance to someone else, then."] == 1 and taught["You never sent the form."] == 2
    assert taught["I'm leaving for work soon."] == 0 and taught["I'm leaving at six."] == 0
    assert taught["Manager, now, or I close the account."] == 1  # a label the heads do not know (not in the sets) is not a second class
    assert "I'm off, and you'll hear from my lawyer." in taught  # an agent label on a customer line is ignored, not a second class
    assert "Third call, and I'm cancelling." not in taught  # two labels of its speaker's teach no single class
    assert kept_out == []


def test_a_line_learnt_from_sets_no_threshold():
    churn = {"speaker": "customer", "text": "Any of the other suppliers can have my account.", "labels": ["churn_threat"]}
    repeat = {"speaker": "customer", "text": "Third time I've rung about this.", "labels": ["repeat_contact"]}
    both = {"speaker": "customer", "text": "Third call, and I'm cancelling.", "labels": ["churn_threat", "repeat_contact"]}
    ordinary = {"speaker": "customer", "text": "My postcode is on the letter.", "labels": []}
    taught, calibration = taught_lines([churn, repeat, both, ordinary], ["churn_threat"], [churn, repeat, both, ordinary])
    assert taught == [churn]  # only the labels asked for; a line of two labels teaches neither
    assert calibration == [repeat, both, ordinary]
    taught, calibration = taught_lines([churn, repeat, both, ordinary], ["churn_threat", "none"], [repeat, ordinary])
    assert taught == [churn, ordinary] and calibration == [repeat]  # "none": the lines of no label teach it


def test_auc_counts_ties_as_half():
    assert auc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert auc(np.array([2.0, 1.0, 0.0]), np.array([True, False, False])) == 1.0


def test_a_clearly_negative_customer_raises_risk_and_a_calm_one_does_not():
    meter = RiskMeter()
    calm = TranscriptEvent(5.0, "customer", "customer-1", 1.0, 4.0, "Okay, thanks.", True, 0.4)
    assert meter.on_sentiment(calm) == []
    angry = TranscriptEvent(9.0, "customer", "customer-2", 5.0, 8.0, "This is a disgrace.", True, -0.9)
    [risk] = meter.on_sentiment(angry)
    assert risk.score > 0 and risk.drivers == ["negative_sentiment"]
    agent = TranscriptEvent(12.0, "agent", "agent-1", 9.0, 11.0, "Sorry.", True, -0.9)
    assert meter.on_sentiment(agent) == []


class WordsSay:
    """A text analyzer that reads "angry" as -0.8 and "manager" as an escalation."""

    mood_carry = 0.0

    def __init__(self) -> None:
        self.read_at: list[str] = []
        self.positive = False  # True: every line reads +0.5 (a polite line)

    async def read(self, speaker: str, text: str, banks=()) -> TextReading:
        self.read_at.append(text)
        await asyncio.sleep(0)  # yield, as a real executor hop does
        from coach.detect.exemplars import ExemplarMatch

        matches = [ExemplarMatch("escalation_request", 0.77, text, "a manager please", 0.6)] if "w6" in text else []
        return TextReading(0.5 if self.positive else -0.8 if "w6" in text else 0.2, matches)


async def test_finals_go_out_in_order_with_sentiment_and_similarity_signals():
    agent = np.concatenate([silence(0.5), tone(300, 1.5), silence(6.0)])
    customer = np.concatenate([silence(3.0), tone(600, 1.5), silence(3.5)])
    events = []
    scheduler = AsrScheduler(ToneTranscriber(), workers=2)
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(), events.append, vad_executor, EnergyVad,
                                text=WordsSay())
        await feed_in_lockstep(pipeline, blocks_of(stereo(agent, customer)))
    scheduler.close()
    finals = [e.to_dict() for e in events if getattr(e, "final", False)]
    assert [f["speaker"] for f in finals] == ["agent", "customer"]
    assert [f["sentiment"] for f in finals] == [0.2, -0.8]
    signals = [e.to_dict() for e in events if e.type == "signal"]
    assert [(s["label"], s["score"]) for s in signals] == [("escalation_request", 0.77)]
    assert "a manager please" in signals[0]["evidence"]
    # similarity reads the whole utterance decoded at the pause, before the endpointer is sure it ended
    whole = [e for e in events if e.type == "transcript" and e.whole]
    assert whole and round(whole[-1].at, 2) <= signals[0]["at"] < finals[1]["at"]
    risks = [e for e in events if e.type == "risk"]
    assert risks and "escalation_request" in risks[-1].drivers and "negative_sentiment" in risks[-1].drivers


async def test_the_trigger_heads_never_read_a_chunks_greedy_interim():
    # 3.5 s of speech, a short pause that ends a chunk, then more words: the chunk's interim goes out,
    # but only the whole utterance (at the pause that may end it) and the final are read
    customer = np.concatenate([silence(0.5), tone(600, 3.5), silence(0.25), tone(700, 1.0), silence(3.0)])
    events, text = [], WordsSay()
    scheduler = AsrScheduler(ToneTranscriber(), workers=2)
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(), events.append, vad_executor, EnergyVad, text=text)
        await feed_in_lockstep(pipeline, blocks_of(stereo(silence(customer.size / 16000), customer)))
    scheduler.close()
    interims = [e.text for e in events if e.type == "transcript" and not e.final]
    assert any("w7" not in t for t in interims)  # the chunk's interim was shown
    assert text.read_at and all("w7" in t for t in text.read_at)


def test_a_text_analyzer_reads_off_the_loop_in_its_own_thread():
    class Encoder:
        def embed(self, texts):
            import threading

            self.thread = threading.current_thread().name
            return bag_of_words(texts)

    encoder = Encoder()
    head = SentimentHead(np.zeros((3, 64), np.float32), np.array([0.0, 0.0, 1.0], np.float32))
    analyzer = TextAnalyzer(encoder, head)
    reading = asyncio.run(analyzer.read("customer", "thank you so much"))
    analyzer.close()
    assert reading.sentiment == pytest.approx((np.exp(1) - 1) / (np.exp(1) + 2), abs=1e-6)  # P(pos) - P(neg)
    assert encoder.thread.startswith("text")


def test_a_partys_mood_carries_into_its_next_segment():
    from coach.detect.sentiment import CallMood

    mood = CallMood(carry=0.5)
    assert mood.update("customer", -0.8) == -0.8
    assert mood.update("agent", 0.6) == 0.6  # each party its own
    assert mood.update("customer", 0.0) == pytest.approx(-0.4)  # "Okay, we'll see." after an angry turn
    assert CallMood(carry=0.0).update("customer", 0.3) == 0.3


def test_a_polite_line_that_raises_a_customer_trigger_reads_as_dissatisfied():
    from coach.detect.sentiment import DISSATISFIED, CallMood
    from coach.detect.triggers import TriggerDetector

    def line(text):
        return TranscriptEvent(5.0, "customer", "customer-1", 1.0, 4.0, text, True)

    triggers = TriggerDetector()
    assert triggers.raised_by(line("Would you mind putting me through to your supervisor, please?"))
    assert not triggers.raised_by(line("Your supervisor called me last week and was lovely."))
    assert CallMood(carry=0.0).update("customer", 0.4, dissatisfied=True) == DISSATISFIED
    assert CallMood(carry=0.0).update("customer", -0.9, dissatisfied=True) == -0.9  # never less negative


async def test_the_final_of_a_customer_trigger_goes_out_with_a_dissatisfied_sentiment():
    customer = np.concatenate([silence(0.5), tone(600, 1.5), silence(3.0)])  # "w6 ...": WordsSay's escalation
    events, text = [], WordsSay()
    text.positive = True
    scheduler = AsrScheduler(ToneTranscriber(), workers=2)
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(), events.append, vad_executor, EnergyVad, text=text)
        await feed_in_lockstep(pipeline, blocks_of(stereo(silence(customer.size / 16000), customer)))
    scheduler.close()
    [final] = [e for e in events if e.type == "transcript" and e.final]
    from coach.detect.sentiment import DISSATISFIED

    assert final.sentiment == DISSATISFIED
