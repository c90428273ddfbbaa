"""Sentiment labels, the trigger model's reading, training and the pipeline's text step, with fake embeddings."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from coach.asr.scheduler import AsrScheduler
from coach.audio.frames import CallLayout
from coach.config import AsrSettings
from coach.detect.exemplars import split_sentences
from coach.detect.risk import RiskMeter
from coach.detect.sentiment import SentimentHead, label_values
from coach.detect.text import TextAnalyzer, TextReading
from coach.errors import ModelError
from coach.events import TranscriptEvent
from coach.pipeline import CallPipeline, feed_in_lockstep
from coach.detect.turns import TurnHead, TurnReader
from coach.train import auc, fit_softmax
from coach.tuning import best_threshold, call_turns
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


EXAMPLES = {"escalation_request": ["put your supervisor on the phone", "I want to talk to someone above you"],
            "repeat_contact": ["this is the third time I have called"], "blame_language": ["you should have read the letter"]}
SPEAKERS = {"escalation_request": "customer", "repeat_contact": "customer", "blame_language": "agent"}
LABELS = sorted(EXAMPLES)


def head_that(weights: dict[str, np.ndarray], context_weights: dict[str, float] | None = None, threshold: float = 0.5) -> TurnHead:
    """A turn head, by hand: each label's hidden unit is the sentence's dot product with ``weights[label]``
    (and, with ``context_weights``, the sentence's likeness to its context times that weight)."""
    dim, hidden = 64, len(LABELS)
    w1 = np.zeros((3 * dim, hidden), np.float32)
    for k, label in enumerate(LABELS):
        if label in weights:
            w1[:dim, k] = weights[label] / 20.0  # the head reads 20 u
        if context_weights and label in context_weights:
            w1[2 * dim :, k] = context_weights[label] / (20.0 * 8.0)  # ... and 20 sqrt(64) u*c
    w2 = np.eye(hidden, dtype=np.float32) * 12.0
    return TurnHead(LABELS, SPEAKERS, w1, np.zeros(hidden, np.float32), w2, np.full(hidden, -6.0, np.float32), dict.fromkeys(LABELS, threshold))


def reader(head: TurnHead) -> TurnReader:
    return TurnReader(head, EXAMPLES, {label: bag_of_words(lines) for label, lines in EXAMPLES.items()})


def test_a_sentence_fires_the_label_its_head_gives_with_the_nearest_example_as_evidence():
    head = head_that({"escalation_request": bag_of_words(["talk to someone above you"])[0]})
    sentences = ["Right.", "Can I talk to someone above you please"]
    matches = reader(head).match("customer", sentences, bag_of_words(sentences), None)
    assert [m.label for m in matches] == ["escalation_request"]
    assert matches[0].sentence == sentences[1] and matches[0].exemplar == "I want to talk to someone above you"
    assert "someone above you" in matches[0].evidence and 0.5 <= matches[0].score <= 1


def test_a_label_fires_only_for_its_party_and_a_switched_off_label_never():
    head = head_that({"escalation_request": bag_of_words(["talk to someone above you"])[0]})
    line = ["can I talk to someone above you"]
    assert reader(head).match("agent", line, bag_of_words(line), None) == []
    off = head_that({"escalation_request": bag_of_words(["talk to someone above you"])[0]}, threshold=1.01)
    assert reader(off).match("customer", line, bag_of_words(line), None) == []


def test_the_same_words_read_differently_in_their_context():
    # "third time" is repeat contact after "have you called about this before?", and nothing after "what floor?"
    head = head_that({}, context_weights={"repeat_contact": 1.0})
    line = ["third time"]
    asked = bag_of_words(["have you called about this time before"])[0] + bag_of_words(["third"])[0]
    asked /= np.linalg.norm(asked)
    assert [m.label for m in reader(head).match("customer", line, bag_of_words(line), asked)] == ["repeat_contact"]
    assert reader(head).match("customer", line, bag_of_words(line), bag_of_words(["which floor is it on"])[0]) == []
    assert reader(head).match("customer", line, bag_of_words(line), None) == []


def test_a_model_for_another_encoder_is_one_clear_error():
    head = head_that({})
    with pytest.raises(ModelError, match="64-d embeddings, the encoder gives 32: run `make train`"):
        reader(head).match("customer", ["hello"], np.zeros((1, 32), np.float32), None)


def test_a_stored_model_that_does_not_add_up_asks_for_make_train(tmp_path):
    (tmp_path / "triggers.json").write_text(json.dumps({"labels": ["abuse"], "speakers": {"abuse": "customer"}, "head": "nowhere.npz",
                                                         "thresholds": {"abuse": 0.5}}))
    with pytest.raises(ModelError, match="not found: run `make train`"):
        TurnHead.load(tmp_path / "triggers.json")
    (tmp_path / "triggers.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable .*run `make train`"):
        TurnHead.load(tmp_path / "triggers.json")


def test_a_turn_is_read_beside_the_other_partys_turn_before_it():
    lines = [{"call": "a", "speaker": "agent", "text": "Have you called before?", "labels": []},
             {"call": "a", "speaker": "customer", "text": "Third time. Third!", "labels": ["repeat_contact"]},
             {"call": "a", "speaker": "customer", "text": "And nobody rang back.", "labels": []},
             {"call": "b", "speaker": "customer", "text": "Hello?", "labels": []}]
    turns = call_turns(lines)
    assert turns[0].context == () and turns[1].context == ("Have you called before?",)
    assert turns[2].context == ("Have you called before?",)  # the other party's last turn, not the party's own
    assert turns[3].context == ()  # another call starts with none
    assert turns[1].sentences == ("Third time. Third!",) and turns[1].labels == {"repeat_contact"}


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
    threshold, precision, recall = best_threshold(probability, truth)
    assert 0.6 < threshold <= 0.9 and precision == 1.0 and recall == 0.9  # 0.3 would catch all ten at 10/12 precision
    confused = np.array([0.9] * 20)  # a label the model cannot tell from its near-misses
    assert best_threshold(confused, truth)[0] > 1  # switched off: its phrase rules speak for it


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
        self.contexts: list[str | None] = []
        self.positive = False  # True: every line reads +0.5 (a polite line)

    async def read(self, speaker: str, text: str, context: str | None = None) -> TextReading:
        self.read_at.append(text)
        self.contexts.append(context)
        await asyncio.sleep(0)  # yield, as a real executor hop does
        from coach.detect.turns import ExemplarMatch

        matches = [ExemplarMatch("escalation_request", 0.77, text, "a manager please", 0.6)] if "w6" in text else []
        return TextReading(0.5 if self.positive else -0.8 if "w6" in text else 0.2, matches)


async def test_finals_go_out_in_order_with_sentiment_and_similarity_signals():
    agent = np.concatenate([silence(0.5), tone(300, 1.5), silence(6.0)])
    customer = np.concatenate([silence(3.0), tone(600, 1.5), silence(3.5)])
    events, text = [], WordsSay()
    scheduler = AsrScheduler(ToneTranscriber(), workers=2)
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(), events.append, vad_executor, EnergyVad,
                                text=text)
        await feed_in_lockstep(pipeline, blocks_of(stereo(agent, customer)))
    scheduler.close()
    finals = [e.to_dict() for e in events if getattr(e, "final", False)]
    assert [f["speaker"] for f in finals] == ["agent", "customer"]
    # the customer's turn is read beside what the agent said before it; the agent's, the call's first, beside nothing
    assert text.contexts[0] is None and text.contexts[-1] == finals[0]["text"]
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
