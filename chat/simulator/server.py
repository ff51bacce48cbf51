"""A small HTTP/1.1 server for the demo model, on asyncio streams.

Raw streams rather than an ASGI server, because the tests need what a framework hides:
aborting a connection mid-body, writing a stream in chosen byte chunks, and the exact
moment a client hangs up. It also serves ``GET /_sim/requests`` (what it did, per
request) and ``POST /_sim/reset`` to the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from itertools import count
from typing import Any

from chat.simulator.dialects import route
from chat.simulator.script import Plan, plan_for, reasoning_text, reply_text

MAX_BODY = 8 * 1024 * 1024
MAX_RECORDS = 20_000
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
           409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable"}  # fmt: skip


class BadRequest(Exception):
    pass


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    request_line = (await reader.readline()).decode("latin-1").strip()
    if not request_line:
        raise BadRequest("empty request")
    method, path, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    while (line := (await reader.readline()).decode("latin-1").strip()) != "":
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    if length > MAX_BODY:
        raise BadRequest("body too large")
    body = await reader.readexactly(length) if length else b""
    return method, path.split("?", 1)[0], headers, body


class Simulator:
    """``keep_alive``: serve one request after another on a connection, as vendors do,
    until the client closes it; otherwise close it after each response."""

    def __init__(self, tokens_per_second: float = 40.0, api_key: str = "", keep_alive: bool = False) -> None:
        self.tokens_per_second = tokens_per_second
        self.api_key = api_key
        self.keep_alive = keep_alive
        self.records: list[dict[str, Any]] = []
        self.failures: Counter[str] = Counter()
        self.ids = count(1)
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        try:
            while await self._serve_one(reader, writer, connection) and self.keep_alive:
                pass
        finally:
            writer.close()

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: int
    ) -> bool:
        """One request; True when the connection may carry another."""
        try:
            try:
                method, path, headers, body = await read_request(reader)
            except BadRequest:
                if reader.at_eof():
                    return False  # the client closed an idle connection
                raise
            if path.startswith("/_sim/"):
                await self._control(writer, method, path)
                return True
            return await self._generate(reader, writer, method, path, headers, body, connection)
        except (BadRequest, ValueError, LookupError, TypeError, AttributeError, asyncio.IncompleteReadError):
            await self._respond(writer, 400, {"error": {"message": "bad request"}})
        except ConnectionError:
            pass
        return False

    def _message(self, plan: Plan, default: str) -> str:
        """The error text to send; ``{key}`` in it is the API key, echoed as some vendors do."""
        return (plan.message or default).replace("{key}", self.api_key)

    @property
    def _connection_header(self) -> str:
        return "" if self.keep_alive else "connection: close\r\n"

    async def _respond(self, writer: asyncio.StreamWriter, status: int, data: Any, extra: str = "") -> None:
        payload = json.dumps(data).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n{self._connection_header}{extra}\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()

    async def _control(self, writer: asyncio.StreamWriter, method: str, path: str) -> None:
        if path == "/_sim/requests" and method == "GET":
            await self._respond(writer, 200, self.records)
        elif path == "/_sim/reset" and method == "POST":
            self.records.clear()
            self.failures.clear()
            await self._respond(writer, 200, {"ok": True})
        else:
            await self._respond(writer, 404, {"error": {"message": "no such control"}})

    def _authorized(self, dialect: Any, headers: dict[str, str]) -> bool:
        """The key in the header this dialect's vendor expects it in, and only there."""
        if not self.api_key:
            return True
        expected = self.api_key if dialect.key_header == "x-api-key" else f"Bearer {self.api_key}"
        return headers.get(dialect.key_header) == expected

    async def _generate(
        self, reader, writer, method: str, path: str, headers: dict[str, str], body: bytes, connection: int
    ) -> bool:
        """Answer a request for a reply; True when its stream ended cleanly."""
        found = route(path)
        if method != "POST" or found is None:
            await self._respond(writer, 404, {"error": {"message": f"no route for {method} {path}"}})
            return True
        dialect, path_model = found
        payload = json.loads(body or b"{}")
        request = dialect.parse(payload, path_model)
        plan = plan_for(request.prompt, self.tokens_per_second)
        # A limit the request sets cuts the reply off there, as a model's would.
        limit = payload.get(dialect.max_tokens_field) if dialect.max_tokens_field else None
        if isinstance(limit, int) and 0 < limit < plan.tokens:
            plan.tokens, plan.finish = limit, "length"
        record: dict[str, Any] = {
            "id": next(self.ids), "dialect": dialect.name, "path": path, "model": request.model,
            "prompt": request.prompt, "image_url": request.image_url,
            "authorized": bool(headers.get("authorization") or headers.get("x-api-key")),
            "key_header": next((h for h in ("authorization", "x-api-key") if headers.get(h)), ""),
            "body": payload,
            "started_at": time.time(), "token_times": [], "text": "", "reasoning": "", "outcome": "",
            "ended_at": None, "client_closed_at": None, "connection": connection,
        }  # fmt: skip
        self.records.append(record)
        del self.records[:-MAX_RECORDS]
        if not self._authorized(dialect, headers):
            record["outcome"] = "unauthorized"
            await self._respond(writer, 401, dialect.error_body(401, "Invalid API key."))
            return True
        if plan.fail and plan.times and self.failures[request.prompt] >= plan.times:
            plan.fail = ""  # failed often enough for this prompt: now it works
        elif plan.fail:
            self.failures[request.prompt] += 1
        if plan.fail == "status":
            record["outcome"] = f"status {plan.status}"
            extra = f"retry-after: {plan.retry_after}\r\n" if plan.retry_after else ""
            await self._respond(
                writer,
                plan.status,
                dialect.error_body(plan.status, self._message(plan, "The demo model is overloaded.")),
                extra,
            )
            return True
        await self._stream(reader, writer, dialect, request, plan, record)
        return record["outcome"] == "complete"

    async def _stream(self, reader, writer, dialect, request, plan: Plan, record: dict[str, Any]) -> None:
        closed = asyncio.Event()

        def hung_up() -> None:
            record["client_closed_at"] = record["client_closed_at"] or time.time()
            record["outcome"] = record["outcome"] or "client closed"
            closed.set()

        async def watch() -> None:
            # A client that closes with our bytes unread in its buffer resets the
            # connection instead of ending it: a hang-up all the same.
            with contextlib.suppress(ConnectionError):
                while await reader.read(4096):
                    pass
            hung_up()

        watcher = asyncio.create_task(watch())
        newline = {"lf": "\n", "cr": "\r", "crlf": "\r\n"}[plan.newline]

        async def emit(text: str) -> None:
            data = text.replace("\n", newline).encode()
            step = plan.chunk or len(data)
            for start in range(0, len(data), step):
                piece = data[start : start + step]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                if plan.chunk:
                    await writer.drain()
                    await asyncio.sleep(0.002)
            await writer.drain()

        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
                + self._connection_header.encode()
                + b"\r\n"
            )
            if plan.bom:
                writer.write(b"3\r\n\xef\xbb\xbf\r\n")
            for event in dialect.head(request):
                await emit(event)
            # Thinking first, where the dialect carries it, at the same pace as the answer.
            thoughts = reasoning_text(request.prompt, plan) if hasattr(dialect, "thinking") else []
            tokens = reply_text(request.prompt, plan)
            start = time.monotonic() + plan.first_token_delay
            text = thought = ""
            for i, token in enumerate(thoughts):
                await self._wait_until(start + i / plan.tps, plan, emit)
                if closed.is_set():
                    record["outcome"] = "client closed"
                    return
                await emit(dialect.thinking(token))
                thought += token
                record["reasoning"] = thought
            start += len(thoughts) / plan.tps
            for i, token in enumerate(tokens):
                if (
                    plan.fail
                    and i == plan.after
                    and await self._fail(writer, emit, dialect, plan, record, closed)
                ):
                    return
                await self._wait_until(start + i / plan.tps, plan, emit)
                if closed.is_set():
                    record["outcome"] = "client closed"
                    return
                await emit(dialect.token(token, text))
                text += token
                record["token_times"].append(time.time())
                record["text"] = text
            if (
                plan.fail
                and plan.after >= len(tokens)
                and await self._fail(writer, emit, dialect, plan, record, closed)
            ):
                return
            for event in dialect.tail(request, plan.finish, text, thought):
                await emit(event)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            record["outcome"] = "complete"
        except ConnectionError:
            hung_up()
            record["outcome"] = "client closed"
        finally:
            record["ended_at"] = time.time()
            if closed.is_set() or record["outcome"] != "complete" or self.keep_alive:
                # Kept alive, the connection waits for the client's next request, which
                # only this connection's next read may take.
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            else:
                # Give the client a moment to hang up first, so the close is its own.
                try:
                    await asyncio.wait_for(closed.wait(), 1.0)
                except TimeoutError:
                    watcher.cancel()

    @staticmethod
    async def _wait_until(moment: float, plan: Plan, emit) -> None:
        """Sleep until ``moment``; a comment every ``plan.keepalive`` s keeps the line busy."""
        while (delay := moment - time.monotonic()) > 0:
            if plan.keepalive and delay > plan.keepalive:
                await asyncio.sleep(plan.keepalive)
                await emit(": keep-alive\n\n")
            else:
                await asyncio.sleep(delay)

    async def _fail(
        self, writer, emit, dialect, plan: Plan, record: dict[str, Any], closed: asyncio.Event
    ) -> bool:
        """Inject ``plan.fail``; True when the stream is over."""
        record["outcome"] = plan.fail
        if plan.fail == "error":
            await emit(dialect.error_event(self._message(plan, "The demo model failed mid-stream.")))
            writer.write(b"0\r\n\r\n")
        elif plan.fail == "corrupt":
            await emit("data: {not json\n\n")
            return False
        elif plan.fail == "truncate":
            writer.write(b"0\r\n\r\n")
        elif plan.fail == "stall":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), 600)
        elif plan.fail == "disconnect":
            writer.transport.abort()
            return True
        else:
            return False
        await writer.drain()
        return True


async def serve(host: str, port: int, simulator: Simulator) -> asyncio.Server:
    return await asyncio.start_server(simulator.handle, host, port, reuse_address=True)
