"""Titles: the first words at once, the model's own after the first reply, the person's kept."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from chat import services, titles
from chat.generation import load_job
from chat.models import Conversation, Message
from chat.providers.events import UpstreamError
from chat.runner import get_runner
from tests.servers import SimulatorProcess

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("written", "title"),
    [
        ("Otters at play", "Otters at play"),
        ('"Otters at play."\n\nMore text', "Otters at play"),
        ("## Title: **Otters at play**", "Otters at play"),
        ("\n\n  # Otters\n", "Otters"),
        ("", ""),
    ],
)
def test_a_written_title_is_cleaned_to_one_plain_line(written: str, title: str) -> None:
    assert titles.clean_title(written) == title


def test_first_words_stop_at_a_word_within_the_limit() -> None:
    assert titles.first_words("  Tell me\nabout   otters  ") == "Tell me about otters"
    assert titles.first_words("word " * 30, limit=20) == "word word word word…"


async def run_first_turn(text: str) -> tuple[Conversation, Message]:
    owner = await sync_to_async(User.objects.create_user)("alice", password="x" * 12)
    conversation = await Conversation.objects.acreate(owner=owner, provider="demo", model="demo-1")
    _, message = await database_sync_to_async(services.do_start_reply)(
        conversation, text, client_id="", worker_channel="test"
    )
    runner = get_runner()
    await runner.channel_name()
    reply = runner.launch(message, await database_sync_to_async(load_job)(message))
    await reply.task
    await runner.titles.join()  # titles are named in the background, one at a time
    return await Conversation.objects.aget(pk=conversation.pk), await Message.objects.aget(pk=message.pk)


async def test_the_model_names_the_conversation_after_its_first_reply(sim: SimulatorProcess) -> None:
    conversation, reply = await run_first_turn('Hello [sim text="Otters holding hands" tps=400]')

    assert reply.status == "complete"
    assert conversation.title == "Otters holding hands"
    (request,) = sim.title_requests()
    assert request["body"]["messages"][0] == {"role": "system", "content": titles.TITLE_INSTRUCTION}
    assert (
        request["prompt"]
        == 'Message: Hello [sim text="Otters holding hands" tps=400]\n\nAnswer: Otters holding hands'
    )


async def test_the_first_words_stay_when_the_title_request_fails(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(*args, **kwargs):
        raise UpstreamError("the upstream answered 503")
        yield  # an async generator, like the real one

    monkeypatch.setattr(titles, "stream_events", failing)
    conversation, reply = await run_first_turn("Tell me about otters [sim tokens=4 tps=400]")

    assert reply.status == "complete"
    assert conversation.title == "Tell me about otters [sim tokens=4 tps=400]"


async def test_a_title_the_person_chose_is_never_replaced(sim: SimulatorProcess) -> None:
    conversation, reply = await run_first_turn('Hi [sim text="Model title" tps=400]')
    await Conversation.objects.filter(pk=conversation.pk).aupdate(title="My own title")

    await titles.name_conversation(reply.pk)

    assert (await Conversation.objects.aget(pk=conversation.pk)).title == "My own title"
    assert len(sim.title_requests()) == 1


async def test_a_title_requests_tokens_and_cost_are_recorded_apart_from_the_replies(
    providers_file, sim: SimulatorProcess
) -> None:
    providers_file(
        '[[providers]]\nname = "demo"\ndialect = "openai-chat"\nbase_url = "{sim}/v1"\n'
        'models = [{ name = "demo-1", input_price = 1.0, output_price = 2.0 }]\n'
    )
    conversation, reply = await run_first_turn('Hello [sim text="Otters holding hands" tps=400]')

    (request,) = sim.title_requests()
    sent = titles.TITLE_INSTRUCTION + request["prompt"]
    expected_in, expected_out = math.ceil(len(sent) / 4), math.ceil(len("Otters holding hands") / 4)
    assert (conversation.title_input_tokens, conversation.title_output_tokens) == (expected_in, expected_out)
    assert conversation.title_cost == (Decimal(expected_in) * 1 + Decimal(expected_out) * 2) / 1_000_000
    # Apart: the reply's own counts are its own.
    assert reply.input_tokens != conversation.title_input_tokens
