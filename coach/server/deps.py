"""The routes' typed dependencies: the server's state, and who is calling.

``State`` is the :class:`~coach.server.state.ServerState` the lifespan built; ``Caller`` the holder
of a valid bearer token (401 without one); ``Admin`` an admin (403 for anyone else).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.requests import HTTPConnection

from coach.server.auth import Principal
from coach.server.state import ServerState


def server_state(connection: HTTPConnection) -> ServerState:
    return connection.app.state.coach


State = Annotated[ServerState, Depends(server_state)]


async def principal(request: Request, state: State) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    found = await state.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return found


Caller = Annotated[Principal, Depends(principal)]


def admin_only(who: Caller) -> Principal:
    if who.role != "admin":
        raise HTTPException(403, "only an admin may manage tokens")
    return who


Admin = Annotated[Principal, Depends(admin_only)]
