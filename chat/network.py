"""The sockets under httpx: asyncio's own, without anyio's costs on every read.

httpcore reads a streamed body one network read at a time, and on asyncio it reads
through anyio, which per read enters a cancel scope for the timeout, wraps it in two
context managers, and pauses and resumes the transport (two ``epoll_ctl`` calls). With
an upstream token per read, that was a tenth of a busy worker's CPU (docs/benchmark.md).
Here a read takes what the protocol has buffered, and only waits, with a timer, when
there is nothing. This is httpcore's documented extension point (``network_backend``);
httpx's transport is given a connection pool that uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

# A response buffered beyond this stops reading the socket until it is read.
HIGH_WATER = 256 * 1024


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


# httpcore's names for what asyncio's transports call otherwise.
_EXTRA_INFO = {
    "ssl_object": "ssl_object",
    "client_addr": "sockname",
    "server_addr": "peername",
    "socket": "socket",
}


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.buffer and not protocol.eof:
            loop = asyncio.get_running_loop()
            waiter = protocol.waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
            try:
                await waiter
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out while reading") from None
            finally:
                protocol.waiter = None
                if timer is not None:
                    timer.cancel()
        if protocol.buffer:
            data = bytes(protocol.buffer[:max_bytes])
            del protocol.buffer[:max_bytes]
            if protocol.paused and len(protocol.buffer) < HIGH_WATER // 2:
                protocol.paused = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error)) from protocol.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if (writable := self._protocol.writable) is not None:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(writable)
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out while writing") from None

    async def aclose(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """The FIN goes out now (a Stop is seen by the upstream at once); the socket itself
        closes on the loop's next turn. Closing again does nothing."""
        with contextlib.suppress(OSError, NotImplementedError, RuntimeError):
            self._transport.write_eof()
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout("timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(transport, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle pooled connection with something to read was closed by the server.
            return bool(self._protocol.buffer) or self._protocol.eof
        name = _EXTRA_INFO.get(info)
        return self._transport.get_extra_info(name) if name else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(_Protocol, host, port, local_addr=local)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_Protocol, path)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {path}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool, with its bookkeeping pass in one walk over the connections.

    The pool runs ``_assign_requests_to_connections`` whenever a request starts or a
    response closes. httpcore 1.0.9's walks every connection again for each idle one it
    looks at, and again for each queued request (encode/httpcore#1035, still open): with a
    reply per connection, at 200 replies that pass was a tenth of a worker's CPU
    (docs/benchmark.md). This one does what it does in a walk or two. It also counts the
    idle connections against ``max_keepalive_connections``, as that limit is documented;
    httpcore's compares the count of all connections, so past that many replies at once
    every connection a reply gave back was closed instead of kept alive.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        # Closed ones go; expired ones are closed; surplus idle ones, oldest first, too.
        kept: list[httpcore.AsyncConnectionInterface] = []
        idle = 0
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.has_expired():
                closing.append(connection)
                continue
            kept.append(connection)
            idle += connection.is_idle()
        surplus = idle - self._max_keepalive_connections
        if surplus > 0:
            spare = [c for c in kept if c.is_idle()][:surplus]
            closing += spare
            evicted = set(spare)
            kept = [c for c in kept if c not in evicted]
        self._connections[:] = kept

        # Queued requests: a connection that can take one (the first, as httpcore picks),
        # else a new connection, else an idle one closed to make room for a new one.
        # Assigning a request changes no connection's state until the request starts, so
        # the lists are read once (a new connection is neither available nor idle).
        queued = [request for request in self._requests if request.is_queued()]
        if not queued:
            return closing
        available = [c for c in self._connections if c.is_available()]
        idle_connections = [c for c in self._connections if c.is_idle()]
        for pool_request in queued:
            origin = pool_request.request.url.origin
            connection = next((c for c in available if c.can_handle_request(origin)), None)
            if connection is None and len(self._connections) >= self._max_connections:
                if not idle_connections:
                    continue
                spare = idle_connections.pop(0)
                self._connections.remove(spare)
                if spare in available:
                    available.remove(spare)
                closing.append(spare)
            if connection is None:
                connection = self.create_connection(origin)
                self._connections.append(connection)
            pool_request.assign_to_connection(connection)
        return closing


def transport(limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> httpx.AsyncHTTPTransport:
    """httpx's own transport, on a connection pool (``Pool``) that uses ``AsyncioBackend``."""
    result = httpx.AsyncHTTPTransport(limits=limits)
    # httpx builds its pool without a way to pass a network backend; this is the pool it
    # builds (httpx/_transports/default.py), with one.
    result._pool = Pool(
        ssl_context=ssl_context or httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=AsyncioBackend(),
    )
    return result
