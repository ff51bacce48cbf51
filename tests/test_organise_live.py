"""A change to how a person keeps their sidebar redraws it on every page of theirs, and only theirs."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import Client
from django.urls import reverse

from chat.models import Conversation
from tests.test_consumers import connect, frames_until, make_conversation, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _fresh_layer():
    yield
    await get_channel_layer().flush()


async def test_pinning_redraws_the_sidebar_of_every_page_of_the_person_and_no_one_elses() -> None:
    alice, bob = await make_user("alice"), await make_user("bob")
    here = await make_conversation(alice)
    there = await Conversation.objects.acreate(owner=alice, provider="demo", model="demo-1", title="Pin me")
    _, alices_page = await connect(alice, here.pk)
    _, bobs_page = await connect(bob, (await make_conversation(bob)).pk)
    client = Client()
    await sync_to_async(client.force_login)(alice)

    await sync_to_async(client.post)(
        reverse("chat:pin", args=[there.pk]), {"pinned": "1"}, HTTP_HX_REQUEST="true"
    )

    frames = await frames_until(alices_page, r'id="conversation-list"')
    pinned = frames[-1].split('class="conversations pinned"', 1)[1].split("</ul>", 1)[0]
    assert "Pin me" in pinned
    assert f'href="/conversations/{here.pk}/" aria-current="page"' in frames[-1]
    assert await bobs_page.receive_nothing()
    await alices_page.disconnect()
    await bobs_page.disconnect()


async def test_a_message_redraws_the_sidebar_only_when_it_changes_it(sim, monkeypatch) -> None:
    """A first message names its conversation, and a message in a chat below another moves
    it to the top: each redraws the person's sidebars. A message in the chat already at
    the top, with its title, changes nothing there, and no sidebar is sent (at 10,000
    chats that is some 29 KB a message)."""
    from chat import broadcast, rendering
    from chat.consumers import get_sidebar

    told: list[int] = []
    tell = broadcast.sidebar_changed

    async def telling(user_id: int, retitled: tuple[int, str] | None = None) -> None:
        told.append(user_id)
        await tell(user_id, retitled)

    monkeypatch.setattr(broadcast, "sidebar_changed", telling)
    alice = await make_user("alice")
    older = await Conversation.objects.acreate(owner=alice, provider="demo", model="demo-1", title="Older")
    newer = await Conversation.objects.acreate(owner=alice, provider="demo", model="demo-1", title="Newer")

    async def drawn() -> str:
        shown, current = await sync_to_async(get_sidebar)(alice, newer.pk)
        return rendering.sidebar_html(shown, current)

    async def send(conversation: Conversation, text: str, client_id: str) -> tuple[bool, str, str]:
        before = await drawn()
        _, page = await connect(alice, conversation.pk)
        await page.send_to(json.dumps({"message": f"{text} [sim tokens=3 tps=100]", "client_id": client_id}))
        await frames_until(page, r'data-role="assistant" data-status="complete"')
        await page.disconnect()
        # Told when the reply started, before its first frame (a title written later by
        # the model tells again: only for the last, untitled one).
        redrawn = alice.pk in told
        told.clear()
        return redrawn, before, await drawn()

    redrawn, before, after = await send(newer, "At the top", "t1")
    assert not redrawn and before == after
    redrawn, before, after = await send(older, "Up you go", "t2")
    assert redrawn and before != after
    redrawn, before, after = await send(older, "Still at the top", "t3")
    assert not redrawn and before == after
    untitled = await make_conversation(alice)
    redrawn, before, after = await send(untitled, "Name me", "t4")
    assert redrawn and before != after


async def test_a_new_title_alone_draws_its_link_again_and_reads_no_sidebar(sim) -> None:
    """A first message in the chat at the top of the list names it, and the model's title
    renames it: nothing moves, so each is sent as that chat's link and its page's heading
    (swapped by id), not the whole sidebar, and no sidebar is read for it."""
    from prometheus_client import REGISTRY

    def sidebars_read() -> float:
        labels = {"trip": "get_sidebar"}
        return REGISTRY.get_sample_value("chat_database_trip_seconds_count", labels) or 0.0

    alice = await make_user("alice")
    await Conversation.objects.acreate(owner=alice, provider="demo", model="demo-1", title="Older")
    untitled = await make_conversation(alice)  # the newest: at the top of the list
    _, page = await connect(alice, untitled.pk)
    read = sidebars_read()
    message = 'Name me [sim text="Named by the model" tokens=3 tps=100]'
    await page.send_to(json.dumps({"message": message, "client_id": "n1"}))

    link = rf'<li id="sidebar-conversation-{untitled.pk}" hx-swap-oob="outerHTML">'
    frames = await frames_until(page, link + r".*Name me")
    heading = '<span id="conversation-title" hx-swap-oob="innerHTML">Name me'
    assert heading in frames[-1] and f'href="/conversations/{untitled.pk}/" aria-current="page"' in frames[-1]
    frames += await frames_until(page, link + r".*Named by the model")
    assert '<span id="conversation-title" hx-swap-oob="innerHTML">Named by the model</span>' in frames[-1]
    assert not [f for f in frames if 'id="conversation-list"' in f]
    assert sidebars_read() == read
    await page.disconnect()
    await untitled.arefresh_from_db()
    assert untitled.title == "Named by the model"
