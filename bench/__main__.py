"""``python -m bench``: run the relay benchmark and write bench/results/ (see docs/benchmark.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.report import republish
from bench.run import RESULTS, Options, run_benchmark


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--ks", type=_ints, default=defaults.ks, help="concurrent clients per phase, e.g. 1,50,200,500"
    )
    parser.add_argument(
        "--configs",
        default="1w,2w,2w-shared",
        help="1w (in-memory, SQLite), 2w (Redis, PostgreSQL) and/or 2w-shared (two workers on one port, "
        "Redis, SQLite)",
    )
    parser.add_argument("--tokens", type=int, default=defaults.tokens, help="tokens per reply")
    parser.add_argument("--tps", type=float, default=defaults.tps, help="the simulator's tokens per second")
    parser.add_argument(
        "--style",
        choices=["markdown", "plain"],
        default="markdown",
        help="the replies' text: the demo's markdown, or plain prose (no markup held back)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=defaults.history,
        help="earlier conversations of each person, as a real sidebar lists them (0: none)",
    )
    parser.add_argument(
        "--long", type=_ints, default=defaults.long_chars, help="long-reply lengths in characters"
    )
    parser.add_argument(
        "--fast-k",
        type=int,
        default=defaults.fast_k,
        help="replies of a fast model side by side on one worker (0: no fast phase)",
    )
    parser.add_argument(
        "--fast-tps", type=float, default=defaults.fast_tps, help="the fast model's tokens per second"
    )
    parser.add_argument(
        "--before",
        default=defaults.before,
        metavar="REF",
        help="also run the 1-worker configuration from a git worktree of REF (e.g. a commit), "
        "as 1w-before, for a before/after table in the same run",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=defaults.pairs,
        help="with --before: how many times the before/after pair runs at each of --pair-ks, "
        "each tree first in turn; the before → after table gives the medians",
    )
    parser.add_argument(
        "--pair-ks", type=_ints, default=defaults.pair_ks, help="the K at which the pair runs --pairs times"
    )
    parser.add_argument(
        "--min-replies", type=int, default=defaults.min_replies, help="rounds at small K reach this"
    )
    parser.add_argument(
        "--stop-every", type=int, default=defaults.stop_every, help="every Nth client presses Stop"
    )
    parser.add_argument(
        "--profile-k",
        type=int,
        default=defaults.profile_k,
        help="py-spy the (first) worker of 1w, 2w and 2w-shared at this K (0: off)",
    )
    parser.add_argument(
        "--profile-rate", type=int, default=defaults.profile_rate, help="py-spy samples a second"
    )
    parser.add_argument("--no-probe", action="store_true", help="do not look for the largest K beyond --ks")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="put the table into docs/benchmark.md and the plot into docs/bench-latency.png",
    )
    parser.add_argument(
        "--republish", action="store_true", help="only render --out/latest.json into docs again, no run"
    )
    args = parser.parse_args(argv)
    if args.republish:
        republish(args.out)
        return 0
    options = Options(
        ks=args.ks, configs=[c.strip() for c in args.configs.split(",") if c.strip()], tokens=args.tokens,
        tps=args.tps, style="" if args.style == "markdown" else args.style, long_chars=args.long,
        fast_k=args.fast_k, fast_tps=args.fast_tps, before=args.before, pairs=args.pairs,
        pair_ks=args.pair_ks,
        min_replies=args.min_replies, stop_every=args.stop_every, history=args.history,
        profile_k=args.profile_k, profile_rate=args.profile_rate, probe=not args.no_probe, out=args.out,
        plot=not args.no_plot, publish=args.publish,
    )  # fmt: skip
    run_benchmark(options)
    print((options.out / "latest.md").read_text())
    print(f"results: {options.out / 'latest.json'}")
    return 0  # a missed target is a finding in the report, not a failure of the run


if __name__ == "__main__":
    sys.exit(main())
