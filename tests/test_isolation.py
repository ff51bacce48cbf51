"""Walk every URL pattern as one user against another user's objects: nothing is reachable."""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from chat.models import Attachment, Conversation, Folder, Message, Prompt

pytestmark = pytest.mark.django_db

SECRET = "bob-secret-marker-4821"
FOREIGN_ID = 9001
# Bob's attached file: its key names it in URLs.
FOREIGN_KEY = f"bob-file-{FOREIGN_ID}"


def every_route(patterns=None, prefix: str = "") -> list[str]:
    routes: list[str] = []
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes += every_route(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            routes.append(route)
    return routes


def concrete(route: str) -> str | None:
    """A URL for ``route`` with every id set to Bob's; None for patterns we cannot fill."""
    route = route.lstrip("^").rstrip("$").replace("\\Z", "")
    route = re.sub(r"<(?:int:)?\w*(?:pk|id)\w*>", str(FOREIGN_ID), route)
    route = re.sub(r"\(\?P<\w*(?:pk|id)\w*>[^)]*\)", str(FOREIGN_ID), route)
    route = route.replace("<str:key>", FOREIGN_KEY)
    if "<" in route or "(?P" in route or "\\" in route:
        return None
    return "/" + route


@pytest.fixture
def bobs_data(django_user_model, settings, tmp_path) -> None:
    settings.MEDIA_ROOT = tmp_path
    bob = django_user_model.objects.create_user("bob", password="x" * 12)
    conversation = Conversation.objects.create(
        pk=FOREIGN_ID, owner=bob, provider="demo", model="demo-1", title=SECRET, system_prompt=SECRET
    )
    message = Message.objects.create(pk=FOREIGN_ID, conversation=conversation, role="user", content=SECRET)
    file = Attachment(key=FOREIGN_KEY, owner=bob, message=message, kind="document", name="secret.txt")
    file.content_type, file.text, file.size = "text/plain", SECRET, len(SECRET)
    file.file.save("secret.txt", ContentFile(SECRET.encode()), save=True)
    folder = Folder.objects.create(pk=FOREIGN_ID, owner=bob, name=SECRET)
    Conversation.objects.create(owner=bob, provider="demo", model="demo-1", title=SECRET, folder=folder)
    Conversation.objects.create(
        owner=bob, provider="demo", model="demo-1", title=SECRET, archived_at=timezone.now()
    )
    Prompt.objects.create(pk=FOREIGN_ID, owner=bob, title=SECRET, text=SECRET)


def test_every_url_is_walked() -> None:
    routes = [concrete(r) for r in every_route()]
    assert sum(1 for r in routes if r and str(FOREIGN_ID) in r) >= 4
    assert "/conversations/9001/" in routes
    assert f"/attachments/{FOREIGN_KEY}/" in routes
    assert "/prompts/9001/edit/" in routes


def test_no_url_shows_another_users_data(client, django_user_model, bobs_data, sim) -> None:
    alice = django_user_model.objects.create_user("alice", password="x" * 12)
    client.force_login(alice)
    checked = 0
    for route in every_route():
        url = concrete(route)
        if url is None or url.startswith("/accounts/logout"):
            continue
        for method in (client.get, client.post):
            response = method(url)
            body = b"".join(response) if response.streaming else response.content
            assert SECRET.encode() not in body, f"{method.__name__} {url} leaked"
            if str(FOREIGN_ID) in url and not url.startswith("/admin/"):
                assert response.status_code in {404, 405}, f"{method.__name__} {url}: {response.status_code}"
            if url.startswith("/admin/") and url != "/admin/login/":
                assert response.status_code in {302, 404, 405}, f"{method.__name__} {url}"
            checked += 1
    assert Conversation.objects.get(pk=FOREIGN_ID).title == SECRET
    assert Folder.objects.get(pk=FOREIGN_ID).name == SECRET
    assert Conversation.objects.filter(folder_id=FOREIGN_ID).count() == 1
    assert Message.objects.filter(conversation_id=FOREIGN_ID).count() == 1
    assert Prompt.objects.get(pk=FOREIGN_ID).text == SECRET
    assert checked > 20


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["regenerate", "retry", "continue", "edit", "select"])
async def test_no_websocket_action_reaches_another_users_message(action: str, sim) -> None:
    from asgiref.sync import sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import User

    from chat.routing import websocket_urlpatterns

    bob = await sync_to_async(User.objects.create_user)("bob", password="x" * 12)
    alice = await sync_to_async(User.objects.create_user)("alice", password="x" * 12)
    bobs = await Conversation.objects.acreate(owner=bob, provider="demo", model="demo-1", title=SECRET)
    question = await Message.objects.acreate(conversation=bobs, role="user", content=SECRET)
    answer = await Message.objects.acreate(
        conversation=bobs,
        role="assistant",
        content=SECRET,
        status="complete",
        finish_reason="length",
        parent=question,
    )
    alices = await Conversation.objects.acreate(owner=alice, provider="demo", model="demo-1")
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/conversations/{alices.pk}/")
    communicator.scope["user"] = alice
    assert (await communicator.connect())[0]

    for target in (question.pk, answer.pk):
        await communicator.send_to(
            f'{{"action": "{action}", "id": {target}, "message": "x", "client_id": "c{target}"}}'
        )
        reply = await communicator.receive_from(5)
        assert SECRET not in reply
        assert 'role="alert"' in reply
    await communicator.disconnect()

    assert await Message.objects.filter(conversation=bobs).acount() == 2
    assert await Message.objects.filter(conversation=alices).acount() == 0
    assert sim.requests() == []


ORGANISING = [
    ("chat:pin", {"pinned": "1"}),
    ("chat:archive", {"archived": "1"}),
    ("chat:move", {"folder": ""}),
    ("chat:rename_folder", {"name": "Mine now"}),
    ("chat:delete_folder", {}),
    ("chat:folder", None),
]


@pytest.mark.parametrize(("route", "data"), ORGANISING)
def test_another_users_conversation_or_folder_cannot_be_organised(
    client, django_user_model, bobs_data, route, data
) -> None:
    alice = django_user_model.objects.create_user("alice", password="x" * 12)
    client.force_login(alice)
    url = reverse(route, args=[FOREIGN_ID])
    response = client.get(url) if data is None else client.post(url, data, HTTP_HX_REQUEST="true")
    assert response.status_code == 404
    bobs = Conversation.objects.get(pk=FOREIGN_ID)
    assert (bobs.pinned_at, bobs.archived_at) == (None, None)
    assert Folder.objects.get(pk=FOREIGN_ID).name == SECRET


def test_a_conversation_cannot_be_moved_into_another_users_folder(
    client, django_user_model, bobs_data
) -> None:
    alice = django_user_model.objects.create_user("alice", password="x" * 12)
    mine = Conversation.objects.create(owner=alice, provider="demo", model="demo-1")
    client.force_login(alice)
    response = client.post(
        reverse("chat:move", args=[mine.pk]), {"folder": FOREIGN_ID}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 404
    assert Conversation.objects.get(pk=mine.pk).folder_id is None


def test_another_users_folders_and_archive_are_not_shown(client, django_user_model, bobs_data) -> None:
    alice = django_user_model.objects.create_user("alice", password="x" * 12)
    client.force_login(alice)
    assert SECRET not in client.get(reverse("chat:archived")).content.decode()
    response = client.post(reverse("chat:new_folder"), {"name": "Mine"}, HTTP_HX_REQUEST="true")
    assert SECRET not in response.content.decode()


@pytest.mark.parametrize(
    ("route", "args"),
    [
        ("chat:pin", [FOREIGN_ID]),
        ("chat:archive", [FOREIGN_ID]),
        ("chat:move", [FOREIGN_ID]),
        ("chat:archived", []),
        ("chat:new_folder", []),
        ("chat:folder", [FOREIGN_ID]),
        ("chat:rename_folder", [FOREIGN_ID]),
        ("chat:delete_folder", [FOREIGN_ID]),
    ],
)
def test_organising_sends_an_anonymous_visitor_to_log_in(client, bobs_data, route, args) -> None:
    url = reverse(route, args=args)
    for response in (client.get(url), client.post(url)):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert Folder.objects.get(pk=FOREIGN_ID).name == SECRET
