"""Fuzzing every ingest protocol and REST input with hypothesis (issue 7): no input makes a server
error, and a call streaming meanwhile comes out whole. ``benchmarks/reliability_bench.py`` runs the
same with more inputs and reports the figures (docs/reliability.md)."""

import pytest

from tests.fuzzing import PROTOCOLS, TrapTranscriber, fuzz_all, server_in_thread

EXAMPLES = {"twilio": 150, "audio": 150, "audiohook": 150, "rest": 150, "flood": 40, "transcripts": 60}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_input_makes_a_server_error_or_disturbs_another_call(tmp_path, protocol):
    """Issue 27 adds single-track starts (in ``twilio``), tokenless floods (``flood``: a clean close and
    at most 2 kB of log per input) and transcripts built to trip regular expressions (``transcripts``)."""
    trap = TrapTranscriber()
    with server_in_thread(tmp_path, connections_per_minute=0, transcriber=trap) as (live, loop):
        tally, (whole, state) = fuzz_all(live, loop, examples=EXAMPLES[protocol], strict=True, protocols=(protocol,), trap=trap)
    assert tally.tried[protocol] >= EXAMPLES[protocol]
    assert tally.server_errors == []
    assert whole, state
