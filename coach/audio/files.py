"""Recorded calls: any format FFmpeg reads (WAV, FLAC, MP3, OGG, ...), any rate, mono or stereo.

The file is decoded and resampled to 16 kHz float32 block by block, so a long recording never sits
in memory whole and ``coach analyze`` consumes it the way a live call arrives.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coach.audio.frames import SAMPLE_RATE, CallLayout
from coach.errors import AudioInputError


@dataclass(frozen=True)
class RecordingInfo:
    path: Path
    channels: int
    sample_rate: int
    duration: float | None  # from the header; None when the container does not say


def _open(path: Path):
    import av

    if not path.exists():
        raise AudioInputError(f"{path}: no such file")
    if path.is_dir():
        raise AudioInputError(f"{path} is a folder, not a recording")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{path} is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioInputError(f"{path} is not a readable audio file ({_ffmpeg_reason(exc)})") from None
    if not container.streams.audio:
        container.close()
        raise AudioInputError(f"{path} has no audio stream")
    return container


def _ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _wav_declared_seconds(path: Path) -> float | None:
    """What a RIFF/WAVE header says the data lasts; FFmpeg measures the file instead, which hides truncation."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            byte_rate = None
            while chunk := f.read(8):
                if len(chunk) < 8:
                    return None
                name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"fmt ":
                    fmt = f.read(size + size % 2)
                    byte_rate = struct.unpack("<I", fmt[8:12])[0] if len(fmt) >= 12 else None
                elif name == b"data":
                    if not byte_rate or size in (0, 0xFFFFFFFF):  # streamed WAVs leave the size unset
                        return None
                    return size / byte_rate
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None
    return None


def probe(path: Path) -> RecordingInfo:
    """Read the header: channel count, rate and duration. Refuses what the coach cannot use."""
    container = _open(path)
    try:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        declared = _wav_declared_seconds(path)
        if declared is not None:
            duration = declared
        info = RecordingInfo(path, channels, stream.codec_context.sample_rate, duration)
    finally:
        container.close()
    if channels not in (1, 2):
        raise AudioInputError(
            f"{path} has {channels} channels: the coach takes mono (one mixed channel) "
            "or stereo (agent and customer on separate channels)"
        )
    return info


def read_blocks(path: Path, block_seconds: float = 1.0) -> Iterator[np.ndarray]:
    """Yield ``(samples, channels)`` float32 blocks at 16 kHz, about ``block_seconds`` each.

    Blocking (file I/O and decoding): call it from a worker thread.
    """
    import av

    info = probe(path)
    layout = "mono" if info.channels == 1 else "stereo"
    container = _open(path)
    resampler = av.AudioResampler(format="flt", layout=layout, rate=SAMPLE_RATE)
    target = int(block_seconds * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    have = 0
    try:
        stream = container.streams.audio[0]
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1, info.channels))
                    have += out.samples
                if have >= target:
                    yield np.concatenate(pending)
                    pending, have = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1, info.channels))
        except av.error.FFmpegError as exc:
            raise AudioInputError(f"{path} is damaged and cannot be decoded past this point ({_ffmpeg_reason(exc)})") from None
        if pending:
            yield np.concatenate(pending)
    finally:
        container.close()


def call_layout(info: RecordingInfo, agent_channel: int) -> CallLayout:
    if info.channels == 1:
        return CallLayout.mono()
    if agent_channel not in (0, 1):
        raise AudioInputError(f"--agent-channel must be 0 (left) or 1 (right), not {agent_channel}")
    return CallLayout.stereo(agent_channel)
