"""Shared fixtures: the named personas and a real Celery worker.

Personas: `operator`, `manager`, `guide_user` (guide0001), `other_guide_user`
(guide0002), `admin_user`. Each is a logged-in test client fixture's user.
"""

import importlib
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.utils import translation

from scrm.celery import Queues
from scrm.celery import app as celery_app
from tests.contacts.factories import GuideFactory, StoreFactory

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


# Many tests read "today" in Shanghai more than once (a page's default window and the
# test's own expectation). None of those lasts this long: a test that would start
# this close to Shanghai midnight starts just after it instead (once a run at most).
MIDNIGHT_MARGIN = timedelta(seconds=15)


@pytest.fixture(autouse=True)
def _one_shanghai_day():
    now = datetime.now(tz=ZoneInfo("Asia/Shanghai"))
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    if midnight - now < MIDNIGHT_MARGIN:
        time.sleep((midnight - now).total_seconds() + 0.5)
    yield


@pytest.fixture(autouse=True)
def _clean_cache():
    """Each test starts with an empty cache (REDIS_URL's own database, not the broker's)."""
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in the site's language: a request in English leaves the thread's
    language English (LocaleMiddleware does not reset it)."""
    with translation.override(settings.LANGUAGE_CODE):
        yield


@pytest.fixture
def roles(db):
    """The role groups. Transactional tests truncate them; recreate from the migration."""
    importlib.import_module("scrm.migrations.0002_roles").create_roles(django_apps, None)
    importlib.import_module("scrm.migrations.0005_admins_connect_wecom").grant(django_apps, None)
    return {group.name: group for group in Group.objects.all()}


def _user(username: str, role: str, roles: dict, **extra) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    user.groups.add(roles[role])
    return user


@pytest.fixture
def operator(roles) -> User:
    return _user("operator", "operator", roles, first_name="运营小王")


@pytest.fixture
def manager(roles) -> User:
    return _user("manager", "manager", roles, first_name="店长老李")


@pytest.fixture
def admin_user(roles) -> User:
    return User.objects.create_superuser(username="admin", password=PASSWORD, is_staff=True)


@pytest.fixture
def store(db):
    return StoreFactory(code="SH001", name="上海静安店", city="上海")


@pytest.fixture
def guide_user(roles, store) -> User:
    user = _user("guide1", "guide", roles, first_name="导购小张")
    GuideFactory(wecom_userid="guide0001", name="张晓", store=store, user=user)
    return user


@pytest.fixture
def other_guide_user(roles, store) -> User:
    user = _user("guide2", "guide", roles, first_name="导购小陈")
    GuideFactory(wecom_userid="guide0002", name="陈静", store=store, user=user)
    return user


@pytest.fixture
def client_for(client):
    """Log a persona in: `client_for(operator)` returns the logged-in test client."""

    def login(user: User):
        client.force_login(user)
        return client

    return login


@pytest.fixture(scope="session")
def emulator_server():
    """The WeCom emulator for the whole session, over HTTP; the test worker uses it too."""
    from scrm.wecom.emulator import Config, WeComEmulator, generate, serve_in_thread
    from tests.wecom import CUSTOMERS, GUIDES, SEED

    emulator = WeComEmulator(generate(seed=SEED, guides=GUIDES, customers=CUSTOMERS), Config())
    served = serve_in_thread(emulator)
    yield emulator, served
    served.stop()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, emulator_server):
    """A real Celery worker in a subprocess, on every queue, against the test database.

    Tests that use it must be `django_db(transaction=True)` so their rows are
    committed and visible to the worker. Yields the worker's Popen.
    """
    database = settings.DATABASES["default"]
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "scrm.settings_test",
        "WECOM_API_BASE": emulator_server[1].base_url,
        # small transactions, so a sync killed on the worker has saved progress to resume
        "SYNC_FLUSH_RELATIONS": "100",
        # small dispatch batches, so a dispatch killed on the worker has committed some
        "SOP_DISPATCH_BATCH": "100",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
        ),
    }
    hostname = f"test-worker-{os.getpid()}@%h"
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "scrm",
            "worker",
            "-Q",
            ",".join(str(queue) for queue in Queues),
            "--pool",
            "prefork",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--include",
            "tests.worker_tasks",
            "-n",
            hostname,
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=environment,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited with {process.returncode}")
        if celery_app.control.ping(timeout=0.5):
            break
    else:
        process.kill()
        raise RuntimeError("celery worker did not answer a ping within 30 s")
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def celery_worker(celery_worker_process, transactional_db):
    """The session's worker, for one transactional test."""
    return celery_worker_process
