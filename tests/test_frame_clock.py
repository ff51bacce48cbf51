"""The frame clock's pace (``chat.runner.next_interval``): it slows as the event loop falls
behind, up to its ceiling, and comes back to its base as the loop catches up."""

from __future__ import annotations

import pytest

from chat.runner import next_interval

BASE, CEILING = 0.04, 0.25


def test_the_clock_slows_with_the_loops_lag_up_to_its_ceiling_and_recovers() -> None:
    assert next_interval(BASE, 0.0, BASE, CEILING) == BASE
    assert next_interval(BASE, 0.02, BASE, CEILING) == BASE  # late within its own pace
    slower = next_interval(BASE, 0.1, BASE, CEILING)
    assert slower == 0.1
    assert next_interval(0.2, 1.0, BASE, CEILING) == CEILING
    # Back towards the base pace once the loop keeps up, never below it.
    assert next_interval(slower, 0.0, BASE, CEILING) == pytest.approx(0.08)
    assert next_interval(0.045, 0.0, BASE, CEILING) == BASE
