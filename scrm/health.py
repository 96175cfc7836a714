"""/healthz: is every part the platform needs alive?

Checks PostgreSQL, Redis, at least one Celery worker answering a ping, and beat
(a worker recorded the beat's heartbeat recently). Answers 200 when all are
up and 503 with the failing part named otherwise. Costs about one second: the
worker ping waits that long for replies.

Anyone may ask (a load balancer, docker compose's healthcheck), but only console
users see the details: the error texts name hosts and users, the replies name
the worker hosts.
"""

from datetime import timedelta

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from scrm.celery import app as celery_app
from scrm.models import WorkerHeartbeat
from scrm.roles import Perm

BEAT_STALE_AFTER = timedelta(minutes=3)  # beat sends a heartbeat every minute


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def _check_redis() -> dict:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    client.ping()
    return {"ok": True}


def _check_workers() -> dict:
    # The broker URL is read per request, so the check follows the settings.
    with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
        replies = celery_app.control.ping(timeout=1.0, connection=connection) or []
    workers = sorted(name for reply in replies for name in reply)
    return {"ok": bool(workers), "workers": workers}


def _check_beat() -> dict:
    last = WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True).first()
    fresh = last is not None and timezone.now() - last < BEAT_STALE_AFTER
    return {"ok": fresh, "last_heartbeat": last.isoformat() if last else None}


CHECKS = {
    "database": _check_database,
    "redis": _check_redis,
    "workers": _check_workers,
    "beat": _check_beat,
}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    results = {}
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as error:  # noqa: BLE001 - a health check reports every failure
            results[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    healthy = all(result["ok"] for result in results.values())
    if not request.user.has_perm(Perm.VIEW_CONSOLE):
        results = {name: {"ok": result["ok"]} for name, result in results.items()}
    return JsonResponse({"ok": healthy, **results}, status=200 if healthy else 503)
