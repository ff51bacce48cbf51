"""A worker's life under daphne: its runner starts with the process and drains on SIGTERM.

daphne serves on Twisted's asyncio reactor and has no ASGI lifespan. On SIGTERM the
reactor fires its "before shutdown" triggers in the order they were added, all in one
tick, and daphne's own trigger cancels every application instance, so from then on no
consumer relays anything. The trigger added here (at import of ``chatsite.asgi``, before
daphne adds its own) runs as a task of its own instead: it ends the runner's replies
through their normal finish path (final state written and broadcast), sends every page
on this worker the final state of the replies it was following, and closes its socket
with 1012 (Service Restart), on which htmx's ws extension reconnects, through the load
balancer, to another worker.

Two things daphne has no option for are set up here too: sending close codes 1012 and
1013, and compressed websocket frames.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from django.conf import settings

from chat.consumers import close_all_for_restart
from chat.runner import get_runner

logger = logging.getLogger(__name__)

# Service Restart and Try Again Later: htmx's ws extension reconnects on both.
RESTART_CODES = {1012, 1013}
# permessage-deflate. Frames to the page: an 8 KiB window with zlib's memory level 4, about
# 40 KiB a socket. The window holds the reply's recent text, so each frame's few words
# compress against it: a 20,000-character reply costs 0.95 bytes a character, 2.35 with a
# 2 KiB window (docs/benchmark.md). The page's own frames are a few words: 2 KiB.
DEFLATE_WINDOW_BITS = 13
DEFLATE_PAGE_WINDOW_BITS = 11
DEFLATE_MEM_LEVEL = 4

_tasks: set[asyncio.Future[Any]] = set()


def install() -> bool:
    """Hook the worker's start and shutdown; False when not served by Twisted's reactor."""
    reactor: Any = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return False
    _let_daphne_send_restart_codes()
    _let_daphne_compress_frames()
    # Startup triggers fire before the asyncio loop runs; callLater runs inside it.
    reactor.callWhenRunning(reactor.callLater, 0, _start_runner)
    reactor.addSystemEventTrigger("before", "shutdown", _drain_on_shutdown)
    return True


def _let_daphne_send_restart_codes() -> None:
    """Let ``websocket.close`` carry 1012 and 1013 through daphne.

    autobahn's ``sendClose`` accepts only 1000 and 3000-4999 from an application, so
    daphne cannot send them (daphne #374, autobahn #1642); ``sendCloseFrame``, the
    method it calls after that check, sends any code.
    """
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "sends_restart_codes", False):
        return
    close = WebSocketProtocol.serverClose

    def server_close(protocol: WebSocketProtocol, code: int | None = None) -> None:
        if code in RESTART_CODES:
            protocol.sendCloseFrame(code=code, isReply=False)
        else:
            close(protocol, code)

    WebSocketProtocol.serverClose = server_close
    WebSocketProtocol.sends_restart_codes = True


def _let_daphne_compress_frames() -> None:
    """Accept permessage-deflate (RFC 7692), which daphne never offers to negotiate.

    A frame is a few words of text in an htmx envelope of some fifty bytes that is the
    same every time; with the compressor's context kept from frame to frame the envelope
    shrinks to a few bytes, and a long reply costs the page about one byte a character
    instead of nine (docs/benchmark.md). Browsers offer the extension on every socket.
    """
    from daphne.ws_protocol import WebSocketFactory

    if getattr(WebSocketFactory, "compresses_frames", False):
        return
    init = WebSocketFactory.__init__

    def factory_init(factory: WebSocketFactory, *args: Any, **kwargs: Any) -> None:
        init(factory, *args, **kwargs)
        factory.setProtocolOptions(perMessageCompressionAccept=accept_deflate)

    WebSocketFactory.__init__ = factory_init
    WebSocketFactory.compresses_frames = True


def accept_deflate(offers: list[Any]) -> Any:
    """The first permessage-deflate offer, accepted with windows smaller than zlib's.

    zlib's defaults cost about 300 KiB per socket for the two directions. A smaller window
    than the client allows is always readable, so the server's own is not announced.
    Decompression stays bounded by daphne's maximum message size, which autobahn applies
    to the inflated bytes.
    """
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(
                offer,
                request_max_window_bits=DEFLATE_PAGE_WINDOW_BITS if offer.accept_max_window_bits else 0,
                window_bits=min(DEFLATE_WINDOW_BITS, offer.request_max_window_bits or DEFLATE_WINDOW_BITS),
                mem_level=DEFLATE_MEM_LEVEL,
            )
    return None


def _start_runner() -> None:
    # Start listening and sweeping now, so a worker that has started no reply of its own
    # still ends the replies of a crashed one.
    _keep(asyncio.ensure_future(get_runner().channel_name()))


def _drain_on_shutdown() -> Any:
    from twisted.internet.defer import Deferred

    # Twisted waits for this Deferred before it drops the connections.
    return Deferred.fromFuture(_keep(asyncio.ensure_future(drain(settings.CHAT_SHUTDOWN_GRACE))))


def _keep(task: asyncio.Future[Any]) -> asyncio.Future[Any]:
    # The loop holds tasks weakly: keep a reference until each is done.
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def drain(grace: float) -> None:
    """End this worker's replies and move its pages elsewhere.

    With a grace period, pages move first and keep following the replies from wherever
    they land (this worker still answers snapshots and Stop), then the rest is ended.
    """
    try:
        if grace > 0:
            await close_all_for_restart()
        await get_runner().shutdown(grace)
        await close_all_for_restart()
    except Exception:
        logger.exception("draining this worker failed")
    await _end_remaining_tasks()
    logger.info("worker drained")


async def _end_remaining_tasks() -> None:
    """Cancel what is still running and let it end, as ``asyncio.run()`` does on exit.

    Twisted stops the loop without that, and a coroutine left suspended in a queue's
    ``get()`` until the interpreter's last garbage collection can crash it (SIGSEGV).
    """
    if tasks := [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=2)
