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
from httpx_sse import EventSource, SSEError

from chat.providers import DIALECTS
from chat.providers.base import Turn, error_from_body
from chat.providers.config import Provider
from chat.providers.events import Event, TextDelta, UpstreamError

RETRYABLE_STATUS = {408, 409, 429}
RetryHook = Callable[[int, float, str], Awaitable[None]]

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def get_client() -> httpx.AsyncClient:
    """One pooled client per event loop (tests run several loops in one process)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.CHAT_CONNECT_TIMEOUT,
                read=settings.CHAT_READ_TIMEOUT,
                write=10.0,
                pool=10.0,
            ),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )
    return _clients[loop]


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
    """Exponential backoff with full jitter, or the upstream's Retry-After when given."""
    if retry_after is not None:
        return min(retry_after, settings.CHAT_MAX_RETRY_WAIT)
    return random.uniform(0, min(settings.CHAT_MAX_RETRY_WAIT, 0.5 * 2**attempt))


async def _open_error(response: httpx.Response) -> UpstreamError:
    body = await response.aread()
    message = error_from_body(body) or response.reason_phrase or "request failed"
    status = response.status_code
    return UpstreamError(
        f"the upstream answered {status}: {message}",
        retryable=status in RETRYABLE_STATUS or status >= 500,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


async def _attempt(provider: Provider, model: str, turns: Sequence[Turn], system_prompt: str):
    dialect = DIALECTS[provider.dialect]
    request = dialect.build_request(provider, model, turns, system_prompt)
    headers = {"Accept": "text/event-stream", **request.headers}
    async with get_client().stream("POST", request.url, json=request.json, headers=headers) as response:
        if response.status_code >= 400:
            raise await _open_error(response)
        # SSE is UTF-8 by definition; utf-8-sig also drops the BOM httpx-sse keeps.
        response.encoding = "utf-8-sig"
        parser = dialect.Parser()
        try:
            async for sse in EventSource(response).aiter_sse():
                for event in parser.feed(sse):
                    yield event
        except SSEError as exc:
            raise UpstreamError(f"the upstream did not send an event stream ({exc})") from exc
        for event in parser.close():
            yield event


async def stream_events(
    provider: Provider,
    model: str,
    turns: Sequence[Turn],
    system_prompt: str = "",
    *,
    on_retry: RetryHook | None = None,
) -> AsyncIterator[Event]:
    """Typed events of one reply; retries only before the first delta.

    Raises ``UpstreamError`` for every failure, worded for the person reading the reply.
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
        attempt += 1
        if started or not error.retryable or attempt >= settings.CHAT_MAX_ATTEMPTS:
            raise error
        delay = backoff_delay(attempt, error.retry_after)
        if on_retry:
            await on_retry(attempt, delay, error.message)
        await asyncio.sleep(delay)
