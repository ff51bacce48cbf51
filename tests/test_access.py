"""Access ends when it is revoked: an open socket follows its session (chat.access).

Through the whole websocket stack (origin check, session cookie, consumer), against the
real simulator: each way a session ends closes the page's socket with 4401 after a
notice that says why, stops the reply it was streaming with the text it had shown, and
starts nothing after.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import access
from chat.markdown import reply_html
from chat.models import Conversation, Message, SignOut, UserSession
from tests import frames
from tests.frames import Body
from tests.servers import SimulatorProcess
from tests.sessions import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


async def open_page(session_key: str, conversation: Conversation) -> WebsocketCommunicator:
    from chatsite.asgi import application

    page = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation.pk}/",
        headers=[
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()),
        ],
    )
    connected, _ = await page.connect()
    assert connected
    return page


async def streaming(page: WebsocketCommunicator) -> Body:
    """Send a long message; the reply's body as the page has it once it streams."""
    await page.send_to(json.dumps({"message": "Long [sim tokens=3000 tps=50]", "client_id": "long"}))
    bodies: dict[int, Body] = {}
    while not any(body.shown and body.shown >= 60 for body in bodies.values()):
        frames.apply(bodies, await page.receive_from(10))
    (body,) = bodies.values()
    return body


def assert_kept_as_shown(reply: Message, shown: Body, frames_after: list[str]) -> None:
    """The reply was saved with exactly what the page showed before its final frame."""
    for frame in frames_after:
        frames.apply({shown.reply_id: shown}, frame)
    assert len(reply.content) == shown.shown
    assert reply_html(reply.content, f"message-{reply.pk}") == shown.html


async def signed_out(page: WebsocketCommunicator) -> tuple[list[str], dict[str, Any]]:
    """Every frame up to the socket's close, and the close."""
    sent: list[str] = []
    while (output := await page.receive_output(10))["type"] == "websocket.send":
        sent.append(output["text"])
    return sent, output


@pytest.fixture
async def alice() -> User:
    return await sync_to_async(User.objects.create_user)("alice", password="old-password-1")


@pytest.fixture
async def conversation(alice: User) -> Conversation:
    return await Conversation.objects.acreate(owner=alice, provider="demo", model="demo-1")


def deactivate(user: User) -> None:
    user.is_active = False
    user.save()


def change_password(user: User) -> None:
    user.set_password("new-password-2")
    user.save()


def log_out_there(user: User, session_key: str) -> None:
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = session_key
    client.post(reverse("logout"))


def end_everywhere_else(user: User, session_key: str) -> None:
    client = Client()
    client.force_login(user)  # another session, which stays
    client.post(reverse("chat:end_other_sessions"))


def end_by_staff(user: User, session_key: str) -> None:
    staff = User.objects.create_superuser("root", password="x" * 12)
    client = Client()
    client.force_login(staff)
    changelist = reverse("admin:auth_user_changelist")
    client.post(changelist, {"action": "end_sessions", "_selected_action": [user.pk]})


@pytest.mark.parametrize(
    ("revoke", "reason"),
    [
        (lambda user, key: deactivate(user), access.DEACTIVATED),
        (lambda user, key: change_password(user), access.PASSWORD_CHANGED),
        (log_out_there, access.LOGGED_OUT),
        (end_everywhere_else, access.ENDED_ELSEWHERE),
        (end_by_staff, access.ENDED_BY_STAFF),
        (lambda user, key: user.delete(), access.DELETED),
    ],
    ids=["deactivated", "password-changed", "logged-out-there", "everywhere-else", "staff", "deleted"],
)
async def test_an_open_page_is_signed_out_and_its_reply_stopped_with_the_text_it_showed(
    alice: User,
    conversation: Conversation,
    sim: SimulatorProcess,
    revoke: Callable[[User, str], None],
    reason: str,
) -> None:
    key = await sync_to_async(sign_in)(alice)
    page = await open_page(key, conversation)
    shown = await streaming(page)

    await sync_to_async(revoke)(alice, key)
    sent, closed = await signed_out(page)

    assert closed == {"type": "websocket.close", "code": access.SIGNED_OUT}
    notice = sent[-1]
    assert "You are signed out." in notice and reason in notice
    assert f"?next=/conversations/{conversation.pk}/" in notice
    assert sim.last()["outcome"] == "client closed"  # the upstream request was closed
    if reason != access.DELETED:
        reply = await Message.objects.aget(conversation=conversation, role="assistant")
        assert reply.status == Message.Status.CANCELLED
        assert reply.error == reason
        assert_kept_as_shown(reply, shown, sent)


async def test_a_page_whose_other_session_ended_stays(alice: User, conversation: Conversation, sim) -> None:
    kept, ended = await sync_to_async(sign_in)(alice), await sync_to_async(sign_in)(alice)
    page = await open_page(kept, conversation)

    await sync_to_async(log_out_there)(alice, ended)

    assert await page.receive_nothing(1)
    await page.send_to(json.dumps({"message": "Still here [sim tokens=3 tps=100]", "client_id": "s"}))
    while 'data-status="complete"' not in await page.receive_from(10):
        pass
    await page.disconnect()


async def test_a_page_is_signed_out_when_its_session_expires(
    alice: User, conversation: Conversation, sim: SimulatorProcess
) -> None:
    key = await sync_to_async(sign_in)(alice, expires_in=1)
    page = await open_page(key, conversation)

    sent, closed = await signed_out(page)

    assert closed["code"] == access.SIGNED_OUT
    assert access.EXPIRED in sent[-1]


async def test_a_page_opens_in_three_trips_its_sessions_expiry_read_with_its_person(
    alice: User, conversation: Conversation
) -> None:
    """The session, its person and when it expires in one trip to the database thread;
    then whose the conversation is, and what the page lacks."""
    from chat.database import database_sync_to_async
    from tests.test_database_thread import seconds

    names = ["visitor", "owns", "page_state", "user_of", "session_expiry"]

    def trips() -> dict[str, float]:
        return {name: seconds("chat_database_trip_seconds", name, "count") for name in names}

    key = await sync_to_async(sign_in)(alice)
    before = trips()
    page = await open_page(key, conversation)
    # Answered once the opening is over; a trip after it runs behind any trip it queued.
    await page.send_to(json.dumps({"action": "dance"}))
    assert "Unknown action" in await page.receive_from(10)
    await database_sync_to_async(lambda: None)()

    assert {name: count - before[name] for name, count in trips().items()} == {
        "visitor": 1,
        "owns": 1,
        "page_state": 1,
        "user_of": 0,
        "session_expiry": 0,
    }
    await page.disconnect()


async def test_a_frame_after_the_session_ended_starts_nothing_even_if_the_news_was_lost(
    alice: User, conversation: Conversation, sim: SimulatorProcess
) -> None:
    key = await sync_to_async(sign_in)(alice)
    page = await open_page(key, conversation)
    # Ended without a word to the pages, as if the broadcast had been lost.
    await UserSession.objects.filter(session_key=key).adelete()

    await page.send_to(json.dumps({"message": "Sneak in [sim tokens=3]", "client_id": "x"}))
    sent, closed = await signed_out(page)

    assert closed["code"] == access.SIGNED_OUT
    assert "You are signed out." in sent[-1]
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    assert sim.requests() == []


async def test_ending_sessions_is_recorded_with_who_did_it(alice: User, conversation: Conversation) -> None:
    key = await sync_to_async(sign_in)(alice)
    await sync_to_async(end_by_staff)(alice, key)

    record = await SignOut.objects.aget()
    assert (record.actor_username, record.username) == ("root", "alice")
    assert (record.scope, record.sessions) == (SignOut.Scope.ALL, 1)
    assert not await UserSession.objects.filter(user=alice).aexists()


async def test_a_session_knows_whose_it_is_and_goes_with_its_person(alice: User) -> None:
    key = await sync_to_async(sign_in)(alice)
    assert (await UserSession.objects.aget(session_key=key)).user_id == alice.pk
    await sync_to_async(alice.delete)()
    assert not await UserSession.objects.filter(session_key=key).aexists()


def test_an_expired_session_signs_in_no_one(db) -> None:
    user = User.objects.create_user("bob", password="x" * 12)
    key = sign_in(user)
    UserSession.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert not access.signed_in(key, user.pk)


async def test_a_session_ended_by_another_process_reaches_the_page_without_a_broadcast(
    alice: User, conversation: Conversation, sim: SimulatorProcess
) -> None:
    """As ``manage.py shell`` beside one worker on the in-memory layer: its broadcast goes
    to a layer of its own; the record it writes is what the worker finds, within a second."""
    from chat.models import Revocation

    key = await sync_to_async(sign_in)(alice)
    page = await open_page(key, conversation)
    shown = await streaming(page)

    await UserSession.objects.filter(session_key=key).adelete()
    await Revocation.objects.acreate(user_id=alice.pk, reason=access.PASSWORD_CHANGED)
    sent, closed = await signed_out(page)

    assert closed["code"] == access.SIGNED_OUT and access.PASSWORD_CHANGED in sent[-1]
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert reply.status == Message.Status.CANCELLED
    assert_kept_as_shown(reply, shown, sent)
