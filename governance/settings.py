"""Settings for the consent service, every value read from the environment (see README)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from governance.env import env_bool, env_float, env_int, env_list, env_ports, env_str
from governance.schedule import beat_schedule

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)

# Development-only fallbacks: with DEBUG off, the service refuses to start without the real ones.
_DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105
_DEV_SUBJECT_HASH_KEY = "dev-only-subject-hash-key"
_DEV_SUBJECT_ENCRYPTION_KEY = "ZGV2LW9ubHktc3ViamVjdC1lbmNyeXB0aW9uLWtleSE="  # 32 bytes, base64

_missing = [
    name
    for name in ("SECRET_KEY", "SUBJECT_HASH_KEY", "SUBJECT_ENCRYPTION_KEY", "DATABASE_URL")
    if not env_str(name)
]
if not DEBUG and _missing:
    raise ImproperlyConfigured(
        "With DEBUG off the service needs these environment variables: "
        + ", ".join(_missing)
        + " (see README, 'Configuration')."
    )

SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY) or _DEV_SECRET_KEY
SUBJECT_HASH_KEY = env_str("SUBJECT_HASH_KEY", _DEV_SUBJECT_HASH_KEY) or _DEV_SUBJECT_HASH_KEY
SUBJECT_HASH_KEY_VERSION = env_int("SUBJECT_HASH_KEY_VERSION", 1)
SUBJECT_ENCRYPTION_KEY = (
    env_str("SUBJECT_ENCRYPTION_KEY", _DEV_SUBJECT_ENCRYPTION_KEY) or _DEV_SUBJECT_ENCRYPTION_KEY
)
# Earlier encryption keys, still accepted for reading while rotation re-encrypts.
SUBJECT_ENCRYPTION_OLD_KEYS = env_list("SUBJECT_ENCRYPTION_OLD_KEYS", [])

# With DEBUG off, a guessable key is refused like a missing one. SECRET_KEY signs sessions
# and keys the audit's IP hash: Django's own bar (50 characters, 5 distinct). The subject
# hash key makes every pseudonym: at least SHA-256's 32 bytes. Encryption keys must be
# base64 of 32 bytes (AES-256); checked here so a bad one stops the start, not a write.
MIN_SECRET_KEY_LENGTH = 50
MIN_SUBJECT_HASH_KEY_LENGTH = 32


def _is_aes256_key(raw: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))) == 32
    except (binascii.Error, ValueError):
        return False


_weak = []
if len(SECRET_KEY) < MIN_SECRET_KEY_LENGTH or len(set(SECRET_KEY)) < 5:
    _weak.append(f"SECRET_KEY (at least {MIN_SECRET_KEY_LENGTH} characters, 5 distinct)")
if len(SUBJECT_HASH_KEY) < MIN_SUBJECT_HASH_KEY_LENGTH:
    _weak.append(f"SUBJECT_HASH_KEY (at least {MIN_SUBJECT_HASH_KEY_LENGTH} characters)")
if not all(_is_aes256_key(k) for k in [SUBJECT_ENCRYPTION_KEY, *SUBJECT_ENCRYPTION_OLD_KEYS]):
    _weak.append("SUBJECT_ENCRYPTION_KEY and SUBJECT_ENCRYPTION_OLD_KEYS (base64 of 32 bytes)")
if not DEBUG and _weak:
    raise ImproperlyConfigured(
        "With DEBUG off these keys are too weak: "
        + "; ".join(_weak)
        + " (see README, 'Configuration')."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    # Django's admin with the staff sign-in (password and authenticator code) as its site.
    "governance.apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "django_celery_beat",
    "axes",
    "django_otp",
    "governance",
    "consent",
    "retention",
]

MIDDLEWARE = [
    # First: gives each request its id (logs, response header, the tasks it queues), counts
    # and times it, and answers /metrics itself, before any session, host or https rule.
    "governance.middleware.RequestObservationMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Sessions, users and messages are the admin's: Django's, skipped on /api/v1/ (the
    # bearer-key API never reads them; governance/middleware.py).
    "governance.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "governance.middleware.AuthenticationMiddleware",
    # Marks request.user verified when the session was signed in with an authenticator code.
    "governance.middleware.OTPMiddleware",
    "governance.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

# Axes first: it refuses a locked-out sign-in before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "governance.urls"
WSGI_APPLICATION = "governance.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'governance.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL or "", conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # WAL lets web, worker and beat read while one writes; IMMEDIATE takes the write lock at
    # BEGIN so two writers queue on the busy timeout instead of failing on lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
else:
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Health checks by a poll of the socket, not a `SELECT 1` round trip per request.
        DATABASES["default"]["ENGINE"] = "governance.pg_backend"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Django's cursors bind client-side and never prepare; a threshold lets the consent
    # write path prepare its few fixed statements explicitly (governance.db). No
    # statement is prepared automatically. (Behind PgBouncer, use session pooling.)
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 1_000_000

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SESSION_COOKIE_SECURE = not DEBUG and env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True

# The JSON consent endpoints refuse bodies above this (413), before parsing them.
CONSENT_MAX_BODY_BYTES = env_int("CONSENT_MAX_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CONSENT_MAX_BODY_BYTES
# Chunked request bodies (no Content-Length) are buffered up to this before parsing.
CHUNKED_BODY_LIMIT_BYTES = env_int("CHUNKED_BODY_LIMIT_BYTES", 16 * 1024 * 1024)
# A streamed check (NDJSON) refuses a longer line with a 400 line_too_long, before reading
# on: one {"subject_id": ...} line needs at most about 3 KiB.
CHECK_STREAM_MAX_LINE_BYTES = env_int("CHECK_STREAM_MAX_LINE_BYTES", 16 * 1024)
if CHECK_STREAM_MAX_LINE_BYTES < 4096:
    # 255 characters outside the BMP, each escaped as a \uXXXX\uXXXX pair: about 3.1 KB.
    raise ImproperlyConfigured("CHECK_STREAM_MAX_LINE_BYTES must be at least 4096.")
# Below this age a grant must be given by a parent or guardian (GDPR Art. 8).
CHILD_CONSENT_AGE = env_int("CHILD_CONSENT_AGE", 16)
# Reverse proxies in front of the service whose X-Forwarded-For entries are trusted.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# --- transport security and staff sign-in (see README, "Configuration") ----------------
# HTTPS by default with DEBUG off; the tests and plain-http setups turn it off by variable.
SECURE_SSL_REDIRECT = not DEBUG and env_bool("SECURE_SSL_REDIRECT", True)
# Health probes come from the orchestrator inside the network, over plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# HSTS (sent on https responses only). Off with DEBUG, so a developer's localhost is not
# pinned to https for a year.
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# The proxy's word on the scheme, as "Header-Name: value". Believed by default only when a
# trusted proxy is declared (TRUSTED_PROXY_COUNT): without one any client could claim https.
# "off" never believes it.
_PROXY_SSL_HEADER = (
    env_str(
        "SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https" if TRUSTED_PROXY_COUNT > 0 else "off"
    )
    or "off"
)
if _PROXY_SSL_HEADER.strip().lower() != "off":
    _name, _sep, _value = _PROXY_SSL_HEADER.partition(":")
    if not (_sep and _name.strip() and _value.strip()):
        raise ImproperlyConfigured(
            'SECURE_PROXY_SSL_HEADER must be "Header-Name: value" (or "off"), '
            f"got {_PROXY_SSL_HEADER!r}."
        )
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _name.strip().upper().replace("-", "_"),
        _value.strip(),
    )
# Silenced for `check --deploy`: HSTS preload (security.W021) is a commitment to browsers'
# built-in lists for the whole domain, the operator's to make (SECURE_HSTS_PRELOAD=1).
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# Staff sign-in throttling (django-axes): failures count per username AND client address,
# so one attacker cannot lock every staff member out (behind nginx all share its address
# unless TRUSTED_PROXY_COUNT lets client_ip see through). The address is stored only as a
# keyed hash (governance.net.client_ip_pseudonym); successful sign-ins are not logged.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "governance.net.client_ip_pseudonym"
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ADMIN_LOGIN_COOLOFF_MINUTES", 15))
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ACCESS_FAILURE_LOG = False
# Staff two-factor sign-in (docs/staff-accounts.md): a code from an authenticator app
# (TOTP) after the password. Always required with DEBUG off; with DEBUG on only when asked
# for, so `make run` works before the demo admin has enrolled. Enrol with
# `python manage.py enrol_totp USERNAME`.
STAFF_OTP_REQUIRED = not DEBUG or env_bool("STAFF_OTP_REQUIRED", False)
# The name authenticator apps show beside the account.
STAFF_TOTP_ISSUER = env_str("STAFF_TOTP_ISSUER", "Consent service") or "Consent service"
# How often an API key's last_used_at is written, at most (seconds).
API_KEY_TOUCH_INTERVAL = env_int("API_KEY_TOUCH_INTERVAL", 60)
# How long a process reuses an API key lookup and a write's purposes read (governance.memo):
# another process's revocation or purpose change reaches it within this. 0: always read.
HOT_READ_CACHE_SECONDS = env_float("HOT_READ_CACHE_SECONDS", 1.0)
if not 0 <= HOT_READ_CACHE_SECONDS <= 60:  # NaN and infinity fail this too
    raise ImproperlyConfigured("HOT_READ_CACHE_SECONDS must be between 0 and 60 seconds.")

# The controller named in consent receipts.
CONTROLLER = {
    "name": env_str("CONTROLLER_NAME", "Example Controller Ltd"),
    "contact": env_str("CONTROLLER_CONTACT", "Data Protection Officer"),
    "address": env_str("CONTROLLER_ADDRESS", "1 Example Street, Example City"),
    "email": env_str("CONTROLLER_EMAIL", "privacy@example.com"),
    "phone": env_str("CONTROLLER_PHONE", ""),
    "url": env_str("CONTROLLER_URL", "https://example.com"),
}
PRIVACY_POLICY_URL = env_str("PRIVACY_POLICY_URL", "https://example.com/privacy")
DEFAULT_JURISDICTION = env_str("DEFAULT_JURISDICTION", "EU")
# A retired signing key stays in /.well-known/jwks.json this long after its last signature
# (default six years, the horizon controllers keep proof of consent for), so receipts kept
# that long still verify.
SIGNING_KEY_PUBLISH_DAYS = env_int("SIGNING_KEY_PUBLISH_DAYS", 2192)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["governance.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["governance.api.auth.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["governance.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "governance.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["governance.api.throttling.ClientAndIpRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "governance.api.schema.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Consent and data-governance service",
    "DESCRIPTION": (
        "Records consent per purpose, answers checks for pipelines and back ends, "
        "and enforces retention."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    # Tags by area, summaries, subject ids in paths, readable component names.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "governance.api.schema.postprocess",
    ],
    "TAGS": [],
}

CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])

# Celery: embedded default needs no server (SQLAlchemy transport on its own SQLite file).
CELERY_BROKER_URL = env_str(
    "CELERY_BROKER_URL", REDIS_URL or f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND", REDIS_URL or f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}"
)
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5}
# django-celery-beat's database scheduler, touching BEAT_HEARTBEAT_FILE on every tick.
CELERY_BEAT_SCHEDULER = "governance.beat:HeartbeatScheduler"
BEAT_HEARTBEAT_FILE = Path(
    env_str("BEAT_HEARTBEAT_FILE", str(VAR_DIR / "beat-heartbeat")) or VAR_DIR / "beat-heartbeat"
)
CELERY_TIMEZONE = "UTC"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# text: one readable line per record; json: one JSON object per line (governance.logging).
LOG_FORMAT = (env_str("LOG_FORMAT", "text") or "text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "governance.logging.RedactSubjectIdentifiers"},
        "request_id": {"()": "governance.logging.RequestIdFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "governance.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact", "request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Replaces Django's default handlers for these loggers (its DEBUG console handler
        # would print request paths unredacted).
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# Prometheus metrics at /metrics (docs/operations.md, "Metrics"): served to a direct peer
# in these networks (loopback only by default), or to a request with this bearer token
# (empty: no token works). PROMETHEUS_MULTIPROC_DIR is read by prometheus_client itself.
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", ["127.0.0.1/32", "::1/128"])
METRICS_BEARER_TOKEN = env_str("METRICS_BEARER_TOKEN", "") or ""
for _net in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_net, strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {_net!r} is no network.") from _exc
# A Celery worker serves its own /metrics on this port (0: not at all).
CELERY_METRICS_PORT = env_int("CELERY_METRICS_PORT", 0)

# Webhooks (see README, "Webhooks"). Backoff is exponential with jitter, capped.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
# Receivers on loopback or private addresses (off in production: they reach internal services).
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", DEBUG)
# Ports a receiver may listen on besides 80 and 443 (`8080,9000-9099`), whatever its address:
# other ports reach mail, database and admin services on the receiver's host.
WEBHOOK_ALLOWED_PORTS = env_ports("WEBHOOK_ALLOWED_PORTS")
WEBHOOK_TIMEOUT_SECONDS = float(env_str("WEBHOOK_TIMEOUT_SECONDS", "5") or 5)
WEBHOOK_BACKOFF_BASE_SECONDS = float(env_str("WEBHOOK_BACKOFF_BASE_SECONDS", "10") or 10)
WEBHOOK_BACKOFF_MAX_SECONDS = float(env_str("WEBHOOK_BACKOFF_MAX_SECONDS", "3600") or 3600)
WEBHOOK_SWEEP_SECONDS = env_int("WEBHOOK_SWEEP_SECONDS", 30)
# A `subject.erased` announcement keeps the erased identifier (encrypted) until every
# subscriber has it, or until its parked deliveries have waited this long for a redelivery
# from the admin (days); the sweeper then nulls it.
WEBHOOK_ERASED_IDENTIFIER_KEEP_DAYS = env_int("WEBHOOK_ERASED_IDENTIFIER_KEEP_DAYS", 30)
# Queue a dispatch after each commit that writes to the outbox (the sweeper runs regardless).
WEBHOOK_DISPATCH_ON_COMMIT = env_bool("WEBHOOK_DISPATCH_ON_COMMIT", True)
# One dispatch message per process per window serves every commit in it (seconds; 0: one
# message per commit).
WEBHOOK_DISPATCH_COALESCE_SECONDS = float(
    env_str("WEBHOOK_DISPATCH_COALESCE_SECONDS", "0.2") or 0.2
)
# --- lakehouse snapshots (docs/lakehouse.md) -----------------------------------------------
# How long a snapshot lives (seconds): its file and pseudonym key are destroyed then.
SNAPSHOT_TTL = env_int("SNAPSHOT_TTL", 24 * 3600)
# Where snapshot files are written: shared by the web processes and the workers.
SNAPSHOT_DIR = Path(env_str("SNAPSHOT_DIR", str(VAR_DIR / "snapshots")) or VAR_DIR / "snapshots")
# Subjects (a range of that many subject ids) per build chunk: bounds a worker's memory.
SNAPSHOT_CHUNK_SUBJECTS = env_int("SNAPSHOT_CHUNK_SUBJECTS", 100_000)
CELERY_BEAT_SCHEDULE = beat_schedule(outbox_sweep_seconds=float(WEBHOOK_SWEEP_SECONDS))
# Consent banners (publishable keys): per-client-IP limit on the banner endpoints, lifetime
# of subject tokens minted by product back ends, and the date /.well-known/gpc.json shows.
BANNER_RATE_LIMIT_PER_MINUTE = env_int("BANNER_RATE_LIMIT_PER_MINUTE", 120)
SUBJECT_TOKEN_TTL_SECONDS = env_int("SUBJECT_TOKEN_TTL_SECONDS", 900)
GPC_LAST_UPDATE = env_str("GPC_LAST_UPDATE", "2026-11-29") or "2026-11-29"
# Banner requests carry these; the banner's origins are allowed per property (consent.apps).
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-device-id",
    "x-subject-token",
    "sec-gpc",
)
CORS_EXPOSE_HEADERS = ["Retry-After", "Idempotent-Replayed"]
# --- retention and rights (see README, "Retention and rights") --------------------------
# Extra PostgreSQL databases holding external tables retention may purge (an ML feature
# store, say): RETENTION_EXTERNAL_DATABASES=features and EXTERNAL_DATABASE_URL_FEATURES=....
RETENTION_EXTERNAL_DATABASES = env_list("RETENTION_EXTERNAL_DATABASES", [])
for _alias in RETENTION_EXTERNAL_DATABASES:
    _url = env_str(f"EXTERNAL_DATABASE_URL_{_alias.upper()}")
    if not _url:
        raise ImproperlyConfigured(
            f"RETENTION_EXTERNAL_DATABASES names {_alias!r}: "
            f"set EXTERNAL_DATABASE_URL_{_alias.upper()}."
        )
    DATABASES[_alias] = dj_database_url.parse(_url, conn_max_age=60)
    # The tests create it (empty) like the default one; the service never migrates it.
    DATABASES[_alias]["TEST"] = {"MIGRATE": False}
DATABASE_ROUTERS = ["retention.routers.ExternalDatabaseRouter"]
# External tables, as JSON: [{"alias": "features", "table": "ml_features",
# "timestamp_column": "created_at", "subject_key_column": "subject_key",
# "purpose": "ml_training", "keep_days": 365}]
RETENTION_EXTERNAL_TABLES = json.loads(env_str("RETENTION_EXTERNAL_TABLES", "[]") or "[]")
# Delta tables (delta-rs, no JVM) retention and rights reach, as JSON: [{"name": "training",
# "uri": "s3://lake/training", "id_column": "user_id", "id_kind": "identifier" (or
# "subject_key"), "timestamp_column": "event_time", "purposes": ["ml_training"],
# "keep_days": 365, "storage_options": {...}}]. See docs/lakehouse-erasure.md.
RETENTION_LAKEHOUSE_TABLES = json.loads(env_str("RETENTION_LAKEHOUSE_TABLES", "[]") or "[]")
for _spec in RETENTION_LAKEHOUSE_TABLES:
    _absent = {"name", "uri", "id_column", "timestamp_column"} - set(_spec)
    if _absent or _spec.get("id_kind", "subject_key") not in ("identifier", "subject_key"):
        raise ImproperlyConfigured(
            f"RETENTION_LAKEHOUSE_TABLES: {_spec.get('name', _spec)!r} needs name, uri, "
            "id_column, timestamp_column, and id_kind identifier or subject_key "
            f"(missing: {sorted(_absent)})."
        )
# Removed rows' files stay this long before a vacuum deletes them (writers that started
# before the removal still find the files they read); an erasure is done only after it.
LAKEHOUSE_VACUUM_HOURS = env_int("LAKEHOUSE_VACUUM_HOURS", 24)
# How long an enforcement run's lease lasts without renewal (renewed after every chunk).
RETENTION_LEASE_SECONDS = env_int("RETENTION_LEASE_SECONDS", 300)
# A rights request whose worker has not reported for this long is re-queued by the sweeper.
RETENTION_RIGHTS_STALE_SECONDS = env_int("RETENTION_RIGHTS_STALE_SECONDS", 300)
# Withdrawals younger than this are left for the next propagation pass (late commits).
RETENTION_PROPAGATION_LAG_SECONDS = env_int("RETENTION_PROPAGATION_LAG_SECONDS", 60)
# Accountability records (the audit trail, the consent ledger and its proof contexts) are
# kept at least this long, whatever a policy says: 6 years (2192 days with leap days), the
# limitation horizon most controllers keep proof for. Governs policies, never an erasure.
# On PostgreSQL `migrate` also writes it into audit_purge_before, the database's own floor.
RETENTION_MINIMUM_ACCOUNTABILITY_DAYS = env_int("RETENTION_MINIMUM_ACCOUNTABILITY_DAYS", 2192)
