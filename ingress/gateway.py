"""The local gateway: every service in one process, dispatched by the route table.

It plays the Kubernetes Ingress on a laptop: a request goes to the service whose prefix
matches (longest wins): a function, or the web IDE's files (ingress/ide.py); anything else
goes to the front door (ingress/front.py: ``/``, health, the merged docs). Lifespan events
are forwarded to every app, whose startups are ref-counted, so the database pool and the
execution runtime open once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ingress import front, ide
from ingress.openapi import function_app
from ingress.routes import FRONT_DOOR, FUNCTIONS, WEB, service_for_path

Scope = dict[str, Any]


class Gateway:
    def __init__(self) -> None:
        self.apps: dict[str, Any] = {name: function_app(name) for name in FUNCTIONS}
        self.apps[FRONT_DOOR] = front.app
        self.apps[WEB] = ide.app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.apps[service_for_path(scope["path"])](scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        runners = [_LifespanRunner(app) for app in self.apps.values()]
        message = await receive()
        assert message["type"] == "lifespan.startup"
        started: list[_LifespanRunner] = []
        try:
            for runner in runners:
                await runner.startup()
                started.append(runner)
        except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
            for runner in reversed(started):
                await runner.shutdown()
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        for runner in reversed(started):
            await runner.shutdown()
        await send({"type": "lifespan.shutdown.complete"})


class _LifespanRunner:
    """Drives one ASGI app's lifespan protocol from the gateway's own."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=2)
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=2)
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        reply = await self.outbox.get()
        if reply["type"] != "lifespan.startup.complete":
            raise RuntimeError(reply.get("message") or "a function failed to start")

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        if self.task is not None:
            await self.task


def create_gateway() -> Gateway:
    return Gateway()


app = create_gateway()
