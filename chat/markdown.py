"""Markdown as a reply streams: formatted from its first words, the same live and at the
end, at bytes on the wire linear in the length of the reply.

One pipeline renders everything: markdown-it-py, Pygments for code, nh3 to sanitize
(``render_markdown``). A streaming reply's text is cut into blocks (paragraphs, headings,
lists, tables, code fences, quotes) by markdown-it's own parse. A block is complete once
the block after it has started on a complete line: nothing written later can change it,
since reference definitions, the one construct that reaches back, are off. A complete
block is rendered once and appended; only the open tail block is rendered again, and
only when it must be:

* text that cannot change any formatting (letters, digits, spaces, plain punctuation,
  after a letter) is appended to the tail's last element as it is: exactly what
  rendering it again would give;
* an open code fence takes its lines as they come, unhighlighted, and is rendered once,
  highlighted, when it closes;
* anything else renders the tail again with the next frame while the reply is within its
  redraw budget (``FREE_REDRAWS``, then one for every ``CHARS_PER_REDRAW`` characters
  received) and its worker keeps up, and otherwise at most every ``TAIL_INTERVAL``
  seconds; past ``TAIL_CAP`` bytes of HTML, only once it has grown by a quarter. Below
  the cap a tail sent again lies within permessage-deflate's 8 KiB window, so the copy
  costs some 15 to 30 bytes on the wire whatever its size: the budget bounds what redraws
  add per character, the cap's growth rule keeps what is re-sent linear in the length of
  the reply. A short reply is formatted at the pace of the frames; a long one, past its
  first redraws, and every reply of a busy worker, about five times a second.

An emphasis, a strikethrough or a code span being written is drawn closed, so its words
show as they come, in italics from the first (``*Why is`` as *Why is*); text added to it
goes inside it. Text that may yet change how what comes before it looks is held back
briefly: a ``*`` that may or may not open emphasis (``5*3``, two runs open at once), a
link without its URL yet, a line without a letter yet (``1.`` before ``1. Send``,
``---`` under a heading). A line of pipes is drawn as a table's header before its
delimiter row arrives. So what a page shows only ever grows.
Every state a page shows is ``reply_html`` of a prefix of the reply (``Live.shown``): a
reload, a snapshot and the final frame draw exactly what the frames drew, and a stopped
reply keeps exactly what was shown.
"""

from __future__ import annotations

import html
import itertools
import re
import threading
from dataclasses import dataclass
from functools import cache, lru_cache

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
    "div", "button",  # a code block's copy button (``CODE_BLOCK``), and no other
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
}
ALIGNMENTS = {"align-left", "align-center", "align-right"}
ONLY_VALUES = {
    "td": {"class": ALIGNMENTS},
    "th": {"class": ALIGNMENTS},
    "div": {"class": {"code-block"}},
    "button": {"class": {"copy-code"}, "type": {"button"}, "aria-label": {"Copy code"}},
}
# Every code block, as drawn: with its copy button (static/chat/app.js), from the server,
# so the HTML a page builds is the HTML it is sent. Its label is drawn by CSS, so copying
# a whole reply does not copy the word "Copy".
CODE_BLOCK = (
    '<div class="code-block"><button type="button" class="copy-code" aria-label="Copy code"></button>'
    "{}</div>\n"
)

# How often an open block may be rendered again: with every frame for a reply's first
# FREE_REDRAWS redraws and one more for every CHARS_PER_REDRAW characters it receives;
# beyond that budget every TAIL_INTERVAL seconds; and past TAIL_CAP bytes of HTML only
# once it has grown by a quarter (docs/benchmark.md, "The redraw budget").
FREE_REDRAWS = 80
CHARS_PER_REDRAW = 80
TAIL_INTERVAL = 0.2
TAIL_CAP = 6000
# Text held back for what it may become is shown anyway past this many characters.
HOLD_LIMIT = 120


@lru_cache(maxsize=256)
def _lexer(lang: str) -> Lexer:
    # Finding a lexer by name walks Pygments' registry; a lexer holds only its options.
    # Bounded: the names come from model output.
    try:
        return get_lexer_by_name(lang or "text")
    except ClassNotFound:
        return get_lexer_by_name("text")


@lru_cache(maxsize=256)
def _language(info: str) -> str:
    # Asked with every redraw of an open fence; bounded, as the names come from model output.
    lexer = _lexer(info.strip().split(" ", 1)[0].lower()[:40])
    return html.escape(lexer.aliases[0] if lexer.aliases else "text")


_formatters = threading.local()


def _formatter() -> HtmlFormatter:
    # Making one builds a stylesheet the spans never use: one per thread, kept.
    if not hasattr(_formatters, "spans"):
        _formatters.spans = HtmlFormatter(nowrap=True)
    return _formatters.spans


def _highlight(code: str, lang: str, _attrs: str) -> str:
    spans = highlight(code, _lexer(lang.lower()[:40]), _formatter())
    # Starts with <pre, so markdown-it takes it as the whole block.
    return f'<pre class="highlight"><code class="language-{_language(lang)}">{spans}</code></pre>\n'


def _alignment_classes(state: StateCore) -> None:
    for token in state.tokens:
        if token.type in {"th_open", "td_open"} and (style := token.attrs.pop("style", None)):
            token.attrSet("class", f"align-{str(style).removeprefix('text-align:')}")


def _with_copy_button(rule: str):
    def render(self, tokens, idx, options, env) -> str:
        # A reply's closed code block is drawn again with every redraw of its open tail
        # until the next block starts: highlighted once, remembered in the reply's ``env``.
        drawn = env.get("code") if env else None
        key = (rule, tokens[idx].info, tokens[idx].content)
        if drawn is not None and key in drawn:
            return drawn[key]
        html = CODE_BLOCK.format(getattr(RendererHTML, rule)(self, tokens, idx, options, env).rstrip("\n"))
        if drawn is not None:
            drawn[key] = html
        return html

    return render


@cache
def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
    md.enable("table").enable("strikethrough")
    # A reference definition changes links written before it: a block already shown.
    md.disable("reference")
    md.core.ruler.push("alignment_classes", _alignment_classes)
    md.add_render_rule("fence", _with_copy_button("fence"))
    md.add_render_rule("code_block", _with_copy_button("code_block"))
    return md


@cache
def _blocks() -> MarkdownIt:
    # The same blocks as ``_markdown`` finds, without parsing the text inside them: where
    # a streaming reply's complete blocks end is asked with every redraw of its tail.
    md = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")
    md.disable("reference")
    md.core.ruler.enableOnly(["normalize", "block"])
    return md


@cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
        tag_attribute_values=ONLY_VALUES,
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


def render_markdown(text: str, code: dict | None = None) -> str:
    """``text`` as sanitized HTML: model output is untrusted. ``code``: the code blocks
    drawn already (``Live``), to draw the same block again without highlighting it."""
    return _cleaner().clean(_markdown().render(text, None if code is None else {"code": code}))


def _render_tokens(tokens: list[Token], code: dict) -> str:
    """``render_markdown`` of the text ``tokens`` were parsed from (with ``code`` as its env)."""
    md = _markdown()
    return _cleaner().clean(md.renderer.render(tokens, md.options, {"code": code}))


def _blocks_before(tokens: list[Token], line: int) -> list[Token]:
    """The tokens of the blocks before ``line``: complete blocks, each parsed as it would
    be alone (nothing reaches across blocks, reference definitions being off)."""
    end = next((i for i, t in enumerate(tokens) if t.level == 0 and t.map and t.map[0] >= line), len(tokens))
    return tokens[:end]


# Characters that cannot change formatting within a line that has a letter already.
SAFE = re.compile(r"(?:[^\W_]|[ .,;:?'\"/-])+")
SAFE_PREFIX = re.compile(r"(?:[^\W_]|[ .,;:?'\"/-])*")
FENCE_OPEN = re.compile(r"(`{3,}|~{3,})([^\n]*)\n")
# The elements a line of text ends in, and the text at the end of one.
END_ELEMENTS = {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th"}
# and an emphasis or a code span drawn closed while it is open (``_closer``): text added
# to it goes inside it, as drawing it again would put it.
END_ELEMENTS |= {"em", "strong", "del", "code"}
CLOSING_RUN = re.compile(r"(?:</(\w+)>\s*)+$")
TEXT_MODE, FENCE_MODE, NO_MODE = "text", "fence", ""


@dataclass(frozen=True)
class Frame:
    """How a page moves from one state to the next: complete blocks to add before the tail,
    then the tail drawn anew; or text to add to the tail's last element."""

    blocks: str = ""
    tail: str | None = None
    append: str = ""


class Live:
    """The formatted state of one streaming reply, and the frames that move a page along."""

    def __init__(self, dom_id: str) -> None:
        self.dom_id = dom_id
        self.end_id = f"{dom_id}-end"
        self.blocks: list[str] = []  # the complete blocks' HTML, as the page has it
        self.source = ""  # all the text so far, shown or not
        self.start = 0  # where the open tail block begins
        self.shown = 0  # how much of the text the page shows
        self.mode = NO_MODE  # how text may be added without a render
        self.fence = ""  # the open fence's marker, in FENCE_MODE
        self.rendered = 0  # the tail's length when last rendered
        self.rendered_bytes = 0  # and the length of its HTML
        self.rendered_at = float("-inf")
        self.redraws = 0
        self.code: dict = {}  # its code blocks' HTML (``render_markdown``)

    def feed(self, text: str) -> None:
        self.source += text

    @property
    def held(self) -> bool:
        return self.shown < len(self.source)

    def advance(self, *, flush: bool = False, now: float = 0.0, eager: bool = True) -> Frame | None:
        """The frame that shows what may be shown now (with ``flush``, everything).

        ``eager``: the worker keeps up, so the redraw budget may be spent; a busy worker
        (its frames already slowed) redraws at the slower pace only."""
        end = len(self.source) if flush else self._showable()
        if end <= self.shown:
            return None
        new = self.source[self.shown : end]
        if self._appendable(new):
            self.shown = end
            return Frame(append=html.escape(new, quote=False))
        if flush or self._may_render(end, now, eager):
            return self._render(end, now)
        if self.mode == TEXT_MODE and (plain := SAFE_PREFIX.match(new).group().rstrip()):
            self.shown += len(plain)
            return Frame(append=html.escape(plain, quote=False))
        return None

    def html(self) -> str:
        """``reply_html`` of the text shown, from the blocks rendered already: only the open
        tail is drawn again. Last, once the reply has ended: it leaves the tail drawn."""
        tail = self._render(self.shown, self.rendered_at).tail
        return _body("".join(self.blocks), tail, self.dom_id)

    def _appendable(self, new: str) -> bool:
        if self.mode == TEXT_MODE:
            return SAFE.fullmatch(new) is not None and not new[-1].isspace()
        if self.mode == FENCE_MODE:
            line_start = self.source.rfind("\n", 0, self.shown) + 1
            lines = self.source[line_start : self.shown + len(new)].split("\n")
            return not any(_is_fence_close(line, self.fence) for line in lines)
        return False

    def _may_render(self, end: int, now: float, eager: bool) -> bool:
        if self.mode == FENCE_MODE:
            return True  # the fence closed: rendered once, highlighted
        size = end - self.start
        grown = size - self.rendered
        budget = FREE_REDRAWS + len(self.source) // CHARS_PER_REDRAW
        if (self.redraws >= budget or not eager) and now - self.rendered_at < TAIL_INTERVAL:
            return False
        return self.rendered_bytes <= TAIL_CAP or grown * 4 >= self.rendered

    def _render(self, end: int, now: float) -> Frame:
        src = self.source[self.start : end]
        # A block after another begins on a line of its own: one line is one open block.
        parsed = None
        if "\n" not in src:
            cut = 0
        elif _as_drawn(src) == src:
            # Where its complete blocks end, from the parse that draws them: one parse a
            # redraw, not two.
            parsed = _markdown().parse(src, {"code": self.code})
            cut = _complete_blocks(src, parsed)
        else:
            cut = _complete_blocks(src)
        if cut and parsed is not None:
            blocks = _render_tokens(_blocks_before(parsed, src[:cut].count("\n")), self.code)
        else:
            blocks = render_markdown(src[:cut], self.code) if cut else ""
        if blocks:
            self.blocks.append(blocks)
        self.start += cut
        tail = src[cut:]
        self.shown, self.rendered, self.rendered_at = end, len(tail), now
        self.redraws += 1
        drawn = self._draw_tail(tail, parsed if cut == 0 else None)
        self.rendered_bytes = len(drawn)
        return Frame(blocks=blocks, tail=drawn)

    def _draw_tail(self, tail: str, parsed: list[Token] | None = None) -> str:
        """The open block's HTML; where text may be added without a render, its last element
        carries ``end_id``. ``parsed``: the tokens of ``tail``, drawn as written."""
        self.mode, self.fence = NO_MODE, ""
        if (opening := FENCE_OPEN.match(tail)) and not any(
            _is_fence_close(line, opening.group(1)) for line in tail[opening.end() :].split("\n")
        ):
            # An open fence: its lines as they come, highlighted once it closes.
            self.mode, self.fence = FENCE_MODE, opening.group(1)
            code = html.escape(tail[opening.end() :], quote=False)
            language = _language(opening.group(2))
            opening_tags = f'<pre class="highlight"><code class="language-{language}" id="{self.end_id}">'
            return CODE_BLOCK.format(f"{opening_tags}{code}</code></pre>")
        if parsed is not None:
            drawn = _render_tokens(parsed, self.code)
        else:
            closer = _closer(tail[tail.rfind("\n") + 1 :])
            drawn = render_markdown(_as_expected(tail + closer), self.code)
            if closer and not _closes(drawn, closer):
                # It did not open emphasis or code after all (a ``*`` in a code span): as written.
                drawn = render_markdown(_as_expected(tail), self.code)
        last = tail[-1:]
        line = tail[tail.rfind("\n") + 1 :]
        if not (last and SAFE.fullmatch(last) and not last.isspace() and any(c.isalpha() for c in line)):
            return drawn
        marked = _mark_end(drawn, self.end_id, last)
        if marked is not None:
            self.mode = TEXT_MODE
            return marked
        return drawn

    def _showable(self) -> int:
        """How much of the text may be shown: all but what may yet change how it looks."""
        text = self.source
        line_start = text.rfind("\n") + 1
        if self.mode == FENCE_MODE:
            # In an open fence only a line that may close it waits; a line that closes it
            # ends what this frame shows.
            first = text.rfind("\n", 0, self.shown) + 1
            at = first
            for line in text[first:line_start].split("\n")[:-1]:
                at += len(line) + 1
                if _is_fence_close(line, self.fence):
                    return at
            return line_start if FENCE_LIKE.fullmatch(text[line_start:]) else len(text)
        hold = _hold_in_line(text[line_start:])
        end = len(text) if hold is None else line_start + hold
        return end


FENCE_LIKE = re.compile(r" {0,3}(`*|~*)[ \t]*")
TABLE_ROW = re.compile(r" {0,3}\|")
RUNS = {char: re.compile(re.escape(char) + "+") for char in "*_~`"}
LINE_MARKER = re.compile(r" {0,3}(?:[-+*]|\d{1,9}[.)]|#{1,6}|>)(?= )")


def _is_fence_close(line: str, marker: str) -> bool:
    stripped = line.strip()
    return (
        len(line) - len(line.lstrip(" ")) <= 3
        and len(stripped) >= len(marker)
        and stripped == marker[0] * len(stripped)
    )


def _as_expected(tail: str) -> str:
    """The open block as it will most likely be: a last line of pipes, with no line of
    pipes before it, is a table's header (its delimiter row not written yet), so it is
    drawn as one at once instead of as a paragraph that would lose its pipes."""
    lines = tail.split("\n")
    last = len(lines) - 1 if lines[-1].strip() else len(lines) - 2
    if last < 0 or not TABLE_ROW.match(lines[last]) or (last > 0 and TABLE_ROW.match(lines[last - 1])):
        return tail
    cells = lines[last].strip().strip("|").split("|")
    return "\n".join(lines[: last + 1]) + "\n|" + "---|" * len(cells) + "\n"


def _as_drawn(tail: str) -> str:
    """The open block as it is drawn: its open emphasis or code span closed, a table's
    header with its delimiter row."""
    return _as_expected(tail + _closer(tail[tail.rfind("\n") + 1 :]))


def _hold_in_line(line: str) -> int | None:
    """Where in the line being written to stop showing, or None to show all of it."""
    if not any(c.isalpha() for c in line):
        return 0  # "1." before "1. Send", "---" that makes a heading, "|---|"
    holds = []
    if (stripped := line.rstrip(" \t")) != line:
        holds.append(len(stripped))
    if (runs := _open_runs(line)) and not _closing(stripped, runs):
        # One emphasis or code span open is shown as it comes, drawn closed (``_closer``);
        # anything less clear waits for the rest.
        holds += [start for start, _ in runs]
    if (opened := line.rfind("[")) > line.rfind("]"):
        holds.append(opened - (opened > 0 and line[opened - 1] == "!"))
    elif ((link := line.rfind("](")) >= 0 and line.find(")", link) < 0) or line.endswith("]"):
        opened = line.rfind("[")
        holds.append(max(opened - (opened > 0 and line[opened - 1] == "!"), 0))
    if (angle := line.rfind("<")) > line.rfind(">"):
        holds.append(angle)
    if (amp := line.rfind("&")) >= 0 and ";" not in line[amp:] and len(line) - amp <= 10:
        holds.append(amp)
    if line.endswith("\\"):
        holds.append(len(line) - 1)
    if line.lstrip().startswith("#") and (hashes := re.search(r" #+$", stripped)):
        holds.append(hashes.start())
    if not holds:
        return None
    hold = min(holds)
    return None if len(line) - hold > HOLD_LIMIT else hold


def _open_runs(line: str) -> list[tuple[int, str]]:
    """The runs of ``*``, ``_``, ``~`` or backticks in the line that nothing closes yet: where
    each begins, and the run."""
    opened = []
    body_from = m.end() if (m := LINE_MARKER.match(line)) else 0
    for char, runs_of in RUNS.items():
        if char not in line:
            continue
        if char in "*~":
            # Only how many there are and where the last begins: counted in C, since a
            # long line is scanned again with every frame.
            if len(runs_of.findall(line, body_from)) % 2:
                last = line.rfind(char)
                end = last + 1
                while last > body_from and line[last - 1] == char:
                    last -= 1
                opened.append((last, line[last:end]))
            continue
        runs = list(runs_of.finditer(line, body_from))
        if char == "_":
            runs = [r for r in runs if not _intraword(line, r.start(), r.end())]
            if len(runs) % 2:
                opened.append((runs[-1].start(), runs[-1].group()))
        else:
            lengths = [len(r.group()) for r in runs]
            if unmatched := [r for r in runs if lengths.count(len(r.group())) % 2]:
                opened.append((unmatched[-1].start(), unmatched[-1].group()))
    return opened


# What an open run is drawn closed as while its text streams, and the tag that shows it
# was: ``*Why is`` shows "Why is" in italics at once, not when the closing ``*`` comes.
CLOSING_TAGS = {"*": "</em>", "_": "</em>", "**": "</strong>", "__": "</strong>", "~~": "</del>"}


def _closing(line: str, runs: list[tuple[int, str]]) -> str:
    """What closes the one open run of ``runs`` when it most likely opens emphasis,
    strikethrough or a code span (text follows it; an emphasis run starts a word: ``5*3``
    is arithmetic); else ""."""
    if len(runs) != 1:
        return ""
    start, run = runs[0]
    after = line[start + len(run) : start + len(run) + 1]
    if not after or after.isspace():
        return ""
    if run[0] == "`":
        return "" if len(run) >= 3 and not line[:start].strip() else run  # a fence opens
    return run if run in CLOSING_TAGS and (start == 0 or not line[start - 1].isalnum()) else ""


def _closer(line: str) -> str:
    """What to add to the line being drawn to draw its one open emphasis or code span closed."""
    return "" if line[-1:].isspace() else _closing(line, _open_runs(line))


def _closes(drawn: str, closer: str) -> bool:
    """Whether the drawing of a tail with ``closer`` added ends with what it closed."""
    run = CLOSING_RUN.search(drawn.rstrip())
    return run is not None and run.group().startswith(CLOSING_TAGS.get(closer, "</code>"))


def _intraword(line: str, start: int, end: int) -> bool:
    return start > 0 and end < len(line) and line[start - 1].isalnum() and line[end].isalnum()


# Blocks that nothing after them can change once another block follows: a heading, a
# rule, a closed fence; and, after a blank line, a paragraph or a table. (A list, a quote
# or indented code may take in what follows a blank line.)
FINAL_WHEN_FOLLOWED = {"heading_open", "hr", "fence"}
FINAL_AFTER_A_BLANK_LINE = {"paragraph_open", "table_open"}


def _complete_blocks(src: str, parsed: list[Token] | None = None) -> int:
    """How much of ``src`` is complete blocks: nothing written after can change them.
    ``parsed``: its tokens, when it was parsed whole already (its blocks are the same).

    A block is complete once the block after it starts on a complete line; or, for the
    blocks above, once another block has begun at all."""
    complete_lines = src.count("\n")
    tokens = _blocks().parse(src) if parsed is None else parsed
    blocks = [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map]
    cut_line = 0
    for block, after in itertools.pairwise(blocks):
        final = (
            after.map[0] < complete_lines
            or block.type in FINAL_WHEN_FOLLOWED
            or (block.type in FINAL_AFTER_A_BLANK_LINE and after.map[0] > block.map[1])
        )
        if not final:
            break
        cut_line = after.map[0]
    offset = 0
    for _ in range(cut_line):
        offset = src.index("\n", offset) + 1
    return offset


def _mark_end(drawn: str, end_id: str, last: str) -> str | None:
    """``drawn`` with ``end_id`` on the element its last text is in, when that text ends
    with the source's last character; else None (the next text needs a render)."""
    body = drawn.rstrip()
    if (run := CLOSING_RUN.search(body)) is None:
        return None
    name = re.match(r"</(\w+)>", body[run.start() :]).group(1).lower()
    content = body[: run.start()]
    if name not in END_ELEMENTS or not content.endswith(last):
        return None
    openings = list(re.finditer(rf"<{name}\b[^>]*>", content))
    if not openings:
        return None
    opening = openings[-1]
    at = opening.start() + len(name) + 1
    return f'{drawn[:at]} id="{end_id}"{drawn[at:]}'


def reply_html(text: str, dom_id: str) -> str:
    """A reply's body as a page shows it: its complete blocks, then its open tail.

    The same for a reply being written (a reload, a snapshot) as for one that is done, and
    the same as the frames that streamed it drew (``Live``)."""
    live = Live(dom_id)
    live.feed(text)
    frame = live.advance(flush=True)
    blocks, tail = (frame.blocks, frame.tail or "") if frame else ("", "")
    return _body(blocks, tail, dom_id)


def _body(blocks: str, tail: str, dom_id: str) -> str:
    return f'{blocks}<div id="{dom_id}-tail" class="tail">{tail}</div>'
