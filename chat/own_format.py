"""This app's own export (``chat.exports.to_json``): ``{"conversations": [...]}``, each
message with its ``id`` and the ``parent_id`` it follows, imported again as it was."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from chat.checks import ChatError, check_image_url
from chat.import_formats import Entry, Plan, Refused, cut_to_column, text_of, tree_order
from chat.models import Message
from chat.providers.parameters import PARAMETERS, Value, check_values

COUNTS = (
    "input_tokens", "output_tokens", "reasoning_tokens", "time_to_first_token_ms", "reasoning_ms",
    "duration_ms", "retries",
)  # fmt: skip
LABELS = ("provider", "model", "finish_reason")
PLAIN = ("reasoning", "error")
# Stored numbers must fit their columns.
MAX_COUNT = 2**31 - 1
MAX_RETRIES = 32_767
MAX_COST = 10**6


def conversation(item: Any, where: str) -> Plan:
    if not isinstance(item, dict) or not isinstance(item.get("messages"), list):
        raise Refused(f"{where} has no list of messages.")
    title = text_of(item.get("title"))
    where = f"{where} (“{title[:60]}”)" if title else where
    rows: dict[str, dict[str, Any]] = {}
    parents: dict[str, str | None] = {}
    for row in item["messages"]:
        if not isinstance(row, dict) or row.get("id") is None:
            raise Refused(f"{where}: a message has no id.")
        key = str(row["id"])
        if key in rows:
            raise Refused(f"{where}: two messages have the id {key}.")
        rows[key] = row
        parents[key] = None if row.get("parent_id") is None else str(row["parent_id"])
    entries = []
    for key in tree_order(parents, where):
        row = rows[key]
        fields = message_fields(row, f"{where}, message {key}")
        entries.append(
            Entry(key, parents[key], fields, iso(row.get("created_at")), iso(row.get("selected_at")))
        )
    return Plan(
        title=title,
        messages=entries,
        system_prompt=text_of(item.get("system_prompt")),
        provider=text_of(item.get("provider")),
        model=text_of(item.get("model")),
        parameters=sampling(item.get("parameters"), where),
        created_at=iso(item.get("created_at")),
        updated_at=iso(item.get("updated_at")),
    )


def message_fields(row: dict[str, Any], where: str) -> dict[str, Any]:
    role, content = row.get("role"), row.get("content")
    if role not in Message.Role.values:
        raise Refused(f"{where}: its role is neither user nor assistant.")
    if not isinstance(content, str):
        raise Refused(f"{where}: its content is not text.")
    # Only references to the files travel in an export: their names stay, as a note.
    names = [f.get("name") for f in row.get("attachments") or [] if isinstance(f, dict)]
    if names := [str(name) for name in names if name]:
        content = f"{content}\n\n[attached: {', '.join(names)}]".lstrip()
    status = row.get("status")
    if status not in Message.Status.values:
        status = Message.Status.COMPLETE
    elif status in Message.ACTIVE:
        # Its worker is not here: it is over, as a restart leaves it.
        status = Message.Status.INTERRUPTED
    fields: dict[str, Any] = {"role": role, "content": content, "status": status}
    fields |= {name: cut_to_column(name, text_of(row.get(name))) for name in LABELS}
    fields |= {name: text_of(row.get(name)) for name in PLAIN}
    for name in COUNTS:
        value = row.get(name)
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_COUNT):
            raise Refused(f"{where}: {name} is not a count.")
        fields[name] = value
    fields["retries"] = min(fields["retries"] or 0, MAX_RETRIES)
    fields["tokens_estimated"] = row.get("tokens_estimated") is True
    fields["parameters"] = sampling(row.get("parameters"), where)
    fields["image_url"] = image_url(row.get("image_url"), where)
    fields["cost"] = _cost(row.get("cost"), where)
    return fields


def sampling(value: Any, where: str) -> dict[str, Value]:
    """Sampling parameters as the app sets them: known names, numbers in their range."""
    if not isinstance(value, dict):
        return {}
    try:
        return check_values(value, {name: name for name in PARAMETERS})
    except ValueError as exc:
        raise Refused(f"{where}: {exc}") from None


def image_url(value: Any, where: str) -> str:
    url = text_of(value).strip()
    if not url:
        return ""
    try:
        check_image_url(url)
    except ChatError as exc:
        raise Refused(f"{where}: {exc}") from None
    return url


def _cost(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and 0 <= number < MAX_COST):
        raise Refused(f"{where}: its cost is not an amount.")
    return f"{number:.6f}"


def iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)
