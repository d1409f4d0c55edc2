"""Django settings for the Huntaze LLM cost router.

Everything that differs per deploy comes from the environment (see .env.example). The
defaults run a laptop with no service: SQLite, a file cache under SHARED_STATE_DIR that every
process of the checkout shares (web server, worker, beat, manage.py), eager Celery (`make run`
sets a filesystem broker for its worker) and the offline sandbox upstream. The test suite
keeps a local-memory cache per process.
"""

import os
import sys
from decimal import Decimal
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional file; real environment variables win

# pytest (pytest-django reads this module before any conftest can set a variable): each test
# process keeps its cache in memory, apart from a `make run` of the same checkout.
RUNNING_TESTS = "pytest" in sys.modules
# Where the processes of one machine share state without Redis: the file cache and the
# Celery filesystem broker's queue.
SHARED_STATE_DIR = Path(env("SHARED_STATE_DIR", default=str(BASE_DIR / "var")))

# "production" refuses to start without its secrets and turns on the deploy hardening that
# `manage.py check --deploy` asks for; anything else is a laptop, CI or a test run.
ENVIRONMENT = env("ENVIRONMENT", default="development")
PRODUCTION = ENVIRONMENT == "production"
if PRODUCTION:
    missing = [
        name for name in ("SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS") if not os.environ.get(name)
    ]
    if not (os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")):
        missing.append("OPENAI_API_KEY or OPENAI_BASE_URL")
    if missing:
        raise ImproperlyConfigured(f"production needs these settings: {', '.join(missing)}")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-secret-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # behind a TLS proxy
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from the package, not a CDN
    "chartjs",  # django-chartjs: only its static Chart.js, for the dashboard and cost report
    "routing",
    "usage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "huntaze.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Served by a lean ASGI handler (huntaze/asgi.py): Bearer-key API calls, no sessions or CSRF.
HOT_PATH_PREFIXES = ("/v1/", "/api/v1/completions")

ROOT_URLCONF = "huntaze.urls"

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

ASGI_APPLICATION = "huntaze.asgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
# Threads per worker process that run the async views' database work, each keeping one
# connection open (routing/db.py); 0 = Django's thread per request and connection per request.
DATABASE_THREADS = env.int("DATABASE_THREADS", default=4)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL and a busy timeout let the ASGI server's threads write the ledger concurrently;
        # writers take the lock when a transaction starts, so budget admissions serialise
        # instead of failing on a lock upgrade.
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file too: an in-memory database shared between threads locks whole tables
    # and ignores the busy timeout, which the concurrency tests would trip over.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    options = DATABASES["default"].setdefault("OPTIONS", {})
    # A database that is down answers a fast 503, not a hung request.
    options["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT_S", default=3)
    # Parameters sent apart from the SQL let psycopg prepare a statement a connection runs
    # often (the ledger INSERT): no quoting in Python, no parse and plan per row in PostgreSQL.
    # Off behind a transaction-pooling PgBouncer, which cannot keep prepared statements.
    if env.bool("DATABASE_SERVER_SIDE_BINDING", default=True):
        options["server_side_binding"] = True
        options["prepare_threshold"] = 5  # psycopg's default; Django's is never

REDIS_URL = env("REDIS_URL", default="")
# A Redis that stops answering (paused, overloaded, a dead link) costs one call this long at
# most; then every Redis call of the process fails at once for REDIS_BACKOFF_S before one
# tries again (routing/shared_cache.py), and its callers fail open as the README says.
REDIS_CONNECT_TIMEOUT_S = env.float("REDIS_CONNECT_TIMEOUT_S", default=0.1)
REDIS_SOCKET_TIMEOUT_S = env.float("REDIS_SOCKET_TIMEOUT_S", default=0.1)
REDIS_BACKOFF_S = env.float("REDIS_BACKOFF_S", default=1.0)
if REDIS_URL or "CACHE_URL" in os.environ or RUNNING_TESTS:
    CACHES = {
        "default": env.cache(
            "CACHE_URL", default=REDIS_URL.replace("redis://", "rediscache://") or "locmemcache://"
        )
    }
else:
    # No Redis: the policy version, flags, response cache and breaker still reach every
    # process (an admin save reaches the worker within POLICY_REFRESH_S), through files.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(SHARED_STATE_DIR / "cache"),
            # Each write lists the folder to cull it: a few thousand files keep that cheap.
            "OPTIONS": {"MAX_ENTRIES": 3000},
        }
    }
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # Passed to redis-py's connection pool (whose own default is 5 s each); options in
    # CACHE_URL's query string win.
    _cache_options = CACHES["default"].setdefault("OPTIONS", {})
    _cache_options.setdefault("socket_connect_timeout", REDIS_CONNECT_TIMEOUT_S)
    _cache_options.setdefault("socket_timeout", REDIS_SOCKET_TIMEOUT_S)

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
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["routing.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "routing.apis.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Huntaze LLM cost router",
    "DESCRIPTION": "Routed completions, decision previews and usage reports. The completion "
    "endpoints also speak OpenAI's chat-completions format at /v1/.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "routing.schema.completion_paths",
    ],
}

# Celery: eager (in-process) unless a broker is configured. No task's result is read, so no
# result backend is needed.
# (A host in the URL: without one, kombu warns "No hostname was supplied" on every publish.)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="memory://localhost//")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_ALWAYS_EAGER = env.bool(
    "CELERY_TASK_ALWAYS_EAGER", default=CELERY_BROKER_URL.startswith("memory://")
)
CELERY_TASK_EAGER_PROPAGATES = True
if CELERY_BROKER_URL.startswith("filesystem://"):
    # `make run`'s broker (kombu's filesystem transport): a message is a file in one folder
    # that the web server, the beat and the worker all use; no server to run.
    _queue_dir = SHARED_STATE_DIR / "broker" / "queue"
    _control_dir = SHARED_STATE_DIR / "broker" / "control"
    for _folder in (_queue_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)  # kombu expects them
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_control_dir),
        "polling_interval": 0.5,  # seconds between looks at an empty folder
    }
# A Redis broker or result backend that stops answering: a publish (a batch submission, a
# shadow evaluation; both leave the job to the beat's sweep when it fails) waits at most
# REDIS_BROKER_TIMEOUT_S per try, and tries twice, instead of forever (kombu's default).
REDIS_BROKER_TIMEOUT_S = env.float("REDIS_BROKER_TIMEOUT_S", default=1.0)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_timeout": REDIS_BROKER_TIMEOUT_S,
        "socket_connect_timeout": REDIS_BROKER_TIMEOUT_S,
    }
    CELERY_TASK_PUBLISH_RETRY_POLICY = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    }
if (CELERY_RESULT_BACKEND or "").startswith(("redis://", "rediss://")):
    CELERY_REDIS_SOCKET_TIMEOUT = REDIS_BROKER_TIMEOUT_S
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_BROKER_TIMEOUT_S
CELERY_TIMEZONE = "UTC"
ROLLUP_TICK_S = env.float("ROLLUP_TICK_S", default=60.0)  # the dashboard's freshness
CELERY_BEAT_SCHEDULE = {
    # Requests whose worker died mid-call still get their ledger row (status abandoned).
    "routing-inflight-sweep": {"task": "routing.tasks.inflight_sweep_run", "schedule": 60.0},
    "usage-text-purge": {"task": "usage.tasks.usage_text_purge_old", "schedule": 3600.0},
    "routing-idempotency-purge": {
        "task": "routing.tasks.idempotency_purge_run",
        "schedule": 3600.0,
    },
    # Rollups feed the dashboard and the reports; rebuilding a window is idempotent.
    "usage-rollup-refresh": {
        "task": "usage.tasks.usage_rollup_refresh_recent",
        "schedule": ROLLUP_TICK_S,
        # a missed tick is covered by the next one's look-back
        "options": {"expires": ROLLUP_TICK_S * 0.9},
    },
    # Batch jobs: submit what is due and poll what is submitted, resuming from the database.
    "routing-batch-advance": {
        "task": "routing.tasks.batch_advance_due",
        "schedule": env.float("BATCH_TICK_S", default=30.0),
        "options": {"expires": 25},
    },
    "usage-monthly-report": {
        "task": "usage.tasks.monthly_report_generate_previous",
        "schedule": crontab(minute=30, hour=0, day_of_month=1),
    },
    # The provider's export of yesterday (and RECONCILE_DAYS_BACK days) against the ledger;
    # late in the morning, when the provider has closed yesterday's figures.
    "usage-provider-reconcile": {
        "task": "usage.tasks.provider_usage_reconcile_recent_days",
        "schedule": crontab(minute=15, hour=6),
    },
}

# Upstream model providers. Model profiles name the variable that holds their key;
# only this module reads the environment, so every *_API_KEY variable is collected here.
OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env("OPENAI_BASE_URL", default=None)  # any OpenAI-compatible endpoint
UPSTREAM_API_KEYS = {k: v for k, v in os.environ.items() if k.endswith("_API_KEY") and v}
# "sandbox" answers offline and deterministically; "live" calls each profile's endpoint.
UPSTREAM_MODE = env(
    "UPSTREAM_MODE", default="live" if (OPENAI_API_KEY or OPENAI_BASE_URL) else "sandbox"
)
UPSTREAM_TIMEOUT_S = env.float("UPSTREAM_TIMEOUT_S", default=30.0)
# The SDK's HTTP transport in live mode: "aiohttp" (less CPU per call) or "httpx".
UPSTREAM_HTTP_CLIENT = env("UPSTREAM_HTTP_CLIENT", default="aiohttp")
# One retry loop, ours (the SDK's is off): attempts per model, then the category's fallbacks,
# all within the category's deadline; exponential backoff with jitter, Retry-After honoured.
ROUTER_ATTEMPTS_PER_MODEL = env.int("ROUTER_ATTEMPTS_PER_MODEL", default=3)
ROUTER_BACKOFF_BASE_S = env.float("ROUTER_BACKOFF_BASE_S", default=0.25)
ROUTER_BACKOFF_MAX_S = env.float("ROUTER_BACKOFF_MAX_S", default=4.0)
# Time kept for the fallback models: a model's attempts stop early enough to leave the rest
# of the chain half of what remains of the deadline, at most this (a hung model still falls
# back in time).
ROUTER_FALLBACK_RESERVE_S = env.float("ROUTER_FALLBACK_RESERVE_S", default=10.0)
# Circuit breaker per model, shared through the cache.
CIRCUIT_FAILURE_THRESHOLD = env.int("CIRCUIT_FAILURE_THRESHOLD", default=5)
CIRCUIT_WINDOW_S = env.int("CIRCUIT_WINDOW_S", default=30)
CIRCUIT_COOLDOWN_S = env.int("CIRCUIT_COOLDOWN_S", default=30)
SANDBOX_LATENCY_MS = env.int("SANDBOX_LATENCY_MS", default=0)
# The sandbox as one HTTP server (`python -m routing.providers.sandbox`) that every process
# calls, so a batch submitted by the web server is polled by the worker on the same sandbox
# (`make run` sets it); empty: each process answers with a sandbox of its own, in memory.
SANDBOX_URL = env("SANDBOX_URL", default="")
# tiktoken's BPE files, looked up here for every entry point (manage.py, the ASGI server,
# Celery, tests): TIKTOKEN_CACHE_DIR, else ../shared/tiktoken beside the checkout. Without
# them tiktoken tries to download its files, and token counts degrade to an estimate (marked
# in the ledger) when that fails.
_shared_tiktoken = BASE_DIR.parent / "shared" / "tiktoken"
TIKTOKEN_CACHE_DIR = env(
    "TIKTOKEN_CACHE_DIR", default=str(_shared_tiktoken) if _shared_tiktoken.is_dir() else ""
)

# Batch jobs (deferrable categories, through the provider's Batch API).
BATCH_MAX_REQUESTS = env.int("BATCH_MAX_REQUESTS", default=1000)
BATCH_POLL_INTERVAL_S = env.float("BATCH_POLL_INTERVAL_S", default=60.0)
BATCH_SUBMIT_LEASE_S = env.float("BATCH_SUBMIT_LEASE_S", default=300.0)  # a lost submit resumes
BATCH_SUBMIT_RETRY_S = env.float("BATCH_SUBMIT_RETRY_S", default=30.0)  # doubles per attempt
BATCH_SUBMIT_MAX_ATTEMPTS = env.int("BATCH_SUBMIT_MAX_ATTEMPTS", default=5)

# Routing
ROUTER_MIN_CATEGORY_CONFIDENCE = env.float("ROUTER_MIN_CATEGORY_CONFIDENCE", default=0.34)
ROUTER_SHUTDOWN_WARNING_DAYS = env.int("ROUTER_SHUTDOWN_WARNING_DAYS", default=60)
# The learned router (routing/learned): where its artifacts are, which one new policy versions
# use (empty: the CURRENT file there), and whether a missing or broken artifact falls back to
# the keyword classifier (reason "classifier:fallback") instead of stopping start-up.
ROUTER_ARTIFACT_DIR = env(
    "ROUTER_ARTIFACT_DIR", default=str(BASE_DIR / "routing/learned/artifacts")
)
ROUTER_ARTIFACT = env("ROUTER_ARTIFACT", default="")
ROUTER_KEYWORD_FALLBACK = env.bool("ROUTER_KEYWORD_FALLBACK", default=False)
# How stale a worker's in-memory policy may get before it checks the shared version number.
POLICY_REFRESH_S = env.float("POLICY_REFRESH_S", default=2.0)
# How long a worker trusts a key it has looked up (revocations and budget edits elsewhere
# reach it within this).
API_KEY_CACHE_S = env.float("API_KEY_CACHE_S", default=5.0)
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=1_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES + 1024
# How long an Idempotency-Key's in-flight claim holds before a retry may take it over (its
# worker died). 0: the longest enabled category deadline plus 30 s. A fixed value shorter
# than a deadline lets a slow (alive) request be run twice.
IDEMPOTENCY_LEASE_S = env.float("IDEMPOTENCY_LEASE_S", default=0.0)

# Privacy: prompt and answer text are not stored unless switched on, and then truncated.
USAGE_STORE_TEXT = env.bool("USAGE_STORE_TEXT", default=False)
USAGE_STORE_TEXT_MAX_CHARS = env.int("USAGE_STORE_TEXT_MAX_CHARS", default=2000)
USAGE_TEXT_RETENTION_DAYS = env.int("USAGE_TEXT_RETENTION_DAYS", default=30)
# Under the ASGI server a completion's ledger row is INSERTed just after its answer is sent
# (routing/after_response.py); false writes it before, as the test client and commands do.
LEDGER_WRITE_AFTER_RESPONSE = env.bool("LEDGER_WRITE_AFTER_RESPONSE", default=True)

# Shadow evaluation (flag quality_sampling): the judge model (blank: each category's premium
# model), how long an encrypted shadow job stays readable, the evaluations needed before a
# category's quality alert or calibration counts, and the window both read.
QUALITY_JUDGE_MODEL = env("QUALITY_JUDGE_MODEL", default="")
QUALITY_SHADOW_TTL_S = env.int("QUALITY_SHADOW_TTL_S", default=3600)
QUALITY_MIN_SAMPLES = env.int("QUALITY_MIN_SAMPLES", default=30)
QUALITY_WINDOW_DAYS = env.int("QUALITY_WINDOW_DAYS", default=30)

# Prometheus /metrics: open to these client addresses, or to anyone sending the bearer token.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"])
METRICS_BEARER_TOKEN = env("METRICS_BEARER_TOKEN", default="")
# Set (to an empty, writable directory) when several worker processes serve the app.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default="")
# The dashboard page polls its JSON endpoint this often.
DASHBOARD_REFRESH_S = env.int("DASHBOARD_REFRESH_S", default=15)
# Long commands draw progress on a terminal (huntaze/progress.py); never under CI.
PROGRESS_BARS = env.bool("PROGRESS_BARS", default=not env.bool("CI", default=False))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # The HTTP client logs every upstream request at INFO: the ledger already has them.
    "loggers": {name: {"level": "WARNING"} for name in ("httpx", "httpx2", "openai")},
}
if CELERY_TASK_ALWAYS_EAGER:
    # Tasks run inside the calling process (a shell command, the tests): a "Task ... succeeded"
    # line per task (each shadow evaluation of a simulate run) says nothing the ledger does not.
    # A failing task raises to its caller (CELERY_TASK_EAGER_PROPAGATES), and errors still log.
    LOGGING["loggers"]["celery.app.trace"] = {"level": "WARNING"}

# Reconciliation with the provider's bill (usage/reconciliation.py): OpenAI's organization
# usage and costs exports, read with an admin key (not a project key) from this base URL; in
# development, without a key, the sandbox's exports (SANDBOX_URL). Empty: no export is read
# (a CSV import of the bill still reconciles). A figure that differs by more than the
# tolerance, or a day and model on one side only, is a red alert on the dashboard.
OPENAI_ADMIN_KEY = env("OPENAI_ADMIN_KEY", default="")
PROVIDER_USAGE_BASE_URL = env(
    "PROVIDER_USAGE_BASE_URL",
    default="https://api.openai.com/v1" if OPENAI_ADMIN_KEY else SANDBOX_URL,
)
PROVIDER_USAGE_TIMEOUT_S = env.float("PROVIDER_USAGE_TIMEOUT_S", default=30.0)
RECONCILE_TOLERANCE_PERCENT = Decimal(env("RECONCILE_TOLERANCE_PERCENT", default="1"))
RECONCILE_DAYS_BACK = env.int("RECONCILE_DAYS_BACK", default=3)  # the beat's look-back
RECONCILE_ALERT_DAYS = env.int("RECONCILE_ALERT_DAYS", default=7)  # alert and gauge window

# Shadow evaluation's cost: warn (dashboard quality panel, monthly report, simulate) when QA
# spend (shadow and judge calls) passes this share of the routed bill of the same window.
QUALITY_QA_SPEND_WARN_PERCENT = env.int("QUALITY_QA_SPEND_WARN_PERCENT", default=25)
