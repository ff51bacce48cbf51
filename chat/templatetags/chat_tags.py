from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from chat import feedback
from chat.models import Conversation, Message
from chat.rendering import ConversationLinks, format_seconds, render_markdown, reply_body
from chat.rendering import conversation_link as _conversation_link
from chat.rendering import new_client_id as _new_client_id
from chat.rendering import thought_label as _thought_label
from chat.sidebar import Listed

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    return render_markdown(text)


@register.simple_tag(takes_context=True)
def conversation_link(context: template.Context, item: Listed, current: Conversation | None) -> SafeString:
    """A sidebar's link to ``item``; its URLs are reversed once per drawing, not per link."""
    links = context.render_context.get(ConversationLinks)
    if links is None:
        links = context.render_context[ConversationLinks] = ConversationLinks()
    return _conversation_link(item, None if current is None else current.pk, links)


@register.simple_tag
def reply_body_of(message: Message) -> SafeString:
    """A reply's body, formatted as it streamed (``chat.markdown``)."""
    return reply_body(message.pk, message.content)


@register.simple_tag
def shared_reply_body(text: str, number: int) -> SafeString:
    """A reply of a shared copy, numbered on its page, drawn exactly as the chat draws it."""
    return reply_body(number, text)


@register.filter
def seconds(milliseconds: int) -> str:
    return format_seconds(milliseconds)


@register.filter
def thought_label(message: Message) -> str:
    """The summary of a reply's thinking section."""
    return _thought_label(message.reasoning_ms, active=message.is_active)


@register.filter
def tokens_per_second(message: Message) -> str:
    """Output tokens over the time spent writing them (after the first token); "" if unknown."""
    if not message.output_tokens or message.duration_ms is None:
        return ""
    writing_ms = message.duration_ms - (message.time_to_first_token_ms or 0)
    return f"{message.output_tokens * 1000 / writing_ms:.0f}" if writing_ms > 0 else ""


@register.simple_tag
def new_client_id() -> str:
    """A fresh idempotency key for a button: pressing it twice makes one version."""
    return _new_client_id()


@register.filter
def parameters_label(parameters: dict[str, int | float]) -> str:
    """A reply's sampling parameters as its metadata shows them: ``temperature 0.2 · top_p 0.9``."""
    return " · ".join(f"{name} {value:g}" for name, value in parameters.items())


@register.simple_tag
def feedback_comment_limit() -> int:
    return feedback.COMMENT_LIMIT
