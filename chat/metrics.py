"""What a worker reports at ``/metrics``, in Prometheus' text format (prometheus_client).

Each worker keeps and serves its own: scrape every worker on its own port, as nginx
balances ``/`` across them (README, Scale-out). Labels are bounded by configuration
(statuses, providers, models, kinds of error), never by people or conversations.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Summary
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

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


class CollectorPauses(Collector):
    """``chat_gc_pause_seconds``: how long Python's cyclic garbage collector stopped the
    worker, by generation (2 is a full collection, which walks every object the worker
    holds). A pass holds the GIL, so it stops the event loop and every frame with it.

    Timed from ``gc.callbacks`` into plain numbers, read at scrape time: a callback runs
    wherever an allocation set the collector off, which may be inside prometheus_client
    holding one of its (non-reentrant) locks, so it must not call into it.
    """

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

    def __init__(self) -> None:
        self._started = 0.0
        # Per generation: a count per bucket (the last for longer than every bound), the sum.
        self._counts = [[0] * (len(self.BUCKETS) + 1) for _ in range(3)]
        self._sums = [0.0, 0.0, 0.0]

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
            REGISTRY.register(self)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = info["generation"]
        self._counts[generation][bisect_left(self.BUCKETS, seconds)] += 1
        self._sums[generation] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "chat_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector, by generation (2: a full collection).",
            labels=["generation"],
        )
        for generation, counts in enumerate(self._counts):
            running, buckets = 0, []
            for bound, count in zip((*self.BUCKETS, float("inf")), counts, strict=True):
                running += count
                buckets.append((str(bound) if bound != float("inf") else "+Inf", running))
            family.add_metric([str(generation)], buckets, self._sums[generation])
        yield family


COLLECTOR_PAUSES = CollectorPauses()
