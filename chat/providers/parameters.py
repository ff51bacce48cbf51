"""Sampling parameters a conversation may set: temperature, maximum output tokens, top_p.

Each dialect names the ones its API takes in ``PARAMETERS`` (our name -> its field name);
a parameter the dialect has no field for is never offered or sent. A conversation's own
values win over the provider's defaults (set in the providers file); neither set, the
upstream's own default applies. Pure: no Django, so the providers file can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Value = int | float


@dataclass(frozen=True)
class Parameter:
    name: str
    label: str
    kind: type[int] | type[float]
    low: Value
    high: Value
    step: str

    def check(self, value: object) -> Value:
        """``value`` as this parameter's type, or ValueError with a sentence saying why not."""
        if isinstance(value, str):
            try:
                value = self.kind(value.strip())
            except ValueError:
                raise ValueError(self.rule()) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(self.rule())
        if not self.low <= value <= self.high:  # NaN too: it compares false with everything
            raise ValueError(self.rule())
        if self.kind is int and value != int(value):
            raise ValueError(self.rule())
        return self.kind(value)

    def rule(self) -> str:
        kind = "a whole number" if self.kind is int else "a number"
        return f"{self.label} must be {kind} from {self.low:g} to {self.high:,}."


PARAMETERS = {
    p.name: p
    for p in (
        Parameter("temperature", "Temperature", float, 0, 2, "any"),
        Parameter("max_tokens", "Maximum output tokens", int, 1, 1_000_000, "1"),
        Parameter("top_p", "Top p", float, 0, 1, "any"),
    )
}


def offered(fields: Mapping[str, str]) -> list[Parameter]:
    """The parameters a dialect whose ``PARAMETERS`` are ``fields`` takes, in a fixed order."""
    return [p for name, p in PARAMETERS.items() if name in fields]


def check_values(raw: Mapping[str, object], fields: Mapping[str, str]) -> dict[str, Value]:
    """Values for a dialect with ``fields``: empty ones left out (the default applies),
    ones the dialect has no field for dropped; ValueError naming the first bad one."""
    values: dict[str, Value] = {}
    for parameter in offered(fields):
        value = raw.get(parameter.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        values[parameter.name] = parameter.check(value)
    return values


def request_fields(
    values: Mapping[str, Value], defaults: Mapping[str, Value], fields: Mapping[str, str]
) -> dict[str, Value]:
    """The body fields a request carries: the conversation's values over the provider's
    defaults, under the dialect's own field names."""
    merged = {**defaults, **values}
    return {fields[name]: merged[name] for name in PARAMETERS if name in fields and name in merged}
