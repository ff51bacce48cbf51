"""Signed out while a reply streams: the page says so, keeps the text it showed, sends nothing.

Each way a session ends (chat.access) reaches the open page in the browser: the notice,
with the reason and a way back to this conversation, the socket closed with 4401 (htmx
does not reconnect), the reply it was streaming stopped with exactly the text shown, and
a message typed after that starts nothing. tests/test_access.py covers the same below
the browser; tests/scaleout/test_signed_out.py across workers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from chat import access
from tests.e2e.conftest import log_in
from tests.e2e.people import make_person
from tests.frames import read
from tests.scaleout import pages
from tests.scaleout.clients import upstream_request
from tests.scaleout.pages import body, send
from tests.servers import AppServer, SimulatorProcess, manage, wait_until

MESSAGE = "Long [sim tokens=2000 tps=40]"
# Every close of the page's socket, with its code.
RECORD_CLOSES = """
window.closeCodes = [];
document.addEventListener("htmx:wsClose", (event) => {
  window.closeCodes.push(event.detail.event ? event.detail.event.code : null);
});
"""
# A session made to expire this long after it is set: long enough for the page to load,
# send, and show some of the reply first.
EXPIRES_IN = timedelta(seconds=4)


@dataclass
class Event:
    """A way the page's session ends: ``prepare`` runs before the message is sent,
    ``trigger`` once the reply streams."""

    reason: str
    trigger: Callable[[AppServer, Browser, Page, str], None]
    prepare: Callable[[AppServer, Page], None] = lambda app, page: None


def save_person(app: AppServer, person: str, change: str) -> None:
    """Change the person through the app's models: ``User.save()`` tells their pages."""
    manage(
        app.env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        f"person = User.objects.get(username={person!r})\n{change}\nperson.save()\n",
    )


def deactivate(app: AppServer, browser: Browser, page: Page, person: str) -> None:
    save_person(app, person, "person.is_active = False")


def change_password(app: AppServer, browser: Browser, page: Page, person: str) -> None:
    save_person(app, person, "person.set_password('another-long-test-password')")


def log_out_in_another_tab(app: AppServer, browser: Browser, page: Page, person: str) -> None:
    # The same browser context, so the same session as the page: its own session ends.
    tab = page.context.new_page()
    tab.goto(page.url)
    tab.get_by_role("button", name=f"Log out {person}").click()
    tab.wait_for_url("**/accounts/login/**")
    tab.close()


def log_out_everywhere_else(app: AppServer, browser: Browser, page: Page, person: str) -> None:
    # Another browser, signed in as the same person: its session stays, the page's ends.
    context = browser.new_context(base_url=app.url)
    try:
        other = context.new_page()
        log_in(other, app.url, person)
        other.get_by_role("button", name="Log out everywhere else").click()
        expect(other.get_by_role("alert").filter(has_text="Signed out of 1 other session.")).to_be_visible()
    finally:
        context.close()


def expire_soon(app: AppServer, page: Page) -> None:
    """Make the page's session expire shortly; the page reads when, as its socket opens."""
    key = next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")
    expires = (datetime.now(UTC) + EXPIRES_IN).replace(tzinfo=None).isoformat(sep=" ")
    with sqlite3.connect(app.extra["db"], timeout=10) as connection:
        updated = connection.execute(
            "UPDATE chat_usersession SET expire_date = ? WHERE session_key = ?", (expires, key)
        ).rowcount
    assert updated == 1
    page.reload()
    pages.wait_for_socket(page)


def wait_for_expiry(app: AppServer, browser: Browser, page: Page, person: str) -> None:
    """Nothing to do: the session runs out by itself."""


EVENTS = {
    "deactivated": Event(access.DEACTIVATED, deactivate),
    "password-changed": Event(access.PASSWORD_CHANGED, change_password),
    "logged-out-in-another-tab": Event(access.LOGGED_OUT, log_out_in_another_tab),
    "logged-out-everywhere-else": Event(access.ENDED_ELSEWHERE, log_out_everywhere_else),
    "expired": Event(access.EXPIRED, wait_for_expiry, prepare=expire_soon),
}


@pytest.fixture
def person(app: AppServer, request: pytest.FixtureRequest) -> str:
    # One person per event: some leave them unable to sign in again, and the app limits
    # messages and replies per person.
    return make_person(app, f"sigrid-{request.node.callspec.id}")


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess, person: str) -> Iterator[Page]:
    """The person's page on a new conversation, recording what it shows from its first frame."""
    context = browser.new_context(base_url=app.url)
    pages.record(context)
    context.add_init_script(RECORD_CLOSES)
    page = context.new_page()
    log_in(page, app.url, person)
    page.get_by_role("button", name="New chat").click()
    page.wait_for_url("**/conversations/*/")
    pages.wait_for_socket(page)
    yield page
    context.close()


def messages_in(app: AppServer, conversation: int) -> int:
    with sqlite3.connect(app.extra["db"], timeout=10) as connection:
        query = "SELECT COUNT(*) FROM chat_message WHERE conversation_id = ?"
        return connection.execute(query, (conversation,)).fetchone()[0]


@pytest.mark.parametrize("event", EVENTS.values(), ids=list(EVENTS))
def test_a_page_whose_session_ends_says_so_keeps_the_text_shown_and_sends_nothing(
    event: Event, app: AppServer, browser: Browser, page: Page, person: str, sim: SimulatorProcess, db
) -> None:
    conversation = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    event.prepare(app, page)
    reply = send(page, MESSAGE)
    wait_until(lambda: len(body(page, reply)) > 40)
    expect(page.locator("#signed-out")).to_be_hidden()

    event.trigger(app, browser, page, person)

    # (a) The notice, with the reason and a way back to this conversation; the socket
    # closed with 4401, once, and stays closed.
    notice = page.locator("#signed-out")
    expect(notice).to_be_visible(timeout=10_000)
    expect(notice).to_contain_text("You are signed out.")
    expect(notice.locator(".reason")).to_have_text(event.reason)
    link = notice.get_by_role("link", name="Sign in again")
    assert link.get_attribute("href").endswith(f"?next=/conversations/{conversation}/")
    page.wait_for_function("() => window.closeCodes.includes(4401)")

    # (b) The reply ends cancelled, with the reason, showing what it showed before the
    # final frame, which is what the database keeps.
    article = page.locator(f"#message-{reply}")
    expect(article).to_have_attribute("data-status", "cancelled", timeout=10_000)
    saved = db.reply(reply)
    assert saved["status"] == "cancelled"
    assert saved["error"] == event.reason
    shown = pages.bodies(page)[-1]
    assert len(shown) > 40
    # Formatted as it streamed: what the page read is the saved text, drawn.
    assert body(page, reply) == read(saved["content"], reply) == shown
    expect(article.locator(".error-text")).to_have_text(event.reason)
    record = wait_until(lambda: (r := upstream_request(sim, MESSAGE))["client_closed_at"] and r, timeout=5)
    assert record["text"].startswith(saved["content"])

    # (c) A message typed and sent now starts nothing.
    requests, messages = len(sim.requests()), messages_in(app, conversation)
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    page.get_by_label("Message").fill("Still there? [sim tokens=5 tps=400]")
    page.get_by_label("Message").press("Enter")
    page.get_by_role("button", name="Send").click(force=True)
    page.wait_for_timeout(1500)
    assert len(sim.requests()) == requests == 1
    assert messages_in(app, conversation) == messages == 2
    expect(page.locator("[data-role=assistant]")).to_have_count(1)
    assert page.evaluate("window.closeCodes") == [4401]
    expect(notice).to_be_visible()
