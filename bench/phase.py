"""One phase: K clients against fresh workers, after the same K straight at the simulator.

Both halves follow the same schedule (send times spread over a ramp, the same clients
pressing Stop at the same moments), so the floor is the relay's run minus the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis import APPENDED_REPLY, parse_ws
from bench.clients import FloorRun, WsRun, drive_floor, drive_ws, log_in, open_ws
from bench.metrics import (
    Costs,
    by_prompt,
    collector_pauses,
    database_thread,
    floor_tally,
    phase_result,
    relay_tally,
)
from bench.stack import Config, Simulator, Worker, cpu_seconds, dbprep, log_errors, machine_cpu, stop_workers
from tests.servers import PASSWORD


@dataclass
class Spec:
    """What one client asks for and when: tokens, its send offset, when it presses Stop."""

    tokens: int
    offset: float
    stop_after: float | None
    style: str = ""  # the simulator's: "" (markdown, its default) or "plain"


@dataclass
class Phase:
    config: Config
    sim: Simulator
    tps: float
    log_dir: Path
    profile_to: Path | None = None
    profile_rate: int = 100
    history: int = 0  # earlier conversations of each person (a full sidebar)
    logged_in: bool = False  # the login form was used once; other sessions are made like it makes them


def schedule(
    k: int, rounds: int, tokens: int, tps: float, ramp: float, stop_every: int, seed: int, style: str = ""
) -> list[Spec]:
    rng = random.Random(seed)
    duration = tokens / tps
    specs = []
    for j in range(k * rounds):
        stops = stop_every > 0 and j % stop_every == stop_every - 1
        stop_after = rng.uniform(0.3, 0.7) * duration if stops else None
        specs.append(Spec(tokens, rng.uniform(0, ramp), stop_after, style))
    return specs


def prompt(kind: str, label: str, j: int, tokens: int, tps: float, style: str = "") -> str:
    styled = f" style={style}" if style else ""
    return f"bench {kind} {label} c{j} [sim tokens={tokens} tps={tps:g}{styled}]"


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _floor_round(runs: list[FloorRun], specs: list[Spec], host: str, port: int, tps: float) -> None:
    start = time.time() + 0.3
    deadline = start + max(s.offset + s.tokens / tps for s in specs) + 60
    await asyncio.gather(
        *(drive_floor(r, host, port, start + s.offset, deadline) for r, s in zip(runs, specs, strict=True))
    )


async def _relay_round(runs: list[WsRun], specs: list[Spec], tps: float) -> None:
    gate = asyncio.Semaphore(32)

    async def opened(run: WsRun) -> Any:
        async with gate:
            return await open_ws(run)

    sockets = await asyncio.gather(*(opened(r) for r in runs), return_exceptions=True)
    start = time.time() + 0.3
    deadline = start + max(s.offset + s.tokens / tps for s in specs) + 60
    drives = []
    for run, spec, ws in zip(runs, specs, sockets, strict=True):
        if isinstance(ws, BaseException):
            run.error = f"could not connect: {type(ws).__name__}: {ws}"
        else:
            drives.append(drive_ws(run, ws, start + spec.offset, deadline))
    await asyncio.gather(*drives)


async def _sample_rss(workers: list[Worker], peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], sum(w.rss() for w in workers))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


async def _relay(rounds: list[tuple[list[WsRun], list[Spec]]], workers: list[Worker], tps: float) -> int:
    peak, stop = [0], asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(workers, peak, stop))
    for runs, specs in rounds:
        await _relay_round(runs, specs, tps)
    stop.set()
    await sampler
    return peak[0]


def warm_up(
    phase: Phase, workers: list[Worker], conversations: list[list[Any]], cookies: dict[str, str]
) -> None:
    """One short reply through each worker: imports, templates and pools are ready after."""
    runs = [
        WsRun(-1 - i, prompt("warm", phase.config.name, i, 5, phase.tps), None, conversation_id=conv[1],
              base_url=w.url, cookie=cookies[conv[0]])
        for i, (w, conv) in enumerate(zip(workers, conversations, strict=True))
    ]  # fmt: skip
    asyncio.run(_relay_round(runs, [Spec(5, 0, None)] * len(runs), phase.tps))
    if failed := [r.error or "no final frame" for r in runs if r.error or not r.done]:
        raise RuntimeError(f"warm-up failed: {failed}")


def run_phase(phase: Phase, label: str, k: int, specs: list[Spec]) -> dict[str, Any]:
    config, sim = phase.config, phase.sim
    # One person per concurrent client, as per-person limits (rate, concurrent replies) apply.
    count = str(len(specs) + config.workers)
    made = dbprep(
        config.env, "conversations", "--users", str(k), "--count", count, "--password", PASSWORD,
        "--history", str(phase.history), root=config.root,
    )  # fmt: skip
    conversations, cookies = made["conversations"], made["cookies"]
    workers = config.start_workers(phase.log_dir, f"{config.name}-{label}")
    try:
        if not phase.logged_in:
            log_in(workers[0].url, "bench-0", PASSWORD)
            phase.logged_in = True
        warm_up(phase, workers, conversations[len(specs) :], cookies)
        host, port = sim.url.removeprefix("http://").split(":")
        sim.reset()
        floor_before = (cpu_seconds(sim.process.pid), _own_cpu())
        floor_runs = [
            FloorRun(j, prompt("floor", label, j, s.tokens, phase.tps, s.style), s.stop_after)
            for j, s in enumerate(specs)
        ]
        for runs, batch in zip(_chunks(floor_runs, k), _chunks(specs, k), strict=True):
            asyncio.run(_floor_round(runs, batch, host, int(port), phase.tps))
        floor_records = sim.all_requests()
        floor_cpu = (cpu_seconds(sim.process.pid) - floor_before[0], _own_cpu() - floor_before[1])

        sim.reset()
        relay_runs = [
            WsRun(
                j,
                prompt("relay", label, j, s.tokens, phase.tps, s.style),
                s.stop_after,
                conversation_id=conversations[j][1],
                base_url=workers[j % len(workers)].url,
                cookie=cookies[conversations[j][0]],
            )
            for j, s in enumerate(specs)
        ]
        # Read outside the phase's CPU, before and after: reading /metrics costs a worker some.
        scraped_before = [w.scrape() for w in workers]
        rss_baseline = sum(w.rss() for w in workers)
        cpu_before = sum(w.cpu() for w in workers)
        sim_before = cpu_seconds(sim.process.pid)
        client_before = _own_cpu()
        machine_before, started = machine_cpu(), time.monotonic()
        profiler = _start_profiler(workers[0], phase.profile_to, phase.profile_rate)
        rss_peak = asyncio.run(
            _relay(list(zip(_chunks(relay_runs, k), _chunks(specs, k), strict=True)), workers, phase.tps)
        )
        machine_after, wall = machine_cpu(), time.monotonic() - started
        _stop_profiler(profiler)
        costs = Costs(
            cpu_seconds=sum(w.cpu() for w in workers) - cpu_before,
            rss_baseline=rss_baseline,
            rss_peak=max(rss_peak, rss_baseline),
            sim_cpu_seconds=cpu_seconds(sim.process.pid) - sim_before,
            client_cpu_seconds=_own_cpu() - client_before,
            worker_errors=0,
            floor_sim_cpu_seconds=floor_cpu[0],
            floor_client_cpu_seconds=floor_cpu[1],
            wall_seconds=wall,
            machine_busy_seconds=machine_after[0] - machine_before[0],
            machine_steal_seconds=machine_after[1] - machine_before[1],
        )
        scraped_after = [w.scrape() for w in workers]
        time.sleep(0.5)  # let the last writes land before reading them back
        relay_records = sim.all_requests()
    finally:
        stop_workers(workers)
    costs.worker_errors = log_errors(workers)
    reply_ids = [int(m) for r in relay_runs for m in _reply_ids(r)]
    db = dbprep(config.env, "report", stdin=reply_ids, root=config.root)
    relay, extra = relay_tally(relay_runs, relay_records, db, phase.tps)
    floor = floor_tally(floor_runs, floor_records, phase.tps)
    result = phase_result(k, math.ceil(len(specs) / k), relay, extra, floor, costs)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["per_reply"] = _per_reply(relay_runs, relay_records)
    trips = [[s.get("trips", {}) for s in scraped] for scraped in (scraped_before, scraped_after)]
    result["database_thread"] = database_thread(*trips, wall, len(relay_runs))
    pauses = [[s.get("pauses", {}) for s in scraped] for scraped in (scraped_before, scraped_after)]
    result["collector"] = collector_pauses(*pauses, wall)
    return result


def _reply_ids(run: WsRun) -> list[str]:
    for _, message in run.frames:
        if m := APPENDED_REPLY.search(message):
            return [m.group(1)]
    return []


def _per_reply(runs: list[WsRun], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bytes per character of each complete reply, to show they stay flat as replies grow."""
    lengths = {prompt: len(record["text"]) for prompt, record in by_prompt(records).items()}
    rows = []
    for run in runs:
        parsed = parse_ws(run.frames)
        if run.stop_at is None and parsed.status == "complete" and (n := lengths.get(run.prompt, 0)):
            rows.append(
                {
                    "chars": n,
                    "style": "plain" if "style=plain" in run.prompt else "markdown",
                    "frames": parsed.frames,
                    "bytes_per_char": round(run.wire_bytes / n, 3),
                    "uncompressed_bytes_per_char": round(parsed.bytes_total / n, 3),
                    "delta_bytes_per_char": round(parsed.bytes_deltas / n, 3),
                }
            )
    return rows


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _start_profiler(worker: Worker, output: Path | None, rate: int) -> subprocess.Popen | None:
    if output is None:
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
    command = [py_spy, "record", "--pid", str(worker.pid), "--rate", str(rate), "--nonblocking",
               "--gil", "--format", "raw", "--output", str(output)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return process


def _stop_profiler(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
