"""Signed out across workers, on Redis and PostgreSQL: a person's session ends through
worker A's side while worker B streams a reply to their page there; the page on B, and
theirs on A, are told why and closed with 4401 within a few seconds, and the reply on B
ends cancelled with exactly the text the page on B showed.

tests/test_access.py covers every way a session ends on one process; tests/e2e/
test_signed_out.py the same in the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chat import access
from tests.scaleout.clients import ChatSocket, Session, log_in, upstream_request
from tests.scaleout.conftest import Cluster
from tests.servers import PASSWORD, AppServer, SimulatorProcess, manage

pytestmark = pytest.mark.scaleout

MESSAGE = "Long [sim tokens=2000 tps=40]"
# From the start of the change (a manage.py process, or an HTTP request) to the pages' close.
WITHIN = 5.0


class Page(ChatSocket):
    """A conversation's socket that also keeps every frame it received, as text."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.texts: list[str] = []
        super().__init__(websocket)

    def apply(self, frame: str) -> None:
        self.texts.append(frame)
        super().apply(frame)


def deactivation(cluster: Cluster, worker: AppServer) -> Callable[[], None]:
    """Through the models, as anything on worker A's side would: ``User.save()`` tells the
    person's pages on every worker, over Redis."""
    deactivate = (
        "from django.contrib.auth.models import User\n"
        "person = User.objects.get(username='alice')\n"
        "person.is_active = False\n"
        "person.save()\n"
    )
    return lambda: manage(cluster.env, "shell", "-c", deactivate)


def staff_ending_sessions(cluster: Cluster, worker: AppServer) -> Callable[[], None]:
    """Staff, signed in on worker A, end alice's sessions with the admin's action."""
    create = (
        "from django.contrib.auth.models import User\nUser.objects.create_superuser('root', password={!r})"
    )
    manage(cluster.env, "shell", "-c", create.format(PASSWORD))
    staff = log_in(worker.url, "root")
    alice = cluster.db.rows("SELECT id FROM auth_user WHERE username = 'alice'")[0]["id"]

    def end() -> None:
        response = httpx.post(
            f"{worker.url}/admin/auth/user/",
            data={"action": "end_sessions", "_selected_action": [str(alice)]},
            headers={"Cookie": staff.cookie_header, "X-CSRFToken": staff.cookies["csrftoken"]},
            timeout=10,
        )
        assert response.status_code == 302, response.text

    return end


async def open_page(worker: AppServer, session: Session, conversation: int) -> Page:
    return await Page.open(worker.url, session, conversation)  # type: ignore[return-value]


def signed_out_notice(page: Page) -> str:
    notices = [text for text in page.texts if 'id="signed-out"' in text]
    assert len(notices) == 1, page.texts[-3:]
    return notices[0]


@pytest.mark.parametrize(
    ("end", "reason"),
    [(deactivation, access.DEACTIVATED), (staff_ending_sessions, access.ENDED_BY_STAFF)],
    ids=["deactivated", "ended-by-staff"],
)
async def test_a_session_ended_through_one_worker_signs_out_the_page_streaming_on_the_other(
    cluster: Cluster,
    sim: SimulatorProcess,
    end: Callable[[Cluster, AppServer], Callable[[], None]],
    reason: str,
) -> None:
    worker_a, worker_b = cluster.start(2)
    end_sessions = await asyncio.to_thread(end, cluster, worker_a)
    session = await asyncio.to_thread(log_in, worker_b.url)
    conversation = await asyncio.to_thread(session.new_conversation, worker_b.url)
    on_b = await open_page(worker_b, session, conversation)
    # A second page of the same person, in another browser, on worker A.
    on_a = await open_page(worker_a, await asyncio.to_thread(log_in, worker_a.url), conversation)
    await on_b.send(MESSAGE)
    reply_id = await on_b.first_reply()
    reply = on_b.replies[reply_id]
    await on_b.wait_for(lambda: reply.shown > 40)

    started = time.monotonic()
    await asyncio.to_thread(end_sessions)

    for page in (on_b, on_a):
        await page.wait_for(lambda page=page: page.reader.done(), within=WITHIN)
        assert page.close_code == access.SIGNED_OUT
        notice = signed_out_notice(page)
        assert page.texts[-1] == notice  # the last word before the close
        assert "You are signed out." in notice and reason in notice
        assert re.search(rf'href="[^"]*\?next=/conversations/{conversation}/"', notice)
    assert time.monotonic() - started < WITHIN

    # The reply, run by worker B, ended cancelled with the text the page on B showed;
    # the page on A, following it over Redis, showed no more than that.
    assert reply.status == "cancelled"
    saved = await asyncio.to_thread(cluster.db.reply, reply_id)
    assert saved["status"] == "cancelled"
    assert saved["error"] == reason
    assert reply.shown > 40
    assert reply.shows(saved["content"])
    assert reply.drawn_from(saved["content"]) and on_a.replies[reply_id].drawn_from(saved["content"])
    record = await asyncio.to_thread(upstream_request, sim, MESSAGE)
    assert record["client_closed_at"]
    assert record["text"].startswith(saved["content"])

    # The ended session opens the page again only to hear that it is signed out, and a
    # frame it sends starts nothing.
    again = await open_page(worker_a, session, conversation)
    with contextlib.suppress(ConnectionClosed):  # it may have closed already
        await again.send("Still there? [sim tokens=5 tps=400]")
    await again.wait_for(lambda: again.reader.done(), within=WITHIN)
    assert again.close_code == access.SIGNED_OUT
    assert "You are signed out." in signed_out_notice(again)
    assert len(await asyncio.to_thread(sim.requests)) == 1
    count = "SELECT COUNT(*) AS n FROM chat_message WHERE conversation_id = %s"
    assert (await asyncio.to_thread(cluster.db.rows, count, conversation))[0]["n"] == 2
