"""Every call kept: the store round-trips calls, survives a crash, forgets old calls, and reports."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from coach.audio.files import read_blocks
from coach.report import build_report, format_report
from coach.store import CallExistsInStore, CallQuery, CallRecord, Review
from tests.fakes import silence, stereo
from tests.live import ADMIN, PHRASES, said
from tests.test_server import _twilio_media, _twilio_start

ROOT = Path(__file__).resolve().parent.parent


def signal_event(at, label, seq_hint=""):
    return {"type": "signal", "at": at, "label": label, "speaker": "customer", "start": at - 2, "end": at - 0.5, "score": 0.8, "evidence": seq_hint}


def test_a_call_round_trips_with_its_events_and_lossless_audio(store_at, tmp_path):
    store = store_at(tmp_path)
    store.begin(CallRecord("CA1", "ana", "live", "live", 1000.0))
    rng = np.random.default_rng(0)
    audio = (rng.integers(-20000, 20000, size=(16000 * 3, 2)) / 32767).astype(np.float32)
    store.append("CA1", [{"type": "transcript", "at": 1.0, "text": "hello", "final": True}], audio[:16000], {"risk": 10})
    store.append("CA1", [signal_event(2.5, "abuse"), {"type": "risk", "at": 2.5, "score": 55}], audio[16000:],
                 {"risk": 55, "labels": ["abuse"], "prompts": 1})
    assert store.call("CA1").state == "live" and store.audio_path("CA1") is None  # no recording until it ends
    store.end("CA1", {"risk": 30, "duration": 3.0})
    call = store.call("CA1")
    assert (call.state, call.risk, call.max_risk, call.flagged, call.labels, call.prompts) == ("ended", 30, 55, True, ["abuse"], 1)
    assert [e["seq"] for e in store.events("CA1")] == [0, 1, 2] and store.events("CA1")[1]["label"] == "abuse"
    kept = np.concatenate(list(read_blocks(store.audio_path("CA1"))))
    assert kept.shape == audio.shape and np.abs(kept - audio).max() < 1 / 16000  # lossless, to the 16-bit sample
    with pytest.raises(CallExistsInStore):
        store.begin(CallRecord("CA1", "bo", "live", "live", 2000.0))
    store.close()
    again = store_at(tmp_path)  # survives a restart
    assert again.call("CA1").labels == ["abuse"] and len(again.events("CA1")) == 3
    again.close()


def test_calls_are_found_by_flag_label_agent_date_and_risk(store_at, tmp_path):
    store = store_at(tmp_path)
    for i, (agent, labels, risk) in enumerate([("ana", ["abuse"], 80), ("bo", [], 5), ("ana", ["churn_threat", "abuse_x"], 40)]):
        store.begin(CallRecord(f"C{i}", agent, "live", "live", 1000.0 + i * 86400))
        store.append(f"C{i}", [], None, {"risk": risk, "labels": labels})
        store.end(f"C{i}", {})

    def ids(**query):
        return [c.call_id for c in store.calls(CallQuery(**query))]

    assert ids() == ["C2", "C1", "C0"]  # newest first
    assert ids(flagged=True) == ["C2", "C0"] and ids(flagged=False) == ["C1"]
    assert ids(label="abuse") == ["C0"]  # a whole label, not a prefix of another
    assert ids(agent_id="ana") == ["C2", "C0"] and ids(min_risk=50) == ["C0"]
    assert ids(since=1000.0 + 86400, until=1000.0 + 2 * 86400) == ["C1"]
    assert ids(limit=1, offset=1) == ["C1"]
    store.close()


def test_old_calls_are_deleted_with_their_recordings(store_at, tmp_path):
    store = store_at(tmp_path)
    for call_id, started in (("OLD", time.time() - 40 * 86400), ("NEW", time.time())):
        store.begin(CallRecord(call_id, None, "live", "live", started))
        store.append(call_id, [signal_event(1.0, "abuse")], np.zeros((1600, 2), np.float32), {"labels": ["abuse"]})
        store.end(call_id, {})
    old_audio = store.audio_path("OLD")
    store.add_review(Review("r1", "OLD", 0, "abuse", "right", None, "qa", time.time()))
    assert store.purge(time.time() - 30 * 86400) == 1
    assert store.call("OLD") is None and store.events("OLD") == [] and store.reviews("OLD") == [] and not old_audio.exists()
    assert store.call("NEW") is not None and store.audio_path("NEW").is_file()
    store.close()


def test_report_gives_flag_precision_from_reviews_prompts_per_call_and_risk_bands(store_at, tmp_path, capsys):
    store = store_at(tmp_path)
    for call_id, risk in (("A", 85), ("B", 10)):
        store.begin(CallRecord(call_id, "ana", "live", "live", time.time()))
        events = [signal_event(3.0, "escalation_request"), {"type": "prompt", "at": 3.0, "kind": "deescalate"},
                  signal_event(9.0, "dismissive_phrase")] if call_id == "A" else []
        store.append(call_id, events, None, {"risk": risk, "labels": [e["label"] for e in events if e["type"] == "signal"]})
        store.end(call_id, {})
    store.add_review(Review("r1", "A", 0, "escalation_request", "right", None, "qa", 1.0))
    store.add_review(Review("r2", "A", 2, "dismissive_phrase", "right", None, "qa", 2.0))
    store.add_review(Review("r3", "A", 2, "dismissive_phrase", "wrong", "a quote", "lead", 3.0))  # the later verdict counts
    report = build_report(store)
    figures = {f.label: f for f in report.labels}
    assert (figures["escalation_request"].flags, figures["escalation_request"].precision) == (1, 1.0)
    assert (figures["dismissive_phrase"].reviewed, figures["dismissive_phrase"].precision) == (1, 0.0)
    assert report.labels[0].label == "dismissive_phrase"  # the rule to tune comes first
    assert report.prompts_per_call == {"mean": 0.5, "median": 0.5, "max": 1}
    assert report.risk_bands == {"low (0-39)": 1, "mid (40-69)": 0, "high (70-100)": 1}
    assert "dismissive_phrase" in format_report(report)
    store.close()


def test_report_gives_qas_precision_per_rule_so_a_team_knows_which_to_switch_off(store_at, tmp_path):
    store = store_at(tmp_path)
    calls = {"R": ["churn_threat.exit_fee", "churn_threat.exit_fee", "churn_threat.im_cancelling", "churn_threat.meaning", None],
             "S": ["churn_threat.im_cancelling", "churn_threat.im_cancelling"]}  # the same seqs, other rules: joined by call and seq
    for call_id, rules in calls.items():
        store.begin(CallRecord(call_id, "ana", "live", "live", time.time()))
        events = [{**signal_event(3.0 + i, "churn_threat"), **({"rule": rule} if rule else {})} for i, rule in enumerate(rules)]
        store.append(call_id, events, None, {"labels": ["churn_threat"]})
        store.end(call_id, {})
    for seq, verdict in ((0, "wrong"), (1, "wrong"), (2, "right"), (3, "right"), (4, "right")):
        store.add_review(Review(f"r{seq}", "R", seq, "churn_threat", verdict, None, "qa", 1.0))
    store.add_review(Review("s0", "S", 0, "churn_threat", "right", None, "qa", 1.0))
    report = build_report(store)
    assert [(f.label, f.flags, f.reviewed, f.precision) for f in report.labels] == [("churn_threat", 7, 6, 4 / 6)]
    by_rule = {f.rule: (f.flags, f.reviewed, f.precision) for f in report.rules}
    assert by_rule == {"churn_threat.exit_fee": (2, 2, 0.0), "churn_threat.im_cancelling": (3, 2, 1.0),
                       "churn_threat.meaning": (1, 1, 1.0), "-": (1, 1, 1.0)}  # "-": flagged before rules had ids
    assert report.rules[0].rule == "churn_threat.exit_fee"  # the one misfiring comes first
    text = format_report(report)
    assert "flag precision by rule" in text and "churn_threat (no rule id)" in text
    assert report.to_dict()["rules"][0] == {"label": "churn_threat", "rule": "churn_threat.exit_fee", "flags": 2, "reviewed": 2,
                                            "right": 0, "wrong": 2, "precision": 0.0}
    store.close()


def test_a_database_from_before_versioned_migrations_is_brought_up_to_date_and_keeps_its_calls(tmp_path):
    import sqlite3

    from coach.store import MIGRATIONS, SqlCallStore

    old = sqlite3.connect(tmp_path / "calls.db")  # as the first release left it: schema 1, no version table
    for statement in MIGRATIONS[0]:
        old.execute(statement)
    old.execute("INSERT INTO calls VALUES ('OLD1', 'ana', 'live', 'ended', 1.0, 2.0, 1.0, 5, 5, 0, '', 0, 2, NULL, NULL)")
    old.commit()
    old.close()
    store = SqlCallStore(tmp_path)
    assert store.call("OLD1").state == "ended" and store.call("OLD1").node is None
    store.begin(CallRecord("NEW1", "bo", "live", "live", 3.0, node="A"))
    assert store.live_calls() == [("NEW1", "A")]
    store.close()
    version = sqlite3.connect(tmp_path / "calls.db").execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    assert version == len(MIGRATIONS)


def test_a_database_newer_than_this_coach_is_refused_in_one_line(store_at, tmp_path):
    from coach.store import StoreError

    store = store_at(tmp_path)
    with store._session():
        store._exec("INSERT INTO schema_version (version) VALUES (?)", (99,))
        store._db.commit()
    store.close()
    with pytest.raises(StoreError, match="schema is version 99, newer than this coach knows"):
        store_at(tmp_path)


def test_tokens_in_a_shared_database_work_on_every_node_and_a_revocation_holds_at_once(store_at, tmp_path):
    from coach.server.auth import TokenStore

    node_a, node_b = store_at(tmp_path / "a"), store_at(tmp_path / "b")
    issuing, checking = TokenStore(tmp_path / "unused.json", ADMIN, table=node_a), TokenStore(tmp_path / "unused.json", ADMIN, table=node_b)
    token, record = issuing.issue("agent", agent_id="ana", name="ana's sidebar")
    if node_a.shared:  # PostgreSQL: both nodes read one database
        who = asyncio.run(checking.authenticate(token))
        assert (who.role, who.agent_id, who.token_id) == ("agent", "ana", record.id)
        assert checking.revoke(record.id) and asyncio.run(issuing.authenticate(token)) is None
        assert [r.revoked for r in issuing.records()] == [True]
    else:  # SQLite: each folder its own
        assert asyncio.run(checking.authenticate(token)) is None and asyncio.run(issuing.authenticate(token)).agent_id == "ana"
    assert not (tmp_path / "unused.json").exists()  # nothing written to a tokens file
    node_a.close()
    node_b.close()


def test_a_restart_seals_only_its_own_calls_not_those_a_cluster_node_streams(store_at, tmp_path):
    store = store_at(tmp_path)
    store.begin(CallRecord("MINE", None, "live", "live", 1.0))
    store.begin(CallRecord("THEIRS", None, "live", "live", 2.0, node="node-b"))
    store.close()  # as a crash leaves them
    again = store_at(tmp_path)
    assert again.recover() == ["MINE"]
    assert again.call("MINE").state == "interrupted" and again.call("THEIRS").state == "live"
    assert again.interrupt("THEIRS", "its node stopped", node="node-c") is None  # only as the node it streams to
    assert again.interrupt("THEIRS", "its node stopped", node="node-b").state == "interrupted"
    assert again.interrupt("THEIRS", "again", node="node-b") is None  # once
    again.close()


def test_a_node_moving_to_a_shared_database_keeps_its_tokens(store_at, tmp_path):
    from coach.server.auth import TokenStore

    alone = TokenStore(tmp_path / "tokens.json", ADMIN)
    token, record = alone.issue("ingest", name="the dialler")
    store = store_at(tmp_path / "data")
    shared = TokenStore(tmp_path / "tokens.json", ADMIN, table=store)
    assert asyncio.run(shared.authenticate(token)) is None
    assert shared.import_file() == 1 and shared.import_file() == 0  # once
    assert asyncio.run(shared.authenticate(token)).token_id == record.id
    store.close()


def test_report_command_explains_an_empty_data_dir(tmp_path):
    out = subprocess.run([sys.executable, "-m", "coach", "report", "--data-dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and "no calls kept" in out.stderr and "Traceback" not in out.stderr


def _get(url: str, token: str = ADMIN):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _events(url: str) -> list[dict]:
    try:
        return _get(url)["events"]
    except urllib.error.HTTPError:  # not started yet
        return []


def _start_server(data_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tests.serve_fakes", str(data_dir), str(port)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # waiting for the process to listen, with a deadline
        try:
            _get(f"http://127.0.0.1:{port}/healthz")
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not come up")


async def test_a_server_killed_mid_call_keeps_the_call_up_to_the_crash(tmp_path):
    from tests.live import free_port

    port = free_port()
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    proc = await asyncio.to_thread(_start_server, tmp_path, port)
    try:
        call = stereo(("agent", said(300)), ("agent", silence(1.0)), ("customer", said(500)), ("customer", silence(1.0)),
                      ("agent", said(800, 3.0)), ("agent", silence(2.0)))
        chunks = list(_twilio_media(call))
        heard_until = 5.0  # the agent's first line and the customer's request are complete by then
        async with connect(f"{ws_base}/ws/twilio") as sender:
            await sender.send(_twilio_start("K1", ADMIN))
            for chunk in chunks[: int(len(chunks) * heard_until / (call.shape[0] / 16000))]:
                await sender.send(chunk)
            # wait until the store has the customer's request: what a crash now must not lose
            deadline = time.monotonic() + 20
            while not any(e["type"] == "signal" for e in await asyncio.to_thread(_events, f"{base}/api/calls/K1")):
                assert time.monotonic() < deadline, "the signal never reached the store"
                await asyncio.sleep(0.1)  # polling the store for a condition, with a deadline
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = await asyncio.to_thread(_start_server, tmp_path, port)
    try:
        kept = await asyncio.to_thread(_get, f"{base}/api/calls/K1")
        assert kept["state"] == "interrupted" and kept["has_audio"] and "escalation_request" in kept["labels"]
        texts = [e["text"] for e in kept["events"] if e["type"] == "transcript" and e["final"]]
        assert sorted(texts[:2]) == sorted([PHRASES[300], PHRASES[500]])  # two parties' finals: either may be made first
        req = urllib.request.Request(f"{base}/api/calls/K1/audio", headers={"Authorization": f"Bearer {ADMIN}"})
        audio_file = tmp_path / "k1.flac"
        audio_file.write_bytes(await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=10).read()))
        audio = np.concatenate(list(read_blocks(audio_file)))
        request_end = 1.5 + 1.0 + 1.5
        assert request_end <= audio.shape[0] / 16000 <= heard_until + 0.1  # the audio up to the crash, no more
        assert np.abs(audio[int(2.6 * 16000) : int(3.9 * 16000), 1]).max() > 0.1  # the customer's words, on the right
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait)


async def test_a_kept_call_replays_to_a_reader_after_a_restart(tmp_path):
    from coach.simulate import play_call
    from tests.live import running_server
    from tests.test_server import ESCALATION, read_all

    async with running_server(tmp_path) as live:
        await play_call(live.url, ESCALATION, token=ADMIN, call_id="R1", agent_id="ana", speed=0)
    async with running_server(tmp_path) as live:  # a new server on the same data: the call is no longer in memory
        async with connect(f"{live.ws}/ws/calls/R1?token={ADMIN}") as reader:
            events = await read_all(reader)
        assert [e["text"] for e in events if e["type"] == "transcript"] == [PHRASES[300], PHRASES[400], PHRASES[500]]
        assert any(e["type"] == "signal" for e in events) and all(e["call_id"] == "R1" for e in events)
        agent_bo = await live.token("agent", "bo")
        async with connect(f"{live.ws}/ws/calls/R1?token={agent_bo}") as reader:
            await read_all(reader)
        assert reader.close_code == 4403
