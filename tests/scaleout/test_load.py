"""A hundred replies at once through two workers on Redis and PostgreSQL: every persisted
reply, and every page's final text, equals what the upstream sent, character for character.

Each person has two pages open: the one that sends, on the worker that runs the reply
(frames handed over in the process), and one on the other worker (frames over Redis).
Also with a channel capacity of 3, at which channels_redis drops most frames silently:
what a page misses is repaired, never shown wrong."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.scaleout.clients import ACTIVE, ChatSocket, Session
from tests.scaleout.conftest import Cluster
from tests.servers import SimulatorProcess, manage

pytestmark = pytest.mark.scaleout

PEOPLE = 100
METRICS_TOKEN = "load-test-metrics"
# One person each: a person may have only a few replies running at once.
CREATE_PEOPLE = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from importlib import import_module
from django.conf import settings
SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
from chat import auth
from chat.models import Conversation
from chat.providers.config import get_providers

provider = next(iter(get_providers().values()))
people = []
for number in range({count}):
    user = get_user_model().objects.create(username=f"load-{{number}}")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = auth.BACKEND
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    model = provider.models[0].name
    conversation = Conversation.objects.create(owner=user, provider=provider.name, model=model)
    people.append([session.session_key, conversation.pk])
print(json.dumps(people))
"""


def create_people(env: dict[str, str], count: int) -> list[tuple[str, int]]:
    """People with a session and an empty conversation each, made without hashing passwords."""
    output = manage(env, "shell", "-c", CREATE_PEOPLE.format(count=count))
    # The last line: the app may log to standard output before it.
    return [tuple(person) for person in json.loads(output.strip().splitlines()[-1])]


def first_requests(sim: SimulatorProcess) -> dict[str, dict]:
    """The simulator's record of each reply, by its message (titles are asked for later)."""
    records: dict[str, dict] = {}
    for record in sim.requests():
        records.setdefault(record["prompt"], record)
    return records


@pytest.mark.parametrize("capacity", ["1000", "3"], ids=["default-capacity", "dropping-frames"])
async def test_a_hundred_concurrent_replies_through_two_workers_are_exact_on_every_page_and_in_the_database(
    cluster: Cluster, sim: SimulatorProcess, capacity: str
) -> None:
    workers = cluster.start(2, CHANNEL_CAPACITY=capacity, CHAT_METRICS_TOKEN=METRICS_TOKEN)
    people = await asyncio.to_thread(create_people, cluster.env, PEOPLE)

    async def pages(worker_of: int) -> list[ChatSocket]:
        return await asyncio.gather(
            *(
                ChatSocket.open(
                    workers[(number + worker_of) % 2].url, Session({"sessionid": key}), conversation
                )
                for number, (key, conversation) in enumerate(people)
            )
        )

    senders, watchers = await pages(0), await pages(1)
    messages = [f"Load {number} [sim tokens=200 tps=50]" for number in range(PEOPLE)]

    started = time.monotonic()
    await asyncio.gather(*(socket.send(message) for socket, message in zip(senders, messages, strict=True)))
    await asyncio.gather(
        *(
            socket.wait_for(
                lambda s=socket: s.replies and all(r.status not in ACTIVE for r in s.replies.values()),
                within=40,
            )
            for socket in senders + watchers
        )
    )
    elapsed = time.monotonic() - started

    records = first_requests(sim)
    saved = {
        row["conversation_id"]: row
        for row in cluster.db.rows(
            "SELECT conversation_id, status, content FROM chat_message WHERE role = 'assistant'"
        )
    }
    for sender, watcher, message, (_, conversation) in zip(senders, watchers, messages, people, strict=True):
        expected = records[message]["text"]
        assert saved[conversation]["status"] == "complete"
        assert saved[conversation]["content"] == expected
        for socket in (sender, watcher):
            (page,) = socket.replies.values()
            assert page.status == "complete"
            assert page.ended_as(expected)
            assert page.drawn_from(expected)
    await asyncio.gather(*(socket.close() for socket in senders + watchers))

    sent, watched = sum(s.frames for s in senders), sum(s.frames for s in watchers)
    resyncs = sum(page.snapshots for socket in watchers for page in socket.replies.values())
    # What each worker counted of the frames bound for the other worker's pages that the
    # channel layer refused (chat.metrics, from /metrics).
    dropped = sum([await asyncio.to_thread(frames_dropped, worker.url) for worker in workers])
    print(
        f"{PEOPLE} replies in {elapsed:.1f} s; frames {sent} and {watched} (watchers); "
        f"{resyncs} snapshots; {dropped:g} frames dropped"
    )
    if capacity == "1000":
        # At the default capacity the channel layer refused no frame: nothing was lost.
        assert dropped == 0
    if capacity == "3":
        # Each reply streams for 4 s (200 tokens at 50 a second), in a frame at least every
        # CHAT_MAX_FRAME_INTERVAL (0.25 s) plus the loop's lag: 16 frames or more, some
        # thirty to fifty on this machine, never one final frame. Those of the worker that
        # runs the reply never touch Redis; many of those bound for the other worker were
        # dropped, and its pages were repaired by snapshots, lookups and redraws.
        assert sent > 10 * PEOPLE
        assert dropped > 0


def frames_dropped(url: str) -> float:
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    response.raise_for_status()
    (line,) = [line for line in response.text.splitlines() if line.startswith("chat_frames_dropped_total ")]
    return float(line.split()[1])
