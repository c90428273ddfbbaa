"""The live service (``coach serve``): call audio in, events out, pages for agents and team leads.

``create_app()`` builds the app from settings: the lifespan (``coach/server/state.py``) owns the
heavy resources and hands them to the routes as one typed :class:`~coach.server.state.ServerState`
(``coach/server/deps.py``); the routes are one router per concern (``coach/server/routes/``). The
contract is ``../shared/spec/live-api.md``.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from coach.config import Settings
from coach.playbook import load_playbook
from coach.server.guards import SECURITY_HEADERS, RateLimiter
from coach.server.routes import calls_api, ops, pages, playbook_api, sockets, tokens_api
from coach.server.routes.pages import WEB_DIR
from coach.server.state import LOAD, playbook_stamp, serving

log = logging.getLogger("coach.server")


def create_app(settings: Settings | None = None, *, transcriber: Any = None, text: Any = LOAD, vad_factory: Any = None) -> FastAPI:
    """The app. Tests pass stand-ins for the models (``transcriber``, ``text``, ``vad_factory``)."""
    settings = settings or Settings()
    stamp = playbook_stamp(settings.playbook)  # before reading it: an edit from here on is picked up by the running server
    playbook = load_playbook(settings.playbook)  # a broken playbook stops the start, with its message
    limits = settings.server
    rate = RateLimiter(limits.connections_per_minute)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with serving(settings, playbook, rate, transcriber=transcriber, text=text, vad_factory=vad_factory, playbook_stamp=stamp) as state:
            app.state.coach = state
            yield

    app = FastAPI(title="coach", summary="Real-time call coaching: live call audio in, prompts out.", lifespan=lifespan)
    app.state.settings = settings

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
            request.app.state.coach.counters.refused["rate"] += 1
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

    for router in (sockets.router, calls_api.router, tokens_api.router, playbook_api.router, ops.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app
