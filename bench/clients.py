"""The two kinds of client: a browser-like websocket client of the app, and a direct one.

Both do as little as possible while streaming: they stamp each websocket message or
socket read with ``time.time()`` and keep it; ``bench.analysis`` parses afterwards, so
the clients' own CPU stays out of the latencies they measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.analysis import ends_reply
from tests.scaleout.clients import CountingConnection

SIM_MODEL = "demo-1"


def log_in(base_url: str, username: str, password: str) -> str:
    """Log in through the real form; the ``Cookie`` header of the session."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.get("/accounts/login/").raise_for_status()
        token = client.cookies["csrftoken"]
        response = client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base_url}/accounts/login/"},
        )
        if response.status_code != 302 or "sessionid" not in client.cookies:
            raise RuntimeError(f"logging in as {username} failed: {response.status_code}")
        return f"sessionid={client.cookies['sessionid']}; csrftoken={token}"


@dataclass
class Run:
    """One reply asked for by one client, and everything it saw, with times."""

    index: int
    prompt: str
    stop_after: float | None  # seconds after sending, when this client presses Stop
    sent_at: float = 0.0
    stop_at: float | None = None
    done: bool = False
    error: str = ""


@dataclass
class WsRun(Run):
    conversation_id: int = 0
    base_url: str = ""
    cookie: str = ""
    frames: list[tuple[float, str]] = field(default_factory=list)
    # Bytes off the socket, compressed as they travel, from the send to the final frame.
    wire_bytes: int = 0


@dataclass
class FloorRun(Run):
    reads: list[tuple[float, bytes]] = field(default_factory=list)


async def open_ws(run: WsRun) -> CountingConnection:
    """A socket like a browser's: it offers permessage-deflate, as browsers do."""
    url = run.base_url.replace("http://", "ws://") + f"/ws/conversations/{run.conversation_id}/"
    return await connect(
        url,
        additional_headers={"Cookie": run.cookie},
        origin=run.base_url,  # type: ignore[arg-type]
        create_connection=CountingConnection,
        max_size=None,
        open_timeout=60,
        ping_interval=None,
    )


async def drive_ws(run: WsRun, ws: CountingConnection, start_at: float, deadline: float) -> None:
    """Send the message at ``start_at``, read to the final frame, press Stop if asked."""
    stopper: asyncio.Task[None] | None = None
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        run.sent_at = time.time()
        received_before = ws.received
        await ws.send(json.dumps({"message": run.prompt, "client_id": uuid.uuid4().hex}))
        if run.stop_after is not None:
            stopper = asyncio.create_task(_press_stop(run, ws))
        async with asyncio.timeout(max(0.1, deadline - time.time())):
            async for message in ws:
                run.frames.append((time.time(), message if isinstance(message, str) else message.decode()))
                if ends_reply(run.frames[-1][1]):
                    run.done = True
                    run.wire_bytes = ws.received - received_before
                    break
    except TimeoutError:
        run.error = "timed out before the final frame"
    except Exception as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        if stopper is not None:
            stopper.cancel()
        with contextlib.suppress(Exception):
            await ws.close()


async def _press_stop(run: WsRun, ws: ClientConnection) -> None:
    assert run.stop_after is not None
    await asyncio.sleep(max(0.0, run.sent_at + run.stop_after - time.time()))
    if not run.done:
        run.stop_at = time.time()
        await ws.send(json.dumps({"action": "stop"}))


async def drive_floor(run: FloorRun, host: str, port: int, start_at: float, deadline: float) -> None:
    """The same request the relay makes, read straight off a socket: no relay at all."""
    body = json.dumps(
        {
            "model": SIM_MODEL,
            "messages": [{"role": "user", "content": run.prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer: asyncio.StreamWriter | None = None
    stopper: asyncio.Task[None] | None = None
    try:
        reader, writer = await asyncio.open_connection(host, port)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        run.sent_at = time.time()
        writer.write(head + body)
        if run.stop_after is not None:
            stopper = asyncio.create_task(_hang_up(run, writer))
        tail = b""
        async with asyncio.timeout(max(0.1, deadline - time.time())):
            while data := await reader.read(65536):
                run.reads.append((time.time(), data))
                tail = (tail + data)[-64:]
                if b"data: [DONE]" in tail:
                    run.done = True
                    break
        if run.stop_at is not None:
            run.done = True
    except TimeoutError:
        run.error = "timed out before the end of the stream"
    except (OSError, ConnectionError) as exc:
        if run.stop_at is None:
            run.error = f"{type(exc).__name__}: {exc}"
        run.done = run.stop_at is not None
    finally:
        if stopper is not None:
            stopper.cancel()
        if writer is not None:
            writer.close()


async def _hang_up(run: FloorRun, writer: asyncio.StreamWriter) -> None:
    assert run.stop_after is not None
    await asyncio.sleep(max(0.0, run.sent_at + run.stop_after - time.time()))
    if not run.done:
        run.stop_at = time.time()
        writer.close()
