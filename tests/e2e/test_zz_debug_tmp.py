from playwright.sync_api import Page, expect
from tests.e2e.test_chat_page import page, person, reply_done  # noqa
from tests.e2e.test_streaming import last_reply, send
from tests.servers import wait_until

def test_debug(page: Page, sim) -> None:
    sent = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(f)))
    for i in range(4):
        box = page.get_by_label("Message")
        box.fill(f"A long one {i} [sim tokens=2000 tps=40]")
        box.press("Enter")
        wait_until(lambda: len(last_reply(page).locator(".body").text_content()) > 10)
        page.get_by_role("heading", level=1).click()
        state = page.evaluate("(() => { const s = document.getElementById('stop-button'); return [s.outerHTML, s.offsetParent === null, document.activeElement.id, document.querySelectorAll('#stop-button').length]; })()")
        page.keyboard.press("Escape")
        try:
            reply_done(page, "cancelled")
        except AssertionError:
            print("FAILED at", i, state, sent[-3:], page.evaluate("document.activeElement.outerHTML"), page.locator("#stop-button").evaluate("e => [e.outerHTML, e.offsetParent === null]"))
            raise
