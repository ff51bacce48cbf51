"""What the browser tests of resuming and stopping read from a page, recorded as it happens."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

# Every text (and HTML) the newest reply's body has while it is generating, and every label of the
# Stop button, from the start of each page load: a snapshot applied before a test looks
# is recorded too. And whether the page's socket is open.
RECORDERS = """
window.bodies = [];
window.htmls = [];
window.stopLabels = [];
window.socketOpen = false;
document.addEventListener("htmx:wsOpen", () => { window.socketOpen = true; });
document.addEventListener("htmx:wsClose", () => { window.socketOpen = false; });
new MutationObserver(() => {
  const replies = document.querySelectorAll("[data-role=assistant]");
  const reply = replies[replies.length - 1];
  if (reply && ["pending", "streaming"].includes(reply.dataset.status)) {
    const body = reply.querySelector(".body");
    if (body.textContent !== window.bodies[window.bodies.length - 1]) window.bodies.push(body.textContent);
    if (body.innerHTML !== window.htmls[window.htmls.length - 1]) window.htmls.push(body.innerHTML);
  }
  const button = document.getElementById("stop-button");
  if (button && button.textContent !== window.stopLabels[window.stopLabels.length - 1]) {
    window.stopLabels.push(button.textContent);
  }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""


def record(context: BrowserContext) -> None:
    """Record on every page the context loads from now on."""
    context.add_init_script(RECORDERS)


def wait_for_socket(page: Page) -> None:
    page.wait_for_function("() => window.socketOpen === true")


def send(page: Page, text: str) -> int:
    """Send ``text`` and return the id of the reply the page shows for it."""
    replies = page.locator("[data-role=assistant]").count()
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("[data-role=assistant]")).to_have_count(replies + 1)
    return reply_id(page)


def reply_id(page: Page) -> int:
    return int(page.locator("[data-role=assistant]").last.get_attribute("id").removeprefix("message-"))


def body(page: Page, reply_id: int) -> str:
    return page.locator(f"#message-{reply_id}-body").text_content()


def bodies(page: Page) -> list[str]:
    return page.evaluate("window.bodies")


def htmls(page: Page) -> list[str]:
    return page.evaluate("window.htmls")


def stop_labels(page: Page) -> list[str]:
    return page.evaluate("window.stopLabels")
