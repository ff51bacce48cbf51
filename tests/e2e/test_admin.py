"""The admin as staff meet it: filter the list, read a transcript, see the audit, the dashboard, Stop."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_security import MARKDOWN_TRICKS, PAYLOADS, watch_for_attacks
from tests.servers import PASSWORD, AppServer, manage, wait_until

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

# Run once per app database by `manage.py shell`: a superuser, and two weeks of history for
# three people on two models, so the dashboard has days, people and models to draw.
SEED = f"""
import random
from datetime import timedelta
from decimal import Decimal
from django.contrib.auth.models import User
from django.utils import timezone
from chat.models import Conversation, Message

if not User.objects.filter(username="auditor").exists():
    User.objects.create_superuser("auditor", password={PASSWORD!r})
    carol = User.objects.create_user("carol", password={PASSWORD!r})
    rng = random.Random(7)
    now = timezone.now()
    for name in ["alice", "bob", "carol"]:
        for provider, model, price in [("demo", "demo-1", "0.0000018"), ("lab", "bard-2", "0.000006")]:
            chat = Conversation.objects.create(
                owner=User.objects.get(username=name), title=f"History {{name}} {{model}}",
                provider=provider, model=model,
            )
            for day in range(14):
                for _ in range(rng.randint(0, 3)):
                    tokens = rng.randint(200, 4000)
                    status = rng.choices(["complete", "error", "cancelled"], [8, 1, 1])[0]
                    reply = Message.objects.create(
                        conversation=chat, role="assistant", content="An answer", status=status,
                        provider=provider, model=model, input_tokens=tokens // 3, output_tokens=tokens,
                        cost=Decimal(price) * tokens, time_to_first_token_ms=rng.randint(150, 1500),
                    )
                    Message.objects.filter(pk=reply.pk).update(created_at=now - timedelta(days=day, hours=1))
            Conversation.objects.filter(pk=chat.pk).update(updated_at=now - timedelta(days=30))
"""


@pytest.fixture(scope="module")
def seeded(app: AppServer) -> None:
    manage(app.env, "shell", "-c", SEED)


@pytest.fixture
def staff(browser: Browser, app: AppServer, seeded: None) -> Iterator[Page]:
    """A page logged in to the admin as the superuser ``auditor``."""
    context = browser.new_context(base_url=app.url)
    staff = context.new_page()
    staff.goto("/admin/login/?next=/admin/")
    staff.get_by_label("Username").fill("auditor")
    staff.get_by_label("Password").fill(PASSWORD)
    staff.get_by_role("button", name="Log in").click()
    staff.wait_for_url("**/admin/")
    yield staff
    context.close()


def send(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def last_reply(page: Page):
    return page.locator("[data-role=assistant]").last


def test_staff_filter_the_list_open_a_transcript_and_see_the_access_recorded(page: Page, staff: Page) -> None:
    send(page, "Tides of Fundy e2e-admin [sim tokens=60 tps=200]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=15_000)

    staff.goto("/admin/chat/conversation/")
    staff.locator("#searchbar").fill("Fundy e2e-admin")
    staff.locator("#searchbar").press("Enter")
    filters = staff.locator("#changelist-filter")
    filters.get_by_role("link", name="alice", exact=True).click()
    filters.get_by_role("link", name="Complete", exact=True).click()
    expect(staff).to_have_url(re.compile(r"owner__id__exact=\d+"))
    expect(staff).to_have_url(re.compile(r"status=complete"))
    rows = staff.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("alice")
    expect(rows.first).to_contain_text("demo/demo-1")

    rows.first.get_by_role("link", name="Read transcript").click()
    reply = staff.locator(".turn.assistant").last
    expect(reply.locator(".markdown h2")).to_be_visible()
    expect(reply.locator("dd.status")).to_have_text("Complete")
    expect(reply.locator("dd.tokens")).not_to_contain_text("?")
    expect(staff.locator(".access-log tbody tr").first).to_contain_text("auditor")

    staff.goto("/admin/chat/transcriptaccess/")
    record = staff.locator("#result_list tbody tr").first
    expect(record).to_contain_text("auditor")
    expect(record).to_contain_text("Read")
    expect(record).to_contain_text("Fundy e2e-admin")
    expect(record).to_contain_text("alice")


def test_the_usage_dashboard_draws_real_usage_and_is_saved_as_a_screenshot(page: Page, staff: Page) -> None:
    send(page, "Dashboard sample e2e-admin [sim tokens=80 tps=200]")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=15_000)

    refused: list[str] = []
    staff.on("console", lambda m: "Content Security Policy" in m.text and refused.append(m.text))
    staff.set_viewport_size({"width": 1280, "height": 900})
    staff.goto("/admin/chat/conversation/usage/")
    expect(staff.locator("svg.chart")).to_have_count(4)
    assert staff.locator("#per-day svg.chart rect").count() >= 10
    expect(staff.locator("#per-model tr[data-model='demo/demo-1']")).to_be_visible()
    expect(staff.locator("#per-model tr[data-model='lab/bard-2']")).to_be_visible()
    assert int(staff.locator("#total-replies .value").inner_text()) > 0

    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "admin-usage-dashboard.png"
    staff.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000
    assert refused == []


def test_staff_stop_a_persons_reply_from_the_live_list(page: Page, staff: Page) -> None:
    send(page, "Keep going e2e-admin [sim tokens=3000 tps=30]")
    body = last_reply(page).locator(".body")
    wait_until(lambda: len(body.text_content()) > 20)
    reply_id = last_reply(page).get_attribute("id").removeprefix("message-")

    staff.goto("/admin/chat/livereply/")
    row = staff.locator(f"#result_list tbody tr:has(input[value='{reply_id}'])")
    expect(row).to_contain_text("alice")
    row.locator("input.action-select").check()
    staff.locator("select[name=action]").select_option("stop_replies")
    staff.get_by_role("button", name="Go").click()

    expect(staff.locator(".messagelist")).to_contain_text("Asked 1 reply to stop.")
    expect(last_reply(page)).to_have_attribute("data-status", "cancelled", timeout=5_000)


HOSTILE = """
from django.contrib.auth.models import User
from chat.models import Conversation, Message

payload = {payload!r}
chat = Conversation.objects.create(
    owner=User.objects.get(username="alice"), title="e2e-hostile " + payload,
    provider="demo", model="demo-1", system_prompt=payload,
)
question = Message.objects.create(conversation=chat, role="user", content=payload)
Message.objects.create(
    conversation=chat, parent=question, role="assistant", status="complete", content=payload + {tricks!r},
    provider="demo", model="demo-1",
)
Message.objects.create(
    conversation=chat, parent=question, role="assistant", status="error", content=payload,
    error="The upstream answered 400: " + payload, provider="demo", model="demo-1",
)
"""


def assert_nothing_injected(page: Page) -> None:
    assert page.evaluate("window.pwned") is None
    assert page.locator("#content script, #content img[onerror], #content [hx-get]").count() == 0
    hrefs = page.locator("#content a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(href is None or not href.startswith("javascript") for href in hrefs)


def test_hostile_text_in_titles_prompts_messages_and_errors_stays_text_in_the_admin(
    app: AppServer, staff: Page
) -> None:
    manage(app.env, "shell", "-c", HOSTILE.format(payload=PAYLOADS, tricks=" " + MARKDOWN_TRICKS))
    seen = watch_for_attacks(staff)

    staff.goto("/admin/chat/conversation/?q=e2e-hostile")
    rows = staff.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("<script>")
    assert_nothing_injected(staff)
    rows.first.get_by_role("link", name="Read transcript").click()
    expect(staff.locator(".turn.assistant")).to_have_count(2)
    expect(staff.locator(".turn.user").first).to_contain_text('<script>window.pwned = "script"</script>')
    expect(staff.get_by_text("The upstream answered 400: <script>")).to_be_visible()
    assert_nothing_injected(staff)
    for path in ["transcriptaccess/", "conversation/usage/", "livereply/"]:
        staff.goto(f"/admin/chat/{path}")
        assert_nothing_injected(staff)
    assert seen == []
