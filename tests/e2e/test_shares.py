"""Share links in a browser: made by the owner, read logged out, continued by another person, revoked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.people import make_person, open_page
from tests.e2e.test_streaming import last_reply, send
from tests.servers import AppServer, SimulatorProcess

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
FAST = "tps=400"


@pytest.fixture(scope="module")
def owner(app: AppServer) -> str:
    return make_person(app, "shona")


@pytest.fixture(scope="module")
def viewer(app: AppServer) -> str:
    return make_person(app, "victor")


@pytest.fixture
def owner_page(browser: Browser, app: AppServer, sim: SimulatorProcess, owner: str) -> Iterator[Page]:
    yield from open_page(browser, app, owner)


@pytest.fixture
def viewer_page(browser: Browser, app: AppServer, sim: SimulatorProcess, viewer: str) -> Iterator[Page]:
    yield from open_page(browser, app, viewer)


@pytest.fixture
def stranger(browser: Browser, app: AppServer) -> Iterator[Page]:
    """A browser that never logged in."""
    context = browser.new_context(base_url=app.url)
    yield context.new_page()
    context.close()


def make_link(page: Page) -> str:
    page.get_by_role("link", name="Share").click()
    page.get_by_role("button", name="Make a share link").click()
    return page.get_by_label("The new share link").input_value()


def test_a_link_is_read_logged_out_continued_by_another_person_and_revoked(
    owner_page: Page, viewer_page: Page, stranger: Page
) -> None:
    reply_text = f"Shared answer {HOSTILE}".replace('"', '\\"')
    send(owner_page, f'{HOSTILE} [sim text="{reply_text}" {FAST}]')
    expect(last_reply(owner_page)).to_have_attribute("data-status", "complete", timeout=10_000)
    expect(owner_page.locator("#conversation-title")).to_contain_text("Shared answer")
    owner_page.get_by_role("button", name="Rename chat").click()
    owner_page.get_by_label("Title").fill(HOSTILE)
    owner_page.get_by_role("button", name="Rename", exact=True).click()
    expect(owner_page.get_by_role("heading", level=1)).to_have_text(HOSTILE)
    url = make_link(owner_page)

    sockets: list[str] = []
    stranger.on("websocket", lambda socket: sockets.append(socket.url))
    stranger.goto(url)
    stranger.wait_for_load_state("networkidle")
    expect(stranger.get_by_role("heading", level=1)).to_have_text(HOSTILE)
    expect(stranger.locator("[data-role=user] .body")).to_have_text(
        f'{HOSTILE} [sim text="{reply_text}" {FAST}]'
    )
    expect(stranger.locator("[data-role=assistant] .body")).to_have_text(f"Shared answer {HOSTILE}")
    expect(stranger.get_by_role("link", name="Continue this conversation")).to_be_visible()
    assert stranger.evaluate("typeof htmx") == "undefined"
    assert sockets == []
    assert stranger.evaluate("window.pwned") is None

    viewer_page.goto(url)
    viewer_page.get_by_role("link", name="Continue this conversation").click()
    viewer_page.get_by_role("button", name="Continue in a new conversation").click()
    viewer_page.wait_for_url("**/conversations/*/")
    expect(viewer_page.locator("#conversation-title")).to_have_text(HOSTILE)
    expect(last_reply(viewer_page).locator(".body")).to_have_text(f"Shared answer {HOSTILE}")
    send(viewer_page, f'And then? [sim text="Carried on" {FAST}]')
    expect(last_reply(viewer_page)).to_have_attribute("data-status", "complete", timeout=10_000)
    expect(last_reply(viewer_page)).to_contain_text("Carried on")
    assert viewer_page.evaluate("window.pwned") is None

    owner_page.get_by_role("button", name="Revoke").click()
    expect(owner_page.get_by_role("status")).to_have_text("The link is revoked: it now answers “not found”.")
    expect(owner_page.locator(".link-list")).to_contain_text("Revoked")
    assert stranger.goto(url).status == 404
    assert owner_page.evaluate("window.pwned") is None
