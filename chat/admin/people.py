"""People: Django's user admin, plus ending a person's sessions.

Ending them signs the person out of every browser at once and closes their open pages on
every worker, stopping their replies (``chat.access``); a record says who did it.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from chat import access

User = get_user_model()


class PeopleAdmin(UserAdmin):
    actions = [*UserAdmin.actions, "end_sessions"]

    @admin.action(description="End all sessions of the selected people", permissions=["change"])
    def end_sessions(self, request: HttpRequest, queryset: QuerySet) -> None:
        ended = sum(access.end_sessions(request.user, person) for person in queryset)
        people = queryset.count()
        self.message_user(
            request,
            f"Ended {ended} session{'' if ended == 1 else 's'} of {people} "
            f"{'person' if people == 1 else 'people'}; their open pages close now.",
        )


admin.site.unregister(User)
admin.site.register(User, PeopleAdmin)
