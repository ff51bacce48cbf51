"""The websocket edge, through WebsocketCommunicator, against the real simulator."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from chat.markdown import reply_html
from chat.models import Conversation, Message
from chat.routing import websocket_urlpatterns
from tests.frames import APPEND, TAIL, Watched
from tests.servers import SimulatorProcess, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _fresh_layer():
    yield
    await get_channel_layer().flush()


async def make_user(name: str) -> User:
    return await sync_to_async(User.objects.create_user)(name, password="x" * 12)


async def make_conversation(owner: User) -> Conversation:
    return await Conversation.objects.acreate(owner=owner, provider="demo", model="demo-1")


async def connect(user, conversation_id: int) -> tuple[bool, WebsocketCommunicator]:
    communicator = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns), f"/ws/conversations/{conversation_id}/"
    )
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    return connected, communicator


async def frames_until(communicator: WebsocketCommunicator, pattern: str, wait: float = 10) -> list[str]:
    frames: list[str] = []
    while not re.search(pattern, frames[-1] if frames else ""):
        frames.append(await communicator.receive_from(wait))
    return frames


def another_reply_complete(pk: int) -> str:
    """The frame of a reply other than ``pk`` complete: a reply's, not a user message's
    (a user message is drawn complete from the start, and redrawn with the thread)."""
    return rf'<article id="message-(?!{pk}")\d+" class="message assistant"[^>]*data-status="complete"'


async def reply_of(conversation: Conversation) -> Message:
    return await Message.objects.filter(conversation=conversation, role="assistant").alast()


def slowly(function: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """``function`` behind a database thread with a queue, as under heavy load."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return function(*args, **kwargs)

    return wrapper


async def a_reply_streaming() -> tuple[Conversation, WebsocketCommunicator]:
    """alice's conversation with a long reply streaming, and her page on it."""
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(json.dumps({"message": "Long [sim tokens=3000 tps=50]", "client_id": "long"}))
    await frames_until(communicator, r"beforeend:#message-")
    return conversation, communicator


async def test_an_anonymous_socket_is_told_it_is_signed_out_and_closed_for_good(
    sim: SimulatorProcess,
) -> None:
    owner = await make_user("alice")
    conversation = await make_conversation(owner)
    _, communicator = await connect(AnonymousUser(), conversation.pk)

    notice = await communicator.receive_from(5)
    closed = await communicator.receive_output(5)

    assert "You are signed out." in notice
    assert f'href="/accounts/login/?next=/conversations/{conversation.pk}/"' in notice
    # 4401: a code htmx's ws extension does not reconnect on, and the page understands.
    assert closed == {"type": "websocket.close", "code": 4401}
    assert await Message.objects.acount() == 0


async def test_another_users_conversation_is_refused(sim: SimulatorProcess) -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    conversation = await make_conversation(alice)
    connected, _ = await connect(bob, conversation.pk)
    assert not connected
    connected, communicator = await connect(alice, conversation.pk)
    assert connected
    await communicator.disconnect()


async def test_a_complete_reply_streams_in_frames_and_ends_persisted(sim: SimulatorProcess) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)

    await communicator.send_to(json.dumps({"message": "Hi [sim tokens=30 tps=100]", "client_id": "a1"}))
    frames = await frames_until(communicator, r'data-role="assistant" data-status="complete"')

    reply = await reply_of(conversation)
    watched = Watched(reply.pk)
    for frame in frames[:-1]:
        watched.see(frame)
    assert len(watched.states) >= 2  # streamed in frames, formatted as they came
    assert watched.drawn_from(reply.content)
    assert watched.states[-1] == (len(reply.content), reply_html(reply.content, f"message-{reply.pk}"))
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == sim.last()["text"]
    assert reply.finish_reason == "stop"
    assert reply.output_tokens and reply.time_to_first_token_ms is not None
    await communicator.disconnect()


async def test_a_repeated_client_id_is_sent_once(sim: SimulatorProcess) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)
    frame = json.dumps({"message": "Once [sim tokens=3 tps=100]", "client_id": "same"})
    await communicator.send_to(frame)
    await communicator.send_to(frame)
    await frames_until(communicator, r'data-role="assistant" data-status="complete"')

    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1
    assert len(sim.requests()) == 1
    await communicator.disconnect()


async def test_the_pages_on_the_senders_worker_draw_the_new_messages_without_reading_them(
    sim: SimulatorProcess, monkeypatch
) -> None:
    """The pages of a conversation on the worker that wrote a message draw it (and its
    reply) from what the write returned. Through channels_redis the group's "messages
    added" could reach them first, while its send waits on Redis, and they read the
    messages back from the database: a trip a reply on two workers. Here the group send
    gives the pages the same passes of the loop a send to Redis would."""
    from chat import services
    from chat.database import database_sync_to_async
    from tests.test_database_thread import seconds

    told = services.broadcast.messages_added

    async def added_as_over_redis(conversation_id: int, ids: list[int]) -> None:
        await told(conversation_id, ids)
        for _ in range(20):
            await asyncio.sleep(0)

    monkeypatch.setattr(services.broadcast, "messages_added", added_as_over_redis)

    def reads() -> float:
        return seconds("chat_database_trip_seconds", "get_messages", "count")

    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, page = await connect(alice, conversation.pk)
    _, other_tab = await connect(alice, conversation.pk)
    before = reads()
    await page.send_to(json.dumps({"message": "Hi [sim tokens=3 tps=100]", "client_id": "f1"}))
    for communicator in (page, other_tab):
        frames = await frames_until(communicator, r'data-role="assistant" data-status="complete"')
        assert sum(f.count('data-role="user"') for f in frames) == 1  # drawn once
    await database_sync_to_async(lambda: None)()  # after any trip queued before it

    assert reads() == before
    for communicator in (page, other_tab):
        await communicator.disconnect()


async def test_a_message_sent_while_a_reply_is_written_here_is_refused_and_kept_in_the_box(
    sim: SimulatorProcess,
) -> None:
    conversation, communicator = await a_reply_streaming()

    await communicator.send_to(json.dumps({"message": "And another thing", "client_id": "w2"}))
    refusal = (await frames_until(communicator, 'role="alert"'))[-1]

    assert "A reply is still being written here" in refusal
    assert "And another thing" in refusal
    assert await Message.objects.filter(conversation=conversation).acount() == 2
    await communicator.send_to(json.dumps({"action": "stop"}))
    await frames_until(communicator, r'data-status="cancelled"')
    await communicator.disconnect()


async def test_messages_past_the_rate_limit_are_refused_where_they_are_sent(
    sim: SimulatorProcess, settings
) -> None:
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(json.dumps({"message": "One [sim tokens=3 tps=100]", "client_id": "m1"}))
    await frames_until(communicator, r'data-role="assistant" data-status="complete"')

    await communicator.send_to(json.dumps({"message": "Two", "client_id": "m2"}))
    refusal = (await frames_until(communicator, 'role="alert"'))[-1]

    assert "faster than allowed" in refusal
    assert await Message.objects.filter(conversation=conversation).acount() == 2
    assert len(sim.requests()) == 1
    await communicator.disconnect()


async def test_stop_cancels_the_reply_and_closes_the_upstream(sim: SimulatorProcess) -> None:
    conversation, communicator = await a_reply_streaming()

    await communicator.send_to(json.dumps({"action": "stop"}))
    frames = await frames_until(communicator, r'data-role="assistant" data-status="cancelled"')

    assert any("Stopping..." in f for f in frames)
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.CANCELLED
    record = sim.last()
    assert record["outcome"] == "client closed"
    assert record["text"].startswith(reply.content)
    assert 0 < len(reply.content) < len(record["text"]) + 1
    await communicator.disconnect()


async def test_a_page_tells_the_owner_of_a_reply_it_follows_to_stop_without_the_database(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, communicator = await a_reply_streaming()
    # As if the database had not answered yet: the page still knows the reply and its owner.
    monkeypatch.setattr("chat.consumers.get_active_replies", lambda conversation_id: [])

    await communicator.send_to(json.dumps({"action": "stop"}))
    await frames_until(communicator, r'data-role="assistant" data-status="cancelled"')

    assert sim.last()["outcome"] == "client closed"
    await communicator.disconnect()


async def test_stop_pressed_while_the_database_is_slow_stops_the_reply_as_soon_as_it_exists(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import consumers, services

    monkeypatch.setattr(services, "_checked_write", slowly(services._checked_write, 1.0))
    monkeypatch.setattr(consumers, "get_active_replies", slowly(consumers.get_active_replies, 1.0))
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)

    await communicator.send_to(json.dumps({"message": "Long [sim tokens=3000 tps=50]", "client_id": "q1"}))
    await communicator.send_to(json.dumps({"action": "stop"}))
    await frames_until(communicator, r'data-role="assistant" data-status="cancelled"')

    requests = sim.requests()
    # Stopped before its request went out, or within a few tokens of it: not seconds later.
    assert requests == [] or len(requests[0]["token_times"]) < 20
    await communicator.disconnect()


async def test_a_stopping_note_that_comes_after_the_final_frame_is_not_shown(sim: SimulatorProcess) -> None:
    from chat import broadcast

    alice = await make_user("alice")
    # Titled, and the person's newest: nothing after the final frame redraws the sidebar
    # (no title to write, no move up the list), so any frame after it is the note's.
    conversation = await Conversation.objects.acreate(
        owner=alice, provider="demo", model="demo-1", title="Notes"
    )
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(json.dumps({"message": "Short [sim tokens=5 tps=100]", "client_id": "n1"}))
    await frames_until(communicator, r'data-role="assistant" data-status="complete"')
    while not await communicator.receive_nothing(0.3):  # what came beside the final frame
        await communicator.receive_from(1)
    reply = await reply_of(conversation)

    # A Stop recorded by another worker just as this reply ended: its note lands late.
    await broadcast.note(conversation.pk, reply.pk, "Stopping…")

    assert await communicator.receive_nothing(0.5)
    await communicator.disconnect()


async def test_an_upstream_that_fails_leaves_an_error_with_a_reason(sim: SimulatorProcess) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(
        json.dumps({"message": "Oops [sim tokens=50 tps=200 fail=truncate after=10]", "client_id": "f1"})
    )
    await frames_until(communicator, r'data-role="assistant" data-status="error"')

    reply = await reply_of(conversation)
    assert reply.status == Message.Status.ERROR
    assert reply.error == "The stream ended early."
    assert reply.content == sim.last()["text"]
    await communicator.disconnect()


async def test_an_unreachable_upstream_is_an_error_not_a_spinner(sim: SimulatorProcess, settings) -> None:
    from chat.providers.config import get_providers
    from tests.servers import free_port

    settings.CHAT_DEMO_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.CHAT_MAX_RETRY_WAIT = 0.05
    get_providers.cache_clear()
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(json.dumps({"message": "Anyone there?", "client_id": "u1"}))
    await frames_until(communicator, r'data-role="assistant" data-status="error"')

    reply = await reply_of(conversation)
    assert reply.error.startswith("Could not connect to the upstream")
    assert reply.retries == settings.CHAT_MAX_ATTEMPTS - 1
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("not json", "cannot read"),
        (json.dumps({"action": "dance"}), "Unknown action"),
        (json.dumps({"message": "   "}), "Type a message first"),
        (json.dumps({"message": "x" * 40_000}), "the limit is"),
        (json.dumps({"message": "hi", "image_url": "javascript:alert(1)"}), "http:// or https://"),
    ],
)
async def test_bad_frames_get_a_clear_error_and_change_nothing(
    sim: SimulatorProcess, frame: str, says: str
) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(frame)
    answer = await communicator.receive_from(5)

    assert says in answer
    assert 'role="alert"' in answer
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    await communicator.send_to(
        json.dumps({"message": "still usable [sim tokens=3 tps=100]", "client_id": "ok"})
    )
    await frames_until(communicator, r'data-role="assistant" data-status="complete"')
    await communicator.disconnect()


async def test_another_tab_that_never_gets_the_frame_adding_a_reply_is_redrawn_with_it(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import broadcast
    from chat.runner import Runner

    async def dropped(*args, **kwargs) -> None:
        """What a full channel does with a group message: nothing, and no error."""

    monkeypatch.setattr(broadcast, "messages_added", dropped)
    # As for a tab on another worker: the sender's worker does not draw it there either.
    monkeypatch.setattr(Runner, "show_added", dropped)
    monkeypatch.setattr("chat.following.QUIET_AFTER", 0.5)
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, sender = await connect(alice, conversation.pk)
    _, other = await connect(alice, conversation.pk)

    await sender.send_to(json.dumps({"message": "Hi [sim tokens=200 tps=50]", "client_id": "x1"}))
    frames = await frames_until(other, r'data-role="assistant" data-status="complete"')

    reply = await reply_of(conversation)
    redraws = [f for f in frames if f.startswith('<div id="messages" hx-swap-oob="innerHTML">')]
    assert redraws and f'id="message-{reply.pk}"' in redraws[0]
    assert f'<article id="message-{reply.pk}"' in frames[-1] and "<h2>Hi</h2>" in frames[-1]
    await sender.disconnect()
    await other.disconnect()


async def test_redraws_beside_the_stream_never_show_a_gap_or_a_repeat(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import consumers, following

    monkeypatch.setattr(following, "QUIET_AFTER", 0.1)
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)
    (consumer,) = [c for c in consumers._open_consumers if c.conversation_id == conversation.pk]
    await communicator.send_to(json.dumps({"message": "Long [sim tokens=3000 tps=50]", "client_id": "r"}))
    await frames_until(communicator, r'class="message assistant"')  # added: no text yet
    reply = await reply_of(conversation)

    ended = re.compile(rf'<article id="message-{reply.pk}"[^>]*data-status="(complete|cancelled)"')
    page, redraws, stopped = Watched(reply.pk), 0, False
    while not ended.search(frame := await communicator.receive_from(10)):
        if frame.startswith('<div id="messages"'):
            redraws += 1
        elif redraws < 10:
            consumer.follower.unseen[reply.pk] = 0.0  # the watchdog redraws the page, beside the deltas
        page.see(frame)
        if not stopped and page.body and (page.body.shown or 0) > 1500:
            stopped = True
            await communicator.send_to(json.dumps({"action": "stop"}))

    await reply.arefresh_from_db()
    assert redraws >= 5
    assert page.drawn_from(sim.last()["text"])
    assert page.drawn_from(reply.content)
    await communicator.disconnect()


async def test_a_late_added_frame_and_a_redraw_beside_it_draw_each_message_once(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import branches, following

    added = following.Follower.messages_added

    async def late(consumer, event) -> None:
        await asyncio.sleep(0.5)  # a channel layer that is behind
        await added(consumer, event)

    monkeypatch.setattr(following, "QUIET_AFTER", 0.2)
    monkeypatch.setattr(following.Follower, "messages_added", late)
    monkeypatch.setattr(following, "get_messages", slowly(following.get_messages, 0.6))
    monkeypatch.setattr(branches, "visible_path", slowly(branches.visible_path, 0.6))
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)

    await communicator.send_to(json.dumps({"message": "Hi [sim tokens=200 tps=50]", "client_id": "l1"}))
    drawn: list[str] = []  # the message ids on the page, in order
    while True:
        frame = await communicator.receive_from(15)
        ids = re.findall(r'<article id="(message-\d+)"', frame)
        if frame.startswith('<div id="messages"'):
            drawn = ids
        elif frame.startswith('<div hx-swap-oob="beforeend:#messages">'):
            drawn += ids
        assert len(drawn) == len(set(drawn)), drawn
        if re.search(r'data-role="assistant" data-status="complete"', frame):
            break
    assert len(drawn) == 2
    await communicator.disconnect()


async def test_a_page_that_missed_the_end_of_a_reply_is_redrawn_when_it_reconnects(
    sim: SimulatorProcess,
) -> None:
    import time

    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    drawn_at = time.time()
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(json.dumps({"message": "Hi [sim tokens=5 tps=100]", "client_id": "r1"}))
    await communicator.disconnect()  # the page goes offline before the reply ends
    reply = await reply_of(conversation)
    while reply.is_active:
        await asyncio.sleep(0.05)
        await reply.arefresh_from_db()

    stale = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns), f"/ws/conversations/{conversation.pk}/?since={drawn_at}"
    )
    stale.scope["user"] = alice
    assert (await stale.connect())[0]
    redraw = await stale.receive_from(5)
    assert redraw.startswith('<div id="messages" hx-swap-oob="innerHTML">')
    assert f'id="message-{reply.pk}"' in redraw and 'data-status="complete"' in redraw
    await stale.disconnect()

    fresh = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns), f"/ws/conversations/{conversation.pk}/?since={time.time()}"
    )
    fresh.scope["user"] = alice
    assert (await fresh.connect())[0]
    frames = []
    while not await fresh.receive_nothing(0.3):
        frames.append(await fresh.receive_from(1))
    assert not any('<div id="messages"' in frame for frame in frames)
    await fresh.disconnect()


async def test_a_page_following_a_reply_of_another_worker_repairs_every_loss_on_the_in_memory_layer(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second runner in this process stands for another worker: its frames reach the
    page through the in-memory channel layer, which here loses some of them."""
    from channels.db import database_sync_to_async

    from chat import broadcast, following, services
    from chat.generation import load_job
    from chat.runner import Runner

    lost: dict[str, int] = {"delta": 0, "snapshot": 0, "final": 0}
    sent = {"delta": 0}
    real_delta, real_snapshot = broadcast.delta, broadcast.snapshot

    async def delta(channel: str, reply_id: int, offset: int, end: int, html: str) -> bool:
        sent["delta"] += 1
        if 15 < sent["delta"] <= 18:  # three frames in the middle: a gap
            lost["delta"] += 1
            return True  # dropped as a full channel drops, and nobody told
        return await real_delta(channel, reply_id, offset, end, html)

    async def snapshot(channel: str, message: dict) -> bool:
        if lost["snapshot"] < 1:  # the first answer to the page's follow request
            lost["snapshot"] += 1
            return True
        return await real_snapshot(channel, message)

    async def final(conversation_id: int, reply_id: int) -> None:
        lost["final"] += 1

    monkeypatch.setattr(broadcast, "delta", delta)
    monkeypatch.setattr(broadcast, "snapshot", snapshot)
    monkeypatch.setattr(broadcast, "final", final)
    monkeypatch.setattr(following, "SNAPSHOT_PATIENCE", 0.3)
    monkeypatch.setattr(following, "QUIET_AFTER", 0.5)
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, page = await connect(alice, conversation.pk)
    other = Runner()
    await other.channel_name()

    _, reply = await database_sync_to_async(services.do_start_reply)(
        conversation, "Elsewhere [sim tokens=150 tps=50]", client_id="e1", worker_channel=other.channel
    )
    other.launch(reply, await database_sync_to_async(load_job)(reply, reply.history))
    await broadcast.messages_added(conversation.pk, [reply.parent_id, reply.pk])

    watched, frames = Watched(reply.pk), []
    ended = re.compile(rf'<article id="message-{reply.pk}"[^>]*data-status="complete"')
    while not ended.search(frame := await page.receive_from(10)):
        frames.append(frame)
        watched.see(frame)

    expected = (await Message.objects.aget(pk=reply.pk)).content
    assert expected == sim.last()["text"]
    assert watched.drawn_from(expected)  # never a gap, never a repeat
    # Every character reached the page before the final frame.
    assert watched.states[-1] == (len(expected), reply_html(expected, f"message-{reply.pk}"))
    assert lost == {"delta": 3, "snapshot": 1, "final": 1}
    snapshot_frame = f'<div id="message-{reply.pk}-body" hx-swap-oob="innerHTML"'
    # The lost answer was asked for again, and the gap repaired by another snapshot.
    assert len([f for f in frames if f.startswith(snapshot_frame)]) >= 2
    await other.shutdown(0)
    await page.disconnect()


async def test_a_stop_whose_message_to_the_owner_is_lost_still_takes_effect_at_its_next_save(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import broadcast

    real = broadcast.to_owner

    async def lose_stops(worker_channel: str, kind: str, reply_id: int, **kwargs) -> bool:
        if kind == broadcast.STOP:
            return True  # dropped on the way, and nobody told
        return await real(worker_channel, kind, reply_id, **kwargs)

    monkeypatch.setattr(broadcast, "to_owner", lose_stops)
    conversation, communicator = await a_reply_streaming()

    await communicator.send_to(json.dumps({"action": "stop"}))
    frames = await frames_until(communicator, r'data-role="assistant" data-status="cancelled"')

    reply = await reply_of(conversation)
    # The owner stopped at its next save of the text (every CHAT_PERSIST_INTERVAL, 1 s),
    # which found the request the database had recorded.
    assert reply.status == Message.Status.CANCELLED and reply.stop_requested_at is not None
    record = sim.last()
    assert record["outcome"] == "client closed"
    assert record["text"].startswith(reply.content) and reply.content
    # The last frame before the final one showed the end of what was saved.
    last = [f for f in frames if TAIL.search(f) or APPEND.fullmatch(f)][-1]
    if tail := TAIL.search(last):
        assert int(tail.group(2)) == len(reply.content)
    else:
        assert reply.content.endswith(html.unescape(APPEND.fullmatch(last).group(2)))
    await communicator.disconnect()


async def test_a_stop_of_a_reply_this_worker_runs_is_handed_to_it_without_the_channel_layer(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    """The layer loses every Stop here, and no save comes for a minute: only the runner
    of this process, asked directly, can stop the reply in time."""
    from chat import broadcast

    real = broadcast._to_channel
    carried: list[dict] = []

    async def lose_stops(channel: str, message: dict) -> bool:
        if message["type"] == broadcast.STOP:
            carried.append(message)
            return True  # dropped on the way, and nobody told
        return await real(channel, message)

    monkeypatch.setattr(broadcast, "_to_channel", lose_stops)
    settings.CHAT_PERSIST_INTERVAL = 60
    conversation, communicator = await a_reply_streaming()

    await communicator.send_to(json.dumps({"action": "stop"}))
    async with asyncio.timeout(10):  # the reply would otherwise stream for a minute
        await frames_until(communicator, r'data-role="assistant" data-status="cancelled"')

    reply = await reply_of(conversation)
    assert reply.status == Message.Status.CANCELLED and reply.content
    assert sim.last()["outcome"] == "client closed"
    assert carried == []
    await communicator.disconnect()


async def test_a_stop_reaches_the_upstream_while_the_workers_event_loop_is_still_held(
    sim: SimulatorProcess,
) -> None:
    """A Stop closes the upstream connection in the pass of the event loop that handles it,
    not a pass or two later when the cancelled task unwinds (a busy worker's passes take
    up to a second)."""
    from chat.runner import get_runner

    conversation, communicator = await a_reply_streaming()
    (reply,) = get_runner().replies.values()

    reply.stop()
    # The event loop is held from here on (``wait_until`` blocks): nothing else of this
    # worker runs until the upstream, in a process of its own, has seen the connection close.
    assert wait_until(lambda: sim.last()["client_closed_at"], 10)

    await frames_until(communicator, r'data-role="assistant" data-status="cancelled"')
    saved = await reply_of(conversation)
    assert saved.status == Message.Status.CANCELLED and saved.content
    assert sim.last()["text"].startswith(saved.content)
    await communicator.disconnect()


async def test_a_stop_reaches_the_upstream_while_the_database_thread_is_busy(sim: SimulatorProcess) -> None:
    """A worker has one database thread, and at load its queue is long: reading a Stop
    frame waits for nothing there (channels' own dispatch took a trip to it per frame)."""
    import threading

    from channels.db import database_sync_to_async

    conversation, communicator = await a_reply_streaming()
    entered, release = threading.Event(), threading.Event()

    def busy() -> None:
        entered.set()
        release.wait(30)

    held = asyncio.create_task(database_sync_to_async(busy)())
    try:
        assert await asyncio.to_thread(entered.wait, 10)
        await communicator.send_to(json.dumps({"action": "stop"}))
        assert await asyncio.to_thread(wait_until, lambda: sim.last()["client_closed_at"], 10)
        assert not held.done()  # the database thread was held all along
    finally:
        release.set()
        await held

    await frames_until(communicator, r'data-role="assistant" data-status="cancelled"')
    saved = await reply_of(conversation)
    assert saved.status == Message.Status.CANCELLED and saved.content
    await communicator.disconnect()


async def test_a_system_prompt_changed_in_one_tab_reaches_the_others(sim: SimulatorProcess) -> None:
    from django.test import Client
    from django.urls import reverse

    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, other_tab = await connect(alice, conversation.pk)

    def change_in_a_tab() -> None:
        client = Client()
        client.force_login(alice)
        url = reverse("chat:settings", args=[conversation.pk])
        client.post(url, {"model": "demo/demo-1", "system_prompt": "Answer <in> haiku."})

    await sync_to_async(change_in_a_tab)()
    frame = await frames_until(other_tab, r'id="system-prompt"')

    prompt = '<textarea id="system-prompt" hx-swap-oob="innerHTML">Answer &lt;in&gt; haiku.</textarea>'
    assert prompt in frame[-1]
    assert "demo · demo-1" in frame[-1] and 'data-accepts-images="true"' in frame[-1]
    await other_tab.disconnect()


async def test_a_page_whose_channel_layer_fails_is_told_live_updates_wait_and_to_retry(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import broadcast

    async def down(*args, **kwargs) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(broadcast, "join", down)
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)

    notice = await communicator.receive_from(5)
    closed = await communicator.receive_output(5)

    assert "Live updates are unavailable right now. Retrying" in notice
    # 1013, Try Again Later: htmx's ws extension reconnects on it, with a growing pause.
    assert closed == {"type": "websocket.close", "code": 1013}
