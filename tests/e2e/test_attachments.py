"""Attaching files as a person does: the button, a drop, a paste; the thumbnail; the model
receiving the image and a PDF's text."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests import attachment_files as files
from tests.e2e.people import make_person, open_page
from tests.scaleout import pages
from tests.servers import AppServer, SimulatorProcess

# Hands a file to the page as a drop on, or a paste into, the message box.
HAND_OVER = """
([how, name, type, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, {type}));
  const box = document.getElementById("message-input");
  if (how === "paste") {
    const init = {clipboardData: transfer, bubbles: true, cancelable: true};
    box.dispatchEvent(new ClipboardEvent("paste", init));
  } else {
    const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
    box.dispatchEvent(new DragEvent("dragover", init));
    box.dispatchEvent(new DragEvent("drop", init));
  }
}
"""


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess) -> Iterator[Page]:
    yield from open_page(browser, app, make_person(app, "attacher"))


def chips(page: Page):
    return page.locator("#attachments li.attachment")


def attach(page: Page, name: str, mime: str, data: bytes) -> None:
    page.get_by_label("Attach files").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]
    )


def hand_over(page: Page, how: str, name: str, mime: str, data: bytes) -> None:
    page.evaluate(HAND_OVER, [how, name, mime, base64.b64encode(data).decode()])


def test_an_image_attached_by_the_button_shows_a_thumbnail_can_be_removed_and_reaches_the_model(
    page: Page, sim: SimulatorProcess
) -> None:
    attach(page, "reef.png", "image/png", files.png((40, 30)))
    thumbnail = chips(page).locator("img.thumbnail")
    expect(thumbnail).to_be_visible()
    page.wait_for_function("() => document.querySelector('#attachments img.thumbnail').naturalWidth === 40")
    page.get_by_role("button", name="Remove reef.png").click()
    expect(chips(page)).to_have_count(0)
    expect(page.get_by_label("Message")).to_be_focused()

    attach(page, "reef.png", "image/png", files.png((40, 30)))
    expect(thumbnail).to_be_visible()
    reply = pages.send(page, "What is in this image? [sim tokens=20 tps=100]")
    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "complete", timeout=10_000)

    text, image = sim.last()["body"]["messages"][-1]["content"]
    assert text["text"] == "What is in this image? [sim tokens=20 tps=100]"
    data = image["image_url"]["url"].removeprefix("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(data))) as received:
        assert received.size == (40, 30)
    expect(chips(page)).to_have_count(0)  # the box is empty again
    sent = page.locator("[data-role=user]").last.locator(".message-files img.thumbnail")
    expect(sent).to_have_attribute("alt", "reef.png")


def test_a_drop_and_a_paste_attach_too(page: Page) -> None:
    hand_over(page, "drop", "dropped.png", "image/png", files.png())
    expect(chips(page).filter(has_text="dropped.png")).to_have_count(1)
    hand_over(page, "paste", "pasted.png", "image/png", files.png())
    expect(chips(page).filter(has_text="pasted.png")).to_have_count(1)
    expect(chips(page).locator("img.thumbnail")).to_have_count(2)


def test_a_pdfs_text_reaches_the_prompt_and_its_size_shows_before_sending(
    page: Page, sim: SimulatorProcess
) -> None:
    attach(page, "tides.pdf", "application/pdf", files.pdf_with_text("High tide is at noon"))
    expect(chips(page).filter(has_text="tides.pdf")).to_contain_text("≈5 tokens")
    reply = pages.send(page, "When is high tide? [sim tokens=10 tps=100]")
    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "complete", timeout=10_000)
    document = '<document name="tides.pdf">\nHigh tide is at noon\n</document>'
    assert (
        sim.last()["body"]["messages"][-1]["content"]
        == f"When is high tide? [sim tokens=10 tps=100]\n\n{document}"
    )


def test_a_bad_file_gets_a_clear_error_and_a_hostile_name_stays_text(page: Page) -> None:
    attach(page, "setup.exe", "application/octet-stream", files.EXECUTABLE)
    expect(page.locator("#composer .error")).to_contain_text("setup.exe cannot be attached: attach an image")
    expect(chips(page)).to_have_count(0)

    hostile = '<img src=x onerror="window.pwned=1">.txt'
    attach(page, hostile, "text/plain", b"harmless")
    expect(chips(page).locator(".file-name")).to_have_text(hostile)
    assert page.evaluate("window.pwned") is None
