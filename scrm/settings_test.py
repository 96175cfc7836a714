"""Test settings: the real settings, pointed at a Redis database of their own.

Only speed knobs differ from production: a fast password hasher.
"""

import os

os.environ.setdefault("SCRM_DEVELOPMENT", "1")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# The broker gets a Redis database of its own so that clearing the cache between
# tests never deletes a queued message or the worker's bindings.
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/14")

from scrm.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Uploads and exports of the tests (their worker's too) apart from a demo's on this checkout.
MEDIA_ROOT = str(BASE_DIR / "build" / "test-media")  # noqa: F405
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
