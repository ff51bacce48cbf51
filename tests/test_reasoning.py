"""A reasoning model's thinking: streamed apart from the answer, saved apart, never sent back."""

from __future__ import annotations

import json
import re

import pytest
from channels.layers import get_channel_layer

from chat.markdown import reply_html
from chat.models import Message
from tests.frames import Thinking, Watched
from tests.servers import SimulatorProcess
from tests.test_consumers import (
    another_reply_complete,
    connect,
    frames_until,
    make_conversation,
    make_user,
    reply_of,
)

pytestmark = pytest.mark.django_db(transaction=True)

ENDED = r'data-role="assistant" data-status="(complete|cancelled)"'


@pytest.fixture(autouse=True)
async def _fresh_layer():
    yield
    await get_channel_layer().flush()


async def test_thinking_streams_before_the_answer_into_its_own_section_and_is_saved_apart(
    sim: SimulatorProcess,
) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, page = await connect(alice, conversation.pk)
    await page.send_to(
        json.dumps({"message": "Why? [sim reasoning=40 tokens=30 tps=200]", "client_id": "r1"})
    )
    frames = await frames_until(page, ENDED)
    await page.disconnect()

    reply = await reply_of(conversation)
    thinking, watched = Thinking(), Watched(reply.pk)
    for frame in frames[:-1]:
        thinking.see(frame)
        watched.see(frame)
    assert reply.reasoning == sim.last()["reasoning"] != ""
    assert "1 < 2 && 3 > 2" in reply.reasoning
    assert thinking.text[reply.pk] == reply.reasoning  # escaped on the wire, exact on the page
    assert "&lt;" in "".join(frames) and "1 < 2" not in "".join(frames[:-1])
    assert reply.content == sim.last()["text"] and reply.reasoning not in reply.content
    # The thinking came first, and the answer's frames drew only the answer.
    first_thought = next(i for i, f in enumerate(frames) if f"beforeend:#message-{reply.pk}-reasoning" in f)
    answer = re.compile(rf'beforeend:#message-{reply.pk}-end|data-shown="[1-9]')
    first_answer = next(i for i, f in enumerate(frames) if answer.search(f))
    assert first_thought < first_answer
    assert watched.states[-1] == (len(reply.content), reply_html(reply.content, f"message-{reply.pk}"))
    assert reply.reasoning_ms is not None and reply.reasoning_ms > 0
    assert thinking.summary[reply.pk] == f"Thought for {reply.reasoning_ms / 1000:.2f} s"
    assert reply.reasoning_tokens == -(-len(reply.reasoning) // 4)  # as the simulator counts
    assert f"({reply.reasoning_tokens} thinking)" in frames[-1]
    assert re.search(rf'<details id="message-{reply.pk}-thinking" class="thinking">', frames[-1])


async def test_thinking_is_never_sent_back_to_the_model_as_history(sim: SimulatorProcess) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, page = await connect(alice, conversation.pk)
    await page.send_to(json.dumps({"message": "One [sim reasoning=20 tokens=5 tps=400]", "client_id": "h1"}))
    await frames_until(page, ENDED)
    first = await reply_of(conversation)
    await page.send_to(json.dumps({"message": "Two [sim tokens=5 tps=400]", "client_id": "h2"}))
    await frames_until(page, another_reply_complete(first.pk))
    await page.disconnect()

    sent = json.dumps(sim.last()["body"])
    assert sim.last()["prompt"].startswith("Two")
    assert json.dumps(first.content)[1:-1] in sent
    assert "Let me think" not in sent and first.reasoning.strip()[:20] not in sent


async def test_stop_while_thinking_keeps_exactly_the_thinking_shown_and_closes_the_upstream(
    sim: SimulatorProcess,
) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, page = await connect(alice, conversation.pk)
    await page.send_to(json.dumps({"message": "Ponder [sim reasoning=3000 tps=50]", "client_id": "s1"}))
    frames = await frames_until(page, r"beforeend:#message-\d+-reasoning")
    frames += [await page.receive_from(5) for _ in range(3)]
    reply = await reply_of(conversation)
    await page.send_to(json.dumps({"action": "stop", "id": reply.pk}))
    frames += await frames_until(page, ENDED)
    await page.disconnect()

    thinking = Thinking()
    for frame in frames[:-1]:
        thinking.see(frame)
    reply = await Message.objects.aget(pk=reply.pk)
    assert reply.status == Message.Status.CANCELLED
    assert reply.content == ""
    assert reply.reasoning == thinking.text[reply.pk] != ""
    assert sim.last()["reasoning"].startswith(reply.reasoning)
    assert sim.last()["outcome"] == "client closed"
    assert reply.reasoning_ms is not None
    assert "Thought for" in frames[-1]


async def test_a_page_opened_while_a_reply_thinks_is_brought_level_with_its_thinking(
    sim: SimulatorProcess,
) -> None:
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, first = await connect(alice, conversation.pk)
    await first.send_to(json.dumps({"message": "Hm [sim reasoning=60 tokens=40 tps=80]", "client_id": "l1"}))
    await frames_until(first, r"beforeend:#message-\d+-reasoning")
    _, late = await connect(alice, conversation.pk)
    frames = await frames_until(late, ENDED)
    await frames_until(first, ENDED)
    await first.disconnect()
    await late.disconnect()

    reply = await reply_of(conversation)
    thinking = Thinking()
    snapshot = f'<div id="message-{reply.pk}-reasoning" hx-swap-oob="innerHTML">'
    assert any(snapshot in frame for frame in frames)
    for frame in frames[:-1]:
        thinking.see(frame)
    assert thinking.text[reply.pk] == reply.reasoning != ""


async def test_thinking_frames_lost_between_workers_are_repaired_without_a_gap_or_a_repeat(
    sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second runner in this process stands for another worker; the in-memory layer
    loses frames in the middle of its thinking. One offset counts thinking and answer, so
    the page sees the gap and asks for a snapshot."""
    from channels.db import database_sync_to_async

    from chat import broadcast, following, services
    from chat.generation import load_job
    from chat.runner import Runner

    sent, lost = {"delta": 0}, {"delta": 0}
    real_delta = broadcast.delta

    async def delta(channel: str, reply_id: int, offset: int, end: int, html: str) -> bool:
        sent["delta"] += 1
        if 4 < sent["delta"] <= 7 and "-reasoning" in html:
            lost["delta"] += 1
            return True
        return await real_delta(channel, reply_id, offset, end, html)

    monkeypatch.setattr(broadcast, "delta", delta)
    monkeypatch.setattr(following, "SNAPSHOT_PATIENCE", 0.3)
    monkeypatch.setattr(following, "QUIET_AFTER", 0.5)
    alice = await make_user("alice")
    conversation = await make_conversation(alice)
    _, page = await connect(alice, conversation.pk)
    other = Runner()
    await other.channel_name()
    _, reply = await database_sync_to_async(services.do_start_reply)(
        conversation,
        "Elsewhere [sim reasoning=80 tokens=60 tps=60]",
        client_id="w1",
        worker_channel=other.channel,
    )
    other.launch(reply, await database_sync_to_async(load_job)(reply, reply.history))
    await broadcast.messages_added(conversation.pk, [reply.parent_id, reply.pk])

    thinking, watched = Thinking(), Watched(reply.pk)
    ended = re.compile(rf'<article id="message-{reply.pk}"[^>]*data-status="complete"')
    while not ended.search(frame := await page.receive_from(10)):
        thinking.see(frame)
        watched.see(frame)
    await other.shutdown(0)
    await page.disconnect()

    saved = await Message.objects.aget(pk=reply.pk)
    assert lost["delta"] == 3
    assert thinking.text[reply.pk] == saved.reasoning == sim.last()["reasoning"]
    assert watched.drawn_from(saved.content)
    assert watched.states[-1] == (len(saved.content), reply_html(saved.content, f"message-{reply.pk}"))
