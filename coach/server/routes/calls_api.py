"""``/api/calls``: the calls kept, their events and recordings, and QA's reviews of their flags."""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from coach.server.auth import Principal
from coach.server.deps import Caller, State, principal
from coach.server.state import ServerState
from coach.store import CallQuery, CallRecord, Review

router = APIRouter(prefix="/api/calls")


class ReviewRequest(BaseModel):
    seq: int = Field(ge=0, description="the flagged event: its `seq` in the call's events")
    verdict: Literal["right", "wrong"]
    note: str | None = Field(None, max_length=2000)


async def stored_call(server: ServerState, call_id: str, who: Principal) -> CallRecord:
    """The stored call, if the caller may see it."""
    record = await server.in_store(server.store.call, call_id)
    if record is None:
        raise HTTPException(404, f"no call {call_id}")
    if not who.can_view(record.agent_id):
        raise HTTPException(403, "an agent sees only their own calls")
    return record


def public(record: CallRecord, server: ServerState) -> dict:
    """A stored call as the API shows it; a call live on this node also says how far its analysis is behind."""
    out = record.public()
    live = server.registry.live.get(record.call_id)
    if live is not None:
        out["lag"] = round(live.lag, 2)
    return out


@router.get("")
async def list_calls(
    server: State, who: Caller, flagged: bool | None = None, label: str | None = None, agent_id: str | None = None,
    state: Literal["live", "ended", "interrupted"] | None = None, since: datetime | None = None,
    until: datetime | None = None, min_risk: Annotated[int | None, Query(ge=0, le=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict]:
    """Calls the caller may see, newest first. ``since``/``until``: ISO 8601 date or time, or Unix seconds."""
    if who.role == "agent":
        if agent_id not in (None, who.agent_id):
            raise HTTPException(403, "an agent sees only their own calls")
        agent_id = who.agent_id
    elif not who.sees_every_call:
        raise HTTPException(403, f"a {who.role} token cannot read calls")
    query = CallQuery(flagged, label, agent_id, state, _seconds(since), _seconds(until), min_risk, limit, offset)
    return [public(r, server) for r in await server.in_store(server.store.calls, query)]


@router.get("/{call_id}")
async def get_call(call_id: str, server: State, who: Caller) -> dict:
    """The call's metadata, every event (each with its ``seq``), and QA's reviews."""
    record = await stored_call(server, call_id, who)
    events = await server.in_store(server.store.events, call_id)
    reviews = await server.in_store(server.store.reviews, call_id)
    return {**public(record, server), "events": events, "reviews": [r.__dict__ for r in reviews]}


@router.get("/{call_id}/audio", response_class=FileResponse)
async def call_audio(call_id: str, request: Request, server: State, token: str | None = None) -> FileResponse:
    """The recording (FLAC, agent left, customer right); takes HTTP Range requests, so a player can seek.
    Besides the bearer header it takes ``?token=``, as the websockets do, so an ``<audio src>`` can stream it."""
    if token and "authorization" not in request.headers:
        who = await server.tokens.authenticate(token)
    else:
        who = await principal(request, server)
    if who is None:
        raise HTTPException(401, "a valid token is required", headers={"WWW-Authenticate": "Bearer"})
    record = await stored_call(server, call_id, who)
    if record.state == "live":
        raise HTTPException(409, "the call is live: its recording is ready when it ends")
    path = await server.in_store(server.store.audio_path, call_id)
    if path is None:
        raise HTTPException(404, f"no recording kept for call {call_id}")
    return FileResponse(path, media_type="audio/flac", filename=f"{call_id}.flac", content_disposition_type="inline")


@router.get("/{call_id}/reviews")
async def list_reviews(call_id: str, server: State, who: Caller) -> list[dict]:
    await stored_call(server, call_id, who)
    return [r.__dict__ for r in await server.in_store(server.store.reviews, call_id)]


@router.post("/{call_id}/reviews", status_code=201)
async def add_review(call_id: str, body: ReviewRequest, server: State, who: Caller) -> dict:
    """QA's verdict on one flagged moment (a ``signal`` event), with a note; saved with who reviewed it."""
    if not who.can_review:
        raise HTTPException(403, "only qa, lead or admin tokens may review calls")
    await stored_call(server, call_id, who)
    events = await server.in_store(server.store.events, call_id)
    flagged = next((e for e in events if e["seq"] == body.seq), None)
    if flagged is None or flagged.get("type") != "signal":
        raise HTTPException(422, f"event {body.seq} of call {call_id} is not a flag (a signal event)")
    review = Review(secrets.token_hex(8), call_id, body.seq, flagged["label"], body.verdict, body.note, who.who, round(time.time(), 3))
    await server.in_store(server.store.add_review, review)
    return review.__dict__


def _seconds(when: datetime | None) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
