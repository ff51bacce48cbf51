"""Configuration, checked before anything is served: Django system checks.

``manage.py check`` runs the providers check; ``manage.py migrate`` (the first step of
``make run``) and ``python -m chat.serve`` (every worker) run all of them, the services
too, and refuse to go on with a message that names what is wrong, never a traceback and
never a 500 later.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections

from chat.logs import masked
from chat.providers.config import ProviderConfigError, get_providers, parse_providers

# How long a service may take to answer before start gives up on it.
SERVICE_TIMEOUT = 5.0


@register()
def check_providers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The providers file: it exists, parses, and names what each provider needs."""
    if not settings.CHAT_PROVIDERS_FILE:
        return []
    path = Path(settings.CHAT_PROVIDERS_FILE)
    where = f"CHAT_PROVIDERS_FILE={settings.CHAT_PROVIDERS_FILE}"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [Error(f"{where}: there is no such file.", id="chat.E001")]
    except OSError as exc:
        return [Error(f"{where}: it cannot be read ({exc.strerror}).", id="chat.E001")]
    try:
        providers = parse_providers(text)
    except ProviderConfigError as exc:
        return [Error(f"{where}: {exc}.", id="chat.E002")]
    get_providers.cache_clear()  # what is served is what was checked
    return [
        Warning(
            f"{where}: provider {provider.name!r} reads its API key from {provider.api_key_env}, "
            "which is not set; its requests go without a key.",
            id="chat.W001",
        )
        for provider in providers.values()
        if provider.api_key_env and not os.environ.get(provider.api_key_env)
    ]


@register(Tags.database)
def check_services(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The database and the Redis channel layer answer, within ``SERVICE_TIMEOUT``.

    A database check (Django runs it where a database is named: ``migrate``, and
    ``check --database default``), so ``manage.py check`` alone needs neither service.
    """
    if not databases:
        return []
    return [*_database_errors(), *_redis_errors()]


def _database_errors() -> list[CheckMessage]:
    connection = connections["default"]
    if connection.vendor == "sqlite":
        return []  # a file: opening it is what migrate does next
    url = os.environ.get("DATABASE_URL", "")
    try:
        _reachable(
            connection.settings_dict["HOST"] or "localhost", int(connection.settings_dict["PORT"] or 5432)
        )
        connection.ensure_connection()
    except Exception as exc:
        return [
            Error(
                f"DATABASE_URL={masked(url)}: the database did not answer ({_reason(exc)}).", id="chat.E003"
            )
        ]
    finally:
        connection.close()
    return []


def _redis_errors() -> list[CheckMessage]:
    if not (url := getattr(settings, "REDIS_URL", "")):
        return []
    parts = urlsplit(url)
    try:
        _reachable(parts.hostname or "localhost", parts.port or 6379)
        import redis

        redis.Redis.from_url(
            url, socket_timeout=SERVICE_TIMEOUT, socket_connect_timeout=SERVICE_TIMEOUT
        ).ping()
    except Exception as exc:
        return [Error(f"REDIS_URL={masked(url)}: Redis did not answer ({_reason(exc)}).", id="chat.E004")]
    return []


def _reachable(host: str, port: int) -> None:
    """Raise ``OSError`` unless something listens there (within the timeout)."""
    with socket.create_connection((host, port), timeout=SERVICE_TIMEOUT):
        pass


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return masked(text)[:200]
