"""The one place that turns a message into HTML: the page, the frames and the final swap.

Model output is untrusted. While a reply streams, each frame appends HTML-escaped text;
when it completes, the persisted text is rendered as markdown and sanitized with nh3.
The page allows no inline styles (CSP), so table alignment becomes a class.
"""

from __future__ import annotations

import html
import threading
import uuid
from collections.abc import Iterable
from functools import cache, lru_cache

import nh3
from django.template.loader import render_to_string
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from chat.models import Conversation, Message
from chat.providers import accepts_images
from chat.providers.config import choices, get_providers

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
}
ALIGNMENTS = {"align-left", "align-center", "align-right"}


@lru_cache(maxsize=256)
def _lexer(lang: str) -> Lexer:
    # Finding a lexer by name walks Pygments' registry; a lexer holds only its options.
    # Bounded: the names come from model output.
    try:
        return get_lexer_by_name(lang or "text")
    except ClassNotFound:
        return get_lexer_by_name("text")


_formatters = threading.local()


def _formatter() -> HtmlFormatter:
    # Making one builds a stylesheet the spans never use: one per thread, kept.
    if not hasattr(_formatters, "spans"):
        _formatters.spans = HtmlFormatter(nowrap=True)
    return _formatters.spans


def _highlight(code: str, lang: str, _attrs: str) -> str:
    lexer = _lexer(lang.lower()[:40])
    spans = highlight(code, lexer, _formatter())
    language = escape(lexer.aliases[0] if lexer.aliases else "text")
    # Starts with <pre, so markdown-it takes it as the whole block.
    return f'<pre class="highlight"><code class="language-{language}">{spans}</code></pre>\n'


def _alignment_classes(state: StateCore) -> None:
    for token in state.tokens:
        if token.type in {"th_open", "td_open"} and (style := token.attrs.pop("style", None)):
            token.attrSet("class", f"align-{str(style).removeprefix('text-align:')}")


@cache
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
    md.enable("table").enable("strikethrough")
    md.core.ruler.push("alignment_classes", _alignment_classes)
    return md


def render_markdown(text: str) -> SafeString:
    html = _markdown().render(text)
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
        tag_attribute_values={"td": {"class": ALIGNMENTS}, "th": {"class": ALIGNMENTS}},
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return mark_safe(clean)


@cache
def pygments_css() -> str:
    light = HtmlFormatter(style="default").get_style_defs(".highlight")
    dark = HtmlFormatter(style="github-dark").get_style_defs(".highlight")
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"


def message_html(message: Message, *, oob: bool = False) -> str:
    return render_to_string("chat/_message.html", {"message": message, "oob": oob})


def messages_appended(messages: Iterable[Message]) -> str:
    inner = "".join(message_html(m) for m in messages)
    return f'<div hx-swap-oob="beforeend:#messages">{inner}</div>'


def thread_html(messages: Iterable[Message]) -> str:
    """The whole visible path, after a version was made or chosen (see chat.branches)."""
    inner = "".join(message_html(m) for m in messages)
    return f'<div id="messages" hx-swap-oob="innerHTML">{inner}</div>'


def sidebar_html(conversations: Iterable[Conversation], current: Conversation | None) -> str:
    html = render_to_string(
        "chat/_conversation_list.html", {"conversations": conversations, "conversation": current, "oob": True}
    )
    if current is not None:
        html += format_html('<span id="conversation-title" hx-swap-oob="innerHTML">{}</span>', current)
    return html


def announce_html(text: str) -> str:
    """The page's one live region: a reply's start and end, never its tokens."""
    return format_html('<div id="announcer" hx-swap-oob="innerHTML">{}</div>', text)


def announcement(message: Message) -> str:
    if message.is_active:
        return "Writing a reply…"
    if message.status == Message.Status.COMPLETE:
        return (
            "The reply was cut off by the token limit."
            if message.finish_reason == "length"
            else "Reply complete."
        )
    if message.status == Message.Status.CANCELLED:
        return "Reply stopped."
    return f"The reply failed: {message.error}" if message.error else "The reply failed."


def delta_html(message_id: int, text: str) -> str:
    # The frame sent most often: html.escape is what format_html escapes with, without
    # the lazy-string machinery around it (a tenth of the relay's CPU at K=200).
    return f'<div hx-swap-oob="beforeend:#message-{int(message_id)}-body">{html.escape(text)}</div>'


def body_html(message_id: int, text: str) -> str:
    return format_html('<div id="message-{}-body" hx-swap-oob="innerHTML">{}</div>', message_id, text)


def note_html(message_id: int, note: str) -> str:
    return format_html('<span id="message-{}-note" hx-swap-oob="innerHTML">{}</span>', message_id, note)


def stop_button_html(*, stopping: bool = False) -> str:
    return render_to_string("chat/_stop_button.html", {"stopping": stopping, "oob": True})


def settings_html(conversation: Conversation) -> str:
    """The model and system prompt a page shows, after another tab changed them."""
    return render_to_string(
        "chat/_settings_changed.html",
        {
            "conversation": conversation,
            "model_choices": choices(),
            "accepts_images": model_accepts_images(conversation),
        },
    )


def model_accepts_images(conversation: Conversation) -> bool:
    provider = get_providers().get(conversation.provider)
    return provider is not None and accepts_images(provider, conversation.model)


def connection_notice_html() -> str:
    """The page's notice that live updates wait for the server (htmx reconnects)."""
    return render_to_string("chat/_connection_notice.html", {"unavailable": True, "oob": True})


def signed_out_html(reason: str, next_url: str) -> str:
    """The page's notice that its session ended, and the way back to this conversation."""
    return render_to_string("chat/_signed_out.html", {"reason": reason, "next": next_url, "oob": True})


def composer_html(error: str = "", text: str = "", image_url: str = "") -> str:
    return render_to_string(
        "chat/_composer.html",
        {"client_id": new_client_id(), "error": error, "text": text, "image_url": image_url, "oob": True},
    )


def new_client_id() -> str:
    return uuid.uuid4().hex
