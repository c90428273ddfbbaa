"""The live service (``coach serve``): call audio in, events out, pages for agents and team leads.

``create_app()`` builds everything from settings; the lifespan owns the heavy resources (the speech
and text models, loaded once and shared by every call, their executors, the live calls) and
releases them in order when the server stops: live calls are finished first, then the models.
The contract is ``../shared/spec/live-api.md``.
"""

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from coach.asr.ladder import LadderSettings, QualityLadder
from coach.asr.scheduler import AsrScheduler
from coach.config import Settings, default_max_calls
from coach.playbook import load_playbook
from coach.server import readers
from coach.server.auth import Principal, TokenStore
from coach.server.calls import CallRegistry, CallServices
from coach.server.cluster import Cluster
from coach.server.guards import SECURITY_HEADERS, TOO_MANY, RateLimiter, origin_allowed, twilio_signature_valid
from coach.server.ingest import FORBIDDEN, UNAUTHENTICATED, AudioStream, TwilioStream
from coach.server.metrics import CONTENT_TYPE as METRICS_TYPE
from coach.server.metrics import render as render_metrics
from coach.store import CallQuery, Review, open_store

log = logging.getLogger("coach.server")

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
_LOAD = object()  # load the configured model in the lifespan


class TokenRequest(BaseModel):
    role: Literal["lead", "qa", "agent", "ingest"]
    agent_id: str | None = Field(None, max_length=128)
    name: str | None = Field(None, max_length=200)
    ttl_seconds: float | None = Field(None, gt=0, description="the token expires after this long")


class ReviewRequest(BaseModel):
    seq: int = Field(ge=0, description="the flagged event: its `seq` in the call's events")
    verdict: Literal["right", "wrong"]
    note: str | None = Field(None, max_length=2000)


def create_app(settings: Settings | None = None, *, transcriber: Any = None, text: Any = _LOAD, vad_factory: Any = None) -> FastAPI:
    """The app. Tests pass stand-ins for the models (``transcriber``, ``text``, ``vad_factory``)."""
    settings = settings or Settings()
    playbook = load_playbook(settings.playbook)  # a broken playbook stops the start, with its message
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from coach.models import load_text_analyzer, load_transcriber

        loop = asyncio.get_running_loop()
        async with AsyncExitStack() as owned:  # what was made is released in reverse order, whatever failed after it
            speech = transcriber or await asyncio.to_thread(load_transcriber, settings)
            text_models = await asyncio.to_thread(load_text_analyzer, settings) if text is _LOAD else text
            if text_models is not None and text is _LOAD:
                owned.callback(text_models.close)
            ladder = QualityLadder(LadderSettings(climb_at=settings.server.ladder_climb_at, top=settings.server.ladder_top))
            scheduler = AsrScheduler(
                speech, settings.asr.worker_count, shed_interims_after=settings.server.shed_interims_after,
                max_batch=settings.server.max_batch, ladder=ladder,
            )
            owned.callback(scheduler.close)
            vad_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad")
            owned.callback(vad_executor.shutdown, wait=True)
            redact_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redact")
            owned.callback(redact_executor.shutdown, wait=True)
            services = CallServices(
                scheduler, settings.asr, vad_executor, playbook, text_models, reader_limit=settings.server.reader_limit,
                redaction=settings.redaction, redact_executor=redact_executor,
            )
            if vad_factory is not None:
                services.vad_factory = vad_factory
            store_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
            owned.callback(store_executor.shutdown, wait=True)
            database_url = settings.server.database_url.get_secret_value() if settings.server.database_url else None
            store = await loop.run_in_executor(store_executor, open_store, settings.server.data_dir, database_url)
            owned.push_async_callback(_in_store, app, store.close)
            app.state.store, app.state.store_executor = store, store_executor
            app.state.scheduler, app.state.counters = scheduler, services.counters
            max_calls = default_max_calls() if settings.server.max_calls is None else settings.server.max_calls
            registry = app.state.registry = CallRegistry(
                services, keep_ended=settings.server.keep_ended, store=store, store_executor=store_executor,
                max_calls=max_calls, refuse_lag=settings.server.refuse_lag,
                max_calls_per_sender=max_calls if settings.server.max_calls_per_token is None else settings.server.max_calls_per_token,
            )
            tokens = app.state.tokens = TokenStore(settings.server.data_dir / "tokens.json", admin, table=store if store.shared else None)
            cluster = app.state.cluster = None
            if settings.server.redis_url is not None:
                registry.node_id = settings.server.node_id or f"{socket.gethostname()}-{os.getpid()}"
                cluster = app.state.cluster = registry.cluster = Cluster(
                    settings.server.redis_url.get_secret_value(), registry.node_id, registry.board, store, store_executor,
                    heartbeat=settings.server.heartbeat, node_timeout=settings.server.node_timeout, keep_ended=settings.server.keep_ended,
                    local=registry.has,
                )
                await cluster.start()  # the other nodes' calls are on this node's board from here on
                owned.push_async_callback(cluster.aclose)  # (after the calls below: their last messages go out first)
                registry.board.mirror, services.mirror = cluster.mirror_board, cluster.mirror_call
            else:  # one node: a call left live was cut off by its last stop (in a cluster, the nodes look after each other)
                recovered = await _in_store(app, store.recover)
                if recovered:
                    log.warning("kept %d call(s) cut off by the last stop, marked interrupted", len(recovered))
            if store.shared:
                imported = await asyncio.to_thread(tokens.import_file)
                if imported:
                    log.warning("copied %d token(s) from %s into the database, which the nodes share", imported, tokens.path)
            owned.push_async_callback(registry.aclose)  # live calls finish (recordings sealed) while the models are here
            upkeep = loop.create_task(_retention(app, settings.server.retention_days))
            owned.push_async_callback(_cancelled, upkeep)
            log.info("serving; data in %s", settings.server.data_dir)
            yield

    app = FastAPI(title="coach", summary="Real-time call coaching: live call audio in, prompts out.", lifespan=lifespan)
    app.state.settings = settings
    limits = settings.server
    rate = app.state.rate = RateLimiter(limits.connections_per_minute)
    twilio_token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None

    async def refuse(ws: WebSocket, code: int, reason: str, why: str) -> None:
        # logged before any token is checked: our own words only, nothing the client wrote (the route's
        # pattern, not its path; the refusal's kind, not a reason that may quote a header)
        route = getattr(ws.scope.get("route"), "path", "websocket")
        log.warning("refused %s from %s (%d): %s", route, ws.client.host if ws.client else "?", code, why)
        ws.app.state.counters.refused[why] += 1
        await ws.accept()
        await ws.close(code, reason[:120])

    async def admitted(ws: WebSocket) -> bool:
        """Origin and rate checks, before anything else: a refusal gets its close code and a log line."""
        origin = ws.headers.get("origin")
        if not origin_allowed(origin, ws.headers.get("host"), limits.allowed_origins):
            await refuse(ws, FORBIDDEN, f"origin {origin[:60]} may not open this server's websockets", "origin")
            return False
        if not rate.allow(ws.client.host if ws.client else None):
            await refuse(ws, TOO_MANY, f"over {limits.connections_per_minute} connections a minute from this address: try again later", "rate")
            return False
        return True

    # ---- audio in ----
    @app.websocket("/ws/twilio")
    async def twilio(ws: WebSocket, token: str | None = None) -> None:
        await twilio_stream(ws, token, None)

    @app.websocket("/ws/twilio/{call_sid}")
    async def twilio_call(ws: WebSocket, call_sid: str, token: str | None = None) -> None:
        """The URL names its call (``wss://host/ws/twilio/{CallSid}``, written by the TwiML webhook):
        Twilio's signature over it is good for that call alone."""
        await twilio_stream(ws, token, call_sid)

    async def twilio_stream(ws: WebSocket, token: str | None, named_call: str | None) -> None:
        if not await admitted(ws):
            return
        signed = None
        signature = ws.headers.get("x-twilio-signature")
        if twilio_token and signature is not None:
            query = f"?{ws.url.query}" if ws.url.query else ""
            # behind a proxy, the URL Twilio signed is the public one, never one built from the client's Host
            urls = [limits.public_url.rstrip("/") + ws.url.path + query] if limits.public_url else [str(ws.url)]
            if not twilio_signature_valid(twilio_token, signature, urls):
                return await refuse(ws, UNAUTHENTICATED, "X-Twilio-Signature does not sign this URL with the configured auth token", "signature")
            # A signature over a URL that names no call is the same for every call: one leaked header
            # would stream forever. Only a URL that names its call (Twilio's <Stream> url takes no query
            # string, so in its path) stands in for a token, and for that call only; a bare one still
            # needs a token, as an unsigned stream does.
            if named_call is not None:
                signed = Principal("ingest", name="twilio")
        stream = TwilioStream(ws.app.state.registry, ws.app.state.tokens, limits.max_message_bytes, limits.stream_idle_timeout,
                              signed, named_call)
        await stream.serve(ws, token)

    @app.websocket("/ws/audio")
    async def audio(ws: WebSocket, token: str | None = None) -> None:
        if await admitted(ws):
            await AudioStream(ws.app.state.registry, ws.app.state.tokens, limits.max_message_bytes, limits.stream_idle_timeout).serve(ws, token)

    # ---- events out ----
    @app.websocket("/ws/calls/{call_id}")
    async def call_events(ws: WebSocket, call_id: str, token: str | None = None) -> None:
        if await admitted(ws):
            await readers.call_events(ws, call_id, token, ws.app.state.registry, ws.app.state.tokens, limits.send_timeout)

    @app.websocket("/ws/board")
    async def board(ws: WebSocket, token: str | None = None) -> None:
        if await admitted(ws):
            await readers.board(ws, token, ws.app.state.registry, ws.app.state.tokens, limits.send_timeout)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A readable 422 that says where and what, without echoing the input back (it may hold
        values JSON cannot carry, such as NaN, and a client's own data need not be repeated)."""
        detail = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        """JSON nested deeper than the parser goes: bad input, not a server error."""
        return JSONResponse({"detail": "the request body is nested too deeply"}, status_code=400)

    @app.middleware("http")
    async def api_rate(request: Request, call_next):
        """API requests count toward the address's connections a minute (pages and static files do not)."""
        if request.url.path.startswith(("/api/", "/metrics")) and not rate.allow(request.client.host if request.client else None):
            request.app.state.counters.refused["rate"] += 1
            return JSONResponse({"detail": f"over {limits.connections_per_minute} requests a minute from this address: try again later"},
                                status_code=429, headers={"Retry-After": "60"})
        return await call_next(request)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        """Every answer (added last, so it wraps the rate limit's 429s too): no framing, no sniffing, no
        referrer (page URLs carry tokens), the pages' own scripts and styles only."""
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # ---- REST ----
    async def principal(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = await request.app.state.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return found

    Caller = Annotated[Principal, Depends(principal)]

    def admin_only(who: Caller) -> Principal:
        if who.role != "admin":
            raise HTTPException(403, "only an admin may manage tokens")
        return who

    async def stored_call(call_id: str, request: Request, who: Principal):
        """The stored call, if the caller may see it."""
        record = await _in_store(request.app, request.app.state.store.call, call_id)
        if record is None:
            raise HTTPException(404, f"no call {call_id}")
        if not who.can_view(record.agent_id):
            raise HTTPException(403, "an agent sees only their own calls")
        return record

    @app.get("/api/calls")
    async def list_calls(
        request: Request, who: Caller, flagged: bool | None = None, label: str | None = None, agent_id: str | None = None,
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
        records = await _in_store(request.app, request.app.state.store.calls, query)
        return [_public(r, request) for r in records]

    @app.get("/api/calls/{call_id}")
    async def get_call(call_id: str, request: Request, who: Caller) -> dict:
        """The call's metadata, every event (each with its ``seq``), and QA's reviews."""
        record = await stored_call(call_id, request, who)
        store = request.app.state.store
        events = await _in_store(request.app, store.events, call_id)
        reviews = await _in_store(request.app, store.reviews, call_id)
        return {**_public(record, request), "events": events, "reviews": [r.__dict__ for r in reviews]}

    @app.get("/api/calls/{call_id}/audio", response_class=FileResponse)
    async def call_audio(call_id: str, request: Request, token: str | None = None) -> FileResponse:
        """The recording (FLAC, agent left, customer right); takes HTTP Range requests, so a player can seek.
        Besides the bearer header it takes ``?token=``, as the websockets do, so an ``<audio src>`` can stream it."""
        who = await request.app.state.tokens.authenticate(token) if token and "authorization" not in request.headers else await principal(request)
        if who is None:
            raise HTTPException(401, "a valid token is required", headers={"WWW-Authenticate": "Bearer"})
        record = await stored_call(call_id, request, who)
        if record.state == "live":
            raise HTTPException(409, "the call is live: its recording is ready when it ends")
        path = await _in_store(request.app, request.app.state.store.audio_path, call_id)
        if path is None:
            raise HTTPException(404, f"no recording kept for call {call_id}")
        return FileResponse(path, media_type="audio/flac", filename=f"{call_id}.flac", content_disposition_type="inline")

    @app.get("/api/calls/{call_id}/reviews")
    async def list_reviews(call_id: str, request: Request, who: Caller) -> list[dict]:
        await stored_call(call_id, request, who)
        return [r.__dict__ for r in await _in_store(request.app, request.app.state.store.reviews, call_id)]

    @app.post("/api/calls/{call_id}/reviews", status_code=201)
    async def add_review(call_id: str, body: ReviewRequest, request: Request, who: Caller) -> dict:
        """QA's verdict on one flagged moment (a ``signal`` event), with a note; saved with who reviewed it."""
        if not who.can_review:
            raise HTTPException(403, "only qa, lead or admin tokens may review calls")
        await stored_call(call_id, request, who)
        events = await _in_store(request.app, request.app.state.store.events, call_id)
        flagged = next((e for e in events if e["seq"] == body.seq), None)
        if flagged is None or flagged.get("type") != "signal":
            raise HTTPException(422, f"event {body.seq} of call {call_id} is not a flag (a signal event)")
        review = Review(secrets.token_hex(8), call_id, body.seq, flagged["label"], body.verdict, body.note, who.who, round(time.time(), 3))
        await _in_store(request.app, request.app.state.store.add_review, review)
        return review.__dict__

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
        return [record.public() for record in await asyncio.to_thread(request.app.state.tokens.records)]

    @app.delete("/api/tokens/{token_id}", status_code=204)
    async def revoke_token(token_id: str, request: Request, _: Annotated[Principal, Depends(admin_only)]) -> None:
        if not await asyncio.to_thread(request.app.state.tokens.revoke, token_id):
            raise HTTPException(404, f"no token {token_id}")

    @app.get("/metrics", response_class=Response)
    async def metrics(request: Request, who: Caller) -> Response:
        """Prometheus text format: live calls, per-call lag, queue depths, ASR real-time factor, prompts, errors."""
        if not who.sees_every_call:
            raise HTTPException(403, "metrics name every live call: lead, qa or admin tokens only")
        return Response(render_metrics(request.app), media_type=METRICS_TYPE)

    @app.get("/healthz")
    async def health(request: Request) -> dict:
        """Alive: the process answers (a load balancer's liveness check)."""
        return {"status": "ok", "live_calls": len(request.app.state.registry.live)}

    @app.get("/readyz")
    async def ready(request: Request) -> JSONResponse:
        """Ready for another call: 200 while this node has room (the capacity ladder's last step,
        admission, would take it), 503 with the reason while it would refuse one, so that a load
        balancer sends new calls elsewhere."""
        registry = request.app.state.registry
        full = registry.room()
        body = {"status": "full" if full else "ready", "live_calls": len(registry.live), "max_calls": registry.max_calls or None,
                "backlog_seconds": round(registry.backlog(), 2)}
        if full:
            body["reason"] = full
        if registry.node_id is not None:
            body["node"] = registry.node_id
        return JSONResponse(body, status_code=503 if full else 200)

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

    @app.get("/qa", include_in_schema=False)
    async def qa_page() -> FileResponse:
        return FileResponse(WEB_DIR / "qa.html")

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


def _public(record, request: Request) -> dict:
    """A stored call as the API shows it; a live call also says how far its analysis is behind."""
    out = record.public()
    live = request.app.state.registry.live.get(record.call_id)
    if live is not None:
        out["lag"] = round(live.lag, 2)
    return out


def _seconds(when: datetime | None) -> float | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


async def _in_store(app: FastAPI, method, *args):
    """Run a store method in the store's thread (reads and writes in order, never on the loop)."""
    return await asyncio.get_running_loop().run_in_executor(app.state.store_executor, method, *args)


async def _cancelled(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _retention(app: FastAPI, days: float) -> None:
    """Delete calls older than ``days``, now and every hour."""
    if days <= 0:
        return
    while True:
        removed = await _in_store(app, app.state.store.purge, time.time() - days * 86400)
        if removed:
            log.info("retention: deleted %d call(s) older than %g days", removed, days)
        await asyncio.sleep(3600)
