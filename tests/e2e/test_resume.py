"""A reply belongs to the server, not to a socket: reload, two tabs, Stop from anywhere.

On the default stack (SQLite, the in-memory channel layer); tests/scaleout repeats the
cross-worker cases on Redis and PostgreSQL.
"""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.frames import only_grew, read
from tests.scaleout import pages
from tests.scaleout.clients import upstream_request
from tests.scaleout.pages import body, send
from tests.servers import SimulatorProcess, wait_until


def recording(page: Page) -> Page:
    """The page again, reloaded so that it records what it shows from its first frame."""
    pages.record(page.context)
    page.reload()
    pages.wait_for_socket(page)
    return page


def second_tab(page: Page) -> Page:
    tab = page.context.new_page()
    tab.goto(page.url)
    pages.wait_for_socket(tab)
    return tab


def test_a_reload_mid_reply_shows_the_text_so_far_and_goes_on_live(
    page: Page, sim: SimulatorProcess, db
) -> None:
    pages.record(page.context)
    message = "Reload me [sim tokens=240 tps=40]"
    reply = send(page, message)
    wait_until(lambda: len(body(page, reply)) > 80)
    shown_earlier = body(page, reply)
    time.sleep(1.5)
    shown = body(page, reply)

    page.reload()
    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "complete", timeout=15_000)

    upstream = upstream_request(sim, message)["text"]
    seen = pages.bodies(page)
    assert only_grew(seen, upstream, reply)  # no gap, no repeat
    assert len({len(text) for text in seen}) >= 3  # it went on growing, live
    # First the text persisted about a second before the reload, then all of it so far.
    assert len(seen[0]) >= len(shown_earlier)
    assert len(seen[1]) >= len(shown)
    assert db.reply(reply)["content"] == upstream


def test_two_tabs_on_one_conversation_stream_the_same_reply(page: Page, sim: SimulatorProcess, db) -> None:
    first = recording(page)
    other = second_tab(first)
    message = "Watch me twice [sim tokens=160 tps=40]"
    reply = send(first, message)

    for tab in (first, other):
        expect(tab.locator(f"#message-{reply}")).to_have_attribute("data-status", "complete", timeout=15_000)
    upstream = upstream_request(sim, message)["text"]
    for tab in (first, other):
        seen = pages.bodies(tab)
        assert len({len(text) for text in seen}) >= 3
        assert only_grew(seen, upstream, reply)
    assert (
        first.locator(f"#message-{reply}-body").inner_html()
        == other.locator(f"#message-{reply}-body").inner_html()
    )
    assert db.reply(reply)["content"] == upstream


def test_stop_from_another_tab_stops_the_reply_on_both(page: Page, sim: SimulatorProcess, db) -> None:
    first = recording(page)
    other = second_tab(first)
    message = "Stop me from elsewhere [sim tokens=2000 tps=30]"
    reply = send(first, message)
    wait_until(lambda: len(body(other, reply)) > 40)

    pressed = time.time()
    other.get_by_role("button", name="Stop").click()

    record = wait_until(lambda: (r := upstream_request(sim, message))["client_closed_at"] and r, timeout=5)
    assert record["client_closed_at"] - pressed < 1
    for tab in (first, other):
        expect(tab.locator(f"#message-{reply}")).to_have_attribute("data-status", "cancelled")
    saved = db.reply(reply)
    assert saved["status"] == "cancelled"
    assert body(first, reply) == body(other, reply) == read(saved["content"], reply)
    assert record["text"].startswith(saved["content"])


def test_stop_before_the_first_token_cancels_the_reply_and_the_upstream(
    page: Page, sim: SimulatorProcess, db
) -> None:
    page = recording(page)
    message = "Slow to start [sim first_token_delay=5 tokens=50]"
    reply = send(page, message)
    upstream_request(sim, message)  # the request has reached the upstream

    pressed = time.time()
    page.get_by_role("button", name="Stop").click()

    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "cancelled")
    record = wait_until(lambda: (r := upstream_request(sim, message))["client_closed_at"] and r, timeout=5)
    assert record["client_closed_at"] - pressed < 1
    assert record["text"] == ""
    saved = db.reply(reply)
    assert saved["status"] == "cancelled"
    assert saved["content"] == ""
    # "Stopping..." until the worker that owns the reply confirmed.
    assert pages.stop_labels(page)[-2:] == ["Stopping...", "Stop"]


def test_closing_the_tab_does_not_stop_the_reply(page: Page, sim: SimulatorProcess, db) -> None:
    message = "Nobody is watching [sim tokens=120 tps=40]"
    reply = send(page, message)
    wait_until(lambda: len(body(page, reply)) > 20)

    page.close()

    saved = wait_until(
        lambda: (r := db.reply(reply))["status"] not in {"pending", "streaming"} and r, timeout=15
    )
    record = upstream_request(sim, message)
    assert saved["status"] == "complete"
    assert saved["content"] == record["text"]
    assert record["outcome"] == "complete"
