"""A running server for tests: the real app on a real socket, with stand-in models."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn

from coach.config import RedactionSettings, ServerSettings, Settings
from coach.server.app import create_app
from tests.fakes import EnergyVad, PhraseTranscriber, tone

ADMIN = "admin-test-token"
# what the stand-in speech model hears for each tone (Hz)
PHRASES = {
    300: "Thanks for calling, how can I help you today?",
    400: "My bill is wrong again this month.",
    500: "I want to speak to your manager right now.",
    600: "You are not listening to me.",
    700: "I understand, let me arrange a call back from my supervisor.",
    800: "Let me explain how the billing cycle works and why the charge appears on the statement this month.",
}


def said(freq: int, seconds: float = 1.5):
    return tone(freq, seconds)


@asynccontextmanager
async def running_server(
    data_dir: Path, transcriber=None, send_buffer: int | None = None, real_models: bool = False, redaction: RedactionSettings | None = None,
    twilio_auth_token: str | None = None, audiohook_api_key: str | None = None, audiohook_client_secret: str | None = None,
    playbook: Path | None = None, **server,
):
    """The app on a free port. Stand-in models (tones heard as PHRASES), or the real ones."""
    settings = Settings(
        admin_token=ADMIN, server=ServerSettings(data_dir=data_dir, **server), redaction=redaction or RedactionSettings(),
        twilio_auth_token=twilio_auth_token, audiohook_api_key=audiohook_api_key, audiohook_client_secret=audiohook_client_secret,
    )
    if playbook is not None:
        settings.playbook = playbook
    if real_models:
        app = create_app(settings)
    else:
        settings.asr.interims = False
        app = create_app(settings, transcriber=transcriber or PhraseTranscriber(PHRASES), text=None, vad_factory=EnergyVad)
    sock = socket.socket()
    if send_buffer:  # accepted sockets inherit it: a client that stops reading blocks sends sooner
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # clients may connect at once; uvicorn accepts them once started
    server_ = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=server.get("max_message_bytes", 256 * 1024)))
    task = asyncio.create_task(server_.serve(sockets=[sock]))
    try:
        yield Live(f"http://127.0.0.1:{sock.getsockname()[1]}", app)
    finally:
        server_.should_exit = True
        await task
        sock.close()


class Live:
    def __init__(self, url: str, app) -> None:
        self.url = url
        self.ws = url.replace("http://", "ws://")
        self.app = app

    async def request(self, method: str, path: str, token: str | None = ADMIN, body: dict | None = None) -> tuple[int, object]:
        def go():
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    raw = resp.read()
                    return resp.status, json.loads(raw) if raw else None
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read() or b"null")

        return await asyncio.to_thread(go)

    async def token(self, role: str, agent_id: str | None = None) -> str:
        status, body = await self.request("POST", "/api/tokens", body={"role": role, "agent_id": agent_id})
        assert status == 201, body
        return body["token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
