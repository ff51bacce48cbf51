"""What a reply records when its upstream fails or finishes oddly: the runner against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User

from chat import broadcast, rendering, services
from chat.generation import Reply, load_job
from chat.models import Conversation, Message
from tests.servers import SimulatorProcess
from tests.streams import SIM_MODELS, sim_providers

pytestmark = pytest.mark.django_db(transaction=True)
FAST = "tokens=12 tps=400"


@pytest.fixture(autouse=True)
def _providers(providers_file, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_KEY", "sk-sim")
    providers_file(sim_providers())
    settings.CHAT_MAX_RETRY_WAIT = 2.0


async def start_conversation(dialect: str) -> Conversation:
    owner = await sync_to_async(User.objects.create_user)("alice", password="x" * 12)
    return await Conversation.objects.acreate(owner=owner, provider=dialect, model=SIM_MODELS[dialect])


async def run_turn(conversation: Conversation, text: str, *, followed_from: str = "") -> Message:
    """Send ``text`` and run its reply to the end, as the runner would; the saved reply.

    ``followed_from``: the channel of a page on another worker following the reply.
    """
    _, message = await database_sync_to_async(services.do_start_reply)(
        conversation, text, client_id="", worker_channel="test"
    )
    reply = Reply(message, await database_sync_to_async(load_job)(message))
    if followed_from:
        reply.remote.add(followed_from)
    reply.task = asyncio.create_task(reply.run())
    await reply.task
    return await Message.objects.aget(pk=message.pk)


async def reply_to(dialect: str, text: str) -> Message:
    return await run_turn(await start_conversation(dialect), text)


@pytest.mark.parametrize(
    ("dialect", "failure", "error"),
    [
        ("openai-chat", "fail=error after=5", "The demo model failed mid-stream."),
        ("openai-responses", "fail=truncate after=5", "The stream ended early."),
        ("muapi", "fail=disconnect after=5", "The connection to the upstream dropped"),
        ("text-delta", "fail=stall after=5", "The upstream sent nothing for 0.5 s."),
    ],
)
async def test_a_failed_reply_is_an_error_that_keeps_its_partial_text(
    dialect: str, failure: str, error: str, sim: SimulatorProcess, settings
) -> None:
    settings.CHAT_READ_TIMEOUT = 0.5
    reply = await reply_to(dialect, f"Go [sim {failure} {FAST}]")
    assert reply.status == Message.Status.ERROR
    assert reply.error.startswith(error)
    assert reply.content == sim.last()["text"] != ""


async def test_a_corrupt_chunk_fails_the_reply_with_the_text_before_it(sim: SimulatorProcess) -> None:
    reply = await reply_to("openai-chat", f"Go [sim fail=corrupt after=4 {FAST}]")
    assert reply.status == Message.Status.ERROR
    assert "not valid JSON" in reply.error
    assert reply.content != "" and sim.last()["text"].startswith(reply.content)


async def test_a_reply_cut_off_by_the_token_limit_is_complete_and_says_so(sim: SimulatorProcess) -> None:
    reply = await reply_to("openai-responses", f"Go [sim finish=length {FAST}]")
    assert reply.status == Message.Status.COMPLETE
    assert reply.finish_reason == "length"
    assert "Cut off by the token limit" in rendering.message_html(reply)


async def test_the_overall_deadline_bounds_a_reply_that_never_stalls(sim: SimulatorProcess, settings) -> None:
    settings.CHAT_REPLY_DEADLINE, settings.CHAT_READ_TIMEOUT = 1.0, 0.5
    started = time.monotonic()
    reply = await reply_to("muapi", "Go [sim tokens=400 tps=20]")
    assert time.monotonic() - started < 2.5
    assert reply.status == Message.Status.ERROR
    assert reply.error == "The reply took longer than 1 s and was ended."
    assert reply.content != "" and sim.last()["text"].startswith(reply.content)


async def test_a_reply_records_the_upstreams_token_counts_and_their_cost(sim: SimulatorProcess) -> None:
    reply = await reply_to("muapi", f"Go [sim {FAST}]")
    request = sim.requests()[0]  # the reply's, not the title's asked after it
    sent, said = math.ceil(len(request["body"]["prompt"]) / 4), math.ceil(len(reply.content) / 4)
    assert (reply.input_tokens, reply.output_tokens, reply.tokens_estimated) == (sent, said, False)
    dollars = (Decimal("0.30") * sent + Decimal("1.80") * said) / 1_000_000
    assert reply.cost == dollars.quantize(Decimal("0.000001"))


async def test_a_reply_without_upstream_usage_records_an_estimate_marked_as_such(
    sim: SimulatorProcess,
) -> None:
    reply = await reply_to("text-delta", f"Go [sim {FAST}]")
    assert reply.tokens_estimated is True
    assert reply.output_tokens == math.ceil(len(reply.content) / 4)
    assert reply.cost is not None and reply.cost > 0
    assert "(estimated)" in rendering.message_html(reply)


async def test_a_pending_retry_is_announced_to_the_page_before_the_reply_streams(
    sim: SimulatorProcess,
) -> None:
    conversation = await start_conversation("openai-chat")
    layer = get_channel_layer()
    page = await layer.new_channel()
    await layer.group_add(broadcast.conversation_group(conversation.pk), page)

    reply = await run_turn(
        conversation, f"Go [sim fail=status status=503 times=1 retry_after=0 {FAST}]", followed_from=page
    )
    frames = []
    while not frames or frames[-1]["type"] != "reply.final":
        frames.append(await asyncio.wait_for(layer.receive(page), 2))

    kinds = [frame["type"] for frame in frames]
    assert kinds.index("reply.note") < kinds.index("reply.delta")
    notes = [frame["note"] for frame in frames if frame["type"] == "reply.note"]
    assert notes == ["The upstream answered 503: The demo model is overloaded. Retrying in 0.0 s…", ""]
    assert reply.status == Message.Status.COMPLETE and reply.retries == 1


async def test_a_multi_turn_chat_reaches_a_single_prompt_dialect_as_a_transcript(
    sim: SimulatorProcess,
) -> None:
    conversation = await start_conversation("text-delta")
    first = await run_turn(conversation, f"First [sim {FAST}]")
    second = await run_turn(conversation, f"Second [sim {FAST}]")
    assert second.status == Message.Status.COMPLETE
    assert sim.last()["body"]["prompt"] == (
        f"User: First [sim {FAST}]\n\nAssistant: {first.content}\n\nUser: Second [sim {FAST}]\n\nAssistant:"
    )


async def test_a_reply_stopped_before_its_task_first_runs_still_ends_cancelled(sim: SimulatorProcess) -> None:
    from chat.runner import get_runner

    conversation = await start_conversation("openai-chat")
    _, message = await database_sync_to_async(services.do_start_reply)(
        conversation, f"Go [sim {FAST}]", client_id="", worker_channel="test"
    )
    runner = get_runner()
    await runner.channel_name()
    reply = runner.launch(message, await database_sync_to_async(load_job)(message))
    reply.stop()  # before the task has taken a step: its body never runs

    with contextlib.suppress(asyncio.CancelledError):
        await reply.task
    await asyncio.wait_for(runner.settled(), 5)

    saved = await Message.objects.aget(pk=message.pk)
    assert saved.status == Message.Status.CANCELLED
    assert saved.content == ""
    assert sim.requests() == []
