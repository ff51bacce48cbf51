"""The frame clock (``chat.runner``): which replies a tick sends, and how its pace adapts.

A reply stands in for ``chat.generation.Reply`` here: what the clock asks of it is how
much text it holds unsent, and to relay it.
"""

from __future__ import annotations

import asyncio

import pytest

from chat.runner import BUSY_LAG, FRAME_CHARS, Runner, next_interval

BASE, CEILING = 0.02, 0.25


class Reply:
    def __init__(self, name: str, unsent_chars: int) -> None:
        self.id = name
        self.unsent_chars = unsent_chars
        self.frames = 0

    async def relay(self) -> None:
        self.frames += 1
        self.unsent_chars = 0


@pytest.fixture
def runner(settings) -> Runner:
    settings.CHAT_FRAME_INTERVAL = BASE
    return Runner()


async def test_a_frame_of_a_few_characters_waits_one_tick_for_more(runner: Runner) -> None:
    """A slow reply's token (one a tick at 50 tokens a second) goes every other tick: a
    frame costs some six bytes of framing whatever it carries. A fast reply's go each
    tick, and no text waits more than one tick."""
    slow, fast = Reply("slow", FRAME_CHARS - 1), Reply("fast", FRAME_CHARS)
    runner.relay_soon(slow)
    runner.relay_soon(fast)
    start = runner._news[slow]  # when its text came (the ticks' times are given here)

    await runner.tick(start + BASE / 2)
    assert (slow.frames, fast.frames) == (0, 1)

    slow.unsent_chars += 5  # its next token, which does not make the text waiting newer
    runner.relay_soon(slow)
    await runner.tick(start + BASE / 2 + BASE)
    assert slow.frames == 1
    await runner.tick(start + 3 * BASE)
    assert slow.frames == 1  # nothing new: no frame


async def test_a_busy_worker_sends_every_reply_with_news_at_each_of_its_slower_ticks(runner: Runner) -> None:
    runner.interval = next_interval(BASE, 0.1, BASE, CEILING)
    assert not runner.keeping_up
    slow = Reply("slow", 1)
    now = asyncio.get_running_loop().time()
    runner.relay_soon(slow)
    await runner.tick(now)
    assert slow.frames == 1


async def test_a_loop_a_little_late_is_not_behind(runner: Runner) -> None:
    """Late by more than the clock's pace, less than ``BUSY_LAG``: the pace holds, and
    the worker counts as keeping up (markdown redraws at the pace of the frames)."""
    runner.interval = next_interval(BASE, BUSY_LAG * 0.9, BASE, CEILING)
    assert runner.interval == BASE and runner.keeping_up
    runner.interval = next_interval(BASE, BUSY_LAG * 1.1, BASE, CEILING)
    assert runner.interval > BUSY_LAG and not runner.keeping_up


def test_a_clock_slower_than_the_busy_threshold_is_behind_only_past_its_own_pace() -> None:
    assert next_interval(0.1, 0.09, 0.1, CEILING) == 0.1
    assert next_interval(0.1, 0.11, 0.1, CEILING) > 0.1


def test_the_clock_slows_with_the_loops_lag_up_to_its_ceiling_and_recovers() -> None:
    assert next_interval(BASE, 0.0, BASE, CEILING) == BASE
    slower = next_interval(BASE, 0.05, BASE, CEILING)
    assert slower == 0.05
    assert next_interval(0.2, 1.0, BASE, CEILING) == CEILING
    # Back towards the base pace once the loop keeps up, never below it.
    assert next_interval(slower, 0.0, BASE, CEILING) == pytest.approx(0.04)
    assert next_interval(0.021, 0.0, BASE, CEILING) == BASE
