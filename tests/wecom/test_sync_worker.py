"""A sync started from the API runs on the real worker; killed mid-run, it resumes exactly."""

import os
import signal
from pathlib import Path

import pytest
from django.urls import reverse

from contacts.models import Relationship, SyncRun
from tests.helpers import wait_for
from tests.wecom.test_sync import _expected, _stored

pytestmark = pytest.mark.django_db(transaction=True)


def _pool_children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_sync_killed_on_the_worker_resumes_from_its_cursor(
    client_for, operator, emulator, celery_worker
):
    emulator.config.latency = 0.15  # each page takes a moment, so the kill lands mid-run
    response = client_for(operator).post(reverse("syncrun-list"))
    assert response.status_code == 202
    run_id = response.json()["id"]

    def progressed() -> bool:
        run = SyncRun.objects.get(pk=run_id)
        return (
            run.cursor.get("stage") == "customers"
            and run.cursor.get("batch") is not None
            and (Relationship.objects.exists())
        )

    wait_for(progressed, timeout=60, interval=0.02)
    saved = Relationship.objects.count()
    fetched_before_kill = emulator.stats()["externalcontact/batch/get_by_user"]
    assert 0 < saved < emulator.relations_count()
    for child in _pool_children(celery_worker.pid):
        os.kill(child, signal.SIGKILL)  # the pool process running the sync dies

    wait_for(lambda: SyncRun.objects.get(pk=run_id).status == SyncRun.Status.SUCCEEDED, timeout=90)
    assert _stored() == _expected(emulator)
    assert Relationship.objects.count() == emulator.relations_count()  # no duplicates
    assert SyncRun.objects.count() == 1
    # Resumed, not restarted: after the kill only the pages not yet saved were fetched
    # (plus the one the killed process had in flight); a restart fetches every page.
    pages = -(-emulator.relations_count() // 100)
    fetched_after_kill = emulator.stats()["externalcontact/batch/get_by_user"] - fetched_before_kill
    assert fetched_after_kill <= pages - saved // 100 + 1, (saved, fetched_after_kill, pages)
