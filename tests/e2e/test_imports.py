"""Importing as a person does it: the Import page from the sidebar, a ChatGPT export sent
with a progress bar, the conversation in the sidebar with its current branch and versions."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.people import make_person, open_page
from tests.import_files import HOSTILE, as_file, forked
from tests.servers import AppServer, SimulatorProcess

# Records every value the progress bar shows, so a test can see the upload was followed.
WATCH_PROGRESS = """() => {
  window.progressSeen = [];
  const bar = document.getElementById("import-progress");
  new MutationObserver(() => window.progressSeen.push(bar.getAttribute("value")))
    .observe(bar, {attributes: true, attributeFilter: ["value"]});
}"""


@pytest.fixture(scope="module")
def person(app: AppServer) -> str:
    return make_person(app, "ines")


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess, person: str) -> Iterator[Page]:
    yield from open_page(browser, app, person)


def import_file(page: Page, data: bytes) -> None:
    page.get_by_role("link", name="Import conversations").click()
    page.get_by_label("File to import").set_input_files(
        files=[{"name": "conversations.json", "mimeType": "application/json", "buffer": data}]
    )
    page.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name="Import", exact=True).click()


def test_an_imported_chatgpt_export_shows_its_current_branch_and_its_versions(page: Page) -> None:
    import_file(page, as_file([forked("Tides from ChatGPT")]))
    expect(page.locator(".import-counts")).to_have_text("Imported 1 conversation and 8 messages.")
    assert any(value not in (None, "0") for value in page.evaluate("window.progressSeen"))

    page.get_by_role("link", name="Back to the chat").click()
    page.locator("#conversation-list").get_by_role("link", name="Tides from ChatGPT").click()
    expect(page.locator("#messages .body")).to_have_text(
        [
            "What is a tide?",
            "The rise and fall of the sea.",
            "Thanks! Draw one?",
            "draw()",
            re.compile(r"\[image\]\s+Here it is\."),
        ]
    )
    first = page.locator("[data-role=user]").first
    expect(first.get_by_role("group", name="Versions")).to_have_text("‹ 1 / 2 ›")
    expect(page.locator("[data-role=assistant]").first.locator(".version-count")).to_have_text("1 / 2")

    first.get_by_role("button", name="Next version").click()
    expect(page.locator("#messages .body")).to_have_text(["What is a tide, exactly?", "An edited answer."])


def test_hostile_text_in_an_import_stays_text(page: Page) -> None:
    import_file(page, as_file([forked(HOSTILE, HOSTILE)]))
    page.locator("#import-result").get_by_role("link", name=HOSTILE).click()
    expect(page.locator("#conversation-title")).to_have_text(HOSTILE)
    expect(page.locator("#conversation-list").get_by_role("link", name=HOSTILE)).to_be_visible()
    expect(page.locator("[data-role=user] .body").first).to_have_text(HOSTILE)
    assert page.evaluate("window.pwned") is None


def test_a_broken_file_says_what_is_wrong_and_imports_nothing(page: Page) -> None:
    import_file(page, b'[{"title": "Broken", "mapping": {"a": {"parent": "gone", "message": null}}}]')
    expect(page.get_by_role("alert")).to_have_text(
        "Conversation 1 (“Broken”): message a follows gone, which is not in the file. Nothing was imported."
    )
    page.get_by_role("link", name="Back to the chat").click()
    expect(page.locator("#conversation-list").get_by_role("link", name="Broken")).to_have_count(0)


def test_a_file_over_the_limit_is_refused_in_the_browser_before_it_is_sent(page: Page) -> None:
    posts: list[str] = []
    page.on("request", lambda request: request.method == "POST" and posts.append(request.url))
    page.get_by_role("link", name="Import conversations").click()
    # A limit smaller than the file, as a server set to a small one would draw it.
    page.locator("#import-form").evaluate("form => { form.dataset.maxBytes = '10'; }")
    page.get_by_label("File to import").set_input_files(
        files=[{"name": "conversations.json", "mimeType": "application/json", "buffer": as_file([forked()])}]
    )
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(
        "That file is over 50.0\u00a0MB, the limit for an import. Nothing was imported."
    )
    assert posts == []
