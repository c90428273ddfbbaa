"""Fuzzing every ingest protocol and REST input with hypothesis (issue 7): no input makes a server
error, and a call streaming meanwhile comes out whole. ``benchmarks/reliability_bench.py`` runs the
same with more inputs and reports the figures (docs/reliability.md)."""

import pytest

from tests.fuzzing import fuzz_all, server_in_thread


@pytest.mark.parametrize("protocol", ["twilio", "audio", "rest"])
def test_no_input_makes_a_server_error_or_disturbs_another_call(tmp_path, protocol):
    with server_in_thread(tmp_path, connections_per_minute=0) as (live, loop):
        tally, (whole, state) = fuzz_all(live, loop, examples=150, strict=True, protocols=(protocol,))
    assert tally.tried[protocol] >= 150
    assert tally.server_errors == []
    assert whole, state
