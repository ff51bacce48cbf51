"""The HTTP side of a reply: one streaming request to an upstream, as typed events.

HTTP/1.1 on purpose: closing a streamed HTTP/1.1 response early closes the socket, so
the upstream sees Stop (with HTTP/2 no RST_STREAM is sent; httpcore #943).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import httpx
from django.conf import settings
from httpx_sse import EventSource, ServerSentEvent

from chat.providers import DIALECTS
from chat.providers.base import Parser, Turn, error_from_body
from chat.providers.config import Provider
from chat.providers.events import Event, TextDelta, UpstreamError

RETRYABLE_STATUS = {408, 409, 429}
EVENT_STREAM = "text/event-stream"
RetryHook = Callable[[int, float, str], Awaitable[None]]

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def get_client() -> httpx.AsyncClient:
    """One pooled client per event loop (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )
    return _clients[loop]


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


def _missing_line_ends(tail: bytes) -> int:
    """How many line ends a body ending in ``tail`` lacks to end on a blank line."""
    ends = 0
    while ends < 2 and tail[-1:] in (b"\r", b"\n"):
        tail = tail[:-2] if tail.endswith(b"\r\n") else tail[:-1]
        ends += 1
    return 2 - ends


async def sse_events(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """The events of an event-stream response, through httpx-sse plus what it lacks.

    SSE is UTF-8 by definition; decoding as utf-8-sig also drops a leading BOM, which
    httpx-sse would keep as part of the first field name. httpx-sse also drops a last
    event the upstream did not end with a blank line; the line ends it lacks are added
    (as CRs, which cannot merge with a CR before them into one CRLF), so that event
    reaches the parser, which then sees its end signal or its broken JSON.
    """

    async def body() -> AsyncIterator[bytes]:
        tail = b""
        async for chunk in response.aiter_bytes():
            tail = (tail + chunk[-4:])[-4:]
            yield chunk
        yield b"\r" * _missing_line_ends(tail)

    sealed = httpx.Response(response.status_code, headers={"content-type": EVENT_STREAM}, content=body())
    sealed.encoding = "utf-8-sig"
    async for sse in EventSource(sealed).aiter_sse():
        yield sse


async def read_stream(response: httpx.Response, parser: Parser) -> AsyncIterator[Event]:
    """A dialect's events from an event-stream response; ``close`` checks its end signal."""
    async for sse in sse_events(response):
        for event in parser.feed(sse):
            yield event
    for event in parser.close():
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


async def _attempt(
    provider: Provider, model: str, turns: Sequence[Turn], system_prompt: str
) -> AsyncIterator[Event]:
    dialect = DIALECTS[provider.dialect]
    request = dialect.build_request(provider, model, turns, system_prompt)
    headers = {"Accept": EVENT_STREAM, **request.headers}
    client = get_client()
    async with client.stream(
        "POST", request.url, json=request.json, headers=headers, timeout=request_timeout()
    ) as response:
        if response.status_code >= 400:
            raise await _open_error(response)
        if EVENT_STREAM not in response.headers.get("content-type", ""):
            raise await _not_a_stream(response)
        async for event in read_stream(response, dialect.Parser()):
            yield event


def without_key(error: UpstreamError, provider: Provider) -> UpstreamError:
    """The error as the person may read it: with the provider's key cut out, should the
    upstream have echoed it (some repeat a rejected key in their message)."""
    key = provider.api_key()
    if len(key) < 8 or key not in error.message:
        return error
    return UpstreamError(
        error.message.replace(key, "[the API key]"), retryable=error.retryable, retry_after=error.retry_after
    )


async def stream_events(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str = "",
    *,
    on_retry: RetryHook | None = None,
) -> AsyncIterator[Event]:
    """Typed events of one reply; retries only before the first delta.

    Only connect errors, 408, 409, 429 and 5xx are retried, at most ``CHAT_MAX_ATTEMPTS``
    times in all, and never when the upstream asks to wait longer than
    ``CHAT_MAX_RETRY_WAIT``. Raises ``UpstreamError`` for every failure, worded for the
    person reading the reply.
    """
    attempt = 0
    while True:
        started = False
        try:
            async for event in _attempt(provider, model, turns, system_prompt):
                started = started or isinstance(event, TextDelta)
                yield event
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
        if started or not error.retryable or attempt >= settings.CHAT_MAX_ATTEMPTS:
            raise error
        delay = backoff_delay(attempt, error.retry_after)
        if delay > settings.CHAT_MAX_RETRY_WAIT:
            raise UpstreamError(f"{error.message} (it asked to wait {delay:.0f} s before trying again)")
        if on_retry:
            await on_retry(attempt, delay, error.message)
        await asyncio.sleep(delay)
