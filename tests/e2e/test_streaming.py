"""The spine as a person meets it: send, watch it stream, Stop, reload."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.frames import only_grew, read
from tests.scaleout import pages
from tests.servers import SimulatorProcess, wait_until

RECORD_GROWTH = """
() => {
  window.growth = [];
  window.statuses = [];
  const list = document.getElementById("messages");
  new MutationObserver(() => {
    const bodies = list.querySelectorAll("[data-role=assistant] .body");
    const body = bodies[bodies.length - 1];
    if (body && body.textContent.length !== window.growth[window.growth.length - 1]) {
      window.growth.push(body.textContent.length);
    }
    const status = body && body.closest("[data-status]").dataset.status;
    if (status && status !== window.statuses[window.statuses.length - 1]) window.statuses.push(status);
  }).observe(list, {childList: true, subtree: true, characterData: true, attributes: true});
}
"""


def send(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def last_reply(page: Page):
    return page.locator("[data-role=assistant]").last


def reply_id(page: Page) -> int:
    return int(last_reply(page).get_attribute("id").removeprefix("message-"))


def test_a_reply_streams_in_steps_and_completes_as_markdown(page: Page, sim: SimulatorProcess) -> None:
    page.evaluate(RECORD_GROWTH)
    send(page, "Tell me about streaming [sim tokens=80 tps=40]")

    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    growth = page.evaluate("window.growth")
    increasing = [n for previous, n in zip([0, *growth], growth, strict=False) if n > previous]
    assert len(increasing) >= 3, growth
    assert page.evaluate("window.statuses") == ["pending", "streaming", "complete"]
    expect(last_reply(page).locator("h2")).to_have_text("Tell me about streaming")
    expect(page.locator("[data-role=user] .body").last).to_have_text(
        "Tell me about streaming [sim tokens=80 tps=40]"
    )


def test_stop_aborts_the_upstream_and_keeps_the_text_shown(page: Page, sim: SimulatorProcess, db) -> None:
    page.evaluate(f"() => {{ {pages.RECORDERS} }}")  # every text the body has while streaming
    send(page, "A long answer please [sim tokens=2000 tps=30]")
    body = last_reply(page).locator(".body")
    wait_until(lambda: len(body.text_content()) > 40)

    pressed = time.time()
    page.get_by_role("button", name="Stop").click()

    record = wait_until(lambda: (r := sim.last())["client_closed_at"] and r, timeout=5)
    assert record["client_closed_at"] - pressed < 0.5
    assert record["outcome"] == "client closed"
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
    final = body.text_content()
    streamed = pages.bodies(page)
    saved = db.reply(reply_id(page))
    # While it streamed, what a person read only ever grew at its end (formatted as it
    # came, so white space between blocks aside): never shrank, never changed.
    assert only_grew(streamed, saved["content"], reply_id(page))
    # The final frame neither added, removed nor altered a character the person was
    # reading, nor any of its formatting: the same HTML before and after it.
    assert streamed[-1] == final == read(saved["content"], reply_id(page))
    assert pages.htmls(page)[-1] == body.inner_html()
    assert saved["status"] == "cancelled"
    assert 0 < len(saved["content"]) < len(record["text"]) + 1
    assert record["text"].startswith(saved["content"])

    page.reload()
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled")
    assert last_reply(page).locator(".body").text_content() == read(saved["content"], reply_id(page))


def test_escape_stops_the_reply(page: Page, sim: SimulatorProcess) -> None:
    send(page, "Keep going [sim tokens=2000 tps=30]")
    wait_until(lambda: len(last_reply(page).locator(".body").text_content()) > 20)
    page.keyboard.press("Escape")
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled", timeout=5_000)
    assert wait_until(lambda: sim.last()["client_closed_at"])


def test_an_upstream_failure_shows_an_error_with_the_partial_text(
    page: Page, sim: SimulatorProcess, db
) -> None:
    send(page, "Fail please [sim tokens=200 tps=100 fail=disconnect after=20]")
    expect(last_reply(page)).to_have_attribute("data-status", "error", timeout=10_000)
    expect(last_reply(page).locator(".error-text")).to_contain_text("connection to the upstream dropped")
    saved = db.reply(reply_id(page))
    assert saved["content"] == sim.last()["text"]
    assert last_reply(page).locator(".body").text_content() == read(saved["content"], reply_id(page))
    assert len(saved["content"]) > 0
