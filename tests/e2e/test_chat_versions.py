"""Versions and parallel replies as a person meets them: regenerate, edit, continue, retry,
switching chats mid-reply, the cap on replies at once, a double submit, a very long reply."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from chat.markdown import reply_html
from tests.e2e.people import make_person, open_page
from tests.e2e.test_streaming import last_reply, send
from tests.frames import read, squeezed
from tests.servers import AppServer, SimulatorProcess, wait_until

FAST = "tokens=5 tps=400"


@pytest.fixture(scope="module")
def person(app: AppServer) -> str:
    return make_person(app, "erin")


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess, person: str) -> Iterator[Page]:
    yield from open_page(browser, app, person)


def replies(page: Page):
    return page.locator("[data-role=assistant]")


def settled(page: Page, count: int, status: str = "complete") -> None:
    """``count`` replies shown, the last one ended with ``status``."""
    expect(replies(page)).to_have_count(count)
    expect(last_reply(page)).to_have_attribute("data-status", status, timeout=10_000)


def test_regenerate_keeps_both_versions_and_either_can_be_shown(page: Page, sim: SimulatorProcess) -> None:
    send(page, f"Pick a number [sim {FAST}]")
    settled(page, 1)
    first_id = last_reply(page).get_attribute("id")

    last_reply(page).get_by_role("button", name="Regenerate").click()
    expect(last_reply(page)).not_to_have_id(first_id)
    settled(page, 1)
    expect(last_reply(page).locator(".version-count")).to_have_text("2 / 2")
    assert len(sim.requests()) == 2

    last_reply(page).get_by_role("button", name="Previous version").click()
    expect(last_reply(page)).to_have_id(first_id)
    expect(last_reply(page).locator(".version-count")).to_have_text("1 / 2")
    expect(last_reply(page).get_by_role("button", name="Previous version")).to_be_disabled()
    page.reload()
    expect(last_reply(page)).to_have_id(first_id)
    expect(page.get_by_label("Message")).to_be_visible()


def test_edit_and_resend_makes_a_branch_and_the_old_one_comes_back(page: Page, sim: SimulatorProcess) -> None:
    send(page, f"First question [sim {FAST}]")
    settled(page, 1)
    send(page, f"Second question [sim {FAST}]")
    settled(page, 2)
    first = page.locator("[data-role=user]").first

    first.get_by_text("Edit", exact=True).click()
    editor = first.get_by_label("Edited text")
    expect(editor).to_be_focused()
    editor.fill(f"A better question <img src=x onerror=window.pwned=1> [sim {FAST}]")
    editor.press("Enter")

    users = page.locator("[data-role=user] .body")
    expect(users).to_have_text([f"A better question <img src=x onerror=window.pwned=1> [sim {FAST}]"])
    settled(page, 1)
    expect(page.locator("[data-role=user]").first.locator(".version-count")).to_have_text("2 / 2")
    assert sim.last()["prompt"] == f"A better question <img src=x onerror=window.pwned=1> [sim {FAST}]"
    expect(page.get_by_label("Message")).to_be_focused()
    assert page.evaluate("window.pwned") is None

    page.locator("[data-role=user]").first.get_by_role("button", name="Previous version").click()
    expect(users).to_have_text([f"First question [sim {FAST}]", f"Second question [sim {FAST}]"])
    expect(replies(page)).to_have_count(2)


def test_escape_closes_an_edit_without_sending(page: Page, sim: SimulatorProcess) -> None:
    send(page, f"Leave me be [sim {FAST}]")
    settled(page, 1)
    user = page.locator("[data-role=user]").first
    user.get_by_text("Edit", exact=True).click()
    user.get_by_label("Edited text").fill("Never mind")
    page.keyboard.press("Escape")

    expect(user.get_by_label("Edited text")).to_be_hidden()
    expect(page.locator("[data-role=user] .body")).to_have_text([f"Leave me be [sim {FAST}]"])
    assert len(sim.requests()) == 1


def test_continue_goes_on_after_a_reply_cut_off_by_the_token_limit(
    page: Page, sim: SimulatorProcess, db
) -> None:
    send(page, "Tell me a long story [sim finish=length tokens=20 tps=400]")
    settled(page, 1)
    expect(last_reply(page).locator(".status")).to_have_text("Cut off by the token limit")
    cut = db.reply(int(last_reply(page).get_attribute("id").removeprefix("message-")))

    last_reply(page).get_by_role("button", name="Continue").click()

    expect(replies(page)).to_have_count(2)
    wait_until(lambda: len(last_reply(page).locator(".body").text_content()) > 10)
    sent = sim.last()["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == cut["content"]
    page.keyboard.press("Escape")
    settled(page, 2, "cancelled")
    expect(replies(page).first.get_by_role("button", name="Continue")).to_have_count(0)


def test_an_error_says_what_happened_and_retry_answers_again(page: Page, sim: SimulatorProcess) -> None:
    send(page, "Wobbly [sim fail=error after=3 times=1 tokens=8 tps=400]")
    settled(page, 1, "error")
    expect(last_reply(page).locator(".error-text")).to_have_text("The demo model failed mid-stream.")
    expect(last_reply(page).locator(".status")).to_have_text("Error")

    last_reply(page).get_by_role("button", name="Retry").click()

    settled(page, 1)
    expect(last_reply(page).locator(".version-count")).to_have_text("2 / 2")
    expect(page.locator("[data-role=user]")).to_have_count(1)
    last_reply(page).get_by_role("button", name="Previous version").click()
    expect(last_reply(page)).to_have_attribute("data-status", "error")


def test_switching_away_and_back_shows_the_reply_still_streaming(page: Page, sim: SimulatorProcess) -> None:
    send(page, "A long one [sim tokens=400 tps=60]")
    wait_until(lambda: len(last_reply(page).locator(".body").text_content()) > 20)
    away_url = page.url

    page.get_by_role("button", name="New chat").click()
    expect(page).not_to_have_url(away_url)
    send(page, f"Meanwhile [sim {FAST}]")
    settled(page, 1)

    page.goto(away_url)
    body = last_reply(page).locator(".body")
    expect(last_reply(page).locator(".status")).to_have_text("Generating…")
    before = len(body.text_content())
    wait_until(lambda: len(body.text_content()) > before + 20)
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    page.get_by_role("button", name="Stop").click()
    settled(page, 1, "cancelled")
    shown = body.text_content()
    reply = int(last_reply(page).get_attribute("id").removeprefix("message-"))
    whole = read(sim.requests()[0]["text"], reply)
    assert squeezed(whole).startswith(squeezed(shown)) and len(shown) > before


def test_a_double_submitted_message_is_sent_once(page: Page, sim: SimulatorProcess) -> None:
    page.get_by_label("Message").fill(f"Only once please [sim {FAST}]")
    page.get_by_role("button", name="Send").dblclick()

    settled(page, 1)
    page.wait_for_timeout(300)
    expect(page.locator("[data-role=user]")).to_have_count(1)
    assert len(sim.requests()) == 1


@pytest.fixture
def busy_page(browser: Browser, app: AppServer, sim: SimulatorProcess) -> Iterator[Page]:
    """Someone else's page, so the replies left running here never count against erin."""
    yield from open_page(browser, app, make_person(app, "fay"))


def test_the_cap_on_replies_at_once_gives_a_clear_message(busy_page: Page, sim: SimulatorProcess) -> None:
    page = busy_page
    urls = []
    for n in range(3):
        send(page, f"Slow {n} [sim tokens=300 tps=30]")
        expect(replies(page)).to_have_count(1)
        urls.append(page.url)
        page.get_by_role("button", name="New chat").click()
        expect(page).not_to_have_url(urls[-1])

    send(page, "One more please")

    expect(page.get_by_role("alert")).to_have_text(
        "You already have 3 replies being written, the most allowed at once. "
        "Wait for one to finish, or stop one, then try again."
    )
    expect(page.get_by_label("Message")).to_have_value("One more please")
    expect(replies(page)).to_have_count(0)
    for url in urls:  # leave nothing running for the next test
        page.goto(url)
        page.get_by_role("button", name="Stop").click()
        expect(last_reply(page)).to_have_attribute("data-status", "cancelled")


WATCH_FRAMES_AND_TICKS = """
() => {
  window.ticks = [];
  window.tickTimer = setInterval(() => window.ticks.push(performance.now()), 50);
}
"""


def test_a_20000_token_reply_streams_in_small_frames_without_freezing_the_page(
    page: Page, sim: SimulatorProcess
) -> None:
    received: list[int] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: received.append(len(f))))
    page.reload()  # so the socket is watched from its start
    page.evaluate(WATCH_FRAMES_AND_TICKS)
    started = time.monotonic()

    send(page, "Everything at once [sim tokens=20000 tps=4000]")
    settled(page, 1)

    took = time.monotonic() - started
    ticks = page.evaluate("clearInterval(window.tickTimer), window.ticks")
    longest_stall = max(b - a for a, b in itertools.pairwise(ticks))
    text = sim.requests()[-1]["text"]
    assert len(text) > 80_000
    # The page's timer is never held up for long. On the project's 2-core machine, shared
    # with the worker relaying 4,000 tokens a second and the simulator, the longest hold
    # is 0.5 to 1.2 s, most of it the final frame's swap of the whole 300 KB reply (its
    # parse, then the layout the scroll to the bottom reads); a page that redrew the whole
    # reply with every frame would be held for most of the reply's 5 s.
    assert longest_stall < 2000, longest_stall
    # Each frame carries only what is new: complete blocks once, the open tail (small, or
    # re-sent only as it grows by a quarter), then the final message. All frames together
    # are about two copies of the formatted reply, never a copy per frame.
    drawn = len(reply_html(text, last_reply(page).get_attribute("id")))
    assert len(received) > 20
    assert sum(received) < 3 * drawn, (sum(received), drawn)
    assert took < 30
    expect(last_reply(page).locator(".markdown h2").first).to_have_text(re.compile("Everything at once"))
