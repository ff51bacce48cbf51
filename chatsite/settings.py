"""Settings for the chat site, read from the environment through tiny helpers.

The embedded defaults run on one machine: SQLite, the in-memory channel layer and the
built-in demo upstream. ``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and
Redis for several daphne workers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chat.logs import masked

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CHAT_VAR_DIR", BASE_DIR / "var"))
N = TypeVar("N", int, float)


# Every variable is read through these: a value that does not parse is refused at start
# with its name, its value and the form expected (manage.py and chat.serve print it).


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected true or false (1/0, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    return _env_number(name, default, int, minimum, f"a whole number, like {default}", f"{minimum} or more")


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    return _env_number(
        name, default, float, minimum, f"a number, like {default:g}", f"a number of {minimum:g} or more"
    )


def _env_number(name: str, default: N, parse: Callable[[str], N], minimum: N, form: str, at_least: str) -> N:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = parse(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected {form}") from None
    if not number >= minimum:  # also refuses nan
        raise ImproperlyConfigured(f"{name}={value!r}: expected {at_least}")
    return number


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_database(name: str, default: str) -> dict:
    value = os.environ.get(name) or default
    try:
        return dj_database_url.parse(value, conn_max_age=0)
    except Exception as exc:
        example = "postgres://user:password@host:5432/name"
        message = f"{name}={masked(value)!r}: expected a database URL, like {example} ({exc})"
        raise ImproperlyConfigured(message) from None


def _secret_key() -> str:
    """A key from the environment, else one kept in var/ so every local worker shares it."""
    if key := env_str("DJANGO_SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "csp",
    "axes",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# CONN_MAX_AGE=0 under ASGI: persistent connections leak across the threads that
# sync_to_async uses; PostgreSQL gets psycopg 3's pool instead. SQLite is the exception
# below: a connection costs no server and every database call of a worker runs on the
# one thread of thread-sensitive sync_to_async, so it keeps that one connection.
DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("DATABASE_POOL_SIZE", 10),
        "timeout": 10,
    }
else:
    # Opening one runs the PRAGMAs and registers Django's SQL functions: done on every
    # call, that was more of the benchmark's database profile than the queries were.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not shared-cache memory: the runner writes from several threads. One per
    # process, so test runs side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channels' Redis layer delivers at most once and drops when a channel is full, so the
# relay coalesces frames and the final state is authoritative; capacity is raised
# from the default 100 because every consumer of one process shares one key.
if REDIS_URL := env_str("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.RedisChannelLayer",
            "CONFIG": {
                # Reads wait longer than channels_redis's 5 s blocking pop: redis-py 8
                # times out reads after 5 s by default (redis-py #4091).
                "hosts": [
                    # redis-py's pool defaults to 100 connections, too few for a busy
                    # worker: past it channels_redis raises "Too many connections".
                    {"address": REDIS_URL, "socket_timeout": 15, "max_connections": 1000}
                ],
                "capacity": env_int("CHANNEL_CAPACITY", 1000),
                "expiry": 60,
                # Keys start with this: deployments (or test runs) sharing one Redis
                # database stay apart.
                "prefix": env_str("CHANNEL_PREFIX", "asgi"),
            },
        }
    }
else:
    # Channels' in-memory layer, with its expiry sweep run once a second (chat/layers.py).
    CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.SweptInMemoryChannelLayer"}}

# Login attempts are throttled per username and address (django-axes); Django's model
# backend reading the person in one written-out statement (chat/auth.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "chat.auth.Backend",
]
AXES_FAILURE_LIMIT = env_int("CHAT_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_float("CHAT_LOGIN_COOLOFF_HOURS", 0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env_int("DJANGO_PROXY_COUNT", 0) or None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Database sessions that know whose they are (chat/sessions.py), so they can be ended.
SESSION_ENGINE = "chat.sessions"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

# Security. Everything the page runs comes from this origin: no inline script, no eval
# (htmx is configured without it in base.html), no inline styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Behind a TLS-terminating proxy (see README): trust its X-Forwarded-Proto.
if env_bool("DJANGO_BEHIND_TLS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

LOG_FORMAT = env_str("CHAT_LOG_FORMAT", "text")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"CHAT_LOG_FORMAT={LOG_FORMAT!r}: expected text or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "chat.logs.JsonLines"}, "text": {"format": "%(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "loggers": {
        "chat": {"handlers": ["console"], "level": env_str("CHAT_LOG_LEVEL", "INFO")},
        "httpx": {"handlers": ["console"], "level": "WARNING"},
    },
}

# The chat itself.
CHAT_PROVIDERS_FILE = env_str("CHAT_PROVIDERS_FILE")
# Where the built-in demo upstream (``python -m chat.simulator``, started by
# ``make run``) is reached when no providers file is given.
CHAT_DEMO_BASE_URL = env_str("CHAT_DEMO_BASE_URL", f"http://127.0.0.1:{env_str('DEMO_PORT', '8001')}/v1")
CHAT_CONNECT_TIMEOUT = env_float("CHAT_CONNECT_TIMEOUT", 10.0)
CHAT_READ_TIMEOUT = env_float("CHAT_READ_TIMEOUT", 60.0)
CHAT_REPLY_DEADLINE = env_float("CHAT_REPLY_DEADLINE", 600.0)
CHAT_MAX_ATTEMPTS = env_int("CHAT_MAX_ATTEMPTS", 3, minimum=1)
# The frame clock's pace while the worker keeps up (chat/runner.py, docs/benchmark.md).
CHAT_FRAME_INTERVAL = env_float("CHAT_FRAME_INTERVAL", 0.02, minimum=0.001)
# A worker whose event loop falls behind sends fewer, larger frames, up to this far apart.
CHAT_MAX_FRAME_INTERVAL = env_float("CHAT_MAX_FRAME_INTERVAL", 0.25)
CHAT_PERSIST_INTERVAL = env_float("CHAT_PERSIST_INTERVAL", 1.0, minimum=0.01)
CHAT_STALE_AFTER = env_float("CHAT_STALE_AFTER", 30.0, minimum=1.0)
# On SIGTERM, how long replies may go on before they are interrupted (chat.lifecycle).
CHAT_SHUTDOWN_GRACE = env_float("CHAT_SHUTDOWN_GRACE", 0.0)
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 32_000)
CHAT_MESSAGES_PER_MINUTE = env_int("CHAT_MESSAGES_PER_MINUTE", 30)
CHAT_MAX_CONCURRENT_REPLIES = env_int("CHAT_MAX_CONCURRENT_REPLIES", 3)
CHAT_MAX_RETRY_WAIT = env_float("CHAT_MAX_RETRY_WAIT", 20.0)
# Attachments (chat.attachments): stored through Django's storage API, by default files
# under MEDIA_ROOT, which must never be served directly: only chat's views serve them.
MEDIA_ROOT = Path(env_str("CHAT_MEDIA_ROOT", str(VAR_DIR / "media")))
CHAT_MAX_UPLOAD_BYTES = env_int("CHAT_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1)
CHAT_MAX_IMAGE_PIXELS = env_int("CHAT_MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
CHAT_MAX_DOCUMENT_TOKENS = env_int("CHAT_MAX_DOCUMENT_TOKENS", 100_000, minimum=1)
CHAT_MAX_ATTACHMENTS = env_int("CHAT_MAX_ATTACHMENTS", 8, minimum=1)
# Where an upstream that takes images only by URL (MuAPI) can fetch them: this server's
# public address, e.g. https://chat.example.com. Empty: such models refuse images.
CHAT_PUBLIC_BASE_URL = env_str("CHAT_PUBLIC_BASE_URL")
if CHAT_PUBLIC_BASE_URL and not CHAT_PUBLIC_BASE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"CHAT_PUBLIC_BASE_URL={CHAT_PUBLIC_BASE_URL!r}: expected an address starting with https:// or http://"
    )
CHAT_SIGNED_URL_MAX_AGE = env_int("CHAT_SIGNED_URL_MAX_AGE", 600, minimum=1)
# The largest file a person may import conversations from (chat.imports).
CHAT_MAX_IMPORT_BYTES = env_int("CHAT_MAX_IMPORT_BYTES", 50 * 1024 * 1024, minimum=1)
# A scraper sending "Authorization: Bearer <this>" may read /metrics; staff always may.
CHAT_METRICS_TOKEN = env_str("CHAT_METRICS_TOKEN")
