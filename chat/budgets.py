"""Daily budgets: a reply that would start past its owner's budget is refused before it begins.

A day is the calendar day in ``TIME_ZONE``. Replies still generating carry no tokens yet,
so they count once they finish.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import DecimalField, IntegerField, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat.checks import ChatError
from chat.models import Message, UsageBudget

# A reply's tokens, input plus output; a missing count is zero.
TOKENS = Coalesce("input_tokens", 0, output_field=IntegerField()) + Coalesce(
    "output_tokens", 0, output_field=IntegerField()
)


def start_of_today() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def replies_today(user_id: int) -> QuerySet[Message]:
    return Message.objects.filter(
        conversation__owner_id=user_id, role=Message.Role.ASSISTANT, created_at__gte=start_of_today()
    )


def usage_today(user_id: int) -> tuple[int, Decimal]:
    """(tokens, dollars) the person's replies used since midnight."""
    totals = replies_today(user_id).aggregate(
        tokens=Coalesce(Sum(TOKENS), Value(0), output_field=IntegerField()),
        cost=Coalesce(Sum("cost"), Value(Decimal(0)), output_field=DecimalField()),
    )
    return totals["tokens"], totals["cost"]


def check_budget(user: AbstractBaseUser | int) -> None:
    """Raise ``ChatError`` when the person has no budget left today; nothing is written.

    Given a user read with ``select_related("usage_budget")``, the budget costs no query.
    """
    if isinstance(user, int):
        user_id, budget = user, UsageBudget.objects.filter(user_id=user).first()
    else:
        user_id, budget = user.pk, getattr(user, "usage_budget", None)
    if budget is None or (budget.daily_token_limit is None and budget.daily_cost_limit is None):
        return
    tokens, cost = usage_today(user_id)
    renews = f"Your budget renews at midnight ({timezone.get_current_timezone_name()})."
    if budget.daily_token_limit is not None and tokens >= budget.daily_token_limit:
        raise ChatError(
            f"Daily budget reached: you have used {tokens:,} of your {budget.daily_token_limit:,} "
            f"tokens today. {renews}"
        )
    if budget.daily_cost_limit is not None and cost >= budget.daily_cost_limit:
        raise ChatError(
            f"Daily budget reached: you have spent {dollars(cost)} of your "
            f"{dollars(budget.daily_cost_limit)} today. {renews}"
        )


def dollars(value: Decimal) -> str:
    # Cents hide the small sums that cheap models cost; show up to four places then.
    if value and abs(value) < 1:
        return f"${value:,.4f}"
    return f"${value:,.2f}"
