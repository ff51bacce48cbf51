"""What a worker reports at ``/metrics``, in Prometheus' text format (prometheus_client).

Each worker keeps and serves its own: scrape every worker on its own port, as nginx
balances ``/`` across them (README, Scale-out). Labels are bounded by configuration
(statuses, providers, models, kinds of error), never by people or conversations.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Summary

REPLIES_STARTED = Counter("chat_replies_started", "Replies started on this worker.", ["provider", "model"])
REPLIES_ENDED = Counter(
    "chat_replies_ended", "Replies ended on this worker, by how.", ["status", "provider", "model"]
)
REPLIES_ACTIVE = Gauge("chat_replies_active", "Replies generating on this worker now.")
SOCKETS_OPEN = Gauge("chat_sockets_open", "Chat pages connected to this worker now.")
FIRST_TOKEN = Histogram(
    "chat_first_token_seconds",
    "From a reply's start to its first text from the upstream.",
    ["provider", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
REPLY_DURATION = Histogram(
    "chat_reply_duration_seconds",
    "From a reply's start to its end.",
    ["provider", "model"],
    buckets=(1, 2, 5, 10, 20, 40, 80, 160, 320, 600),
)
TOKENS_RELAYED = Counter("chat_text_pieces_relayed", "Pieces of text (upstream tokens) relayed to pages.")
UPSTREAM_ERRORS = Counter("chat_upstream_errors", "Upstream failures, by kind.", ["kind"])
UPSTREAM_RETRIES = Counter("chat_upstream_retries", "Upstream requests tried again.")
LOOP_LAG = Gauge("chat_event_loop_lag_seconds", "How late the frame clock last woke: the event loop's lag.")
# The worker's database thread (``chat.database``), by kind of trip: the function run.
DATABASE_WAIT = Summary(
    "chat_database_wait_seconds", "How long trips waited for the worker's database thread.", ["trip"]
)
DATABASE_TRIP = Summary(
    "chat_database_trip_seconds",
    "How long trips held the worker's database thread (its busy seconds, by trip).",
    ["trip"],
)
FRAMES_DROPPED = Counter(
    "chat_frames_dropped", "Frames to pages on other workers the channel layer refused (full)."
)
FRAMES_REPAIRED = Counter(
    "chat_frames_repaired", "Repairs pages made of what they missed, by kind.", ["kind"]
)


def error_kind(message: str) -> str:
    """A bounded label for an upstream failure, from its message (``chat.upstream``)."""
    for needle, kind in (
        ("answered", "status"),
        ("could not connect", "connect"),
        ("connecting to the upstream timed out", "connect"),
        ("sent nothing for", "stall"),
        ("dropped", "dropped"),
        ("ended early", "ended_early"),
        ("not valid JSON", "bad_chunk"),
        ("longer than", "deadline"),
    ):
        if needle in message:
            return kind
    return "error_event"
