"""Providers from configuration: a TOML file named by ``CHAT_PROVIDERS_FILE``.

API keys stay in the environment variables the file names; they are read only when a
request is built and never stored on these objects.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path

from django.conf import settings

from chat.providers.parameters import PARAMETERS, Value

DEMO_PROVIDER = "demo"


class ProviderConfigError(Exception):
    pass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_price: Decimal | None = None  # dollars per million input tokens
    output_price: Decimal | None = None
    # Where the dialect can send an image: ``images = false`` for a model that reads none.
    images: bool = True

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> Decimal | None:
        if self.input_price is None or self.output_price is None:
            return None
        total = self.input_price * (input_tokens or 0) + self.output_price * (output_tokens or 0)
        return total / 1_000_000


@dataclass(frozen=True)
class Provider:
    name: str
    dialect: str
    base_url: str
    api_key_env: str = ""
    models: tuple[ModelSpec, ...] = ()
    options: dict = field(default_factory=dict, hash=False, compare=False)
    # Sampling parameters for conversations that set none (``chat.providers.parameters``).
    defaults: dict[str, Value] = field(default_factory=dict, hash=False, compare=False)

    def api_key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)


def _model(raw: str | dict, provider: str) -> ModelSpec:
    if isinstance(raw, str) and raw:
        return ModelSpec(raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ProviderConfigError(f"provider {provider!r}: each model needs a name")

    def price(key: str) -> Decimal | None:
        if key not in raw:
            return None
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ProviderConfigError(
                f"provider {provider!r}: {key} of {raw['name']!r} must be a number of dollars per "
                f"million tokens, 0 or more, not {value!r}"
            )
        return Decimal(str(value))

    images = raw.get("images", True)
    if not isinstance(images, bool):
        raise ProviderConfigError(f"provider {provider!r}: images of {raw['name']!r} must be true or false")
    return ModelSpec(raw["name"], price("input_price"), price("output_price"), images)


def _text(raw: dict, key: str, provider: str, *, required: bool = True) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value):
        kind = "is missing" if key not in raw else f"must be text, not {value!r}"
        raise ProviderConfigError(f"provider {provider!r}: {key} {kind}")
    return value


def _defaults(raw: dict, provider: str, fields: dict[str, str]) -> dict[str, Value]:
    defaults: dict[str, Value] = {}
    for name in PARAMETERS.keys() & raw.keys():
        if name not in fields:
            raise ProviderConfigError(f"provider {provider!r}: its dialect {raw['dialect']!r} has no {name}")
        try:
            defaults[name] = PARAMETERS[name].check(raw[name])
        except ValueError as exc:
            raise ProviderConfigError(f"provider {provider!r}: {name}: {exc}") from None
    return defaults


def parse_providers(text: str) -> dict[str, Provider]:
    from chat.providers import DIALECTS

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProviderConfigError(f"the providers file is not valid TOML: {exc}") from exc
    entries = data.get("providers", [])
    if not isinstance(entries, list) or not all(isinstance(raw, dict) for raw in entries):
        raise ProviderConfigError("providers must be a list of [[providers]] tables")
    providers: dict[str, Provider] = {}
    for number, raw in enumerate(entries, 1):
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ProviderConfigError(f"provider number {number} needs a name (text)")
        if name in providers:
            raise ProviderConfigError(f"provider {name!r} is listed twice; names must be unique")
        if raw.get("dialect") not in DIALECTS:
            raise ProviderConfigError(
                f"provider {name!r}: unknown dialect {raw.get('dialect')!r}; "
                f"known: {', '.join(sorted(DIALECTS))}"
            )
        base_url = _text(raw, "base_url", name)
        if not base_url.startswith(("http://", "https://")):
            raise ProviderConfigError(f"provider {name!r}: base_url must start with http:// or https://")
        models = raw.get("models")
        if not isinstance(models, list) or not models:
            raise ProviderConfigError(f"provider {name!r}: models must be a list of at least one model")
        known = {"name", "dialect", "base_url", "api_key_env", "models", *PARAMETERS}
        providers[name] = Provider(
            name=name,
            dialect=raw["dialect"],
            base_url=base_url.rstrip("/"),
            api_key_env=_text(raw, "api_key_env", name, required=False),
            models=tuple(_model(m, name) for m in models),
            options={k: v for k, v in raw.items() if k not in known},
            defaults=_defaults(raw, name, DIALECTS[raw["dialect"]].PARAMETERS),
        )
    if not providers:
        raise ProviderConfigError("the providers file lists no [[providers]]")
    return providers


def demo_providers() -> dict[str, Provider]:
    return {
        DEMO_PROVIDER: Provider(
            name=DEMO_PROVIDER,
            dialect="openai-chat",
            base_url=settings.CHAT_DEMO_BASE_URL,
            models=(ModelSpec("demo-1", Decimal("0.30"), Decimal("1.80")),),
            options={"include_usage": True},
        )
    }


@cache
def get_providers() -> dict[str, Provider]:
    if not settings.CHAT_PROVIDERS_FILE:
        return demo_providers()
    return parse_providers(Path(settings.CHAT_PROVIDERS_FILE).read_text())


def choices() -> list[tuple[str, str]]:
    """(value, label) pairs for the model picker: value is ``provider/model``."""
    return [
        (f"{p.name}/{m.name}", f"{p.name} · {m.name}") for p in get_providers().values() for m in p.models
    ]
