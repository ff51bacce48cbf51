"""Feedback as a person gives it and staff read it: thumbs on a finished reply, kept over a reload."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.people import make_person, open_page
from tests.e2e.test_security import watch_for_attacks
from tests.e2e.test_streaming import last_reply, send
from tests.servers import PASSWORD, AppServer, SimulatorProcess, manage

HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> Wrong tide times'
STAFF = "feedback-auditor"


@pytest.fixture(scope="module")
def person(app: AppServer) -> str:
    return make_person(app, "fenna")


@pytest.fixture
def page(browser: Browser, app: AppServer, sim: SimulatorProcess, person: str) -> Iterator[Page]:
    yield from open_page(browser, app, person)


@pytest.fixture
def staff(browser: Browser, app: AppServer) -> Iterator[Page]:
    """A page logged in to the admin as a superuser of this module's own."""
    manage(
        app.env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        f"User.objects.filter(username={STAFF!r}).exists() or "
        f"User.objects.create_superuser({STAFF!r}, password={PASSWORD!r})\n",
    )
    context = browser.new_context(base_url=app.url)
    staff = context.new_page()
    staff.goto("/admin/login/?next=/admin/")
    staff.get_by_label("Username").fill(STAFF)
    staff.get_by_label("Password").fill(PASSWORD)
    staff.get_by_role("button", name="Log in").click()
    staff.wait_for_url("**/admin/")
    yield staff
    context.close()


def thumbs(page: Page):
    reply = last_reply(page)
    return reply.get_by_role("button", name="Good reply"), reply.get_by_role("button", name="Bad reply")


def test_a_person_rates_a_finished_reply_keeps_it_over_a_reload_and_changes_it(page: Page) -> None:
    seen = watch_for_attacks(page)
    send(page, "When is high tide? e2e-feedback [sim tokens=80 tps=40]")
    expect(last_reply(page)).to_have_attribute("data-status", "streaming", timeout=10_000)
    expect(last_reply(page).locator("form.feedback")).to_have_count(0)

    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    up, down = thumbs(page)
    expect(down).to_have_attribute("aria-pressed", "false")
    last_reply(page).get_by_text("Comment", exact=True).click()
    last_reply(page).get_by_label("Comment on this reply").fill(HOSTILE)
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(last_reply(page).locator(".feedback-status")).to_have_text("Thanks for the feedback.")

    page.reload()
    up, down = thumbs(page)
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(last_reply(page).get_by_label("Comment on this reply")).to_have_value(HOSTILE)

    up.focus()
    page.keyboard.press("Enter")
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
    expect(up).to_be_focused()
    page.reload()
    expect(thumbs(page)[0]).to_have_attribute("aria-pressed", "true")
    expect(last_reply(page).get_by_label("Comment on this reply")).to_have_value(HOSTILE)
    assert page.evaluate("window.pwned") is None
    assert page.locator("#messages script, #messages img[onerror]").count() == 0
    assert seen == []


def test_staff_see_a_persons_feedback_in_the_admin_list(page: Page, staff: Page, person: str) -> None:
    send(page, 'Rate me [sim text="The tide turns at noon, zebra." tps=400]')
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=15_000)
    last_reply(page).get_by_text("Comment", exact=True).click()
    last_reply(page).get_by_label("Comment on this reply").fill(HOSTILE)
    thumbs(page)[1].click()
    expect(thumbs(page)[1]).to_have_attribute("aria-pressed", "true")
    seen = watch_for_attacks(staff)

    staff.goto("/admin/chat/feedback/")
    staff.locator("#changelist-filter").get_by_role("link", name="thumbs down", exact=True).click()
    expect(staff).to_have_url(re.compile(r"rating__exact=down"))
    row = staff.locator("#result_list tbody tr").first
    expect(row).to_contain_text("thumbs down")
    expect(row).to_contain_text(person)
    expect(row).to_contain_text("demo/demo-1")
    expect(row).to_contain_text('<img src=x onerror="window.pwned=1">')
    expect(row).not_to_contain_text("zebra")  # the reply only through the transcript
    assert staff.evaluate("window.pwned") is None
    assert staff.locator("#content script, #content img[onerror]").count() == 0
    assert seen == []
