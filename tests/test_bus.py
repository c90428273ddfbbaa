"""The call bus: replay for late readers, and a slow reader never holds anyone up."""

import json

from coach.bus import Board, CallLog


async def drain(reader):
    out = []
    while (message := await reader.get()) is not None:
        out.append(json.loads(message))
    return out


async def test_a_late_reader_gets_the_call_so_far_then_the_rest():
    log = CallLog()
    early = log.subscribe()
    for i in range(3):
        log.publish({"n": i})
    late = log.subscribe()
    log.publish({"n": 3})
    log.close()
    assert await drain(early) == await drain(late) == [{"n": i} for i in range(4)]
    after_end = log.subscribe()  # a call that has ended replays whole
    assert len(await drain(after_end)) == 4


async def test_a_reader_that_falls_behind_is_dropped_and_the_others_get_everything():
    log = CallLog(limit=10)
    slow, fast = log.subscribe(), log.subscribe()
    got = []
    for i in range(50):
        log.publish({"n": i})
        got.append(json.loads(await fast.get()))  # fast reads as it goes; slow never reads
    assert [m["n"] for m in got] == list(range(50))
    assert slow.dropped and await slow.get() is None
    assert slow not in log.readers and fast in log.readers


async def test_board_sends_each_change_once_and_only_an_agents_own_calls():
    board = Board()
    mine = board.subscribe(lambda s: s["agent_id"] == "ana")
    everyone = board.subscribe()
    board.publish({"call_id": "a", "agent_id": "ana", "risk": 10})
    board.publish({"call_id": "a", "agent_id": "ana", "risk": 10})  # unchanged: not sent again
    board.publish({"call_id": "b", "agent_id": "bo", "risk": 50})
    board.close()
    assert [m["call_id"] for m in await drain(mine)] == ["a"]
    assert [m["call_id"] for m in await drain(everyone)] == ["a", "b"]
    late = board.subscribe()
    assert {m["call_id"] for m in await drain(late)} == {"a", "b"}
