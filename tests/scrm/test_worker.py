"""A real worker: tasks go through Redis, run in another process, commit to PostgreSQL."""

import os
import signal

import pytest
import redis
from django.conf import settings

from contacts.models import Store
from scrm.models import WorkerHeartbeat
from scrm.tasks import heartbeat
from tests.helpers import wait_for
from tests.worker_tasks import slow_commit

pytestmark = pytest.mark.django_db(transaction=True)


def test_task_runs_on_worker_and_commits(celery_worker):
    assert not WorkerHeartbeat.objects.exists()
    result = heartbeat.delay()
    result.get(timeout=20)
    row = WorkerHeartbeat.objects.get()
    assert row.hostname.startswith("test-worker-")


def test_task_is_routed_by_module():
    from scrm.celery import route_task

    assert route_task("contacts.tasks.sync_full", (), {}, {}) == {"queue": "sync"}
    assert route_task("analytics.tasks.weekly_report", (), {}, {}) == {"queue": "analytics"}
    assert route_task("scrm.tasks.heartbeat", (), {}, {}) == {"queue": "default"}


def test_task_killed_mid_run_is_redelivered(celery_worker):
    client = redis.Redis.from_url(settings.REDIS_URL)
    code = "KILLED1"
    slow_commit.delay(code, 3.0)
    pid = int(wait_for(lambda: client.get(f"pid:{code}")))
    assert not Store.objects.filter(code=code).exists()
    os.kill(pid, signal.SIGKILL)  # the pool process running the task dies mid-run

    wait_for(lambda: Store.objects.filter(code=code).exists(), timeout=40)
    assert int(client.get(f"attempts:{code}")) == 2
    assert Store.objects.filter(code=code).count() == 1
