"""The sockets under httpx (chat.network): TLS, a slow reader, a server that hangs up."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chat import network

LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=5)


def self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


async def serve(handler, ssl_context: ssl.SSLContext | None = None) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    return server, server.sockets[0].getsockname()[1]


async def read_head(reader: asyncio.StreamReader) -> None:
    while (await reader.readline()) not in (b"\r\n", b""):
        pass


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=network.transport(LIMITS)) as client:
        yield client


async def test_a_streamed_body_arrives_whole_in_order_over_tls(tmp_path) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    pieces = [f"data: {n}\n\n".encode() for n in range(50)]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    server, port = await serve(handler, server_context)
    client_context = ssl.create_default_context(cafile=cert)
    async with (
        server,
        httpx.AsyncClient(transport=network.transport(LIMITS, ssl_context=client_context)) as client,
        client.stream("GET", f"https://localhost:{port}/") as response,
    ):
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert body == b"".join(pieces)


async def test_a_connection_read_to_its_end_is_used_again(client: httpx.AsyncClient) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            await read_head(reader)
            if reader.at_eof():
                break
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server, port = await serve(handler)
    async with server:
        for _ in range(3):
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
    assert connections == 1


async def test_idle_connections_are_kept_alive_while_more_than_the_limit_are_busy(
    client: httpx.AsyncClient,
) -> None:
    """The keep-alive limit (5 here) counts idle connections: with 7 requests at once,
    the 3 that end first leave their connections for the next 3 requests. (httpcore's own
    pool counted every connection, so past 5 at once each one given back was closed.)"""
    connections = 0
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            line = await reader.readline()
            await read_head(reader)
            if not line:
                break
            if b"/held" in line:
                await release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server, port = await serve(handler)
    async with server:
        held = [asyncio.create_task(client.get(f"http://127.0.0.1:{port}/held")) for _ in range(4)]
        quick = [client.get(f"http://127.0.0.1:{port}/quick") for _ in range(3)]
        assert [r.text for r in await asyncio.gather(*quick)] == ["ok"] * 3
        assert connections == 7
        again = [client.get(f"http://127.0.0.1:{port}/quick") for _ in range(3)]
        assert [r.text for r in await asyncio.gather(*again)] == ["ok"] * 3
        assert connections == 7
        release.set()
        assert [r.text for r in await asyncio.gather(*held)] == ["ok"] * 4


class FakeConnection:
    """What the pool asks of a connection, counted."""

    asked = 0

    def __init__(self, state: str) -> None:
        self.state = state

    def _ask(self, answer: bool) -> bool:
        FakeConnection.asked += 1
        return answer

    def is_closed(self) -> bool:
        return self._ask(self.state == "closed")

    def has_expired(self) -> bool:
        return self._ask(False)

    def is_idle(self) -> bool:
        return self._ask(self.state == "idle")

    def is_available(self) -> bool:
        return self._ask(self.state == "idle")

    def can_handle_request(self, origin) -> bool:
        return self._ask(True)


def test_the_pool_looks_at_each_connection_a_bounded_number_of_times_per_pass() -> None:
    """One bookkeeping pass, with every request and response, over 300 connections:
    httpcore's looked at every connection again for each idle one (90,000 questions)."""
    pool = network.Pool(max_connections=1000, max_keepalive_connections=500)
    pool._connections[:] = [FakeConnection("idle" if i % 2 else "active") for i in range(300)]
    FakeConnection.asked = 0
    assert pool._assign_requests_to_connections() == []
    assert len(pool._connections) == 300
    assert FakeConnection.asked <= 4 * 300


def test_the_pool_closes_the_oldest_idle_connections_past_the_keep_alive_limit() -> None:
    pool = network.Pool(max_connections=100, max_keepalive_connections=2)
    connections = [FakeConnection(state) for state in ["idle", "active", "idle", "closed", "idle", "idle"]]
    pool._connections[:] = connections
    assert pool._assign_requests_to_connections() == [connections[0], connections[2]]
    assert pool._connections == [connections[1], connections[4], connections[5]]


async def test_a_read_that_waits_past_its_timeout_is_a_read_timeout(client: httpx.AsyncClient) -> None:
    hung_up = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await writer.drain()
        await reader.read()  # until the client hangs up
        hung_up.set()

    server, port = await serve(handler)
    async with server:
        timeout = httpx.Timeout(5, read=0.2)
        with pytest.raises(httpx.ReadTimeout):
            async with client.stream("GET", f"http://127.0.0.1:{port}/", timeout=timeout) as response:
                async for _ in response.aiter_bytes():
                    pass
        await asyncio.wait_for(hung_up.wait(), 5)


async def test_a_server_that_resets_mid_body_is_a_read_error(client: httpx.AsyncClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await writer.drain()
        writer.transport.abort()

    server, port = await serve(handler)
    async with server:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
                async for _ in response.aiter_bytes():
                    pass


async def test_nothing_listening_is_a_connect_error(client: httpx.AsyncClient) -> None:
    server, port = await serve(lambda reader, writer: None)
    server.close()
    await server.wait_closed()
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{port}/")


async def test_a_large_body_is_read_in_full_past_the_buffer_limit(client: httpx.AsyncClient) -> None:
    body = bytes(range(256)) * (4 * network.HIGH_WATER // 256)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server, port = await serve(handler)
    async with server, client.stream("GET", f"http://127.0.0.1:{port}/") as response:
        await asyncio.sleep(0.2)  # the socket fills the buffer past its limit meanwhile
        received = b"".join([chunk async for chunk in response.aiter_raw()])
    assert received == body


async def test_httpcore_learns_which_event_loop_runs_without_searching_for_a_module(monkeypatch) -> None:
    """httpcore imports sniffio for each lock and event it sets up, four to six per upstream
    request: installed (requirements.txt), that is a lookup in ``sys.modules``; missing,
    each was a failed import that searched ``sys.path`` (49 us)."""
    import sys

    from httpcore._synchronization import current_async_library

    searched: list[str] = []

    class Searching:
        def find_spec(self, name, path=None, target=None):
            searched.append(name)
            return None

    current_async_library()  # the first asking imports it
    monkeypatch.setattr(sys, "meta_path", [Searching(), *sys.meta_path])
    assert [current_async_library() for _ in range(3)] == ["asyncio"] * 3
    assert searched == []
