"""Streaming voice-activity detection with the Silero VAD model that faster-whisper ships.

One :class:`StreamingVad` per party keeps the model's recurrent state and the last few samples
between calls, so feeding a channel in pieces of any size gives the same speech probabilities as
faster-whisper's offline pass over the whole channel.
"""

from __future__ import annotations

import numpy as np

WINDOW = 512  # samples per probability at 16 kHz (32 ms)
WINDOW_SECONDS = WINDOW / 16_000
_CONTEXT = 64


class StreamingVad:
    def __init__(self, session=None) -> None:
        if session is None:
            from faster_whisper.vad import get_vad_model

            session = get_vad_model().session  # one ONNX session, shared by all parties
        self._session = session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of every complete 32 ms window the new samples finish."""
        audio = np.concatenate([self._pending, samples]) if self._pending.size else samples
        usable = audio.size - audio.size % WINDOW
        self._pending = audio[usable:].copy()
        if not usable:
            return np.zeros(0, dtype=np.float32)
        windows = audio[:usable].reshape(-1, WINDOW)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -_CONTEXT:]])
        self._context = windows[-1, -_CONTEXT:].copy()
        batch = np.concatenate([contexts, windows], axis=1).astype(np.float32, copy=False)
        out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
        return np.asarray(out, dtype=np.float32).reshape(-1)
