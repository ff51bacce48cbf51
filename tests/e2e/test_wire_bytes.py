"""A long reply travels compressed, under a byte and a half a character instead of nine,
and compression opens no way around the size limit of a frame.

Async, so in a module of its own: the browser modules' Playwright loop would be running.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.scaleout.clients import CountingConnection, log_in
from tests.servers import AppServer, SimulatorProcess


async def read_a_long_reply(app: AppServer) -> tuple[int, int, str]:
    """Wire bytes, payload bytes and the last frame of one reply of about 10,000 characters."""
    session = log_in(app.url)
    conversation_id = session.new_conversation(app.url)
    async with connect(
        f"ws{app.url.removeprefix('http')}/ws/conversations/{conversation_id}/",
        additional_headers={"Cookie": session.cookie_header},
        origin=app.url,
        create_connection=CountingConnection,
        max_size=None,
    ) as socket:
        await socket.send(json.dumps({"message": "Long [sim tokens=1800 tps=600]", "client_id": "long"}))
        payload = 0
        async with asyncio.timeout(30):
            async for frame in socket:
                payload += len(frame.encode())
                if frame.startswith("<article") and 'data-role="assistant"' in frame:
                    return socket.received, payload, frame
    raise AssertionError("the socket closed before the reply ended")


async def test_a_long_reply_travels_in_a_fraction_of_its_bytes(app: AppServer, sim: SimulatorProcess) -> None:
    wire, payload, final = await read_a_long_reply(app)

    assert 'data-status="complete"' in final
    chars = len(sim.last()["text"])
    assert chars > 8_000
    assert payload > 4 * chars  # envelopes and the rendered markdown, uncompressed
    assert wire < payload / 3
    assert wire < 1.5 * chars


async def test_a_compressed_frame_that_inflates_past_the_limit_closes_only_its_socket(
    app: AppServer, sim: SimulatorProcess
) -> None:
    session = log_in(app.url)
    conversation_id = session.new_conversation(app.url)
    url = f"ws{app.url.removeprefix('http')}/ws/conversations/{conversation_id}/"
    headers = {"Cookie": session.cookie_header}
    async with connect(url, additional_headers=headers, origin=app.url) as bomb:
        # 5 MiB of one letter deflate to a few KiB; inflated, it is past daphne's 1 MiB.
        await bomb.send(json.dumps({"message": "a" * (5 * 1024 * 1024)}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(bomb.recv(), 10)

    async with connect(url, additional_headers=headers, origin=app.url) as socket:
        await socket.send(json.dumps({"message": "Still here? [sim tokens=5 tps=100]", "client_id": "ok"}))
        async with asyncio.timeout(15):
            async for frame in socket:
                if 'data-role="assistant" data-status="complete"' in frame:
                    break
    assert sim.last()["outcome"] == "complete"
