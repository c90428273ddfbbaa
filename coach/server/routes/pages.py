"""The pages: static, no build step; they read the token from their own URL."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse

WEB_DIR = Path(__file__).resolve().parent.parent.parent.parent / "web"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def home(request: Request) -> RedirectResponse:
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(f"/board{query}")


@router.get("/sidebar")
async def sidebar() -> FileResponse:
    return FileResponse(WEB_DIR / "sidebar.html")


@router.get("/board")
async def board_page() -> FileResponse:
    return FileResponse(WEB_DIR / "board.html")


@router.get("/qa")
async def qa_page() -> FileResponse:
    return FileResponse(WEB_DIR / "qa.html")


@router.get("/playbook")
async def playbook_page() -> FileResponse:
    return FileResponse(WEB_DIR / "playbook.html")
