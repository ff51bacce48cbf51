"""Pins, the archive and folders in the browser: two tabs of one person stay in step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.people import make_person, open_page
from tests.servers import AppServer, SimulatorProcess, manage

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
# A folder name is at most 60 characters.
FOLDER = HOSTILE[:44]
TITLES = ("Alpha plans", "Beta notes", "Gamma ideas")
# htmx tells when a page's socket is open: a change broadcast before that would be missed.
RECORD_SOCKET = """
document.addEventListener("htmx:wsOpen", () => { document.documentElement.dataset.socket = "open"; });
document.addEventListener("htmx:wsAfterMessage", (event) => {
  if (!String(event.detail.message).includes('id="conversation-list"')) return;
  const data = document.documentElement.dataset;
  data.sidebarRedraws = String(Number(data.sidebarRedraws || 0) + 1);
});
"""


@pytest.fixture(scope="module")
def person(app: AppServer) -> str:
    username = make_person(app, "olive")
    manage(
        app.env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "from chat.models import Conversation, Message\n"
        f"owner = User.objects.get(username={username!r})\n"
        f"for title in {TITLES!r}:\n"
        "    c = Conversation.objects.create(owner=owner, provider='demo', model='demo-1', title=title)\n"
        "    Message.objects.create(conversation=c, role='user', content=title)\n",
    )
    return username


@pytest.fixture
def tab_a(browser: Browser, app: AppServer, sim: SimulatorProcess, person: str) -> Iterator[Page]:
    """A page of the person, with nothing pinned, archived or filed."""
    manage(
        app.env,
        "shell",
        "-c",
        "from chat.models import Conversation, Folder\n"
        f"Folder.objects.filter(owner__username={person!r}).delete()\n"
        f"Conversation.objects.filter(owner__username={person!r}).update(pinned_at=None, archived_at=None)\n",
    )
    for page in open_page(browser, app, person):
        page.context.add_init_script(RECORD_SOCKET)
        yield page


@pytest.fixture
def tab_b(tab_a: Page) -> Page:
    """Another tab of the same person."""
    page = tab_a.context.new_page()
    page.goto(tab_a.url)
    return page


def go_live(page: Page, title: str) -> None:
    """Open the conversation called ``title`` from the sidebar, and wait for its socket."""
    page.locator("#conversation-list a", has_text=title).first.click()
    expect(page.locator("#conversation-title")).to_have_text(title)
    expect(page.locator("html[data-socket=open]")).to_be_attached()


def tab_to(page: Page, selector: str) -> None:
    """Press Tab until ``selector`` has the focus, as a person without a mouse would."""
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def sidebar_redraws(page: Page) -> int:
    """How many times the socket redrew the sidebar since the page loaded."""
    return int(page.evaluate("document.documentElement.dataset.sidebarRedraws || '0'"))


def plain_list(page: Page):
    return page.locator("#conversation-list > ul.conversations:not(.pinned)")


def test_two_tabs_see_pins_folders_and_the_archive_live(tab_a: Page, tab_b: Page) -> None:
    go_live(tab_a, "Alpha plans")
    go_live(tab_b, "Gamma ideas")

    # Pin, by keyboard only: to the Organise menu, open it, on to Pin, press it.
    tab_to(tab_a, "#organise > summary")
    tab_a.keyboard.press("Enter")
    tab_to(tab_a, "#pin-button")
    tab_a.keyboard.press("Enter")
    expect(tab_b.locator("#conversation-list .pinned")).to_have_text("Alpha plans")
    expect(plain_list(tab_b)).not_to_contain_text("Alpha plans")
    expect(tab_a.locator("#pin-button")).to_have_text("Unpin chat")
    expect(tab_a.locator("#pin-button")).to_be_focused()

    # A folder with a hostile name: shown as text, never run.
    tab_a.get_by_label("New folder name").fill(FOLDER)
    tab_a.get_by_role("button", name="Add folder").click()
    folder = tab_b.locator("details.folder")
    expect(folder.locator("> summary")).to_have_text(FOLDER)
    folder.locator("> summary").click()

    go_live(tab_a, "Beta notes")
    tab_a.locator("#organise > summary").click()
    tab_a.get_by_label("Folder", exact=True).select_option(label=FOLDER)
    tab_a.get_by_role("button", name="Move").click()
    # B's folder was open, and stays open as it is redrawn.
    expect(folder.locator("> ul")).to_be_visible()
    expect(folder.locator("> ul")).to_have_text("Beta notes")
    expect(plain_list(tab_b)).not_to_contain_text("Beta notes")
    tab_a.screenshot(path=Path(ARTIFACTS, "organise-menu.png"))

    go_live(tab_a, "Gamma ideas")
    tab_a.locator("#organise > summary").click()
    tab_a.get_by_role("button", name="Archive chat").click()
    expect(tab_a.get_by_role("button", name="Unarchive chat")).to_be_visible()
    expect(tab_b.locator("#archive-button")).to_have_text("Unarchive chat")
    expect(tab_b.locator("#conversation-list")).not_to_contain_text("Gamma ideas")

    # Deleting the folder in B puts its chat back in A's plain list.
    folder.locator("details.folder-edit > summary").click()
    tab_b.get_by_role("button", name="Delete folder").click()
    expect(tab_a.locator("details.folder")).to_have_count(0)
    expect(plain_list(tab_a)).to_contain_text("Beta notes")

    assert tab_a.evaluate("window.pwned") is None
    assert tab_b.evaluate("window.pwned") is None


def test_the_archived_page_lists_an_archived_chat_and_unarchives_it(tab_a: Page) -> None:
    go_live(tab_a, "Alpha plans")
    tab_a.locator("#organise > summary").click()
    tab_a.get_by_role("button", name="Archive chat").click()
    expect(tab_a.locator("#conversation-list")).not_to_contain_text("Alpha plans")

    tab_a.get_by_role("link", name="Archived chats").click()
    tab_a.get_by_role("button", name="Unarchive Alpha plans").click()
    expect(tab_a.get_by_text("No archived chats.")).to_be_visible()
    tab_a.get_by_role("link", name="Back to the chat").click()
    expect(tab_a.locator("#conversation-list")).to_contain_text("Alpha plans")


def test_a_chat_dragged_onto_a_folder_is_filed_there_and_dragged_back_is_not(tab_a: Page) -> None:
    go_live(tab_a, "Gamma ideas")
    redrawn = sidebar_redraws(tab_a)
    tab_a.get_by_label("New folder name").fill("Drop here")
    tab_a.get_by_label("New folder name").press("Enter")
    folder = tab_a.locator("details.folder", has_text="Drop here")
    # Drag only once the socket has redrawn the sidebar with the new folder (the answer
    # to the form draws it too, unless that redraw came first): a redraw under a drag
    # ends it, and the new folder pushes the list down, so the chat under the pointer
    # would be the one above.
    expect(tab_a.locator(f"html[data-sidebar-redraws='{redrawn + 1}']")).to_be_attached()
    expect(folder.locator("> summary")).to_be_visible()

    plain_list(tab_a).get_by_role("link", name="Alpha plans").drag_to(folder.locator("> summary"))
    expect(tab_a.locator(f"html[data-sidebar-redraws='{redrawn + 2}']")).to_be_attached()
    expect(folder.locator("> ul")).to_contain_text("Alpha plans")
    expect(plain_list(tab_a)).not_to_contain_text("Alpha plans")

    folder.locator("> summary").click()
    folder.get_by_role("link", name="Alpha plans").drag_to(plain_list(tab_a))
    expect(plain_list(tab_a)).to_contain_text("Alpha plans")


def test_a_half_typed_folder_name_survives_another_tabs_change(tab_a: Page, tab_b: Page) -> None:
    go_live(tab_a, "Alpha plans")
    go_live(tab_b, "Beta notes")
    field = tab_a.get_by_label("New folder name")
    field.click()
    field.press_sequentially("Half typ")

    # B pins its chat: A's sidebar is redrawn under the person's fingers.
    tab_b.locator("#organise > summary").click()
    tab_b.locator("#pin-button").click()
    expect(tab_a.locator("#conversation-list .pinned")).to_have_text("Beta notes")
    expect(field).to_have_value("Half typ")
    expect(field).to_be_focused()

    # Typing goes on where it was; A's own Add clears the field as its redraw arrives.
    tab_a.keyboard.type("ed")
    tab_a.keyboard.press("Enter")
    expect(tab_a.locator("details.folder > summary")).to_have_text("Half typed")
    expect(field).to_have_value("")
