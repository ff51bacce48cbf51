"""Protections that need no browser: CSRF, origins, login throttling, limits, deploy checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chat.models import Conversation, Message
from tests.servers import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model) -> User:
    return django_user_model.objects.create_user("alice", password="a-long-test-password")


def test_state_changing_requests_need_a_csrf_token(alice) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(reverse("chat:new")).status_code == 403
    assert not Conversation.objects.exists()


def test_pages_carry_a_content_security_policy_without_inline_script(client, alice, sim) -> None:
    client.force_login(alice)
    response = client.get(reverse("chat:home"), follow=True)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert b"<script>" not in response.content
    assert b'"allowEval": false' in response.content


def test_repeated_failed_logins_lock_the_account_out(client, alice) -> None:
    url = reverse("login")
    for _ in range(5):
        client.post(url, {"username": "alice", "password": "wrong"})
    response = client.post(url, {"username": "alice", "password": "a-long-test-password"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_correct_login_before_the_limit_works(client, alice) -> None:
    url = reverse("login")
    for _ in range(3):
        client.post(url, {"username": "alice", "password": "wrong"})
    response = client.post(url, {"username": "alice", "password": "a-long-test-password"})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_messages_per_minute_are_limited_with_a_clear_error(alice, settings) -> None:
    from chat.services import ChatError, check_rate

    settings.CHAT_MESSAGES_PER_MINUTE = 2
    conversation = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    check_rate(alice.pk)
    Message.objects.bulk_create(
        Message(conversation=conversation, role="user", content="hi") for _ in range(2)
    )
    with pytest.raises(ChatError, match="faster than allowed"):
        check_rate(alice.pk)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (b"http://127.0.0.1:8000", True),
        (b"https://evil.example", False),
        (b"http://127.0.0.1.evil.example", False),
    ],
    ids=["own-origin", "foreign-origin", "look-alike-origin"],
)
async def test_a_signed_in_websocket_is_accepted_from_the_pages_own_origin_only(
    origin: bytes, accepted: bool, sim
) -> None:
    """The same session cookie both times: only the origin differs, so only the origin
    check (AllowedHostsOriginValidator) can refuse it."""
    from chatsite.asgi import application
    from tests.sessions import sign_in

    alice = await sync_to_async(User.objects.create_user)("alice", password="x" * 12)
    conversation = await Conversation.objects.acreate(owner=alice, provider="demo", model="demo-1")
    session_key = await sync_to_async(sign_in)(alice)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation.pk}/",
        headers=[
            (b"origin", origin),
            (b"host", b"127.0.0.1:8000"),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()),
        ],
    )
    connected, _ = await communicator.connect()
    assert connected is accepted
    if accepted:
        assert await communicator.receive_nothing(0.2)  # not signed out: a working page
        await communicator.disconnect()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
KEYS = st.sampled_from(["action", "message", "client_id", "image_url", "id"])
FRAMES = st.one_of(
    st.text(min_size=1, max_size=300),
    st.dictionaries(KEYS, st.text(max_size=50)).map(json.dumps),
    st.dictionaries(KEYS, JSON).map(json.dumps),
    st.dictionaries(st.text(max_size=10), st.integers() | st.none() | st.booleans()).map(json.dumps),
    st.lists(st.integers(), max_size=3).map(json.dumps),
)


async def _exchange(user: User, conversation_id: int, frames: list[str]) -> None:
    from channels.routing import URLRouter

    from chat.routing import websocket_urlpatterns

    communicator = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns), f"/ws/conversations/{conversation_id}/"
    )
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    for frame in frames:
        await communicator.send_to(frame)
        answer = await communicator.receive_from(5)
        assert answer.startswith("<")
        while not await communicator.receive_nothing(0.05):
            await communicator.receive_from(1)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=st.lists(FRAMES, min_size=1, max_size=6))
def test_no_frame_crashes_the_socket(frames: list[str], sim, settings) -> None:
    from asgiref.sync import async_to_sync

    from chat.providers.config import get_providers
    from tests.servers import free_port

    # Replies started by fuzzed messages fail at once instead of streaming for seconds.
    settings.CHAT_DEMO_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.CHAT_MAX_ATTEMPTS = 1
    settings.CHAT_MESSAGES_PER_MINUTE = 10_000
    get_providers.cache_clear()
    alice, _ = User.objects.get_or_create(username="alice")
    conversation, _ = Conversation.objects.get_or_create(owner=alice, provider="demo", model="demo-1")
    async_to_sync(_exchange)(alice, conversation.pk, frames)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "frame",
    [
        json.dumps({"action": []}),
        json.dumps({"action": {"send": 1}}),
        "[" * 100_000,
        json.dumps({"message": "hi", "image_url": "http://["}),
        json.dumps({"message": "hi", "image_url": "https://example.com/" + "a" * 3000}),
        json.dumps({"action": "regenerate", "id": [1]}),
    ],
    ids=["list-action", "object-action", "deep-nesting", "broken-url", "long-url", "list-id"],
)
def test_frames_found_to_crash_the_socket_get_an_error_and_change_nothing(frame: str, sim) -> None:
    from asgiref.sync import async_to_sync

    alice, _ = User.objects.get_or_create(username="alice")
    conversation, _ = Conversation.objects.get_or_create(owner=alice, provider="demo", model="demo-1")
    async_to_sync(_exchange)(alice, conversation.pk, [frame, json.dumps({"message": " "})])
    assert not Message.objects.filter(conversation=conversation).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("since", ["nan", "inf", "-inf", "1e20", "-5", "abc", ""])
def test_a_socket_with_a_nonsense_page_time_still_works(since: str, sim) -> None:
    from asgiref.sync import async_to_sync
    from channels.routing import URLRouter

    from chat.routing import websocket_urlpatterns

    async def exchange(user: User, conversation_id: int) -> None:
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/conversations/{conversation_id}/?since={since}"
        )
        communicator.scope["user"] = user
        assert (await communicator.connect())[0]
        await communicator.send_to(json.dumps({"message": "Hi [sim tokens=3 tps=100]", "client_id": "t"}))
        while 'data-status="complete"' not in await communicator.receive_from(10):
            pass
        await communicator.disconnect()

    alice, _ = User.objects.get_or_create(username="alice")
    conversation, _ = Conversation.objects.get_or_create(owner=alice, provider="demo", model="demo-1")
    async_to_sync(exchange)(alice, conversation.pk)


def test_deploy_checks_pass_with_production_settings() -> None:
    env = {
        **os.environ,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "k" * 10 + "-a-long-random-production-secret-key-with-variety-0123456789",
        "DJANGO_ALLOWED_HOSTS": "chat.example.com",
        "DJANGO_SECURE_COOKIES": "1",
        "DJANGO_SSL_REDIRECT": "1",
        "DJANGO_HSTS_SECONDS": "31536000",
        "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1",
        "DJANGO_HSTS_PRELOAD": "1",
        "DJANGO_BEHIND_TLS_PROXY": "1",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
