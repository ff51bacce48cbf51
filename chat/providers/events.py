"""The typed events every dialect yields, and the project's one upstream error type."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """Text of a model's thinking, shown apart from its answer and never sent back."""

    text: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None
    output_tokens: int | None
    # Of the output tokens, those spent thinking, where the upstream says.
    reasoning_tokens: int | None = None


@dataclass(frozen=True)
class Finished:
    reason: str


Event = TextDelta | ReasoningDelta | Usage | Finished


class UpstreamError(Exception):
    """Anything an upstream did wrong, worded for the person reading the reply.

    ``retryable`` marks failures worth another attempt before the first delta;
    ``retry_after`` is the upstream's own wish, in seconds, when it sent one.
    """

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
