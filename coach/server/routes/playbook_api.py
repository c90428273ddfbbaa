"""``/api/playbook``: the playbook in use, and whether the last edit of its file was taken."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from coach.server.deps import Caller, State

router = APIRouter(prefix="/api/playbook")


@router.get("")
async def active_playbook(server: State, who: Caller) -> dict:
    """The playbook calls start with now: its signals and prompts, its file, when it was loaded, and
    the problems of the file's last edit if it was refused (the one in use stays)."""
    if not who.sees_every_call:
        raise HTTPException(403, "lead, qa or admin tokens only")
    watch = server.playbook
    return {"path": str(watch.path), "loaded_at": round(watch.loaded_at, 3), "error": watch.error,
            **watch.active.model_dump(mode="json", exclude_none=True)}
