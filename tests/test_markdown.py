"""Live markdown (chat/markdown.py): every state a page shows is the rendering of a prefix
of the reply, what a page reads only grows, hostile text split across frames never runs,
and the bytes re-sent stay linear in the length of the reply.

The frames go through ``rendering.frame_html`` and are applied as htmx applies them
(``tests.frames``), so this checks the wire format too."""

from __future__ import annotations

import itertools
import re
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import markdown, rendering
from chat.markdown import TAIL_CAP, Live, reply_html
from chat.simulator.script import plan_for, reply_text
from tests import frames
from tests.frames import Body

DOM = "message-7"
PIECES = [
    "# Title\n",
    "## Sub heading ##\n",
    "Some *emph* and **strong** text",
    " with `code` and [a link](http://x.y/z)",
    "\n\n",
    "\n",
    "- item one\n",
    "- item two\n  continued\n",
    "1. first\n2. second\n",
    "10) tenth\n",
    "| a | b |\n|---|:-:|\n| 1 | two |\n",
    "| x |",
    "```python\nprint('hi')\nx = 1 < 2\n```\n",
    "```\nopen fence\n",
    "~~~js\nlet a = 1;\n",
    "> quoted *text*\n",
    "Setext\n---\n",
    "Other\n===\n",
    "***\n",
    "---\n",
    "a_b_c snake_case ",
    "_under_ ",
    "5 * 3 = 15 ",
    "~~strike~~ ",
    "<script>alert(1)</script>",
    "&amp; &copy &#65; ",
    "trailing \\\n",
    "![img](http://e/x.png)",
    "[ref]: http://r.example\n",
    "[ref] ",
    "    indented code\n",
    "word word word ",
    "Ünïcødé ",
    "  two spaces  \nbreak",
    "<http://auto.link>",
    "`` double ` tick ``",
    "* star item\n",
    "+ plus item\n",
    "\t tab ",
    "javascript:alert(1) ",
    "[x](javascript:alert(1))",
    '"quoted" it\'s ',
]


class Stream:
    """A reply streamed piece by piece to one page, every state the page had recorded."""

    def __init__(self, reply_id: int = 7) -> None:
        self.live = Live(f"message-{reply_id}")
        self.reply_id = reply_id
        self.bodies: dict[int, Body] = {reply_id: Body(reply_id)}
        self.frames: list[str] = []
        self.states: list[tuple[int, str]] = []
        self.now = 0.0

    def feed(self, piece: str, *, seconds: float = 0.04, flush: bool = False) -> None:
        self.live.feed(piece)
        self.now += seconds
        self.advance(flush=flush)

    def advance(self, *, flush: bool = False) -> None:
        frame = self.live.advance(flush=flush, now=self.now)
        if frame is None:
            return
        html = rendering.frame_html(self.reply_id, frame, self.live.shown)
        self.frames.append(html)
        assert frames.apply(self.bodies, html) == [self.reply_id]
        body = self.bodies[self.reply_id]
        assert body.shown == self.live.shown
        self.states.append((body.shown, body.html))

    def end(self) -> None:
        self.now += 1
        self.advance(flush=True)

    @property
    def page(self) -> Body:
        return self.bodies[self.reply_id]


def stream(text: str, cuts: list[int], seconds: float = 0.04) -> Stream:
    streamed = Stream()
    for start, end in itertools.pairwise([0, *sorted(set(cuts)), len(text)]):
        streamed.feed(text[start:end], seconds=seconds)
    streamed.end()
    return streamed


def demo(tokens: int) -> list[str]:
    return reply_text("Streaming", plan_for(f"Streaming [sim tokens={tokens}]", 50))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=12),
    st.lists(st.integers(min_value=1, max_value=400), max_size=40),
    st.sampled_from([0.01, 0.05, 0.3]),
)
def test_every_state_is_the_rendering_of_a_prefix_and_the_last_is_the_whole_reply(
    parts: list[str], cuts: list[int], seconds: float
) -> None:
    text = "".join(parts)
    streamed = stream(text, [c for c in cuts if c < len(text)], seconds)

    for shown, html in streamed.states:
        assert html == reply_html(text[:shown], DOM)
    assert streamed.states[-1] == (len(text), reply_html(text, DOM))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12), st.integers(min_value=0, max_value=2000))
def test_where_blocks_end_is_found_as_the_full_parse_finds_it(parts: list[str], cut: int) -> None:
    """The parse that finds a tail's complete blocks skips the text inside them."""
    text = "".join(parts)[:cut]

    def outline(tokens) -> list[tuple]:
        return [(t.type, t.map, t.level, t.nesting) for t in tokens]

    assert outline(markdown._blocks().parse(text)) == outline(markdown._markdown().parse(text))
    assert all(not t.children for t in markdown._blocks().parse(text))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12), st.integers(min_value=0, max_value=2000))
def test_complete_blocks_drawn_from_one_parse_are_drawn_as_alone(parts: list[str], cut: int) -> None:
    """A redraw parses its open text once (``Live._render``) and draws the complete
    blocks from that parse: the same HTML as parsing and drawing them alone."""
    text = "".join(parts)[:cut]
    complete = markdown._complete_blocks(text)
    parsed = markdown._markdown().parse(text, {"code": {}})
    assert markdown._complete_blocks(text, parsed) == complete
    before = markdown._blocks_before(parsed, text[:complete].count("\n"))
    assert markdown._render_tokens(before, {}) == (
        markdown.render_markdown(text[:complete]) if complete else ""
    )


def test_the_demo_reply_is_formatted_while_it_streams_and_only_ever_grows() -> None:
    tokens = demo(400)
    streamed = Stream()
    for token in tokens:
        streamed.feed(token)
    before_end = streamed.page.html
    streamed.end()
    text = "".join(tokens)

    read = [frames.text_of(html) for _, html in streamed.states]
    squeezed = [re.sub(r"\s+", "", t) for t in read]
    # What a person reads only grows at its end: nothing shrinks, moves or changes.
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(squeezed))
    # A heading, a list, a table and highlighted code, each before the reply ended.
    assert "<h2>Streaming</h2>" in before_end
    assert "<li>Each frame carries only <strong>new</strong> text.</li>" in before_end
    assert "<td><code>[DONE]</code></td>" in before_end
    assert '<pre class="highlight"><code class="language-python"><span class="k">def</span>' in before_end
    assert streamed.page.html == reply_html(text, DOM)


def test_an_open_fence_shows_as_code_at_once_and_is_highlighted_when_it_closes() -> None:
    streamed = Stream()
    streamed.feed("Here:\n\n```python\n")
    streamed.feed("def f(x):\n    return x < 1\n")
    opened = streamed.page.html
    assert f'<pre class="highlight"><code class="language-python" id="{DOM}-end">def f(x):' in opened
    assert "return x &lt; 1\n</code></pre>" in opened and '<span class="k">' not in opened
    streamed.feed("``")
    assert streamed.page.html == opened  # a line that may close the fence waits
    streamed.feed("`\n\nAfter.")
    streamed.feed("", seconds=0.3)  # what follows the closing line goes with the next frame
    closed = streamed.page.html
    assert '<pre class="highlight"><code class="language-python"><span class="k">def</span>' in closed
    assert ">After.</p>" in closed


def test_a_closed_code_block_is_highlighted_once_however_often_its_tail_is_drawn(monkeypatch) -> None:
    """Pygments runs once per code block of a reply: the closed block is drawn again with
    each redraw of the tail until the next block starts, and then as a block of its own."""
    highlighted = []
    highlight = markdown._highlight

    def counted(code: str, lang: str, attrs: str) -> str:
        highlighted.append(code)
        return highlight(code, lang, attrs)

    monkeypatch.setattr(markdown, "_highlight", counted)
    markdown._markdown.cache_clear()
    try:
        streamed = Stream()
        for token in demo(150):
            streamed.feed(token)
        streamed.feed("", seconds=0.3)
    finally:
        markdown._markdown.cache_clear()
    assert streamed.live.redraws > 3
    assert highlighted == [
        "def fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n"
        "        a, b = b, a + b\n    return a\n"
    ]
    assert streamed.page.html == reply_html(streamed.live.source, DOM)


def test_a_stopped_reply_keeps_its_open_fence_as_it_was_shown() -> None:
    streamed = Stream()
    for token in ["Code:\n\n", "```js\n", "let a", " = 1;\n", "let b"]:
        streamed.feed(token, seconds=0.3)
    shown = streamed.live.source[: streamed.live.shown]
    # What a stopped reply saves is what was shown; drawn again, it is the same.
    assert reply_html(shown, DOM) == streamed.page.html
    assert f'<code class="language-javascript" id="{DOM}-end">let a = 1;\nlet b</code>' in streamed.page.html


def test_hostile_markdown_split_anywhere_never_runs_or_loads_anything() -> None:
    hostile = (
        "<script>alert(1)</script> <img src=x onerror=alert(1)> [click](javascript:alert(1)) "
        "![pixel](https://tracker.example/p.png) <a href='javascript:alert(2)'>x</a> "
        "[data](data:text/html;base64,PHNjcmlwdD4=) <iframe src=//evil></iframe>"
    )
    for cut in range(1, len(hostile)):
        streamed = stream(hostile, [cut, cut + 3])
        for _, html in streamed.states:
            lowered = html.lower()
            assert "<script" not in lowered and "<img" not in lowered and "<iframe" not in lowered
            assert "javascript:" not in re.sub(r">[^<]*<", "><", lowered)  # only as text
            assert "onerror" not in re.sub(r">[^<]*<", "><", lowered)
            assert 'href="data:' not in lowered and 'tracker.example/p.png"' not in lowered


def test_reference_definitions_do_not_reach_back_into_blocks_already_shown() -> None:
    text = "See [docs].\n\nMore text here.\n\n[docs]: https://example.com\n"
    streamed = stream(text, list(range(1, len(text))))
    assert "<a " not in streamed.page.html and "[docs]" in streamed.page.html


def streamed_bytes(text: str) -> tuple[float, float]:
    """Streamed at 3 tokens a frame (75 tokens/s, 40 ms frames): the HTML of redrawn tails
    per byte of the final HTML, and bytes on the wire per character, through
    permessage-deflate's 8 KiB window as the page receives them."""
    tokens = re.findall(r"\s*\S+|\s+", text)
    streamed = Stream()
    for start in range(0, len(tokens), 3):
        streamed.feed("".join(tokens[start : start + 3]), seconds=0.04)
    streamed.end()
    final = reply_html(text, DOM)
    assert streamed.page.html == final
    assert max(len(html) for _, html in streamed.states[:-1]) > TAIL_CAP  # one long open block
    redrawn = sum(len(tail.group(3)) for f in streamed.frames if (tail := frames.TAIL.search(f)))
    deflate = zlib.compressobj(6, zlib.DEFLATED, -13)
    wire = sum(len(deflate.compress(f.encode()) + deflate.flush(zlib.Z_SYNC_FLUSH)) for f in streamed.frames)
    return redrawn / len(final), wire / len(text)


@pytest.mark.parametrize(
    ("block", "per_char"),
    [
        (lambda n: "```\n" + "".join(f"line {i} of a long code block\n" for i in range(n)) + "```\n", 1.2),
        (lambda n: "| n | square |\n|---|---|\n" + "".join(f"| {i} | {i * i} |\n" for i in range(n)), 2.5),
        (lambda n: "".join(f"- item number {i} of a very long list\n" for i in range(n)), 1.5),
        (lambda n: " ".join(f"word{i} **bold{i}** `code{i}`" for i in range(n)), 1.5),
    ],
    ids=["code-fence", "table", "list", "paragraph"],
)
def test_a_long_open_block_costs_bytes_linear_in_its_length(block, per_char: float) -> None:
    """Twice as long costs no more per character: what is re-sent is linear, not
    quadratic. (An open fence is sent once; a table's HTML is three times its text.)"""
    redrawn, wire = streamed_bytes(block(600))
    redrawn_twice, wire_twice = streamed_bytes(block(1200))
    assert redrawn_twice < 1.25 * redrawn + 0.5, (redrawn, redrawn_twice)
    assert wire_twice < 1.25 * wire + 0.1, (wire, wire_twice)
    assert wire_twice < per_char


def test_plain_text_goes_out_as_text_added_to_the_tail_without_a_render() -> None:
    streamed = Stream()
    for token in re.findall(r"\s*\S+", "The quick brown fox jumps over the lazy dog, again and again. " * 20):
        streamed.feed(token, seconds=0.04)
    appended = [f for f in streamed.frames if frames.APPEND.fullmatch(f)]
    assert len(appended) > 0.9 * len(streamed.frames)
    assert appended[1] == f'<div hx-swap-oob="beforeend:#{DOM}-end"> brown</div>'


def test_a_tables_header_is_drawn_as_one_before_its_delimiter_row_arrives() -> None:
    streamed = Stream()
    streamed.feed("| Dialect | End", seconds=0.3)
    assert "<th>Dialect</th>" in streamed.page.html and ">End</th>" in streamed.page.html
    assert "|" not in frames.text_of(streamed.page.html)  # never a paragraph of pipes
    streamed.feed(" signal |\n|---|:-:|\n| chat | `[DONE]` |\n", seconds=0.3)
    assert '<th class="align-center">End signal</th>' in streamed.page.html
    assert '<td class="align-center"><code>[DONE]</code></td>' in streamed.page.html


def lags_of(tokens: list[str], seconds: float = 0.04) -> list[float]:
    """How long each token waited to be shown, one token a frame."""
    streamed, waiting, lags, total = Stream(), [], [], 0
    for token in tokens:
        total += len(token)
        streamed.feed(token, seconds=seconds)
        waiting.append((total, streamed.now))
        lags += [streamed.now - at for end, at in waiting if end <= streamed.live.shown]
        waiting = [(end, at) for end, at in waiting if end > streamed.live.shown]
    return lags


def test_a_short_reply_is_formatted_at_the_pace_of_its_frames() -> None:
    """Within its redraw budget a reply's open block is drawn again with the next frame,
    so only what may still change (a ``**`` not yet closed, a link without its URL)
    waits: no token of the 150-token demo, headings, lists, a table, code and all, waits
    longer than two frames (a tail redrawn five times a second at most waited 0.2 s)."""
    lags = lags_of(demo(150))
    assert len(lags) == 150
    assert max(lags) <= 0.08 + 1e-9, sorted(lags)[-5:]


def test_an_open_emphasis_or_code_span_shows_its_words_as_they_come_drawn_closed() -> None:
    """No word waits for the ``*`` or backtick that closes what it is in: each is shown in
    the frame it arrived in, formatted, and added inside the element that formats it."""
    text = "Here is *a careful answer about the sky* and **bold words** and `a code span` too."
    tokens = re.findall(r"\s*\S+", text)
    assert max(lags_of(tokens)) == 0

    streamed = Stream()
    for token in tokens[:5]:  # "Here is *a careful answer"
        streamed.feed(token)
    assert f'<p>Here is <em id="{DOM}-end">a careful answer</em></p>' in streamed.page.html
    streamed.feed(" about")
    assert streamed.frames[-1] == f'<div hx-swap-oob="beforeend:#{DOM}-end"> about</div>'
    assert ">a careful answer about</em></p>" in streamed.page.html
    for token in tokens[6:10]:  # " the sky* and **bold"
        streamed.feed(token)
    assert "<em>a careful answer about the sky</em> and <strong" in streamed.page.html
    assert ">bold</strong></p>" in streamed.page.html
    for token in tokens[10:14]:  # " words** and `a code"
        streamed.feed(token)
    assert ">a code</code></p>" in streamed.page.html and "`" not in frames.text_of(streamed.page.html)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Then 5*3 is", "Then 5"),  # arithmetic: waits, as before
        ("Use `a *b` for", "Use <code>a *b</code> for"),  # a * in a code span: not emphasis
        ("Some **bold`and", "<p>Some</p>"),  # two open at once: waits for the rest
        ("```python", ""),  # a fence opening, not a code span
    ],
)
def test_a_star_or_backtick_that_may_not_open_anything_is_never_drawn_closed(text: str, shown: str) -> None:
    streamed = Stream()
    for token in re.findall(r"\s*\S+", text):
        streamed.feed(token)
    page = streamed.page.html
    assert "<em>" not in page and "<strong>" not in page
    assert shown in page and frames.text_of(page).strip() in frames.text_of(reply_html(text, DOM))


def test_a_long_reply_past_its_budget_is_redrawn_about_five_times_a_second() -> None:
    tokens = demo(3000)
    streamed = Stream()
    for token in tokens:
        streamed.feed(token)
    live = streamed.live
    budget = markdown.FREE_REDRAWS + len(live.source) // markdown.CHARS_PER_REDRAW
    paced = streamed.now / markdown.TAIL_INTERVAL
    assert budget < live.redraws <= budget + paced
    assert max(lags_of(tokens)) <= markdown.TAIL_INTERVAL + 0.04 + 1e-9


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=12),
    st.lists(st.integers(min_value=1, max_value=400), max_size=40),
    st.booleans(),
)
def test_a_replys_live_state_draws_exactly_what_rendering_its_text_draws(
    parts: list[str], cuts: list[int], ended: bool
) -> None:
    """The final frame of a reply that ended (or was stopped) here is drawn from its live
    state (``Live.html``): the blocks rendered as it streamed and its tail drawn again."""
    text = "".join(parts)
    streamed = Stream()
    for start, end in itertools.pairwise([0, *sorted({c for c in cuts if c < len(text)}), len(text)]):
        streamed.feed(text[start:end])
    if ended:
        streamed.end()
    shown = streamed.live.source[: streamed.live.shown]
    assert streamed.live.html() == reply_html(shown, DOM)


def test_a_busy_worker_redraws_at_the_slower_pace_only() -> None:
    """When the frame clock has slowed (``Runner.keeping_up`` is false), a redraw costs a
    busy worker what it can least spare: the budget waits, the pace stays."""
    live, now = Live(DOM), 0.0
    for token in demo(150):
        live.feed(token)
        now += 0.04
        live.advance(now=now, eager=False)
    assert live.redraws <= now / markdown.TAIL_INTERVAL + 1
