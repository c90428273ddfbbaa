"""The real text models: the offline encoder (all-MiniLM-L6-v2), the project's trained heads, and any
Hugging Face sequence-classification model given by path."""

import json
import subprocess
import sys

import pytest
import yaml

from coach.config import Settings, TextSettings
from coach.detect.exemplars import DEFAULT_EXEMPLARS, adapter_path
from coach.models import text_analyzer as load_text_analyzer
from coach.detect.triggers import TriggerDetector
from coach.events import TranscriptEvent

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    a = load_text_analyzer(TextSettings(), tmp_path_factory.mktemp("models"))
    yield a
    a.close()


def labels(analyzer, speaker, text):
    reading = analyzer.read_now(speaker, text)
    event = TranscriptEvent(10.0, speaker, f"{speaker}-1", 7.0, 9.5, text, True, reading.sentiment)
    return {s.label: s for s in TriggerDetector().on_transcript(event, reading.matches)}



# indirect phrasings (the issue's own example first), none of them an exemplar word for word; six of the
# eight get past every phrase rule, so the head over the exemplars must catch them
INDIRECT = [
    ("customer", "Is there anyone above you who can actually do something about this?", "escalation_request"),
    ("customer", "Who do I speak to that can actually make a decision here?", "escalation_request"),
    ("customer", "I'll be taking my custom to one of your competitors, then.", "churn_threat"),
    ("customer", "Same story as the last three times I rang you lot.", "repeat_contact"),
    # missed by one tuned encoder alone, caught by three, missed again by six (0.445 under 0.475): kept as a
    # known miss, so a model that catches it again shows (docs/benchmarks.md, "Adopted: six members")
    pytest.param("customer", "Hang on, I hadn't got to the point yet.", "not_listening",
                 marks=pytest.mark.xfail(strict=True, reason="the six-member ensemble scores it just under its threshold")),
    ("customer", "You keep cutting me off before I've said what I need to say.", "not_listening"),
    ("agent", "That decision is final, nobody here outranks me on this.", "no_manager_lie"),
    ("agent", "If you had entered your card number correctly this would never have happened.", "blame_language"),
]
HARD_NEGATIVES = [
    ("customer", "Your manager helped me last week and she was lovely."),
    ("customer", "I don't want to cancel, I just want the fee gone."),
    ("customer", "I called to set up a new account for my son."),
    ("customer", "Damn, that's a lot of paperwork."),
    ("agent", "My supervisor is in a meeting; can she call you back at three?"),
    ("agent", "I can't do that, but here is what I can do."),
    ("agent", "I understand you've been waiting a long time."),
    ("agent", "How can I help you today?"),
    ("agent", "Is there anything else I can do for you?"),
]


def test_the_indirect_phrasings_are_new_wording():
    written = {t.lower() for entry in yaml.safe_load(DEFAULT_EXEMPLARS.read_text()).values() for t in entry["examples"]}
    assert not {(p.values if hasattr(p, "values") else p)[1].lower() for p in INDIRECT} & written


@pytest.mark.parametrize("speaker, text, label", INDIRECT)
def test_an_indirect_phrasing_fires_with_its_nearest_example_as_evidence(analyzer, speaker, text, label):
    found = labels(analyzer, speaker, text)
    assert label in found, (text, {k: v.evidence for k, v in found.items()})
    assert 0 < found[label].score <= 1 and found[label].evidence


@pytest.mark.parametrize("speaker, text", HARD_NEGATIVES)
def test_a_hard_negative_stays_quiet(analyzer, speaker, text):
    assert labels(analyzer, speaker, text) == {}


def test_sentiment_orders_angry_below_neutral_below_pleased(analyzer):
    score = lambda text: analyzer.read_now("customer", text).sentiment  # noqa: E731
    angry = score("This is absolutely disgraceful, I have had it with your company.")
    neutral = score("My postcode is S W one A, two A A.")
    pleased = score("Oh that's wonderful, thank you so much for sorting it.")
    assert -1 <= angry < neutral < pleased <= 1


def test_any_sequence_classification_model_can_give_the_sentiment(analyzer, tmp_path):
    """A Hugging Face classifier by folder (here a tiny untrained one with sentiment labels)."""
    import transformers

    from coach.models import resolve_text_model

    encoder_dir = resolve_text_model("minilm", tmp_path).path
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, num_labels=3,
                                     id2label={0: "negative", 1: "neutral", 2: "positive"},
                                     label2id={"negative": 0, "neutral": 1, "positive": 2})
    transformers.BertForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    transformers.AutoTokenizer.from_pretrained(encoder_dir).save_pretrained(tmp_path / "clf")
    settings = TextSettings(sentiment=str(tmp_path / "clf"), similarity=False)
    other = load_text_analyzer(settings, tmp_path)
    try:
        reading = other.read_now("customer", "Thanks, that's great.")
    finally:
        other.close()
    assert reading.sentiment is not None and -1 <= reading.sentiment <= 1
    assert other.head is None and other.classifier is not None


def test_a_missing_sentiment_model_is_a_one_line_error(tmp_path):
    env = {"COACH_TEXT__SENTIMENT": str(tmp_path / "nowhere"), "COACH_MODELS_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "coach", "models"], capture_output=True, text=True,
                         env={**__import__("os").environ, **env}, timeout=120)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "nowhere" in run.stderr and "config.json" in run.stderr


def test_training_is_deterministic(tmp_path):
    from coach.train import TRIGGER_SEEDS, train

    (tmp_path / "utterances.csv").write_text(
        "speaker,mood,text\n" + "".join(
            f'customer,{mood},"{text} {i}"\n'
            for i in range(4)
            for mood, text in (("angry", "This is a disgrace"), ("neutral", "My account number is"), ("positive", "Thank you so much"))
        ) + 'agent,neutral,"Let me check that for you"\n'
    )
    (tmp_path / "exemplars.yaml").write_text(yaml.safe_dump({
        "escalation_request": {"speaker": "customer", "examples": ["get me your manager", "I want a supervisor"], "not": ["your manager was great"]},
        "blame_language": {"speaker": "agent", "examples": ["you should have read it", "that's your fault"], "not": ["I see what happened"]},
    }))
    (tmp_path / "calibration.jsonl").write_text("".join(json.dumps(line) + "\n" for line in (
        {"speaker": "customer", "text": "Can I talk to your supervisor?", "labels": ["escalation_request"]},
        {"speaker": "customer", "text": "Your manager sorted it out last time.", "labels": []},
        {"speaker": "agent", "text": "You didn't read the terms.", "labels": ["blame_language"]},
        {"speaker": "agent", "text": "I can see what went wrong.", "labels": []},
    )))
    (tmp_path / "training.jsonl").write_text("".join(json.dumps(line) + "\n" for line in (
        {"speaker": "customer", "text": "Is there someone above you?", "labels": ["escalation_request"]},
        {"speaker": "customer", "text": "Can I talk to your supervisor?", "labels": ["escalation_request"]},  # taught: sets no threshold
        {"speaker": "agent", "text": "Let me find out who can help.", "labels": []},
    )))
    adapters = [adapter_path(tmp_path / "triggers.json", member).name for member in range(len(TRIGGER_SEEDS))]
    written = []
    for run in ("a", "b"):
        settings = TextSettings(utterances=[tmp_path / "utterances.csv"], exemplars=tmp_path / "exemplars.yaml",
                                calibration=[tmp_path / "calibration.jsonl"], training_lines=[tmp_path / "training.jsonl"],
                                training_labels=["escalation_request"],
                                head=tmp_path / run / "sentiment.json", triggers=tmp_path / run / "triggers.json")
        train(settings, tmp_path / "models", log=lambda line: None)
        written.append([settings.head.read_bytes(), settings.triggers.read_bytes()]
                       + [(tmp_path / run / name).read_bytes() for name in adapters])
    assert written[0] == written[1]
    triggers = json.loads(written[0][1])
    assert triggers["adapter"] == "triggers-adapter.npz" and json.loads(written[0][0])["adapter"] == "triggers-adapter.npz"
    assert [m["adapter"] for m in triggers["members"]] == adapters and len(adapters) == 6
    assert len(set(written[0][2:])) == 6  # six members, each tuned from its own seed
    head = json.loads(written[0][0])
    assert head["classes"] == ["negative", "neutral", "positive"] and len(head["weights"][0]) == 384


def test_settings_name_the_shipped_heads():
    text = Settings().text
    assert text.head.is_file() and text.triggers.is_file() and text.exemplars.is_file() and all(p.is_file() for p in text.utterances)
    assert all(p.is_file() for p in text.calibration) and all(p.is_file() for p in text.training_lines)
    assert all((text.triggers.parent / m["adapter"]).is_file() for m in json.loads(text.triggers.read_text())["members"])


def test_both_heads_read_the_tuned_encoder_and_a_mismatch_is_a_one_line_error(analyzer, tmp_path):
    from coach.errors import ModelError

    shipped = TextSettings()
    assert json.loads(shipped.head.read_text())["adapter"] == json.loads(shipped.triggers.read_text())["adapter"]
    assert "triggers-adapter.npz" in analyzer.encoder.name  # one tuned encoder reads a segment for both heads
    members = [m["adapter"] for m in json.loads(shipped.triggers.read_text())["members"]]
    assert analyzer.trigger_encoders[0] is analyzer.encoder and len({e.name for e in analyzer.trigger_encoders}) == len(members) == 6
    for name in ("sentiment.json", "triggers.json", *members):
        (tmp_path / name).write_bytes((shipped.triggers.parent / name).read_bytes())
    stale = json.loads((tmp_path / "sentiment.json").read_text())
    stale["adapter"] = ""  # a head trained on the plain encoder, beside heads on the tuned one
    (tmp_path / "sentiment.json").write_text(json.dumps(stale))
    with pytest.raises(ModelError, match="different encoder adapters: run `make train`"):
        load_text_analyzer(TextSettings(head=tmp_path / "sentiment.json", triggers=tmp_path / "triggers.json"), tmp_path)
