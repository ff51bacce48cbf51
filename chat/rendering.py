"""The one place that turns a message into HTML: the page, the frames and the final swap.

Model output is untrusted: a reply is rendered as markdown and sanitized with nh3
(``chat.markdown``), formatted while it streams. Its frames add complete blocks, draw its
open tail again, or add text to the tail's last element; a page's state is always the
rendering of a prefix of the reply, so the final swap changes nothing it showed. The page
allows no inline styles (CSP), so table alignment becomes a class.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from html import escape

from django.template.loader import get_template, render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from pygments.formatters import HtmlFormatter

from chat.markdown import Frame, Live, reply_html
from chat.markdown import render_markdown as _render_markdown
from chat.models import Attachment, Conversation, Message
from chat.providers import accepts_images, parameters_of
from chat.providers.config import choices, get_providers
from chat.providers.parameters import Parameter, Value
from chat.sidebar import Listed, Sidebar


@cache
def pygments_css() -> str:
    light = HtmlFormatter(style="default").get_style_defs(".highlight")
    dark = HtmlFormatter(style="github-dark").get_style_defs(".highlight")
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"


# What a reply page's frames draw, and the languages models write code in most: each
# first use costs a fresh worker tens of ms (a template's compile, a Pygments lexer's
# regexes; CSS's is about 70 ms) in the middle of someone's reply.
WARM_TEMPLATES = (
    "chat/_message.html",
    "chat/_conversation_list.html",
    "chat/_organise_menu.html",
    "chat/_stop_button.html",
    "chat/_composer.html",
)
WARM_LANGUAGES = ("python", "javascript", "typescript", "bash", "json", "html", "css", "sql", "java", "c",
                  "cpp", "go", "rust", "yaml")  # fmt: skip
WARM_TEXT = "# A\n\n*b* **c** `d` [e](https://example.com)\n\n- f\n1. g\n\n> h\n\n| i |\n|:-:|\n| j |\n"


def warm_up() -> None:
    """Compile what a worker's first replies would otherwise compile while people wait:
    the frames' templates, the markdown parsers (whole and live) and the common lexers."""
    for name in WARM_TEMPLATES:
        get_template(name)
    text = WARM_TEXT + "".join(f"\n```{language}\nx = 1\n```\n" for language in WARM_LANGUAGES)
    live = Live("warm-up")
    live.feed(text)
    live.advance(flush=True)
    live.html()


def message_html(message: Message, *, oob: bool = False) -> str:
    return render_to_string("chat/_message.html", {"message": message, "oob": oob})


def messages_appended(messages: Iterable[Message]) -> str:
    inner = "".join(message_html(m) for m in messages)
    return f'<div hx-swap-oob="beforeend:#messages">{inner}</div>'


def thread_html(messages: Iterable[Message]) -> str:
    """The whole visible path, after a version was made or chosen (see chat.branches)."""
    inner = "".join(message_html(m) for m in messages)
    return f'<div id="messages" hx-swap-oob="innerHTML">{inner}</div>'


def sidebar_html(sidebar: Sidebar, current: Conversation | None, *, error: str = "", typed: str = "") -> str:
    """The sidebar's lists; ``error`` is why a change asked from this page was refused,
    and ``typed`` the folder name that was refused."""
    context = {"sidebar": sidebar, "conversation": current, "error": error, "typed": typed, "oob": True}
    html = render_to_string("chat/_conversation_list.html", context)
    if current is not None:
        html += heading_html(current)
        html += render_to_string(
            "chat/_organise_menu.html", {"sidebar": sidebar, "conversation": current, "oob": True}
        )
    return html


class ConversationLinks:
    """The URLs of the conversations a sidebar lists, each name reversed once per drawing.

    A sidebar draws up to a hundred links (``chat.sidebar``), twice with a new
    conversation's first reply (its first words, then its title): a ``{% url %}`` for each
    link's two URLs was most of a redraw. ``reverse`` makes each name's URL once around a
    slot that the pk then fills, with the script prefix of the moment."""

    SLOT = "9876543210123"
    NAMES = ("chat:conversation", "chat:move")

    def __init__(self) -> None:
        self._around = {name: reverse(name, args=[int(self.SLOT)]).split(self.SLOT) for name in self.NAMES}

    def url(self, name: str, pk: int) -> str:
        head, tail = self._around[name]
        return f"{head}{int(pk)}{tail}"


def conversation_link(
    item: Listed, current: int | None, links: ConversationLinks, *, oob: bool = False
) -> SafeString:
    """One conversation in the sidebar: a link, marked when it is the page's own
    (``current``: the pk of the page's conversation). Plain strings, not format_html:
    drawn a hundred times a redraw; the URLs are made of ints and the title is escaped as
    format_html escapes it. A conversation shows once in a sidebar, so its item's id is
    its own (``retitled_html`` swaps it)."""
    marked = ' aria-current="page"' if item.pk == current else ""
    swap = ' hx-swap-oob="outerHTML"' if oob else ""
    pk = int(item.pk)
    return mark_safe(
        f'<li id="sidebar-conversation-{pk}"{swap}><a href="{links.url("chat:conversation", pk)}"{marked} '
        f'data-move="{links.url("chat:move", pk)}">{escape(str(item))}</a></li>'
    )


def heading_html(conversation: Conversation | Listed) -> str:
    """A conversation's page heading, its title as the sidebar shows it."""
    return format_html('<span id="conversation-title" hx-swap-oob="innerHTML">{}</span>', conversation)


def retitled_html(conversation_id: int, title: str, current: int | None) -> str:
    """A conversation's new title where a page shows it, when nothing else in its sidebar
    changed: its link (where the sidebar lists it; htmx leaves a swap with no target
    alone) and, on its own page (``current``), the heading."""
    item = Listed(conversation_id, title, None)
    html = conversation_link(item, current, ConversationLinks(), oob=True)
    if conversation_id == current:
        html += heading_html(item)
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


def render_markdown(text: str) -> SafeString:
    return mark_safe(_render_markdown(text))


# The bodies of replies that just ended in this process, drawn from their live state
# (``Reply._finish``), so their final frames do not render the whole reply again.
_ended_bodies: dict[int, tuple[str, str]] = {}
_ENDED_KEPT = 64
_ended_lock = threading.Lock()


def remember_body(message_id: int, text: str, html: str) -> None:
    """``html`` is ``reply_html(text)`` for this message: kept for its next few drawings."""
    with _ended_lock:
        _ended_bodies.pop(message_id, None)
        _ended_bodies[message_id] = (text, html)
        while len(_ended_bodies) > _ENDED_KEPT:
            del _ended_bodies[next(iter(_ended_bodies))]


def reply_body(message_id: int, text: str) -> SafeString:
    """A reply's body: the same while it streams and once it is done (``chat.markdown``)."""
    with _ended_lock:
        known = _ended_bodies.get(message_id)
    if known is not None and known[0] == text:
        return mark_safe(known[1])
    return mark_safe(reply_html(text, f"message-{int(message_id)}"))


def frame_html(message_id: int, frame: Frame, shown: int) -> str:
    """A streaming reply's frame. Plain strings, not format_html: the frame sent most
    often, and its parts are escaped or sanitized already (``chat.markdown``). A redrawn
    tail says how much of the reply the page shows then (``data-shown``), for clients
    that follow offsets; text added carries exactly its characters."""
    dom_id = f"message-{int(message_id)}"
    if frame.tail is None:
        return f'<div hx-swap-oob="beforeend:#{dom_id}-end">{frame.append}</div>'
    blocks = f'<div hx-swap-oob="beforebegin:#{dom_id}-tail">{frame.blocks}</div>' if frame.blocks else ""
    tail = f'<div id="{dom_id}-tail" hx-swap-oob="innerHTML" data-shown="{int(shown)}">{frame.tail}</div>'
    return blocks + tail


def body_html(message_id: int, text: str) -> str:
    """A snapshot: the body of a reply being written, as it is now."""
    return format_html(
        '<div id="message-{}-body" hx-swap-oob="innerHTML" data-shown="{}">{}</div>',
        message_id,
        len(text),
        reply_body(message_id, text),
    )


def reasoning_frame_html(message_id: int, text: str) -> str:
    """More of a reply's thinking: escaped text added to its section, never formatted, so
    nothing in it waits and nothing drawn changes."""
    target = f"#message-{int(message_id)}-reasoning"
    return f'<div hx-swap-oob="beforeend:{target}">{escape(text, quote=False)}</div>'


def thought_label(milliseconds: int | None, *, active: bool) -> str:
    if milliseconds is not None:
        return f"Thought for {format_seconds(milliseconds)}"
    return "Thinking…" if active else "Thoughts"


def thought_html(message_id: int, milliseconds: int | None) -> str:
    """The thinking section's summary, once the answer begins."""
    label = thought_label(milliseconds, active=True)
    return format_html('<span id="message-{}-thought" hx-swap-oob="innerHTML">{}</span>', message_id, label)


def reasoning_html(message_id: int, reasoning: str, milliseconds: int | None) -> str:
    """A snapshot of a reply's thinking, with its summary."""
    return format_html(
        '<div id="message-{}-reasoning" hx-swap-oob="innerHTML">{}</div>{}',
        message_id,
        reasoning,
        thought_html(message_id, milliseconds),
    )


def format_seconds(milliseconds: int) -> str:
    value = milliseconds / 1000
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


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
            "parameters": parameter_fields(conversation),
        },
    )


@dataclass(frozen=True)
class ParameterField:
    parameter: Parameter
    value: Value | None
    default: Value | None


def parameter_fields(conversation: Conversation) -> list[ParameterField]:
    """The settings form's parameters: those the conversation's dialect takes, with the
    conversation's value and the provider's default (the placeholder of an empty field)."""
    provider = get_providers().get(conversation.provider)
    defaults = provider.defaults if provider else {}
    return [
        ParameterField(p, conversation.parameters.get(p.name), defaults.get(p.name))
        for p in parameters_of(provider)
    ]


def model_accepts_images(conversation: Conversation) -> bool:
    provider = get_providers().get(conversation.provider)
    return provider is not None and accepts_images(provider, conversation.model)


def connection_notice_html() -> str:
    """The page's notice that live updates wait for the server (htmx reconnects)."""
    return render_to_string("chat/_connection_notice.html", {"unavailable": True, "oob": True})


def signed_out_html(reason: str, next_url: str) -> str:
    """The page's notice that its session ended, and the way back to this conversation."""
    return render_to_string("chat/_signed_out.html", {"reason": reason, "next": next_url, "oob": True})


def composer_html(
    error: str = "", text: str = "", image_url: str = "", files: Iterable[Attachment] = ()
) -> str:
    """The message box, empty, or as it was with why it was not sent."""
    context = {"client_id": new_client_id(), "error": error, "text": text, "image_url": image_url}
    return render_to_string("chat/_composer.html", {**context, "files": files, "oob": True})


def new_client_id() -> str:
    return uuid.uuid4().hex
