"""The providers file: parsed strictly, with keys left in the environment."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chat.providers.config import ProviderConfigError, parse_providers

GOOD = """
[[providers]]
name = "openai"
dialect = "openai-chat"
base_url = "https://api.openai.com/v1/"
api_key_env = "TEST_OPENAI_KEY"
include_usage = true
models = [{ name = "gpt-4.1-mini", input_price = 0.4, output_price = 1.6 }, "gpt-4.1-nano"]
"""


def test_a_providers_file_lists_models_prices_and_options(monkeypatch) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-planted")
    provider = parse_providers(GOOD)["openai"]
    assert provider.base_url == "https://api.openai.com/v1"
    assert provider.options == {"include_usage": True}
    assert provider.api_key() == "sk-planted"
    assert "sk-planted" not in repr(provider)
    mini = provider.model("gpt-4.1-mini")
    assert mini.cost(1_000_000, 500_000) == Decimal("1.2")
    assert provider.model("gpt-4.1-nano").cost(10, 10) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not toml [", "not valid TOML"),
        ("", "lists no"),
        (
            '[[providers]]\nname = "x"\ndialect = "carrier-pigeon"\nbase_url = "u"\nmodels = ["m"]',
            "unknown dialect",
        ),
        ('[[providers]]\nname = "x"\ndialect = "openai-chat"\nmodels = ["m"]', "base_url is missing"),
        (GOOD + GOOD, "listed twice"),
        (GOOD.replace('base_url = "https://api.openai.com/v1/"', "base_url = 5"), "base_url must be text"),
        (GOOD.replace("https://", "ftp://"), "must start with http"),
        (GOOD.replace("input_price = 0.4", "input_price = -1"), "input_price of 'gpt-4.1-mini' must be"),
        (GOOD.replace("input_price = 0.4", 'input_price = "cheap"'), "0 or more, not 'cheap'"),
        (GOOD.replace("models = [", 'models = "gpt"  # ['), "list"),
        ('providers = "x"', "list of"),
        ("[[providers]]\ndialect = 'openai-chat'", "number 1 needs a name"),
    ],
)
def test_a_bad_providers_file_is_refused_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(ProviderConfigError, match=says):
        parse_providers(text)
