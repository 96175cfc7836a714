"""Settings for the SCRM platform.

Every value comes from the environment through django-environ, with safe
development defaults. Production must set DJANGO_SECRET_KEY and
SCRM_ENCRYPTION_KEY; with DEBUG off and the development secret key the
process refuses to start.
"""

from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"  # noqa: S105

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEVELOPMENT_SECRET_KEY)
# Development runs (make demo, make test) say so with SCRM_DEVELOPMENT=1; anything
# else must bring its own secret key. DJANGO_DEBUG alone does not: a production turning
# on debug pages must not fall back to the published development keys.
IS_DEVELOPMENT = env.bool("SCRM_DEVELOPMENT", default=False)
if SECRET_KEY == DEVELOPMENT_SECRET_KEY and not IS_DEVELOPMENT:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. Set it (and SCRM_ENCRYPTION_KEY) in production, "
        "or set SCRM_DEVELOPMENT=1 for a local run."
    )

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# A guide who has left signs in no more (scrm.auth).
AUTHENTICATION_BACKENDS = ["scrm.auth.Backend"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "scrm",
    "contacts",
    "tagging",
    "sop",
    "campaigns",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "scrm.middleware.RefuseNulInQuery",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "scrm.urls"
WSGI_APPLICATION = "scrm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "scrm.roles.role_context",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/scrm"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# No JIT compilation: the dashboards' queries run for tenths of a second, and compiling
# them cost more than it saved (benchmarks/analytics.py: the repurchase page's splits by
# channel 0.67 s with JIT, 0.33 s without; Postgres's default turns it on by plan cost).
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "scrm",
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# A request body read whole (not a file upload): the order API's push of 10,000 lines
# is about 5 MB, with long product names up to three times that (Django's default 2.5 MB).
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 2**20

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
FORMAT_MODULE_PATH = ["scrm.formats"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "build" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = env.str("MEDIA_ROOT", default=str(BASE_DIR / "build" / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Security: strict unless DEBUG; the HTTPS switches follow SCRM_HTTPS so that a
# plain-HTTP local demo still works while `check --deploy` is clean in production.
HTTPS = env.bool("SCRM_HTTPS", default=not IS_DEVELOPMENT)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^wecom/callback/$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    # Token first: a call without credentials gets 401 with `WWW-Authenticate: Token`
    # (the first class's challenge; sessions have none, so it was 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: the browsable API's forms listed every choice of a related field (the
    # brand's customers, to a guide); people read the API at /api/docs.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "scrm.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SCRM API",
    "DESCRIPTION": "WeCom private-domain SCRM: customers, orders, tags, SOP, campaigns, analytics.",
    "VERSION": "1",
    # The API's reference is for the console's people (operators integrating
    # systems, managers); shop guides use the task list, not the API docs.
    "SERVE_PERMISSIONS": ["scrm.roles.ConsolePermission"],
    # Swagger UI from the installed sidecar package: the docs page loads nothing
    # from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: Redis broker, JSON only, acknowledged after the task ran so a killed
# worker's task is redelivered; every task must therefore be safe to run twice.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3300)
CELERY_RESULT_EXPIRES = 86400
CELERY_TIMEZONE = TIME_ZONE
# Redis redelivers an unacknowledged message after this many seconds; it must be
# longer than the longest task, or a slow task would run twice at once.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=CELERY_TASK_TIME_LIMIT + 300)
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "scrm-heartbeat": {
        "task": "scrm.tasks.heartbeat",
        "schedule": 60.0,
    },
    # Repairs drift from missed callbacks; its counts are the drift it found.
    "contacts-reconcile-wecom": {
        "task": "contacts.tasks.reconcile_wecom",
        "schedule": crontab(hour=3, minute=0),
    },
    # After the reconcile: every customer's facts, then every tag (time moves lifecycle
    # and recency even when nothing else changed).
    "tagging-retag-nightly": {
        "task": "tagging.tasks.retag_nightly",
        "schedule": crontab(hour=3, minute=30),
    },
    # An import's rejected rows, kept as read (full phones included), for a week: cleared
    # within the hour after (pages and downloads stop showing them on the dot).
    "contacts-forget-rejected-rows": {
        "task": "contacts.tasks.forget_rejected_rows",
        "schedule": crontab(minute=15),
    },
    # Exports are kept a week (they list customers): deleted within the hour after.
    "scrm-forget-exports": {
        "task": "scrm.tasks.forget_exports",
        "schedule": crontab(minute=45),
    },
    "sop-dispatch": {"task": "sop.tasks.dispatch_due", "schedule": 60.0},
    "sop-enroll-tags": {"task": "sop.tasks.enroll_tags", "schedule": 60.0},
    # After the nightly retag, so date triggers see today's facts; steps due today wait
    # for their send windows.
    "sop-enroll-daily": {
        "task": "sop.tasks.enroll_daily",
        "schedule": crontab(hour=4, minute=0),
    },
    # After the nightly retag (03:30) refreshed every customer's facts: a new dashboard
    # cache generation and the default views computed before anyone reads them.
    "analytics-refresh-dashboards": {
        "task": "analytics.tasks.refresh_dashboards",
        "schedule": crontab(hour=4, minute=30),
    },
    "sop-automatic-results": {"task": "sop.tasks.fetch_automatic_results", "schedule": 300.0},
    "sop-reminders": {"task": "sop.tasks.send_reminders", "schedule": 300.0},
    "campaigns-send-due": {"task": "campaigns.tasks.send_due_campaigns", "schedule": 60.0},
    "campaigns-results": {"task": "campaigns.tasks.fetch_campaign_results", "schedule": 600.0},
    "campaigns-group-sop": {"task": "campaigns.tasks.send_due_group_messages", "schedule": 60.0},
    "campaigns-group-sop-results": {
        "task": "campaigns.tasks.fetch_group_message_results",
        "schedule": 600.0,
    },
    # The weekly repurchase report for the week before (editable in django-celery-beat).
    "analytics-weekly-report": {
        "task": "analytics.tasks.weekly_report",
        "schedule": crontab(hour=9, minute=0, day_of_week="mon"),
    },
}
# Due SOP touchpoints dispatched per transaction (sop.scheduling.dispatch).
SOP_DISPATCH_BATCH = env.int("SOP_DISPATCH_BATCH", default=10_000)
# Days an automatic send's result is asked of WeCom before it is recorded as unconfirmed
# (WeCom documents no retention for mass-message results; its message list spans a month).
SOP_SEND_RESULT_DAYS = env.int("SOP_SEND_RESULT_DAYS", default=30)

# WeCom. The development defaults are the bundled emulator's credentials (not
# secrets of any real corp); outside development the secrets default to empty.
# E-mail (the weekly report): files under build/mail in development, SMTP otherwise.
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.filebased.EmailBackend"
    if IS_DEVELOPMENT
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / "build" / "mail"))
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="scrm@localhost")

# Where users reach the platform: links in WeCom app messages (guides' task list).
SCRM_BASE_URL = env.str("SCRM_BASE_URL", default="http://127.0.0.1:8000")

# WeCom's OAuth pages (sign-in from the app menu and the chat sidebar): the emulator's
# in development, https://open.weixin.qq.com in production.
WECOM_OAUTH_BASE = env.str("WECOM_OAUTH_BASE", default="http://127.0.0.1:8090")
WECOM_API_BASE = env.str("WECOM_API_BASE", default="http://127.0.0.1:8090/cgi-bin/")
WECOM_CORP_ID = env.str("WECOM_CORP_ID", default="ww5f1e2d3c4b5a6978" if IS_DEVELOPMENT else "")
WECOM_CONTACT_SECRET = env.str(
    "WECOM_CONTACT_SECRET", default="dev-contact-secret-0123456789abcdef" if IS_DEVELOPMENT else ""
)
WECOM_AGENT_ID = env.int("WECOM_AGENT_ID", default=1000002)
WECOM_AGENT_SECRET = env.str(
    "WECOM_AGENT_SECRET", default="dev-agent-secret-0123456789abcdef" if IS_DEVELOPMENT else ""
)
WECOM_CALLBACK_TOKEN = env.str(
    "WECOM_CALLBACK_TOKEN", default="DevCallbackToken2026" if IS_DEVELOPMENT else ""
)
WECOM_CALLBACK_AES_KEY = env.str(
    "WECOM_CALLBACK_AES_KEY",
    default="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" if IS_DEVELOPMENT else "",
)
WECOM_CALLBACK_URL = env.str("WECOM_CALLBACK_URL", default="http://127.0.0.1:8000/wecom/callback/")
# Key that WeCom secrets entered on the setup page are encrypted with; required
# in production (the development default is derived from the development key).
SCRM_ENCRYPTION_KEY = env.str("SCRM_ENCRYPTION_KEY", default=SECRET_KEY if IS_DEVELOPMENT else "")
# Relationships a WeCom sync writes per transaction (and saves its cursor after).
SYNC_FLUSH_RELATIONS = env.int("SYNC_FLUSH_RELATIONS", default=5000)
# Calls per second per API path and corp (WeCom allows 10,000 a minute, about 166/s).
WECOM_RATE_PER_SECOND = env.int("WECOM_RATE_PER_SECOND", default=100)

# Key of the HMAC that phone numbers are matched by (contacts/phones.py). Changing
# it orphans every stored phone hash, so it is not derived from SECRET_KEY.
PHONE_HASH_KEY = env.str(
    "PHONE_HASH_KEY", default="development-phone-hash-key" if IS_DEVELOPMENT else ""
)
if not PHONE_HASH_KEY:
    raise ImproperlyConfigured("PHONE_HASH_KEY is not set (see README, Configuration).")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
