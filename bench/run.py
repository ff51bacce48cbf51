"""The whole benchmark: every configuration at every K, long and fast phases, the verdicts."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import report
from bench.analysis import token_ends
from bench.metrics import holds
from bench.phase import Phase, Spec, prompt, run_phase, schedule
from bench.stack import Config, configs, services_missing, start_simulator, worktree
from tests.servers import PASSWORD, ROOT

RESULTS = ROOT / "bench" / "results"


@dataclass
class Options:
    ks: list[int] = field(default_factory=lambda: [1, 50, 100, 200, 500])
    configs: list[str] = field(default_factory=lambda: ["1w", "2w", "2w-shared"])
    tokens: int = 150
    tps: float = 50.0
    # The replies' text: "" (the demo's markdown) or "plain" (prose, no markup to hold back).
    style: str = ""
    long_chars: list[int] = field(default_factory=lambda: [2_000, 5_000, 20_000])
    fast_k: int = 20  # replies of a fast model side by side, on one worker (0: no such phase)
    fast_tps: float = 200.0
    before: str = ""  # a git ref: also run "1w" from a worktree of it, as "1w-before"
    # At these K the before/after pair runs this many times in all, the trees taking turns
    # going first, and the before → after table gives the medians: one pair is noisier
    # than many of the changes it measures (docs/benchmark.md).
    pair_ks: list[int] = field(default_factory=lambda: [100, 200])
    pairs: int = 3
    min_replies: int = 10
    ramp: float = 1.0
    stop_every: int = 4
    # Earlier conversations of each person: the sidebar redrawn with a new conversation's
    # first message and its title lists as many as a real person's (up to 100).
    history: int = 100
    profile_k: int = 200
    profile_rate: int = 100
    probe: bool = True
    max_k: int = 1000
    out: Path = RESULTS
    plot: bool = True
    publish: bool = False
    seed: int = 8
    log: Any = print


def run_benchmark(options: Options) -> dict[str, Any]:
    started = time.time()
    result: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "machine": {
            "cores": os.cpu_count(),
            "load_before": os.getloadavg(),
            "python": platform.python_version(),
        },
        "settings": {k: v for k, v in vars(options).items() if k not in {"out", "log"}},
        "configs": [],
    }
    options.out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        # The earlier tree first: a ref that does not resolve ends the run before it starts.
        commit, tree = stack.enter_context(worktree(options.before)) if options.before else ("", None)
        sim = stack.enter_context(start_simulator(options.tps))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        runs: list[ConfigRun] = []
        for config in configs(options.configs, (options.before, tree) if tree else None):
            stack.callback(config.cleanup)
            entry: dict[str, Any] = {"name": config.name, "label": config.label, "phases": []}
            if config.root != ROOT:
                entry["ref"], entry["commit"] = options.before, commit
            result["configs"].append(entry)
            if why := services_missing(config):
                entry["skipped"] = why
                options.log(f"[{config.name}] skipped: {why}")
                continue
            run = ConfigRun(config, entry, options)
            if run.attempt(run.prepare, sim, Path(tmp) / config.name):
                runs.append(run)
        # Every configuration at each K in turn. The trees of a before/after pair take turns
        # going first: which of a pair ran first swayed its numbers by more than some of
        # the changes measured (docs/benchmark.md), so one tree first at every K would tilt
        # the comparison.
        for run, k, again in _order(runs, options):
            run.attempt(run.measure, k, again)
        for run in runs:
            run.attempt(run.finish)
    result["duration_s"] = round(time.time() - started, 1)
    result["targets"] = report.targets(result)
    report.write(result, options.out, with_plot=options.plot, publish=options.publish)
    return result


def _order(runs: list[ConfigRun], options: Options) -> list[tuple[ConfigRun, int, bool]]:
    """Each phase to run, in order: every configuration at each K in turn; at each K of
    ``pair_ks`` then the before/after pair again, ``pairs`` times in all, each tree first
    in turn (a repeat is marked True)."""
    paired = [r for r in runs if r.config.name in ("1w", "1w-before")]
    steps = []
    for i, k in enumerate(options.ks):
        steps += [(run, k, False) for run in _turns(runs, i)]
        for again in range(1, options.pairs if len(paired) == 2 and k in options.pair_ks else 1):
            steps += [(run, k, True) for run in _turns(paired, i + again)]
    return steps


def _turns(runs: list[ConfigRun], i: int) -> list[ConfigRun]:
    """The runs in order, with "1w" and "1w-before" swapped at every other K."""
    names = [r.config.name for r in runs]
    if i % 2 == 0 or "1w" not in names or "1w-before" not in names:
        return runs
    order = list(runs)
    a, b = names.index("1w"), names.index("1w-before")
    order[a], order[b] = order[b], order[a]
    return order


class ConfigRun:
    """One configuration's phases: the K list (``measure``, one K at a time), then the
    probes for the largest K that holds, the fast model and the long replies (``finish``)."""

    def __init__(self, config: Config, entry: dict[str, Any], options: Options) -> None:
        self.config, self.entry, self.options = config, entry, options
        self.tried: dict[int, dict[str, Any]] = {}
        self.failed = False

    def attempt(self, step: Any, *args: Any) -> bool:
        """Run a step; an earlier tree this benchmark cannot drive costs its rows, not the run."""
        if self.failed:
            return False
        try:
            step(*args)
        except Exception as exc:
            if self.config.root == ROOT:
                raise
            self.failed = True
            self.entry["skipped"] = f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[-300:]}"
            self.options.log(f"[{self.config.name}] {self.entry['skipped']}")
            return False
        return True

    def prepare(self, sim: Any, var_dir: Path) -> None:
        options = self.options
        self.config.prepare(var_dir, sim.url, 1, PASSWORD)
        self.phase = Phase(
            self.config,
            sim,
            options.tps,
            options.out / "logs",
            profile_rate=options.profile_rate,
            history=options.history,
        )

    def measure(self, k: int, again: bool = False) -> dict[str, Any]:
        """A phase at ``k``; ``again``: a repeat of a before/after pair's phase, kept apart
        (``repeats``) for the medians of the before → after table."""
        config, options, phase = self.config, self.options, self.phase
        rounds = -(-options.min_replies // k)
        ramp = options.ramp if k > 1 else 0.0  # K sends spread over a second: K new replies a second
        specs = schedule(
            k, rounds, options.tokens, options.tps, ramp, options.stop_every, options.seed + k, options.style
        )
        profiling = config.name in ("1w", "2w", "2w-shared") and k == options.profile_k and not again
        phase.profile_to = options.out / f"profile-{config.name}-k{k}.txt" if profiling else None
        options.log(
            f"[{config.name}] K={k}: {len(specs)} replies, {options.tokens} tokens each at {options.tps:g}/s"
        )
        phase_result = run_phase(phase, f"{config.name}-k{k}", k, specs)
        if phase.profile_to is not None and phase.profile_to.exists():
            phase_result["profile"] = report.profile_summary(phase.profile_to)
        phase_result["holds"] = holds(phase_result)
        options.log("   " + report.one_line(phase_result))
        if again:
            self.entry.setdefault("repeats", []).append(phase_result)
            return phase_result
        self.tried[k] = phase_result
        self.entry["phases"].append(phase_result)
        return phase_result

    def finish(self) -> None:
        config, options, entry = self.config, self.options, self.entry
        for _ in range(2 if options.probe and config.name == "1w" else 0):
            if (probe := _probe_k(self.tried, options.max_k)) is None:
                break
            self.measure(probe)
        held = [k for k, r in self.tried.items() if r["holds"]]
        entry["largest_k_held"] = max(held, default=None)
        if config.name == "1w" and options.fast_k > 0:
            entry["fast"] = _fast_replies(self.phase, options)
        if config.name == "1w" and options.long_chars:
            entry["long_replies"] = _long_replies(self.phase, options)


def _probe_k(tried: dict[int, dict[str, Any]], max_k: int) -> int | None:
    """One more K: double the largest if it held, else the geometric middle of the gap."""
    held = [k for k, r in tried.items() if r["holds"]]
    failed = [k for k, r in tried.items() if not r["holds"]]
    if not held:
        return None
    top = max(held)
    if not failed or max(failed) < top:
        return min(top * 2, max_k) if top < max_k else None
    above = min(k for k in failed if k > top)
    middle = round(math.sqrt(top * above))
    return middle if top < middle < above and middle not in tried else None


def _fast_replies(phase: Phase, options: Options) -> dict[str, Any]:
    """K replies of a fast model (each prompt asks the simulator for ``fast_tps``), same
    length and schedule as the other phases: frames carry more tokens each, faster."""
    fast = replace(phase, tps=options.fast_tps, profile_to=None)
    k = options.fast_k
    rounds = -(-options.min_replies // k)
    ramp = options.ramp if k > 1 else 0.0
    specs = schedule(
        k, rounds, options.tokens, options.fast_tps, ramp, options.stop_every, options.seed + k, options.style
    )
    options.log(
        f"[1w] fast: K={k}, {len(specs)} replies, {options.tokens} tokens each at {options.fast_tps:g}/s"
    )
    result = run_phase(fast, "1w-fast", k, specs)
    result["tps"] = options.fast_tps
    result["holds"] = holds(result)
    options.log("   " + report.one_line(result, report.fast_label(result)))
    phase.logged_in = fast.logged_in
    return result


def _long_replies(phase: Phase, options: Options) -> dict[str, Any]:
    """A few replies of growing length side by side, markdown and plain prose: bytes per
    character must stay flat, formatted live or not."""
    specs = []
    for chars in options.long_chars:
        for style in ("", "plain"):
            ends = token_ends(prompt("relay", "1w-long", len(specs), 10**5, options.tps, style), options.tps)
            specs.append(Spec(next(i + 1 for i, end in enumerate(ends) if end >= chars), 0.0, None, style))
    options.log(f"[1w] long replies: {[s.tokens for s in specs]} tokens at {options.tps:g} tokens/s")
    phase.profile_to = None
    result = run_phase(phase, "1w-long", len(specs), specs)
    options.log("   " + report.one_line(result, "(long)"))
    return result
