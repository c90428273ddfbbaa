"""Recordings in: any common format and rate, mono or stereo, and clear refusals of bad files."""

import numpy as np
import pytest

from coach.audio.files import call_layout, probe, read_blocks
from coach.errors import AudioInputError
from tests.audio_files import write_audio
from tests.fakes import tone


def two_tones(rate: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 1000 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


def dominant_hz(x: np.ndarray) -> float:
    return np.argmax(np.abs(np.fft.rfft(x))) * 16000 / x.size


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg"])
@pytest.mark.parametrize("rate", [8000, 44100])
def test_stereo_recordings_decode_to_16k_with_each_party_on_its_channel(tmp_path, suffix, rate):
    path = write_audio(tmp_path / f"call{suffix}", two_tones(rate), rate)
    info = probe(path)
    assert info.channels == 2
    audio = np.concatenate(list(read_blocks(path)))
    assert audio.shape[1] == 2
    assert audio.shape[0] / 16000 == pytest.approx(2.0, abs=0.1)
    parties = call_layout(info, agent_channel=0).split(audio[4000:20000])
    assert dominant_hz(parties["agent"]) == pytest.approx(440, abs=5)
    assert dominant_hz(parties["customer"]) == pytest.approx(1000, abs=5)


def test_agent_channel_swaps_the_parties(tmp_path):
    path = write_audio(tmp_path / "call.wav", two_tones(16000), 16000)
    audio = np.concatenate(list(read_blocks(path)))
    parties = call_layout(probe(path), agent_channel=1).split(audio)
    assert dominant_hz(parties["agent"]) == pytest.approx(1000, abs=5)


def test_telephone_mulaw_wav_is_read(tmp_path):
    path = write_audio(tmp_path / "phone.wav", tone(440, 1.0)[::2], 8000, codec="pcm_mulaw")
    audio = np.concatenate(list(read_blocks(path)))
    assert audio.shape == (pytest.approx(16000, abs=200), 1)
    assert call_layout(probe(path), 0).parties == (("mixed", 0),)


def test_long_recordings_come_in_blocks(tmp_path):
    path = write_audio(tmp_path / "long.flac", two_tones(16000, seconds=5.0), 16000)
    blocks = list(read_blocks(path, block_seconds=1.0))
    assert len(blocks) >= 4


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("account,balance\n1,2\n"), "not a readable audio file"),
        (lambda p: None, "no such file"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, make, message):
    path = tmp_path / "call.wav"
    make(path)
    with pytest.raises(AudioInputError, match=message):
        probe(path)


def test_more_than_two_channels_is_refused(tmp_path):
    three = np.zeros((16000, 3), np.float32)
    path = tmp_path / "three.wav"
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(3)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((three * 0).astype("<i2").tobytes())
    with pytest.raises(AudioInputError, match="3 channels"):
        probe(path)
