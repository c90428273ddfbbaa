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

    def transcribe_batch(self, requests, options: DecodeOptions) -> list[Transcription]:
        self.loop.call_soon_threadsafe(self.started.put_nowait, "+".join(context for _, context in requests))
        self.gate.wait()
        return [Transcription(context, -0.1, 0.0, 1.0, 1.0) for _, context in requests]


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


async def test_jobs_waiting_behind_a_busy_model_are_decoded_together_when_they_decode_alike():
    model = GatedTranscriber(asyncio.get_running_loop())
    scheduler = AsrScheduler(model, workers=1, max_batch=3)
    said = " ".join(["word"] * 30)  # a long context, as a call's last 40 words are

    finals = DecodeOptions(min_window=10.0)

    def job(seconds: float, context: str, end: float, options=finals, final=True):
        audio = np.zeros(int(seconds * 16000), np.float32)
        return asyncio.create_task(scheduler.transcribe(audio, options, final=final, audio_end=end, context=context))

    try:
        busy = job(1, "busy", 0, DecodeOptions())
        assert await model.started.get() == "busy"
        waiting = [
            job(3, f"a {said}", 1),  # windows of 10 s (the shortest), 10 s, 15 s: within 1.5x
            job(2, f"b {said}", 2),
            job(25, f"c {said}", 3),  # a 29 s window: not with the others
            job(11, f"d {said}", 4),
            job(2, "e", 5),  # a short context cannot be cut to a long one's length
            job(2, f"f {said}", 6, DecodeOptions(beam_size=1), final=False),  # decoded otherwise
        ]
        while scheduler.queued < len(waiting):
            await asyncio.sleep(0)
        model.gate.set()
        results = await asyncio.gather(busy, *waiting)
        assert [r.text.split()[0] for r in results] == ["busy", "a", "b", "c", "d", "e", "f"]  # each its own result
        started = []
        while not model.started.empty():
            started.append(model.started.get_nowait())
        assert [[c.split()[0] for c in batch.split("+")] for batch in started] == [["a", "b", "d"], ["c"], ["e"], ["f"]]
        assert (scheduler.batches, scheduler.batched_jobs) == (5, 7)
    finally:
        model.gate.set()
        scheduler.close()


class BadAudioTranscriber(GatedTranscriber):
    """Fails on any job whose context says "bad", and on any batch holding one."""

    def transcribe(self, audio, options, context=""):
        result = super().transcribe(audio, options, context)
        if "bad" in context:
            raise RuntimeError("the model choked on this audio")
        return result

    def transcribe_batch(self, requests, options):
        results = super().transcribe_batch(requests, options)
        if any("bad" in context for _, context in requests):
            raise RuntimeError("the model choked on this batch")
        return results


async def test_one_calls_bad_audio_in_a_batch_fails_only_that_call():
    model = BadAudioTranscriber(asyncio.get_running_loop())
    scheduler = AsrScheduler(model, workers=1, max_batch=4)
    audio = np.zeros(1600, np.float32)
    try:
        busy = asyncio.create_task(scheduler.transcribe(audio, DecodeOptions(), final=True, audio_end=1, context="busy"))
        assert await model.started.get() == "busy"
        jobs = [asyncio.create_task(scheduler.transcribe(audio, DecodeOptions(), final=True, audio_end=2 + i, context=c))
                for i, c in enumerate(["call A", "bad B", "call C"])]  # contexts alike: one batch
        while scheduler.queued < 3:  # until all three have queued their jobs
            await asyncio.sleep(0)
        model.gate.set()
        results = await asyncio.gather(*jobs, return_exceptions=True)
        await busy
        assert [r.text if not isinstance(r, Exception) else "failed" for r in results] == ["call A", "failed", "call C"]
        first_tries = [model.started.get_nowait() for _ in range(model.started.qsize())]
        assert first_tries[0] == "call A+bad B+call C"  # tried as one batch, then one by one
    finally:
        model.gate.set()
        scheduler.close()
