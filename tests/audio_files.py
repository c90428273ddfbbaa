"""Write test recordings in the formats contact centres hand us (PyAV encoders)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

CODECS = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".ogg": "libopus"}


def write_audio(path: Path, samples: np.ndarray, rate: int, codec: str | None = None) -> Path:
    """``samples``: (n,) or (n, channels) float32 in [-1, 1]."""
    if samples.ndim == 1:
        samples = samples[:, None]
    channels = samples.shape[1]
    codec = codec or CODECS[path.suffix]
    out_rate = 48000 if codec == "libopus" else rate  # opus only runs at 48 kHz
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=out_rate)
        stream.layout = "mono" if channels == 1 else "stereo"
        resampler = av.AudioResampler(format=stream.format.name, layout=stream.layout.name, rate=out_rate)
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.reshape(1, -1)), format="s16", layout=stream.layout.name)
        frame.sample_rate = rate
        for out in resampler.resample(frame):
            for packet in stream.encode(out):
                container.mux(packet)
        for out in resampler.resample(None):
            for packet in stream.encode(out):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
