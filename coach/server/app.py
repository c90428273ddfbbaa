"""The live service (``coach serve``): call audio in, events out, pages for agents and team leads.

``create_app()`` builds everything from settings; the lifespan owns the heavy resources (the speech
and text models, loaded once and shared by every call, their executors, the live calls) and
releases them in order when the server stops: live calls are finished first, then the models.
The contract is ``../shared/spec/live-api.md``.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from coach.asr.scheduler import AsrScheduler
from coach.config import Settings
from coach.playbook import load_playbook
from coach.server import readers
from coach.server.auth import Principal, TokenStore
from coach.server.calls import CallRegistry, CallServices, LiveCall
from coach.server.ingest import AudioStream, TwilioStream

log = logging.getLogger("coach.server")

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
_LOAD = object()  # load the configured model in the lifespan


class TokenRequest(BaseModel):
    role: Literal["lead", "qa", "agent", "ingest"]
    agent_id: str | None = Field(None, max_length=128)
    name: str | None = Field(None, max_length=200)
    ttl_seconds: float | None = Field(None, gt=0, description="the token expires after this long")


def create_app(settings: Settings | None = None, *, transcriber: Any = None, text: Any = _LOAD, vad_factory: Any = None) -> FastAPI:
    """The app. Tests pass stand-ins for the models (``transcriber``, ``text``, ``vad_factory``)."""
    settings = settings or Settings()
    playbook = load_playbook(settings.playbook)  # a broken playbook stops the start, with its message
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from coach.models import load_text_analyzer, load_transcriber

        speech = transcriber or await asyncio.to_thread(load_transcriber, settings)
        text_models = await asyncio.to_thread(load_text_analyzer, settings) if text is _LOAD else text
        scheduler = AsrScheduler(speech, settings.asr.worker_count)
        vad_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad")
        services = CallServices(scheduler, settings.asr, vad_executor, playbook, text_models, reader_limit=settings.server.reader_limit)
        if vad_factory is not None:
            services.vad_factory = vad_factory
        app.state.registry = CallRegistry(services, keep_ended=settings.server.keep_ended)
        app.state.tokens = TokenStore(settings.server.data_dir / "tokens.json", admin)
        log.info("serving; data in %s", settings.server.data_dir)
        try:
            yield
        finally:
            await app.state.registry.aclose()  # finish live calls while the models are still here
            scheduler.close()
            vad_executor.shutdown(wait=True)
            if text_models is not None and text is _LOAD:
                text_models.close()

    app = FastAPI(title="coach", summary="Real-time call coaching: live call audio in, prompts out.", lifespan=lifespan)
    app.state.settings = settings
    limits = settings.server

    # ---- audio in ----
    @app.websocket("/ws/twilio")
    async def twilio(ws: WebSocket, token: str | None = None) -> None:
        await TwilioStream(ws.app.state.registry, ws.app.state.tokens, limits.max_message_bytes).serve(ws, token)

    @app.websocket("/ws/audio")
    async def audio(ws: WebSocket, token: str | None = None) -> None:
        await AudioStream(ws.app.state.registry, ws.app.state.tokens, limits.max_message_bytes).serve(ws, token)

    # ---- events out ----
    @app.websocket("/ws/calls/{call_id}")
    async def call_events(ws: WebSocket, call_id: str, token: str | None = None) -> None:
        await readers.call_events(ws, call_id, token, ws.app.state.registry, ws.app.state.tokens, limits.send_timeout)

    @app.websocket("/ws/board")
    async def board(ws: WebSocket, token: str | None = None) -> None:
        await readers.board(ws, token, ws.app.state.registry, ws.app.state.tokens, limits.send_timeout)

    # ---- REST ----
    def principal(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = request.app.state.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return found

    Caller = Annotated[Principal, Depends(principal)]

    def admin_only(who: Caller) -> Principal:
        if who.role != "admin":
            raise HTTPException(403, "only an admin may manage tokens")
        return who

    @app.get("/api/calls")
    async def list_calls(
        request: Request, who: Caller, flagged: bool | None = None, agent_id: str | None = None,
        state: Literal["live", "ended"] | None = None,
    ) -> list[dict]:
        """Calls the caller may see, newest first."""
        calls = [c for c in request.app.state.registry.all() if who.can_view(c.agent_id)]
        if flagged is not None:
            calls = [c for c in calls if c.flagged == flagged]
        if agent_id is not None:
            calls = [c for c in calls if c.agent_id == agent_id]
        if state is not None:
            calls = [c for c in calls if c.state == state]
        return [_metadata(c) for c in calls]

    @app.get("/api/calls/{call_id}")
    async def get_call(call_id: str, request: Request, who: Caller) -> dict:
        call = request.app.state.registry.get(call_id)
        if call is None:
            raise HTTPException(404, f"no call {call_id}")
        if not who.can_view(call.agent_id):
            raise HTTPException(403, "an agent sees only their own calls")
        return {**_metadata(call), "events": list(call.log.events)}

    @app.post("/api/tokens", status_code=201)
    async def issue_token(body: TokenRequest, request: Request, _: Annotated[Principal, Depends(admin_only)]) -> dict:
        """A new token; its secret is shown only in this answer."""
        try:
            token, record = await asyncio.to_thread(request.app.state.tokens.issue, body.role, body.agent_id, body.name, body.ttl_seconds)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return {"token": token, **record.public()}

    @app.get("/api/tokens")
    async def list_tokens(request: Request, _: Annotated[Principal, Depends(admin_only)]) -> list[dict]:
        return [record.public() for record in request.app.state.tokens.records()]

    @app.delete("/api/tokens/{token_id}", status_code=204)
    async def revoke_token(token_id: str, request: Request, _: Annotated[Principal, Depends(admin_only)]) -> None:
        if not await asyncio.to_thread(request.app.state.tokens.revoke, token_id):
            raise HTTPException(404, f"no token {token_id}")

    @app.get("/healthz")
    async def health(request: Request) -> dict:
        return {"status": "ok", "live_calls": len(request.app.state.registry.live)}

    # ---- pages (static, no build step; they read the token from their own URL) ----
    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> RedirectResponse:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/board{query}")

    @app.get("/sidebar", include_in_schema=False)
    async def sidebar() -> FileResponse:
        return FileResponse(WEB_DIR / "sidebar.html")

    @app.get("/board", include_in_schema=False)
    async def board_page() -> FileResponse:
        return FileResponse(WEB_DIR / "board.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _metadata(call: LiveCall) -> dict:
    return {
        **call.summary(), "ended_at": call.ended_at, "duration": round(call.pipeline.consumed, 2), "flagged": call.flagged,
        "lag": round(call.lag, 2),
    }
