"""The relay benchmark in small (K=2, short replies, one worker, a fast phase of K=2), so
`make bench` cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import _before_after
from bench.run import ConfigRun, Options, _order, _turns, run_benchmark
from bench.stack import configs
from tests.servers import ROOT

PHASE_FIELDS = [
    "ttft_added_ms",
    "floor_ttft_added_ms",
    "token_latency_ms",
    "floor_token_latency_ms",
    "reply_time_ratio",
    "stop_latency_ms",
    "floor_stop_latency_ms",
    "bytes_per_char",
    "db_writes_per_reply",
    "cpu_seconds_per_1k_tokens",
    "memory_per_reply_kib",
    "integrity_mismatches",
    "upstream_connections_per_reply",
    "stopped_connections_reused",
]


def test_a_small_benchmark_relays_every_reply_intact(tmp_path: Path) -> None:
    options = Options(
        ks=[2], configs=["1w"], tokens=40, long_chars=[], fast_k=2, fast_tps=200, min_replies=2,
        stop_every=2, profile_k=0, probe=False, out=tmp_path, log=lambda *_: None,
    )  # fmt: skip
    result = run_benchmark(options)

    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["configs"][0]["name"] == "1w"
    [phase] = saved["configs"][0]["phases"]
    assert all(phase.get(name) is not None for name in PHASE_FIELDS), phase
    assert phase["integrity_mismatches"] == 0, phase["mismatch_examples"]
    assert phase["floor_integrity_mismatches"] == 0, phase["mismatch_examples"]
    # One client reads to the end, one presses Stop (on a busy machine its Stop may come
    # after the reply ended, or before it reached the upstream: both are intact outcomes).
    assert phase["completed"] + phase["stopped"] == 2 and phase["completed"] >= 1
    assert phase["stops_pressed"] <= 1 and phase["stop_latency_ms"]["n"] <= 1
    assert phase["token_latency_ms"]["n"] > 0 and phase["floor_token_latency_ms"]["n"] > 0
    # The simulator numbers the connections the relay's requests came on; a stopped
    # reply's connection is never handed to a later request.
    assert 0 < phase["upstream_connections_per_reply"] <= 1
    assert phase["stopped_connections_reused"] == 0
    # Where the cores went: the worker used some of the machine, which was busy at least
    # that much (the parts are each process's own count, the whole machine's is the kernel's).
    cores = phase["cores"]
    assert 0 < cores["workers"] <= cores["busy"] + 0.1 <= saved["machine"]["cores"] + 0.1, cores
    # The clients' CPU is this process's own (getrusage, to the microsecond); the
    # simulator's comes from /proc in clock ticks (10 ms), which a phase this small may
    # not reach, and every share is rounded to a hundredth of a core.
    assert phase["client_cpu_seconds"] > 0 and phase["simulator_cpu_seconds"] >= 0, phase
    assert cores["simulator"] >= 0 and cores["clients"] >= 0 and cores["steal"] >= 0, cores
    # The database thread, from the worker's /metrics: busy some of the phase, with a
    # send's trip and a few more a reply (its end, the sidebar, the socket's checks).
    thread = phase["database_thread"]
    assert 0 < thread["busy"] < 1 and thread["trips_per_reply"] >= 2, thread
    assert thread["send_held_ms"] > 0 and thread["send_wait_ms"] >= 0, thread
    # The garbage collector's passes in the worker, from its /metrics: the young
    # generation's at least, as every reply allocates.
    collector = phase["collector"]
    assert collector["passes"] > 0 and 0 < collector["paused"] < 1, collector
    assert collector["full"] == 0 or collector["full_longest_ms"] is not None, collector
    fast = saved["configs"][0]["fast"]
    assert fast["k"] == 2 and fast["tps"] == 200 and fast["integrity_mismatches"] == 0, fast
    assert len(result["targets"]) == 12
    markdown = (tmp_path / "latest.md").read_text()
    assert "| 1w | 2 (fast, 200 tok/s) |" in markdown
    assert markdown.startswith("Run of")
    assert "| 1w | 2 | " in markdown.split("Where the")[1]  # the cores' table
    assert "| 1w | 2 | " in markdown.split("database thread over")[1]  # the database thread's
    assert "| 1w | 2 | " in markdown.split("garbage collector's pauses")[1]
    assert (tmp_path / "latency.png").stat().st_size > 0


def test_the_trips_of_a_message_run_the_statements_the_benchmark_counts() -> None:
    """``python -m bench.trips`` (docs/benchmark.md) runs, and a message's trips to the
    database thread stay as many statements as they are now: the send's one trip 12
    (two of them the transaction's own; a first message asks whether its chat moves up
    the list, so that a title alone draws one link, not the sidebar), a reply's end 3, a
    socket's opening 6."""
    run = subprocess.run(
        [sys.executable, "-m", "bench.trips", "--rounds", "1", "--per-round", "2"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    trips = json.loads(run.stdout)
    assert trips["statements"] == {"send": 12, "end": 2, "open": 5}
    assert all(ms > 0 for ms in trips["ms"].values())


def test_a_tree_and_the_one_before_it_take_turns_going_first() -> None:
    """At every other K the earlier tree's phase runs first: which of a pair runs first
    sways its numbers, and always the same one first would tilt the comparison."""
    runs = [ConfigRun(c, {}, Options()) for c in configs(["1w", "2w"], ("HEAD", ROOT))]

    def order(i: int) -> list[str]:
        return [r.config.name for r in _turns(runs, i)]

    assert order(0) == ["1w", "1w-before", "2w"]
    assert order(1) == ["1w-before", "1w", "2w"]
    assert order(2) == order(0)
    assert [r.config.name for r in _turns(runs[2:], 1)] == ["2w"]  # no pair: as given


def test_the_pair_runs_again_at_the_noisy_ks_each_tree_first_in_turn() -> None:
    runs = [ConfigRun(c, {}, Options()) for c in configs(["1w", "2w"], ("HEAD", ROOT))]
    steps = _order(runs, Options(ks=[50, 200], pair_ks=[200], pairs=3))
    assert [(r.config.name, k, again) for r, k, again in steps] == [
        ("1w", 50, False), ("1w-before", 50, False), ("2w", 50, False),
        ("1w-before", 200, False), ("1w", 200, False), ("2w", 200, False),
        ("1w", 200, True), ("1w-before", 200, True),
        ("1w-before", 200, True), ("1w", 200, True),
    ]  # fmt: skip
    # Without the earlier tree there is no pair to repeat.
    assert len(_order(runs[:1] + runs[2:], Options(ks=[200], pair_ks=[200], pairs=3))) == 2


def test_the_before_after_table_gives_the_medians_of_the_pairs() -> None:
    def phase(k: int, ttft: float, cpu: float) -> dict:
        return {
            "k": k, "ttft_added_ms": {"p50": ttft}, "token_latency_p99_over_floor_ms": 50.0,
            "stop_latency_ms": {"p99": None}, "cpu_seconds_per_1k_tokens": cpu, "bytes_per_char": 1.0,
        }  # fmt: skip

    result = {
        "configs": [
            {"name": "1w", "phases": [phase(50, 9, 0.2), phase(200, 300, 0.19)],
             "repeats": [phase(200, 100, 0.18), phase(200, 120, 0.17)]},
            {"name": "1w-before", "label": "1 worker at abc1234", "ref": "abc1234",
             "phases": [phase(50, 8, 0.2), phase(200, 90, 0.2)],
             "repeats": [phase(200, 400, 0.21), phase(200, 250, 0.22)]},
        ]
    }  # fmt: skip
    table = "\n".join(_before_after(result))
    assert "the medians" in table
    assert "| 50 | 1 | 8.0 → 9.0 | +50 → +50 | – → – | 0.2 → 0.2 | 1 → 1 |" in table
    assert "| 200 | 3 | 250 → 120 | +50 → +50 | – → – | 0.21 → 0.18 | 1 → 1 |" in table
