"""The benchmark's outputs: JSON, a markdown table, a PNG of latency against K, verdicts."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.metrics import holds
from tests.servers import ROOT

DOC = ROOT / "docs" / "benchmark.md"
DOC_PLOT = ROOT / "docs" / "bench-latency.png"
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"


def _entry(result: dict[str, Any], config: str) -> dict[str, Any] | None:
    return next((e for e in result["configs"] if e["name"] == config), None)


def _phase(result: dict[str, Any], config: str, k: int) -> dict[str, Any] | None:
    entry = _entry(result, config)
    return None if entry is None else next((p for p in entry["phases"] if p["k"] == k), None)


def _extra_phases(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A configuration's phases beside its K list: the fast model's, the long replies'."""
    return [entry[key] for key in ("fast", "long_replies") if entry.get(key)]


def _held(p: dict[str, Any]) -> bool:
    return p["holds"] if "holds" in p else holds(p)


# What the fast-model target names when the run had no fast phase (bench.run's defaults).
FAST_K, FAST_TPS = 20, 200.0


def fast_label(p: dict[str, Any]) -> str:
    return f"(fast, {p.get('tps', FAST_TPS):g} tok/s)"


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured value and whether it held (None: not measured)."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, held: bool | None) -> None:
        rows.append({"target": name, "measured": value, "held": held})

    def latency(p: dict[str, Any]) -> str:
        over = p["token_latency_p99_over_floor_ms"]
        over_text = "–" if over is None else f"+{over}"
        return f"p99 {over_text} ms over the floor, {p['integrity_mismatches']} mismatches"

    k1, k100, k200 = (_phase(result, "1w", k) for k in (1, 100, 200))
    add("one worker holds K=200 (p99 per-token within 60 ms of the floor, zero mismatches)",
        k200 and latency(k200), k200 and _held(k200))  # fmt: skip
    cpu = k200 and k200["cpu_seconds_per_1k_tokens"]
    add("CPU per 1,000 relayed tokens <= 0.1 s at K=200, 1 worker",
        None if cpu is None else f"{cpu} s", None if cpu is None else cpu <= 0.1)  # fmt: skip
    for k, p, limit in ((1, k1, 15), (100, k100, 25)):
        ttft = p and p["ttft_added_ms"]["p50"]
        add(f"added time to first token p50 < {limit} ms at K={k}",
            None if ttft is None else f"{ttft} ms", None if ttft is None else ttft < limit)  # fmt: skip
    stop_target = "Stop p99 < 100 ms at K=200 (upstream sees its connection close)"
    if k200 is None:
        add(stop_target, None, None)
    else:
        # A Stop that took effect before the upstream had the request has no latency to
        # measure and cost nothing; one pressed while the reply then ran to its end failed.
        stop, late = k200["stop_latency_ms"], k200["stops_too_late"]
        measured = [f"{stop['p99']} ms over {stop['n']} measured"] if stop["n"] else ["none measured"]
        measured.append(f"{k200['stops_before_upstream']} before the upstream had the request")
        measured.append(f"{late} of {k200['stops_pressed']} too late to stop the reply")
        held = late == 0 and (stop["p99"] is None or stop["p99"] < 100)
        add(stop_target, "; ".join(measured), held)
    one = _entry(result, "1w")
    for name, scale_target in [
        ("2w", "two workers hold at least 1.8 times the K one worker holds"),
        ("2w-shared", "two workers on one port (make run WORKERS=2: Redis, SQLite) hold 1.8 times as much"),
    ]:
        two = _entry(result, name)
        if one is None or two is None or two.get("skipped") or "largest_k_held" not in two:
            skipped = two.get("skipped") if two else None
            add(scale_target, f"{name} skipped: {skipped}" if skipped else None, None)
            continue
        # None held counts as 0; when neither held any K there is no ratio to judge.
        a, b = one.get("largest_k_held") or 0, two.get("largest_k_held") or 0
        ratio = round(b / a, 2) if a else None
        measured = f"1w: {a or 'none'}, {name}: {b or 'none'} (ratio {'–' if ratio is None else ratio})"
        add(scale_target, measured, ratio >= 1.8 if ratio is not None else (True if b else None))
    fast = one and one.get("fast")
    k, tps = (fast["k"], fast.get("tps", FAST_TPS)) if fast else (FAST_K, FAST_TPS)
    add(f"a fast model: K={k} replies at {tps:g} tokens/s hold on one worker",
        fast and latency(fast), fast and _held(fast))  # fmt: skip
    # The worst of the longest reply of each style (markdown, plain prose).
    longest_of: dict[str, dict] = {}
    for entry in result["configs"]:
        for row in (entry.get("long_replies") or {}).get("per_reply", []):
            style = row.get("style", "markdown")
            if style not in longest_of or row["chars"] > longest_of[style]["chars"]:
                longest_of[style] = row
    longest = max(longest_of.values(), key=lambda row: row["bytes_per_char"], default=None)
    add("bytes per character <= 1.5 on a 20,000-character reply",
        None if longest is None else f"{longest['bytes_per_char']} ({longest['chars']} chars)",
        None if longest is None else longest["bytes_per_char"] <= 1.5)  # fmt: skip
    # This tree's configurations: the earlier tree's rows are there to compare with.
    phases = [
        p for e in result["configs"] if e["name"] != "1w-before" for p in [*e["phases"], *_extra_phases(e)]
    ]
    excess = [p["db_writes_minus_seconds_max"] for p in phases]
    excess = [value for value in excess if value is not None]
    worst = max(excess, default=None)
    add(
        "at most one DB write per second of reply plus a constant (constant <= 5)",
        None if worst is None else f"writes - seconds <= {worst}",
        None if worst is None else worst <= 5,
    )
    bad = sum(p["integrity_mismatches"] for p in phases)
    add("zero integrity mismatches at every K and in every configuration",
        f"{bad} mismatches in {len(phases)} phases", bad == 0 if phases else None)  # fmt: skip
    add("upstream connections kept alive and reused; a stopped reply's connection never reused",
        *_keep_alive([*one["phases"], *_extra_phases(one)] if one else []))  # fmt: skip
    return rows


def _keep_alive(phases: list[dict[str, Any]]) -> tuple[str | None, bool | None]:
    """Over the phases given: requests, the connections they came on, stopped ones reused."""
    counted = [p for p in phases if p.get("upstream_connections") is not None]
    if not counted:
        return None, None
    requests = sum(p["upstream_requests"] for p in counted)
    connections = sum(p["upstream_connections"] for p in counted)
    reused = sum(p["stopped_connections_reused"] for p in counted)
    per = round(connections / requests, 3)
    measured = (f"{requests} upstream requests on {connections} connections ({per} per request); "
                f"{reused} stopped replies' connections reused")  # fmt: skip
    return measured, per < 1 and reused == 0


def one_line(p: dict[str, Any], label: str = "") -> str:
    return (
        f"K={p['k']}{' ' + label if label else ''}: ttft+ p50 {p['ttft_added_ms']['p50']} ms, "
        f"token p99 {p['token_latency_ms']['p99']} ms "
        f"(floor {p['floor_token_latency_ms']['p99']}), stop p99 {p['stop_latency_ms']['p99']} ms, "
        f"{p['bytes_per_char']} B/char, {p['cpu_seconds_per_1k_tokens']} cpu-s/1k tok, "
        f"{p['memory_per_reply_kib']} KiB/reply, mismatches {p['integrity_mismatches']}, "
        f"upstream connections/request {p.get('upstream_connections_per_reply')}"
    )


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def _ms(summary: dict[str, Any]) -> str:
    return f"{_num(summary['p50'])} / {_num(summary['p99'])}"


def _plus(value: float | None) -> str:
    return "–" if value is None else f"{value:+.0f}"


def _history(history: int) -> str:
    return f"; each person has {history} earlier conversations" if history else ""


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Run of {result['started_at']} ({result['duration_s']:.0f} s, {result['machine']['cores']} cores); "
        f"replies of {result['settings']['tokens']} tokens at {result['settings']['tps']:g} tokens/s"
        f"{' in plain prose' if result['settings'].get('style') == 'plain' else ''}, "
        f"every {result['settings']['stop_every']}th client presses Stop"
        f"{_history(result['settings'].get('history', 0))}. Latencies in ms as p50 / p99.",
        "",
        "| config | K | replies | TTFT added (floor) | per-token relay | per-token floor | p99 over floor "
        "| reply time ÷ floor | Stop (floor) | bytes/char | DB writes/reply | CPU s/1k tok | KiB/reply "
        "| mismatches |",
        "|---|---:|---:|---|---|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for entry in result["configs"]:
        if entry.get("skipped"):
            why = entry["skipped"].replace("|", "\\|")
            lines.append(f"| {entry['name']} | – | – | skipped: {why} |||||||||||")
        for p in [*sorted(entry["phases"], key=lambda p: p["k"]), *_extra_phases(entry)]:
            k = f"{p['k']} {_label(entry, p)}".strip()
            cells = [
                entry["name"],
                k,
                p["replies"],
                f"{_ms(p['ttft_added_ms'])} ({_ms(p['floor_ttft_added_ms'])})",
                _ms(p["token_latency_ms"]),
                _ms(p["floor_token_latency_ms"]),
                _plus(p["token_latency_p99_over_floor_ms"]),
                f"{p['reply_time_ratio']['p50']} / {p['reply_time_ratio']['p99']}",
                f"{_ms(p['stop_latency_ms'])} ({_ms(p['floor_stop_latency_ms'])}), "
                f"{p['stop_latency_ms']['n']} of {p['stops_pressed']}",
                p["bytes_per_char"],
                p["db_writes_per_reply"],
                p["cpu_seconds_per_1k_tokens"],
                p["memory_per_reply_kib"],
                p["integrity_mismatches"],
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += _before_after(result)
    lines += ["", "| target | measured | held |", "|---|---|---|"]
    for row in result["targets"]:
        held = "n/a" if row["held"] is None else "yes" if row["held"] else "**no**"
        lines.append(f"| {row['target']} | {row['measured'] or '–'} | {held} |")
    for entry in result["configs"]:
        if "largest_k_held" in entry:
            lines.append(f"\nLargest K that held on {entry['label']}: {entry['largest_k_held']}.")
        if long := entry.get("long_replies"):
            flat = ", ".join(
                f"{r['chars']:,} chars {r.get('style', 'markdown')}: {r['bytes_per_char']} B/char "
                f"({r['uncompressed_bytes_per_char']} uncompressed)"
                for r in long["per_reply"]
            )
            lines.append(f"\nBytes per character as replies grow ({entry['name']}): {flat}.")
    lines += _cores(result)
    lines += _database_threads(result)
    lines += _collector(result)
    return "\n".join(lines) + "\n"


def _phases_with(result: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """Each configuration's relay phases that recorded ``key``, by K."""
    return [
        (entry["name"], p)
        for entry in result["configs"]
        for p in sorted(entry.get("phases", []), key=lambda p: p["k"])
        if p.get(key)
    ]


def _phase_table(
    result: dict[str, Any], key: str, title: str, columns: list[str], cells: Any, text_last: bool = False
) -> list[str]:
    """A table of each relay phase that recorded ``key``: its configuration, its K, then
    ``cells`` of what it recorded (None as a dash); numbers aligned right, and the last
    column left when it is text."""
    rows = _phases_with(result, key)
    if not rows:
        return []
    aligns = ["---:"] * len(columns)
    if text_last:
        aligns[-1] = "---"
    lines = [
        "",
        title,
        "",
        "| config | K | " + " | ".join(columns) + " |",
        "|---|---:|" + "|".join(aligns) + "|",
    ]
    for name, p in rows:
        shown = ("–" if v is None else str(v) for v in cells(p[key]))
        lines.append(f"| {name} | {p['k']} | " + " | ".join(shown) + " |")
    return lines


def _cores(result: dict[str, Any]) -> list[str]:
    """Where the machine's cores went in each phase: what limits a configuration when the
    workers are not all that runs, and what the hypervisor took."""
    return _phase_table(
        result,
        "cores",
        f"Where the {result['machine']['cores']} cores went, on average over each relay phase (cores busy):",
        ["whole machine", "workers", "simulator", "clients", "the rest (Redis, PostgreSQL, the system)",
         "taken by the hypervisor (steal)"],
        lambda c: [c["busy"], c["workers"], c["simulator"], c["clients"], c["rest"], c["steal"]],
    )  # fmt: skip


def _database_threads(result: dict[str, Any]) -> list[str]:
    """Each worker's one database thread (``chat.database``): how busy it was, and what
    a trip, and a send's (which its reply's first token waits for), waited for it."""
    return _phase_table(
        result,
        "database_thread",
        "Each worker's database thread over each relay phase (from its `/metrics`; ms on average):",
        ["busy (share of the phase)", "trips a reply", "a trip waited", "and held it", "a send's trip waited",
         "and held it", "held longest (s, all workers)"],
        lambda d: [d["busy"], d["trips_per_reply"], d["wait_ms"], d["held_ms"], d["send_wait_ms"],
                   d["send_held_ms"], ", ".join(f"`{trip}` {held}" for trip, held, *_ in d["busiest"][:3])],
        text_last=True,
    )  # fmt: skip


def _collector(result: dict[str, Any]) -> list[str]:
    """The garbage collector's pauses in each worker (``chat.metrics.CollectorPauses``):
    a pass stops the event loop, every reply's frames with it."""
    return _phase_table(
        result,
        "collector",
        "The garbage collector's pauses over each relay phase (from the workers' `/metrics`):",
        ["passes", "paused (ms, all workers)", "share of the phase", "full passes", "their ms",
         "the longest, at most (ms)"],
        lambda c: [c["passes"], c["paused_ms"], c["paused"], c["full"], c["full_ms"], c["full_longest_ms"]],
    )  # fmt: skip


def _label(entry: dict[str, Any], p: dict[str, Any]) -> str:
    """What sets a phase beside the K list apart, for the table and the log."""
    if p is entry.get("long_replies"):
        return "(long)"
    return fast_label(p) if p is entry.get("fast") else ""


def _before_after(result: dict[str, Any]) -> list[str]:
    """For each K both "1w-before" and "1w" ran: the earlier tree's number → this one's;
    the medians where the pair ran more than once (``Options.pairs``)."""
    before, after = _entry(result, "1w-before"), _entry(result, "1w")
    if before is None or after is None:
        return []
    ks = sorted({p["k"] for p in before["phases"]} & {p["k"] for p in after["phases"]})
    if not ks:
        return []

    columns = [
        ("TTFT added p50", lambda p: p["ttft_added_ms"]["p50"], _num),
        ("per-token p99 over floor", lambda p: p["token_latency_p99_over_floor_ms"], _plus),
        ("Stop p99", lambda p: p["stop_latency_ms"]["p99"], _num),
        ("CPU s/1k tok", lambda p: p["cpu_seconds_per_1k_tokens"], lambda v: f"{v:.3g}"),
        ("bytes/char", lambda p: p["bytes_per_char"], lambda v: f"{v:.4g}"),
    ]

    def cell(phases: list[dict[str, Any]], value: Any, shown: Any) -> str:
        values = [v for p in phases if (v := value(p)) is not None]
        return shown(statistics.median(values)) if values else "–"

    ref = before.get("ref") or before["label"].rpartition(" at ")[2]
    runs = {k: (_at(before, k), _at(after, k)) for k in ks}
    repeated = any(min(len(old), len(new)) > 1 for old, new in runs.values())
    medians = "; where the pair ran more than once, the medians (each tree first in turn)" if repeated else ""
    lines = [
        "",
        f"Before → after: `1w-before` (the tree at `{ref}`) → `1w` (this tree), in the same run{medians}; "
        "times in ms.",
        "",
        "| K | pairs | " + " | ".join(name for name, _, _ in columns) + " |",
        "|---:|---:|" + "---|" * len(columns),
    ]
    for k, (old, new) in runs.items():
        cells = [f"{cell(old, value, shown)} → {cell(new, value, shown)}" for _, value, shown in columns]
        lines.append(f"| {k} | {min(len(old), len(new))} | " + " | ".join(cells) + " |")
    return lines


def _at(entry: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """A configuration's phases at ``k``: the one of the K list and its repeats."""
    return [p for p in [*entry["phases"], *entry.get("repeats", [])] if p["k"] == k]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(phases: list[dict[str, Any]], key: str, q: str) -> list[float | None]:
        # Log axes: anything under 0.1 ms (the floor's p50 is ~0) is drawn at 0.1 ms.
        return [None if p[key][q] is None else max(0.1, p[key][q]) for p in phases]

    fig, (tokens, events) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {"1w": "tab:blue", "2w": "tab:orange", "2w-shared": "tab:green", "1w-before": "tab:purple"}
    for entry in result["configs"]:
        phases = sorted(entry["phases"], key=lambda p: p["k"])
        if not phases:
            continue
        ks, color, name = [p["k"] for p in phases], colors.get(entry["name"], "tab:green"), entry["name"]
        for q, style in (("p50", "--"), ("p99", "-")):
            tokens.plot(
                ks,
                series(phases, "token_latency_ms", q),
                style,
                marker="o",
                color=color,
                label=f"relay {name} {q}",
            )
            events.plot(
                ks,
                series(phases, "ttft_added_ms", q),
                style,
                marker="s",
                color=color,
                label=f"TTFT added {name} {q}",
            )
            events.plot(ks, series(phases, "stop_latency_ms", q), style, marker="^", color=color, alpha=0.6,
                        label=f"Stop {name} {q}")  # fmt: skip
        if entry["name"] == "1w":
            for q, style in (("p50", "--"), ("p99", "-")):
                tokens.plot(
                    ks, series(phases, "floor_token_latency_ms", q), style, color="black", label=f"floor {q}"
                )
            floors = [p["floor_token_latency_ms"]["p99"] for p in phases]
            budget = [None if f is None else f + 60 for f in floors]
            tokens.plot(ks, budget, ":", color="gray", label="target: floor p99 + 60 ms")
    events.axhline(15, color="gray", linestyle=":", label="target: TTFT added p50 15 ms (K=1)")
    events.axhline(25, color="gray", linestyle="--", label="target: TTFT added p50 25 ms (K=100)")
    events.axhline(100, color="gray", linestyle="-.", label="target: Stop p99 100 ms (K=200)")
    tokens.set_title("Per-token latency: simulator emit to client receipt")
    events.set_title("Added time to first token, and Stop to upstream close")
    for ax in (tokens, events):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("K concurrent replies")
        ax.set_ylabel("ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Relay benchmark, {result['started_at']}, {result['machine']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# The stage of the relay a sample's own (leaf) frame serves, by the path py-spy shows
# (relative to sys.path, so "django/db/..." or "asyncio/...").
STAGES = [
    ("upstream: read and parse the SSE stream",
     ("httpx/", "httpcore/", "h11/", "httpx_sse/", "anyio/", "sniffio/", "json/", "chat/providers/",
      "chat/upstream")),
    ("database: ORM, driver, connections",
     ("django/db/", "sqlite3/", "psycopg/", "psycopg_pool/", "channels/db.py")),
    ("HTML: templates, markdown, sanitizing",
     ("django/template/", "django/templatetags/", "django/utils/html", "django/utils/safestring",
      "markdown_it/", "pygments/", "nh3", "chat/rendering", "chat/templatetags/")),
    ("browser side: channel layer, consumer, websocket",
     ("channels/", "channels_redis/", "daphne/", "autobahn/", "twisted/", "txaio/", "msgpack/", "redis/")),
    ("event loop and threads",
     ("asyncio/", "selectors.py", "threading.py", "concurrent/", "asgiref/", "queue.py")),
    ("the app's own code", ("chat/",)),
]  # fmt: skip


def _where(frame: str) -> str:
    match = re.search(r"\(([^()]*?)(?::\d+)?\)$", frame)
    return match.group(1) if match else frame


def _stage(frame: str) -> str:
    path = _where(frame)
    return next((stage for stage, prefixes in STAGES if path.startswith(prefixes)), "other")


def profile_summary(path: Path, top: int = 15) -> dict[str, Any]:
    """py-spy's raw stacks as the stages, functions and libraries that take the worker's time."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        total += n
        names = [re.sub(r":\d+\)$", ")", frame) for frame in frames]
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
        libraries[_library(frames[-1])] += n
        stages[_stage(frames[-1])] += n

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "stage_percent": shares(stages),
        "self_percent": shares(own),
        "inclusive_percent": shares(inclusive),
        "library_self_percent": shares(libraries),
    }


def _library(frame: str) -> str:
    return _where(frame).split("/")[0].removesuffix(".py")


def republish(out: Path) -> None:
    """The table and verdicts again from ``out/latest.json``, into docs (no new run)."""
    result = json.loads((out / "latest.json").read_text())
    result["targets"] = targets(result)
    (out / "latest.json").write_text(json.dumps(result, indent=1, default=str))
    _publish(markdown(result), out / "latency.png")


def _publish(table: str, png: Path | None) -> None:
    if png is not None and png.exists():
        shutil.copyfile(png, DOC_PLOT)
    doc = DOC.read_text() if DOC.exists() else f"# Relay benchmark\n\n{START}\n{END}\n"
    before, _, rest = doc.partition(START)
    after = rest.partition(END)[2]
    DOC.write_text(f"{before}{START}\n{table}{END}{after}")


def write(result: dict[str, Any], out: Path, *, with_plot: bool = True, publish: bool = False) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(result, indent=1, default=str)
    (out / f"bench-{stamp}.json").write_text(text)
    (out / "latest.json").write_text(text)
    table = markdown(result)
    (out / "latest.md").write_text(table)
    png = out / "latency.png"
    if with_plot:
        plot(result, png)
    if publish:
        _publish(table, png if with_plot else None)
