"""The chat page as a person uses it: conversations, settings, markdown, keys, looks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ARTIFACTS, log_in
from tests.e2e.people import make_person, open_page
from tests.e2e.test_streaming import last_reply, send
from tests.servers import AppServer, SimulatorProcess, app_env, prepare_database, start_app, wait_until

FAST = "tps=400"
RECORD_ANNOUNCEMENTS = """
() => {
  window.announced = [];
  const region = document.getElementById("announcer");
  new MutationObserver(() => window.announced.push(region.textContent))
    .observe(region, {childList: true, subtree: true, characterData: true});
}
"""
PROVIDERS = """
[[providers]]
name = "vision"
dialect = "openai-chat"
base_url = "{sim}/v1"
include_usage = true
models = [{ name = "see-1", input_price = 1.0, output_price = 2.0 }]

[[providers]]
name = "words"
dialect = "text-delta"
base_url = "{sim}/v1"
models = ["plain-1"]
"""


@pytest.fixture(scope="module")
def person(app: AppServer) -> str:
    return make_person(app, "dora")


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess, person: str) -> Iterator[Page]:
    yield from open_page(browser, app, person)


def reply_done(page: Page, status: str = "complete") -> None:
    expect(last_reply(page)).to_have_attribute("data-status", status, timeout=10_000)


def sidebar(page: Page):
    return page.get_by_role("navigation", name="Conversations")


def titles_in(page: Page) -> list[str]:
    return [t.strip() for t in sidebar(page).locator("#conversation-list a").all_text_contents()]


def test_the_sidebar_lists_conversations_newest_first_and_updates_live(
    page: Page, sim: SimulatorProcess
) -> None:
    send(page, f'Apples [sim text="Apples are red" {FAST}]')
    reply_done(page)
    expect(page.locator("#conversation-title")).to_have_text("Apples are red")
    other = page.context.new_page()
    other.goto(page.url)

    page.get_by_role("button", name="New chat").click()
    send(page, f'Bananas [sim text="Bananas are yellow" {FAST}]')

    expect(sidebar(other).locator("#conversation-list a").first).to_have_text("Bananas are yellow")
    assert titles_in(other).index("Bananas are yellow") < titles_in(other).index("Apples are red")
    expect(sidebar(other).locator("[aria-current=page]")).to_have_text("Apples are red")


def test_a_title_is_written_by_the_model_after_the_first_reply(page: Page, sim: SimulatorProcess) -> None:
    send(page, f'Hello there [sim text="Otters holding hands" {FAST}]')

    expect(page.get_by_role("heading", level=1)).to_have_text("Otters holding hands")
    expect(sidebar(page).locator("[aria-current=page]")).to_have_text("Otters holding hands")
    assert len(sim.title_requests()) == 1
    expect(page).to_have_title("Otters holding hands · Chat")


def test_rename_and_delete_with_confirmation(page: Page, sim: SimulatorProcess) -> None:
    send(page, f"Name me [sim tokens=3 {FAST}]")
    reply_done(page)

    page.get_by_role("button", name="Rename chat").click()
    page.get_by_label("Title").fill("Renamed by hand")
    page.get_by_role("button", name="Rename", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed by hand")
    expect(sidebar(page)).to_contain_text("Renamed by hand")

    # Enter in the title renames (the dialog's action, not its Cancel); Cancel renames nothing.
    page.get_by_role("button", name="Rename chat").click()
    page.get_by_label("Title").fill("Renamed with Enter")
    page.get_by_label("Title").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed with Enter")
    page.get_by_role("button", name="Rename chat").click()
    page.get_by_label("Title").fill("Not this")
    page.get_by_role("dialog", name="Rename this conversation").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog", name="Rename this conversation")).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed with Enter")
    page.get_by_role("button", name="Rename chat").click()
    page.get_by_label("Title").fill("Renamed by hand")
    page.get_by_label("Title").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed by hand")

    page.get_by_role("button", name="Delete chat").click()
    dialog = page.get_by_role("dialog", name="Delete this conversation?")
    expect(dialog).to_contain_text("“Renamed by hand” and all of its messages will be deleted")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed by hand")

    page.get_by_role("button", name="Delete chat").click()
    dialog.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("heading", level=1)).not_to_have_text("Renamed by hand")
    assert "Renamed by hand" not in titles_in(page)


def test_search_finds_titles_and_message_text_and_shows_markup_as_text(
    page: Page, sim: SimulatorProcess
) -> None:
    send(page, f'Kiwis [sim text="<img src=x onerror=window.pwned=1> Kiwis live in Aotearoa" {FAST}]')
    reply_done(page)
    expect(page.locator("#conversation-title")).to_contain_text("Kiwis live in Aotearoa")
    search = page.get_by_role("searchbox", name="Search conversations")

    search.fill("aotearoa")
    hit = page.locator("#search-results a", has_text="Kiwis live in Aotearoa")
    expect(hit).to_have_count(1)
    expect(hit.locator("mark").first).to_have_text(re.compile("aotearoa", re.I))
    expect(page.locator("#conversation-list")).to_be_hidden()
    expect(hit).to_contain_text("<img src=x onerror=window.pwned=1>")

    search.fill("no-such-words-anywhere")
    expect(page.locator("#search-results")).to_have_text("No conversations match “no-such-words-anywhere”.")
    search.fill("")
    expect(page.locator("#conversation-list")).to_be_visible()
    assert page.evaluate("window.pwned") is None


def test_a_finished_reply_is_markdown_with_a_table_highlighted_code_copy_buttons_and_safe_links(
    page: Page, sim: SimulatorProcess
) -> None:
    send(page, "Show me everything [sim tokens=200 tps=800]")
    reply_done(page)
    reply = last_reply(page)

    expect(reply.locator("table th").first).to_have_text("Dialect")
    keyword = reply.locator("pre.highlight .k").first
    expect(keyword).to_have_text("def")
    plain = reply.locator("p").first.evaluate("e => getComputedStyle(e).color")
    assert keyword.evaluate("e => getComputedStyle(e).color") != plain

    reply.get_by_role("button", name="Copy code").click()
    expect(reply.get_by_role("button", name="Copy code")).to_have_class(re.compile("copied"))
    assert page.evaluate("navigator.clipboard.readText()").startswith("def fib(n: int) -> int:\n")

    link = reply.get_by_role("link", name="the Django docs")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(link).to_have_attribute("target", "_blank")

    reply.get_by_role("button", name="Copy", exact=True).click()
    expect(reply.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "Key points" in copied and "def fib" in copied and "Copy" not in copied


def test_under_each_reply_are_model_tokens_cost_timings_speed_and_status(
    page: Page, sim: SimulatorProcess
) -> None:
    send(page, "Measure me [sim tokens=40 tps=200]")
    reply_done(page)
    meta = last_reply(page).locator("footer.meta")

    expect(meta.locator(".status")).to_have_text("Complete")
    expect(meta.locator(".model")).to_have_text("demo-1")
    expect(meta.locator(".tokens")).to_have_text(re.compile(r"^\d+ in · \d+ out$"))
    expect(meta.locator(".cost")).to_have_text(re.compile(r"^\$0\.0000\d\d$"))
    expect(meta.locator(".ttft")).to_have_text(re.compile(r"^first token \d+\.\d+ s$"))
    expect(meta.locator(".duration")).to_have_text(re.compile(r"^0\.[2-9]\d s$"))
    expect(meta.locator(".rate")).to_have_text(re.compile(r"^\d+ tokens/s$"))


def test_enter_sends_shift_enter_adds_a_line_and_focus_comes_back_after_escape(
    page: Page, sim: SimulatorProcess
) -> None:
    box = page.get_by_label("Message")
    box.click()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type(f"second line [sim tokens=3 {FAST}]")
    page.keyboard.press("Enter")

    expect(page.locator("[data-role=user] .body").last).to_have_text(
        f"first line\nsecond line [sim tokens=3 {FAST}]"
    )
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    reply_done(page)

    box.fill("A long one [sim tokens=2000 tps=40]")
    box.press("Enter")
    expect(page.locator("[data-role=assistant]")).to_have_count(2)
    wait_until(lambda: len(last_reply(page).locator(".body").text_content()) > 10)
    page.get_by_role("heading", level=1).click()
    page.keyboard.press("Escape")
    reply_done(page, "cancelled")
    expect(page.get_by_label("Message")).to_be_focused()


def test_the_view_follows_the_stream_until_scrolled_up_then_offers_jump_to_latest(
    page: Page, sim: SimulatorProcess
) -> None:
    messages = page.locator("#messages")
    at_bottom = "e => e.scrollHeight - e.scrollTop - e.clientHeight < 48"
    send(page, "Long [sim tokens=3000 tps=150]")
    wait_until(lambda: messages.evaluate("e => e.scrollHeight > e.clientHeight * 2"), timeout=15)
    assert messages.evaluate(at_bottom)
    jump = page.get_by_role("button", name="Jump to latest")
    expect(jump).to_be_hidden()

    messages.hover()
    page.mouse.wheel(0, -400)
    expect(jump).to_be_visible()
    top = messages.evaluate("e => e.scrollTop")
    page.wait_for_timeout(400)
    assert messages.evaluate("e => e.scrollTop") == top
    assert not messages.evaluate(at_bottom)

    jump.click()
    expect(jump).to_be_hidden()
    page.wait_for_timeout(400)
    assert messages.evaluate(at_bottom)
    page.keyboard.press("Escape")
    reply_done(page, "cancelled")


def test_streaming_status_is_announced_once_not_per_token(page: Page, sim: SimulatorProcess) -> None:
    page.evaluate(RECORD_ANNOUNCEMENTS)
    send(page, "Talk to me [sim tokens=60 tps=100]")
    reply_done(page)

    wait_until(lambda: page.evaluate("window.announced").count("Reply complete.") == 1)
    assert page.evaluate("window.announced") == ["Writing a reply…", "Reply complete."]
    live = "[aria-live], [role=status], [role=log], [role=alert]"
    assert page.locator(f":is({live}) .body, :is({live}).body").count() == 0


@pytest.fixture(scope="module")
def providers_app(
    simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    """The app with a providers file: two providers, one that takes images and one that does not."""
    var_dir = tmp_path_factory.mktemp("providers-app")
    providers = var_dir / "providers.toml"
    providers.write_text(PROVIDERS.replace("{sim}", simulator.url))
    env = app_env(var_dir, simulator.url, CHAT_PROVIDERS_FILE=str(providers))
    prepare_database(env)
    server = start_app(env)
    yield server
    server.stop()


def test_the_model_picker_system_prompt_and_image_url_reach_the_model(
    browser: Browser, providers_app: AppServer, sim: SimulatorProcess
) -> None:
    context = browser.new_context(base_url=providers_app.url)
    page = context.new_page()
    log_in(page, providers_app.url)
    page.locator("summary", has_text="vision · see-1").click()
    options = page.get_by_label("Model").locator("option").all_text_contents()
    assert options == ["vision · see-1", "words · plain-1"]
    page.locator("summary", has_text="vision · see-1").click()

    image = page.get_by_label("Image URL")
    expect(image).to_be_visible()
    image.fill("https://example.com/otter.png")
    send(page, f"What is in this picture? [sim tokens=5 {FAST}]")
    reply_done(page)
    assert sim.last()["image_url"] == "https://example.com/otter.png"
    expect(page.locator("[data-role=user] .image-link a")).to_have_attribute(
        "href", "https://example.com/otter.png"
    )
    expect(last_reply(page).locator(".cost")).to_be_visible()

    page.locator("summary", has_text="vision · see-1").click()
    page.get_by_label("Model").select_option(label="words · plain-1")
    page.get_by_label("System prompt").fill("Answer in French.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("summary", has_text="words · plain-1")).to_be_visible()
    expect(page.get_by_label("Image URL")).to_be_hidden()
    send(page, f"And now? [sim tokens=5 {FAST}]")
    expect(page.locator("[data-role=assistant]")).to_have_count(2)
    reply_done(page)
    assert sim.last()["body"]["prompt"].startswith("System: Answer in French.")
    expect(last_reply(page).locator(".model")).to_have_text("plain-1")
    expect(last_reply(page).locator(".cost")).to_have_count(0)
    context.close()


def test_the_page_looks_right_at_desktop_and_phone_width_in_light_and_dark(
    page: Page, app: AppServer, sim: SimulatorProcess
) -> None:
    send(page, "How do I stream replies to a browser? [sim tokens=116 tps=800]")
    reply_done(page)
    page.get_by_role("heading", level=1).click()  # no focus ring in the pictures
    backgrounds = {}
    for width, height, name in [(1280, 900, "desktop"), (390, 844, "phone")]:
        page.set_viewport_size({"width": width, "height": height})
        for scheme in ["light", "dark"]:
            page.emulate_media(color_scheme=scheme, reduced_motion="reduce")
            backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=Path(ARTIFACTS, f"chat-{name}-{scheme}.png"))
    assert backgrounds["light"] != backgrounds["dark"]

    nav = sidebar(page)
    assert nav.bounding_box()["x"] + nav.bounding_box()["width"] <= 0  # off screen at phone width
    page.get_by_role("button", name="Chats").click()
    expect(page.get_by_role("button", name="Chats")).to_have_attribute("aria-expanded", "true")
    wait_until(lambda: nav.bounding_box()["x"] >= 0)
    page.screenshot(path=Path(ARTIFACTS, "chat-phone-dark-sidebar.png"))

    loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(app.url) or url.startswith("ws://127.0.0.1") for url in loaded)
