"""The replies of one worker process, and the channel other processes reach them on.

One runner per process (per event loop, in tests). It starts replies as tasks of their
own, relays their text to the pages following them on one clock for all of them, saves
everyone's progress in one transaction a second, names conversations in the background,
and answers Stop and follow requests from any worker.

The frame clock: every ``CHAT_FRAME_INTERVAL`` the text each reply received since its last
frame goes out as one frame, when the frame is worth its framing: at least
``FRAME_CHARS`` characters, or text that has waited a tick already. A frame costs some
six bytes on the wire besides its text, so a reply whose tokens come one a tick (50 a
second) is sent every other tick, as many bytes a character as frames at twice the
interval, and a fast one (200 tokens a second) every tick. When the event loop falls
behind (it wakes the clock more than ``BUSY_LAG`` late), the interval grows, up to
``CHAT_MAX_FRAME_INTERVAL``, so a busy worker sends fewer, larger frames instead of
queueing, every tick; it shrinks back as the loop catches up. A busy worker also
redraws live markdown at its slower pace only (``chat.markdown``). The pace and the
threshold are apart on purpose: a loop a few tens of milliseconds late is not behind.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer
from django.conf import settings

from chat import access, broadcast, metrics, replies
from chat.database import database_sync_to_async
from chat.generation import Job, Reply
from chat.logs import once_a_minute

if TYPE_CHECKING:
    from chat.following import Follower
from chat.models import Message
from chat.titles import TitleQueue

logger = logging.getLogger(__name__)

# The least text a frame of the clock carries, unless its text has waited a tick.
FRAME_CHARS = 16
# A loop that wakes the clock later than this is behind (or than its pace, if slower).
BUSY_LAG = 0.04
# How often each worker looks for sessions ended anywhere (chat.access).
REVOCATION_POLL = 1.0
SessionsChanged = Callable[[dict[str, Any]], Awaitable[None]]


def busy_lag(base: float) -> float:
    return max(base, BUSY_LAG)


def next_interval(interval: float, lag: float, base: float, ceiling: float) -> float:
    """The frame clock's next interval, given how late the loop woke it (``lag``)."""
    if lag > busy_lag(base):
        return min(ceiling, max(interval * 1.5, lag))
    if lag < base / 4:
        return max(base, interval * 0.8)
    return interval


class Runner:
    def __init__(self) -> None:
        self.replies: dict[int, Reply] = {}
        # The open pages of this process, by conversation; and by person, what each page
        # does when a session of that person may have ended.
        self.pages: dict[int, set[Follower]] = {}
        self.people: dict[int, set[SessionsChanged]] = {}
        self.channel: str | None = None
        self.titles = TitleQueue()
        self.interval = settings.CHAT_FRAME_INTERVAL
        # The replies with text their followers lack, and since when.
        self._news: dict[Reply, float] = {}
        self._background: set[asyncio.Future[None]] = set()
        metrics.REPLIES_ACTIVE.set_function(lambda: len(self.replies))
        # Final writes of replies whose task ended without one (see ``Reply.end_unstarted``).
        self._finishing: set[asyncio.Future[None]] = set()

    async def channel_name(self) -> str:
        if self.channel is None:
            # The layer's default prefix: channels_redis reads all of a process's own
            # channels with one blocking pop on that prefix's key, so a channel of
            # another prefix would hold the read for seconds and starve the sockets'.
            self.channel = await get_channel_layer().new_channel()
            broadcast.answer_here(self.channel, self._answer)
            loops = (self._listen(), self._relay(), self._persist(), self._sweep(), self._revocations())
            for loop in (*loops, self.titles.run()):
                self._keep(asyncio.create_task(loop))
        return self.channel

    def launch(self, message: Message, job: Job) -> Reply:
        reply = Reply(message, job, self)
        metrics.REPLIES_STARTED.labels(job.provider, job.model).inc()
        # Every page of the conversation on this worker follows it from its first word.
        for page in self.pages.get(message.conversation_id, ()):
            page.expect(message)
            reply.followers.add(page)
        reply.task = asyncio.create_task(reply.run(), name=f"reply-{reply.id}")
        self.replies[reply.id] = reply
        reply.task.add_done_callback(lambda _: self._ended(reply))
        return reply

    async def show_added(self, conversation_id: int, messages: list[Message]) -> None:
        """Messages just added at the end of a conversation, drawn on its pages in this
        process from what the write returned, with no read of them."""
        for page in list(self.pages.get(conversation_id, ())):
            try:
                await page.show_started(messages)
            except Exception:
                logger.exception("drawing new messages on a page failed")

    def _ended(self, reply: Reply) -> None:
        self.replies.pop(reply.id, None)
        self._news.pop(reply, None)
        if not reply.finished:
            ending = asyncio.ensure_future(reply.end_unstarted())
            self._finishing.add(ending)
            ending.add_done_callback(self._finishing.discard)

    def _keep(self, task: asyncio.Future[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def watch_sessions(self, user_id: int, changed: SessionsChanged) -> None:
        self.people.setdefault(user_id, set()).add(changed)

    def unwatch_sessions(self, user_id: int, changed: SessionsChanged) -> None:
        if (watchers := self.people.get(user_id)) is not None:
            watchers.discard(changed)
            if not watchers:
                del self.people[user_id]

    @property
    def keeping_up(self) -> bool:
        """The frame clock runs at its own pace: the event loop is not behind."""
        return self.interval <= busy_lag(settings.CHAT_FRAME_INTERVAL)

    def relay_soon(self, reply: Reply) -> None:
        """``reply`` has text its followers lack: it goes with a frame of the clock."""
        self._news.setdefault(reply, asyncio.get_running_loop().time())

    async def settled(self) -> None:
        """Until every reply started so far has ended and its final state is written."""
        while running := [r.task for r in self.replies.values() if r.task] + list(self._finishing):
            await asyncio.wait(running)

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
        if self._finishing:
            await asyncio.wait(list(self._finishing), timeout=10)
        for task in list(self._background):
            task.cancel()

    async def _relay(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            lag = loop.time() - before - self.interval
            metrics.LOOP_LAG.set(max(lag, 0.0))
            self.interval = next_interval(
                self.interval, lag, settings.CHAT_FRAME_INTERVAL, settings.CHAT_MAX_FRAME_INTERVAL
            )
            await self.tick(loop.time())

    async def tick(self, now: float) -> None:
        """A tick of the frame clock: each reply with news sends its frame, unless the
        frame would carry a few characters that have not waited a tick yet."""
        news, self._news = self._news, {}
        for reply, since in news.items():
            if self.keeping_up and now - since < self.interval and reply.unsent_chars < FRAME_CHARS:
                self._news.setdefault(reply, since)  # it waits a tick for more
                continue
            try:
                await reply.relay()
            except Exception:
                logger.exception("relaying reply %s failed", reply.id)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        while True:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                once_a_minute(
                    logger, "runner", "the channel layer failed (%r); trying again every second", exc
                )
                await asyncio.sleep(1)
                continue
            await self._answer(message)

    async def _answer(self, message: dict) -> None:
        """A request to this worker: from its channel, or directly from this process
        (``broadcast.to_owner``)."""
        kind = message.get("type")
        try:
            if (reply := self.replies.get(message.get("id"))) is None:
                return
            if kind == broadcast.STOP:
                reply.stop(str(message.get("reason", "")))
            elif kind == broadcast.FOLLOW and isinstance(page := message.get("reply_to"), str):
                await reply.follow_from(page)
            elif kind == broadcast.UNFOLLOW:
                reply.remote.discard(message.get("reply_to"))
        except Exception:
            # A vanished reply_to channel must not end the listening, nor fail the asker.
            logger.exception("answering %s failed", kind)

    async def _persist(self) -> None:
        """Every reply's text so far and its heartbeat: one transaction a second per process.

        One batched write keeps the frames of many replies from queueing behind the
        database thread; a reply the database refuses (Stop asked, or ended) is stopped.
        Then each reply's progress goes to its conversation's pages (``broadcast.PROGRESS``).
        """
        while True:
            await asyncio.sleep(settings.CHAT_PERSIST_INTERVAL)
            # Finishing replies too: their heartbeat says this worker still runs them.
            batch = [
                (r.id, r.relayed_text, r.relayed_reasoning, r.retries)
                for r in self.replies.values()
                if not r.finished
            ]
            if not batch:
                continue
            try:
                refused = await database_sync_to_async(replies.do_save_progress_many)(batch)
            except Exception:
                logger.exception("saving progress failed")
                continue
            for reply_id, reason in refused.items():
                if reply := self.replies.get(reply_id):
                    reply.stop(reason)
            for reply in list(self.replies.values()):
                if not reply.closing:
                    await reply.tell_progress()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_STALE_AFTER / 2)
            try:
                await replies.interrupt_stale()
                await database_sync_to_async(access.do_forget_old_revocations)()
            except Exception:
                logger.exception("sweeping stale replies failed")

    async def _revocations(self) -> None:
        """Once a second, the sessions ended anywhere since (``chat.access``), to the pages
        of this process: whatever the channel layer carried or lost."""
        newest = None
        while True:
            try:
                newest, ended = await database_sync_to_async(access.recent_revocations)(newest)
                for user_id, reason, session_key in ended:
                    for changed in list(self.people.get(user_id, ())):
                        await changed({"reason": reason, "session": session_key})
            except Exception:
                logger.exception("looking for ended sessions failed")
            await asyncio.sleep(REVOCATION_POLL)


_runners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runner] = weakref.WeakKeyDictionary()


def get_runner() -> Runner:
    """The runner of the running event loop: one per process in production."""
    loop = asyncio.get_running_loop()
    if loop not in _runners:
        _runners[loop] = Runner()
    return _runners[loop]
