"""A change to how a person keeps their sidebar redraws it on every page of theirs, and only theirs."""

from __future__ import annotations

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
