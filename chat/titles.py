"""Conversation titles: the first words at once, then one the model writes after its first reply.

The model is asked with a short request of its own (the first message, the beginning of
its answer and an instruction, read only up to the first line); if that fails or is slow,
the first words stay. A title the person set is never replaced. The requests run in the
background, one at a time per worker (``TitleQueue``): a title is a nicety, and when many
replies end together their titles must not compete with the replies still streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chat import broadcast
from chat.database import database_sync_to_async
from chat.generation import estimate_tokens
from chat.models import Conversation, Message
from chat.providers.base import Turn
from chat.providers.config import Provider, get_providers
from chat.providers.events import TextDelta
from chat.upstream import stream_events

logger = logging.getLogger(__name__)

TITLE_INSTRUCTION = (
    "Write a title of at most six words for a conversation that begins with the exchange below. "
    "Reply with the title only, on one line, without quotes."
)
# Enough of the first answer to tell what the conversation is about.
ANSWER_EXCERPT = 600
TITLE_TIMEOUT = 8.0
# Enough for a title; the rest of a long answer is never read.
MAX_READ = 300


def first_words(text: str, limit: int = 60) -> str:
    """The title a conversation has until the model writes one."""
    words = " ".join(text.split())
    if len(words) <= limit:
        return words
    return (words[: limit + 1].rsplit(" ", 1)[0] or words[:limit]).rstrip(",.;:") + "…"


def clean_title(text: str) -> str:
    """The first line of what the model wrote, without markdown, quotes or a ``Title:`` label."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = line.strip().lstrip("#>*-_ ").strip()
    line = line.removeprefix("Title:").removeprefix("title:").strip()
    line = line.strip("\"'“”‘’*_`").strip().rstrip(".")
    return first_words(line)


def first_exchange(reply_id: int) -> tuple[Conversation, Message, Message] | None:
    """The conversation, its first message and ``reply``, if it answers that message and
    no title was set."""
    reply = Message.objects.select_related("conversation", "parent").filter(pk=reply_id).first()
    if reply is None or reply.parent is None or reply.parent.parent_id is not None:
        return None
    if reply.conversation.title != first_words(reply.parent.content):
        return None
    return reply.conversation, reply.parent, reply


def do_set_title(conversation_id: int, expected: str, title: str) -> bool:
    # Conditional, so a rename made while the model was asked wins.
    return bool(Conversation.objects.filter(pk=conversation_id, title=expected).update(title=title))


def title_request(message: str, answer: str) -> str:
    return f"Message: {message}\n\nAnswer: {answer[:ANSWER_EXCERPT]}"


def do_record_title_usage(conversation_id: int, provider: Provider, model: str, sent: str, read: str) -> None:
    """The title request's tokens (estimated, at four characters a token: it is closed
    after the first line, before any usage the upstream would send) and their cost."""
    input_tokens, output_tokens = estimate_tokens(TITLE_INSTRUCTION + sent), estimate_tokens(read)
    spec = provider.model(model)
    Conversation.objects.filter(pk=conversation_id).update(
        title_input_tokens=input_tokens,
        title_output_tokens=output_tokens,
        title_cost=spec.cost(input_tokens, output_tokens) if spec else None,
    )


async def ask_for_title(provider: Provider, model: str, request: str, read: list[str]) -> str:
    """What the model answers to ``request``, up to its first line; ``read`` collects the
    text as it arrives, so what was read is known even when the request fails."""
    events = stream_events(provider, model, [Turn("user", request)], TITLE_INSTRUCTION)
    # aclosing: leaving early closes the upstream request at once.
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                read.append(event.text)
                text = "".join(read)
                if "\n" in text.strip() or len(text) > MAX_READ:
                    break
    return "".join(read)


async def name_conversation(reply_id: int) -> None:
    """After the first reply of a conversation completes: a title by its model, broadcast."""
    found = await database_sync_to_async(first_exchange)(reply_id)
    if found is None:
        return
    conversation, message, reply = found
    provider = get_providers().get(conversation.provider)
    if provider is None:
        return
    request, read = title_request(message.content, reply.content), []
    try:
        async with asyncio.timeout(TITLE_TIMEOUT):
            title = clean_title(await ask_for_title(provider, conversation.model, request, read))
    except Exception as exc:
        # The first words are a fine title; a failed title request is no one's problem.
        logger.info("no title for conversation %s: %r", conversation.pk, exc)
        title = ""

    def record() -> bool:
        do_record_title_usage(conversation.pk, provider, conversation.model, request, "".join(read))
        return bool(title) and do_set_title(conversation.pk, conversation.title, title)

    if await database_sync_to_async(record)():
        await broadcast.sidebar_changed(conversation.owner_id, retitled=(conversation.pk, title))


class TitleQueue:
    """The conversations of one worker waiting for a title, named one at a time."""

    def __init__(self) -> None:
        self._waiting: asyncio.Queue[int] = asyncio.Queue()

    def add(self, reply_id: int) -> None:
        """Name the conversation of ``reply``, a first reply that completed, when its turn comes."""
        self._waiting.put_nowait(reply_id)

    async def run(self) -> None:
        while True:
            reply_id = await self._waiting.get()
            try:
                await name_conversation(reply_id)
            except Exception:
                logger.exception("naming the conversation of reply %s failed", reply_id)
            finally:
                self._waiting.task_done()

    async def join(self) -> None:
        """Until every conversation added so far has been named (or failed to be)."""
        await self._waiting.join()
