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
