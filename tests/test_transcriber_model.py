"""The speech model itself: utterances of different calls decoded in one batch hear what each alone does."""

import re

import pytest

from coach.asr.transcriber import DecodeOptions
from coach.config import Settings
from coach.demo import speak
from coach.models import load_transcriber

pytestmark = pytest.mark.model


def words(text):
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


@pytest.fixture(scope="module")
def transcriber():
    return load_transcriber(Settings())


def test_a_batch_hears_each_utterance_as_it_is_heard_alone(transcriber):
    said = [
        ("I would like to cancel my subscription today.", "", "en-us"),
        ("Your parcel left our warehouse on Monday morning.", "Where is my parcel? I ordered it a week ago and nothing came.", "en"),
        ("Could you read me the last four digits of the card?", "I was charged twice for the same order.", "en-us"),
    ]
    # the batch needs contexts of one kind: the scheduler never mixes none with some
    requests = [(speak(text, voice), context) for text, context, voice in said[1:]]
    options = DecodeOptions(min_window=10.0)
    alone = [transcriber.transcribe(audio, options, context) for audio, context in requests]
    together = transcriber.transcribe_batch(requests, options)
    for (text, _, _), one, batched in zip(said[1:], alone, together):
        assert len(set(words(batched.text)) & set(words(text))) >= 0.7 * len(words(text)), batched.text
        assert words(one.text) == words(batched.text), (one.text, batched.text)
        assert batched.avg_logprob == pytest.approx(one.avg_logprob, abs=0.15)
    # greedy, no context, windows of different lengths (the shorter one is heard in the longer window)
    short = speak(said[0][0], "en-us")
    long_ = speak(said[0][0] + " " + said[1][0], "en")
    greedy = DecodeOptions(beam_size=1, min_window=2.0)
    both = transcriber.transcribe_batch([(short, ""), (long_, "")], greedy)
    assert words(both[0].text) == words(transcriber.transcribe(short, greedy).text), both[0].text
    assert both[0].window == both[1].window
