"""``/api/tokens``: an admin issues, lists and revokes bearer tokens."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from coach.server.deps import Admin, State

router = APIRouter(prefix="/api/tokens")


class TokenRequest(BaseModel):
    role: Literal["lead", "qa", "agent", "ingest"]
    agent_id: str | None = Field(None, max_length=128)
    name: str | None = Field(None, max_length=200)
    ttl_seconds: float | None = Field(None, gt=0, description="the token expires after this long")


@router.post("", status_code=201)
async def issue_token(body: TokenRequest, server: State, _: Admin) -> dict:
    """A new token; its secret is shown only in this answer."""
    try:
        token, record = await asyncio.to_thread(server.tokens.issue, body.role, body.agent_id, body.name, body.ttl_seconds)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"token": token, **record.public()}


@router.get("")
async def list_tokens(server: State, _: Admin) -> list[dict]:
    return [record.public() for record in await asyncio.to_thread(server.tokens.records)]


@router.delete("/{token_id}", status_code=204)
async def revoke_token(token_id: str, server: State, _: Admin) -> None:
    if not await asyncio.to_thread(server.tokens.revoke, token_id):
        raise HTTPException(404, f"no token {token_id}")
