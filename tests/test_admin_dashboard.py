"""The usage dashboard: totals per day, person and model, reply health, and server-drawn charts."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from chat.admin import charts
from chat.admin.usage import build_dashboard
from chat.models import Message
from tests.admin_data import FAST_HASHERS, make_conversation, make_exchange, make_user

pytestmark = pytest.mark.django_db

USAGE = reverse("admin:chat_conversation_usage")


@pytest.fixture(autouse=True)
def _fast_hashers(settings) -> None:
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def usage() -> None:
    """Alice: two replies today on demo. Bob: three yesterday on lab (a failure, a stop), one long ago."""
    now = timezone.now()
    alices = make_conversation(make_user("alice"), "Tides")
    make_exchange(
        alices, "a", "b", input_tokens=10, output_tokens=20, cost="0.001", time_to_first_token_ms=100
    )
    make_exchange(
        alices, "c", "d", input_tokens=100, output_tokens=50, cost="0.002", time_to_first_token_ms=300
    )
    bobs = make_conversation(make_user("bob"), "Sonnets", provider="lab", model="bard-2")
    yesterday = now - timedelta(days=1)
    for status, ttft in [("complete", 50), ("error", 900), ("cancelled", 70)]:
        make_exchange(bobs, "q", "r", status=status, at=yesterday, time_to_first_token_ms=ttft, cost="0.5")
    make_exchange(bobs, "old", "reply", at=now - timedelta(days=30), input_tokens=7000, output_tokens=0)


def test_usage_is_totalled_per_day_with_empty_days_included(usage: None) -> None:
    today = timezone.localdate()
    days = build_dashboard(today - timedelta(days=2), today).days
    assert [d["day"] for d in days] == [today - timedelta(days=n) for n in (2, 1, 0)]
    assert [d["tokens"] for d in days] == [0, 90, 180]
    assert [d["replies"] for d in days] == [0, 3, 2]
    assert days[2]["cost"] == Decimal("0.003")


def test_usage_per_person_is_ranked_by_tokens(usage: None) -> None:
    today = timezone.localdate()
    users = build_dashboard(today - timedelta(days=6), today).users
    assert [(u["username"], u["tokens"], u["replies"]) for u in users] == [("alice", 180, 2), ("bob", 90, 3)]


def test_each_model_shows_its_errors_stops_and_median_time_to_first_token(usage: None) -> None:
    today = timezone.localdate()
    models = {m["choice"]: m for m in build_dashboard(today - timedelta(days=6), today).models}
    lab, demo = models["lab/bard-2"], models["demo/demo-1"]
    assert (lab["replies"], lab["errors"], lab["stops"], lab["median_ttft_ms"]) == (3, 1, 1, 70)
    assert (demo["replies"], demo["errors"], demo["stops"], demo["median_ttft_ms"]) == (2, 0, 0, 200)


def test_the_page_draws_its_charts_as_inline_svg_and_loads_nothing_from_elsewhere(
    admin_client, usage
) -> None:
    html = admin_client.get(USAGE).content.decode()
    assert html.count('class="chart"') == 4
    assert "<rect" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    row = re.search(r'<tr data-model="lab/bard-2">.*?</tr>', html).group(0)
    assert "33%" in row
    assert "70 ms" in row


def test_a_chosen_range_counts_only_its_replies(admin_client, usage) -> None:
    day = timezone.localdate() - timedelta(days=30)
    response = admin_client.get(USAGE, {"start": day.isoformat(), "end": day.isoformat()})
    dashboard = response.context["dashboard"]
    assert (dashboard.total_replies, dashboard.total_tokens) == (1, 7000)


def test_an_impossible_range_is_explained_and_the_last_two_weeks_are_shown(admin_client, usage) -> None:
    response = admin_client.get(USAGE, {"start": "2026-02-10", "end": "2026-02-01"})
    assert "The start must not be after the end." in response.content.decode()
    assert len(response.context["dashboard"].days) == 14


def test_staff_without_permission_to_view_conversations_get_no_dashboard(client, usage) -> None:
    client.force_login(make_user("clerk", staff=True))
    assert client.get(USAGE).status_code == 403


def test_chart_labels_from_the_database_are_escaped() -> None:
    svg = charts.bar_chart([("<script>x</script>", 5)], title="People", fmt=str)
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def test_an_empty_range_draws_a_chart_that_says_so() -> None:
    assert "No usage in this range" in charts.column_chart([("Jan 01", 0)], title="Tokens", fmt=str)


def test_a_reply_still_generating_counts_as_a_reply_without_tokens(usage: None) -> None:
    conversation = make_conversation(make_user("carol"), "Live")
    make_exchange(
        conversation, "q", "", status=Message.Status.STREAMING, input_tokens=None, output_tokens=None
    )
    today = timezone.localdate()
    assert build_dashboard(today, today).days[0]["replies"] == 3
    assert build_dashboard(today, today).days[0]["tokens"] == 180
