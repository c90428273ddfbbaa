"""Telephony audio: G.711 mu-law, resampling chunk by chunk, and Twilio's two tracks on one timeline."""

import numpy as np

from coach.audio.telephony import Resampler, TrackAligner, mulaw_decode, mulaw_encode, pcm16_decode, pcm16_encode


def test_mulaw_decodes_the_g711_table():
    # 0xFF and 0x7F are the two zeros; 0x00 and 0x80 the loudest negative and positive codes
    assert mulaw_decode(bytes([0xFF, 0x7F, 0x00, 0x80])).tolist() == [0.0, 0.0, -32124 / 32768, 32124 / 32768]


def test_mulaw_round_trip_keeps_speech_level_audio_within_the_companding_step():
    t = np.arange(8000) / 8000
    audio = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    decoded = mulaw_decode(mulaw_encode(audio))
    assert np.abs(decoded - audio).max() < 0.02
    quiet = audio * 0.01  # quiet sounds keep fine steps: that is what mu-law is for
    assert np.abs(mulaw_decode(mulaw_encode(quiet)) - quiet).max() < 0.001


def test_pcm16_round_trip():
    audio = np.array([0.0, 0.5, -0.5, 0.999], np.float32)
    assert np.allclose(pcm16_decode(pcm16_encode(audio)), audio, atol=1 / 32768)


def test_resampling_8k_to_16k_in_20ms_chunks_keeps_length_and_pitch():
    t = np.arange(8000) / 8000
    audio = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    resampler = Resampler(8000, 1)
    out = np.concatenate([resampler(audio[i : i + 160]) for i in range(0, 8000, 160)] + [resampler.flush()])
    assert abs(out.shape[0] - 16000) <= 32
    spectrum = np.abs(np.fft.rfft(out[:, 0]))
    assert abs(np.argmax(spectrum) * 16000 / out.shape[0] - 300) < 5


def test_tracks_are_placed_by_timestamp_and_released_once_both_arrived():
    aligner = TrackAligner(("outbound", "inbound"), 8000)
    one = np.ones(160, np.float32)
    assert aligner.add("outbound", one, 0).shape == (0, 2)  # the customer's first chunk is not here yet
    both = aligner.add("inbound", -one, 0)
    assert both.shape == (160, 2) and (both[:, 0] == 1).all() and (both[:, 1] == -1).all()
    # a lost chunk (20-40 ms) is silence, not a shift of everything after it
    aligner.add("outbound", one, 40)
    out = aligner.add("inbound", -np.ones(320, np.float32), 20)
    assert out.shape == (320, 2)
    assert (out[:160, 0] == 0).all() and (out[160:, 0] == 1).all()


def test_a_silent_leg_does_not_stall_the_other():
    aligner = TrackAligner(("outbound", "inbound"), 8000, max_skew=0.5)
    released = sum(aligner.add("inbound", np.ones(160, np.float32), i * 20).shape[0] for i in range(100))  # 2 s
    assert released == 8000 * 2 - 4000  # everything but the last 0.5 s, the agent's track filled with silence
    rest = aligner.flush()
    assert rest.shape == (4000, 2) and (rest[:, 0] == 0).all()
    assert aligner.add("outbound", np.ones(160, np.float32), 0).shape == (0, 2)  # too late: already played as silence
