"""Versions through the websocket: regenerate, edit and resend, continue, retry, choose."""

from __future__ import annotations

import json

import pytest
from channels.layers import get_channel_layer

from chat import branches
from chat.models import Conversation, Message
from tests.servers import SimulatorProcess
from tests.test_consumers import connect, frames_until, make_conversation, make_user

pytestmark = pytest.mark.django_db(transaction=True)
FAST = "tokens=4 tps=400"
# The final frame of a reply (a redrawn thread also holds ended replies, without hx-swap-oob).
DONE = r'data-role="assistant" data-status="(complete|error)" hx-swap-oob="outerHTML"'


@pytest.fixture(autouse=True)
async def _fresh_layer():
    yield
    await get_channel_layer().flush()


async def start(text: str = f"Hi [sim {FAST}]"):
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, communicator = await connect(alice, conversation.pk)
    await communicator.send_to(json.dumps({"message": text, "client_id": "first"}))
    await frames_until(communicator, DONE)
    return conversation, communicator


async def act(communicator, action: str, message_id: int, until: str = DONE, **fields) -> list[str]:
    await communicator.send_to(json.dumps({"action": action, "id": message_id, **fields}))
    return await frames_until(communicator, until)


async def path_of(conversation: Conversation) -> list[Message]:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(branches.visible_path)(conversation.pk)


async def test_regenerate_makes_a_second_version_and_keeps_the_first(sim: SimulatorProcess) -> None:
    conversation, communicator = await start()
    first = (await path_of(conversation))[-1]

    frames = await act(communicator, "regenerate", first.pk, client_id="r1")

    shown = await path_of(conversation)
    assert len(shown) == 2 and shown[-1].pk != first.pk
    assert shown[-1].status == "complete" and shown[-1].parent_id == first.parent_id
    assert await Message.objects.filter(pk=first.pk, status="complete").aexists()
    assert any('hx-swap-oob="innerHTML"' in f and "2 / 2" in f for f in frames)
    assert len(sim.requests()) == 2
    await communicator.disconnect()


async def test_a_repeated_regenerate_frame_makes_one_version(sim: SimulatorProcess) -> None:
    conversation, communicator = await start()
    first = (await path_of(conversation))[-1]
    frame = json.dumps({"action": "regenerate", "id": first.pk, "client_id": "same"})
    await communicator.send_to(frame)
    await communicator.send_to(frame)
    await frames_until(communicator, DONE)

    assert await Message.objects.filter(conversation=conversation, role="assistant").acount() == 2
    await communicator.disconnect()


async def test_choosing_a_version_shows_it_again(sim: SimulatorProcess) -> None:
    conversation, communicator = await start()
    first = (await path_of(conversation))[-1]
    await act(communicator, "regenerate", first.pk, client_id="r1")

    frames = await act(communicator, "select", first.pk, until=r"1 / 2")

    assert (await path_of(conversation))[-1].pk == first.pk
    assert f'id="{first.dom_id}"' in frames[-1]
    await communicator.disconnect()


async def test_edit_and_resend_branches_and_keeps_the_later_messages(sim: SimulatorProcess) -> None:
    conversation, communicator = await start(f"First [sim {FAST}]")
    await communicator.send_to(json.dumps({"message": f"Second [sim {FAST}]", "client_id": "second"}))
    await frames_until(communicator, DONE)
    original = (await path_of(conversation))[0]

    await act(communicator, "edit", original.pk, message=f"Changed [sim {FAST}]", client_id="e1")

    shown = await path_of(conversation)
    assert [m.content for m in shown if m.role == "user"] == [f"Changed [sim {FAST}]"]
    assert shown[0].versions.index == shown[0].versions.count == 2
    assert await Message.objects.filter(conversation=conversation).acount() == 6
    assert sim.last()["prompt"] == f"Changed [sim {FAST}]"
    assert [m["role"] for m in sim.last()["body"]["messages"]] == ["user"]

    await act(communicator, "select", original.pk, until=r"1 / 2")
    assert [m.content for m in await path_of(conversation) if m.role == "user"] == [
        f"First [sim {FAST}]",
        f"Second [sim {FAST}]",
    ]
    await communicator.disconnect()


async def test_continue_goes_on_from_a_reply_cut_off_by_the_token_limit(sim: SimulatorProcess) -> None:
    conversation, communicator = await start("Long one [sim finish=length tokens=6 tps=400]")
    cut = (await path_of(conversation))[-1]
    assert cut.finish_reason == "length"

    await act(communicator, "continue", cut.pk, until=r"beforeend:#message-", client_id="c1")

    shown = await path_of(conversation)
    assert shown[-1].parent_id == cut.pk and shown[-1].is_active
    sent = sim.last()["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == cut.content
    assert sent[2]["content"] == branches.CONTINUE_PROMPT
    await communicator.send_to(json.dumps({"action": "stop"}))
    await frames_until(communicator, r'data-status="cancelled"')
    await communicator.disconnect()


async def test_continue_is_refused_for_a_reply_that_was_not_cut_off(sim: SimulatorProcess) -> None:
    conversation, communicator = await start()
    reply = (await path_of(conversation))[-1]

    answer = await act(communicator, "continue", reply.pk, until='role="alert"')

    assert "Only a reply cut off by the token limit" in answer[-1]
    await communicator.disconnect()


async def test_retry_after_an_error_answers_again_and_keeps_the_failed_attempt(sim: SimulatorProcess) -> None:
    conversation, communicator = await start("Flaky [sim fail=error after=2 times=1 tokens=5 tps=400]")
    failed = (await path_of(conversation))[-1]
    assert failed.status == "error"

    await act(communicator, "retry", failed.pk, client_id="t1")

    shown = await path_of(conversation)
    assert shown[-1].status == "complete" and shown[-1].versions.count == 2
    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1
    await communicator.disconnect()


async def test_a_new_version_is_refused_while_a_reply_is_being_written(sim: SimulatorProcess) -> None:
    conversation, communicator = await start()
    first = (await path_of(conversation))[-1]
    await communicator.send_to(json.dumps({"message": "Slow [sim tokens=3000 tps=50]", "client_id": "slow"}))
    await frames_until(communicator, r"beforeend:#message-")

    answer = await act(communicator, "regenerate", first.pk, until='role="alert"', client_id="r2")

    assert "A reply is still being written here" in answer[-1]
    await communicator.send_to(json.dumps({"action": "stop"}))
    await frames_until(communicator, r'data-status="cancelled"')
    await communicator.disconnect()


async def test_another_conversations_message_is_refused(sim: SimulatorProcess) -> None:
    _, communicator = await start()
    other = await make_conversation(await make_user("bob"))
    stranger = await Message.objects.acreate(conversation=other, role="user", content="mine")

    answer = await act(communicator, "edit", stranger.pk, until='role="alert"', message="hijack")

    assert "not in this conversation" in answer[-1]
    assert await Message.objects.filter(content="hijack").acount() == 0
    await communicator.disconnect()


async def test_the_concurrent_reply_cap_refuses_with_a_clear_message(sim: SimulatorProcess, settings) -> None:
    settings.CHAT_MAX_CONCURRENT_REPLIES = 1
    alice = await make_user("alice")
    first, second = await make_conversation(alice), await make_conversation(alice)
    _, one = await connect(alice, first.pk)
    _, two = await connect(alice, second.pk)
    await one.send_to(json.dumps({"message": "Slow [sim tokens=3000 tps=50]", "client_id": "a"}))
    await frames_until(one, r"beforeend:#message-")

    await two.send_to(json.dumps({"message": "Me too", "client_id": "b"}))
    answer = await frames_until(two, 'role="alert"')

    assert "You already have 1 reply being written, the most allowed at once" in answer[-1]
    assert "Me too" in answer[-1]  # the text stays in the box
    assert await Message.objects.filter(conversation=second).acount() == 0
    await one.send_to(json.dumps({"action": "stop"}))
    await frames_until(one, r'data-status="cancelled"')
    await one.disconnect()
    await two.disconnect()


async def test_the_sidebar_of_every_page_of_the_person_is_redrawn(sim: SimulatorProcess) -> None:
    alice = await make_user("alice")
    first, second = await make_conversation(alice), await make_conversation(alice)
    _, one = await connect(alice, first.pk)
    _, two = await connect(alice, second.pk)

    await one.send_to(json.dumps({"message": f"Otters [sim {FAST}]", "client_id": "o"}))
    frames = await frames_until(two, r'id="conversation-list"')

    assert f"Otters [sim {FAST}]" in frames[-1]
    assert f'href="/conversations/{second.pk}/" aria-current="page"' in frames[-1]
    await one.disconnect()
    await two.disconnect()
