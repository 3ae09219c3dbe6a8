"""Settings, read from the environment (and a `.env` file when present).

Every knob is an environment variable, and README.md's settings table lists each one
(tests/stagingsite/test_settings_documented.py keeps the two equal). With nothing set the service runs
in production mode: `DJANGO_DEBUG` is off, `DJANGO_SECRET_KEY` is required, and the defaults harden so
that `manage.py check --deploy` passes (docs/operations.md#production-settings). Development mode is
turned on explicitly (`make run` and the tests set `DJANGO_DEBUG=true`).
"""

from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from staging.rates import parse_rate, rate_window
from stagingsite.sentry import init_sentry

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
else:
    try:
        SECRET_KEY = env.str("DJANGO_SECRET_KEY")
    except ImproperlyConfigured as exc:
        # One line, printed without a traceback by manage.py and gunicorn (stagingsite/startup.py).
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off (generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'), or set DJANGO_DEBUG=true for development."
        ) from exc
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "django_jsonform",
    "api",
    "models_config",
    "staging",  # before django_q: its `qcluster` command wraps django-q2's
    "django_q",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, the API docs') from the app server itself, with debug off too.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "stagingsite.urls"

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

WSGI_APPLICATION = "stagingsite.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, for the test database too: a real qcluster subprocess must see it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}
    # Wait for the writer lock instead of failing at once when the server and the queue write together.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A bounded pool per process instead of one persistent connection per thread, so that no load can
    # exhaust PostgreSQL's max_connections (docs/operations.md#connection-budget). `qcluster`, whose
    # processes fork, turns it off for itself (stagingsite/database.py).
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with a pool
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASE_POOL_MIN = env.int("DATABASE_POOL_MIN", default=1)
    DATABASE_POOL_MAX = env.int("DATABASE_POOL_MAX", default=4)
    if not 0 <= DATABASE_POOL_MIN <= DATABASE_POOL_MAX or DATABASE_POOL_MAX < 1:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MIN ({DATABASE_POOL_MIN}) and DATABASE_POOL_MAX ({DATABASE_POOL_MAX}) must satisfy "
            "0 <= DATABASE_POOL_MIN <= DATABASE_POOL_MAX and DATABASE_POOL_MAX >= 1."
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_MIN,
        "max_size": DATABASE_POOL_MAX,
        # A request waits at most this long for a free connection, then fails instead of queueing forever.
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
    }

# The cache holds what every process must count together (the API's rate limits, api/throttling.py):
# Redis when REDIS_URL is set, else a table of the database, created by `migrate` (api/apps.py).
REDIS_URL = env.str("REDIS_URL", default="")
DATABASE_CACHE = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "staging_cache"}
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": DATABASE_CACHE}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # `collectstatic` writes hashed, compressed copies that WhiteNoise serves with far-future caching.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Replicate -------------------------------------------------------------------------------
REPLICATE_API_TOKEN = env.str("REPLICATE_API_TOKEN", default="")
REPLICATE_BASE_URL = env.str("REPLICATE_BASE_URL", default="https://api.replicate.com").rstrip("/")
REPLICATE_WEBHOOK_SECRET = env.str("REPLICATE_WEBHOOK_SECRET", default="")
STAGING_PUBLIC_URL = env.str("STAGING_PUBLIC_URL", default="").rstrip("/")


def _default_output_hosts() -> list[str]:
    """Replicate's file hosts (https on 443), plus the emulator's exact origin when the API is not Replicate's.

    The emulator serves its outputs itself, over plain http: its scheme, host and port are pinned, so
    no other port of that host (the database, the admin) can be named by an output URL.
    """
    hosts = ["replicate.delivery", "*.replicate.delivery"]
    api = urlsplit(REPLICATE_BASE_URL)
    if api.hostname and api.hostname != "api.replicate.com":
        port = api.port or {"http": 80, "https": 443}.get(api.scheme, 443)
        host = f"[{api.hostname}]" if ":" in api.hostname else api.hostname
        hosts.append(f"{api.scheme}://{host}:{port}")
    return hosts


REPLICATE_OUTPUT_HOSTS = env.list("REPLICATE_OUTPUT_HOSTS", default=_default_output_hosts())

# --- Staging pipeline (staging/) ----------------------------------------------------------------
# Uploads: byte cap and pixel cap (decompression-bomb guard, checked before the full decode).
STAGING_MAX_UPLOAD_BYTES = env.int("STAGING_MAX_UPLOAD_BYTES", default=25 * 1024 * 1024)
STAGING_MAX_IMAGE_PIXELS = env.int("STAGING_MAX_IMAGE_PIXELS", default=40_000_000)
# Memory of one decode: width x height x bytes per pixel (16-bit samples and alpha count), checked from
# the header like the pixel cap; 160 MB holds 40 MP at 4 bytes, what Pillow keeps per 8-bit RGB(A) pixel.
STAGING_MAX_DECODE_BYTES = env.int("STAGING_MAX_DECODE_BYTES", default=160 * 1024 * 1024)
# Images decoded at once per process (a semaphore); the others wait their turn (staging/images.py).
STAGING_MAX_CONCURRENT_DECODES = env.int("STAGING_MAX_CONCURRENT_DECODES", default=2)
# Let the jobs API fetch `image_url`s on loopback/private addresses (staging/fetch.py's SSRF check off):
# for tests and local demos only, never in production.
STAGING_FETCH_ALLOW_PRIVATE = env.bool("STAGING_FETCH_ALLOW_PRIVATE", default=False)
# Outputs downloaded from Replicate: byte cap and per-request timeout (seconds).
STAGING_MAX_OUTPUT_BYTES = env.int("STAGING_MAX_OUTPUT_BYTES", default=50 * 1024 * 1024)
STAGING_DOWNLOAD_TIMEOUT = env.float("STAGING_DOWNLOAD_TIMEOUT", default=30.0)
STAGING_THUMBNAIL_SIZE = env.int("STAGING_THUMBNAIL_SIZE", default=384)
# The disclosure label drawn on the "labelled" derivative of an output (docs/architecture.md#disclosure-labels):
# its text, corner, text height as a fraction of the image's width (so it scales with the image and stays
# readable on a thumbnail), and the opacity of the dark box behind the text (the text itself is opaque).
STAGING_LABEL_TEXT = env.str("STAGING_LABEL_TEXT", default="Virtually Staged")
STAGING_LABEL_POSITION = env.str("STAGING_LABEL_POSITION", default="bottom-left")
STAGING_LABEL_SIZE = env.float("STAGING_LABEL_SIZE", default=0.045)
STAGING_LABEL_OPACITY = env.float("STAGING_LABEL_OPACITY", default=0.6)
if not STAGING_LABEL_TEXT.strip() or len(STAGING_LABEL_TEXT) > 100:
    raise ImproperlyConfigured("STAGING_LABEL_TEXT must be 1 to 100 characters (the disclosure must say something).")
if STAGING_LABEL_POSITION not in ("bottom-left", "bottom-right", "top-left", "top-right"):
    raise ImproperlyConfigured(
        f"STAGING_LABEL_POSITION ({STAGING_LABEL_POSITION!r}) must be bottom-left, bottom-right, top-left or top-right."
    )
if not 0.01 <= STAGING_LABEL_SIZE <= 0.2:
    raise ImproperlyConfigured(f"STAGING_LABEL_SIZE ({STAGING_LABEL_SIZE}) must be 0.01 to 0.2 of the image width.")
if not 0.0 <= STAGING_LABEL_OPACITY <= 1.0:
    raise ImproperlyConfigured(f"STAGING_LABEL_OPACITY ({STAGING_LABEL_OPACITY}) must be 0 to 1.")
# How long a signed photo link handed to Replicate stays valid (docs/operations.md#photos-and-outputs):
# Replicate fetches the photo when the prediction starts, which can be as late as the attempt's deadline.
STAGING_SIGNED_URL_SECONDS = env.int("STAGING_SIGNED_URL_SECONDS", default=2 * 60 * 60)
# Longest prompt sent to a model (characters). A template is refused unless its prompt fits with the
# longest job fields; keep it above the default template's ~2,400 (docs/architecture.md#prompt-templates).
STAGING_MAX_PROMPT_CHARS = env.int("STAGING_MAX_PROMPT_CHARS", default=4000)
# Timeout (seconds) of one request to the Replicate API.
STAGING_REPLICATE_TIMEOUT = env.float("STAGING_REPLICATE_TIMEOUT", default=30.0)
# Retries: at most this many attempts (paid predictions) per job; exponential backoff between them.
STAGING_MAX_ATTEMPTS = env.int("STAGING_MAX_ATTEMPTS", default=3)
STAGING_RETRY_BASE_SECONDS = env.float("STAGING_RETRY_BASE_SECONDS", default=10.0)
STAGING_RETRY_MAX_SECONDS = env.float("STAGING_RETRY_MAX_SECONDS", default=300.0)
# `reprocess` asks before adding attempts to more jobs than this, or spending more than this (USD) in total;
# below both it proceeds after printing the estimate (docs/operations.md#reprocessing).
STAGING_REPROCESS_CONFIRM_JOBS = env.int("STAGING_REPROCESS_CONFIRM_JOBS", default=10)
STAGING_REPROCESS_CONFIRM_COST = Decimal(env.str("STAGING_REPROCESS_CONFIRM_COST", default="1.00"))
# An attempt not finished this long after it was claimed is cancelled on Replicate and failed
# (Replicate's own hard limit is 30 min; outputs are deleted 1 h after completion).
STAGING_ATTEMPT_DEADLINE_SECONDS = env.int("STAGING_ATTEMPT_DEADLINE_SECONDS", default=20 * 60)
if STAGING_SIGNED_URL_SECONDS <= STAGING_ATTEMPT_DEADLINE_SECONDS:
    raise ImproperlyConfigured(
        f"STAGING_SIGNED_URL_SECONDS ({STAGING_SIGNED_URL_SECONDS}) must exceed STAGING_ATTEMPT_DEADLINE_SECONDS "
        f"({STAGING_ATTEMPT_DEADLINE_SECONDS}): Replicate may fetch the photo until the attempt's deadline."
    )
# The poller reads predictions whose webhook is this late (all of them when STAGING_PUBLIC_URL is unset).
STAGING_POLL_AFTER_SECONDS = env.int("STAGING_POLL_AFTER_SECONDS", default=60)
# Without webhooks, the scheduled poll keeps polling every INTERVAL for up to WINDOW seconds while
# predictions are in flight (the window stays inside the queue's 60 s task timeout).
STAGING_POLL_INTERVAL_SECONDS = env.float("STAGING_POLL_INTERVAL_SECONDS", default=3.0)
STAGING_POLL_WINDOW_SECONDS = env.float("STAGING_POLL_WINDOW_SECONDS", default=45.0)
# An attempt "submitting" without a prediction id this long is reconciled against Replicate's list;
# must exceed the create request's timeout so a create still in flight is never mistaken for lost.
STAGING_RECONCILE_AFTER_SECONDS = env.int("STAGING_RECONCILE_AFTER_SECONDS", default=90)
# Attempts handled per scheduler tick (keeps one tick well inside Replicate's request rate limit).
STAGING_POLL_BATCH = env.int("STAGING_POLL_BATCH", default=200)
# Retention (staging/retention.py, the daily purge): days to keep staged outputs (unset: forever; originals
# stay while their job exists), webhook deliveries and queue task results; rows deleted per batch.
STAGING_RETENTION_DAYS = env.float("STAGING_RETENTION_DAYS", default=None)
STAGING_WEBHOOK_RETENTION_DAYS = env.float("STAGING_WEBHOOK_RETENTION_DAYS", default=7.0)
STAGING_TASK_RESULT_RETENTION_DAYS = env.float("STAGING_TASK_RESULT_RETENTION_DAYS", default=7.0)
STAGING_PURGE_BATCH = env.int("STAGING_PURGE_BATCH", default=500)
# Overall spend cap in USD per UTC day over all models (per-model caps live on ModelConfig); unset: no cap.
# Past it new attempts are held, not failed (docs/architecture.md#spend-caps).
_daily_limit = env.str("STAGING_DAILY_SPEND_LIMIT", default="").strip()
try:
    STAGING_DAILY_SPEND_LIMIT = Decimal(_daily_limit) if _daily_limit else None
except InvalidOperation:
    raise ImproperlyConfigured(f"STAGING_DAILY_SPEND_LIMIT must be an amount in USD, not {_daily_limit!r}.") from None
if STAGING_DAILY_SPEND_LIMIT is not None and not (
    STAGING_DAILY_SPEND_LIMIT.is_finite() and STAGING_DAILY_SPEND_LIMIT >= 0
):
    raise ImproperlyConfigured(f"STAGING_DAILY_SPEND_LIMIT must be 0 or more, not {_daily_limit!r}.")
# Bearer token for /metrics (Prometheus); unset: staff sessions only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The longest wait honoured or computed anywhere (a 429's "~Ns", a Retry-After header, a backoff): an
# absurd value is clamped to this instead of parking work for years or overflowing a timedelta.
STAGING_MAX_RETRY_AFTER_SECONDS = env.float("STAGING_MAX_RETRY_AFTER_SECONDS", default=300.0)
# Creates sent to Replicate by all workers together, at most ("600/m", "10/s"; 0 or off: unpaced).
# Keep it at or under the account's limit (600/m; far less for an account low on credit).
STAGING_CREATE_RATE = env.str("STAGING_CREATE_RATE", default="600/m")
try:
    parse_rate(STAGING_CREATE_RATE)
except ValueError as exc:
    raise ImproperlyConfigured(f"STAGING_CREATE_RATE: {exc}.") from None
# Creates that may go at once after the pacer was idle (at most a tenth of the rate's minute); a minute
# never holds more than STAGING_CREATE_RATE all the same (docs/architecture.md#pacing-creates).
_burst = env.str("STAGING_CREATE_BURST", default="50")
if not _burst.strip().isdigit() or int(_burst) < 1:
    raise ImproperlyConfigured(f"STAGING_CREATE_BURST: {_burst!r} is not a count of creates; write 1 or more.")
STAGING_CREATE_BURST = int(_burst)
# Requests per API token (a session: per user) to the HTTP API, and failed authentications (unknown
# bearer tokens, failed admin logins) per client address; "N/s", "N/m", "N/h", or off
# (docs/architecture.md#rate-limits).
STAGING_API_RATE = env.str("STAGING_API_RATE", default="120/m")
STAGING_AUTH_FAILURE_RATE = env.str("STAGING_AUTH_FAILURE_RATE", default="10/m")
for _name in ("STAGING_API_RATE", "STAGING_AUTH_FAILURE_RATE"):
    try:
        rate_window(globals()[_name])
    except ValueError as exc:
        raise ImproperlyConfigured(f"{_name}: {exc}.") from None
# Proxies in front of the app server that append the client's address to X-Forwarded-For; 0: the client
# is REMOTE_ADDR and the header is ignored (a client could write anything there).
NINJA_NUM_PROXIES = env.int("STAGING_NUM_PROXIES", default=0)
# Reconcile reads at most this many pages (100 predictions each) of Replicate's list looking for a
# lost create; past it the attempt keeps waiting instead of being created again.
STAGING_RECONCILE_MAX_PAGES = env.int("STAGING_RECONCILE_MAX_PAGES", default=100)

# --- Configuration cache ---------------------------------------------------------------------
# How long a process trusts its cached active config before re-checking the database.
MODELS_CONFIG_CACHE_SECONDS = env.float("MODELS_CONFIG_CACHE_SECONDS", default=1.0)

# --- Queue (django-q2, ORM broker; docs/operations.md#queue-settings says why these numbers) -----
Q_CLUSTER = {
    "name": "staging",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "queue_limit": env.int("Q_WORKERS", default=2),
    "timeout": 60,
    "retry": 300,
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 500,
    "ack_failures": True,
    "poll": 0.2,
}

# --- Security (production) -------------------------------------------------------------------
# Trust `X-Forwarded-Proto` only when told that a TLS proxy in front sets it (and overwrites a client's).
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Probes of a load balancer or orchestrator talk plain HTTP to the app server itself.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- Logs and error tracking (docs/operations.md#logs-and-error-tracking) -----------------------
# Every handler redacts attempt tokens from what it writes (stagingsite/log_filters.py), including
# runserver's access log (`django.server`, whose handler Django would otherwise install unfiltered).
LOG_FORMAT = env.str("LOG_FORMAT", default="text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_tokens": {"()": "stagingsite.log_filters.RedactTokens"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        # One JSON object a line; a record's `extra=` fields (job_id, attempt, …) become keys of their own.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["redact_tokens"]},
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server", "filters": ["redact_tokens"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
    },
}

SENTRY_DSN = env.str("SENTRY_DSN", default="")
init_sentry(
    SENTRY_DSN,
    environment=env.str("SENTRY_ENVIRONMENT", default=""),
    traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
)
