"""The HTTP side of a reply: one streaming request to an upstream, as typed events.

HTTP/1.1 on purpose: closing a streamed HTTP/1.1 response early closes the socket, so
the upstream sees Stop (with HTTP/2 no RST_STREAM is sent; httpcore #943). A connection
whose response was read to its end goes back to the pool for the next reply; one closed
early (Stop) is closed, never reused: httpcore keeps only connections whose exchange
finished.

Events come in batches, one per network read: the relay's profile showed most of a
token's cost in the async hops between the socket and the parser (seven per event
through httpx-sse's iterators), so the framing runs synchronously over each read.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import email.utils
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import httpx
from django.conf import settings
from httpx_sse import ServerSentEvent

# httpx-sse's own line and event decoders, fed directly (see ``SSEFramer``).
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from chat import network
from chat.providers import DIALECTS
from chat.providers.base import Parser, Turn, error_from_body
from chat.providers.config import Provider
from chat.providers.events import Event, UpstreamError
from chat.providers.parameters import Value

RETRYABLE_STATUS = {408, 409, 429}
EVENT_STREAM = "text/event-stream"
RetryHook = Callable[[int, float, str], Awaitable[None]]
Parameters = Mapping[str, Value]

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def get_client() -> httpx.AsyncClient:
    """One pooled client per event loop (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        _clients[loop] = httpx.AsyncClient(transport=network.transport(limits))
    return _clients[loop]


async def close_client() -> None:
    """Close this event loop's client and the connections it keeps alive."""
    if (client := _clients.pop(asyncio.get_running_loop(), None)) is not None:
        await client.aclose()


def request_timeout() -> httpx.Timeout:
    """Read per request, so a changed setting applies to a client made before it.

    ``read`` is the longest silence between two chunks: a stall. The whole reply is
    bounded by the runner's deadline, not here.
    """
    return httpx.Timeout(
        connect=settings.CHAT_CONNECT_TIMEOUT, read=settings.CHAT_READ_TIMEOUT, write=10.0, pool=10.0
    )


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """The upstream's Retry-After when given, else exponential backoff with full jitter."""
    if retry_after is not None:
        return retry_after
    return random.uniform(0, min(settings.CHAT_MAX_RETRY_WAIT, 0.5 * 2**attempt))


def _missing_line_ends(tail: str) -> int:
    """How many line ends a stream ending in ``tail`` lacks to end on a blank line."""
    ends = 0
    while ends < 2 and tail[-1:] in ("\r", "\n"):
        tail = tail[:-2] if tail.endswith("\r\n") else tail[:-1]
        ends += 1
    return 2 - ends


class SSEFramer:
    """Bytes of an event stream in, server-sent events out: httpx-sse's framing, synchronously.

    ``EventSource.aiter_sse`` wraps the same two decoders in three async generators over
    ``aiter_text``; here they are fed one network read at a time. SSE is UTF-8 by
    definition; decoding as utf-8-sig also drops a leading BOM, which httpx-sse would keep
    as part of the first field name. httpx-sse drops a last event the upstream did not end
    with a blank line; ``close`` ends it, so it reaches the parser, which then sees its end
    signal or its broken JSON.
    """

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._lines = SSELineDecoder()
        self._events = SSEDecoder()
        self._tail = ""

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        text = self._text.decode(data)
        if not text:
            return []
        self._tail = (self._tail + text[-4:])[-4:]
        return self._decode(self._lines.decode(text))

    def close(self) -> list[ServerSentEvent]:
        # The line ends the stream lacks to end on a blank line, as CRs, which cannot
        # merge with a CR before them into one CRLF.
        rest = self._text.decode(b"", final=True) + "\r" * _missing_line_ends(self._tail)
        lines = self._lines.decode(rest) if rest else []
        return self._decode(lines + self._lines.flush())

    def _decode(self, lines: list[str]) -> list[ServerSentEvent]:
        decode = self._events.decode
        return [sse for line in lines if (sse := decode(line)) is not None]


class EventReader:
    """A dialect's events from an event stream's bytes, one batch per network read.

    An error event ends the stream, but the events before it in the same read still count:
    ``feed`` returns them and keeps the error in ``error``, for the caller to raise after
    it has used them. How the upstream's writes fell into reads changes no reply's text.
    """

    def __init__(self, parser: Parser) -> None:
        self._framer = SSEFramer()
        self._parser = parser
        self.error: UpstreamError | None = None

    def feed(self, data: bytes) -> list[Event]:
        return self._events(self._framer.feed(data))

    def close(self) -> list[Event]:
        """The last events; ``error`` is set if the stream lacked its end signal."""
        events = self._events(self._framer.close())
        if self.error is None:
            try:
                events += self._parser.close()
            except UpstreamError as exc:
                self.error = exc
        return events

    def _events(self, sses: list[ServerSentEvent]) -> list[Event]:
        events: list[Event] = []
        feed = self._parser.feed
        for sse in sses:
            try:
                events += feed(sse)
            except UpstreamError as exc:
                self.error = exc
                break
        return events


async def sse_events(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """The server-sent events of a response (for tests of the framing)."""
    framer = SSEFramer()
    async for chunk in response.aiter_bytes():
        for sse in framer.feed(chunk):
            yield sse
    for sse in framer.close():
        yield sse


async def read_batches(response: httpx.Response, parser: Parser) -> AsyncIterator[list[Event]]:
    """A dialect's events from an event-stream response, a list per network read."""
    reader = EventReader(parser)
    async for chunk in response.aiter_bytes():
        if events := reader.feed(chunk):
            yield events
        if reader.error is not None:
            raise reader.error
    if events := reader.close():
        yield events
    if reader.error is not None:
        raise reader.error


async def read_stream(response: httpx.Response, parser: Parser) -> AsyncIterator[Event]:
    """``read_batches`` one event at a time."""
    async for batch in read_batches(response, parser):
        for event in batch:
            yield event


async def _open_error(response: httpx.Response) -> UpstreamError:
    body = await response.aread()
    message = error_from_body(body) or response.reason_phrase or "request failed"
    status = response.status_code
    return UpstreamError(
        f"the upstream answered {status}: {message}",
        retryable=status in RETRYABLE_STATUS or status >= 500,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


async def _not_a_stream(response: httpx.Response) -> UpstreamError:
    """A 200 that is not an event stream: often an error in a JSON body, else a wrong URL."""
    body = await response.aread()
    content_type = response.headers.get("content-type", "").partition(";")[0] or "no content type"
    return UpstreamError(error_from_body(body) or f"the upstream sent {content_type}, not an event stream")


class Connection:
    """The connection a reply's response streams on, while it streams: ``close_now`` closes
    it from outside the task reading it.

    A Stop cancels that task, and the task closes the response as it unwinds, a pass or
    two of the event loop later (httpcore's lock takes a pass of its own): in a busy
    worker, passes of a second. Closed here, the upstream has the end of the request in
    the same pass as the Stop."""

    def __init__(self) -> None:
        self.stream: network.AsyncioStream | None = None

    def close_now(self) -> None:
        if self.stream is not None:
            self.stream.close_now()


async def _attempt(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str,
    parameters: Parameters,
    connection: Connection | None,
) -> AsyncIterator[list[Event]]:
    dialect = DIALECTS[provider.dialect]
    request = dialect.build_request(provider, model, turns, system_prompt, parameters)
    headers = {"Accept": EVENT_STREAM, **request.headers}
    client = get_client()
    async with client.stream(
        "POST", request.url, json=request.json, headers=headers, timeout=request_timeout()
    ) as response:
        if response.status_code >= 400:
            raise await _open_error(response)
        if EVENT_STREAM not in response.headers.get("content-type", ""):
            raise await _not_a_stream(response)
        stream = response.extensions.get("network_stream")
        if connection is not None and isinstance(stream, network.AsyncioStream):
            connection.stream = stream
        try:
            async for batch in read_batches(response, dialect.Parser()):
                yield batch
        finally:
            # Before the connection goes back to the pool, for another reply to use.
            if connection is not None:
                connection.stream = None


def without_key(error: UpstreamError, provider: Provider) -> UpstreamError:
    """The error as the person may read it: with the provider's key cut out, should the
    upstream have echoed it (some repeat a rejected key in their message)."""
    key = provider.api_key()
    if len(key) < 8 or key not in error.message:
        return error
    return UpstreamError(
        error.message.replace(key, "[the API key]"), retryable=error.retryable, retry_after=error.retry_after
    )


async def stream_batches(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str = "",
    parameters: Parameters | None = None,
    *,
    on_retry: RetryHook | None = None,
    connection: Connection | None = None,
) -> AsyncIterator[list[Event]]:
    """Typed events of one reply, a list per network read; retries only before the first delta.
    ``connection``: told which connection the response streams on (``Connection``).

    Only connect errors, 408, 409, 429 and 5xx are retried, at most ``CHAT_MAX_ATTEMPTS``
    times in all, and never when the upstream asks to wait longer than
    ``CHAT_MAX_RETRY_WAIT``. Each of those happens before a response streams, so text
    once given to the caller is never asked for again. Raises ``UpstreamError`` for every
    failure, worded for the person reading the reply.
    """
    attempt = 0
    while True:
        try:
            async for batch in _attempt(provider, model, turns, system_prompt, parameters or {}, connection):
                yield batch
            return
        except UpstreamError as exc:
            error = exc
        except httpx.ConnectError as exc:
            error = UpstreamError(f"could not connect to the upstream ({exc})", retryable=True)
        except httpx.ConnectTimeout:
            error = UpstreamError("connecting to the upstream timed out", retryable=True)
        except httpx.ReadTimeout:
            error = UpstreamError(f"the upstream sent nothing for {settings.CHAT_READ_TIMEOUT:g} s")
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            error = UpstreamError(f"the connection to the upstream dropped ({exc})")
        except httpx.HTTPError as exc:
            error = UpstreamError(f"the request to the upstream failed ({exc})")
        error = without_key(error, provider)
        attempt += 1
        if not error.retryable or attempt >= settings.CHAT_MAX_ATTEMPTS:
            raise error
        delay = backoff_delay(attempt, error.retry_after)
        if delay > settings.CHAT_MAX_RETRY_WAIT:
            raise UpstreamError(f"{error.message} (it asked to wait {delay:.0f} s before trying again)")
        if on_retry:
            await on_retry(attempt, delay, error.message)
        await asyncio.sleep(delay)


async def stream_events(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str = "",
    *,
    on_retry: RetryHook | None = None,
) -> AsyncIterator[Event]:
    """``stream_batches`` one event at a time; closing it closes the upstream request at once."""
    batches = stream_batches(provider, model, turns, system_prompt, on_retry=on_retry)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for event in batch:
                yield event
