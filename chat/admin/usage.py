"""The admin's usage dashboard: tokens and cost per day, person and model, and reply health
and approval (people's thumbs up and down) per model.

Everything is aggregated in the database over the replies created in a range of days;
the page shows numbers and server-drawn SVG charts, never message text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Concat, TruncDate
from django.utils import timezone

from chat.admin import charts
from chat.budgets import TOKENS, dollars
from chat.models import Feedback, Message

DEFAULT_DAYS = 14
MAX_DAYS = 366
TOP_USERS = 20


class UsageRangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        default_start, default_end = default_range()
        end = data.get("end") or default_end
        start = data.get("start") or end - (default_end - default_start)
        if start > end:
            raise forms.ValidationError("The start must not be after the end.")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        return {"start": start, "end": end}

    def chosen_range(self) -> tuple[date, date]:
        """The valid range asked for, else the last ``DEFAULT_DAYS`` days."""
        return (self.cleaned_data["start"], self.cleaned_data["end"]) if self.is_valid() else default_range()


def default_range() -> tuple[date, date]:
    end = timezone.localdate()
    return end - timedelta(days=DEFAULT_DAYS - 1), end


def replies_between(start: date, end: date) -> QuerySet[Message]:
    """Replies created from the start of ``start`` to the end of ``end``, in ``TIME_ZONE``."""
    zone = timezone.get_current_timezone()
    return Message.objects.filter(
        role=Message.Role.ASSISTANT,
        created_at__gte=datetime.combine(start, time.min, zone),
        created_at__lt=datetime.combine(end + timedelta(days=1), time.min, zone),
    )


def _totals(replies: QuerySet[Message], *group: str) -> QuerySet[Any]:
    return (
        replies.order_by().values(*group).annotate(replies=Count("pk"), tokens=Sum(TOKENS), cost=Sum("cost"))
    )


def per_day(replies: QuerySet[Message], start: date, end: date) -> list[dict[str, Any]]:
    """One row per day of the range, days without replies included as zeros."""
    rows = {r["day"]: r for r in _totals(replies.annotate(day=TruncDate("created_at")), "day")}
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    empty = {"replies": 0, "tokens": 0, "cost": None}
    return [{**empty, **rows.get(day, {}), "day": day} for day in days]


def per_user(replies: QuerySet[Message]) -> list[dict[str, Any]]:
    rows = _totals(replies, "conversation__owner__username").order_by("-tokens")[:TOP_USERS]
    return [{**r, "username": r.pop("conversation__owner__username")} for r in rows]


def per_model(replies: QuerySet[Message]) -> list[dict[str, Any]]:
    rows = list(
        _totals(
            replies.annotate(choice=Concat(F("provider"), Value("/"), F("model"))),
            "choice",
            "provider",
            "model",
        )
        .annotate(
            errors=Count("pk", filter=Q(status=Message.Status.ERROR)),
            stops=Count("pk", filter=Q(status=Message.Status.CANCELLED)),
            timed=Count("time_to_first_token_ms"),
        )
        .order_by("-tokens", "choice")
    )
    approval = approval_per_model(replies)
    for row in rows:
        timed = replies.filter(provider=row["provider"], model=row["model"])
        row["median_ttft_ms"] = median_ttft(timed, row["timed"])
        row["ups"], row["downs"] = approval.get((row["provider"], row["model"]), (0, 0))
        rated = row["ups"] + row["downs"]
        row["approval"] = row["ups"] / rated if rated else None
    return rows


def approval_per_model(replies: QuerySet[Message]) -> dict[tuple[str, str], tuple[int, int]]:
    """Thumbs up and down on ``replies``, per provider and model, in one query."""
    rows = (
        Feedback.objects.filter(message__in=replies.values("pk"))
        .order_by()
        .values_list("message__provider", "message__model")
        .annotate(
            ups=Count("pk", filter=Q(rating=Feedback.Rating.UP)),
            downs=Count("pk", filter=Q(rating=Feedback.Rating.DOWN)),
        )
    )
    return {(provider, model): (ups, downs) for provider, model, ups, downs in rows}


def median_ttft(replies: QuerySet[Message], count: int) -> float | None:
    """The median time to first token, read with one sliced query instead of every value."""
    if not count:
        return None
    values = list(
        replies.exclude(time_to_first_token_ms=None)
        .order_by("time_to_first_token_ms")
        .values_list("time_to_first_token_ms", flat=True)[(count - 1) // 2 : count // 2 + 1]
    )
    return sum(values) / len(values)


@dataclass(frozen=True)
class Dashboard:
    start: date
    end: date
    days: list[dict[str, Any]]
    users: list[dict[str, Any]]
    models: list[dict[str, Any]]

    @property
    def total_tokens(self) -> int:
        return sum(d["tokens"] or 0 for d in self.days)

    @property
    def total_cost(self) -> str:
        return dollars(sum((d["cost"] or Decimal(0) for d in self.days), Decimal(0)))

    @property
    def total_replies(self) -> int:
        return sum(d["replies"] for d in self.days)

    def charts(self) -> dict[str, str]:
        days = [(d["day"].strftime("%b %d"), d["tokens"] or 0) for d in self.days]
        costs = [(d["day"].strftime("%b %d"), float(d["cost"] or 0)) for d in self.days]
        return {
            "tokens_per_day": charts.column_chart(days, title="Tokens per day", fmt=_count),
            "cost_per_day": charts.column_chart(costs, title="Cost per day", fmt=_money),
            "tokens_per_user": charts.bar_chart(
                [(u["username"], u["tokens"] or 0) for u in self.users], title="Tokens per person", fmt=_count
            ),
            "tokens_per_model": charts.bar_chart(
                [(m["choice"], m["tokens"] or 0) for m in self.models], title="Tokens per model", fmt=_count
            ),
        }


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _money(value: float) -> str:
    return dollars(Decimal(str(round(value, 6))))


def build_dashboard(start: date, end: date) -> Dashboard:
    replies = replies_between(start, end)
    return Dashboard(start, end, per_day(replies, start, end), per_user(replies), per_model(replies))
