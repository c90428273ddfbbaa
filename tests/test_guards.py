"""Guards against Whisper's failure modes on short windows."""

from coach.asr.streaming import accept
from coach.asr.transcriber import Transcription, compression_ratio, has_repeated_phrase, has_repetition_loop, window_for


def test_repetition_loops_are_caught():
    assert has_repetition_loop("thank you thank you thank you")
    assert has_repetition_loop("I I I want a refund")
    assert not has_repetition_loop("I want a refund, I want it now")


def test_looping_text_compresses_too_well():
    assert compression_ratio("the bill the bill " * 20) > 2.0
    assert compression_ratio("My bill this month is twice what it normally is.") < 2.0


def test_window_is_sized_to_the_speech_plus_margin_and_capped():
    assert window_for(3.2, 4.0) == 8.0
    assert window_for(0.3, 0.0) == 2.0
    assert window_for(29.0, 4.0) == 30.0


def test_made_up_text_on_noise_is_dropped():
    assert not accept(Transcription("Thank you.", -1.4, 0.9, 1.0, 5.0), seconds=4.0)
    assert accept(Transcription("Thank you.", -0.3, 0.9, 1.0, 5.0), seconds=4.0)
    assert not accept(Transcription("", -0.1, 0.0, 0.0, 5.0), seconds=4.0)


def test_a_short_burst_heard_with_little_confidence_is_dropped_but_long_speech_is_kept():
    unsure = Transcription("that it's your favourite thing", -1.1, 0.1, 1.0, 10.0)
    assert not accept(unsure, seconds=1.5)
    assert accept(unsure, seconds=6.0)


def test_conversation_gives_the_last_words_in_order():
    from coach.asr.streaming import Conversation

    talk = Conversation(max_words=6)
    talk.add("agent", "which account is it")
    talk.add("customer", "my checking account")
    assert talk.recent() == "account is it my checking account"
    assert talk.recent("agent") == "which account is it"


def test_a_phrase_said_twice_in_one_utterance_is_suspect():
    assert has_repeated_phrase("Give me one moment. Give me one moment.")
    assert has_repeated_phrase("Hello, this is Harper bank. How can I help? Hello, this is Harper")
    assert not has_repeated_phrase("I would like to reset my password, please reset it today")


def test_an_interim_loop_is_cut_to_what_was_said():
    from coach.asr.transcriber import cut_repeats

    assert cut_repeats("Starting the whole thing from scratch. Starting the whole thing from scratch. Starting the") == (
        "Starting the whole thing from scratch."
    )
    assert cut_repeats("And what does to to to the reading?") == "And what does to the reading?"
    assert cut_repeats("thank you thank you thank you thank you") == "thank you"
    assert cut_repeats("no no, I want a refund, I want it now") == "no no, I want a refund, I want it now"


def test_interims_cut_their_loops_and_finals_retry_them_in_a_whole_window():
    from coach.asr.transcriber import DecodeOptions, WhisperTranscriber

    class Looping(WhisperTranscriber):
        def __init__(self):
            self.windows = []

        def _decode(self, audios, window, options, contexts):
            self.windows.append(window)
            text = "I sent it twice. I sent it twice. I sent it" if window < 30 else "I sent it twice."
            return [Transcription(text, -0.2, 0.0, compression_ratio(text), window) for _ in audios]

    import numpy as np

    audio = np.zeros(16000 * 3, np.float32)
    model = Looping()
    interim = model.transcribe(audio, DecodeOptions(beam_size=1, retry_loops=False))
    assert (interim.text, interim.retried, model.windows) == ("I sent it twice.", False, [7.0])
    final = model.transcribe(audio, DecodeOptions())
    assert (final.text, final.retried, model.windows[1:]) == ("I sent it twice.", True, [7.0, 30.0])
