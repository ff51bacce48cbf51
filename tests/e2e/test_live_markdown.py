"""Formatted while it streams, as a person watches it: headings, tables and code take
their shape before the reply ends, the text only grows, and neither the final frame nor
Stop changes anything the page showed."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from chat.markdown import reply_html
from tests.frames import only_grew, read
from tests.scaleout import pages
from tests.servers import SimulatorProcess, wait_until

# Each state of the newest reply while it is generating, and its first state once ended.
WATCH = """
() => {
  window.states = [];
  const list = document.getElementById("messages");
  new MutationObserver(() => {
    const replies = list.querySelectorAll("[data-role=assistant]");
    const reply = replies[replies.length - 1];
    if (!reply) return;
    const body = reply.querySelector(".body");
    const last = window.states[window.states.length - 1];
    const state = {
      status: reply.dataset.status,
      html: body.innerHTML,
      text: body.textContent,
      heading: !!body.querySelector("h2"),
      table: !!body.querySelector("table td"),
      highlighted: !!body.querySelector("pre.highlight span.k"),
      list: !!body.querySelector("ul li strong"),
    };
    if (!last || last.html !== state.html || last.status !== state.status) window.states.push(state);
  }).observe(list, {childList: true, subtree: true, characterData: true, attributes: true});
}
"""
ACTIVE = {"pending", "streaming"}


def send(page: Page, text: str) -> int:
    page.evaluate(WATCH)
    return pages.send(page, text)


def test_headings_lists_tables_and_code_are_formatted_before_the_reply_ends(
    page: Page, sim: SimulatorProcess, db
) -> None:
    reply = send(page, "Formatting [sim tokens=260 tps=60]")
    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "complete", timeout=20_000)

    states = page.evaluate("window.states")
    streaming = [s for s in states if s["status"] in ACTIVE]
    ended = [s for s in states if s["status"] == "complete"]
    # Each took its shape while the reply was still being written.
    for shape in ("heading", "list", "table", "highlighted"):
        assert any(s[shape] for s in streaming), shape
    assert len(streaming) > 10
    saved = db.reply(reply)["content"]
    assert saved == sim.last()["text"]
    assert only_grew([s["text"] for s in streaming], saved, reply)
    # The final frame changed nothing the page showed: same text, same HTML.
    assert streaming[-1]["html"] == ended[0]["html"]
    assert ended[0]["text"] == read(saved, reply)
    # A reload draws the same.
    page.reload()
    assert page.locator(f"#message-{reply}-body").text_content() == read(saved, reply)


def test_stop_in_the_middle_of_a_code_block_keeps_it_formatted_as_shown(
    page: Page, sim: SimulatorProcess, db
) -> None:
    code = "".join(f"total = total + {n}  # step {n}\n" for n in range(80))
    reply = send(page, f'Code please [sim tps=20 text="Here it is:\n\n```python\n{code}```\n\nDone."]')
    in_code = page.locator(f"#message-{reply}-body pre code")
    wait_until(lambda: in_code.count() and "step 3" in in_code.text_content(), timeout=15)

    page.get_by_role("button", name="Stop").click()

    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "cancelled", timeout=5_000)
    states = page.evaluate("window.states")
    streaming = [s for s in states if s["status"] in ACTIVE]
    ended = [s for s in states if s["status"] == "cancelled"]
    saved = db.reply(reply)["content"]
    assert "```python" in saved and "Done." not in saved
    # Still a code block, as it was shown; the final frame changed nothing.
    assert streaming[-1]["html"] == ended[0]["html"]
    assert ended[0]["text"] == read(saved, reply)
    expect(in_code).to_have_class("language-python")
    assert reply_html(saved, f"message-{reply}").count("<pre") == 1


def test_copy_puts_the_replys_markdown_on_the_clipboard(page: Page, sim: SimulatorProcess, db) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    reply = send(page, "Copy me [sim tokens=60 tps=400]")
    expect(page.locator(f"#message-{reply}")).to_have_attribute("data-status", "complete", timeout=10_000)

    page.locator(f"#message-{reply}").get_by_role("button", name="Copy", exact=True).click()

    expect(page.locator(f"#message-{reply} .copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == db.reply(reply)["content"]
    assert db.reply(reply)["content"].startswith("## Copy me")
