"""One phase's numbers: the relay's replies beside the floor's, and what each cost.

Integrity is checked three ways for every relayed reply: the text the client received,
the text persisted, and the text the simulator sent (all equal for a complete reply; for
a stopped one the client's and the persisted text are equal and a prefix of the
simulator's, and so is the final frame's body).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.analysis import WsParsed, parse_floor, parse_ws, summary, token_ends, token_latencies
from bench.clients import FloorRun, WsRun
from chat.markdown import reply_html


@dataclass
class Costs:
    """What the relay's worker processes spent on the phase."""

    cpu_seconds: float
    rss_baseline: int
    rss_peak: int
    sim_cpu_seconds: float
    client_cpu_seconds: float
    worker_errors: int
    floor_sim_cpu_seconds: float = 0.0
    floor_client_cpu_seconds: float = 0.0
    # The relay phase's length, and what the whole machine spent in it: with the parts
    # above, where its cores went (``cores``).
    wall_seconds: float = 0.0
    machine_busy_seconds: float = 0.0
    machine_steal_seconds: float = 0.0

    def cores(self) -> dict[str, float] | None:
        """Cores in use on average over the relay phase: the workers, the simulator, the
        clients, the rest (Redis, PostgreSQL, the system), and what the hypervisor took."""
        if self.wall_seconds <= 0:
            return None
        parts = {
            "workers": self.cpu_seconds,
            "simulator": self.sim_cpu_seconds,
            "clients": self.client_cpu_seconds,
        }
        rest = max(self.machine_busy_seconds - sum(parts.values()), 0.0)
        each = {**parts, "rest": rest, "busy": self.machine_busy_seconds, "steal": self.machine_steal_seconds}
        return {name: round(seconds / self.wall_seconds, 2) for name, seconds in each.items()}


# The trip a message's send makes to the database thread (``chat.services._checked_write``):
# its first token waits for it.
SEND_TRIP = "_checked_write"


def database_thread(
    before: list[dict[str, dict[str, float]]],
    after: list[dict[str, dict[str, float]]],
    wall: float,
    replies: int,
) -> dict[str, Any] | None:
    """The workers' database threads over a relay phase, from their ``/metrics`` before
    and after it: the share of the phase each thread was busy (on average over the
    workers), trips a reply, and what a trip, and a send's trip, waited for the thread
    and held it, in ms on average. None for a tree that does not time its trips."""
    if not any(after) or wall <= 0 or not replies:
        return None
    totals: dict[str, dict[str, float]] = {}
    for start, end in zip(before, after, strict=True):
        for trip, now in end.items():
            was = start.get(trip, {})
            into = totals.setdefault(trip, {})
            for kind, value in now.items():
                into[kind] = into.get(kind, 0.0) + value - was.get(kind, 0.0)

    def each(kind: str, trips: list[dict[str, float]]) -> float | None:
        count = sum(t.get("trips", 0.0) for t in trips)
        return round(1000 * sum(t.get(kind, 0.0) for t in trips) / count, 2) if count else None

    every = list(totals.values())
    send = [totals[SEND_TRIP]] if SEND_TRIP in totals else []
    return {
        "busy": round(sum(t.get("held", 0.0) for t in every) / (wall * len(after)), 3),
        "trips_per_reply": round(sum(t.get("trips", 0.0) for t in every) / replies, 2),
        "wait_ms": each("waited", every),
        "held_ms": each("held", every),
        "send_wait_ms": each("waited", send),
        "send_held_ms": each("held", send),
        # Each kind of trip, the longest held first: seconds held (all workers), trips a reply.
        "busiest": sorted(
            (
                (trip, round(t.get("held", 0.0), 3), round(t.get("trips", 0.0) / replies, 2))
                for trip, t in totals.items()
            ),
            key=lambda x: -x[1],
        )[:8],
    }


def collector_pauses(
    before: list[dict[str, dict[str, Any]]], after: list[dict[str, dict[str, Any]]], wall: float
) -> dict[str, Any] | None:
    """The garbage collector's pauses in the workers over a relay phase, from their
    ``/metrics`` before and after it: every pass, and the full ones (generation 2) apart,
    which walk every object a worker holds. ``paused``: the share of the phase a worker
    was stopped (on average over the workers); ``full_longest_ms``: the longest full
    pass took at most this (its bucket's bound; None: none ran). None for a tree that
    does not time them."""
    if not any(after) or wall <= 0:
        return None

    def added(generation: str, key: str, bucket: str | None = None) -> float:
        """What the phase added to a generation's ``key`` (or to one of its buckets)."""

        def value(scraped: dict[str, dict[str, Any]]) -> float:
            counts = scraped.get(generation, {})
            return counts.get(key, 0.0) if bucket is None else counts.get("buckets", {}).get(bucket, 0.0)

        return sum(value(end) - value(start) for start, end in zip(before, after, strict=True))

    generations = ("0", "1", "2")
    paused = sum(added(g, "sum") for g in generations)
    full = added("2", "count")
    # The first bucket (bounds ascending, "+Inf" last) that holds every full pass of the phase.
    bounds = [
        b for b in after[0].get("2", {}).get("buckets", {}) if full and added("2", "", bucket=b) == full
    ]
    longest = None if not bounds else "> 1000" if bounds[0] == "+Inf" else round(1000 * float(bounds[0]), 1)
    return {
        "passes": int(sum(added(g, "count") for g in generations)),
        "paused": round(paused / (wall * len(after)), 4),
        "paused_ms": round(1000 * paused, 1),
        "full": int(full),
        "full_ms": round(1000 * added("2", "sum"), 1),
        "full_longest_ms": longest,
    }


@dataclass
class Tally:
    ttft_added: list[float] = field(default_factory=list)
    to_upstream: list[float] = field(default_factory=list)  # send -> the simulator has the request
    token_latency: list[float] = field(default_factory=list)
    stop_latency: list[float] = field(default_factory=list)
    reply_time: list[float] = field(default_factory=list)  # send -> the last character, unstopped replies
    mismatches: list[str] = field(default_factory=list)
    stops_pressed: int = 0
    stops_before_upstream: int = 0  # cancelled before the simulator had the request
    stops_too_late: int = 0  # pressed, yet the reply ran to its end
    reply_seconds: float = 0.0  # the upstream's streaming time, summed over replies
    tail_chars: list[int] = field(default_factory=list)  # reply text that came only in the final frame
    tokens: int = 0
    completed: int = 0
    stopped: int = 0


def holds(result: dict[str, Any]) -> bool:
    """Every reply intact and relay p99 per-token latency within 60 ms of the floor's."""
    over = result["token_latency_p99_over_floor_ms"]
    return result["integrity_mismatches"] == 0 and over is not None and over <= 60


def by_prompt(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The request that streamed each prompt's reply: the first with tokens, else the first.

    The app may ask the upstream again with the same message (a title for a new
    conversation, after its first reply); those start later, so they never win here.
    """
    found: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r["started_at"]):
        current = found.get(record["prompt"])
        if current is None or (not current["token_times"] and record["token_times"]):
            found[record["prompt"]] = record
    return found


def _common(tally: Tally, run: WsRun | FloorRun, record: dict[str, Any] | None,
            text: str, arrivals: list[tuple[float, int]], tps: float) -> None:  # fmt: skip
    tally.stops_pressed += run.stop_at is not None
    if record is None:
        if run.stop_at is None:  # a reply stopped before it reached the upstream has no request
            tally.mismatches.append(f"#{run.index}: the simulator never saw the request")
        return
    tally.tokens += len(record["token_times"])
    if record.get("ended_at"):
        tally.reply_seconds += record["ended_at"] - record["started_at"]
    if arrivals and record["token_times"]:
        own = record["token_times"][0] - record["started_at"]
        tally.ttft_added.append(arrivals[0][0] - run.sent_at - own)
    tally.to_upstream.append(record["started_at"] - run.sent_at)
    ends = token_ends(run.prompt, tps)
    tally.token_latency += token_latencies(ends, record["token_times"], arrivals)
    if run.stop_at is None and arrivals:
        tally.reply_time.append(arrivals[-1][0] - run.sent_at)
    closed = record.get("client_closed_at")
    if run.stop_at is not None and record["outcome"] == "client closed" and closed and closed >= run.stop_at:
        tally.stop_latency.append(closed - run.stop_at)
    if not record["text"].startswith(text):
        tally.mismatches.append(f"#{run.index}: received text is not the upstream's")
    if run.stop_at is None and text != record["text"]:
        tally.mismatches.append(f"#{run.index}: received {len(text)} of {len(record['text'])} characters")


def _received(
    parsed: WsParsed, record: dict[str, Any] | None, saved: dict[str, Any], tally: Tally
) -> tuple[str, list[tuple[float, int]], list[str]]:
    """The text the page ends up with, checked against the database and the upstream.

    The last frame is the persisted message: it must be the server's own rendering of that
    row, and its body the rendering of the reply's text. Every state the page showed while
    streaming must be the rendering of a prefix of that text (checked for each state of a
    short reply; of a long one, every 25th and the last, since each check renders). Text the
    frames never carried arrived with the final frame.
    """
    problems = list(parsed.problems)
    arrivals = list(parsed.arrivals)
    if not parsed.final_frame.startswith((saved["final_html"], saved["drawn_html"])):
        problems.append("the final frame is not the persisted reply")
    upstream = record["text"] if record else ""
    final = upstream if saved["status"] == "complete" else saved["content"]
    dom_id = f"message-{parsed.reply_id}"
    states = parsed.states if len(final) < 4000 else parsed.states[::25] + parsed.states[-1:]
    if saved["status"] == "complete" and saved["content"] != upstream:
        problems.append(f"persisted {len(saved['content'])} characters, upstream sent {len(upstream)}")
    elif parsed.legacy_text is not None:
        # A tree before live markdown (--before): its frames carry the text itself.
        if parsed.legacy_final_plain is not None and parsed.legacy_final_plain != saved["content"]:
            problems.append("the final frame's text is not the persisted text")
        elif not final.startswith(parsed.legacy_text):
            problems.append(f"streamed {len(parsed.legacy_text)} characters that are not the reply's")
        elif len(parsed.legacy_text) < len(final):
            tally.tail_chars.append(len(final) - len(parsed.legacy_text))
            arrivals.append((parsed.final_at, len(final)))
    elif parsed.final_body is None or parsed.final_body.html != reply_html(saved["content"], dom_id):
        problems.append("the final frame's body is not the persisted text")
    elif any(n > len(final) or html != reply_html(final[:n], dom_id) for n, html in states):
        problems.append("the page showed a state that is not the reply's")
    elif parsed.shown < len(final):
        tally.tail_chars.append(len(final) - parsed.shown)
        arrivals.append((parsed.final_at, len(final)))
    return final, arrivals, problems


def relay_tally(
    runs: list[WsRun], records: list[dict[str, Any]], db: dict[str, Any], tps: float
) -> tuple[Tally, dict]:
    tally, prompts = Tally(), by_prompt(records)
    upstream_tokens = sum(len(r["token_times"]) for r in records)
    bytes_wire = bytes_total = bytes_deltas = chars = snapshots = redraws = 0
    writes: list[int] = []
    excess: list[float] = []
    for run in runs:
        if run.error or not run.done:
            tally.mismatches.append(f"#{run.index}: {run.error or 'no final frame'}")
            continue
        parsed = parse_ws(run.frames)
        record = prompts.get(run.prompt)
        snapshots += parsed.snapshots
        redraws += parsed.redraws
        saved = db["replies"].get(str(parsed.reply_id))
        if saved is None:
            tally.mismatches.append(f"#{run.index}: reply {parsed.reply_id} is not in the database")
            continue
        text, arrivals, problems = _received(parsed, record, saved, tally)
        tally.mismatches += [f"#{run.index}: {p}" for p in problems]
        _common(tally, run, record, text, arrivals, tps)
        if saved["status"] == "complete":
            tally.completed += 1
            if text:  # the whole reply, whether deltas or the final frame brought its end
                bytes_wire += run.wire_bytes
                bytes_total += parsed.bytes_total
                bytes_deltas += parsed.bytes_deltas
                chars += len(text)
            tally.stops_too_late += run.stop_at is not None
        elif saved["status"] == "cancelled" and run.stop_at is not None:
            tally.stopped += 1
            tally.stops_before_upstream += record is None
        else:
            tally.mismatches.append(f"#{run.index}: reply ended {saved['status']}")
        writes.append(saved["writes"])
        if record is not None and record.get("ended_at"):
            # The reply's row exists, and beats once a second, from the send: in a busy
            # worker its request may wait seconds before the upstream has it.
            excess.append(saved["writes"] - (record["ended_at"] - run.sent_at))
    extra = {
        "bytes_per_char": round(bytes_wire / chars, 3) if chars else None,
        "uncompressed_bytes_per_char": round(bytes_total / chars, 3) if chars else None,
        "delta_bytes_per_char": round(bytes_deltas / chars, 3) if chars else None,
        "reply_chars_mean": round(chars / max(1, tally.completed)),
        "db_writes_per_reply": round(sum(writes) / len(writes), 2) if writes else None,
        "db_writes_per_reply_max": max(writes, default=None),
        "db_writes_all_rows_per_reply": round(db["writes_total"] / len(runs), 2) if runs else None,
        "db_writes_minus_seconds_max": round(max(excess), 2) if excess else None,
        "snapshots": snapshots,
        "redraws": redraws,
        "upstream_requests_per_reply": round(len(records) / len(runs), 2) if runs else None,
        **keep_alive(records),
        "upstream_tokens_not_relayed": upstream_tokens - tally.tokens,
        "replies_with_tail_only_in_final_frame": len(tally.tail_chars),
        "tail_chars_mean": round(sum(tally.tail_chars) / len(tally.tail_chars), 1) if tally.tail_chars else 0,
    }
    return tally, extra


def keep_alive(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How the relay used its upstream connections, from the simulator's connection numbers.

    ``records`` are the relay's requests only (the floor's are reset away before it) and
    include the title requests the app makes after a first reply: they go through the
    same connection pool, so a title request on a reply's connection is reuse too.
    ``upstream_connections_per_reply`` is distinct connections over those requests: 1
    when every request opened a connection of its own, lower the more they were reused.
    A connection the client closed on a reply (Stop: outcome "client closed") must never
    carry a later request; ``stopped_connections_reused`` counts those that did.
    """
    if not records or any(r.get("connection") is None for r in records):
        # No requests, or a simulator that does not number its connections: nothing to say.
        return {"upstream_requests": len(records), "upstream_connections": None,
                "upstream_connections_per_reply": None, "stopped_connections_reused": None}  # fmt: skip
    last_start: dict[int, float] = {}
    for r in records:
        last_start[r["connection"]] = max(last_start.get(r["connection"], 0.0), r["started_at"])
    stopped = [r for r in records if r["outcome"] == "client closed"]
    reused = sum(1 for r in stopped if last_start[r["connection"]] > r["started_at"])
    return {
        "upstream_requests": len(records),
        "upstream_connections": len(last_start),
        "upstream_connections_per_reply": round(len(last_start) / len(records), 3),
        "stopped_connections_reused": reused,
    }


def floor_tally(runs: list[FloorRun], records: list[dict[str, Any]], tps: float) -> Tally:
    tally, prompts = Tally(), by_prompt(records)
    for run in runs:
        if run.error or not run.done:
            tally.mismatches.append(f"floor #{run.index}: {run.error or 'stream did not end'}")
            continue
        text, arrivals = parse_floor(run.reads)
        _common(tally, run, prompts.get(run.prompt), text, arrivals, tps)
        if run.stop_at is None:
            tally.completed += 1
        else:
            tally.stopped += 1
    return tally


def phase_result(
    k: int, rounds: int, relay: Tally, extra: dict, floor: Tally, costs: Costs
) -> dict[str, Any]:
    relay_tokens = summary(relay.token_latency)
    floor_tokens = summary(floor.token_latency)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    return {
        "k": k,
        "rounds": rounds,
        "replies": k * rounds,
        "completed": relay.completed,
        "stopped": relay.stopped,
        "ttft_added_ms": summary(relay.ttft_added),
        "floor_ttft_added_ms": summary(floor.ttft_added),
        "send_to_upstream_ms": summary(relay.to_upstream),
        "token_latency_ms": relay_tokens,
        "floor_token_latency_ms": floor_tokens,
        "token_latency_p99_over_floor_ms": (
            round(relay_tokens["p99"] - floor_tokens["p99"], 2)
            if relay_tokens["p99"] is not None and floor_tokens["p99"] is not None else None
        ),
        "reply_time_ms": (relay_time := summary(relay.reply_time)),
        "floor_reply_time_ms": (floor_time := summary(floor.reply_time)),
        "reply_time_ratio": {"p50": ratio(relay_time["p50"], floor_time["p50"]),
                             "p99": ratio(relay_time["p99"], floor_time["p99"])},
        "stop_latency_ms": summary(relay.stop_latency),
        # Stops whose close reached the simulator while it still streamed (the others came too late).
        "stops_pressed": relay.stops_pressed,
        "stops_before_upstream": relay.stops_before_upstream,
        "stops_too_late": relay.stops_too_late,
        "floor_stop_latency_ms": summary(floor.stop_latency),
        **extra,
        "tokens_relayed": relay.tokens,
        "cpu_seconds": round(costs.cpu_seconds, 2),
        "cpu_seconds_per_1k_tokens": round(costs.cpu_seconds / max(1, relay.tokens) * 1000, 3),
        # CPU per second of a streaming reply: K times this is the cores the relay needs at K.
        "cpu_ms_per_reply_second": round(costs.cpu_seconds * 1000 / relay.reply_seconds, 2)
        if relay.reply_seconds
        else None,
        "simulator_cpu_seconds": round(costs.sim_cpu_seconds, 2),
        "client_cpu_seconds": round(costs.client_cpu_seconds, 2),
        "floor_simulator_cpu_seconds": round(costs.floor_sim_cpu_seconds, 2),
        "floor_client_cpu_seconds": round(costs.floor_client_cpu_seconds, 2),
        "cores": costs.cores(),
        "rss_baseline_mib": round(costs.rss_baseline / 2**20, 1),
        "rss_peak_mib": round(costs.rss_peak / 2**20, 1),
        "memory_per_reply_kib": round((costs.rss_peak - costs.rss_baseline) / 1024 / k, 1),
        "worker_log_errors": costs.worker_errors,
        "integrity_mismatches": len(relay.mismatches),
        "floor_integrity_mismatches": len(floor.mismatches),
        "mismatch_examples": (relay.mismatches + floor.mismatches)[:10],
    }  # fmt: skip
