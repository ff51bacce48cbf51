"""The one place that turns a message into HTML: the page, the frames and the final swap.

Model output is untrusted. While a reply streams, each frame appends HTML-escaped text;
when it completes, the persisted text is rendered as markdown and sanitized with nh3.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from functools import cache

import nh3
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from chat.models import Message

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
    "td": {"style"},
    "th": {"style"},
}


def _highlight(code: str, lang: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    return highlight(code, lexer, HtmlFormatter(cssclass="highlight", wrapcode=True))


@cache
def _markdown() -> MarkdownIt:
    return (
        MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
        .enable("table")
        .enable("strikethrough")
    )


def render_markdown(text: str) -> SafeString:
    html = _markdown().render(text)
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
    return mark_safe(clean)


@cache
def pygments_css() -> str:
    return HtmlFormatter(cssclass="highlight").get_style_defs(".highlight")


def message_html(message: Message, *, oob: bool = False) -> str:
    return render_to_string("chat/_message.html", {"message": message, "oob": oob})


def messages_appended(messages: Iterable[Message]) -> str:
    inner = "".join(message_html(m) for m in messages)
    return f'<div hx-swap-oob="beforeend:#messages">{inner}</div>'


def delta_html(message_id: int, text: str) -> str:
    return format_html('<div hx-swap-oob="beforeend:#message-{}-body">{}</div>', message_id, text)


def body_html(message_id: int, text: str) -> str:
    return format_html('<div id="message-{}-body" hx-swap-oob="innerHTML">{}</div>', message_id, text)


def note_html(message_id: int, note: str) -> str:
    return format_html('<span id="message-{}-note" hx-swap-oob="innerHTML">{}</span>', message_id, note)


def stop_button_html(*, stopping: bool = False) -> str:
    return render_to_string("chat/_stop_button.html", {"stopping": stopping, "oob": True})


def composer_html(error: str = "", text: str = "") -> str:
    return render_to_string(
        "chat/_composer.html", {"client_id": new_client_id(), "error": error, "text": text, "oob": True}
    )


def new_client_id() -> str:
    return uuid.uuid4().hex
