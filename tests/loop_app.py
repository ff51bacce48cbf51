"""An ASGI app that answers with the class of the event loop it runs on (tests/test_serve.py)."""

from __future__ import annotations

import asyncio


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        return
    name = type(asyncio.get_running_loop()).__module__.encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": name})
