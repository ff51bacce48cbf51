"""Daily budgets, with today's usage beside each."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.http import HttpRequest

from chat.budgets import TOKENS, dollars, start_of_today
from chat.models import Message, UsageBudget


def _today(aggregate: Any) -> Subquery:
    replies = Message.objects.filter(
        conversation__owner=OuterRef("user"), role=Message.Role.ASSISTANT, created_at__gte=start_of_today()
    ).order_by()
    return Subquery(replies.values("conversation__owner").annotate(value=aggregate).values("value"))


@admin.register(UsageBudget)
class UsageBudgetAdmin(admin.ModelAdmin):
    list_display = ["user", "daily_token_limit", "daily_cost_limit", "tokens_today", "cost_today"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    search_fields = ["user__username"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageBudget]:
        return (
            super()
            .get_queryset(request)
            .annotate(used_tokens=_today(Sum(TOKENS)), used_cost=_today(Sum("cost")))
        )

    @admin.display(description="tokens today")
    def tokens_today(self, budget: UsageBudget) -> str:
        return f"{budget.used_tokens or 0:,}"

    @admin.display(description="cost today")
    def cost_today(self, budget: UsageBudget) -> str:
        return dollars(budget.used_cost or 0)
