"""A reply being generated: upstream events in, text for its followers, an ``Outcome`` at the end.

A reply belongs to the worker process that started it, not to a socket: it runs as a
task of that process's runner (``chat.runner``), which relays its text to the pages
following it and saves its progress. Frames carry offsets, so a page can tell a frame it
missed and ask for a snapshot; the final frame is the persisted message, so it is
authoritative. A stopped reply keeps exactly the text its followers were sent.

A reasoning model's thinking streams beside the answer, into a section of its own, as
escaped text with no formatting to wait for. An offset counts the characters of both
the page has (thinking first), so one counter tells a page what it missed of either.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from django.conf import settings

from chat import branches, broadcast, metrics, rendering, replies
from chat.markdown import Live
from chat.models import Message
from chat.providers import DIALECTS
from chat.providers.base import Turn
from chat.providers.config import get_providers
from chat.providers.events import Finished, ReasoningDelta, TextDelta, UpstreamError, Usage
from chat.upstream import Connection, stream_batches

if TYPE_CHECKING:
    from chat.runner import Runner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Everything a reply needs from the database, read once before it starts."""

    provider: str
    model: str
    system_prompt: str
    turns: list[Turn]
    parameters: dict[str, int | float]


def load_job(reply: Message, history: list[Message] | None = None) -> Job:
    """What ``reply`` (its conversation loaded) is to be generated from; ``history``, its
    ancestors, when the caller has them already."""
    # The history follows the reply's own branch (chat.branches), never another version.
    provider = get_providers().get(reply.provider)
    images_as_data = DIALECTS[provider.dialect].IMAGE_DATA if provider else True
    turns = branches.turns_for(reply, history, images_as_data=images_as_data)
    return Job(reply.provider, reply.model, reply.conversation.system_prompt, turns, reply.parameters)


@dataclass(frozen=True)
class Outcome:
    """How a reply ended: what its final write records beside the timings and usage."""

    status: str
    content: str
    error: str = ""
    reasoning: str = ""


def estimate_tokens(text: str) -> int:
    # About four characters a token for English text; marked as an estimate.
    return math.ceil(len(text) / 4)


def sentence(text: str) -> str:
    text = text.strip()
    return f"{text[:1].upper()}{text[1:]}{'' if text.endswith(('.', '!', '?')) else '.'}"


class Follower(Protocol):
    """A page in this process following a reply (``chat.following.Follower``)."""

    async def reply_delta(self, event: dict) -> None: ...

    async def reply_snapshot(self, event: dict) -> None: ...

    async def end_reply(self, reply_id: int, message: Message | None) -> None: ...


class Reply:
    """One reply being generated: its text so far and how much of it its followers have."""

    def __init__(self, message: Message, job: Job, runner: Runner | None = None) -> None:
        self.id = message.pk
        self.conversation_id = message.conversation_id
        self.job = job
        self.runner = runner
        self.pieces: list[str] = []
        # The text as formatted for its followers: how much of it they are shown.
        self.live = Live(f"message-{self.id}")
        self.fed = 0
        # Its thinking: all of what was relayed is shown, none is held.
        self.thoughts: list[str] = []
        self.thoughts_fed = 0
        self.thoughts_shown = 0
        self.thinking_since: float | None = None
        self.thought_for: float | None = None
        self.thought_told = False
        # Pages following it: in this process, and on other workers by their channel.
        self.followers: set[Follower] = set()
        self.remote: set[str] = set()
        self.retries = 0
        self.ttft: float | None = None
        self.usage: Usage | None = None
        self.finish_reason = ""
        self.stopping = False
        self.stop_reason = ""
        self.interrupting = False
        self.closing = False
        # Its final state is written: set by ``_finish``, the one place that writes it.
        self.finished = False
        self.task: asyncio.Task[None] | None = None
        # The upstream connection its response streams on, closed at once by a Stop.
        self.upstream = Connection()
        # One relay at a time, so frames leave in order even when a send waits.
        self._relaying = asyncio.Lock()

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def reasoning(self) -> str:
        return "".join(self.thoughts)

    @property
    def relayed_chars(self) -> int:
        """The offset a page that has everything relayed is at: its thinking and its text."""
        return self.thoughts_shown + self.live.shown

    @property
    def relayed_text(self) -> str:
        return self.live.source[: self.live.shown]

    @property
    def relayed_reasoning(self) -> str:
        return "".join(self.thoughts[: self.thoughts_fed])

    @property
    def unsent_chars(self) -> int:
        """What it received that no frame has taken yet."""
        return sum(map(len, self.pieces[self.fed :])) + sum(map(len, self.thoughts[self.thoughts_fed :]))

    @property
    def has_news(self) -> bool:
        return len(self.pieces) > self.fed or len(self.thoughts) > self.thoughts_fed or self.live.held

    def thinking_ms(self, now: float | None = None) -> int | None:
        """How long it thought: until its answer began; if it has not, until ``now``."""
        if self.thinking_since is None or (self.thought_for is None and now is None):
            return None
        seconds = self.thought_for if self.thought_for is not None else now - self.thinking_since
        return round(seconds * 1000)

    def stop(self, reason: str = "") -> None:
        """Stop it, keeping the text sent so far; ``reason`` is its note, when given."""
        if self._may_cancel():
            self.stopping = True
            self.stop_reason = reason
            self.task.cancel()
            self.upstream.close_now()

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
        try:
            async with asyncio.timeout(settings.CHAT_REPLY_DEADLINE):
                await self._stream(started)
            outcome = Outcome(Message.Status.COMPLETE, self.text, reasoning=self.reasoning)
        except asyncio.CancelledError:
            if not self.stopping:
                error = "The server shut down while writing this reply."
                outcome = Outcome(Message.Status.INTERRUPTED, self.text, error, self.reasoning)
                await self._finish(outcome, started)
                raise
            self.task.uncancel()
            outcome = self._stopped()
        except TimeoutError:
            metrics.UPSTREAM_ERRORS.labels("deadline").inc()
            error = f"The reply took longer than {settings.CHAT_REPLY_DEADLINE:g} s and was ended."
            outcome = Outcome(Message.Status.ERROR, self.text, error, self.reasoning)
        except UpstreamError as exc:
            metrics.UPSTREAM_ERRORS.labels(metrics.error_kind(exc.message)).inc()
            outcome = Outcome(Message.Status.ERROR, self.text, sentence(exc.message), self.reasoning)
        except Exception:
            logger.exception("reply %s failed", self.id, extra=self._log_ids())
            error = "An internal error ended this reply."
            outcome = Outcome(Message.Status.ERROR, self.text, error, self.reasoning)
        await self._finish(outcome, started)

    def _stopped(self) -> Outcome:
        """Stopped: exactly what its followers were shown, of the answer and the thinking."""
        return Outcome(Message.Status.CANCELLED, self.relayed_text, self.stop_reason, self.relayed_reasoning)

    async def _stream(self, started: float) -> None:
        provider = get_providers()[self.job.provider]
        batches = stream_batches(
            provider,
            self.job.model,
            self.job.turns,
            self.job.system_prompt,
            self.job.parameters,
            on_retry=self._on_retry,
            connection=self.upstream,
        )
        async for batch in batches:
            had_output = bool(self.pieces or self.thoughts)
            for event in batch:
                if isinstance(event, TextDelta):
                    if self.thinking_since is not None and self.thought_for is None:
                        self.thought_for = time.monotonic() - self.thinking_since
                    self.pieces.append(event.text)
                elif isinstance(event, ReasoningDelta):
                    if self.thinking_since is None:
                        self.thinking_since = time.monotonic()
                    self.thoughts.append(event.text)
                elif isinstance(event, Usage):
                    self.usage = event
                elif isinstance(event, Finished):
                    self.finish_reason = event.reason
            if had_output or not (self.pieces or self.thoughts):
                if self.runner is not None and self.has_news:
                    self.runner.relay_soon(self)
                continue
            # The first words go out at once; the rest with the runner's next frame.
            self.ttft = time.monotonic() - started
            await self.relay()
            if self.retries:
                await broadcast.note(self.conversation_id, self.id, "")

    async def _on_retry(self, attempt: int, delay: float, reason: str) -> None:
        metrics.UPSTREAM_RETRIES.inc()
        self.retries = attempt
        wait = f"{delay:.1f}" if delay < 1 else f"{delay:.0f}"
        await broadcast.note(self.conversation_id, self.id, f"{sentence(reason)} Retrying in {wait} s…")

    async def relay(self, *, flush: bool = False) -> None:
        """Send what the page may show of the text that arrived since the last frame to
        every follower (with ``flush``, all of it: the reply is ending).

        What may yet change how the text before it looks waits for a later frame
        (``chat.markdown``). After Stop nothing more is sent: a stopped reply keeps
        exactly what was shown.
        """
        async with self._relaying:
            if self.stopping:
                return
            if len(self.pieces) > self.fed:
                metrics.TOKENS_RELAYED.inc(len(self.pieces) - self.fed)
                self.live.feed("".join(self.pieces[self.fed :]))
                self.fed = len(self.pieces)
            offset = self.relayed_chars
            thinking = ""
            if len(self.thoughts) > self.thoughts_fed:
                metrics.TOKENS_RELAYED.inc(len(self.thoughts) - self.thoughts_fed)
                thinking = "".join(self.thoughts[self.thoughts_fed :])
                self.thoughts_fed = len(self.thoughts)
                self.thoughts_shown += len(thinking)
            eager = self.runner is None or self.runner.keeping_up
            frame = self.live.advance(flush=flush, now=time.monotonic(), eager=eager)
            if self.live.held and self.runner is not None:
                self.runner.relay_soon(self)
            if frame is None and not thinking:
                return
            html = rendering.reasoning_frame_html(self.id, thinking) if thinking else ""
            if frame is not None:
                if self.thought_for is not None and not self.thought_told:
                    # Its answer is showing: how long it thought, in the section's summary.
                    self.thought_told = True
                    html += rendering.thought_html(self.id, self.thinking_ms())
                html += rendering.frame_html(self.id, frame, self.live.shown)
            end = self.relayed_chars
            event = {"type": broadcast.DELTA, "id": self.id, "offset": offset, "end": end, "html": html}
            for follower in list(self.followers):
                try:
                    await follower.reply_delta(event)
                except Exception:
                    logger.exception("relaying reply %s to a page failed", self.id)
                    self.followers.discard(follower)
            for channel in list(self.remote):
                if not await broadcast.delta(channel, self.id, offset, end, html):
                    metrics.FRAMES_DROPPED.inc()
                    self.remote.discard(channel)  # gone, or too far behind: it asks again

    async def tell_progress(self) -> None:
        """How far it is, to its conversation's pages: after the frames on their way, so a
        page that got them all never takes it for a gap."""
        async with self._relaying:
            await broadcast.progress(self.conversation_id, self.id, self.relayed_chars)

    async def follow_here(self, follower: Follower) -> None:
        """A page of this process follows: the text so far, then every frame after it."""
        async with self._relaying:
            self.followers.add(follower)
            await follower.reply_snapshot(self._snapshot())

    def _snapshot(self) -> dict:
        """All a page shows of it now, for a page that has none of it, or missed some."""
        return {
            "type": broadcast.SNAPSHOT,
            "id": self.id,
            "text": self.relayed_text,
            "reasoning": self.relayed_reasoning,
            "thought_ms": self.thinking_ms() if self.thought_told else None,
        }

    def _log_ids(self) -> dict[str, int]:
        return {"reply": self.id, "conversation": self.conversation_id}

    async def follow_from(self, channel: str) -> None:
        """A page on another worker follows: the text so far, then every frame after it,
        in order (no relay runs between the two)."""
        async with self._relaying:
            if await broadcast.snapshot(channel, self._snapshot()):
                self.remote.add(channel)

    async def end_unstarted(self) -> None:
        """The final state of a reply whose task ended without writing one: cancelled
        before its first step, as a task can be (its body never ran)."""
        if self.stopping:
            outcome = self._stopped()
        else:
            error = "The server stopped this reply."
            outcome = Outcome(Message.Status.INTERRUPTED, self.text, error, self.reasoning)
        try:
            await self._finish(outcome, time.monotonic())
        except Exception:
            logger.exception("reply %s ended without its final state", self.id, extra=self._log_ids())

    async def _finish(self, outcome: Outcome, started: float) -> None:
        if self.finished:
            return
        self.closing = True
        if outcome.status != Message.Status.CANCELLED:
            await self.relay(flush=True)  # the last words stream like the rest
        usage = self.usage
        if usage is None or usage.output_tokens is None:
            prompt = self.job.system_prompt + "".join(t.content for t in self.job.turns)
            thinking = estimate_tokens(outcome.reasoning) if outcome.reasoning else None
            output = estimate_tokens(outcome.content) + (thinking or 0)
            usage, estimated = Usage(estimate_tokens(prompt), output, thinking), True
        else:
            estimated = False
        message = await replies.finish(
            self.id,
            self.conversation_id,
            outcome.status,
            content=outcome.content,
            reasoning=outcome.reasoning,
            reasoning_ms=self.thinking_ms(time.monotonic()) if outcome.reasoning else None,
            reasoning_tokens=usage.reasoning_tokens,
            error=outcome.error,
            finish_reason=self.finish_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            tokens_estimated=estimated,
            cost=self._cost(usage),
            time_to_first_token_ms=None if self.ttft is None else round(self.ttft * 1000),
            duration_ms=round((time.monotonic() - started) * 1000),
            retries=self.retries,
        )
        self.finished = True
        if self.followers and outcome.content == self.relayed_text:
            # What its pages here show: their final frames need not render it all again.
            rendering.remember_body(self.id, outcome.content, self.live.html())
        labels = (self.job.provider, self.job.model)
        metrics.REPLIES_ENDED.labels(outcome.status, *labels).inc()
        metrics.REPLY_DURATION.labels(*labels).observe(time.monotonic() - started)
        if self.ttft is not None:
            metrics.FIRST_TOKEN.labels(*labels).observe(self.ttft)
        for follower in list(self.followers):
            try:
                await follower.end_reply(self.id, message)
            except Exception:
                logger.exception("ending reply %s on a page failed", self.id)
        # A first exchange is what names a conversation (``titles.first_exchange``).
        if outcome.status == Message.Status.COMPLETE and len(self.job.turns) == 1 and self.runner:
            self.runner.titles.add(self.id)

    def _cost(self, usage: Usage) -> Decimal | None:
        if (provider := get_providers().get(self.job.provider)) is None:
            return None
        spec = provider.model(self.job.model)
        return spec.cost(usage.input_tokens, usage.output_tokens) if spec else None
