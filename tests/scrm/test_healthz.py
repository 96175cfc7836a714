import pytest
from django.test import override_settings
from django.utils import timezone

from scrm.models import WorkerHeartbeat
from scrm.tasks import heartbeat


@pytest.mark.django_db(transaction=True)
def test_all_green_with_worker_and_beat(client_for, operator, celery_worker):
    heartbeat.delay().get(timeout=20)  # what beat sends every minute
    response = client_for(operator).get("/healthz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ok"] is True
    assert body["database"]["ok"] and body["redis"]["ok"] and body["beat"]["ok"]
    assert any(name.startswith("test-worker-") for name in body["workers"]["workers"])


@pytest.mark.django_db(transaction=True)
def test_redis_down_is_503(client, client_for, operator, celery_worker):
    WorkerHeartbeat.objects.create(hostname="w", beat_at=timezone.now())
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        anonymous = client.get("/healthz")
        response = client_for(operator).get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["ok"] is False
    assert body["redis"]["ok"] is False and "ConnectionError" in body["redis"]["error"]
    assert body["database"]["ok"] is True
    # anyone learns what is down, not the error's text or the workers' hosts
    assert anonymous.status_code == 503
    assert anonymous.json() == {
        "ok": False,
        "database": {"ok": True},
        "redis": {"ok": False},
        "workers": {"ok": True},
        "beat": {"ok": True},
    }


@pytest.mark.django_db
def test_no_worker_is_503(client_for, operator):
    WorkerHeartbeat.objects.create(hostname="w", beat_at=timezone.now())
    # A broker database no worker listens on.
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:6379/13"):
        response = client_for(operator).get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["workers"] == {"ok": False, "workers": []}


@pytest.mark.django_db
def test_stale_beat_is_503(client):
    WorkerHeartbeat.objects.create(
        hostname="w", beat_at=timezone.now() - timezone.timedelta(minutes=10)
    )
    body = client.get("/healthz").json()
    assert body["beat"]["ok"] is False
    assert body["ok"] is False
