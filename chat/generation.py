"""The runner: upstream events -> coalesced frames -> the conversation's group -> the DB.

A reply belongs to the worker process that started it, not to a socket: it runs as its
own task, owned by the process's ``Runner``, which listens on a channel of its own for
Stop and for resync requests from any worker. Frames carry offsets so a page can detect
a frame the channel layer dropped and ask for a snapshot; the final frame is the
persisted message, so it is authoritative.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from decimal import Decimal

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings

from chat import services, threads, titles
from chat.models import Message
from chat.providers.base import Turn
from chat.providers.config import get_providers
from chat.providers.events import Finished, TextDelta, UpstreamError, Usage
from chat.upstream import stream_events

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Everything a reply needs from the database, read once before it starts."""

    provider: str
    model: str
    system_prompt: str
    turns: list[Turn]


def load_job(reply: Message) -> Job:
    """What ``reply`` (its conversation loaded) is to be generated from."""
    # The history follows the reply's own branch (chat.threads), never another version.
    return Job(reply.provider, reply.model, reply.conversation.system_prompt, threads.turns_for(reply))


def estimate_tokens(text: str) -> int:
    # About four characters a token for English text; marked as an estimate.
    return math.ceil(len(text) / 4)


def sentence(text: str) -> str:
    text = text.strip()
    return f"{text[:1].upper()}{text[1:]}{'' if text.endswith(('.', '!', '?')) else '.'}"


class Reply:
    """One reply being generated: its text so far and what has been relayed of it."""

    def __init__(self, message: Message, job: Job) -> None:
        self.id = message.pk
        self.conversation_id = message.conversation_id
        self.job = job
        self.pieces: list[str] = []
        self.relayed_pieces = 0
        self.relayed_chars = 0
        self.retries = 0
        self.stopping = False
        self.interrupting = False
        self.closing = False
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def relayed_text(self) -> str:
        return "".join(self.pieces[: self.relayed_pieces])

    def stop(self) -> None:
        if self._may_cancel():
            self.stopping = True
            self.task.cancel()

    def interrupt(self) -> None:
        """End the reply as ``interrupted`` (its worker is shutting down), keeping its text."""
        if self._may_cancel():
            self.interrupting = True
            self.task.cancel()

    def _may_cancel(self) -> bool:
        # Cancel exactly once: a second cancel can leak a pooled connection (httpx #3782);
        # and never while finishing, or the final state would go unwritten.
        return self.task is not None and not (self.stopping or self.interrupting or self.closing)

    async def run(self) -> None:
        started = time.monotonic()
        result: dict = {}
        flusher = asyncio.create_task(self._flush_loop())
        try:
            async with asyncio.timeout(settings.CHAT_REPLY_DEADLINE):
                result = await self._stream(self.job, started)
        except asyncio.CancelledError:
            if not self.stopping:
                await self._finish(
                    Message.Status.INTERRUPTED,
                    started,
                    flusher,
                    content="".join(self.pieces),
                    error="The server shut down while writing this reply.",
                )
                raise
            self.task.uncancel()
            await self._finish(Message.Status.CANCELLED, started, flusher, content=self.relayed_text)
            return
        except TimeoutError:
            result = {
                "status": Message.Status.ERROR,
                "error": f"The reply took longer than {settings.CHAT_REPLY_DEADLINE:g} s and was ended.",
            }
        except UpstreamError as exc:
            result = {"status": Message.Status.ERROR, "error": sentence(exc.message)}
        except Exception:
            logger.exception("reply %s failed", self.id)
            result = {"status": Message.Status.ERROR, "error": "An internal error ended this reply."}
        await self._finish(result.pop("status"), started, flusher, content="".join(self.pieces), **result)

    async def _stream(self, job: Job, started: float) -> dict:
        provider = get_providers()[job.provider]
        result: dict = {"status": Message.Status.COMPLETE, "ttft": None}
        async for event in stream_events(
            provider, job.model, job.turns, job.system_prompt, on_retry=self._on_retry
        ):
            if isinstance(event, TextDelta):
                # Relay first, then mark the reply streaming: the write must not delay the text.
                first = not self.pieces
                self.pieces.append(event.text)
                self.wake.set()
                if first:
                    result["ttft"] = time.monotonic() - started
                    await database_sync_to_async(services.do_mark_streaming)(self.id)
                    if self.retries:
                        await services.notify_status(self.conversation_id, self.id, "")
            elif isinstance(event, Usage):
                result["input_tokens"], result["output_tokens"] = event.input_tokens, event.output_tokens
            elif isinstance(event, Finished):
                result["finish_reason"] = event.reason
        return result

    async def _on_retry(self, attempt: int, delay: float, reason: str) -> None:
        self.retries = attempt
        wait = f"{delay:.1f}" if delay < 1 else f"{delay:.0f}"
        note = f"{sentence(reason)} Retrying in {wait} s…"
        await services.notify_status(self.conversation_id, self.id, note)

    async def _flush_loop(self) -> None:
        """Relays new text at most once a frame interval (the Runner persists it).

        On closing it relays what is left, so the last words stream like the rest, except
        after Stop: a stopped reply keeps exactly what had been shown.
        """
        while True:
            await self.wake.wait()
            self.wake.clear()
            if len(self.pieces) > self.relayed_pieces and not (self.closing and self.stopping):
                text = "".join(self.pieces[self.relayed_pieces :])
                offset = self.relayed_chars
                self.relayed_pieces, self.relayed_chars = len(self.pieces), offset + len(text)
                await services.notify_delta(self.conversation_id, self.id, offset, text)
            if self.closing:
                return
            await asyncio.sleep(settings.CHAT_FRAME_INTERVAL)

    async def _finish(
        self,
        status: str,
        started: float,
        flusher: asyncio.Task[None],
        *,
        content: str,
        ttft: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        **fields: str,
    ) -> None:
        self.closing = True
        self.wake.set()
        await flusher
        estimated = output_tokens is None
        if estimated:
            output_tokens = estimate_tokens(content)
            prompt = self.job.system_prompt + "".join(t.content for t in self.job.turns)
            input_tokens = estimate_tokens(prompt)
        cost = self._cost(input_tokens, output_tokens)
        await database_sync_to_async(services.do_finish_reply)(
            self.id,
            status,
            content=content,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            tokens_estimated=estimated,
            cost=cost,
            time_to_first_token_ms=None if ttft is None else round(ttft * 1000),
            duration_ms=round((time.monotonic() - started) * 1000),
            retries=self.retries,
            **fields,
        )
        await services.notify_final(self.conversation_id, self.id)
        if status == Message.Status.COMPLETE:
            await titles.name_conversation(self.id)

    def _cost(self, input_tokens: int | None, output_tokens: int | None) -> Decimal | None:
        if (provider := get_providers().get(self.job.provider)) is None:
            return None
        spec = provider.model(self.job.model)
        return spec.cost(input_tokens, output_tokens) if spec else None


class Runner:
    """The replies of this process, and the channel other processes reach them on."""

    def __init__(self) -> None:
        self.replies: dict[int, Reply] = {}
        self._channel: str | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def channel_name(self) -> str:
        if self._channel is None:
            # The layer's default prefix: channels_redis reads all of a process's own
            # channels with one blocking pop on that prefix's key, so a channel of
            # another prefix would hold the read for seconds and starve the sockets'.
            self._channel = await get_channel_layer().new_channel()
            for loop in (self._listen(), self._sweep(), self._persist()):
                task = asyncio.create_task(loop)
                self._background.add(task)
        return self._channel

    def launch(self, message: Message, job: Job) -> Reply:
        reply = Reply(message, job)
        reply.task = asyncio.create_task(reply.run(), name=f"reply-{reply.id}")
        self.replies[reply.id] = reply
        reply.task.add_done_callback(lambda _: self.replies.pop(reply.id, None))
        return reply

    async def shutdown(self, grace: float) -> None:
        """Let the replies run for up to ``grace`` seconds, then interrupt the rest.

        Every reply ends through its own finish path, so its final state is written and
        broadcast; the channel keeps answering Stop and snapshots until then.
        """
        running = [reply.task for reply in self.replies.values() if reply.task]
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        for reply in list(self.replies.values()):
            reply.interrupt()
        if ending := [reply.task for reply in self.replies.values() if reply.task]:
            # Bounded: an unreachable database must not keep the worker from exiting.
            await asyncio.wait(ending, timeout=10)
        for task in self._background:
            task.cancel()

    async def _listen(self) -> None:
        layer = get_channel_layer()
        while True:
            try:
                message = await layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the runner's channel failed; listening again in 1 s")
                await asyncio.sleep(1)
                continue
            try:
                await self._answer(layer, message)
            except ChannelFull:
                # Lost like a dropped frame: the page asks again.
                logger.warning("the page asking for reply %s has a full channel", message.get("id"))
            except Exception:
                # A vanished reply_to channel must not end the listening.
                logger.exception("answering %s failed", message.get("type"))

    async def _answer(self, layer: BaseChannelLayer, message: dict) -> None:
        reply = self.replies.get(message.get("id"))
        if reply is None:
            return
        if message["type"] == "reply.stop":
            reply.stop()
        elif message["type"] == "reply.snapshot":
            await layer.send(
                message["reply_to"],
                {"type": "reply.snapshot", "id": reply.id, "text": reply.relayed_text},
            )

    async def _persist(self) -> None:
        """Every reply's text so far and its heartbeat: one transaction a second per process.

        One batched write keeps the frames of many replies from queueing behind the
        database thread; a reply the database refuses (Stop asked, or ended) is stopped.
        """
        while True:
            await asyncio.sleep(settings.CHAT_PERSIST_INTERVAL)
            batch = [(r.id, r.relayed_text, r.retries) for r in self.replies.values() if not r.closing]
            if not batch:
                continue
            try:
                refused = await database_sync_to_async(services.do_save_progress_many)(batch)
            except Exception:
                logger.exception("saving progress failed")
                continue
            for reply_id in refused:
                if reply := self.replies.get(reply_id):
                    reply.stop()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_STALE_AFTER / 2)
            try:
                await services.interrupt_stale_replies()
            except Exception:
                logger.exception("sweeping stale replies failed")


_runners: dict[asyncio.AbstractEventLoop, Runner] = {}


def get_runner() -> Runner:
    """The runner of the running event loop: one per process in production."""
    loop = asyncio.get_running_loop()
    if loop not in _runners:
        _runners[loop] = Runner()
    return _runners[loop]
