"""Saved prompts: checks, writes, and which prompts a person may use.

A person sees and edits only their own prompts; a prompt staff published (in the admin)
joins everyone's slash menu, still editable by its owner alone. ``{{name}}`` in a
prompt's text is a variable the composer asks for before inserting it
(``static/chat/prompts.js`` finds them with the same pattern).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from chat.checks import ChatError
from chat.models import Prompt

MAX_TITLE = Prompt._meta.get_field("title").max_length
# The slash menu is a short list to pick from, not a browser of everything.
MENU_LENGTH = 20
VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def check_prompt(title: str, text: str) -> tuple[str, str]:
    """The title trimmed and the text as typed, or ``ChatError`` saying what to fix."""
    title = title.strip()
    if not title:
        raise ChatError("Give the prompt a title.")
    if len(title) > MAX_TITLE:
        raise ChatError(f"That title is {len(title):,} characters; the limit is {MAX_TITLE:,}.")
    if not text.strip():
        raise ChatError("Write the prompt's text.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError(
            f"That text is {len(text):,} characters; the limit is {settings.CHAT_MAX_MESSAGE_CHARS:,}."
        )
    return title, text


def do_save_prompt(owner: AbstractBaseUser, title: str, text: str, prompt: Prompt | None = None) -> Prompt:
    """A new prompt of ``owner``'s, or ``prompt`` changed; whether it is published stays as it was."""
    title, text = check_prompt(title, text)
    if prompt is None:
        return Prompt.objects.create(owner=owner, title=title, text=text)
    prompt.title, prompt.text = title, text
    prompt.save(update_fields=["title", "text", "updated_at"])
    return prompt


def do_delete_prompt(prompt: Prompt) -> None:
    prompt.delete()


def usable(user: AbstractBaseUser, query: str = "") -> QuerySet[Prompt]:
    """The person's own prompts and the published ones, by title; ``query`` filters titles."""
    prompts = Prompt.objects.filter(Q(owner=user) | Q(published=True))
    if query := query.strip():
        prompts = prompts.filter(title__icontains=query)
    return prompts.order_by("title", "pk")[:MENU_LENGTH]


def variables(text: str) -> list[str]:
    """The distinct variable names in ``text``, in the order they first appear."""
    return list(dict.fromkeys(VARIABLE.findall(text)))
