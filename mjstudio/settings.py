"""Settings for mjstudio, read from the environment (django-environ) with safe local defaults.

Local default: SQLite in WAL mode, the sandbox as "Apiframe", the database task queue.
Production: DJANGO_DEBUG=false plus the variables README.md lists; `manage.py check --deploy` is clean then.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=True)

# --- Production: required variables -------------------------------------------------------------------------
# With DEBUG off these have no safe default. A missing (or empty) one stops every process (manage.py, gunicorn,
# runstudio) before it starts, with one line naming them all, not a traceback.
PRODUCTION_REQUIRED_VARIABLES = (
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "APIFRAME_BASE_URL",
    "APIFRAME_FETCH_URL",
    "APIFRAME_API_KEY",
    "APIFRAME_WEBHOOK_SECRET",
)
if not DEBUG and (_missing := [name for name in PRODUCTION_REQUIRED_VARIABLES if not env.str(name, "").strip()]):
    sys.exit(f"mjstudio will not start: DJANGO_DEBUG is false and {', '.join(_missing)} not set (README.md, Deploy).")
SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key" if DEBUG else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tasks_db",
    "axes",
    "generations",
    # The local stand-in for Apiframe. Studio code never imports it; it is only served by `runsandbox`.
    "sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Apiframe's webhook and the health check skip the rest: no session, user, team or page (its docstring).
    "generations.middleware.MachineEndpointsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "generations.middleware.HtmxLoginRequiredMiddleware",
    "generations.middleware.TeamMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mjstudio.urls"
WSGI_APPLICATION = "mjstudio.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "generations.context_processors.header",
            ],
        },
    },
]

# SQLite (WAL, IMMEDIATE transactions, a busy timeout) unless DATABASE_URL names another database.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not memory, for tests: the live server, the sandbox's webhooks and the test each get a connection.
    # One per process, so that two test runs on one machine never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"mjstudio-test-{os.getpid()}.sqlite3")}
# Connections outlive a request (each gunicorn thread keeps its own): no reconnect, no PRAGMAs, per request.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Background work: django.tasks on the database queue (`manage.py db_worker`) by default;
# TASKS_BACKEND=django_tasks_rq.RQBackend plus REDIS_URL moves it to Redis for many workers.
# Two queues: "default" for the quick calls to Apiframe, "mirror" for image downloads, which can be slow and
# must never hold a submission back.
TASK_QUEUES = ["default", "mirror"]
REDIS_URL = env("REDIS_URL", default="")
TASKS = {
    "default": {
        "BACKEND": env("TASKS_BACKEND", default="django_tasks_db.DatabaseBackend"),
        "QUEUES": TASK_QUEUES,
    }
}
if TASKS["default"]["BACKEND"].startswith("django_tasks_rq"):
    INSTALLED_APPS += ["django_rq", "django_tasks_rq"]
    # Our queue class gives every job a timeout and retries: a job whose worker was SIGKILLed runs again.
    RQ_QUEUES = {
        name: {"URL": REDIS_URL or "redis://127.0.0.1:6379/0", "QUEUE_CLASS": "generations.workers.StudioQueue"}
        for name in TASK_QUEUES
    }
# RQ workers (`manage.py runworker`): a running job's heartbeat every MJSTUDIO_RQ_HEARTBEAT_SECONDS; a job whose
# worker died (no heartbeat for that again, 10 s at least) is run again at the next look at the queues, every
# MJSTUDIO_RQ_MAINTENANCE_SECONDS, up to MJSTUDIO_JOB_RETRIES times: 20-30 s after the death with these defaults.
MJSTUDIO_RQ_HEARTBEAT_SECONDS = env.int("MJSTUDIO_RQ_HEARTBEAT_SECONDS", default=10)
MJSTUDIO_RQ_MAINTENANCE_SECONDS = env.int("MJSTUDIO_RQ_MAINTENANCE_SECONDS", default=10)
MJSTUDIO_JOB_RETRIES = env.int("MJSTUDIO_JOB_RETRIES", default=3)
# One poller runs rounds at a time (a lease in Redis with REDIS_URL, else a row in the database); another copy
# takes over within this many seconds of its death.
MJSTUDIO_POLLER_LEASE_SECONDS = env.float("MJSTUDIO_POLLER_LEASE_SECONDS", default=15.0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "generations:studio"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `make run` with DEBUG off collects here (whitenoise serves it; hashed names are cached for a year, immutable).
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
# Media is never served as public files: image views check the team first.
MEDIA_URL = "/media-not-public/"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# S3 media (`pip install .[scale]`): AWS_STORAGE_BUCKET_NAME, plus AWS_S3_ENDPOINT_URL for an S3-compatible store
# (MinIO, R2, ...) and AWS_S3_REGION_NAME. Keys: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, read by boto3 itself (or
# the machine's role). Objects stay private; the image view hands a browser a signed URL valid this many seconds
# (AWS_QUERYSTRING_EXPIRE), issued only after its team and hidden checks.
# The origins a page may load images from (its CSP): the bucket's, when media is in one.
MJSTUDIO_MEDIA_ORIGINS: list[str] = []
if AWS_STORAGE_BUCKET_NAME := env("AWS_STORAGE_BUCKET_NAME", default=""):
    if not (importlib.util.find_spec("storages") and importlib.util.find_spec("boto3")):
        sys.exit(
            "mjstudio will not start: AWS_STORAGE_BUCKET_NAME is set but django-storages[s3] is not installed "
            "(pip install '.[scale]')."
        )
    # Signed URLs live this long: S3 refuses more than 7 days; under 10 s a slow page would show broken images.
    AWS_QUERYSTRING_EXPIRE = env.str("AWS_QUERYSTRING_EXPIRE", default="300").strip()
    if not (AWS_QUERYSTRING_EXPIRE.isdigit() and 10 <= int(AWS_QUERYSTRING_EXPIRE) <= 7 * 24 * 3600):
        sys.exit(
            f"mjstudio will not start: AWS_QUERYSTRING_EXPIRE={AWS_QUERYSTRING_EXPIRE!r} is not whole seconds "
            "from 10 to 604800 (7 days)."
        )
    AWS_S3_ENDPOINT_URL = env("AWS_S3_ENDPOINT_URL", default="")
    AWS_S3_REGION_NAME = env("AWS_S3_REGION_NAME", default=env("AWS_DEFAULT_REGION", default="us-east-1"))
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": AWS_S3_ENDPOINT_URL or None,
            "region_name": AWS_S3_REGION_NAME,
            # A prefix inside the bucket: the orphan sweep never looks outside it, so a bucket may be shared.
            "location": env("AWS_LOCATION", default=""),
            # No ACL is sent: objects stay private (the bucket's default), and a bucket with ACLs disabled (AWS's
            # default since 2023) refuses every ACL but none. Nothing is ever public-read.
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": int(AWS_QUERYSTRING_EXPIRE),
            "signature_version": "s3v4",
            # Paths on a custom endpoint (an IP, or a host without per-bucket names); bucket hosts on AWS itself.
            "addressing_style": "path" if AWS_S3_ENDPOINT_URL else "virtual",
            "file_overwrite": True,  # names are random: no existence check before each upload
        },
    }
    if AWS_S3_ENDPOINT_URL:
        _endpoint = urlsplit(AWS_S3_ENDPOINT_URL)
        MJSTUDIO_MEDIA_ORIGINS = [f"{_endpoint.scheme}://{_endpoint.netloc}"]
    elif AWS_S3_REGION_NAME == "us-east-1":
        MJSTUDIO_MEDIA_ORIGINS = [f"https://{AWS_STORAGE_BUCKET_NAME}.s3.amazonaws.com"]
    else:
        MJSTUDIO_MEDIA_ORIGINS = [f"https://{AWS_STORAGE_BUCKET_NAME}.s3.{AWS_S3_REGION_NAME}.amazonaws.com"]

# --- Apiframe -------------------------------------------------------------------------------------------
# The two base URLs and the key are the whole switch between the sandbox and the real Apiframe:
# APIFRAME_BASE_URL=https://api.apiframe.ai/pro APIFRAME_FETCH_URL=https://api.apiframe.ai APIFRAME_API_KEY=...
SANDBOX_ADDR = env("SANDBOX_ADDR", default="127.0.0.1:8765")
APIFRAME_BASE_URL = env("APIFRAME_BASE_URL", default=f"http://{SANDBOX_ADDR}/pro")
APIFRAME_FETCH_URL = env("APIFRAME_FETCH_URL", default=f"http://{SANDBOX_ADDR}")
APIFRAME_API_KEY = env("APIFRAME_API_KEY", default="sandbox-key")
APIFRAME_TIMEOUT = env.float("APIFRAME_TIMEOUT", default=20.0)
# Sandbox mode: "Apiframe" is on this machine. Only then does `make run` create a demo login.
APIFRAME_IS_SANDBOX = urlsplit(APIFRAME_BASE_URL).hostname in {"127.0.0.1", "localhost", "::1"}
# Where Apiframe should POST updates (our /webhooks/apiframe/ as the internet sees it); empty = polling only.
APIFRAME_WEBHOOK_URL = env("APIFRAME_WEBHOOK_URL", default="")
APIFRAME_WEBHOOK_SECRET = env("APIFRAME_WEBHOOK_SECRET", default="dev-webhook-secret" if DEBUG else environ.Env.NOTSET)
# Images are downloaded only from these hosts (the sandbox's, or Apiframe's CDN).
APIFRAME_IMAGE_HOSTS = env.list(
    "APIFRAME_IMAGE_HOSTS",
    default=[urlsplit(APIFRAME_FETCH_URL).netloc, "cdn.apiframe.pro", "cdn.apiframe.ai"],
)

# --- Studio behaviour ------------------------------------------------------------------------------------
# A task still unfinished this long after it is sent (its turn in the fair queue: the wait before does not count)
# ends as "timed out" (the seed suggests an 80-120 s wait per task; the rest is room for Apiframe's own queue).
MJSTUDIO_TASK_TIMEOUT = env.float("MJSTUDIO_TASK_TIMEOUT", default=300.0)
# Tasks of the whole Apiframe account upstream at once (the plan's concurrency): more wait on our side, in a queue
# that takes the members in turn (services/queue.py). 0 = no limit: everything is sent at once.
APIFRAME_CONCURRENCY = env.int("APIFRAME_CONCURRENCY", default=3)
# The poller fetches an in-flight task only after this long without news: a long quiet period while webhooks
# are arriving (polling is then only the safety net), a short one when none have come for a minute (webhooks
# off, a laptop behind NAT, or a webhook URL that is silently broken): then polling does all the work.
MJSTUDIO_POLL_AFTER = env.float("MJSTUDIO_POLL_AFTER", default=30.0)
MJSTUDIO_POLL_AFTER_NO_WEBHOOKS = env.float("MJSTUDIO_POLL_AFTER_NO_WEBHOOKS", default=2.0)
# Credits Apiframe charges per action (its public price list); edit here when the plan changes.
MJSTUDIO_CREDIT_PRICES = {"imagine": 4, "reroll": 4, "vary": 4, "pan": 4, "zoom": 4, "upscale": 4}
MJSTUDIO_MAX_IMAGE_BYTES = env.int("MJSTUDIO_MAX_IMAGE_BYTES", default=40 * 1024 * 1024)
MJSTUDIO_MAX_IMAGE_PIXELS = env.int("MJSTUDIO_MAX_IMAGE_PIXELS", default=25_000_000)  # 4x upscales fit
MJSTUDIO_WEBHOOK_MAX_BYTES = env.int("MJSTUDIO_WEBHOOK_MAX_BYTES", default=256 * 1024)

# --- Background work: downloads, stuck jobs, retention ----------------------------------------------------
# Wall-clock limit for downloading one image, enforced on every read: a host dripping bytes is cut off here.
MJSTUDIO_DOWNLOAD_SECONDS = env.float("MJSTUDIO_DOWNLOAD_SECONDS", default=60.0)
# Images one mirror job downloads at once: its own task's (up to 4), and with the threads left, other tasks'
# not tried yet, so that one slow host never holds the others up. Each holds up to MJSTUDIO_MAX_IMAGE_BYTES.
MJSTUDIO_MIRROR_THREADS = env.int("MJSTUDIO_MIRROR_THREADS", default=8)
# A job still "running" after this many seconds lost its worker (killed): the poller marks it failed, and its
# work is picked up again by the poller's own sweeps. Far above the longest job (a submit: APIFRAME_TIMEOUT;
# a mirror: about two download limits).
MJSTUDIO_JOB_TIMEOUT = env.float("MJSTUDIO_JOB_TIMEOUT", default=600.0)
# Webhook deliveries and finished job rows older than this are deleted, once a day, by the poller.
MJSTUDIO_RETENTION_DAYS = env.int("MJSTUDIO_RETENTION_DAYS", default=30)
# Audit rows (services/audit.py) are kept far longer, being the record of who did what; pruned daily too. 0 = kept.
MJSTUDIO_AUDIT_RETENTION_DAYS = env.int("MJSTUDIO_AUDIT_RETENTION_DAYS", default=730)
# Every prompt sent is checked against its team's blocklist and the site's (services/blocklist.py), at submit and
# again at send time in the worker: each list holds at most MJSTUDIO_BLOCKLIST_MAX_TERMS terms, and its patterns
# together at most MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE of RE2 program size (what a pattern costs per character
# of prompt: `kill` is 11). At both caps, team and site together, a 4,000-character prompt is checked in under
# 20 ms, whatever the patterns (bench/blocklist.py).
MJSTUDIO_BLOCKLIST_MAX_TERMS = env.int("MJSTUDIO_BLOCKLIST_MAX_TERMS", default=100)
MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE = env.int("MJSTUDIO_BLOCKLIST_MAX_PATTERN_SIZE", default=600)

# --- Limits on abuse --------------------------------------------------------------------------------------
# Submissions (each one a paid upstream call): at most MJSTUDIO_SUBMIT_MAX new tasks per user in any
# MJSTUDIO_SUBMIT_WINDOW seconds, and at most MJSTUDIO_TEAM_MAX_IN_FLIGHT of a team's tasks in flight. 0 = no limit.
MJSTUDIO_SUBMIT_MAX = env.int("MJSTUDIO_SUBMIT_MAX", default=30)
MJSTUDIO_SUBMIT_WINDOW = env.int("MJSTUDIO_SUBMIT_WINDOW", default=600)
MJSTUDIO_TEAM_MAX_IN_FLIGHT = env.int("MJSTUDIO_TEAM_MAX_IN_FLIGHT", default=12)

# Login (django-axes): an account is locked after MJSTUDIO_LOGIN_FAILURE_LIMIT failures, an address (a whole
# office behind one NAT, so a higher bar) after MJSTUDIO_LOGIN_IP_FAILURE_LIMIT, for the cool-off; a success forgets
# the account's own failures; staff unlock by deleting the attempts in the admin (Axes > Access attempts).
MJSTUDIO_LOGIN_FAILURE_LIMIT = env.int("MJSTUDIO_LOGIN_FAILURE_LIMIT", default=5)
MJSTUDIO_LOGIN_IP_FAILURE_LIMIT = env.int("MJSTUDIO_LOGIN_IP_FAILURE_LIMIT", default=20)
AXES_FAILURE_LIMIT = MJSTUDIO_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=env.float("MJSTUDIO_LOGIN_COOLOFF_MINUTES", default=15))
# Counted per account and per address; the handler applies each its own limit (generations/services/limits.py).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_HANDLER = "generations.services.limits.LoginAttemptHandler"
AXES_RESET_ON_SUCCESS = True
# A try refused during a lockout is not one more failure: colleagues behind a locked office address would
# otherwise lock their own accounts by trying once each.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "generations.views.accounts.login_locked_out"
# The client's address is REMOTE_ADDR unless MJSTUDIO_TRUSTED_PROXIES says how many proxies in front of us
# append to X-Forwarded-For (otherwise anyone could send that header and pick their own address).
MJSTUDIO_TRUSTED_PROXIES = env.int("MJSTUDIO_TRUSTED_PROXIES", default=0)
AXES_CLIENT_IP_CALLABLE = "generations.services.limits.client_ip"

# The cache holds only counters that may be lost (webhook refusals): local memory, per process, by default;
# Redis when REDIS_URL is set (the `redis` package comes with `pip install .[scale]`). Never the database.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if REDIS_URL:
    CACHES["default"] = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}

# --- Live push ------------------------------------------------------------------------------------------------
# With REDIS_URL, every committed change to a card goes to its team's Redis Stream, and open studio pages receive
# the changed cards as server-sent events (generations/live/); gunicorn then serves the site with uvicorn workers
# (ASGI). Without Redis (or with MJSTUDIO_LIVE_PUSH=false) the page asks for changes every half second (the pulse).
LIVE_REDIS_URL = REDIS_URL
LIVE_PUSH = bool(LIVE_REDIS_URL) and env.bool("MJSTUDIO_LIVE_PUSH", default=True)
# Entries kept per team (about): a page away longer than this many changes gets its newest cards again instead.
LIVE_STREAM_MAXLEN = env.int("MJSTUDIO_LIVE_STREAM_MAXLEN", default=5000)
# An idle stream sends a comment this often (proxies close silent connections), and ends after
# LIVE_STREAM_SECONDS: the browser reconnects at once, resuming where it was, with its login checked again.
LIVE_HEARTBEAT_SECONDS = env.float("MJSTUDIO_LIVE_HEARTBEAT_SECONDS", default=15.0)
LIVE_STREAM_SECONDS = env.float("MJSTUDIO_LIVE_STREAM_SECONDS", default=600.0)
# Open streams per user at once, over every web process (counted in Redis; 0: no cap). One more is refused (429)
# and the page asks again later: eight studio tabs stay live, a script opening thousands does not hold them.
LIVE_MAX_STREAMS_PER_USER = env.int("MJSTUDIO_LIVE_MAX_STREAMS_PER_USER", default=8)
# Under ASGI Django runs each request's synchronous code in a thread of its own, so a connection kept by a thread
# is never used again: on PostgreSQL every page would open one. A pool per process instead (psycopg's, through
# Django's `pool` option, which wants CONN_MAX_AGE=0); DATABASE_POOL_SIZE connections at most per process.
if LIVE_PUSH and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_SIZE", default=16),
        "timeout": 10,  # seconds a request waits for a free connection before it fails
    }

# --- Security ---------------------------------------------------------------------------------------------
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", *MJSTUDIO_MEDIA_ORIGINS],  # images redirect to a bucket's signed URLs
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.NONE],
}
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # A load balancer's or runstudio's health probe may come over plain http on the private side.
    SECURE_REDIRECT_EXEMPT = [r"^health/$"]
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "skip_refused_webhooks": {"()": "mjstudio.logs.SkipRefusedWebhooks"},
        "forbidden_in_one_line": {"()": "mjstudio.logs.ForbiddenInOneLine"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.server": {"level": "WARNING", "filters": ["skip_refused_webhooks"]},
        "django.request": {"filters": ["forbidden_in_one_line"]},
        # django-axes: failures and lockouts (warnings) only, not a line per successful login.
        "axes": {"level": "WARNING"},
    },
}
