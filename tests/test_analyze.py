"""`coach analyze` with the real speech model on speech generated in the test."""

import json
import re
import subprocess
import sys
import wave

import numpy as np
import pytest

from coach.audio.files import read_blocks
from coach.demo import write_wav

pytestmark = pytest.mark.model


def coach(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "coach", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def words(text):
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def wer(ref, hyp):
    ref, hyp = words(ref), words(hyp)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1] / len(ref)


@pytest.fixture(scope="module")
def analysed(short_call):
    path, timeline = short_call
    run = coach("analyze", path, "--jsonl")
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()], timeline


def test_each_party_is_transcribed_on_its_own_channel(analysed):
    events, timeline = analysed
    for speaker in ("agent", "customer"):
        said = " ".join(t["text"] for t in timeline if t["speaker"] == speaker)
        heard = " ".join(e["text"] for e in events if e.get("final") and e["speaker"] == speaker)
        assert wer(said, heard) < 0.25, (speaker, heard)


def test_finals_follow_each_turn_within_a_second_of_audio(analysed):
    events, timeline = analysed
    finals = [e for e in events if e.get("final") and e["text"]]
    for turn in timeline:
        mine = [e for e in finals if e["speaker"] == turn["speaker"] and e["end"] > turn["start"] and e["start"] < turn["end"]]
        assert mine, turn
        assert mine[-1]["at"] - turn["end"] < 1.0


def test_interims_show_words_before_the_turn_ends(analysed):
    events, timeline = analysed
    longest = max(timeline, key=lambda t: t["end"] - t["start"])
    early = [e for e in events if e["type"] == "transcript" and not e["final"] and e["speaker"] == longest["speaker"] and longest["start"] < e["at"] < longest["end"]]
    assert early and set(words(early[0]["text"])) & set(words(longest["text"]))


def test_the_stream_is_in_audio_order_with_the_contract_fields(analysed):
    events, _ = analysed
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    for e in events:
        if e["type"] == "transcript":
            assert {"at", "speaker", "start", "end", "text", "final"} <= e.keys()
            assert ("sentiment" in e) <= e["final"]
        else:
            assert e["type"] == "signal" and {"at", "label", "speaker", "start", "end", "score", "evidence"} <= e.keys()


def test_swapping_the_agent_channel_swaps_the_speakers(short_call, analysed):
    path, _ = short_call
    events, _ = analysed
    swapped = [json.loads(x) for x in coach("analyze", path, "--jsonl", "--agent-channel", "1", "--no-interims").stdout.splitlines()]
    first = lambda evs: next(e for e in evs if e.get("final") and e["text"])  # noqa: E731
    assert first(swapped)["speaker"] == {"agent": "customer", "customer": "agent"}[first(events)["speaker"]]


def test_telephone_audio_8khz_mono_is_one_mixed_party(short_call, tmp_path):
    path, timeline = short_call
    with wave.open(str(path)) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).astype(np.float32) / 32768
    mono = stereo.sum(axis=1)
    mono8k = mono[: mono.size // 2 * 2].reshape(-1, 2).mean(axis=1)  # mixed down to 8 kHz, band-limited
    run = coach("analyze", write_wav(tmp_path / "phone.wav", mono8k, rate=8000), "--jsonl", "--no-interims")
    assert run.returncode == 0, run.stderr
    events = [json.loads(x) for x in run.stdout.splitlines()]
    assert {e["speaker"] for e in events} == {"mixed"}  # and no timing cues: who is who is unknown
    assert wer(" ".join(t["text"] for t in timeline), " ".join(e["text"] for e in events)) < 0.35


def test_readable_output_labels_the_speakers(short_call):
    path, _ = short_call
    run = coach("analyze", path, "--no-interims")
    assert run.returncode == 0
    assert re.search(r"^\d\d:\d\d\.\d  AGENT +Thank you for calling", run.stdout, re.M | re.I)
    assert re.search(r"^\d\d:\d\d\.\d  CUSTOMER +.*refund", run.stdout, re.M | re.I)


def test_silence_only_is_an_error_not_an_empty_success(tmp_path):
    run = coach("analyze", write_wav(tmp_path / "quiet.wav", np.zeros((16000 * 3, 2), np.float32)))
    assert run.returncode == 1 and "no speech found" in run.stderr and "Traceback" not in run.stderr


def test_a_truncated_recording_is_reported_after_analysing_what_is_there(short_call, tmp_path):
    path, _ = short_call
    data = path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    run = coach("analyze", cut, "--jsonl", "--no-interims")
    assert run.returncode == 1 and "truncated" in run.stderr and "Traceback" not in run.stderr
    assert any(json.loads(x).get("final") for x in run.stdout.splitlines())  # what was there is not lost


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"RIFF....WAVEfmt garbage", "not a readable audio file")])
def test_unreadable_files_are_one_line_errors(tmp_path, content, message):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    run = coach("analyze", bad)
    assert run.returncode == 1 and message in run.stderr and run.stderr.count("\n") == 1


def test_a_reader_that_stops_early_is_no_error(short_call):
    path, _ = short_call
    run = subprocess.run(f"{sys.executable} -m coach analyze {path} --jsonl | head -1", shell=True,
                         capture_output=True, text=True, timeout=300)
    assert json.loads(run.stdout)["type"] == "transcript"
    assert "Traceback" not in run.stderr and "Error" not in run.stderr


def test_a_recording_analysed_with_store_is_kept_for_qa_like_a_live_call(short_call, tmp_path):
    from coach.audio.files import read_blocks
    from coach.store import open_store

    path, timeline = short_call
    run = coach("analyze", path, "--jsonl", "--store", "--data-dir", tmp_path, "--agent-id", "ana")
    assert run.returncode == 0, run.stderr
    printed = [json.loads(line) for line in run.stdout.splitlines()]
    store = open_store(tmp_path)
    call = store.call(path.stem)
    assert (call.state, call.source, call.agent_id) == ("ended", "recording", "ana")
    assert [{k: v for k, v in e.items() if k != "seq"} for e in store.events(path.stem)] == printed  # every event, in order
    kept = np.concatenate(list(read_blocks(store.audio_path(path.stem))))
    original = np.concatenate(list(read_blocks(path)))
    assert kept.shape == original.shape and np.abs(kept - original).max() < 2e-4  # lossless, channels as recorded
    store.close()
    again = coach("analyze", path, "--store", "--data-dir", tmp_path)
    assert again.returncode == 1 and "already kept" in again.stderr and "--call-id" in again.stderr


def test_a_card_number_read_aloud_is_not_kept_in_the_store_nor_heard_in_the_kept_recording(tmp_path):
    """The real speech model hears a card number read out digit by digit; what is kept holds
    neither its digits nor its sound (issue 7)."""
    from coach.demo import Turn, synthesize_call
    from coach.store import open_store

    card = "4539 1488 0343 6467"
    spoken = ", ".join(" ".join(group) for group in card.split())  # "4 5 3 9, 1 4 8 8, ..."
    turns = (
        Turn("agent", "Could I take the long number on the front of your card, please?", 0.5),
        Turn("customer", f"Yes, it's {spoken}."),
        Turn("agent", "Thank you, that's all I need."),
    )
    stereo, timeline = synthesize_call(turns)
    path = write_wav(tmp_path / "card-call.wav", stereo)
    run = coach("analyze", path, "--jsonl", "--store", "--data-dir", tmp_path / "data")
    assert run.returncode == 0, run.stderr
    printed = [json.loads(line) for line in run.stdout.splitlines()]
    heard = " ".join(e["text"] for e in printed if e["type"] == "transcript" and e["final"] and e["speaker"] == "customer")
    assert sum(ch.isdigit() for ch in heard) >= 8, heard  # the model did hear the number (the printed output is the caller's own)
    store = open_store(tmp_path / "data")
    kept = store.events(path.stem)
    customer = [e["text"] for e in kept if e["type"] == "transcript" and e["speaker"] == "customer"]
    assert customer and not any(ch.isdigit() for text in customer for ch in text), customer
    assert any("[card number]" in text for text in customer)
    recording = np.concatenate(list(read_blocks(store.audio_path(path.stem))))
    store.close()
    said = timeline[1]
    inside = recording[int((said["start"] + 0.3) * 16000) : int((said["end"] - 0.3) * 16000)]
    assert np.abs(inside[:, 1]).max() == 0.0  # the customer's reading is silenced
    assert np.abs(recording[: int(timeline[0]["end"] * 16000), 0]).max() > 0.05  # the agent's question is kept
