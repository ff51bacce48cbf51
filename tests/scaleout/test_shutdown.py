"""SIGTERM to a worker mid-reply: the reply ends cleanly and pages are told to reconnect.

These run on the default stack (SQLite, the in-memory layer), so they need no services.
"""

from __future__ import annotations

import asyncio
import signal
import time

from tests.scaleout.clients import ACTIVE, ChatSocket, log_in, upstream_request
from tests.scaleout.conftest import Cluster
from tests.servers import AppServer, SimulatorProcess

SERVICE_RESTART = 1012


async def open_conversation(worker: AppServer) -> ChatSocket:
    session = await asyncio.to_thread(log_in, worker.url)
    conversation = await asyncio.to_thread(session.new_conversation, worker.url)
    return await ChatSocket.open(worker.url, session, conversation)


async def test_sigterm_interrupts_the_reply_sends_its_final_state_and_closes_with_1012(
    sqlite_cluster: Cluster, sim: SimulatorProcess
) -> None:
    (worker,) = sqlite_cluster.start()
    socket = await open_conversation(worker)
    message = "Go on at length [sim tokens=2000 tps=30]"
    await socket.send(message)
    reply = socket.replies[await socket.first_reply()]
    await socket.wait_for(lambda: reply.shown > 30)

    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    await socket.wait_for(lambda: socket.reader.done(), within=5)

    assert socket.close_code == SERVICE_RESTART
    assert time.monotonic() - signalled < 2
    assert reply.status == "interrupted"
    saved = sqlite_cluster.db.reply(min(socket.replies))
    assert saved["status"] == "interrupted"
    assert reply.shows(saved["content"])
    assert reply.drawn_from(saved["content"])
    upstream = upstream_request(sim, message)
    assert upstream["client_closed_at"]
    assert upstream["text"].startswith(saved["content"])
    assert worker.process.wait(5) == 0


async def test_with_a_grace_period_pages_move_on_at_once_and_the_reply_still_completes(
    sqlite_cluster: Cluster, sim: SimulatorProcess
) -> None:
    (worker,) = sqlite_cluster.start(CHAT_SHUTDOWN_GRACE="20")
    socket = await open_conversation(worker)
    message = "A short one [sim tokens=90 tps=30]"
    await socket.send(message)
    reply = socket.replies[await socket.first_reply()]
    await socket.wait_for(lambda: reply.shown > 10)

    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    await socket.wait_for(lambda: socket.reader.done(), within=2)
    assert socket.close_code == SERVICE_RESTART
    assert reply.status in ACTIVE

    assert await asyncio.to_thread(worker.process.wait, 10) == 0
    # It exited because the reply was done, well before the grace period ran out.
    assert time.monotonic() - signalled < 6
    saved = sqlite_cluster.db.reply(min(socket.replies))
    assert saved["status"] == "complete"
    assert saved["content"] == upstream_request(sim, message)["text"]
