"""The simulator sees a client hang up however it hangs up: the Stop tests rest on that."""

from __future__ import annotations

import contextlib
import json
import socket
import struct

import pytest

from tests.servers import SimulatorProcess, wait_until


def open_stream(sim: SimulatorProcess, prompt: str) -> socket.socket:
    body = json.dumps({"model": "demo-1", "messages": [{"role": "user", "content": prompt}], "stream": True})
    port = int(sim.url.rsplit(":", 1)[1])
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
    )
    assert client.recv(4096).startswith(b"HTTP/1.1 200")
    return client


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "reset"])
def test_a_client_hanging_up_mid_stream_is_recorded_with_its_moment(
    sim: SimulatorProcess, reset: bool
) -> None:
    prompt = f"Hang up on me [sim tokens=500 tps=100] {reset}"
    client = open_stream(sim, prompt)
    if reset:
        # Linger zero: close sends RST, as a client does that closes with bytes unread.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    else:
        client.shutdown(socket.SHUT_WR)  # FIN, the other way to hang up

    record = wait_until(lambda: (r := sim.last())["ended_at"] and r)
    client.close()
    assert record["prompt"] == prompt
    assert record["outcome"] == "client closed"
    assert record["client_closed_at"] is not None
    assert len(record["token_times"]) < 500


async def test_replies_one_after_another_share_a_kept_alive_connection_and_a_stopped_one_closes_its_own(
    sim: SimulatorProcess,
) -> None:
    from chat.providers.base import Turn
    from chat.providers.config import get_providers
    from chat.upstream import stream_events

    demo = get_providers()["demo"]

    async def reply(prompt: str, *, stop_after: int | None = None) -> None:
        events = stream_events(demo, "demo-1", [Turn("user", prompt)])
        async with contextlib.aclosing(events):
            async for count, _ in aenumerate(events):
                if stop_after is not None and count >= stop_after:
                    break  # as Stop does: the request is closed mid-stream

    await reply("one [sim tokens=5 tps=500]")
    await reply("two [sim tokens=5 tps=500]")
    await reply("three [sim tokens=500 tps=200]", stop_after=3)
    await reply("four [sim tokens=5 tps=500]")

    def ended(index: int) -> dict:
        return wait_until(lambda: (r := sim.requests()[index])["ended_at"] and r)

    one, two, three, four = (ended(index) for index in range(4))
    assert one["connection"] == two["connection"] == three["connection"]
    assert three["outcome"] == "client closed"
    assert four["connection"] != three["connection"]  # the stopped stream's connection was not reused


async def test_a_reply_holds_its_connection_only_while_its_response_streams(sim: SimulatorProcess) -> None:
    """What a Stop closes at once (``upstream.Connection``) is let go before the connection
    goes back to the pool: a Stop that comes after the end closes nothing, and the next
    reply streams on the same kept-alive connection."""
    from chat import network
    from chat.providers.base import Turn
    from chat.providers.config import get_providers
    from chat.upstream import Connection, stream_batches

    demo = get_providers()["demo"]
    connection = Connection()
    first = stream_batches(demo, "demo-1", [Turn("user", "one [sim tokens=5]")], connection=connection)
    held = [connection.stream async for _ in first]
    assert held and isinstance(held[0], network.AsyncioStream) and all(s is held[0] for s in held)
    assert connection.stream is None
    connection.close_now()  # a late Stop
    async for _ in stream_batches(demo, "demo-1", [Turn("user", "two [sim tokens=5]")]):
        pass
    one, two = (wait_until(lambda i=i: (r := sim.requests()[i])["ended_at"] and r) for i in range(2))
    assert one["outcome"] == two["outcome"] == "complete"
    assert one["connection"] == two["connection"]


async def aenumerate(iterable):
    count = 0
    async for item in iterable:
        yield count, item
        count += 1
