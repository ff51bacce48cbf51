"""Live replies in the admin: what is generating now on any worker, and Stop for any of them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from chat.models import Message
from tests.admin_data import FAST_HASHERS, make_conversation, make_exchange, make_user

pytestmark = pytest.mark.django_db

LIVE = reverse("admin:chat_livereply_changelist")


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def layer():
    layer = get_channel_layer()
    yield layer
    async_to_sync(layer.flush)()


def streaming_reply(owner: User, text: str, worker: str) -> Message:
    """A reply mid-stream on ``worker``, its text saved so far, started 90 s ago."""
    conversation = make_conversation(owner, f"{owner.username}'s chat", provider="lab", model="bard-2")
    _, reply = make_exchange(
        conversation,
        "Go on",
        text,
        status=Message.Status.STREAMING,
        input_tokens=None,
        output_tokens=None,
        cost=None,
        worker_channel=worker,
        heartbeat_at=timezone.now(),
        at=timezone.now() - timedelta(seconds=90),
    )
    return reply


def test_the_live_list_shows_only_generating_replies_with_owner_model_age_and_length(admin_client) -> None:
    streaming_reply(make_user("alice"), "Secret words " * 10, "replies.worker-a!1")
    make_exchange(make_conversation(make_user("bob"), "Done"), "Hi", "Finished reply")

    response = admin_client.get(LIVE)
    [row] = response.context["cl"].result_list
    html = response.content.decode()
    assert row.characters == 130
    for text in ["alice", "lab/bard-2", "1 min 3", "130"]:
        assert text in html
    assert "Secret words" not in html
    assert "bob" not in html


def test_stop_asks_the_worker_that_owns_the_reply_to_stop(admin_client, layer) -> None:
    alices = streaming_reply(make_user("alice"), "Partial", "replies.worker-a!1")
    bobs = streaming_reply(make_user("bob"), "Other", "replies.worker-b!2")

    response = admin_client.post(
        LIVE, {"action": "stop_replies", "_selected_action": [alices.pk]}, follow=True
    )

    assert "Asked 1 reply to stop." in response.content.decode()
    alices.refresh_from_db()
    bobs.refresh_from_db()
    assert alices.stop_requested_at is not None
    assert bobs.stop_requested_at is None
    assert async_to_sync(layer.receive)("replies.worker-a!1") == {"type": "reply.stop", "id": alices.pk}


def test_staff_without_the_stop_permission_get_no_stop_action(client, layer) -> None:
    reply = streaming_reply(make_user("alice"), "Partial", "replies.worker-a!1")
    client.force_login(make_user("watcher", staff=True, perms=("chat.view_livereply",)))

    assert b"Stop the selected replies" not in client.get(LIVE).content
    client.post(LIVE, {"action": "stop_replies", "_selected_action": [reply.pk]})
    reply.refresh_from_db()
    assert reply.stop_requested_at is None


def test_live_replies_cannot_be_added_edited_or_deleted(admin_client) -> None:
    reply = streaming_reply(make_user("alice"), "Partial", "replies.worker-a!1")
    assert admin_client.get(reverse("admin:chat_livereply_add")).status_code == 403
    assert admin_client.post(reverse("admin:chat_livereply_delete", args=[reply.pk])).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:chat_livereply_change", args=[reply.pk]), {"content": "x"}
        ).status_code
        == 403
    )
    reply.refresh_from_db()
    assert reply.content == "Partial"


def test_a_live_reply_has_no_page_of_its_own_that_would_show_its_text(client, admin_client) -> None:
    reply = streaming_reply(make_user("alice"), "Secret words so far", "replies.worker-a!1")
    client.force_login(make_user("watcher", staff=True, perms=("chat.view_livereply",)))

    for viewer in (client, admin_client):
        page = viewer.get(reverse("admin:chat_livereply_change", args=[reply.pk]))
        assert page.status_code == 403
        assert b"Secret words" not in page.content
        assert viewer.get(LIVE).status_code == 200


def test_a_non_staff_user_gets_no_live_list(client) -> None:
    client.force_login(make_user("alice"))
    assert client.get(LIVE)["Location"].startswith(reverse("admin:login"))


def test_losing_staff_status_ends_admin_access_at_the_next_request(client, layer) -> None:
    reply = streaming_reply(make_user("alice"), "Partial", "replies.worker-a!1")
    watcher = make_user("watcher", staff=True, perms=("chat.view_livereply", "chat.stop_reply"))
    client.force_login(watcher)
    assert client.get(LIVE).status_code == 200

    watcher.is_staff = False
    watcher.save()

    for page in (LIVE, reverse("admin:index"), reverse("admin:chat_conversation_changelist")):
        response = client.get(page)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    client.post(LIVE, {"action": "stop_replies", "_selected_action": [reply.pk]})
    reply.refresh_from_db()
    assert reply.stop_requested_at is None
