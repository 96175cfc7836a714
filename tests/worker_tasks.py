"""Tasks that only the test worker loads (celery worker --include tests.worker_tasks)."""

import os
import time

import redis
from celery import shared_task
from celery.signals import task_postrun, task_prerun
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


# -- a hook on the real SOP dispatch (sop.tasks.dispatch_due), for the killed-worker test -----

DISPATCH_PAUSE = "tests:sop-dispatch:pause-at-commit"  # set by a test; read once
DISPATCH_PAUSED = "tests:sop-dispatch:paused-pid"


@task_prerun.connect
def _dispatch_hook(task=None, **kwargs) -> None:
    """Count each run of the dispatch and publish its pool process id. When a test set
    DISPATCH_PAUSE to n (taken by the first run only), the run stops just before its
    n-th COMMIT (the batches before it committed, that batch written but not committed),
    publishes its pid in DISPATCH_PAUSED and sleeps, to be killed there."""
    if task is None or task.name != "sop.tasks.dispatch_due":
        return
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.incr("attempts:dispatch_due")
    client.set("pid:dispatch_due", os.getpid())
    pause_at = client.getdel(DISPATCH_PAUSE)
    if pause_at is None:
        return
    from django.db import connections

    database = connections["default"]
    commits = 0
    commit = database._commit

    def paused_commit():
        nonlocal commits
        commits += 1
        if commits == int(pause_at):
            client.set(DISPATCH_PAUSED, os.getpid())
            time.sleep(120)
        return commit()

    database._commit = paused_commit


@task_postrun.connect
def _dispatch_unhook(task=None, **kwargs) -> None:
    if task is not None and task.name == "sop.tasks.dispatch_due":
        from django.db import connections

        connections["default"].__dict__.pop("_commit", None)
