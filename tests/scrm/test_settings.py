"""Production settings: `check --deploy` is clean, and a missing secret fails loudly."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "PATH": os.environ["PATH"],
    "DJANGO_SETTINGS_MODULE": "scrm.settings",
    "DJANGO_SECRET_KEY": "p" * 20 + "-production-secret-key-for-the-check-0123456789",
    "DJANGO_ALLOWED_HOSTS": "scrm.example.com",
    "PHONE_HASH_KEY": "production-phone-hash-key-for-the-check",
}


def _manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_check_deploy_is_clean_in_production():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_secret_key_fails_loudly():
    environment = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = _manage("check", env=environment)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_debug_is_off_unless_asked():
    result = _manage(
        "shell", "-c", "from django.conf import settings; print(settings.DEBUG)", env=PRODUCTION
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


def test_models_and_migrations_agree():
    environment = {**PRODUCTION, "SCRM_DEVELOPMENT": "1"}
    result = _manage("makemigrations", "--check", "--dry-run", env=environment)
    assert result.returncode == 0, result.stdout + result.stderr


def test_debug_pages_alone_do_not_bring_the_development_keys():
    """A production with DJANGO_DEBUG on still needs its own secrets: the development
    ones are published (anyone could sign WeCom callbacks with them)."""
    environment = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = _manage("check", env={**environment, "DJANGO_DEBUG": "true"})
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is not set" in result.stderr
    printed = "from django.conf import settings as s; print(repr(s.WECOM_CALLBACK_TOKEN))"
    result = _manage("shell", "-c", printed, env={**PRODUCTION, "DJANGO_DEBUG": "true"})
    assert result.stdout.strip().splitlines()[-1] == "''", result.stderr
