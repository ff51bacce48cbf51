"""Daily budgets: set in the admin, checked before a reply starts, explained to the person."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from chat import services
from chat.budgets import check_budget, usage_today
from chat.models import Message, UsageBudget
from chat.routing import websocket_urlpatterns
from chat.runner import get_runner
from tests.admin_data import FAST_HASHERS, make_conversation, make_exchange, make_user


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def alice(db) -> User:
    """Alice, who used 300 tokens and $0.02 today, and 5,000 tokens yesterday."""
    alice = make_user("alice")
    conversation = make_conversation(alice, "Today")
    make_exchange(conversation, "a", "b", input_tokens=100, output_tokens=200, cost="0.02")
    make_exchange(
        conversation, "c", "d", input_tokens=5000, output_tokens=0, at=timezone.now() - timedelta(days=1)
    )
    return alice


def test_usage_today_counts_only_todays_replies_of_that_person(alice: User) -> None:
    make_exchange(make_conversation(make_user("bob")), "x", "y", input_tokens=999, output_tokens=999)
    assert usage_today(alice.pk) == (300, Decimal("0.02"))


def test_a_person_without_a_budget_may_always_start_a_reply(alice: User) -> None:
    check_budget(alice.pk)


def test_a_person_under_budget_may_start_a_reply(alice: User) -> None:
    UsageBudget.objects.create(user=alice, daily_token_limit=301, daily_cost_limit=Decimal("0.03"))
    check_budget(alice.pk)


def test_a_spent_token_budget_refuses_with_a_clear_message(alice: User) -> None:
    UsageBudget.objects.create(user=alice, daily_token_limit=300)
    with pytest.raises(services.ChatError) as refused:
        check_budget(alice.pk)
    assert str(refused.value) == (
        "Daily budget reached: you have used 300 of your 300 tokens today. "
        "Your budget renews at midnight (UTC)."
    )


def test_a_spent_cost_budget_refuses_with_a_clear_message(alice: User) -> None:
    UsageBudget.objects.create(user=alice, daily_cost_limit=Decimal("0.015"))
    with pytest.raises(services.ChatError, match=r"you have spent \$0\.0200 of your \$0\.0150 today"):
        check_budget(alice.pk)


@pytest.mark.django_db(transaction=True)
async def test_a_reply_over_budget_is_refused_before_anything_is_written_or_requested(alice: User) -> None:
    await UsageBudget.objects.acreate(user=alice, daily_token_limit=100)
    conversation = await alice.conversations.afirst()
    before = await Message.objects.acount()

    with pytest.raises(services.ChatError, match="Daily budget reached"):
        await services.send_message(alice.pk, conversation.pk, "One more, please", client_id="b1")

    assert await Message.objects.acount() == before
    # A reply is started before send_message returns: none was.
    assert get_runner().replies == {}


@pytest.mark.django_db(transaction=True)
async def test_the_person_sees_the_budget_message_in_the_composer(alice: User) -> None:
    await UsageBudget.objects.acreate(user=alice, daily_token_limit=100)
    conversation = await alice.conversations.afirst()
    communicator = WebsocketCommunicator(
        URLRouter(websocket_urlpatterns), f"/ws/conversations/{conversation.pk}/"
    )
    communicator.scope["user"] = alice
    assert (await communicator.connect())[0]

    await communicator.send_to(json.dumps({"message": "More?", "client_id": "b2"}))
    frame = await communicator.receive_from(5)
    await communicator.disconnect()
    assert "Daily budget reached" in frame
    assert not await sync_to_async(Message.objects.filter(content="More?").exists)()


@pytest.mark.django_db
def test_an_admin_sets_a_budget_and_sees_todays_usage_beside_it(admin_client, alice: User) -> None:
    response = admin_client.post(
        reverse("admin:chat_usagebudget_add"),
        {"user": alice.pk, "daily_token_limit": 1000, "daily_cost_limit": ""},
    )
    assert response.status_code == 302
    assert UsageBudget.objects.get(user=alice).daily_token_limit == 1000
    listing = admin_client.get(reverse("admin:chat_usagebudget_changelist")).content.decode()
    assert "300" in listing
    assert "$0.0200" in listing


@pytest.mark.django_db
def test_staff_without_permission_cannot_set_budgets(client, alice: User) -> None:
    client.force_login(make_user("clerk", staff=True, perms=("chat.view_conversation",)))
    response = client.post(reverse("admin:chat_usagebudget_add"), {"user": alice.pk, "daily_token_limit": 1})
    assert response.status_code == 403
    assert not UsageBudget.objects.exists()
