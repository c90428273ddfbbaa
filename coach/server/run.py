"""``coach serve``: run the app with uvicorn; with ``--play``, also play a recording into it as a
live call and print the links to watch it (``make run``)."""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import socket
from pathlib import Path

from pydantic import SecretStr

from coach.config import Settings
from coach.errors import CoachError

log = logging.getLogger("coach.serve")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CoachError(f"port {port} on {host} is already in use: stop the other server or pick another with --port") from None
        raise CoachError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(128)
    return sock


async def serve(settings: Settings, play: Path | None = None, agent_id: str = "priya") -> int:
    import uvicorn

    from coach.server.app import create_app

    if settings.admin_token is None:  # like Jupyter: a fresh secret for this run, printed once
        settings.admin_token = SecretStr(secrets.token_urlsafe(24))
        print(f"admin token for this run (set COACH_ADMIN_TOKEN to choose one): {settings.admin_token.get_secret_value()}", flush=True)
    recording = None
    if play is not None:
        from coach.simulate import load_recording

        recording = await asyncio.to_thread(load_recording, play)  # a bad file fails before the server starts
    await preflight(settings)
    sock = bind(settings.server.host, settings.server.port)
    host, port = sock.getsockname()[:2]
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", ws_max_size=settings.server.max_message_bytes, ws_ping_interval=20)
    server = uvicorn.Server(config)
    print(f"coach: loading models, then serving on {base} (data in {settings.server.data_dir}); Ctrl-C stops", flush=True)
    player = asyncio.create_task(_play(server, app, base, recording, play, agent_id)) if recording is not None else None
    try:
        await server.serve(sockets=[sock])
    finally:
        if player is not None:
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
        sock.close()
    if not server.started:
        raise CoachError("the server did not start (see the messages above)")
    print("coach: stopped", flush=True)
    return 0


async def preflight(settings: Settings) -> None:
    """The database and Redis this node is set to use, checked before the models load: one line
    that says why, if either cannot be used."""
    server = settings.server
    if server.database_url is not None:
        from coach.store import check_postgres

        await asyncio.to_thread(check_postgres, server.database_url.get_secret_value())
    if server.redis_url is not None:
        import redis.asyncio as redis

        from coach.server.cluster import ClusterError, describe_redis

        url = server.redis_url.get_secret_value()
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        try:
            await client.ping()
        except (redis.RedisError, OSError) as exc:
            raise ClusterError(f"cannot reach Redis at {describe_redis(url)}: {' '.join(str(exc).split())[:200]}") from None
        finally:
            await client.aclose()


async def _play(server, app, base: str, audio, path: Path, agent_id: str) -> None:
    """Wait for the server, issue tokens for the demo, print the links, play the call."""
    from coach.simulate import play_call

    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.1)  # uvicorn says it has started only by this flag
    issue = app.state.coach.tokens.issue  # writes the token file: off the loop
    ingest, _ = await asyncio.to_thread(issue, "ingest", name="make run: example call")
    agent, _ = await asyncio.to_thread(issue, "agent", agent_id=agent_id, name=f"make run: {agent_id}'s sidebar")
    lead, _ = await asyncio.to_thread(issue, "lead", name="make run: team lead")
    qa, _ = await asyncio.to_thread(issue, "qa", name="make run: QA")
    print(
        "\nOpen these while the example call plays:\n"
        f"  agent sidebar ({agent_id}): {base}/sidebar?token={agent}\n"
        f"  team lead board:        {base}/board?token={lead}\n"
        f"  QA replay (after the call): {base}/qa?token={qa}\n",
        flush=True,
    )
    print(f"playing {path.name} as a live call through /ws/twilio ({audio.shape[0] / 16000:.0f} s, real time)", flush=True)
    try:
        call = await play_call(base, audio, token=ingest, via="twilio", agent_id=agent_id, speed=1.0)
    except OSError as exc:
        print(f"coach: could not play the example call: {exc}", flush=True)
        return
    if server.should_exit:  # Ctrl-C cut the call short: the server is stopping
        return
    events = app.state.coach.registry.get(call.call_id)
    count = len(events.log.events) if events else 0
    print(
        f"the example call ended ({count} events) and is kept: replay its flags with audio on the QA page. "
        f"Play more with `coach simulate {path} --server {base} --token <ingest token>`. Ctrl-C stops.",
        flush=True,
    )
