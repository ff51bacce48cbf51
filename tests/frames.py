"""A streaming reply's body as a page holds it, built from the frames a socket receives the
way the page's htmx applies them (``chat.rendering.frame_html``): complete blocks added
before the open tail, the tail drawn anew, text added to the tail's last element, a
snapshot of the whole body. Tests and the benchmark compare what it shows with
``chat.markdown.reply_html`` of the text saved or sent.
"""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import dataclass

APPEND = re.compile(r'<div hx-swap-oob="beforeend:#message-(\d+)-end">(.*?)</div>', re.S)
# A redrawn tail ends its frame; complete blocks, when there are any, come just before it.
BLOCKS = re.compile(
    r'<div hx-swap-oob="beforebegin:#message-(\d+)-tail">(.*?)</div>(?=<div id="message-\1-tail")', re.S
)
TAIL = re.compile(
    r'<div id="message-(\d+)-tail" hx-swap-oob="innerHTML" data-shown="(\d+)">(.*)</div>$', re.S
)
SNAPSHOT = re.compile(
    r'<div id="message-(\d+)-body" hx-swap-oob="innerHTML" data-shown="(\d+)">(.*?)'
    r'<div id="message-\1-tail" class="tail">(.*)</div></div>$',
    re.S,
)
CLOSING_RUN = re.compile(r"(?:</\w+>\s*)+$")
# A reasoning model's thinking: escaped text added to its section, the whole section in a
# snapshot, and its summary; each before the body's part of a frame.
THINKING_ADDED = re.compile(r'<div hx-swap-oob="beforeend:#message-(\d+)-reasoning">([^<]*)</div>')
THINKING_DRAWN = re.compile(r'<div id="message-(\d+)-reasoning" hx-swap-oob="innerHTML">([^<]*)</div>')
THOUGHT = re.compile(r'<span id="message-(\d+)-thought" hx-swap-oob="innerHTML">([^<]*)</span>')


def without_thinking(frame: str) -> str:
    return THOUGHT.sub("", THINKING_DRAWN.sub("", THINKING_ADDED.sub("", frame)))


class Thinking:
    """Replies' thinking sections on a page (their text), and their summaries."""

    def __init__(self) -> None:
        self.text: dict[int, str] = {}
        self.summary: dict[int, str] = {}

    def see(self, frame: str) -> None:
        for match in THINKING_DRAWN.finditer(frame):
            self.text[int(match.group(1))] = html.unescape(match.group(2))
        for match in THINKING_ADDED.finditer(frame):
            reply_id = int(match.group(1))
            self.text[reply_id] = self.text.get(reply_id, "") + html.unescape(match.group(2))
        for match in THOUGHT.finditer(frame):
            self.summary[int(match.group(1))] = html.unescape(match.group(2))


@dataclass
class Body:
    """One reply's body: its complete blocks, its open tail, and how many characters of
    the reply it shows (``None`` when a redraw showed a body of unknown length)."""

    reply_id: int
    blocks: str = ""
    tail: str = ""
    shown: int | None = 0

    @property
    def html(self) -> str:
        return f'{self.blocks}<div id="message-{self.reply_id}-tail" class="tail">{self.tail}</div>'

    @property
    def text(self) -> str:
        return text_of(self.html)

    def append(self, escaped: str) -> None:
        end_id = f'id="message-{self.reply_id}-end"'
        assert end_id in self.tail, f"text added to a tail without an end: {self.tail!r}"
        body = self.tail.rstrip()
        run = CLOSING_RUN.search(body)
        at = run.start() if run else len(body)
        self.tail = self.tail[:at] + escaped + self.tail[at:]
        if self.shown is not None:
            self.shown += len(html.unescape(escaped))

    def redraw(self, blocks: str, tail: str, shown: int | None = None) -> None:
        self.blocks, self.tail, self.shown = blocks, tail, shown


def text_of(drawn: str) -> str:
    """What a person reads of some HTML: its text, as the DOM's ``textContent``."""
    return html.unescape(re.sub(r"<[^>]+>", "", drawn))


def apply(bodies: dict[int, Body], frame: str) -> list[int]:
    """Apply ``frame`` to the bodies it concerns (making them as needed); the reply ids it
    moved on. Other frames (notes, articles, the thread) and thinking are for the caller."""
    moved = []
    frame = without_thinking(frame)
    if match := SNAPSHOT.search(frame):
        reply_id = int(match.group(1))
        bodies.setdefault(reply_id, Body(reply_id)).redraw(
            match.group(3), match.group(4), int(match.group(2))
        )
        moved.append(reply_id)
    if match := TAIL.search(frame):
        reply_id = int(match.group(1))
        body = bodies.setdefault(reply_id, Body(reply_id))
        blocks = BLOCKS.search(frame)
        body.redraw(body.blocks + (blocks.group(2) if blocks else ""), match.group(3), int(match.group(2)))
        moved.append(reply_id)
    elif match := APPEND.fullmatch(frame):
        reply_id = int(match.group(1))
        bodies.setdefault(reply_id, Body(reply_id)).append(match.group(2))
        moved.append(reply_id)
    return moved


def body_in(drawn: str, reply_id: int) -> Body | None:
    """The body of a reply in a whole article (the page, the final frame, a redraw); how
    much of the reply it shows is not said there."""
    # The body is followed by the reply's footer (templates/chat/_message.html).
    body = re.compile(
        rf'<div id="message-{reply_id}-body" class="body markdown">(.*?)'
        rf'<div id="message-{reply_id}-tail" class="tail">(.*?)</div></div>'
        r'\s*(?=<p class="image-link"|<footer)',
        re.S,
    )
    if match := body.search(drawn):
        return Body(reply_id, match.group(1), match.group(2), None)
    return None


class Watched:
    """One reply's body on a page, frame by frame, and every state it had."""

    def __init__(self, reply_id: int) -> None:
        self.reply_id = reply_id
        self.bodies: dict[int, Body] = {}
        self.states: list[tuple[int | None, str]] = []

    def see(self, frame: str) -> None:
        if frame.startswith('<div id="messages"'):
            if (drawn := body_in(frame, self.reply_id)) is not None:
                self.bodies[self.reply_id] = drawn
        else:
            apply(self.bodies, frame)
        if body := self.bodies.get(self.reply_id):
            self.states.append((body.shown, body.html))

    @property
    def body(self) -> Body | None:
        return self.bodies.get(self.reply_id)

    def drawn_from(self, text: str) -> bool:
        """Every state of known length was the rendering of that much of ``text``: never a
        gap, a repeat or a change to what was shown."""
        from chat.markdown import reply_html

        dom_id = f"message-{self.reply_id}"
        return all(html == reply_html(text[:n], dom_id) for n, html in self.states if n is not None)


def read(text: str, reply_id: int) -> str:
    """What a person reads of a reply whose text is ``text``: its body's ``textContent``."""
    from chat.markdown import reply_html

    return text_of(reply_html(text, f"message-{reply_id}"))


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def only_grew(seen: list[str], text: str, reply_id: int) -> bool:
    """Every body a page showed (its ``textContent``) is, but for white space between
    blocks, a beginning of what a person reads of ``text``, each going on from the one
    before: no gap, no repeat, nothing taken back."""
    whole = squeezed(read(text, reply_id))
    shown = [squeezed(body) for body in seen]
    return all(whole.startswith(body) for body in shown) and all(
        later.startswith(earlier) for earlier, later in itertools.pairwise(shown)
    )
