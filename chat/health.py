"""For whoever runs the app: is a worker alive, is it ready, and how is it doing.

``/healthz`` and ``/readyz`` need no login, cost little and say nothing of URLs,
versions or keys. ``/metrics`` is for staff, or for a scraper that sends
``Authorization: Bearer $CHAT_METRICS_TOKEN``; anyone else gets a 403.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat import metrics as _registered  # noqa: F401 (the app's metrics, on import)

logger = logging.getLogger(__name__)

# How long readiness waits for each service.
READY_TIMEOUT = 2.0


@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and answers."""
    return JsonResponse({"status": "alive"})


def database_answers() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


async def channel_layer_answers() -> bool:
    """A message to a channel of this process's own comes back through the layer."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    return (await layer.receive(channel))["type"] == "health.ping"


async def _within(check, what: str) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            return "ok" if await check else "unavailable"
    except Exception as exc:
        logger.warning("readiness: the %s is unavailable (%s)", what, type(exc).__name__)
        return "unavailable"


@login_not_required
async def readyz(request: HttpRequest) -> JsonResponse:
    """The database answers and the channel layer completes a round trip: 200, else 503."""
    database = await _within(sync_to_async(database_answers)(), "database")
    layer = await _within(channel_layer_answers(), "channel layer")
    ready = database == layer == "ok"
    body = {"status": "ready" if ready else "not ready", "database": database, "channel_layer": layer}
    return JsonResponse(body, status=200 if ready else 503)


@login_not_required
def metrics(request: HttpRequest) -> HttpResponse:
    if not (_bearer_matches(request) or (request.user.is_active and request.user.is_staff)):
        return HttpResponse("Staff, or the metrics token, only.\n", status=403, content_type="text/plain")
    response = HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
    # The figures are this worker's: which one, where several serve one address.
    response["X-Chat-Worker"] = str(os.getpid())
    return response


def _bearer_matches(request: HttpRequest) -> bool:
    token = settings.CHAT_METRICS_TOKEN
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and secrets.compare_digest(sent.encode(), token.encode())
