"""Tasks that only the test worker loads (celery worker --include tests.worker_tasks)."""

import os
import time

import redis
from celery import shared_task
from django.conf import settings

from contacts.models import Store


@shared_task(name="tests.worker_tasks.slow_commit")
def slow_commit(code: str, seconds: float) -> None:
    """Count the attempt, publish the pool process id, dawdle, then commit a row."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.incr(f"attempts:{code}")
    client.set(f"pid:{code}", os.getpid())
    time.sleep(seconds)
    Store.objects.get_or_create(code=code, defaults={"name": f"worker {code}"})
