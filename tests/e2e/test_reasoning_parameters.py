"""A reasoning model's thinking and a conversation's parameters, as a person meets them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.people import make_person, open_page
from tests.scaleout import pages
from tests.servers import AppServer, SimulatorProcess, wait_until

# The thinking section of the newest reply, each time its text or its state changes.
WATCH = """
() => {
  window.thinking = [];
  new MutationObserver(() => {
    const section = [...document.querySelectorAll("details.thinking")].pop();
    if (!section) return;
    const state = {
      text: section.querySelector(".reasoning").textContent,
      summary: section.querySelector("summary").textContent,
      open: section.open,
      visible: section.checkVisibility(),
      answer: section.closest("article").querySelector(".body").textContent,
      status: section.closest("article").dataset.status,
    };
    const last = window.thinking[window.thinking.length - 1];
    if (!last || JSON.stringify(last) !== JSON.stringify(state)) window.thinking.push(state);
  }).observe(
    document.getElementById("messages"),
    {childList: true, subtree: true, characterData: true, attributes: true},
  );
}
"""


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess) -> Iterator[Page]:
    yield from open_page(browser, app, make_person(app, "thinker"))


def test_thinking_streams_collapsed_above_the_answer_and_can_be_opened_while_it_streams(
    page: Page, sim: SimulatorProcess, db
) -> None:
    page.evaluate(WATCH)
    reply = pages.send(page, "Think first [sim reasoning=240 tokens=60 tps=60]")
    section = page.locator(f"#message-{reply}-thinking")
    expect(section).to_be_visible()
    expect(section.locator("summary")).to_have_text("Thinking…")
    expect(section.locator(".reasoning")).to_be_hidden()  # collapsed
    section.locator("summary").click()
    expect(section.locator(".reasoning")).to_contain_text("1 < 2 && 3 > 2")
    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "complete", timeout=20_000)

    saved = db.reply(reply)
    states = page.evaluate("window.thinking")
    streaming = [s for s in states if s["status"] in ("pending", "streaming")]
    # The person saw it grow while the model thought, before any answer, open as they left it.
    growing = [s["text"] for s in streaming if s["open"] and not s["answer"]]
    assert len(set(growing)) >= 3 and all(saved["reasoning"].startswith(t) for t in growing)
    expect(section).to_have_js_property("open", True)  # kept open across the final frame
    expect(section.locator("summary")).to_have_text(f"Thought for {saved['reasoning_ms'] / 1000:.2f} s")
    assert section.locator(".reasoning").text_content() == saved["reasoning"] == sim.last()["reasoning"]
    assert saved["reasoning"] not in page.locator(f"#message-{reply}-body").text_content()

    page.reload()
    expect(section).to_be_visible()
    expect(section.locator(".reasoning")).to_be_hidden()
    assert section.locator(".reasoning").text_content() == saved["reasoning"]


def test_stop_while_thinking_keeps_exactly_the_thinking_shown(page: Page, sim: SimulatorProcess, db) -> None:
    page.evaluate(WATCH)
    reply = pages.send(page, "Ponder [sim reasoning=3000 tps=40]")
    section = page.locator(f"#message-{reply}-thinking")
    section.locator("summary").click()
    wait_until(lambda: len(section.locator(".reasoning").text_content()) > 60, timeout=15)

    page.get_by_role("button", name="Stop").click()

    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "cancelled", timeout=5_000)
    states = page.evaluate("window.thinking")
    shown = [s for s in states if s["status"] != "cancelled"][-1]["text"]
    saved = db.reply(reply)
    assert saved["reasoning"] == shown == section.locator(".reasoning").text_content()
    assert saved["content"] == ""
    wait_until(lambda: sim.last()["outcome"] == "client closed", timeout=5)
    assert sim.last()["reasoning"].startswith(saved["reasoning"])


def test_parameters_set_in_the_settings_panel_reach_the_upstream_and_the_replys_metadata(
    page: Page, sim: SimulatorProcess, db
) -> None:
    page.locator("details.settings summary").click()
    page.get_by_label("Temperature").fill("0.3")
    page.get_by_label("Maximum output tokens").fill("7")
    expect(page.get_by_label("Top p")).to_have_attribute("placeholder", "default")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()

    reply = pages.send(page, "Short please [sim tokens=50 tps=100]")

    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "complete", timeout=10_000)
    body = sim.last()["body"]
    assert (body["temperature"], body["max_tokens"]) == (0.3, 7) and "top_p" not in body
    expect(page.locator(f"#message-{reply} .parameters")).to_have_text("temperature 0.3 · max_tokens 7")
    expect(page.locator(f"#message-{reply} .status")).to_have_text("Cut off by the token limit")
    assert db.reply(reply)["finish_reason"] == "length"
    page.locator("details.settings summary").click()
    expect(page.get_by_label("Temperature")).to_have_value("0.3")
