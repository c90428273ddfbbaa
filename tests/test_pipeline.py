"""A call through the streaming pipeline with fake models: what the event stream promises."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from coach.asr.scheduler import AsrScheduler
from coach.audio.frames import CallLayout
from coach.config import AsrSettings
from coach.pipeline import CallPipeline, feed_in_lockstep
from tests.fakes import EnergyVad, ToneTranscriber, silence, tone


def stereo(agent: np.ndarray, customer: np.ndarray) -> np.ndarray:
    n = max(agent.size, customer.size)
    out = np.zeros((n, 2), np.float32)
    out[: agent.size, 0], out[: customer.size, 1] = agent, customer
    return out


async def blocks_of(audio: np.ndarray, seconds: float = 1.0):
    step = int(seconds * 16000)
    for i in range(0, audio.shape[0], step):
        yield audio[i : i + step]


async def analyze(audio: np.ndarray, layout=CallLayout.stereo(), **settings):
    events = []
    transcriber = ToneTranscriber()
    scheduler = AsrScheduler(transcriber, workers=2)
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(layout, scheduler, AsrSettings(**settings), events.append, vad_executor, EnergyVad)
        await feed_in_lockstep(pipeline, blocks_of(audio))
    scheduler.close()
    return [e.to_dict() for e in events], transcriber


# the agent says three phrases with short pauses (one utterance, three chunks); the customer then answers
AGENT = np.concatenate([silence(0.5), tone(300, 2.0), silence(0.25), tone(400, 2.0), silence(0.25), tone(500, 2.0), silence(3.5)])
CUSTOMER = np.concatenate([silence(7.5), tone(600, 1.0), silence(1.0)])


async def test_each_party_gets_interims_while_speaking_then_one_final():
    events, _ = await analyze(stereo(AGENT, CUSTOMER))
    agent = [e for e in events if e["speaker"] == "agent"]
    interims = [e for e in agent if not e["final"]]
    finals = [e for e in agent if e["final"]]
    assert len(finals) == 1
    words = finals[0]["text"].split()
    assert [w for i, w in enumerate(words) if i == 0 or words[i - 1] != w] == ["w3", "w4", "w5"]  # in order, no repeats
    assert all(7 <= words.count(w) <= 9 for w in ("w3", "w4", "w5"))  # 2 s each: nothing heard twice or lost
    assert interims and interims[0]["at"] < 7.0  # words on screen while the agent is still talking (until 7.0 s)
    assert all(e["id"] == finals[0]["id"] for e in interims)
    assert all(i["at"] <= finals[0]["at"] for i in interims)
    customer = [e for e in events if e["speaker"] == "customer" and e["final"]]
    assert len(customer) == 1 and set(customer[0]["text"].split()) == {"w6"}


async def test_finals_arrive_soon_after_the_speech_ends():
    events, _ = await analyze(stereo(AGENT, CUSTOMER), min_silence=0.5)
    for final in (e for e in events if e["final"]):
        assert 0 < final["at"] - final["end"] <= 0.7


async def test_at_is_audio_time_and_never_goes_back():
    events, _ = await analyze(stereo(AGENT, CUSTOMER))
    ats = [e["at"] for e in events]
    assert ats == sorted(ats)
    assert ats[-1] <= AGENT.size / 16000 + 1e-6


async def test_redecode_mode_transcribes_the_whole_utterance_again_for_the_final():
    events, transcriber = await analyze(stereo(AGENT, CUSTOMER), final_mode="redecode", interim_beam_size=1, beam_size=5)
    final = next(e for e in events if e["final"] and e["speaker"] == "agent")
    assert final["text"].split()[:8] == ["w3"] * 8
    longest = max(seconds for seconds, options in transcriber.calls if options.beam_size == 5)
    assert longest >= 6.0  # the final saw the whole utterance


async def test_the_final_is_decoded_at_a_short_pause_and_shown_before_the_utterance_is_known_to_be_over():
    events, transcriber = await analyze(stereo(AGENT, CUSTOMER), early_pause=0.4, min_silence=0.7)
    final = next(e for e in events if e["final"] and e["speaker"] == "customer")
    early = [e for e in events if not e["final"] and e["speaker"] == "customer"]
    assert early and early[-1]["text"] == final["text"] and early[-1]["end"] == final["end"]
    assert 0.4 <= early[-1]["at"] - final["end"] < 0.6 <= final["at"] - final["end"]  # before the 0.7 s endpoint
    # the early decode became the final: the customer's one second of speech was decoded once
    assert sum(1 for seconds, options in transcriber.calls if options.beam_size == 5 and seconds < 2.5) == 1


async def test_when_the_party_goes_on_after_the_short_pause_the_final_covers_all_of_it():
    # a 0.5 s pause: long enough for the early decode, too short to end the utterance
    customer = np.concatenate([silence(0.5), tone(600, 1.0), silence(0.5), tone(700, 1.0), silence(1.5)])
    events, transcriber = await analyze(stereo(silence(customer.size / 16000), customer), early_pause=0.4, min_silence=0.7)
    finals = [e for e in events if e["final"]]
    assert len(finals) == 1 and set(finals[0]["text"].split()) == {"w6", "w7"}
    interims = [e for e in events if not e["final"]]
    assert set(interims[0]["text"].split()) == {"w6"}  # shown at the pause, then replaced


async def test_a_phrase_rule_fires_on_the_early_interim_once_before_the_final():
    from tests.fakes import PhraseTranscriber

    phrases = {300: "Thanks for calling.", 500: "I want to speak to your manager right now."}
    events = []
    scheduler = AsrScheduler(PhraseTranscriber(phrases), workers=2)
    audio = stereo(np.concatenate([silence(0.5), tone(300, 1.5), silence(5.0)]), np.concatenate([silence(3.0), tone(500, 1.5), silence(2.5)]))
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(early_pause=0.4), events.append, vad_executor, EnergyVad)
        await feed_in_lockstep(pipeline, blocks_of(audio))
    scheduler.close()
    [signal] = [e for e in events if e.type == "signal"]
    final = next(e for e in events if e.type == "transcript" and e.final and e.speaker == "customer")
    assert signal.label == "escalation_request" and signal.at < final.at  # on the interim, not again on the final
    assert signal.at - final.end < 0.6


async def test_without_interims_only_finals_are_emitted():
    events, _ = await analyze(stereo(AGENT, CUSTOMER), interims=False)
    assert events and all(e["final"] for e in events)


async def test_mono_call_is_one_mixed_party():
    mono = (AGENT + np.pad(CUSTOMER, (0, AGENT.size - CUSTOMER.size)))[:, None]
    events, _ = await analyze(mono, layout=CallLayout.mono())
    assert {e["speaker"] for e in events} == {"mixed"}


async def test_a_call_that_ends_mid_sentence_still_gets_its_final():
    cut = stereo(np.concatenate([silence(0.5), tone(300, 2.0)]), silence(2.5))
    events, _ = await analyze(cut)
    finals = [e for e in events if e["final"]]
    assert len(finals) == 1 and finals[0]["text"].startswith("w3")


async def test_a_call_with_nobody_speaking_emits_nothing():
    events, _ = await analyze(stereo(silence(5.0), silence(5.0)))
    assert events == []


async def test_finals_are_prompted_with_what_was_said_before_in_the_call():
    events, transcriber = await analyze(stereo(AGENT, CUSTOMER), interims=False, context="call")
    agent_final = next(e for e in events if e["final"] and e["speaker"] == "agent")
    assert transcriber.contexts[0] == ""  # nothing said yet
    assert transcriber.contexts[-1] == agent_final["text"][-len(transcriber.contexts[-1]) :]  # the customer hears the agent's words


class SlowToneTranscriber(ToneTranscriber):
    """Takes a while, so that live audio keeps arriving while it works."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def transcribe(self, audio, options, context=""):
        import time

        time.sleep(self.seconds)  # stands for model compute in the ASR thread, not for synchronisation
        return super().transcribe(audio, options, context)


async def test_live_feeding_that_outruns_the_model_still_gets_every_final():
    # the call drops while the agent is mid-sentence and an interim is still being worked on
    audio = stereo(AGENT[: int(6.6 * 16000)], CUSTOMER[: int(6.6 * 16000)])
    events = []
    scheduler = AsrScheduler(SlowToneTranscriber(0.05), workers=1)
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(), events.append, vad_executor, EnergyVad)
        for i in range(0, audio.shape[0], 1536):  # 96 ms frames, pushed without waiting for transcripts
            await pipeline.push(audio[i : i + 1536])
        await pipeline.finish()
        await pipeline.aclose()
    scheduler.close()
    finals = {e.speaker: e.text for e in events if e.final}
    words = finals["agent"].split()
    assert [w for i, w in enumerate(words) if i == 0 or words[i - 1] != w] == ["w3", "w4", "w5"]


async def test_a_monologue_puts_up_a_stop_sign_while_the_agent_talks_and_takes_it_down_after():
    from coach.playbook import PromptPolicy, load_playbook

    phrase = np.concatenate([tone(300, 4.7), silence(0.3)])
    agent = np.concatenate([silence(3.0), np.tile(phrase, 8), silence(3.0)])  # 40 s of talk, 3 s to 43 s
    customer = np.concatenate([tone(600, 2.0), silence(agent.size / 16000 - 2.0)])
    events = []
    scheduler = AsrScheduler(ToneTranscriber(), workers=2)
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(interims=False), events.append,
                                vad_executor, EnergyVad, policy=PromptPolicy(load_playbook()))
        await feed_in_lockstep(pipeline, blocks_of(stereo(agent, customer)))
    scheduler.close()
    wire = [e.to_dict() for e in events]
    sign = next(e for e in wire if e["type"] == "prompt")
    assert sign["kind"] == "stop_sign" and sign["signals"] == ["over_explaining"]
    assert 32.5 <= sign["at"] <= 34.0  # 30 s into the agent's turn, which began at 3 s
    cleared = next(e for e in wire if e["type"] == "prompt_cleared")
    assert cleared["id"] == sign["id"] and 43.0 <= cleared["at"] <= 44.5  # once the agent has stopped


async def test_a_long_utterance_shows_its_last_words_at_the_short_pause_before_the_whole_decode():
    # three chunks of one utterance (AGENT): at the end, the words after the last chunk are decoded alone first
    events, transcriber = await analyze(stereo(AGENT, CUSTOMER), early_pause=0.4, min_silence=0.7)
    agent = [e for e in events if e["speaker"] == "agent"]
    final = next(e for e in agent if e["final"])
    at_pause = [e for e in agent if not e["final"] and e["end"] == final["end"]]
    assert at_pause and "w5" in at_pause[0]["text"].split()  # the last words, shown before the final
    assert at_pause[0]["at"] < final["at"]
    tails = [seconds for seconds, options in transcriber.calls if options.beam_size == 1 and seconds < 3.5]
    assert tails  # the tail alone (about 2 s of speech and its pad), greedy


class LoadedScheduler(AsrScheduler):
    """Reports the model as falling behind for the first ``busy_for`` chunks that ask."""

    def __init__(self, transcriber, busy_for: int) -> None:
        super().__init__(transcriber, workers=2)
        self.busy_for = busy_for

    @property
    def wants_interims(self) -> bool:
        self.busy_for -= 1
        return self.busy_for < 0


async def test_under_load_interims_come_less_often_and_cover_the_words_skipped():
    # one utterance of four 2 s phrases: two chunks (cut at the pauses once 3 s long), then the final
    phrases = [np.concatenate([tone(f, 2.0), silence(0.25)]) for f in (300, 400, 500, 600)]
    agent = np.concatenate([silence(0.5), *phrases, silence(3.0)])
    transcriber = ToneTranscriber()
    scheduler = LoadedScheduler(transcriber, busy_for=1)
    events = []
    with ThreadPoolExecutor(1) as vad_executor:
        pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(), events.append, vad_executor, EnergyVad)
        await feed_in_lockstep(pipeline, blocks_of(stereo(agent, silence(agent.size / 16000))))
    scheduler.close()
    assert scheduler.interims_deferred == 1
    interims = [e.text for e in events if not e.final]
    first = interims[0].split()
    assert [w for i, w in enumerate(first) if i == 0 or first[i - 1] != w] == ["w3", "w4", "w5", "w6"]  # both chunks' words, in one interim
    greedy = [seconds for seconds, options in transcriber.calls if options.beam_size == 1]
    assert len(greedy) == 1 and greedy[0] > 8.0  # one chunk decode, of both chunks' audio
    final = next(e.text for e in events if e.final).split()
    assert [w for i, w in enumerate(final) if i == 0 or final[i - 1] != w] == ["w3", "w4", "w5", "w6"]


class GatedToneTranscriber(ToneTranscriber):
    def __init__(self) -> None:
        super().__init__()
        import threading

        self.gate = threading.Event()

    def transcribe(self, audio, options, context=""):
        self.gate.wait()
        return super().transcribe(audio, options, context)


async def test_audio_counts_as_analysed_only_once_the_utterances_before_it_have_their_finals():
    transcriber = GatedToneTranscriber()
    scheduler = AsrScheduler(transcriber, workers=2)
    events = []
    audio = stereo(AGENT, CUSTOMER[: AGENT.size])  # the agent speaks 0.5-7.0 s; the customer answers at 7.5 s
    try:
        with ThreadPoolExecutor(1) as vad_executor:
            pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(), events.append, vad_executor, EnergyVad)
            for i in range(0, audio.shape[0], 1536):  # live: pushed without waiting for the model
                await pipeline.push(audio[i : i + 1536])
            assert pipeline.consumed > 10.0
            assert 6.9 <= pipeline.caught_up_to <= 7.2  # the model holds the agent's final
            transcriber.gate.set()
            await pipeline.finish()
            assert pipeline.caught_up_to == pipeline.consumed
            await pipeline.aclose()
    finally:
        transcriber.gate.set()
        scheduler.close()
    assert any(e.final and e.speaker == "agent" for e in events)


async def test_a_timing_cue_the_playbook_switched_off_raises_nothing_and_the_signal_names_its_rule():
    from coach.playbook import PromptPolicy, load_playbook

    phrase = np.concatenate([tone(300, 4.7), silence(0.3)])
    agent = np.concatenate([silence(3.0), np.tile(phrase, 7), silence(1.0)])  # 35 s of talk: past the 30 s monologue
    customer = np.concatenate([tone(600, 2.0), silence(agent.size / 16000 - 2.0)])
    wire = {}
    for off in ([], ["over_explaining.timing"]):
        events = []
        scheduler = AsrScheduler(ToneTranscriber(), workers=2)
        book = load_playbook().model_copy(update={"switched_off": off})
        with ThreadPoolExecutor(1) as vad_executor:
            pipeline = CallPipeline(CallLayout.stereo(), scheduler, AsrSettings(interims=False), events.append,
                                    vad_executor, EnergyVad, policy=PromptPolicy(book))
            await feed_in_lockstep(pipeline, blocks_of(stereo(agent, customer)))
        scheduler.close()
        wire[bool(off)] = [e.to_dict() for e in events]
    assert [e["rule"] for e in wire[False] if e["type"] == "signal"] == ["over_explaining.timing"]
    assert [e for e in wire[True] if e["type"] in ("signal", "prompt")] == []
