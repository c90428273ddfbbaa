"""A bundled example call, spoken by espeak-ng: for ``make run``, demos and the tests.

The script is the project's own. Each turn is synthesized on its party's channel (agent left,
customer right) at its scripted time, so the result looks like a two-channel call recording.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coach.errors import CoachError

RATE = 16_000
VOICES = {"agent": "en-us+f3", "customer": "en-gb+m3"}


@dataclass(frozen=True)
class Turn:
    speaker: str  # "agent" or "customer"
    text: str
    gap: float = 0.7  # seconds after the previous turn ended (negative: overlap)


EXAMPLE_CALL = (
    Turn("agent", "Thanks for calling Northwind Mobile, this is Priya. How can I help today?", 0.5),
    Turn("customer", "Hi. My bill this month is twice what it normally is, and I have no idea why."),
    Turn("agent", "I'm sorry to hear that. Can you give me the account number, please?"),
    Turn("customer", "It's seven one two, four four nine. And honestly, this is the second time I have called about it."),
    Turn("agent", "Thank you. I can see a roaming charge from last week, from your trip abroad."),
    Turn("customer", "Nobody told me roaming wasn't included. I want to speak to your manager."),
    Turn("agent", "I understand. My supervisor is on another call, so let me take the details and arrange a call back at a time that suits you."),
    Turn("customer", "Fine. Tomorrow morning at ten works for me."),
    Turn("agent", "Done. I have also removed the roaming charge while we look into it. Is there anything else?"),
    Turn("customer", "No, that's all. Thank you."),
)


def speak(text: str, voice: str, speed: int = 160) -> np.ndarray:
    """One utterance as 16 kHz float32 samples."""
    if shutil.which("espeak-ng") is None:
        raise CoachError("espeak-ng is needed to make the example call: `apt-get install espeak-ng` (or `make system-deps`)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "turn.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    if rate != RATE:  # espeak-ng speaks at 22.05 kHz: resample by linear interpolation, plenty for tests
        t = np.arange(int(pcm.size * RATE / rate)) * (rate / RATE)
        pcm = np.interp(t, np.arange(pcm.size), pcm).astype(np.float32)
    return pcm


def synthesize_call(turns, lead_out: float = 1.0) -> tuple[np.ndarray, list[dict]]:
    """Return ``(samples, 2)`` float32 stereo (agent left) and each turn's start and end time."""
    tracks: dict[str, list[tuple[int, np.ndarray]]] = {"agent": [], "customer": []}
    timeline, cursor = [], 0.0
    for turn in turns:
        audio = speak(turn.text, VOICES[turn.speaker])
        start = max(0.0, cursor + turn.gap)
        tracks[turn.speaker].append((int(start * RATE), audio))
        end = start + audio.size / RATE
        timeline.append({"speaker": turn.speaker, "text": turn.text, "start": round(start, 3), "end": round(end, 3)})
        cursor = max(cursor, end)
    stereo = np.zeros((int((cursor + lead_out) * RATE), 2), dtype=np.float32)
    for channel, speaker in enumerate(("agent", "customer")):
        for offset, audio in tracks[speaker]:
            stereo[offset : offset + audio.size, channel] += audio
    return stereo, timeline


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def main(argv: list[str] | None = None) -> int:
    import sys

    out = Path((argv or sys.argv[1:] or ["examples/example-call.wav"])[0])
    stereo, _ = synthesize_call(EXAMPLE_CALL)
    write_wav(out, stereo)
    print(f"wrote {out} ({stereo.shape[0] / RATE:.1f} s, agent left, customer right)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
