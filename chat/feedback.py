"""Feedback on replies: a thumbs up or down with an optional comment, from the conversation's owner.

``do_rate`` writes it (or removes it); ``attach`` reads it for the messages a page or a
frame draws, in the sync code that loads them, since the message partial is also
rendered in async code where no query may run.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F

from chat.checks import ChatError
from chat.models import Feedback, Message

COMMENT_LIMIT = 1000
# What a pressed thumb sends: pressing it again takes the rating back.
NONE = "none"
CHOICES = {*Feedback.Rating.values, NONE}


class Refused(ChatError):
    """A request the page never makes: an unknown rating, or a reply that has not finished."""


def check_feedback(reply: Message, rating: str, comment: str) -> str:
    """The comment to store, stripped; raises ``Refused`` or ``ChatError``."""
    if not reply.can_be_rated:
        raise Refused("Only a finished reply can be rated.")
    if rating not in CHOICES:
        raise Refused("A rating is up, down or none.")
    comment = comment.strip()
    if len(comment) > COMMENT_LIMIT:
        raise ChatError(f"That comment is {len(comment):,} characters; the limit is {COMMENT_LIMIT:,}.")
    return comment


def do_rate(reply: Message, user: AbstractBaseUser, rating: str, comment: str = "") -> Feedback | None:
    """Rate ``reply`` (the caller checked that ``user`` owns its conversation), change the
    rating, or with ``NONE`` remove it; the feedback now, or None."""
    comment = check_feedback(reply, rating, comment)
    if rating == NONE:
        Feedback.objects.filter(message=reply, user=user).delete()
        return None
    feedback, _ = Feedback.objects.update_or_create(
        message=reply, user=user, defaults={"rating": rating, "comment": comment}
    )
    return feedback


def attach(messages: Iterable[Message]) -> None:
    """Give each message its owner's feedback as ``feedback_given`` (None if there is none):
    one query, and none when no message can be rated."""
    messages = list(messages)
    rated = [m.pk for m in messages if m.can_be_rated]
    found: dict[int, Feedback] = {}
    if rated:
        given = Feedback.objects.filter(message_id__in=rated, user_id=F("message__conversation__owner_id"))
        found = {f.message_id: f for f in given}
    for message in messages:
        message.feedback_given = found.get(message.pk)
