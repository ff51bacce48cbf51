"""The prompt library in a browser: saved on its page, picked from the slash menu, filled in, sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.people import make_person, open_page
from tests.e2e.test_streaming import last_reply
from tests.servers import AppServer, SimulatorProcess, manage

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'


@pytest.fixture(scope="module")
def person(app: AppServer) -> str:
    return make_person(app, "priya")


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess, person: str) -> Iterator[Page]:
    yield from open_page(browser, app, person)


def save_prompt(page: Page, title: str, text: str) -> None:
    """Through the Prompts page, then back to the conversation."""
    chat = page.url
    page.get_by_role("link", name="Prompts").click()
    page.get_by_label("Title").fill(title)
    page.get_by_label("Text").fill(text)
    page.get_by_role("button", name="Save prompt").click()
    expect(page.get_by_role("status")).to_have_text(f"Saved “{title}”.")
    page.goto(chat)


def box(page: Page):
    return page.get_by_label("Message")


def menu(page: Page):
    return page.get_by_role("listbox", name="Prompts")


def open_menu(page: Page, typed: str) -> None:
    box(page).press_sequentially(typed)
    expect(menu(page)).to_be_visible()


def test_a_saved_prompt_is_picked_with_the_keyboard_filled_in_and_sent(
    page: Page, sim: SimulatorProcess
) -> None:
    save_prompt(page, "Trip planner", "Plan three days in {{city}}; where to eat in {{ city }}?")
    save_prompt(page, "Trivia host", "Ask me five questions.")
    save_prompt(page, "Code review", "Review this.")

    open_menu(page, "/tri")
    expect(box(page)).to_have_attribute("aria-expanded", "true")
    expect(menu(page).get_by_role("option")).to_have_text(["Trip planner", "Trivia host"])
    box(page).press("ArrowDown")
    expect(menu(page).get_by_role("option", name="Trivia host")).to_have_attribute("aria-selected", "true")
    box(page).press("ArrowUp")
    planner = menu(page).get_by_role("option", name="Trip planner")
    expect(planner).to_have_attribute("aria-selected", "true")
    expect(box(page)).to_have_attribute("aria-activedescendant", planner.get_attribute("id"))
    box(page).press("Enter")

    dialog = page.get_by_role("dialog", name="Fill in “Trip planner”")
    expect(dialog).to_be_visible()
    expect(menu(page)).to_be_hidden()
    city = dialog.get_by_label("city")
    expect(city).to_be_focused()
    city.fill("Lisbon")
    city.press("Enter")

    expect(dialog).to_be_hidden()
    expect(box(page)).to_have_value("Plan three days in Lisbon; where to eat in Lisbon?")
    expect(box(page)).to_be_focused()
    expect(page.locator("[data-role=user]")).to_have_count(0)
    box(page).press("Enter")
    expect(page.locator("[data-role=user]")).to_have_count(1)
    assert sim.last()["prompt"] == "Plan three days in Lisbon; where to eat in Lisbon?"


def test_a_click_picks_a_prompt_and_escape_in_its_form_inserts_nothing(page: Page) -> None:
    save_prompt(page, "Recipe for one", "A recipe with {{ingredient}} for {{people}} people.")
    save_prompt(page, "Rewrite politely", "Rewrite this politely:")

    open_menu(page, "/re")
    menu(page).get_by_role("option", name="Recipe for one").click()
    dialog = page.get_by_role("dialog", name="Fill in “Recipe for one”")
    expect(dialog.get_by_role("textbox")).to_have_count(2)
    expect(dialog.get_by_label("ingredient")).to_be_focused()
    dialog.get_by_label("ingredient").press("Escape")
    expect(dialog).to_be_hidden()
    expect(box(page)).to_have_value("/re")

    box(page).press("Backspace")
    box(page).press_sequentially("e")
    menu(page).get_by_role("option", name="Rewrite politely").click()
    expect(box(page)).to_have_value("Rewrite this politely:")
    expect(menu(page)).to_be_hidden()


def test_escape_closes_the_menu_without_stopping_the_reply(page: Page) -> None:
    save_prompt(page, "Summarise", "Summarise this.")
    box(page).fill("Tell me a long story [sim tokens=150 tps=60]")
    box(page).press("Enter")
    expect(last_reply(page)).to_have_attribute("data-status", "streaming", timeout=10_000)

    open_menu(page, "/sum")
    box(page).press("Escape")
    expect(menu(page)).to_be_hidden()
    expect(box(page)).to_have_attribute("aria-expanded", "false")

    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=15_000)


def test_a_hostile_prompt_is_shown_and_inserted_as_text_and_never_runs(page: Page) -> None:
    save_prompt(page, f"Hostile {HOSTILE}", HOSTILE)
    expect(page.get_by_role("link", name="Prompts")).to_be_visible()

    open_menu(page, "/hostile")
    # The menu filters as the letters arrive: "/host" still shows another test's "Trivia host".
    expect(menu(page).get_by_role("option")).to_have_count(1)
    expect(menu(page).get_by_role("option")).to_have_text(f"Hostile {HOSTILE}")
    box(page).press("Tab")
    expect(box(page)).to_have_value(HOSTILE)
    assert page.evaluate("window.pwned") is None
    page.get_by_role("link", name="Prompts").click()
    expect(page.locator(".prompt-list h3").filter(has_text="Hostile")).to_have_text(f"Hostile {HOSTILE}")
    assert page.evaluate("window.pwned") is None


def test_a_prompt_staff_published_shows_as_shared_in_another_persons_menu(page: Page, app: AppServer) -> None:
    manage(
        app.env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "from chat.models import Prompt\n"
        "staff = User.objects.create_user('publisher', is_staff=True)\n"
        "Prompt.objects.create(owner=staff, title='Weekly report', text='Write my report.', published=True)\n"
        "Prompt.objects.create(owner=staff, title='Weekly draft', text='Not for you.')\n",
    )
    open_menu(page, "/weekly")
    shared = menu(page).get_by_role("option")
    expect(shared).to_have_text(["Weekly report shared"])
    shared.click()
    expect(box(page)).to_have_value("Write my report.")


def test_deleting_a_prompt_asks_first_and_keeping_it_deletes_nothing(page: Page) -> None:
    save_prompt(page, "Throwaway", "Delete me")
    page.get_by_role("link", name="Prompts").click()
    item = page.locator(".prompt-list > li", has_text="Throwaway")
    delete = item.locator("summary", has_text="Delete")
    delete.click()
    expect(item).to_contain_text("Delete “Throwaway”? This cannot be undone.")
    delete.click()  # changed their mind
    expect(item.get_by_role("button", name="Yes, delete it")).to_be_hidden()
    page.reload()
    expect(page.locator(".prompt-title", has_text="Throwaway")).to_have_count(1)

    delete.click()
    item.get_by_role("button", name="Yes, delete it").click()
    expect(page.get_by_role("status")).to_have_text("Deleted “Throwaway”.")
    expect(page.locator(".prompt-title", has_text="Throwaway")).to_have_count(0)
