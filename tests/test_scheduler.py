"""The ASR scheduler: finals first, and interims never take the last free worker."""

import asyncio
import threading

import numpy as np

from coach.asr.scheduler import AsrScheduler
from coach.asr.transcriber import DecodeOptions, Transcription


class GatedTranscriber:
    """Each call reports that it started, then waits until the test opens the gate."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.gate = threading.Event()

    def transcribe(self, audio: np.ndarray, options: DecodeOptions, context: str = "") -> Transcription:
        self.loop.call_soon_threadsafe(self.started.put_nowait, context)
        self.gate.wait()
        return Transcription(context, -0.1, 0.0, 1.0, 1.0)


async def test_a_final_starts_at_once_while_interims_are_running():
    model = GatedTranscriber(asyncio.get_running_loop())
    scheduler = AsrScheduler(model, workers=2)
    audio = np.zeros(1600, np.float32)
    try:
        interims = [asyncio.create_task(scheduler.transcribe(audio, DecodeOptions(), final=False, audio_end=i, context=f"interim{i}")) for i in range(3)]
        assert await model.started.get() == "interim0"
        final = asyncio.create_task(scheduler.transcribe(audio, DecodeOptions(), final=True, audio_end=9, context="final"))
        assert await model.started.get() == "final"  # the second worker was kept for it
        assert model.started.empty()  # the other interims wait
        model.gate.set()
        assert (await final).text == "final"
        assert [t.text for t in await asyncio.gather(*interims)] == ["interim0", "interim1", "interim2"]
    finally:
        model.gate.set()
        scheduler.close()


async def test_under_load_a_stale_interim_is_dropped_and_a_final_never_is():
    model = GatedTranscriber(asyncio.get_running_loop())
    now = [0.0]
    scheduler = AsrScheduler(model, workers=1, shed_interims_after=1.0, clock=lambda: now[0])
    audio = np.zeros(1600, np.float32)
    try:
        busy = asyncio.create_task(scheduler.transcribe(audio, DecodeOptions(), final=True, audio_end=1, context="busy"))
        assert await model.started.get() == "busy"
        stale = asyncio.create_task(scheduler.transcribe(audio, DecodeOptions(), final=False, audio_end=2, context="interim"))
        late_final = asyncio.create_task(scheduler.transcribe(audio, DecodeOptions(), final=True, audio_end=3, context="final"))
        while scheduler.queued < 2:  # until both tasks have queued their jobs
            await asyncio.sleep(0)
        now[0] = 5.0  # both have waited 5 s behind the busy worker
        model.gate.set()
        assert (await busy).text == "busy" and (await late_final).text == "final"
        try:
            await stale
            raise AssertionError("the stale interim ran")
        except asyncio.CancelledError:
            pass
        assert scheduler.interims_shed == 1
    finally:
        model.gate.set()
        scheduler.close()
