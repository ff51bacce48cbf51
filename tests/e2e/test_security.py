"""Hostile content in every place a person sees text: shown as text, never run."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.test_streaming import last_reply, send
from tests.servers import SimulatorProcess

PAYLOADS = (
    '<script>window.pwned = "script"</script>'
    "<img src=x onerror=\"window.pwned = 'img'\">"
    '<div hx-get="/" hx-trigger="load" hx-on::load="window.pwned = \'hx\'">hx</div>'
)
MARKDOWN_TRICKS = (
    "[click me](javascript:window.pwned='link') "
    "![img](javascript:window.pwned='image') "
    '<a href="javascript:window.pwned=1">raw</a>'
)


def watch_for_attacks(page: Page) -> list[str]:
    seen: list[str] = []
    page.on("dialog", lambda dialog: (seen.append(f"dialog {dialog.message}"), dialog.dismiss()))
    page.on(
        "console",
        lambda message: seen.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return seen


def test_payloads_in_messages_and_replies_are_shown_as_text(page: Page, sim: SimulatorProcess) -> None:
    seen = watch_for_attacks(page)
    reply_text = (PAYLOADS + " " + MARKDOWN_TRICKS).replace('"', '\\"')
    send(page, f'{PAYLOADS} [sim text="{reply_text}" tps=200]')

    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=10_000)
    assert page.evaluate("window.pwned") is None
    expect(page.locator("[data-role=user]").last).to_contain_text('<script>window.pwned = "script"</script>')
    expect(last_reply(page)).to_contain_text("<img src=x onerror=")
    assert page.locator("#messages script, #messages img[onerror], #messages [hx-get]").count() == 0
    hrefs = page.locator("#messages a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(href is None or not href.startswith("javascript") for href in hrefs)
    page.reload()
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    assert page.evaluate("window.pwned") is None
    assert seen == []


def test_payloads_in_a_streaming_reply_are_escaped_frame_by_frame(page: Page, sim: SimulatorProcess) -> None:
    seen = watch_for_attacks(page)
    reply_text = PAYLOADS.replace('"', '\\"')
    send(page, f'stream it [sim text="{reply_text}" tps=8]')
    expect(last_reply(page).locator(".body")).to_contain_text("<script>", timeout=10_000)
    page.keyboard.press("Escape")

    expect(last_reply(page)).to_have_attribute("data-status", "cancelled", timeout=5_000)
    assert page.evaluate("window.pwned") is None
    assert seen == []


def test_a_hostile_title_and_system_prompt_stay_text(page: Page, sim: SimulatorProcess) -> None:
    seen = watch_for_attacks(page)
    page.locator("summary", has_text="demo · demo-1").click()
    page.get_by_label("System prompt").fill(PAYLOADS)
    page.get_by_role("button", name="Save").click()
    send(page, f"{PAYLOADS} [sim tokens=3 tps=100]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=10_000)
    page.reload()

    expect(page.get_by_label("System prompt")).to_have_value(PAYLOADS)
    expect(page.get_by_role("navigation", name="Conversations")).to_contain_text("<script>")
    assert page.evaluate("window.pwned") is None
    assert seen == []


def test_a_hostile_error_text_from_the_upstream_stays_text(page: Page, sim: SimulatorProcess) -> None:
    seen = watch_for_attacks(page)
    payload = PAYLOADS.replace('"', "'")
    send(page, f'mid-stream [sim tokens=20 tps=100 fail=error after=5 message="{payload}"]')
    expect(last_reply(page)).to_have_attribute("data-status", "error", timeout=10_000)
    expect(last_reply(page).locator(".error-text")).to_contain_text(
        "<script>window.pwned = 'script'</script>"
    )

    send(page, f'before the stream [sim fail=status status=400 message="{payload}"]')
    expect(last_reply(page)).to_have_attribute("data-status", "error", timeout=10_000)
    expect(last_reply(page).locator(".error-text")).to_contain_text("<img src=x onerror=")
    page.reload()
    assert page.evaluate("window.pwned") is None
    assert page.locator("#messages script, #messages img[onerror], #messages [hx-get]").count() == 0
    assert seen == []
