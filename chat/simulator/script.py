"""What the demo model says, and the directives that change how it says it.

A prompt may carry ``[sim key=value ...]`` (shell-style quoting). Keys:

- ``tokens``: reply length in tokens (default 400); ``tps``: tokens per second
- ``text``: say exactly this instead of the demo document
- ``first_token_delay``: seconds before the first token (a slow first token)
- ``keepalive``: while waiting for a token, send an SSE comment every this many seconds
- ``fail``: after ``after`` tokens (default 0), one of
  ``status`` (answer ``status``, default 503, with a JSON error body and ``retry_after``,
  seconds or a quoted HTTP date, as the ``Retry-After`` header), ``error`` (the dialect's
  error event), ``corrupt`` (a chunk that is not JSON, then carry on), ``truncate`` (end the
  body cleanly without the dialect's end signal), ``stall`` (send nothing more, holding the
  connection open) or ``disconnect`` (abort the connection);
  ``times``: fail only the first N requests with this prompt; ``message``: the error text
  of ``status`` and ``error`` (default: the demo's own; ``{key}`` in it echoes the API key)
- ``finish``: the finish reason to report (default ``stop``; ``length`` for a cut-off)
- ``style``: ``markdown`` (the demo document: headings, lists, a table, code) or ``plain``
  (prose paragraphs with no markup)
- ``reasoning``: think this many tokens before answering, streamed where the dialect
  carries thinking (``reasoning_content`` deltas for Chat Completions and MuAPI, reasoning
  summary events for the Responses API; the generic text-delta stream has none)
- ``newline``: ``lf`` | ``cr`` | ``crlf`` line endings; ``chunk``: write the stream in
  network chunks of this many bytes; ``bom``: start the stream with a byte-order mark
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

DIRECTIVE = re.compile(r"\[sim\s+([^\]]*)\]")
TOKEN = re.compile(r"\s*\S+|\s+")


@dataclass
class Plan:
    tokens: int = 400
    tps: float = 40.0
    text: str | None = None
    first_token_delay: float = 0.0
    keepalive: float = 0.0
    fail: str = ""
    after: int = 0
    status: int = 503
    retry_after: str = ""
    times: int = 0
    message: str = ""
    finish: str = "stop"
    newline: str = "lf"
    chunk: int = 0
    bom: bool = False
    style: str = "markdown"
    reasoning: int = 0


def plan_for(prompt: str, default_tps: float) -> Plan:
    plan = Plan(tps=default_tps)
    for match in DIRECTIVE.finditer(prompt):
        try:
            pairs = shlex.split(match.group(1))
        except ValueError:
            continue
        for pair in pairs:
            key, _, value = pair.partition("=")
            if not hasattr(plan, key):
                continue
            current = getattr(plan, key)
            if isinstance(current, bool):
                setattr(plan, key, value.lower() in {"1", "true", "yes"})
            elif isinstance(current, int):
                setattr(plan, key, int(value))
            elif isinstance(current, float):
                setattr(plan, key, float(value))
            else:
                setattr(plan, key, value)
    return plan


def strip_directives(prompt: str) -> str:
    return DIRECTIVE.sub("", prompt).strip()


SECTIONS = [
    "## {topic}\n\nHere is a careful answer about *{topic}*. Streaming replies arrive token by "
    "token, so the page shows text as soon as the model writes it.\n\n",
    "### Key points\n\n- Each frame carries only **new** text.\n- Stop closes the upstream "
    "connection.\n- A reload resumes the reply where it was.\n\n",
    "| Dialect | End signal |\n|---|---|\n| openai-chat | `[DONE]` |\n| openai-responses | "
    "`response.completed` |\n| text-delta | `finishReason` |\n\n",
    "```python\ndef fib(n: int) -> int:\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
    "    return a\n```\n\n",
    "> Numbers differ on every machine; ratios travel better.\n\nRead more at "
    "[the Django docs](https://docs.djangoproject.com/).\n\n",
    "1. Send a message.\n2. Watch it stream.\n3. Press **Stop** whenever you like.\n\n",
]


PLAIN_SECTIONS = [
    "Here is a careful answer about {topic}. Streaming replies arrive token by token, so the page "
    "shows text as soon as the model writes it, and a person can start reading at once.\n\n",
    "Each frame carries only the new text. Stop closes the upstream connection, and a reload "
    "resumes the reply where it was, with nothing lost and nothing shown twice.\n\n",
    "Numbers differ on every machine, so ratios travel better than absolute figures, and a "
    "median says more than a single run ever could.\n\n",
]


def reply_text(prompt: str, plan: Plan) -> list[str]:
    """The reply as tokens: the same for the same prompt, exactly ``plan.tokens`` long."""
    if plan.text is not None:
        return TOKEN.findall(plan.text)
    topic = strip_directives(prompt)[:60] or "your question"
    tokens: list[str] = []
    index = 0
    sections = PLAIN_SECTIONS if plan.style == "plain" else SECTIONS
    while len(tokens) < plan.tokens:
        tokens += TOKEN.findall(sections[index % len(sections)].format(topic=topic))
        index += 1
    return tokens[: plan.tokens]


# Thinking, with the characters a page must escape.
THINKING = (
    "The person asks about {topic}. Let me think: is 1 < 2 && 3 > 2? Yes. "
    "I should answer with a heading, a list and an example, and keep it short.\n\n"
)


def reasoning_text(prompt: str, plan: Plan) -> list[str]:
    """The model's thinking before its answer: exactly ``plan.reasoning`` tokens."""
    topic = strip_directives(prompt)[:60] or "your question"
    tokens: list[str] = []
    while len(tokens) < plan.reasoning:
        tokens += TOKEN.findall(THINKING.format(topic=topic))
    return tokens[: plan.reasoning]
