"""From what the clients saw and the simulator recorded to the numbers in the report.

Per-token latency: the relay coalesces tokens into frames, so each token is attributed
to the frame (or socket read) that completed it, by cumulative character offsets
against the simulator's token boundaries; its latency is that arrival time minus the
simulator's emit time (``time.time()`` on the same machine).
"""

from __future__ import annotations

import html
import json
import math
import re
from bisect import bisect_left
from dataclasses import dataclass, field

from chat.simulator.script import plan_for, reply_text
from tests.frames import Body, apply, body_in

APPENDED_REPLY = re.compile(r'<article id="message-(\d+)" class="message assistant"')
FINAL = re.compile(r'<article id="message-(\d+)"[^>]*data-status="(\w+)"')
# Frames of a tree before live markdown (``--before``): text appended to a plain body.
LEGACY_DELTA = re.compile(r'<div hx-swap-oob="beforeend:#message-(\d+)-body">(.*)</div>', re.DOTALL)
LEGACY_SNAPSHOT = re.compile(r'<div id="message-(\d+)-body" hx-swap-oob="innerHTML">(.*)</div>', re.DOTALL)
LEGACY_PLAIN_BODY = re.compile(r'<div id="message-\d+-body" class="body plain">(.*?)</div>', re.DOTALL)
# A redraw of the whole thread, which repairs a page that missed frames the layer dropped.
THREAD = '<div id="messages" hx-swap-oob="innerHTML">'
REPLY_ARTICLE = re.compile(r'<article id="message-(\d+)" class="message assistant"[^>]*data-status="(\w+)"')
ENDED = {"complete", "cancelled", "error", "interrupted"}


def pct(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile ``q`` (0..100), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """p50, p99 and max, in milliseconds by default, and the sample count."""

    def scaled(v: float | None) -> float | None:
        return None if v is None else round(v * scale, 2)

    return {"p50": scaled(pct(values, 50)), "p99": scaled(pct(values, 99)),
            "max": scaled(max(values, default=None)), "n": len(values)}  # fmt: skip


def token_ends(prompt: str, tps: float) -> list[int]:
    """Cumulative character offsets at which each of the simulator's tokens ends."""
    ends, total = [], 0
    for token in reply_text(prompt, plan_for(prompt, tps)):
        total += len(token)
        ends.append(total)
    return ends


def token_latencies(ends: list[int], emitted: list[float], arrivals: list[tuple[float, int]]) -> list[float]:
    """For each emitted token, the arrival (time, cumulative chars) that completed it minus its emit."""
    latencies: list[float] = []
    cumulative = [n for _, n in arrivals]
    for end, emit in zip(ends, emitted, strict=False):
        i = bisect_left(cumulative, end)
        if i == len(arrivals):
            break
        latencies.append(arrivals[i][0] - emit)
    return latencies


def redrawn_reply(message: str) -> tuple[int, str, int] | None:
    """In a redraw of the thread, its last reply: id, status and where its article starts."""
    if not message.startswith(THREAD):
        return None
    found = list(REPLY_ARTICLE.finditer(message))
    return (int(found[-1].group(1)), found[-1].group(2), found[-1].start()) if found else None


def ends_reply(message: str) -> bool:
    """Whether a frame shows the reply ended: its final frame, or a redraw with it ended."""
    drawn = redrawn_reply(message)
    return message.startswith("<article") or (drawn is not None and drawn[1] in ENDED)


def ws_frame_bytes(payload: bytes) -> int:
    """Bytes of a server-to-client websocket frame: header plus unmasked payload."""
    n = len(payload)
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


@dataclass
class WsParsed:
    reply_id: int | None = None
    body: Body | None = None  # the reply's body as the page holds it (tests.frames)
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, chars shown)
    # What the page showed, of known length, frame by frame: to check against the reply.
    states: list[tuple[int, str]] = field(default_factory=list)
    # The text of a page of a tree before live markdown (``--before``), frame by frame.
    legacy_text: str | None = None
    legacy_final_plain: str | None = None
    status: str = ""
    final_body: Body | None = None
    final_frame: str = ""
    final_at: float = 0.0
    # Uncompressed: payloads plus frame headers, as they would travel without permessage-deflate.
    bytes_total: int = 0
    bytes_deltas: int = 0
    frames: int = 0
    snapshots: int = 0
    redraws: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def shown(self) -> int:
        return (self.body.shown or 0) if self.body else 0


def parse_ws(frames: list[tuple[float, str]]) -> WsParsed:
    parsed = WsParsed()
    for when, message in frames:
        payload = message.encode()
        parsed.frames += 1
        parsed.bytes_total += ws_frame_bytes(payload)
        if parsed.reply_id is None and (m := APPENDED_REPLY.search(message)):
            parsed.reply_id = int(m.group(1))
        if parsed.reply_id is None:
            continue
        if (drawn := redrawn_reply(message)) and drawn[0] == parsed.reply_id:
            parsed.redraws += 1
            _, status, start = drawn
            if status in ENDED:
                parsed.status, parsed.final_frame, parsed.final_at = status, message[start:], when
                parsed.final_body = body_in(message[start:], parsed.reply_id)
            else:
                # Drawn from the database: of unknown length until a snapshot follows.
                parsed.body = body_in(message[start:], parsed.reply_id)
                if plain := LEGACY_PLAIN_BODY.search(message, start):
                    parsed.legacy_text = html.unescape(plain.group(1))
        elif (m := FINAL.match(message)) and int(m.group(1)) == parsed.reply_id:
            parsed.status, parsed.final_frame, parsed.final_at = m.group(2), message, when
            parsed.final_body = body_in(message, parsed.reply_id)
            if plain := LEGACY_PLAIN_BODY.search(message):
                parsed.legacy_final_plain = html.unescape(plain.group(1))
        elif legacy := LEGACY_DELTA.fullmatch(message) or LEGACY_SNAPSHOT.fullmatch(message):
            if int(legacy.group(1)) != parsed.reply_id:
                continue
            text = html.unescape(legacy.group(2))
            if legacy.re is LEGACY_DELTA:
                parsed.bytes_deltas += ws_frame_bytes(payload)
                text = (parsed.legacy_text or "") + text
            else:
                parsed.snapshots += 1
            parsed.legacy_text = text
            parsed.arrivals.append((when, len(text)))
        else:
            bodies = {parsed.reply_id: parsed.body} if parsed.body else {}
            if parsed.reply_id not in apply(bodies, message):
                continue
            if message.startswith(f'<div id="message-{parsed.reply_id}-body"'):
                parsed.snapshots += 1
            else:
                parsed.bytes_deltas += ws_frame_bytes(payload)
            parsed.body = bodies[parsed.reply_id]
            if parsed.body.shown is not None:
                parsed.arrivals.append((when, parsed.body.shown))
                parsed.states.append((parsed.body.shown, parsed.body.html))
    return parsed


def parse_floor(reads: list[tuple[float, bytes]]) -> tuple[str, list[tuple[float, int]]]:
    """The text of a direct SSE stream, and when each part of it arrived."""
    raw, body, text = b"", b"", ""
    arrivals: list[tuple[float, int]] = []
    in_body = False
    for when, data in reads:
        raw += data
        if not in_body:
            if b"\r\n\r\n" not in raw:
                continue
            raw, in_body = raw.split(b"\r\n\r\n", 1)[1], True
        while (line_end := raw.find(b"\r\n")) >= 0:  # de-chunk what is complete
            size = int(raw[:line_end].split(b";")[0] or b"0", 16)
            if len(raw) < line_end + 2 + size + 2:
                break
            body += raw[line_end + 2 : line_end + 2 + size]
            raw = raw[line_end + 4 + size :]
        before = len(text)
        while b"\n\n" in body:
            event, body = body.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices") or []:
                    text += (choice.get("delta") or {}).get("content") or ""
        if len(text) > before:
            arrivals.append((when, len(text)))
    return text, arrivals
