"""The Celery app: one queue per kind of work, routed by task module.

Heavy work (sync, tagging, analytics) never waits behind interactive work
(messages), and each queue can get workers of its own on other hosts.
"""

import os
from enum import StrEnum

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")


class Queues(StrEnum):
    DEFAULT = "default"
    SYNC = "sync"
    TAGGING = "tagging"
    SOP = "sop"
    MESSAGES = "messages"
    ANALYTICS = "analytics"


# Heavy work gets workers of its own (docker-compose.yml, the demo): the heartbeat, SOP
# tasks and messages never wait behind a full sync, a tag push or the dashboards.
HEAVY_QUEUES = (Queues.SYNC, Queues.TAGGING, Queues.ANALYTICS)
LIVE_QUEUES = tuple(queue for queue in Queues if queue not in HEAVY_QUEUES)

# Routed by the task's module, so a new task lands on its app's queue without
# anyone remembering to add it here.
ROUTES_BY_MODULE = {
    "scrm.tasks": Queues.DEFAULT,
    "contacts.tasks": Queues.SYNC,
    "tagging.tasks": Queues.TAGGING,
    "sop.tasks": Queues.SOP,
    "campaigns.tasks": Queues.MESSAGES,
    "analytics.tasks": Queues.ANALYTICS,
}


# Tasks that go where their module's do not: an export is a long read of many rows,
# heavy work like the dashboards', never in front of the heartbeat or callbacks.
ROUTES_BY_NAME = {"scrm.tasks.run_export": Queues.ANALYTICS}


def route_task(name: str, args, kwargs, options, task=None, **kw) -> dict | None:
    queue = ROUTES_BY_NAME.get(name) or ROUTES_BY_MODULE.get(name.rsplit(".", 1)[0])
    return {"queue": str(queue)} if queue else None


app = Celery("scrm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(str(queue)) for queue in Queues]
app.conf.task_default_queue = str(Queues.DEFAULT)
app.conf.task_routes = (route_task,)
# Celery's Django fixup closes the database connection after every task (it
# ignores CONN_MAX_AGE) unless told to reuse it; reconnecting costs more than
# most of our tasks (RECIPES.md: ~180 tasks/s without reuse, ~500 with).
app.conf.CELERY_DB_REUSE_MAX = 1000
app.autodiscover_tasks()
