"""Faults inside the server (issue 7): one call's analysis fails, the other calls go on, and what
the failed call received is kept. (A vanished sender, a quiet stream and a killed server are in
test_server.py, test_access.py and test_store.py.)"""

import asyncio

import numpy as np

from coach.simulate import play_call
from tests.fakes import PhraseTranscriber, silence, stereo
from tests.live import ADMIN, PHRASES, running_server, said

POISON = 900  # the stand-in model fails on this tone


class FailingTranscriber(PhraseTranscriber):
    def transcribe(self, audio, options, context=""):
        heard = super().transcribe(audio, options, context)
        if heard.text == "POISON":
            raise RuntimeError("the model failed on this utterance")
        return heard


async def test_an_exception_in_one_calls_pipeline_ends_only_that_call_and_keeps_what_it_had(tmp_path):
    model = FailingTranscriber({**PHRASES, POISON: "POISON"})
    healthy = stereo(*[turn for _ in range(3) for turn in (("agent", said(300)), ("agent", silence(1.0)), ("customer", said(400)), ("customer", silence(1.0)))])
    doomed = stereo(("agent", said(300)), ("agent", silence(1.0)), ("customer", said(POISON)), ("customer", silence(1.0)),
                    ("agent", said(700)), ("agent", silence(1.0)))
    async with running_server(tmp_path, transcriber=model) as live:
        ingest = await live.token("ingest")
        calls = [play_call(live.url, healthy, token=ingest, call_id=f"OK{i}", speed=0) for i in range(2)]
        calls.append(play_call(live.url, doomed, token=ingest, call_id="BAD", speed=0))
        results = await asyncio.gather(*calls)
        assert [r.closed[0] for r in results] == [1000, 1000, 1000]  # the sender of the failed call is not cut off
        for call_id in ("OK0", "OK1"):
            status, kept = await live.request("GET", f"/api/calls/{call_id}")
            finals = [e["text"] for e in kept["events"] if e["type"] == "transcript" and e["final"]]
            assert finals == [PHRASES[300], PHRASES[400]] * 3 and kept["error"] is None
        status, bad = await live.request("GET", "/api/calls/BAD")
        assert status == 200 and bad["state"] == "ended" and "RuntimeError" in bad["error"]
        assert [e["text"] for e in bad["events"] if e["type"] == "transcript"][:1] == [PHRASES[300]]  # heard before the failure
        assert bad["events"][-1]["type"] == "error"
        assert bad["duration"] == np.float64(bad["duration"]) and abs(bad["duration"] - doomed.shape[0] / 16000) < 0.1  # all its audio kept
        status, metrics = await live.request("GET", "/healthz", token=ADMIN)
        assert status == 200 and live.app.state.coach.counters.errors["pipeline"] == 1
