"""For operators and load balancers: ``/healthz`` (alive), ``/readyz`` (room for a call), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, Response

from coach.server.deps import Caller, State
from coach.server.metrics import CONTENT_TYPE as METRICS_TYPE
from coach.server.metrics import render as render_metrics

router = APIRouter()


@router.get("/metrics", response_class=Response)
async def metrics(server: State, who: Caller) -> Response:
    """Prometheus text format: live calls, per-call lag, queue depths, ASR real-time factor, prompts, errors."""
    if not who.sees_every_call:
        raise HTTPException(403, "metrics name every live call: lead, qa or admin tokens only")
    return Response(render_metrics(server), media_type=METRICS_TYPE)


@router.get("/healthz")
async def health(server: State) -> dict:
    """Alive: the process answers (a load balancer's liveness check)."""
    return {"status": "ok", "live_calls": len(server.registry.live)}


@router.get("/readyz")
async def ready(server: State) -> JSONResponse:
    """Ready for another call: 200 while this node has room (the capacity ladder's last step,
    admission, would take it), 503 with the reason while it would refuse one, so that a load
    balancer sends new calls elsewhere."""
    registry = server.registry
    full = registry.room()
    body = {"status": "full" if full else "ready", "live_calls": len(registry.live), "max_calls": registry.max_calls or None,
            "backlog_seconds": round(registry.backlog(), 2)}
    if full:
        body["reason"] = full
    if registry.node_id is not None:
        body["node"] = registry.node_id
    return JSONResponse(body, status_code=503 if full else 200)
